"""report.html: the report's numbers and figures as one page, styles inline and images as data: URIs (nothing is
fetched from anywhere), in the order a user asks."""

import base64
import html
import json
from pathlib import Path


def render_html(report: dict, figures: list, folder, sections) -> str:
    """One HTML page, styles inline and images as data: URIs; nothing is fetched from anywhere. `figures`
    (`report.Figure`s, drawn into `folder`) appear in their sections, in `sections`' order."""
    def pictures(section):
        return "".join(
            f'<figure class="{"wide" if figure.wide else "half"}"><img alt="{html.escape(figure.caption)}" '
            f'src="data:image/png;base64,'
            f'{base64.b64encode((Path(folder) / figure.name).read_bytes()).decode("ascii")}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
            for figure in figures if figure.section == section)

    texts = {"Training": "", "Errors by class": _per_class_html(report), "Calibration": _calibration_html(report),
             "Robustness": _robustness_html(report.get("robustness")), "Mistakes": "",
             "Data": _overview_html(report.get("data")) + _excluded_html((report.get("run") or {}).get("excluded"))}
    body = "".join(f"<section><h2>{section}</h2>{texts[section]}{pictures(section)}</section>"
                   for section in sections if texts[section] or pictures(section))
    settings = html.escape(json.dumps(report.get("run", {}), indent=2))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imagerec report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #999;padding:.2em .6em;text-align:right}}figure{{display:inline-block;margin:1em 1em 1em 0;
vertical-align:top}}figure.half{{max-width:47%}}figure.wide{{max-width:100%}}img{{max-width:100%}}figcaption{{font-size:.9em;color:#333}}
.headline{{font-size:1.15em}}pre{{background:#eee;padding:1em;overflow:auto}}</style></head>
<body><h1>imagerec report</h1><p class="headline">{_headline(report)}</p>{body}
<section><h2>Run</h2><pre>{settings}</pre></section></body></html>
"""


def _headline(report: dict) -> str:
    calibration = report["calibration"]
    text = (f"Model {html.escape(str(report['model']))} ({html.escape(report['format'])}) on {report['count']} test "
            f"images: <b>top-1 accuracy {100 * report['top1_accuracy']:.2f}%</b>, balanced accuracy (mean recall over "
            f"the classes) {100 * report['balanced_accuracy']:.2f}%, top-3 {100 * report['top3_accuracy']:.2f}%, "
            f"expected calibration error {100 * calibration['expected_calibration_error']:.2f}%")
    robustness = report.get("robustness")
    if robustness and robustness.get("mean_corruption_accuracy") is not None:
        text += (f", mean accuracy under {robustness['cifar_c_evaluated']} CIFAR-10-C corruptions "
                 f"{100 * robustness['mean_corruption_accuracy']:.2f}%")
    return text + "."


def _per_class_html(report: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{values[key]:.3f}</td>" for key in ("precision", "recall", "f1"))
        + f"<td>{values['support']}</td></tr>" for name, values in report["per_class"].items())
    averages = "".join(
        f"<tr><th>{name} average</th>" + "".join(f"<td>{values[key]:.3f}</td>" for key in ("precision", "recall", "f1"))
        + "<td></td></tr>" for name, values in report["averages"].items())
    return (f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            f"{rows}{averages}</table>")


def _calibration_html(report: dict) -> str:
    after = report["calibration"]
    before = report.get("calibration_before")
    if before is None:
        return (f"<p>Expected calibration error {100 * after['expected_calibration_error']:.2f}%: the mean gap "
                f"between how confident the model is and how often it is right (no calibration temperature in "
                f"this model).</p>")
    return (f"<p>The model divides its logits by a temperature of {after['temperature']:.3f}, fitted on images it did "
            f"not train on: expected calibration error {100 * before['expected_calibration_error']:.2f}% before, "
            f"<b>{100 * after['expected_calibration_error']:.2f}%</b> after (the mean gap between confidence and "
            f"accuracy); the predicted classes are the same.</p>")


def _robustness_html(robustness) -> str:
    if not robustness:
        return ""
    severities = [str(severity) for severity in robustness["severities"]]
    rows = "".join(
        f"<tr><td>{html.escape(name)}{'' if row['cifar_c'] else ' *'}</td>"
        + "".join(f"<td>{100 * row['accuracy'][severity]:.1f}</td>" if severity in row["accuracy"] else "<td>–</td>"
                  for severity in severities)
        + f"<td><b>{100 * row['mean']:.1f}</b></td></tr>" for name, row in robustness["corruptions"].items())
    mean = robustness["mean_corruption_accuracy"]
    left_out = "; ".join(f"{html.escape(name)}: {html.escape(why)}" for name, why in robustness["left_out"].items())
    return (f"<p>Accuracy (%) on {robustness['count']} test images, clean {100 * robustness['clean_accuracy']:.2f}%"
            + (f"; mean over {robustness['cifar_c_evaluated']} CIFAR-10-C corruptions and their severities "
               f"<b>{100 * mean:.2f}%</b>" if mean is not None else "")
            + f" (corruption seed {robustness['seed']}). * what users meet, not in the mean. Left out: {left_out}.</p>"
            f"<table><tr><th>corruption</th>" + "".join(f"<th>{severity}</th>" for severity in severities)
            + f"<th>mean</th></tr>{rows}</table>")


def _excluded_html(excluded) -> str:
    """A run trained with `--exclude`: how many files it left out, and why (the doctor's kinds)."""
    if not excluded:
        return ""
    kinds = ", ".join(f"{count} {html.escape(str(kind))}" for kind, count in excluded["by_kind"].items())
    return (f"<h3>Left out</h3><p>{excluded['count']} training file(s) left out, listed in "
            f"{html.escape(str(excluded['file']))} ({kinds or 'none'}; the run directory's excluded.csv names them); "
            f"{excluded['kept_in_test']} listed test file(s) were kept in the test split.</p>")


def _overview_html(overview) -> str:
    if not overview:
        return ""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{count}</td><td>{overview['test_counts'][name]}</td></tr>"
                   for name, count in overview["train_counts"].items())
    skipped = "".join(f"<li>{html.escape(str(item))}</li>" for item in overview["skipped"][:20])
    return (f"<p>{html.escape(str(overview['source']))}; test split: "
            f"{html.escape(str(overview['test_split']))}; {overview['skipped_count']} file(s) skipped.</p>"
            f"<table><tr><th>class</th><th>train</th><th>test</th></tr>{rows}</table>"
            + (f"<ul>{skipped}</ul>" if skipped else ""))
