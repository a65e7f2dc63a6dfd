import json

import pytest

from imagerec import fileio


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "model.json"
    fileio.write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as temporary:
            temporary.write_text('{"version": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"version": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["model.json"]


def test_atomic_directory_replaces_an_existing_one(tmp_path):
    target = tmp_path / "saved_model" / "my_model"
    for version in ("1", "2"):
        with fileio.atomic_path(target) as temporary:
            temporary.mkdir()
            (temporary / "version").write_text(version)
    assert (target / "version").read_text() == "2"
    assert sorted(path.name for path in target.parent.iterdir()) == ["my_model"]


def test_json_files_hold_null_for_nan_and_infinity(tmp_path):
    fileio.write_json(tmp_path / "metrics.json", {"loss": float("nan"), "values": [1.5, float("inf")]})
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "values": [1.5, None]}


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_temporaries_of_a_writer_killed_with_sigkill_are_removed_by_the_next_write(tmp_path, kind):
    import subprocess
    import sys

    target = tmp_path / ("model.onnx" if kind == "file" else "1")
    suffix = ".onnx" if kind == "file" else ""
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from imagerec import fileio
with fileio.atomic_path(Path({str(target)!r}), suffix={suffix!r}) as temporary:
    temporary.mkdir() if {kind == "folder"} else temporary.write_bytes(b"half an export")
    os.kill(os.getpid(), signal.SIGKILL)
"""])
    assert killed.returncode == -9
    assert [path.name.startswith(f".{target.name}.") for path in tmp_path.iterdir()] == [True]  # left behind
    with fileio.atomic_path(target, suffix=suffix) as temporary:
        temporary.mkdir() if kind == "folder" else temporary.write_bytes(b"a whole export")
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def test_temporaries_of_a_running_writer_are_left_alone(tmp_path):
    import os

    target = tmp_path / "model.onnx"
    theirs = tmp_path / f".model.onnx.{os.getppid()}-abc.tmp.onnx"  # a live process's (our parent's) temporary
    theirs.write_bytes(b"being written")
    fileio.write_text(target, "done")
    assert theirs.exists()
