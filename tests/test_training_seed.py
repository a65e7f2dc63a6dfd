"""The seed recipe's batch stream: both phases in one seeded stream that a resumed run can rejoin."""

import numpy as np

from imagerec.training import recipes
from imagerec.training import seed as seed_training


def _images(count=40):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 8, 8, 3)).astype(np.uint8), np.arange(count, dtype=np.int32)


def test_plain_epochs_give_the_images_as_they_are_and_augmented_ones_change_them():
    images, labels = _images()
    recipe = recipes.get_recipe("seed", epochs=2, augmented_epochs=1, batch_size=16)
    batches = list(seed_training.seed_batches(images, labels, recipe, seed=3).as_numpy_iterator())
    assert [len(batch_labels) for _, batch_labels in batches] == [16, 16, 8] * 2  # last batch partial
    plain, augmented = batches[:3], batches[3:]
    for batch_images, batch_labels in plain:
        np.testing.assert_array_equal(batch_images, images[batch_labels].astype(np.float32))
    assert sorted(np.concatenate([batch_labels for _, batch_labels in plain])) == list(range(40))  # a permutation
    changed = [not np.array_equal(batch_images, images[batch_labels]) for batch_images, batch_labels in augmented]
    assert any(changed)


def test_a_resumed_stream_gives_exactly_the_batches_the_whole_one_gives():
    images, labels = _images()
    recipe = recipes.get_recipe("seed", epochs=3, augmented_epochs=2, batch_size=16)
    whole = list(seed_training.seed_batches(images, labels, recipe, seed=5).as_numpy_iterator())
    resumed = list(seed_training.seed_batches(images, labels, recipe, seed=5, first_epoch=2).as_numpy_iterator())
    assert len(resumed) == 3
    for (a_images, a_labels), (b_images, b_labels) in zip(whole[6:], resumed):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)
