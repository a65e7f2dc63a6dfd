"""The data doctor: what is wrong with a data set, and which files to leave out of training.

    findings    `Finding` (path, split, kind, score, given, suggested, duplicate_of, detail) and the `KINDS`
    crossval    out-of-sample probabilities: K-fold cross-validation of a fast recipe, every fold model on test
    labels      label issues by cleanlab's confident learning      duplicates  exact and near copies, leaks
    quality     unreadable, blank, dark, light, blurry, grayscale, odd size or aspect (cleanvision's rules)
    summary     doctor.json's numbers and the one-paragraph summary    page  doctor.html
    outputs     every file the doctor writes, all at once            run   `doctor()`: the whole check

`imagerec.doctor(...)` is `run.doctor`; `imagerec train --exclude issues.csv` acts on what it finds.
"""

from imagerec import lazy

_EXPORTS = {"doctor": "run", "DoctorResult": "run", "Finding": "findings", "KINDS": "findings",
            "DEFAULT_RECIPE": "run", "DEFAULT_FOLDS": "run"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy.exports(__name__, _EXPORTS)
