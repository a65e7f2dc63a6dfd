"""Atomic file writes: an interrupted run never leaves a half-written file.

Every artefact is written under a temporary name in its final folder, flushed to disk, then renamed over
the final name with `os.replace` (atomic on POSIX): readers see the old file or the new one, never a part.
"""

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path


def _fsync_path(path: Path) -> None:
    if path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                _fsync_path(child)
        return
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(final_path, suffix: str = ""):
    """Yield a temporary path beside `final_path`; on success move it into place atomically.

    `suffix` is kept at the end of the temporary name because Keras picks the format from it
    (`.keras`, `.h5`, `.weights.h5`). Works for files and for directories (a SavedModel).
    On failure the temporary is removed and the previous `final_path`, if any, is left untouched.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final_path)
    handle, name = tempfile.mkstemp(prefix=f".{final_path.name}.{os.getpid()}-", suffix=".tmp" + suffix,
                                    dir=final_path.parent)
    os.close(handle)
    temporary = Path(name)
    temporary.unlink()  # writers such as model.export want to create the path themselves
    try:
        yield temporary
        _fsync_path(temporary)
        _replace(temporary, final_path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def remove_stale_temporaries(final_path: Path) -> list:
    """Remove what writers of `final_path` that were killed (kill -9, a power cut) left beside it: temporaries
    named by `atomic_path` for a process that no longer runs. Those of running processes, this one included,
    are theirs. Returns the paths removed."""
    pattern = re.compile(re.escape(f".{final_path.name}.") + r"(\d+)-[^/]*\.tmp" + r".*")
    removed = []
    for sibling in final_path.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match and not _process_runs(int(match.group(1))):
            shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _replace(temporary: Path, final_path: Path) -> None:
    # os.replace cannot put a directory over a non-empty directory: move the old one aside first.
    if temporary.is_dir() and final_path.exists():
        old = final_path.with_name(f".{final_path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final_path, old)
        os.replace(temporary, final_path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, final_path)


def write_text(path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path, data) -> None:
    """`data` as JSON; NaN and infinities (a diverged loss) become null: JSON has no such numbers, and Python's
    json would write a bare NaN that other readers refuse."""
    write_text(path, json.dumps(_finite(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_csv(path, columns, rows) -> None:
    """Rows (sequences in `columns`' order) as a CSV with a header, quoted where needed (csv module)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_json_object(path):
    """The JSON object (a dict) in the file at `path`, or None when it is missing, unreadable or not an object."""
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
