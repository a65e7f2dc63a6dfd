"""doctor.html: one self-contained page (styles inline, thumbnails as data: URIs, nothing fetched): a summary
table, the classes per split, then per kind of issue the files sorted by score, each with its given →
suggested labels or beside the copy it duplicates."""

import base64
import html
import io

import numpy as np
from PIL import Image

from imagerec.diagnosis.findings import KINDS, PAIR_KINDS

SHOWN_PER_KIND = 60  # thumbnails per kind on the page (issues.csv lists every finding)
THUMBNAIL_SIDE = 96


def thumbnail_uri(image: np.ndarray) -> str:
    """A PNG data: URI of a uint8 image, at most THUMBNAIL_SIDE px."""
    picture = Image.fromarray(np.asarray(image))
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render(summary: dict, findings: list, pixels_of) -> str:
    """The page for `summary` (doctor.json's numbers) and `findings` (ordered); `pixels_of(path)` gives a
    finding's image (uint8) or None when it has none (unreadable)."""
    sections = "".join(_section(kind, [f for f in findings if f.kind == kind], pixels_of)
                       for kind in KINDS if any(f.kind == kind for f in findings))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imagerec doctor</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.2em .6em;text-align:right}}th:first-child,td:first-child,td:last-child{{text-align:left}}
figure{{display:inline-block;margin:.4em;vertical-align:top;width:14em;font-size:.8em}}
img{{width:{THUMBNAIL_SIDE}px;height:{THUMBNAIL_SIDE}px;object-fit:contain;image-rendering:pixelated;
background:#ddd}}.pair img{{width:{THUMBNAIL_SIDE * 2 // 3}px;height:{THUMBNAIL_SIDE * 2 // 3}px}}
figcaption{{word-break:break-all}}pre{{background:#eee;padding:1em;overflow:auto}}</style></head>
<body><h1>imagerec doctor</h1><p>{html.escape(summary["paragraph"])}</p>
<h2>Summary</h2>{_summary_table(summary)}<h2>Classes</h2>{_balance_table(summary["balance"])}
{sections}<h2>Settings</h2><pre>{html.escape(_settings_text(summary))}</pre></body></html>
"""


def _summary_table(summary: dict) -> str:
    splits = summary["splits"]
    head = "".join(f"<th>{html.escape(split)}</th>" for split in splits)
    rows = "".join(
        f'<tr><td><a href="#{kind}">{kind}</a></td>' + "".join(f"<td>{by_split.get(split, 0)}</td>" for split in splits)
        + f"<td>{html.escape(KINDS[kind])}</td></tr>" for kind, by_split in summary["counts"].items())
    if not rows:
        rows = f'<tr><td colspan="{len(splits) + 2}">nothing found</td></tr>'
    return f"<table><tr><th>kind</th>{head}<th>meaning</th></tr>{rows}</table>"


def _balance_table(balance: dict) -> str:
    splits = list(balance["counts"])
    names = list(next(iter(balance["counts"].values()), {}))
    head = "".join(f"<th>{html.escape(split)}</th>" for split in splits)
    rows = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(
        f"<td>{balance['counts'][split].get(name, 0)}</td>" for split in splits) + "</tr>" for name in names)
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in balance["notes"])
    return f"<table><tr><th>class</th>{head}</tr>{rows}</table>" + (f"<ul>{notes}</ul>" if notes else "")


def _section(kind: str, findings: list, pixels_of) -> str:
    shown = findings[:SHOWN_PER_KIND]
    more = f" ({len(shown)} of {len(findings)} shown; issues.csv lists all)" if len(findings) > len(shown) else ""
    figures = "".join(_figure(finding, pixels_of) for finding in shown)
    return (f'<h2 id="{kind}">{kind}: {len(findings)}{more}</h2><p>{html.escape(KINDS[kind])}.</p>'
            f'<div class="gallery">{figures}</div>')


def _figure(finding, pixels_of) -> str:
    pictures = [_img(pixels_of(finding.path), finding.path)]
    if finding.kind in PAIR_KINDS:
        pictures.append(_img(pixels_of(finding.duplicate_of), finding.duplicate_of))
    labels = (f"<br>{html.escape(finding.given)} → {html.escape(finding.suggested)}"
              if finding.kind == "label" else "")
    copy = f"<br>copy of {html.escape(finding.duplicate_of)}" if finding.duplicate_of else ""
    pair = ' class="pair"' if finding.kind in PAIR_KINDS else ""
    return (f"<figure{pair}>{''.join(pictures)}<figcaption>{html.escape(finding.path)} ({finding.split}){labels}"
            f"{copy}<br>score {finding.score:.3f}; {html.escape(finding.detail)}</figcaption></figure>")


def _img(pixels, name: str) -> str:
    if pixels is None:
        return f'<img alt="{html.escape(name)} (no picture)" src="data:,">'
    return f'<img alt="{html.escape(name)}" src="{thumbnail_uri(pixels)}">'


def _settings_text(summary: dict) -> str:
    import json

    keep = {key: summary[key] for key in ("data", "settings", "folds", "accuracy", "wall_s", "versions")
            if key in summary}
    return json.dumps(keep, indent=2)
