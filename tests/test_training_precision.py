"""Mixed precision: what auto means on this machine, and a float32 model saved whatever trained."""


import numpy as np
import pytest

from imagerec.training import precision, recipes, run
from imagerec.errors import UserError


def test_bf16_mixed_precision_trains_and_saves_a_float32_model(dataset, tmp_path):
    import keras

    recipe = recipes.get_recipe("airbench_small", epochs=1, batch_size=64, mixed_precision="bf16")
    seen = []
    compute_dtype = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs=None: seen.append(keras.mixed_precision.global_policy().name))
    result = run.train(dataset, recipe, tmp_path / "run", verbose=0, callbacks=[compute_dtype], report=False)
    assert seen == ["mixed_bfloat16"]
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training
    loaded = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    probabilities = np.asarray(loaded(dataset.x_test[:8].astype("float32")))
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert result.metrics["recipe"]["mixed_precision"] == "bf16"


def test_auto_precision_is_bf16_exactly_where_the_cpu_has_bfloat16_and_off_forces_float32(monkeypatch):
    assert recipes.get_recipe("airbench").mixed_precision == "auto" and recipes.get_recipe("seed").mixed_precision == "off"
    monkeypatch.setattr(precision.machine, "accelerator", lambda: None)
    for has_bf16, expected in ((True, "bf16"), (False, "off")):
        monkeypatch.setattr(precision.machine, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        assert precision.resolve_precision("auto") == expected
        assert precision.resolve_precision("off") == "off"
    monkeypatch.setattr(precision.machine, "accelerator", lambda: "NVIDIA H100 80GB HBM3")
    assert precision.resolve_precision("auto") == "bf16"


def test_fp16_without_a_gpu_is_a_user_error(dataset, tmp_path):
    recipe = recipes.get_recipe("airbench_small", epochs=1, batch_size=64, mixed_precision="fp16")
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        run.train(dataset, recipe, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()  # refused before anything was written
