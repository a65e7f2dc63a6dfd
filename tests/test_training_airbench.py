import numpy as np

from imagerec import models
from imagerec.training import airbench, batches, recipes


def _numbered_images(count):
    """Image i is flat grey level i (mod 256): pairs and shifts stay checkable after augmentation."""
    labels = np.arange(count, dtype=np.int32) % 7
    images = np.broadcast_to((np.arange(count) % 256).astype(np.uint8)[:, None, None, None], (count, 32, 32, 3))
    return np.ascontiguousarray(images), labels


def test_epoch_plan_is_seeded_drops_the_partial_batch_and_reshuffles_each_epoch():
    plan = airbench.epoch_plan(50, 16, seed=4, epoch=0, translate=2, alternating_flip=True)
    assert plan["indices"].shape == (3, 16) and len(set(plan["indices"].ravel())) == 48
    assert plan["offsets"].shape == (3, 16, 2) and plan["offsets"].min() >= 0 and plan["offsets"].max() <= 4
    again = airbench.epoch_plan(50, 16, seed=4, epoch=0, translate=2, alternating_flip=True)
    for key in plan:
        np.testing.assert_array_equal(plan[key], again[key])
    other_epoch = airbench.epoch_plan(50, 16, seed=4, epoch=1, translate=2, alternating_flip=True)
    assert not np.array_equal(plan["indices"], other_epoch["indices"])
    other_seed = airbench.epoch_plan(50, 16, seed=5, epoch=0, translate=2, alternating_flip=True)
    assert not np.array_equal(plan["indices"], other_seed["indices"])


def test_alternating_flip_mirrors_every_image_on_every_other_epoch():
    flips = {}
    for epoch in range(3):
        plan = airbench.epoch_plan(64, 64, seed=1, epoch=epoch, translate=0, alternating_flip=True)
        flips[epoch] = dict(zip(plan["indices"].ravel(), plan["flips"].ravel()))
    for image in range(64):
        assert flips[0][image] != flips[1][image] and flips[0][image] == flips[2][image]
    assert 0 < sum(flips[0].values()) < 64  # the start is random per image


def test_airbench_batches_pair_images_with_labels_and_resume_mid_run():
    images, labels = _numbered_images(64)
    whole = [(np.asarray(x), np.asarray(y)) for x, y in airbench.airbench_batches(images, labels, 16, 3, 7, 2, True)]
    assert len(whole) == 3 * 4  # TensorFlow's stream: images shifted and flipped in tf.data
    for x, y in whole:
        assert x.shape == (16, 32, 32, 3) and x.dtype == np.float32
        np.testing.assert_array_equal(x[:, 0, 0, 0].astype(int) % 7, y)  # each image with its own label
    resumed = list(airbench.airbench_batches(images, labels, 16, 3, 7, 2, True, first_epoch=2))
    assert len(resumed) == 4  # only the last epoch's batches, the same as the uninterrupted run's
    for (first, first_labels), (second, second_labels) in zip(whole[8:], resumed):
        np.testing.assert_array_equal(first, np.asarray(second))
        np.testing.assert_array_equal(first_labels, np.asarray(second_labels))
    assert list(airbench.airbench_batches(images, labels, 16, 3, 7, 2, True, first_epoch=3)) == []


def test_airbench_batches_are_the_same_augmented_on_the_device_or_in_tf_data(monkeypatch):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8), np.arange(48, dtype=np.int32) % 5
    in_tf_data = list(airbench.airbench_batches(images, labels, 16, 2, 1, 2, True))
    monkeypatch.setattr(airbench.backends, "is_tensorflow", lambda: False)  # the JAX path's planned batches
    planned = list(airbench.airbench_batches(images, labels, 16, 2, 1, 2, True))
    assert len(planned) == len(in_tf_data) == 6
    for (x, y), (shifted, tf_labels) in zip(planned, in_tf_data):
        assert x["images"].dtype == np.uint8
        on_device = airbench.AirbenchTrainer(models.build_model("airbench_small", 5),
                                             recipes.get_recipe("airbench_small")).augmented(x)
        np.testing.assert_array_equal(np.asarray(on_device), np.asarray(shifted))
        np.testing.assert_array_equal(y, np.asarray(tf_labels))


def test_a_memory_mapped_training_set_over_the_in_graph_limit_gives_the_same_batches(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.npy"
    np.save(path, rng.integers(0, 256, (48, 40, 40, 3), dtype=np.uint8))
    images, labels = np.load(path, mmap_mode="r"), np.arange(48, dtype=np.int32) % 5
    in_graph = list(airbench.airbench_batches(images, labels, 16, 2, 1, 2, True))
    monkeypatch.setattr(batches, "IN_GRAPH_BYTES", images.nbytes - 1)  # too large now: gathered on the host
    gathered, host_gather = [], airbench._gathered_on_host
    monkeypatch.setattr(airbench, "_gathered_on_host", lambda *arguments: gathered.append(1) or host_gather(*arguments))
    from_map = list(airbench.airbench_batches(images, labels, 16, 2, 1, 2, True))
    assert gathered and len(from_map) == len(in_graph) == 6
    for (x, y), (expected_x, expected_y) in zip(from_map, in_graph):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(expected_x))
        np.testing.assert_array_equal(np.asarray(y), np.asarray(expected_y))


def test_translation_and_the_whitening_sample_scale_with_the_image_size():
    assert [airbench.translate_pixels(2, (side, side, 3)) for side in (32, 40, 64, 128)] == [2, 2, 4, 8]
    assert airbench.whitening_sample_size(5000, (32, 32, 3)) == 5000
    assert airbench.whitening_sample_size(5000, (128, 128, 3)) == 5000 // 16  # the same number of pixels


def test_class_weights_scale_each_images_loss_by_its_class():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 0.0, 3.0]], np.float32)
    labels = np.array([0, 1, 2], np.int32)
    plain = np.asarray(airbench.smoothed_cross_entropy(0.2)(labels, logits))
    weighted = np.asarray(airbench.smoothed_cross_entropy(0.2, np.array([1.0, 2.0, 0.5]))(labels, logits))
    np.testing.assert_allclose(weighted, plain * [1.0, 2.0, 0.5], rtol=1e-6)


def test_random_resized_crop_boxes_are_seeded_inside_the_image_and_leave_the_rest_of_the_plan_alone():
    plain = airbench.epoch_plan(400, 100, seed=3, epoch=1, translate=2, alternating_flip=True)
    cropped = airbench.epoch_plan(400, 100, seed=3, epoch=1, translate=2, alternating_flip=True, crop_scale=0.35)
    for key in ("indices", "offsets", "flips"):
        np.testing.assert_array_equal(plain[key], cropped[key])  # CIFAR-sized runs see the batches they saw
    np.testing.assert_array_equal(plain["boxes"], np.broadcast_to([0, 0, 1, 1], (4, 100, 4)))
    top, left, height, width = np.moveaxis(cropped["boxes"], -1, 0)
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 1 + 1e-6).all() and (left + width <= 1 + 1e-6).all()
    assert (height * width >= 0.35 * 0.999).all() or (np.minimum(height, width) >= 0.35).all()
    assert (height * width).min() < 0.5 and (height * width).max() > 0.9  # spread over the range
    np.testing.assert_array_equal(cropped["boxes"], airbench.epoch_plan(400, 100, 3, 1, 2, True, 0.35)["boxes"])
    assert airbench.crops_for(recipes.get_recipe("airbench_small"), (64, 64, 3))
    assert not airbench.crops_for(recipes.get_recipe("airbench_small"), (32, 32, 3))
    assert not airbench.crops_for(recipes.get_recipe("airbench_small", crop_scale=1.0), (64, 64, 3))


def test_a_run_with_corruption_augmentation_saves_a_model_of_raw_pixels_that_every_export_matches(dataset, tmp_path):
    """The corruptions are training's alone: the saved model takes raw pixels as any other, and the TFLite and
    ONNX exports give its probabilities (their parity checks)."""
    from imagerec.export.checked import export_model
    from imagerec.training import run

    recipe = recipes.get_recipe("airbench_small", epochs=2, batch_size=16, corruption_augment=0.5)
    result = run.train(dataset, recipe, tmp_path / "run", verbose=0, report=False)
    assert result.metrics["recipe"]["corruption_augment"] == 0.5
    for format_name in ("tflite", "onnx"):
        exported = export_model(result.model, tmp_path / f"model.{format_name}", format_name, dataset, check_images=16)
        assert exported.top1_agreement == 1.0 and exported.max_abs_difference < 1e-5
