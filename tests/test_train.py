import json

import pytest

from imagerec import data, recipes, train
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
        train._prepare_run_dir(tmp_path / "run")
    assert (tmp_path / "run" / "model.keras").read_text() == "an earlier run"
