import numpy as np

from imagerec import airbench


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
    whole = list(airbench.airbench_batches(images, labels, 16, 3, 7, 2, True))
    whole = [(dict((key, np.asarray(value)) for key, value in x.items()), np.asarray(y)) for x, y in whole]
    assert len(whole) == 3 * 4
    for x, y in whole:
        assert x["images"].shape == (16, 32, 32, 3) and x["images"].dtype == np.uint8
        np.testing.assert_array_equal(x["images"][:, 0, 0, 0] % 7, y)  # each image with its own label
    resumed = list(airbench.airbench_batches(images, labels, 16, 3, 7, 2, True, first_epoch=2))
    assert len(resumed) == 4  # only the last epoch's batches, the same as the uninterrupted run's
    for (first, first_labels), (second, second_labels) in zip(whole[8:], resumed):
        for key in first:
            np.testing.assert_array_equal(first[key], np.asarray(second[key]))
        np.testing.assert_array_equal(first_labels, np.asarray(second_labels))
    assert list(airbench.airbench_batches(images, labels, 16, 3, 7, 2, True, first_epoch=3)) == []
