"""Manifests: what they record, where one may stand to vouch for an artefact, and the checked private copy."""

import json

from imagerec.artefacts import layout, manifest


def _artefact(folder, name="model.h5", content=b"weights"):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_manifest_beside_the_artefact_vouches_for_it(tmp_path):
    model = _artefact(tmp_path / "export")
    manifest.record(tmp_path / "export", [model])
    assert manifest.check(model)[0] == manifest.VERIFIED
    model.write_bytes(b"other weights")
    assert manifest.check(model)[0] == manifest.MODIFIED


def test_a_manifest_further_up_vouches_for_nothing_below_it(tmp_path):
    """A manifest.json in /tmp or ~/Downloads must not vouch for /tmp/x/y/model."""
    model = _artefact(tmp_path / "x" / "y")
    manifest.record(tmp_path, [model])  # lists x/y/model.h5, three folders up from nothing imagerec wrote
    assert manifest.check(model)[0] == manifest.UNLISTED
    folder_model = _artefact(tmp_path / "x" / "saved", "saved_model.pb")
    manifest.record(tmp_path, [folder_model.parent])
    assert manifest.check(folder_model.parent)[0] == manifest.UNLISTED


def test_the_run_directory_vouches_for_its_saved_model_and_nothing_else_nested(tmp_path):
    run = tmp_path / "run"
    saved = _artefact(run / "saved_model" / "my_model", "saved_model.pb").parent
    _artefact(saved / "variables", "variables.index", b"index")
    other = _artefact(run / "elsewhere" / "my_model", "saved_model.pb").parent
    manifest.record(run, [saved, other])
    assert manifest.check(saved)[0] == manifest.VERIFIED
    assert manifest.check(other)[0] == manifest.UNLISTED


def test_verified_copy_checks_the_bytes_it_copied(tmp_path):
    run = tmp_path / "run"
    saved = _artefact(run / "saved_model" / "my_model", "saved_model.pb", b"graph").parent
    _artefact(saved / "variables", "variables.index", b"index")
    manifest.record(run, [saved])
    private = tmp_path / "private"
    private.mkdir()
    state, _, copy = manifest.verified_copy(saved, private)
    assert state == manifest.VERIFIED and copy.parent == private
    assert (copy / "saved_model.pb").read_bytes() == b"graph"
    assert (copy / "variables" / "variables.index").read_bytes() == b"index"
    (saved / "extra.txt").write_text("added later")
    other = tmp_path / "private2"
    other.mkdir()
    state, detail, _ = manifest.verified_copy(saved, other)
    assert state == manifest.MODIFIED and "extra.txt was added" in detail


def test_an_unreadable_manifest_vouches_for_nothing(tmp_path):
    model = _artefact(tmp_path)
    (tmp_path / layout.MANIFEST_FILE).write_text(json.dumps({"files": ["not", "a", "dict"]}))
    assert manifest.check(model)[0] == manifest.UNLISTED
