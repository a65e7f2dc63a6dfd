import json

import numpy as np
import pytest

from helpers import run_cli
from imagerec import data, models
from imagerec.artefacts import loading
from imagerec.training import recipes, run, warmstart
from imagerec.errors import UserError


def _three_classes(dataset):
    """The synthetic data with its first three classes only, under new names: another task."""
    keep_train, keep_test = dataset.y_train < 3, dataset.y_test < 3
    return data.Dataset(np.asarray(dataset.x_train)[keep_train], dataset.y_train[keep_train],
                        np.asarray(dataset.x_test)[keep_test], dataset.y_test[keep_test], ("x", "y", "z"), "three")


def test_matching_layers_are_loaded_and_the_head_is_new_for_new_classes(airbench_run, dataset):
    source = warmstart.read_run(airbench_run)
    net = models.build_model("airbench_small", 3, (32, 32, 3))
    record = warmstart.apply(net, source, ("x", "y", "z"))
    assert record["new"] == ["logits_unscaled"] and "whiten" in record["loaded"] and "block3_conv2" in record["loaded"]
    trained = loading.load_model(airbench_run).keras_model
    np.testing.assert_array_equal(net.get_layer("block2_conv1").kernel.numpy(),
                                  warmstart.layers_with_weights(trained)["block2_conv1"].kernel.numpy())
    same_classes = models.build_model("airbench_small", 4, (32, 32, 3))
    assert warmstart.apply(same_classes, source, dataset.class_names)["new"] == []  # the head is kept too


def test_init_from_an_earlier_run_trains_a_new_task_and_records_what_it_loaded(airbench_run, dataset, tmp_path,
                                                                               capsys):
    recipe = recipes.get_recipe("airbench_small", epochs=1, batch_size=32)
    result = run.train(_three_classes(dataset), recipe, tmp_path / "run", init_from=airbench_run, verbose=2,
                         report=False)
    assert result.metrics["init_from"]["new"] == ["logits_unscaled"]
    assert "layers loaded, 1 new (logits_unscaled)" in capsys.readouterr().out
    # One epoch on filters learned before already separates the classes (chance: 1/3).
    assert result.metrics["test_accuracy"] >= 0.6
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert settings["init_from"] == str(airbench_run)


def test_a_run_of_another_model_family_or_a_missing_run_is_refused_before_anything_is_written(seed_run, dataset,
                                                                                                 tmp_path):
    with pytest.raises(UserError, match="no layer of .* matches the airbench_small model"):
        run.train(dataset, recipes.get_recipe("airbench_small", epochs=1, batch_size=32), tmp_path / "a",
                    init_from=seed_run, verbose=0)
    result = run_cli("train", "--data", tmp_path, "--init-from", tmp_path / "nowhere", "--out", tmp_path / "b")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "does not exist" in result.stderr and not (tmp_path / "b").exists()
