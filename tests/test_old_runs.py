"""Run directories written before the package had rooms still load, predict, evaluate, export, serve and resume.

`fixtures/run_v1.json` is what main at 8004006 (the flat layout) wrote for a tiny airbench_small run and for an
interrupted one: every file name, the JSON and CSV files as written, the Keras configs of the .keras and .h5
files (whose layers are named `imagerec>PatchWhitening`, `imagerec>TestTimeViews`, `imagerec>TestTimeAverage`,
in module `imagerec.layers`), and the backup's metadata. The run directories are rebuilt here from it: the
configs as recorded, with weights of the architecture they describe, under the recorded names. A changed run
file name or registered Keras name fails these tests; so does a recipe setting renamed (resume compares them).
"""

import asyncio
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from imagerec import data, workflows
from imagerec.artefacts import layout, loading
from imagerec.training import recipes, run

from helpers import StopAfterFirstEpoch, write_synthetic_folder

RECORD = json.loads((Path(__file__).parent / "fixtures" / "run_v1.json").read_text())
FINISHED, INTERRUPTED = RECORD["finished"], RECORD["interrupted"]


@pytest.fixture(scope="module")
def old_data(tmp_path_factory):
    sizes = RECORD["data"]
    return write_synthetic_folder(tmp_path_factory.mktemp("old-data"), sizes["train_per_class"],
                                  sizes["test_per_class"])


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    """The finished run directory as main at 8004006 wrote it."""
    folder = tmp_path_factory.mktemp("old") / "run"
    folder.mkdir()
    for name, text in FINISHED["texts"].items():
        (folder / name).write_text(text)
    model = keras.saving.deserialize_keras_object(json.loads(FINISHED["keras_archive"]["config.json"]))
    _write_keras_file(folder / _recorded("model.keras"), model)
    model.save_weights(folder / _recorded(".weights.h5"))
    _write_h5_file(folder / _recorded("imagerecognition_tf_cifar.h5"), model)
    model.export(str(folder / "saved_model" / "my_model"), format="tf_saved_model", verbose=False)
    _write_recorded_manifest(folder)
    return folder


def _recorded(suffix: str) -> str:
    """The one recorded file name ending in `suffix`."""
    names = [name for name in FINISHED["files"] if name.endswith(suffix) and "/" not in name]
    assert len(names) == 1, names
    return names[0]


def _write_keras_file(path: Path, model) -> None:
    """A .keras zip of the recorded config.json and metadata.json, and weights for the model they describe."""
    weights = path.with_name("weights-only.weights.h5")
    model.save_weights(weights)
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in FINISHED["keras_archive"].items():
            archive.writestr(name, text)
        archive.writestr("model.weights.h5", weights.read_bytes())
    weights.unlink()


def _write_h5_file(path: Path, model) -> None:
    """A legacy HDF5 model whose config attributes are the recorded ones (module `imagerec.layers`)."""
    model.save(path)
    with h5py.File(path, "r+") as h5:
        for key, value in FINISHED["h5_attributes"].items():
            h5.attrs[key] = value


def _write_recorded_manifest(folder: Path) -> None:
    """The recorded manifest (same format, same file list), with the SHA-256 of the files rebuilt here."""
    manifest = json.loads(FINISHED["texts"]["manifest.json"])
    rebuilt = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                     if path.is_file() and path.name != "manifest.json")
    assert sorted(manifest["files"]) == [name for name in rebuilt if name not in FINISHED["texts"] or
                                         name == "model.json"]
    manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_the_run_directory_layout_is_the_one_earlier_runs_wrote():
    recorded = set(FINISHED["files"])
    files = {layout.SETTINGS_FILE, layout.HISTORY_CSV, layout.HISTORY_FILE, layout.METRICS_FILE,
             layout.MODEL_INFO_FILE, layout.MANIFEST_FILE, layout.KERAS_FILE, layout.H5_FILE, layout.WEIGHTS_FILE,
             f"{layout.SAVED_MODEL_DIR}/saved_model.pb", f"{layout.REPORT_DIR}/report.html",
             *layout.CURVE_FILES.values()}
    assert files <= recorded
    backup = {f"{layout.BACKUP_DIR}/{layout.BACKUP_WEIGHTS}", f"{layout.BACKUP_DIR}/{layout.BACKUP_METADATA}"}
    assert backup | {layout.SETTINGS_FILE, layout.HISTORY_CSV} == set(INTERRUPTED["files"])


def test_a_run_written_before_loads_safely_in_every_format_and_predicts_alike(old_run, old_data):
    dataset = data.load_dataset(str(old_data), progress=False)
    native = loading.load_model(old_run)  # safe mode: the recorded config's registered names resolve
    probabilities = native.predict_proba(dataset.x_test)
    assert probabilities.shape == (len(dataset.y_test), 4) and native.class_names == dataset.class_names
    for format_name, name in layout.MODEL_FILES.items():
        other = loading.load_model(old_run / name)  # .h5 and SavedModel vouched for by the recorded manifest
        assert other.format == format_name
        np.testing.assert_allclose(other.predict_proba(dataset.x_test), probabilities, atol=1e-5)


def test_a_run_written_before_evaluates_reports_predicts_and_exports(old_run, old_data, tmp_path):
    result = workflows.evaluate_model(old_run, str(old_data))
    assert result["count"] == 4 * RECORD["data"]["test_per_class"] and 0 <= result["accuracy"] <= 1
    report = workflows.report_run(old_run, str(old_data), out_dir=tmp_path / "report")
    assert Path(report["path"]).is_file()
    files = sorted((old_data / "test").rglob("*.png"))[:3]
    predictions, errors = workflows.predict_paths(old_run, files, top_k=2)
    assert len(predictions) == 3 and not errors
    exported = workflows.export_run(old_run, "keras", tmp_path / "exports" / "model.keras", str(old_data),
                                    check_images=8, calibration_images=8)
    assert exported.max_abs_difference <= 1e-5
    loading.load_model(tmp_path / "exports" / "model.keras")


def test_an_export_folder_written_before_loads(old_run, tmp_path):
    """An export folder is a model file, model.json and manifest.json, named as in the run directory."""
    folder = tmp_path / "exports"
    folder.mkdir()
    shutil.copy(old_run / layout.KERAS_FILE, folder / "model.keras")
    info = {**json.loads(FINISHED["texts"]["model.json"]), "exported_from": str(old_run / layout.KERAS_FILE)}
    (folder / "model.json").write_text(json.dumps(info))
    manifest = {**json.loads(FINISHED["texts"]["manifest.json"]), "files": {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("model.keras", "model.json")}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert loading.load_model(folder / "model.keras").class_names == tuple(info["class_names"])


def test_a_run_written_before_serves(old_run):
    httpx = pytest.importorskip("httpx")
    from imagerec.serve.app import create_app

    classifier = loading.load_model(old_run)
    app = create_app(classifier)
    instances = np.zeros((2, *classifier.input_shape), np.uint8).tolist()

    async def ask():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imagerec.test", timeout=60) as client:
            return await client.post("/v1/models/cifar10:predict", json={"instances": instances})

    response = asyncio.run(ask())
    assert response.status_code == 200, response.text
    assert np.asarray(response.json()["predictions"]).shape == (2, 4)


def test_a_run_interrupted_before_resumes(old_data, tmp_path):
    """The recorded run.json, history.csv and backup metadata, with a backup of the same net's training state."""
    dataset = data.load_dataset(str(old_data), progress=False)
    settings = json.loads(INTERRUPTED["texts"]["run.json"])
    recipe = recipes.get_recipe("airbench_small", epochs=2, batch_size=16,
                                mixed_precision=settings["recipe"]["mixed_precision"])
    today = tmp_path / "today"
    with pytest.raises(KeyboardInterrupt):  # the training state of epoch 1, written by today's Keras
        run.train(dataset, recipe, today, seed=RECORD["seed"], verbose=0, report=False,
                  callbacks=[StopAfterFirstEpoch()])
    assert _listing(today) == INTERRUPTED["files"]  # today's code names an interrupted run's files alike
    old = tmp_path / "old"
    (old / layout.BACKUP_DIR).mkdir(parents=True)
    for name, text in INTERRUPTED["texts"].items():
        (old / name).write_text(text)
    (old / layout.BACKUP_DIR / layout.BACKUP_METADATA).write_text(INTERRUPTED["backup_metadata"])
    shutil.copy(tmp_path / "today" / layout.BACKUP_DIR / layout.BACKUP_WEIGHTS, old / layout.BACKUP_DIR)
    result = run.train(dataset, recipe, old, seed=RECORD["seed"], resume=True, verbose=0, report=False)
    assert [record["epoch"] for record in result.history] == [1, 2]
    assert loading.load_model(old).class_names == dataset.class_names
    finished = [name for name in FINISHED["files"] if not name.startswith(layout.REPORT_DIR + "/")]
    assert _listing(old) == finished  # and a finished one's (report=False: no report/)


def _listing(folder: Path) -> list:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
