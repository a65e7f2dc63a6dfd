"""The run directory's files: names, the model description, resume state and the lookups."""

import json

import pytest

from imagerec.artefacts import layout, model_info, rundir
from imagerec.errors import UserError


def test_model_info_round_trips_and_reads_older_files(tmp_path):
    info = model_info.ModelInfo(("cat", "dog"), (32, 32, 3), "airbench_small", True)
    model_info.write_model_info(tmp_path, info)
    assert model_info.folder_model_info(tmp_path) == info
    (tmp_path / layout.MODEL_INFO_FILE).write_text(json.dumps({"class_names": ["a"], "input_shape": [8, 8, 3]}))
    assert model_info.folder_model_info(tmp_path) == model_info.ModelInfo(("a",), (8, 8, 3))  # an export's, before
    (tmp_path / layout.MODEL_INFO_FILE).write_text('["not", "a", "description"]')
    assert model_info.folder_model_info(tmp_path) is None


def test_describing_folders_are_the_artefacts_folder_and_a_nested_saved_models_run(tmp_path):
    run = tmp_path / "run"
    assert layout.describing_folders(run / layout.KERAS_FILE) == [run]
    assert layout.describing_folders(run / layout.SAVED_MODEL_DIR) == [run / "saved_model", run]
    assert layout.describing_folders(tmp_path / "exports" / "model" / "1") == [tmp_path / "exports" / "model"]


def test_a_runs_data_source_is_found_from_the_run_or_any_of_its_models(tmp_path):
    run = tmp_path / "run"
    (run / layout.SAVED_MODEL_DIR).mkdir(parents=True)
    (run / layout.KERAS_FILE).write_text("a model")
    rundir.write_metrics(run, {"data": {"source": "/data/flowers"}})
    for path in (run, run / layout.KERAS_FILE, run / layout.SAVED_MODEL_DIR):
        assert rundir.data_source(path) == "/data/flowers"
    assert rundir.data_source(tmp_path / "elsewhere.keras") is None


def test_completed_epochs_come_from_the_backup_and_later_history_rows_go(tmp_path):
    import h5py

    (tmp_path / layout.BACKUP_DIR).mkdir()
    (tmp_path / layout.BACKUP_DIR / "training_metadata.json").write_text(json.dumps({"epoch": 2}))
    with h5py.File(tmp_path / layout.BACKUP_DIR / "latest.weights.h5", "w") as weights:  # Keras' weights file
        weights["vars/0"] = [1.0, 2.0]
    rows = "epoch,accuracy\n0,0.5\n1,0.6\n2,0.7\n"  # epoch 2 (0-based) logged, then killed before its backup
    (tmp_path / layout.HISTORY_CSV).write_text(rows)
    assert rundir.completed_epochs(tmp_path) == 2
    history = rundir.read_history_csv(tmp_path, lambda epoch: "train")
    assert [record["epoch"] for record in history] == [1, 2]
    assert history[1] == {"epoch": 2, "phase": "train", "accuracy": 0.6}


def test_new_finished_and_resumable_run_directories_are_told_apart(tmp_path):
    run = rundir.check_new(tmp_path / "run")
    (run / layout.SETTINGS_FILE).write_text("{}")
    with pytest.raises(UserError, match="already holds files"):
        rundir.check_new(run)
    assert rundir.check_resumable(run) == run
    rundir.write_metrics(run, {})
    with pytest.raises(UserError, match="already finished"):
        rundir.check_resumable(run)
    assert rundir.check_finished(run) == run
    with pytest.raises(UserError, match="not a finished run"):
        rundir.check_finished(tmp_path)


def test_resume_must_bring_the_runs_own_settings(tmp_path):
    settings = {"recipe": {"epochs": 4, "batch_size": 32}, "seed": 0}
    rundir.record_settings(tmp_path, settings, resume=False)
    rundir.record_settings(tmp_path, settings, resume=True)  # the same: fine
    with pytest.raises(UserError, match="differ.*batch_size, seed"):
        rundir.record_settings(tmp_path, {"recipe": {"epochs": 4, "batch_size": 64}, "seed": 1}, resume=True)
