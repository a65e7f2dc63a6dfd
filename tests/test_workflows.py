"""The library's workflows on saved models: the same calls the CLI makes, from Python."""

import json

import pytest

from imagerec import workflows
from imagerec.errors import UserError

from helpers import write_synthetic_folder


def test_evaluate_model_finds_the_runs_data_and_can_write_a_report(airbench_run, tmp_path):
    result = workflows.evaluate_model(airbench_run, report_dir=tmp_path / "report")
    metrics = json.loads((airbench_run / "metrics.json").read_text())
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9) and result["count"] == 60
    assert result["data"] == metrics["data"]["source"] and result["format"] == "keras"
    assert (tmp_path / "report" / "report.html").is_file()


def test_data_with_other_classes_than_the_model_is_refused(airbench_run, tmp_path):
    other = write_synthetic_folder(tmp_path / "other", train_per_class=2, test_per_class=1)
    for folder in list((other / "train").iterdir())[:1] + list((other / "test").iterdir())[:1]:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()  # 3 classes left; the model has 4
    with pytest.raises(UserError, match="the data has 3 classes but the model predicts 4"):
        workflows.evaluate_model(airbench_run, str(other))


def test_report_run_writes_curves_and_settings_from_the_run(airbench_run, tmp_path):
    numbers = workflows.report_run(airbench_run, out_dir=tmp_path / "report")
    assert numbers["path"].endswith("report.html") and numbers["run"]["recipe"]["name"] == "airbench_small"
    assert (tmp_path / "report" / "accuracy.png").is_file() and (tmp_path / "report" / "loss.png").is_file()
    with pytest.raises(UserError, match="not a finished run directory"):
        workflows.report_run(tmp_path)


def test_predict_paths_checks_the_paths_before_loading_the_model(airbench_run, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="model path does not exist"):
        workflows.predict_paths(tmp_path / "no-model.keras", [tmp_path])
    monkeypatch.setattr(workflows.loading, "load_model", lambda *args, **kwargs: pytest.fail("loaded the model"))
    with pytest.raises(UserError, match="path does not exist: .*no-image.jpg"):
        workflows.predict_paths(airbench_run, [tmp_path / "no-image.jpg"])


def test_a_run_that_held_out_validation_images_is_evaluated_from_its_own_cache(photo_folder, tmp_path, monkeypatch):
    from imagerec.training import recipes, run

    options = {"cache_dir": tmp_path / "cache", "image_size": 48}
    trained = run.train(str(photo_folder), recipes.get_recipe("airbench_small", epochs=1, batch_size=16),
                      tmp_path / "run", validation="holdout", data_options=options, report=False, verbose=0)

    def decoded_again(*arguments, **keywords):
        raise AssertionError("the run's data was decoded again")

    monkeypatch.setattr("imagerec.data.images.decode_image", decoded_again)
    result = workflows.evaluate_model(tmp_path / "run", data_options={"cache_dir": tmp_path / "cache"})
    assert result["accuracy"] == pytest.approx(trained.metrics["test_accuracy"], abs=1e-9)
