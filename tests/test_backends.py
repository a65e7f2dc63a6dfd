"""The airbench recipe on Keras' JAX backend: the same training as on TensorFlow, models that load under
TensorFlow, and a TensorFlow-free `imagerec train --backend jax`. JAX runs in subprocesses (Keras picks its
backend once per process; this one runs TensorFlow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imagerec import backends, models
from imagerec.artefacts import loading
from imagerec.errors import UserError

pytest.importorskip("jax", reason="the jax extra is not installed (pip install 'imagerec[jax]')")

WORKER = Path(__file__).with_name("backend_worker.py")


def _run(arguments, backend, **options):
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, *arguments], env=env, capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).parent, **options)  # -c code imports no_tensorflow from here
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_airbench_trains_alike_on_jax_and_tensorflow(image_folder, tmp_path):
    start = tmp_path / "start.weights.h5"
    models.build_model("airbench_small", 4).save_weights(start)
    outputs = {}
    for backend in backends.BACKENDS:
        out = tmp_path / f"{backend}.npz"
        no_tensorflow = ["--no-tensorflow"] if backend == "jax" else []
        _run([str(WORKER), str(image_folder), str(start), str(out), *no_tensorflow], backend)
        outputs[backend] = np.load(out)
    tf_run, jax_run = outputs["tensorflow"], outputs["jax"]
    before = models.build_model("airbench_small", 4)
    before.load_weights(start)
    moved = 0
    for index, initial in enumerate(before.get_weights()):
        np.testing.assert_allclose(jax_run[f"arr_{index}"], tf_run[f"arr_{index}"], atol=2e-3, rtol=2e-3)
        moved += not np.allclose(tf_run[f"arr_{index}"], initial)
    assert moved >= 10  # training changed the convolutions, BN biases and statistics, head, whitening bias
    np.testing.assert_allclose(jax_run["probabilities"], tf_run["probabilities"], atol=2e-3)


def test_a_model_trained_on_jax_without_tensorflow_loads_and_predicts_alike_under_tensorflow(image_folder,
                                                                                            tmp_path):
    run_dir = tmp_path / "run"
    code = ("import no_tensorflow\n"
            "from imagerec.cli import main\n"
            f"raise SystemExit(main(['train', '--backend', 'jax', '--recipe', 'airbench_small', '--epochs', '2', "
            f"'--set', 'batch_size=32', '--data', {str(image_folder)!r}, '--out', {str(run_dir)!r}]))")
    result = _run(["-c", code], "tensorflow")  # --backend overrides the environment's
    assert "Keras on jax" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["versions"]["keras_backend"] == "jax"
    assert "savedmodel" not in metrics["files"] and not (run_dir / "saved_model").exists()
    classifier = loading.load_model(run_dir)  # safe mode, manifest checked, under TensorFlow
    from imagerec import data

    dataset = data.load_dataset(str(image_folder))
    probabilities_here = classifier.predict_proba(dataset.x_test)
    np.save(tmp_path / "images.npy", dataset.x_test)
    predict = ("import no_tensorflow, numpy as np\n"
               "from imagerec.artefacts import loading\n"
               f"c = loading.load_model({str(run_dir)!r})\n"
               f"np.save({str(tmp_path / 'jax.npy')!r}, c.predict_proba(np.load({str(tmp_path / 'images.npy')!r})))")
    _run(["-c", predict], "jax")
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), probabilities_here, atol=1e-5)
    accuracy = float(np.mean(probabilities_here.argmax(1) == dataset.y_test))
    assert accuracy == pytest.approx(metrics["test_accuracy"])


def test_on_a_machine_without_tensorflow_or_server_packages_every_command_runs_or_says_what_it_needs(image_folder,
                                                                                                   tmp_path):
    """`imagerec predict/evaluate/export/serve` with no KERAS_BACKEND set: Keras on JAX, what needs TensorFlow or
    the server packages refused in one line (each crashed with ModuleNotFoundError)."""
    run_dir = tmp_path / "run"
    _run(["-c", "import no_tensorflow\nfrom imagerec.cli import main\n"
                f"raise SystemExit(main(['train', '--backend', 'jax', '--recipe', 'airbench_small', '--epochs', '1', "
                f"'--set', 'batch_size=32', '--data', {str(image_folder)!r}, '--out', {str(run_dir)!r}]))"], "jax")
    image = sorted((image_folder / "test").rglob("*.png"))[0]
    commands = {"predict": ["predict", run_dir, image], "evaluate": ["evaluate", run_dir],
                "export keras": ["export", run_dir, "--format", "keras", "--out", tmp_path / "m.keras"],
                "export savedmodel": ["export", run_dir, "--format", "savedmodel", "--out", tmp_path / "sm"],
                "serve": ["serve", run_dir]}
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    results = {}
    for name, command in commands.items():
        code = f"import no_tensorflow\nfrom imagerec.cli import main\nraise SystemExit(main({list(map(str, command))!r}))"
        results[name] = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                       cwd=Path(__file__).parent, env={**env, "JAX_PLATFORMS": "cpu"})
    for name in ("predict", "evaluate", "export keras"):
        assert results[name].returncode == 0, results[name].stderr[-2000:]
    for name, needed in (("export savedmodel", "written by TensorFlow, which is not installed"),
                         ("serve", "needs FastAPI, Starlette, uvicorn and h11")):
        assert results[name].returncode == 2 and needed in results[name].stderr, results[name].stderr[-2000:]
        assert "Traceback" not in results[name].stderr


def test_a_jax_run_resumes_after_an_interruption_and_ends_where_an_uninterrupted_run_ends(image_folder, tmp_path):
    result = _run([str(WORKER), "--resume", str(image_folder), str(tmp_path), "--no-tensorflow"], "jax")
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["epochs_after_resume"] == [1] and outcome["history_epochs"] == [1, 2]
    assert outcome["max_weight_difference"] < 1e-5  # JAX on a CPU: the same numbers, given the same batches


def test_backend_choice_errors_are_one_clear_line(monkeypatch):
    with pytest.raises(UserError, match="unknown backend 'torchy'"):
        backends.use("torchy")
    with pytest.raises(UserError, match="already imported with the tensorflow backend"):
        backends.use("jax")  # this test process imported Keras on TensorFlow
    backends.use("tensorflow")  # the backend it runs: nothing to change


def test_what_needs_tensorflow_is_refused_on_another_backend_before_anything_is_written(dataset, tmp_path,
                                                                                          monkeypatch):
    from imagerec.training import distribute, run

    monkeypatch.setattr(backends, "is_tensorflow", lambda: False)
    monkeypatch.setattr(backends, "current", lambda: "jax")
    with pytest.raises(UserError, match="the seed recipe .* needs the tensorflow backend; this process runs Keras on jax"):
        run.train(dataset, "seed", tmp_path / "run", verbose=0)
    with pytest.raises(UserError, match="deterministic.* needs the tensorflow backend"):
        run.train(dataset, "airbench_small", tmp_path / "run", verbose=0, deterministic=True)
    with pytest.raises(UserError, match="the mirrored strategy is tf.distribute's"):
        distribute.make_strategy("mirrored")
    assert isinstance(distribute.make_strategy("auto"), distribute.SingleDevice)
    assert not (tmp_path / "run").exists()


def test_random_resized_crops_are_the_same_on_jax_as_in_tensorflow(tmp_path):
    """The crops of images of 48 px or more run in JAX's compiled step and in TensorFlow's tf.data alike."""
    from imagerec.training import airbench, augment, recipes

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    plan = airbench.epoch_plan(4, 4, seed=1, epoch=0, translate=2, alternating_flip=True, crop_scale=0.35)
    np.savez(tmp_path / "batch.npz", images=images, offsets=plan["offsets"][0], flips=plan["flips"][0],
             boxes=plan["boxes"][0])
    code = ("import sys, numpy as np; import no_tensorflow; from imagerec import models; from imagerec.training import airbench, recipes; "
            f"batch = dict(np.load({str(tmp_path / 'batch.npz')!r})); "
            "trainer = airbench.AirbenchTrainer(models.build_model('airbench_small', 3, (48, 48, 3)), "
            "recipes.get_recipe('airbench_small')); assert trainer.crop; "
            f"np.save({str(tmp_path / 'jax.npy')!r}, np.asarray(trainer.augmented(batch)))")
    _run(["-c", code], "jax")
    expected = augment.translate_and_flip(augment.resized_crop(images, plan["boxes"][0]), plan["offsets"][0],
                                          plan["flips"][0], 0)
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), np.asarray(expected), atol=1e-3)
    assert airbench.crops_for(recipes.get_recipe("airbench_small"), (48, 48, 3))


def test_corruption_augmentation_is_the_same_on_jax_as_in_tensorflows_tf_data(tmp_path):
    """`corruption_augment`: JAX corrupts in its compiled step what TensorFlow's tf.data corrupts, alike."""
    from imagerec.training import airbench, augment

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(16, dtype=np.int32) % 4
    (tf_images, _), = list(airbench.airbench_batches(images, labels, 16, 1, 5, 2, True, corruption_share=1.0))
    plan = airbench.epoch_plan(16, 16, seed=5, epoch=0, translate=2, alternating_flip=True, corruption_share=1.0)
    np.savez(tmp_path / "batch.npz", images=images[plan["indices"][0]], offsets=plan["offsets"][0],
             flips=plan["flips"][0], boxes=plan["boxes"][0], corrupt=plan["corrupt"][0])
    code = ("import numpy as np; import no_tensorflow; from keras import ops; from imagerec import models; "
            "from imagerec.training import airbench, augment, recipes; "
            f"batch = dict(np.load({str(tmp_path / 'batch.npz')!r})); "
            "trainer = airbench.AirbenchTrainer(models.build_model('airbench_small', 4), "
            "recipes.get_recipe('airbench_small', corruption_augment=1.0)); "
            "trainer.noise_bank = ops.convert_to_tensor(augment.noise_bank(5, (32, 32, 3))); "
            f"np.save({str(tmp_path / 'jax.npy')!r}, np.asarray(trainer.augmented(batch)))")
    _run(["-c", code], "jax")
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), np.asarray(tf_images), atol=1e-2)
    assert set(plan["corrupt"][0][:, 0].astype(int)) <= set(range(1, len(augment.CORRUPTION_KINDS)))
