import dataclasses
import json
import shutil

import numpy as np
import pytest

from imagerec import data
from imagerec.artefacts import layout, loading, rundir
from imagerec.training import recipes, run
from imagerec.errors import UserError


def test_train_api_runs_both_phases_and_writes_the_run_directory(dataset, tmp_path):
    recipe = recipes.get_recipe("seed", model="tiny", epochs=3, augmented_epochs=1, batch_size=64)
    result = run.train(dataset, recipe, tmp_path / "run", verbose=0, report=False)
    assert [record["phase"] for record in result.history] == ["plain", "plain", "augmented"]
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    for record in result.history:
        assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(record)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["epochs"] == result.history
    csv_rows = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + 3 and "val_accuracy" in csv_rows[0]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(result.history[-1]["val_accuracy"], abs=1e-6)
    assert set(metrics["per_class_accuracy"]) == set(dataset.class_names)
    assert metrics["data"]["train_count"] == 240 and metrics["data"]["skipped_count"] == 0
    assert metrics["versions"]["tensorflow"] and metrics["wall_s"] >= metrics["train_wall_s"] > 0
    assert not list((tmp_path / "run").glob(".*tmp*"))  # no temporary left behind
    assert result.report is None and not (tmp_path / "run" / "report").exists()
    assert_keras_own_batch_norm(result.model.keras_model)


def assert_keras_own_batch_norm(model):
    """Training's fused BatchNorm kernel stays out of what a run saves: plain Keras loads its files."""
    import keras

    from imagerec.models import layers

    found = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert found and not any(isinstance(layer, layers.FusedBatchNormalization) for layer in found)


def test_train_refuses_a_run_directory_that_holds_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_text("an earlier run")
    with pytest.raises(UserError, match="already holds files"):
        rundir.check_new(tmp_path / "run")
    assert (tmp_path / "run" / "model.keras").read_text() == "an earlier run"


def test_airbench_recipe_trains_saves_and_reports_through_the_api(dataset, tmp_path):
    from imagerec.evaluation import evaluate

    recipe = recipes.get_recipe("airbench", model="airbench_small", epochs=3, batch_size=32, whiten_bias_epochs=1,
                                lookahead_start_epoch=1)
    result = run.train(dataset, recipe, tmp_path / "run", verbose=0)
    # The synthetic classes are learnable: 3 short epochs must beat chance (25%) clearly.
    assert result.metrics["test_accuracy"] >= 0.6
    # The returned model is the saved one, usable as any loaded model.
    assert evaluate.evaluate(result.model, dataset.x_test, dataset.y_test)["accuracy"] == \
        pytest.approx(result.metrics["test_accuracy"], abs=1e-9)
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["top1_accuracy"] == pytest.approx(result.metrics["test_accuracy"], abs=1e-9)
    assert result.report["path"].endswith("report.html") and (tmp_path / "run" / "report" / "accuracy.png").is_file()
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    assert {record["phase"] for record in result.history} == {"train"}
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    assert info["model"] == "airbench_small" and info["test_time_augmentation"] is True
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["forward_flops_per_image"] == 6 * metrics["model"]["net_forward_flops_per_image"]
    weights = loading.load_model(tmp_path / "run" / layout.WEIGHTS_FILE).predict_proba(dataset.x_test[:16])
    keras_file = loading.load_model(tmp_path / "run" / layout.KERAS_FILE).predict_proba(dataset.x_test[:16])
    assert np.abs(weights - keras_file).max() <= 1e-5
    assert_keras_own_batch_norm(result.model.keras_model)


def test_a_model_that_does_not_suit_the_recipe_is_refused(dataset, tmp_path):
    airbench_nets = "airbench, airbench_medium, airbench_medium_silu, airbench_silu, airbench_small, airbench_small_silu"
    with pytest.raises(UserError, match=f"trains {airbench_nets}; 'tiny' is of the tutorial"):
        run.train(dataset, recipes.get_recipe("airbench", model="tiny", epochs=1), tmp_path / "a", verbose=0)
    with pytest.raises(UserError, match="seed recipe trains seed, tiny; 'airbench_small' is of the airbench"):
        run.train(dataset, recipes.get_recipe("seed", model="airbench_small", epochs=1, augmented_epochs=0),
                    tmp_path / "b", verbose=0)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_epoch(dataset, tmp_path):
    import keras

    recipe = recipes.get_recipe("seed", model="tiny", epochs=3, augmented_epochs=0, batch_size=64)

    def poison(epoch, logs=None):  # in the second epoch, turn a weight into NaN
        if epoch == 1:
            model = poisoner.model
            model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan, np.float32))

    poisoner = keras.callbacks.LambdaCallback(on_epoch_begin=poison)
    with pytest.raises(UserError, match="NaN or infinite.*`resume`"):
        run.train(dataset, recipe, tmp_path / "run", verbose=0, callbacks=[poisoner])
    backup = layout.backup_dir(tmp_path / "run")
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    assert not (tmp_path / "run" / "metrics.json").exists()
    # The kept backup is the healthy first epoch: every weight finite.
    import h5py

    with h5py.File(backup / "latest.weights.h5", "r") as handle:
        arrays = []
        handle.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    assert arrays and all(np.isfinite(array).all() for array in arrays if np.asarray(array).dtype.kind == "f")


def test_resume_refuses_a_finished_run_and_different_options(dataset, tmp_path):
    recipe = recipes.get_recipe("seed", model="tiny", epochs=1, augmented_epochs=0, batch_size=64)
    run.train(dataset, recipe, tmp_path / "run", verbose=0, report=False)
    with pytest.raises(UserError, match="already finished"):
        run.train(dataset, recipe, tmp_path / "run", verbose=0, resume=True)
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.raises(UserError, match="differ.*batch_size"):
        run.train(dataset, dataclasses.replace(recipe, batch_size=32), tmp_path / "run", verbose=0, resume=True)


# ---------------------------------------------------------------- resume: every epoch exactly once

def _synthetic_dataset(count: int = 128, classes: int = 4) -> data.Dataset:  # in memory: no decoding
    """Random 32x32 images whose mean brightness depends on the class (learnable, made here, no files)."""
    rng = np.random.default_rng(0)
    labels = np.arange(count, dtype=np.int32) % classes
    images = rng.integers(0, 128, (count, 32, 32, 3)) + 30 * labels[:, None, None, None]
    return data.Dataset(images.astype(np.uint8), labels, images[:32].astype(np.uint8), labels[:32],
                        tuple(f"c{index}" for index in range(classes)), source="synthetic")


class _EpochLog:
    """Callbacks recording the epochs a fit runs, and optionally interrupting it like Ctrl-C: in `epoch`
    (0-based) after batch `batch`, or just after the epoch's backup when `batch` is None."""

    def __init__(self, stop_epoch=None, stop_batch=None):
        import keras

        self.epochs = []
        log = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                log.epochs.append(epoch)
                log.current = epoch

            def on_train_batch_end(self, batch, logs=None):
                if log.current == stop_epoch and batch == stop_batch:
                    raise KeyboardInterrupt

            def on_epoch_end(self, epoch, logs=None):
                if epoch == stop_epoch and stop_batch is None:
                    raise KeyboardInterrupt

        self.callback = Callback()


SEED_RECIPE = recipes.get_recipe("seed", model="tiny", epochs=4, augmented_epochs=2, batch_size=32)
AIRBENCH_RECIPE = recipes.get_recipe("airbench", model="airbench_small", epochs=3, batch_size=32,
                                     whiten_bias_epochs=1, lookahead_start_epoch=1, lookahead_every=2)
RESUME_CASES = {  # recipe, interrupted in epoch (0-based), after batch (None: after the epoch's backup)
    "seed killed in phase 1": (SEED_RECIPE, 1, 1),
    "seed killed at the phase boundary": (SEED_RECIPE, 1, None),
    "seed killed in phase 2": (SEED_RECIPE, 3, 2),
    "airbench killed mid-run": (AIRBENCH_RECIPE, 1, None),
}


@pytest.fixture(scope="module")
def uninterrupted_weights(tmp_path_factory):
    """Final weights of one uninterrupted deterministic run per recipe."""
    weights = {}
    for recipe in (SEED_RECIPE, AIRBENCH_RECIPE):
        result = run.train(_synthetic_dataset(), recipe, tmp_path_factory.mktemp(recipe.name) / "run",
                             verbose=0, deterministic=True, report=False)
        weights[recipe.name] = result.model.keras_model.get_weights()
    return weights


@pytest.mark.parametrize("case", RESUME_CASES, ids=list(RESUME_CASES))
def test_resume_runs_every_epoch_once_and_ends_where_an_uninterrupted_run_ends(case, uninterrupted_weights,
                                                                                tmp_path):
    recipe, stop_epoch, stop_batch = RESUME_CASES[case]
    dataset, run_dir = _synthetic_dataset(), tmp_path / "run"
    interrupted = _EpochLog(stop_epoch, stop_batch)
    with pytest.raises(KeyboardInterrupt):
        run.train(dataset, recipe, run_dir, verbose=0, deterministic=True, callbacks=[interrupted.callback],
                    report=False)
    completed = stop_epoch if stop_batch is not None else stop_epoch + 1
    resumed = _EpochLog()
    result = run.train(dataset, recipe, run_dir, verbose=0, deterministic=True, resume=True,
                         callbacks=[resumed.callback], report=False)
    total = recipe.epochs
    assert resumed.epochs == list(range(completed, total))  # only what was left, each once
    assert [record["epoch"] for record in result.history] == list(range(1, total + 1))
    if isinstance(recipe, recipes.SeedRecipe):
        assert [record["phase"] for record in result.history] == ["plain"] * 2 + ["augmented"] * 2
    final = result.model.keras_model.get_weights()
    assert len(final) == len(uninterrupted_weights[recipe.name])
    assert all(np.array_equal(a, b) for a, b in zip(final, uninterrupted_weights[recipe.name]))


def test_train_takes_a_data_source_and_a_recipe_name_and_checks_options_before_loading(tmp_path):
    with pytest.raises(UserError, match="unknown recipe"):
        run.train(str(tmp_path / "no-data"), "turbo", tmp_path / "run")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "model.keras").write_text("an earlier run")
    with pytest.raises(UserError, match="already holds files"):  # not "data path does not exist"
        run.train(str(tmp_path / "no-data"), "airbench_small", tmp_path / "full")
    with pytest.raises(UserError, match="`val_split` must be between 0 and 1"):
        run.train(str(tmp_path / "no-data"), "airbench_small", tmp_path / "run", data_options={"val_split": 2})
    assert not (tmp_path / "run").exists()


@pytest.mark.integration
def test_real_cifar_images_train_save_and_load_in_every_format(cifar_subset, tmp_path):

    recipe = recipes.get_recipe("airbench_small", epochs=2, batch_size=64)
    result = run.train(str(cifar_subset), recipe, tmp_path / "run", verbose=0,
                         data_options={"cache_dir": tmp_path / "cache"}, report=False)
    assert result.metrics["data"]["class_names"][0] == "airplane" and result.metrics["data"]["train_count"] == 300
    images = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache").x_test[:32]
    reference = result.model.predict_proba(images)
    assert reference.shape == (32, 10)
    for format_name in layout.MODEL_FILES:
        loaded = loading.load_model(layout.model_path(tmp_path / "run", format_name))
        np.testing.assert_allclose(loaded.predict_proba(images), reference, atol=1e-5)


def test_skewed_classes_train_with_balanced_weights_a_held_out_validation_and_an_honest_report(photo_folder, tmp_path):
    from imagerec import data

    dataset = data.load_dataset(str(photo_folder), image_size=48, cache_dir=tmp_path / "cache", progress=False)
    recipe = recipes.get_recipe("airbench_small", epochs=4, batch_size=16, class_weight="balanced")
    result = run.train(dataset, recipe, tmp_path / "run", verbose=0, validation="holdout",
                         data_options={"val_split": 0.25})
    metrics = result.metrics
    assert metrics["validation"] == "holdout" and metrics["data"]["validation_count"] == 12 + 8 + 5 + 3
    assert metrics["data"]["train_count"] == 112 - 28 and metrics["data"]["test_count"] == 32  # test/ untouched
    assert all("val_accuracy" in record for record in result.history)  # validated on the hold-out each epoch
    counts = {"red_stripes": 36, "green_rings": 24, "blue_checks": 15, "yellow_cross": 9}  # less the hold-out
    expected = {name: 84 / (4 * count) for name, count in counts.items()}
    assert metrics["class_weights"] == pytest.approx(expected, abs=1e-4)
    assert 0 <= metrics["test_balanced_accuracy"] <= 1
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["balanced_accuracy"] == pytest.approx(metrics["test_balanced_accuracy"], abs=1e-9)
    assert [values["support"] for values in report["per_class"].values()] == [8, 8, 8, 8]
    assert "balanced accuracy" in (tmp_path / "run" / "report" / "report.html").read_text()


def test_validation_defaults_to_the_test_split_for_the_seed_recipe_only_and_refuses_nonsense():
    assert run.resolve_validation("auto", recipes.get_recipe("seed")) == "test"
    assert run.resolve_validation("auto", recipes.get_recipe("airbench_small")) == "none"
    with pytest.raises(UserError, match="`validation` must be one of"):
        run.resolve_validation("sometimes", recipes.get_recipe("seed"))
    with pytest.raises(UserError, match="`class_weight` must be one of"):
        recipes.get_recipe("seed", class_weight="inverse")


# ---------------------------------------------------------------- resume from damaged state (issue 20)

@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """An airbench run stopped by Ctrl-C just after the backup of its 2nd of 3 epochs (the backup's previous
    copy holds epoch 1)."""
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        run.train(_synthetic_dataset(), AIRBENCH_RECIPE, run_dir, verbose=0, report=False,
                    callbacks=[_EpochLog(1, None).callback])
    return run_dir


DAMAGE = {  # file in the run directory, its new content
    "garbage run.json": ("run.json", b"{not json"),
    "run.json a list": ("run.json", b"[1, 2]"),
    "garbage backup metadata": ("backup/training_metadata.json", b"\x00garbage"),
    "garbage history.csv": ("history.csv", b"garbage\n\x00\x01,2\n"),
}


@pytest.mark.parametrize("case", DAMAGE, ids=list(DAMAGE))
def test_resuming_damaged_state_is_one_user_error(case, interrupted_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    name, content = DAMAGE[case]
    (run_dir / name).write_bytes(content)
    if "metadata" in name:  # and its previous copy: nothing left to fall back on
        (run_dir / (name + ".bkp")).write_bytes(content)
    with pytest.raises(UserError, match="damaged"):
        run.train(_synthetic_dataset(), AIRBENCH_RECIPE, run_dir, verbose=0, report=False, resume=True)


def test_a_truncated_last_backup_resumes_from_the_one_before_and_says_so(interrupted_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    weights = run_dir / "backup" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    resumed = _EpochLog()
    result = run.train(_synthetic_dataset(), AIRBENCH_RECIPE, run_dir, verbose=0, report=False, resume=True,
                         callbacks=[resumed.callback])
    assert resumed.epochs == [1, 2]  # from the previous backup (1 epoch done), each left epoch once
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "damaged (latest.weights.h5 is unreadable); resuming from the one before" in said
