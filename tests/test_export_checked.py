"""Every export format is written, run by its own runtime, and matches the Keras model it came from."""

import json

import numpy as np
import pytest

from imagerec import export, workflows
from imagerec.artefacts import classifier as classifier_module
from imagerec.artefacts import layout, loading, manifest
from imagerec.export import writers
from imagerec.errors import UserError

from helpers import run_cli

OPTIONAL_RUNTIME = {"tflite": "ai_edge_litert", "onnx": "onnxruntime"}


@pytest.fixture(scope="module")
def classifier(airbench_run):
    return loading.load_model(airbench_run)


def _needs_runtime(format_name):
    for module in {"tflite": ["ai_edge_litert"], "onnx": ["onnxruntime", "tf2onnx"]}.get(format_name, []):
        pytest.importorskip(module, reason=f"{format_name} export needs the 'export' extra")


@pytest.mark.parametrize("format_name", export.FORMATS)
def test_float_export_matches_keras_in_its_own_runtime(format_name, classifier, dataset, tmp_path):
    _needs_runtime(format_name)
    out = tmp_path / ("model" if format_name == "savedmodel" else f"model{export.SUFFIXES[format_name]}")
    result = export.export_model(classifier, out, format_name, dataset, check_images=len(dataset.y_test))
    assert result.path.exists() and result.size_bytes > 10_000
    assert result.images == len(dataset.x_test) and result.top1_agreement == 1.0
    assert result.max_abs_difference <= export.FLOAT_TOLERANCE
    # Independently of export_model's own check: the file on disk gives Keras' probabilities.
    again = export.run_export(result.path, format_name, dataset.x_test[:32])
    np.testing.assert_allclose(again, classifier.predict_proba(dataset.x_test[:32]), atol=export.FLOAT_TOLERANCE)
    assert manifest.check(result.path)[0] == manifest.VERIFIED
    assert json.loads((result.path.parent / "model.json").read_text())["class_names"] == list(dataset.class_names)


def test_saved_model_goes_into_numbered_versions_that_imagerec_loads(classifier, dataset, tmp_path):
    first = export.export_model(classifier, tmp_path / "cifar10", "savedmodel", dataset, check_images=16)
    second = export.export_model(classifier, tmp_path / "cifar10", "savedmodel", dataset, check_images=16)
    assert (first.path.name, second.path.name) == ("1", "2")
    with pytest.raises(UserError, match="never overwritten"):
        export.export_model(classifier, tmp_path / "cifar10", "savedmodel", dataset, check_images=16, version=1)
    loaded = loading.load_model(second.path)  # vouched for by the export's manifest: no --trust-model
    assert loaded.format == "savedmodel" and loaded.class_names == dataset.class_names


def test_export_into_the_run_directory_keeps_the_run_loadable(airbench_run, dataset, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(airbench_run, run_dir)
    info = (run_dir / "model.json").read_text()
    export.export_arrays(loading.load_model(run_dir), run_dir / "copy.keras", "keras", dataset.x_test[:8])
    assert (run_dir / "model.json").read_text() == info  # the run's own, with its architecture name
    assert loading.load_model(run_dir / layout.WEIGHTS_FILE).format == "weights"
    assert loading.load_model(run_dir / layout.H5_FILE).format == "h5"  # its manifest still vouches for it
    other = classifier_module.Classifier.from_keras(loading.load_model(run_dir).keras_model, list("wxyz"))
    with pytest.raises(UserError, match="other classes"):
        export.export_arrays(other, run_dir / "other.keras", "keras", dataset.x_test[:8])


@pytest.mark.parametrize("format_name", ["tflite", "onnx"])
def test_int8_export_is_smaller_and_reports_its_accuracy(format_name, classifier, dataset, tmp_path):
    _needs_runtime(format_name)
    suffix = export.SUFFIXES[format_name]
    float_result = export.export_model(classifier, tmp_path / f"model{suffix}", format_name, dataset, check_images=32)
    result = export.export_model(classifier, tmp_path / f"model_int8{suffix}", format_name, dataset,
                                 quantize="int8", check_images=60, calibration_images=64)
    assert result.size_bytes < float_result.size_bytes / 2  # int8 weights: about a quarter of float32
    assert result.accuracy_drop is not None and abs(result.accuracy_drop) < 0.2
    assert result.top1_agreement > 0.7
    assert manifest.check(result.path)[0] == manifest.VERIFIED


def test_bad_export_requests_are_user_errors(classifier, dataset, tmp_path):
    with pytest.raises(UserError, match="must end in .onnx"):
        export.export_arrays(classifier, tmp_path / "model.tflite", "onnx", dataset.x_test[:4])
    with pytest.raises(UserError, match="supported for: tflite, onnx"):
        export.export_arrays(classifier, tmp_path / "model.keras", "keras", dataset.x_test[:4], quantize="int8")
    with pytest.raises(UserError, match="unknown export format"):
        export.export_arrays(classifier, tmp_path / "model.pt", "torch", dataset.x_test[:4])
    saved_model = loading.load_model(classifier.path.rsplit("/", 1)[0] + "/" + layout.SAVED_MODEL_DIR)
    with pytest.raises(UserError, match="export from the run directory"):
        export.export_arrays(saved_model, tmp_path / "model.onnx", "onnx", dataset.x_test[:4])
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("module, quantize", [("onnxruntime", None), ("sympy", "int8")])
def test_a_missing_library_names_the_extra_to_install(module, quantize, classifier, dataset, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # import now fails as if it were not installed
    with pytest.raises(UserError, match=rf"needs the {module} package: pip install 'imagerec\[export\]'"):
        export.export_model(classifier, tmp_path / "model.onnx", "onnx", dataset, check_images=4, quantize=quantize)
    assert not (tmp_path / "model.onnx").exists()


def test_export_command_checks_and_reports(airbench_run, image_folder, tmp_path):
    pytest.importorskip("ai_edge_litert")
    result = run_cli("export", airbench_run, "--format", "tflite", "--out", tmp_path / "m.tflite", "--json",
                     "--check-images", 50)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["images"] == 50 and report["max_abs_difference"] <= export.FLOAT_TOLERANCE
    assert report["accuracy_keras"] >= 0.6  # the model's own data: the run's, found without --data
    assert (tmp_path / "m.tflite").is_file()
    bad = run_cli("export", airbench_run, "--format", "h5", "--quantize", "int8", "--data", image_folder)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "supported for" in bad.stderr
    (tmp_path / "a-file").write_text("not a folder")
    unwritable = run_cli("export", airbench_run, "--format", "keras", "--out", tmp_path / "a-file" / "m.keras",
                         "--data", image_folder, "--check-images", 8)
    assert unwritable.returncode == 2 and unwritable.stderr.strip().count("\n") == 0, unwritable.stderr
    assert "a-file is a file, not a folder" in unwritable.stderr


def test_int8_calibrates_on_training_images_from_python_as_from_the_cli(airbench_run, dataset, tmp_path,
                                                                        monkeypatch):
    # Issue 12: the CLI calibrated on training images and the library on the check (test) images, so the two
    # gave different int8 models. Now the library picks both, and the CLI is one call to it.
    pytest.importorskip("ai_edge_litert")
    seen = []
    write = writers.write
    monkeypatch.setattr(writers, "write", lambda model, path, format_name, quantize, calibration:
                        seen.append(np.asarray(calibration)) or write(model, path, format_name, quantize, calibration))
    workflows.export_run(airbench_run, "tflite", tmp_path / "python.tflite", quantize="int8", check_images=16,
                         calibration_images=32)
    training = {image.tobytes() for image in dataset.x_train}
    assert len(seen[0]) == 32 and all(image.tobytes() in training for image in seen[0])
    monkeypatch.undo()
    result = run_cli("export", airbench_run, "--format", "tflite", "--quantize", "int8", "--out", tmp_path / "cli.tflite",
                     "--check-images", 16, "--calibration-images", 32)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "cli.tflite").read_bytes() == (tmp_path / "python.tflite").read_bytes()


def test_a_64_px_model_exports_at_its_size_and_matches_keras(photo_run, tmp_path):
    pytest.importorskip("ai_edge_litert")
    result = run_cli("export", photo_run, "--format", "tflite", "--out", tmp_path / "photos.tflite", "--json",
                     "--check-images", 16)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["max_abs_difference"] <= export.FLOAT_TOLERANCE and report["images"] == 16
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "photos.tflite"))
    assert list(interpreter.get_input_details()[0]["shape"][1:]) == [64, 64, 3]
