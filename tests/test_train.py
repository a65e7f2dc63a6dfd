import dataclasses
import json

import numpy as np
import pytest

from imagerec import data, fileio, recipes, train
from imagerec.errors import UserError


def test_train_api_runs_both_phases_and_writes_the_run_directory(cifar_subset, tmp_path):
    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    recipe = recipes.get_recipe("seed", model="tiny", plain_epochs=2, augmented_epochs=1, batch_size=64)
    result = train.train(dataset, recipe, tmp_path / "run", verbose=0)
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
    assert metrics["data"]["train_count"] == 300 and metrics["data"]["skipped_count"] == 0
    assert metrics["versions"]["tensorflow"] and metrics["wall_s"] >= metrics["train_wall_s"] > 0
    assert not list((tmp_path / "run").glob(".*tmp*"))  # no temporary left behind


def test_train_refuses_a_run_directory_that_holds_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_text("an earlier run")
    with pytest.raises(UserError, match="already holds files"):
        fileio.prepare_empty_dir(tmp_path / "run")
    assert (tmp_path / "run" / "model.keras").read_text() == "an earlier run"


def test_fast_recipe_trains_and_saves_through_the_api(cifar_subset, tmp_path):
    import numpy as np

    from imagerec import saving

    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    recipe = recipes.get_recipe("fast", model="fast_small", epochs=3, batch_size=64, whiten_bias_epochs=1,
                                lookahead_start_epoch=1)
    result = train.train(dataset, recipe, tmp_path / "run", verbose=0)
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    assert {record["phase"] for record in result.history} == {"train"}
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    assert info["model"] == "fast_small" and info["test_time_augmentation"] is True
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["forward_flops_per_image"] == 6 * metrics["model"]["net_forward_flops_per_image"]
    weights = saving.load_model(tmp_path / "run" / saving.WEIGHTS_FILE).predict_proba(dataset.x_test[:16])
    keras_file = saving.load_model(tmp_path / "run" / saving.KERAS_FILE).predict_proba(dataset.x_test[:16])
    assert np.abs(weights - keras_file).max() <= 1e-5


def test_a_model_that_does_not_suit_the_recipe_is_refused(cifar_subset, tmp_path):
    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="fast model family"):
        train.train(dataset, recipes.get_recipe("fast", model="tiny", epochs=1), tmp_path / "a", verbose=0)
    with pytest.raises(UserError, match="end in softmax"):
        train.train(dataset, recipes.get_recipe("seed", model="fast_small", epochs=1), tmp_path / "b", verbose=0)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_epoch(cifar_subset, tmp_path):
    import keras

    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    recipe = recipes.get_recipe("seed", model="tiny", plain_epochs=3, augmented_epochs=0, batch_size=64)

    def poison(epoch, logs=None):  # in the second epoch, turn a weight into NaN
        if epoch == 1:
            model = poisoner.model
            model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan, np.float32))

    poisoner = keras.callbacks.LambdaCallback(on_epoch_begin=poison)
    with pytest.raises(UserError, match="NaN or infinite.*--resume"):
        train.train(dataset, recipe, tmp_path / "run", verbose=0, callbacks=[poisoner])
    backup = tmp_path / "run" / train.BACKUP_DIR
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    assert not (tmp_path / "run" / "metrics.json").exists()
    # The kept backup is the healthy first epoch: every weight finite.
    import h5py

    with h5py.File(backup / "latest.weights.h5", "r") as handle:
        arrays = []
        handle.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    assert arrays and all(np.isfinite(array).all() for array in arrays if np.asarray(array).dtype.kind == "f")


def test_resume_refuses_a_finished_run_and_different_options(cifar_subset, tmp_path):
    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    recipe = recipes.get_recipe("seed", model="tiny", plain_epochs=1, augmented_epochs=0, batch_size=64)
    train.train(dataset, recipe, tmp_path / "run", verbose=0)
    with pytest.raises(UserError, match="already finished"):
        train.train(dataset, recipe, tmp_path / "run", verbose=0, resume=True)
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.raises(UserError, match="differ.*batch_size"):
        train.train(dataset, dataclasses.replace(recipe, batch_size=32), tmp_path / "run", verbose=0, resume=True)


def test_bf16_mixed_precision_trains_and_saves_a_float32_model(cifar_subset, tmp_path):
    import keras

    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    recipe = recipes.get_recipe("fast_small", epochs=1, batch_size=64, mixed_precision="bf16")
    seen = []
    compute_dtype = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs=None: seen.append(keras.mixed_precision.global_policy().name))
    result = train.train(dataset, recipe, tmp_path / "run", verbose=0, callbacks=[compute_dtype])
    assert seen == ["mixed_bfloat16"]
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training
    loaded = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    probabilities = np.asarray(loaded(dataset.x_test[:8].astype("float32")))
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert result.metrics["recipe"]["mixed_precision"] == "bf16"


def test_fp16_without_a_gpu_is_a_user_error(cifar_subset, tmp_path):
    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    recipe = recipes.get_recipe("fast_small", epochs=1, batch_size=64, mixed_precision="fp16")
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        train.train(dataset, recipe, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()  # refused before anything was written


# ---------------------------------------------------------------- resume: every epoch exactly once

def _synthetic_dataset(count: int = 128, classes: int = 4) -> data.Dataset:
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


SEED_RECIPE = recipes.get_recipe("seed", model="tiny", plain_epochs=2, augmented_epochs=2, batch_size=32)
FAST_RECIPE = recipes.get_recipe("fast", model="fast_small", epochs=3, batch_size=32, whiten_bias_epochs=1,
                                 lookahead_start_epoch=1, lookahead_every=2)
RESUME_CASES = {  # recipe, interrupted in epoch (0-based), after batch (None: after the epoch's backup)
    "seed killed in phase 1": (SEED_RECIPE, 1, 1),
    "seed killed at the phase boundary": (SEED_RECIPE, 1, None),
    "seed killed in phase 2": (SEED_RECIPE, 3, 2),
    "fast killed mid-run": (FAST_RECIPE, 1, None),
}


@pytest.fixture(scope="module")
def uninterrupted_weights(tmp_path_factory):
    """Final weights of one uninterrupted deterministic run per recipe."""
    weights = {}
    for recipe in (SEED_RECIPE, FAST_RECIPE):
        result = train.train(_synthetic_dataset(), recipe, tmp_path_factory.mktemp(recipe.name) / "run",
                             verbose=0, deterministic=True)
        weights[recipe.name] = result.model.get_weights()
    return weights


@pytest.mark.parametrize("case", RESUME_CASES, ids=list(RESUME_CASES))
def test_resume_runs_every_epoch_once_and_ends_where_an_uninterrupted_run_ends(case, uninterrupted_weights,
                                                                                tmp_path):
    recipe, stop_epoch, stop_batch = RESUME_CASES[case]
    dataset, run_dir = _synthetic_dataset(), tmp_path / "run"
    interrupted = _EpochLog(stop_epoch, stop_batch)
    with pytest.raises(KeyboardInterrupt):
        train.train(dataset, recipe, run_dir, verbose=0, deterministic=True, callbacks=[interrupted.callback])
    completed = stop_epoch if stop_batch is not None else stop_epoch + 1
    resumed = _EpochLog()
    result = train.train(dataset, recipe, run_dir, verbose=0, deterministic=True, resume=True,
                         callbacks=[resumed.callback])
    total = recipe.total_epochs if recipe.kind == "seed" else recipe.epochs
    assert resumed.epochs == list(range(completed, total))  # only what was left, each once
    assert [record["epoch"] for record in result.history] == list(range(1, total + 1))
    if recipe.kind == "seed":
        assert [record["phase"] for record in result.history] == ["plain"] * 2 + ["augmented"] * 2
    final = result.model.get_weights()
    assert len(final) == len(uninterrupted_weights[recipe.name])
    assert all(np.array_equal(a, b) for a, b in zip(final, uninterrupted_weights[recipe.name]))
