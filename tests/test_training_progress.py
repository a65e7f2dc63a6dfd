import itertools

import keras
import numpy as np

from imagerec.training import progress, recipes, run


def _fit_with(callback, steps: int = 5, epochs: int = 2):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((8 * steps, 4), np.float32), np.zeros(8 * steps, np.int64)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[callback])


def test_a_line_once_the_interval_has_passed_with_steps_rate_and_time_left():
    lines = []
    clock = itertools.count(0.0, 31.0)  # every reading 31 s after the last: a line after every step
    _fit_with(progress.StepProgress(8, clock=lambda: next(clock), write=lines.append))
    assert len(lines) == 2 * 5
    assert lines[0].startswith("epoch 1/2: step 1/5, 0 images/s, ~124 s left in this epoch (loss ")
    assert lines[-1].startswith("epoch 2/2: step 5/5") and "~0 s left" in lines[-1]


def test_no_line_before_the_interval():
    lines = []
    clock = itertools.count(0.0, 1.0)
    _fit_with(progress.StepProgress(8, interval_s=30, clock=lambda: next(clock), write=lines.append))
    assert lines == []


def test_the_line_says_what_it_knows():
    assert progress.progress_line(0, 6, 10, 47, 100.0, 1024) == (
        "epoch 1/6: step 10/47, 102 images/s, ~370 s left in this epoch")
    assert progress.progress_line(2, None, 3, None, 3.0, 10, loss=1.5) == "epoch 3/?: step 3/?, 10 images/s (loss 1.5000)"


def test_a_run_logging_to_a_file_prints_progress_and_a_quiet_one_does_not(dataset, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)
    recipe = recipes.get_recipe("seed", model="tiny", epochs=1, augmented_epochs=0, batch_size=64)
    run.train(dataset, recipe, tmp_path / "log", verbose=2, report=False)
    logged = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1/1: step ")]
    assert logged and all("images/s" in line for line in logged)
    run.train(dataset, recipe, tmp_path / "quiet", verbose=0, report=False)
    assert "images/s" not in capsys.readouterr().out
