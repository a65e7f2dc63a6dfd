"""What the doctor finds: one `Finding` per file and kind, the kinds it knows (with what each score means),
and the order findings are listed in (issues.csv, issues.json, the page)."""

import dataclasses

from imagerec.data.exclude import FINDING_COLUMNS

# kind → what it means and what its score is (higher: more certain). The page and the README list these.
KINDS = {
    "label": "the given label looks wrong: cleanlab's confident learning on out-of-sample probabilities; score "
             "1 - p(given label), the suggested label is the most probable one",
    "exact_duplicate": "the same decoded pixels as `duplicate_of`, in the same split; score 1",
    "near_duplicate": "a near copy (re-encoded, resized, shifted, recoloured) of `duplicate_of`, in the same split; "
                      "score the closeness (see detail)",
    "leak": "a test image with an exact or near copy in the training split (`duplicate_of`): it inflates test "
            "accuracy; score the closeness",
    "unreadable": "not an image the decoder can read (skipped by training); score 1",
    "blank": "one flat colour; score 1 - pixel spread",
    "low_information": "very little detail (grey-level entropy under 3 bits, cleanvision's threshold); score "
                       "1 - entropy / 3",
    "dark": "too dark (99th percentile of brightness under 0.32, cleanvision's); score 1 - that / 0.32",
    "light": "too light (5th percentile of brightness over 0.95, cleanvision's); score how far over",
    "blurry": "blurred (cleanvision's edge score under 0.29 at 64 px); score 1 - edge score / 0.29",
    "grayscale": "no colour in a set of colour images; score 1",
    "odd_size": "far smaller or larger than the others (outside 3 interquartile ranges of sqrt(area), "
                "cleanvision's rule); score the distance in ranges",
    "odd_aspect_ratio": "shorter side under 0.35 of the longer (cleanvision's); score 1 - ratio / 0.35",
}
PAIR_KINDS = ("exact_duplicate", "near_duplicate", "leak")  # findings that name the copy they have


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem with one file: `path` relative to the data's root (or "train#41" for a source without
    files), its `split`, `kind` (a key of KINDS), `score` (higher: more certain), the `given` and `suggested`
    labels (label findings), the file it copies (`duplicate_of`) and a `detail` in words."""

    path: str
    split: str
    kind: str
    score: float
    given: str = ""
    suggested: str = ""
    duplicate_of: str = ""
    detail: str = ""

    def row(self) -> tuple:
        return tuple(getattr(self, column) if column != "score" else round(float(self.score), 4)
                     for column in FINDING_COLUMNS)

    def as_dict(self) -> dict:
        return dict(zip(FINDING_COLUMNS, self.row()))


def ordered(findings) -> list:
    """By kind (KINDS' order), then most certain first, then path."""
    rank = {kind: index for index, kind in enumerate(KINDS)}
    return sorted(findings, key=lambda finding: (rank[finding.kind], -finding.score, finding.path))


def counts(findings) -> dict:
    """{kind: {split: count}} of the kinds found."""
    table = {}
    for finding in findings:
        table.setdefault(finding.kind, {}).setdefault(finding.split, 0)
        table[finding.kind][finding.split] += 1
    return {kind: table[kind] for kind in KINDS if kind in table}
