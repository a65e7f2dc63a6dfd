"""The real `imagerec` command: end to end through subprocesses, error cases in-process."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from helpers import modules_imported_by, run_cli
from imagerec import cli, models
from imagerec.artefacts import layout


def test_train_through_the_cli_prints_a_summary(seed_run):
    metrics = json.loads((seed_run / "metrics.json").read_text())
    assert metrics["recipe"]["name"] == "seed"
    assert metrics["model"]["parameters"] == models.count_params(models.build_model("seed", 4))  # 4 classes here
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_airbench_recipe_through_the_cli_saves_a_test_time_augmented_model(airbench_run):
    metrics = json.loads((airbench_run / "metrics.json").read_text())
    assert metrics["recipe"]["name"] == "airbench_small" and metrics["recipe"]["epochs"] == 3
    assert metrics["test_accuracy"] >= 0.6  # learnable classes: far above chance (25%)
    assert json.loads((airbench_run / "model.json").read_text())["test_time_augmentation"] is True
    history = json.loads((airbench_run / "history.json").read_text())
    assert [record["epoch"] for record in history["epochs"]] == [1, 2, 3]
    report = json.loads((airbench_run / "report" / "report.json").read_text())  # written after training by default
    assert report["top1_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert (airbench_run / "report" / "report.html").is_file()


def test_evaluate_can_write_a_report_for_any_saved_model(seed_run, image_folder, tmp_path):
    result = run_cli("evaluate", seed_run / "imagerecognition_tf_cifar.h5", "--data", image_folder, "--json",
                     "--report", tmp_path / "report", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads(result.stdout)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["top1_accuracy"] == pytest.approx(evaluation["accuracy"], abs=1e-9)
    assert report["format"] == "h5" and evaluation["report"].endswith("report.html")


def test_evaluate_prints_the_same_accuracy_for_every_format(seed_run):
    accuracies = set()
    for name in (layout.KERAS_FILE, layout.H5_FILE, layout.WEIGHTS_FILE, layout.SAVED_MODEL_DIR):
        result = run_cli("evaluate", seed_run / name, "--json")  # on the data the run was trained on
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert report["count"] == 60
        accuracies.add(round(report["accuracy"], 6))
    assert len(accuracies) == 1


def test_predict_labels_a_folder_of_mixed_images_and_reports_a_bad_file(seed_run, image_folder, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(next((image_folder / "test" / "green_rings").glob("*.jpg")), folder / "cat.jpg")
    Image.new("RGBA", (300, 200), (10, 200, 30, 128)).save(folder / "big.png")
    Image.new("L", (20, 20), 128).save(folder / "gray.webp")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = run_cli("predict", seed_run, folder, "--json", "--top-k", 3)
    assert result.returncode == 1, result.stderr[-2000:]  # 1: some files were skipped
    report = json.loads(result.stdout)
    assert sorted(item["path"].rsplit("/", 1)[1] for item in report["predictions"]) == \
        ["big.png", "cat.jpg", "gray.webp"]
    for item in report["predictions"]:
        assert len(item["top"]) == 3
        probabilities = [top["probability"] for top in item["top"]]
        assert probabilities == sorted(probabilities, reverse=True)
    assert [error["path"].rsplit("/", 1)[1] for error in report["errors"]] == ["broken.jpg"]
    assert "broken.jpg" in result.stderr and "Traceback" not in result.stderr
    table = run_cli("predict", seed_run / layout.H5_FILE, folder / "cat.jpg")
    assert table.returncode == 0 and "cat.jpg" in table.stdout and "%" in table.stdout


def _exit_code(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:  # argparse exits by itself for bad options
        return exit_.code


def _one_line_error(capsys, argv, match):
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize("argv, match", [
    (["train", "--epochs", "-1"], "--epochs must be 1 or more"),
    (["train", "--set", "batch_size=0"], "batch_size must be at least 1"),
    (["train", "--set", "batch_size=big"], "batch_size is a whole number, got 'big'"),
    (["train", "--set", "nonsense"], "a setting is field=value"),
    (["train", "--val-split", "1.5"], "--val-split must be between 0 and 1"),
    (["train", "--epochs", "ten"], "invalid int value"),
    (["train", "--mixed-precision", "fp8"], "invalid choice: 'fp8'"),
    (["train", "--backend", "torch"], "invalid choice: 'torch'"),
    (["train", "--recipe", "turbo"], "unknown recipe 'turbo'"),
    (["train", "--recipe", "seed", "--epochs", "3", "--set", "augmented_epochs=4"], "augmented_epochs must be"),
    (["train", "--set", "augmented_epochs=2"], "recipe 'airbench_muon' has no setting 'augmented_epochs'"),
    (["frobnicate"], "invalid choice"),
    (["train", "--seed", "-5"], "--seed must be a whole number from 0 to 4294967295"),
    (["train", "--seed", "4294967296"], "--seed must be a whole number from 0 to 4294967295"),
    (["train", "--out", ""], "--out is an empty name"),
    (["serve", "model.keras", "--port", "70000"], "--port must be a port number"),
    (["serve", "model.keras", "--grpc-port", "0"], "--grpc-port must be a port number"),
    (["serve", "model.keras", "--port", "8123", "--grpc-port", "8123"], "--grpc-port must differ from --port"),
    (["serve", "model.keras", "--max-queue", "0"], "--max-queue must be a positive number"),
    (["export", "model.keras", "--format", "onnx", "--version", "2"], "--version applies to the savedmodel format"),
    # issue 20: values that raised a traceback, or were accepted and made nonsense
    (["train", "--recipe", "airbench_small", "--set", "lookahead_every=0"], "lookahead_every must be 1 or more"),
    (["train", "--set", "learning_rate=inf"], "learning_rate must be a finite number"),
    (["train", "--set", "label_smoothing=2"], "label_smoothing must be from 0"),
    (["train", "--set", "lr_peak_at=2"], "lr_peak_at must be from 0 to 1"),
    (["train", "--data", ""], "--data is an empty name"),
    (["export", "model.keras", "--format", "keras", "--check-images", "-5"], "--check-images must be a whole number"),
    (["export", "model.keras", "--format", "savedmodel", "--version", "-1"], "--version must be a whole number"),
    (["serve", "model.keras", "--max-batch-size", "1000000000"], "--max-batch-size must be a positive number up to"),
    (["serve", "model.keras", "--max-body-mb", "1e30"], "--max-body-mb must be a positive number up to"),
    # issue 23: robustness and calibration options
    (["evaluate", "model.keras", "--corruptions", "blurr"], "unknown corruption 'blurr' in --corruptions"),
    (["evaluate", "model.keras", "--corruptions", "frost"], "frost photographs that are not redistributed"),
    (["evaluate", "model.keras", "--corruptions", "all", "--severities", "0-9"], "--severities must lie within 1-5"),
    (["evaluate", "model.keras", "--corruptions", "all", "--corruption-images", "-1"],
     "--corruption-images must be 0 (all) or more"),
    (["report", "run", "--robustness", "--severities", "x"], "--severities must be like 1-5"),
    (["train", "--set", "calibration_images=-1"], "calibration_images must be 0 (no calibration) or more"),
])
def test_nonsense_options_are_one_line_errors(capsys, argv, match):
    _one_line_error(capsys, argv, match)


def test_missing_data_path_is_a_one_line_error_and_leaves_no_run_directory(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")],
                    "data path does not exist")
    assert not (tmp_path / "run").exists()


def test_bad_input_errors_are_clean_on_the_real_stderr(tmp_path):
    result = run_cli("predict", tmp_path / "missing.keras", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"imagerec: error: model path does not exist: {tmp_path / 'missing.keras'}"


def test_empty_data_folder_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")],
                    "no train/ folder")


def test_missing_model_is_a_one_line_error(capsys, tmp_path):
    _one_line_error(capsys, ["predict", str(tmp_path / "model.keras"), str(tmp_path)], "does not exist")


def test_corrupt_model_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated zip")
    _one_line_error(capsys, ["evaluate", str(tmp_path / "model.keras"), "--data", str(tmp_path)],
                    "cannot load model")


def test_predict_on_missing_path_and_empty_folder(capsys, seed_run, tmp_path):
    _one_line_error(capsys, ["predict", str(seed_run), str(tmp_path / "nope.jpg")], "path does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["predict", str(seed_run), str(tmp_path / "empty")], "folder has no files")


def test_offline_default_data_is_a_one_line_error_without_traceback(tmp_path):
    # An empty KERAS_HOME and a proxy on a closed local port make the download fail here as it does offline.
    offline = {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = run_cli("train", "--out", tmp_path / "run", "--epochs", 1, env=offline)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("imagerec: error:")]
    assert len(errors) == 1 and "--data" in errors[0]


def _train_command(*arguments):
    return [sys.executable, "-m", "imagerec", "train", *map(str, arguments)]


def test_a_killed_run_resumes_from_its_last_completed_epoch(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    options = ["--recipe", "airbench_small", "--data", image_folder, "--out", run_dir, "--epochs", 12,
               "--set", "batch_size=32", "--cache-dir", tmp_path / "cache", "--no-report"]
    metadata = run_dir / "backup" / "training_metadata.json"
    process = subprocess.Popen(_train_command(*options), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if json.loads(metadata.read_text())["epoch"] >= 3:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model.keras").exists()
    assert not [path for path in run_dir.rglob("*") if ".tmp" in path.name]  # no half-written file of ours
    completed = None
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        try:
            completed = json.loads((run_dir / "backup" / name).read_text())["epoch"]
            break
        except (OSError, ValueError):
            continue
    assert completed is not None and 3 <= completed < 12

    resumed = run_cli("train", *options, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs_run = [int(number) for number in re.findall(r"^Epoch (\d+)/12", resumed.stdout, re.MULTILINE)]
    assert epochs_run == list(range(completed + 1, 13))  # only the remaining epochs
    history = json.loads((run_dir / "history.json").read_text())
    assert [record["epoch"] for record in history["epochs"]] == list(range(1, 13))  # none missing or repeated
    assert (run_dir / "metrics.json").is_file() and (run_dir / "model.keras").is_file()
    assert not (run_dir / "backup").exists()  # a finished run needs no backup


def test_deterministic_runs_give_bit_identical_weights_and_history(image_folder, tmp_path):
    runs = []
    for index in range(2):
        run_dir = tmp_path / f"run{index}"
        result = run_cli("train", "--recipe", "airbench_small", "--data", image_folder, "--out", run_dir, "--epochs", 2,
                         "--set", "batch_size=64", "--seed", 3, "--deterministic", "--no-report",
                         "--cache-dir", tmp_path / "cache")
        assert result.returncode == 0, result.stderr[-3000:]
        assert not (run_dir / "report").exists()
        runs.append(run_dir)
    first, second = (_weight_arrays(run / "gfgModelWeights.weights.h5") for run in runs)
    assert len(first) == len(second) > 0
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    histories = [json.loads((run / "history.json").read_text()) for run in runs]
    assert histories[0] == histories[1]


def _weight_arrays(path) -> list:
    import h5py

    arrays = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_nonsense_training_options_are_one_line_errors(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--resume"], "--resume needs --out")
    _one_line_error(capsys, ["train", "--strategy", "ring"], "invalid choice")
    _one_line_error(capsys, ["train", "--set", "jit_compile=maybe"], "jit_compile must be true, false or auto")


def test_tensorboard_logs_are_written_into_the_run_directory(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "--recipe", "airbench_small", "--data", image_folder, "--out", run_dir, "--epochs", 1,
                     "--set", "batch_size=64", "--tensorboard", "--no-report", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((run_dir / "tensorboard" / "train").glob("events.out.tfevents.*"))


def test_tensorboard_missing_is_a_one_line_error_naming_the_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    _one_line_error(capsys, ["train", "--tensorboard", "--data", str(tmp_path)], "pip install 'imagerec[tensorboard]'")


def test_an_unknown_model_is_refused_before_data_or_files(capsys, tmp_path):
    run_dir = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "no-data-here"), "--set", "model=resnet9000", "--out", str(run_dir)]
    _one_line_error(capsys, argv, "unknown model 'resnet9000'")  # not "data path does not exist"
    assert not run_dir.exists()
    _one_line_error(capsys, argv, "unknown model 'resnet9000'")  # and again: not "already holds files"


def test_names_from_models_and_files_reach_the_terminal_escaped(seed_run, image_folder, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(seed_run, run_dir)
    info = json.loads((run_dir / layout.MODEL_INFO_FILE).read_text())
    info["class_names"] = ["\x1b[2J\x1b[31mred"] + info["class_names"][1:]
    (run_dir / layout.MODEL_INFO_FILE).write_text(json.dumps(info))
    images = tmp_path / "images"
    images.mkdir()
    for index, photo in enumerate(sorted((image_folder / "test" / "red_stripes").glob("*.jpg"))[:5]):
        shutil.copy(photo, images / f"{index}.jpg")
    (images / "bad\nimagerec: forged line.jpg").write_bytes(b"not an image")
    result = run_cli("predict", run_dir, images, "--top-k", 4, "--trust-model")  # model.json edited: trusted
    assert "\x1b" not in result.stdout + result.stderr  # no raw escape code
    assert "\\x1b[31mred" in result.stdout
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "bad\\nimagerec: forged line.jpg" in skipped[0]
    assert not any(line.startswith("imagerec: forged") for line in result.stderr.splitlines())


def test_a_model_with_two_or_spatial_outputs_is_refused_by_every_command(capsys, tmp_path):
    import keras

    inputs = keras.Input(shape=(32, 32, 3))
    features = keras.layers.Conv2D(10, 3, padding="same", activation="softmax")(inputs)
    flat = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    keras.Model(inputs, [flat, flat]).save(tmp_path / "two.keras")
    keras.Model(inputs, features).save(tmp_path / "spatial.keras")
    image = tmp_path / "image.png"
    Image.new("RGB", (32, 32)).save(image)
    _one_line_error(capsys, ["predict", str(tmp_path / "two.keras"), str(image)], "has 2 outputs")
    _one_line_error(capsys, ["predict", str(tmp_path / "spatial.keras"), str(image)], "output shape is (None, 32, 32, 10)")
    result = run_cli("serve", tmp_path / "spatial.keras", "--port", _free_port(), timeout=120)
    assert result.returncode == 2 and "not an image classifier" in result.stderr  # refuses to start
    assert len(result.stderr.strip().splitlines()) == 1


def test_corrupt_keras_file_and_non_gzip_archive_say_what_they_are(capsys, tmp_path):
    (tmp_path / "model.keras").write_bytes(b"garbage, not a zip")
    _one_line_error(capsys, ["predict", str(tmp_path / "model.keras"), str(tmp_path)], "not a .keras file")
    (tmp_path / "data.tar.gz").write_bytes(b"plain text, not gzip")
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "data.tar.gz"), "--out", str(tmp_path / "run")],
                    "not a gzip file")


def test_an_unknown_function_in_a_model_names_it_and_the_way_out(tmp_path):
    script = f"""
import keras
@keras.saving.register_keras_serializable(package="mine")
def doubled(x):
    return 2 * x
inputs = keras.Input((32, 32, 3))
keras.Model(inputs, keras.layers.Dense(10, activation=doubled)(keras.layers.Flatten()(inputs))).save({str(tmp_path / "custom.keras")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    Image.new("RGB", (32, 32)).save(tmp_path / "image.png")
    result = run_cli("predict", tmp_path / "custom.keras", tmp_path / "image.png")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "'mine>doubled'" in result.stderr and "--trust-model" in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- people's own images at their own size

def test_training_at_64_px_on_larger_photos_beats_chance_and_every_command_follows_the_size(photo_run, photo_folder,
                                                                                            tmp_path):
    metrics = json.loads((photo_run / "metrics.json").read_text())
    assert metrics["data"]["image_shape"] == [64, 64, 3]
    assert json.loads((photo_run / "model.json").read_text())["input_shape"] == [64, 64, 3]
    assert metrics["test_accuracy"] >= 0.6  # 4 classes: chance is 0.25
    evaluated = run_cli("evaluate", photo_run, "--json")  # the run's own data, decoded at the model's size
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    predicted = run_cli("predict", photo_run, photo_folder / "test" / "red_stripes", "--json", "--top-k", 1)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    labels = [row["top"][0]["label"] for row in json.loads(predicted.stdout)["predictions"]]
    assert len(labels) == 8 and labels.count("red_stripes") >= 5


def test_the_seed_net_refuses_another_size_before_writing_anything(photo_folder, tmp_path):
    result = run_cli("train", "--recipe", "seed", "--data", photo_folder, "--image-size", 64, "--out",
                     tmp_path / "run", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "takes 32x32 images only" in result.stderr and "--image-size 32" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("size", ["0", "5000", "big", "64x"])
def test_a_nonsense_image_size_is_one_line_and_writes_nothing(size, tmp_path):
    result = run_cli("train", "--data", tmp_path, "--image-size", size, "--out", tmp_path / "run")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "--image-size" in result.stderr and not (tmp_path / "run").exists()


SERVER_PACKAGES = ("uvicorn", "starlette", "h11", "fastapi", "grpc", "prometheus_client", "tensorflow_serving")


def test_help_imports_neither_tensorflow_nor_keras_nor_a_server_package():
    loaded = modules_imported_by("from imagerec import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
                            "for command in ('train', 'serve', 'export'):\n    try:\n        cli.main([command, '--help'])\n"
                            "    except SystemExit:\n        pass")
    assert not loaded & {"tensorflow", "keras", "jax", *SERVER_PACKAGES}


@pytest.mark.parametrize("command", [["recipes"], ["predict", "nowhere/model.keras", "nowhere.png"],
                                     ["export", "nowhere", "--format", "onnx"], ["evaluate", "nowhere"]])
def test_no_command_but_serve_imports_a_server_package(command):
    loaded = modules_imported_by(f"from imagerec import cli\ncli.main({command!r})")
    assert not loaded & set(SERVER_PACKAGES)


def test_epochs_stretches_both_phases_of_a_two_phase_recipe(capsys, tmp_path):
    from imagerec.training import recipes

    cases = {("seed", 1): (1, 0), ("seed", 3): (3, 1), ("seed", 30): (30, 10),
             ("finetune", 2): (2, 1), ("finetune", 12): (12, 6)}
    for (name, epochs), expected in cases.items():
        recipe = recipes.get_recipe(name, scaled_epochs=epochs)
        field = recipe.phase_field
        assert (recipe.epochs, getattr(recipe, field)) == expected
    # `--set` stays exact: a phase given explicitly is kept as given
    assert recipes.get_recipe("seed", scaled_epochs=30, augmented_epochs=2).augmented_epochs == 2
    # the two-phase recipes took a small --epochs with a message about a setting the user never typed
    for argv in (["train", "--recipe", "seed", "--epochs", "1"], ["train", "--recipe", "finetune", "--epochs", "2"]):
        assert cli.main([*argv, "--data", str(tmp_path / "missing")]) == 2
        error = capsys.readouterr().err
        assert "data path does not exist" in error and "augmented_epochs" not in error and "head_epochs" not in error


def test_the_python_api_gives_functions_however_often_it_is_called():
    code = ("import imagerec\nfirst = imagerec.train\nimport imagerec.training.run\n"
            "assert imagerec.train is first and callable(first) and not hasattr(first, '__path__')\n"
            "assert callable(imagerec.evaluate) and callable(imagerec.load_model) and callable(imagerec.create_app)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_corruption_names_in_help_are_the_librarys():
    from imagerec import cli
    from imagerec.data import corruptions

    assert cli.CORRUPTION_NAMES == tuple(corruptions.CORRUPTIONS)
