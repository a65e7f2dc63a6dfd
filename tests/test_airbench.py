import numpy as np

from imagerec import airbench


def test_airbench_batches_are_seeded_consistent_and_drop_the_partial_batch():
    labels = np.arange(50, dtype=np.int32) % 7
    images = np.repeat(labels.astype(np.uint8)[:, None, None, None] * 30, 32, axis=1)
    images = np.repeat(np.repeat(images, 32, axis=2), 3, axis=3)  # each image a flat colour = its label
    stream = airbench.airbench_batches(images, labels, batch_size=16, epochs=2, seed=4, translate=2,
                                        alternating_flip=True)
    batches = list(stream.as_numpy_iterator())
    assert len(batches) == 2 * (50 // 16)
    for batch_images, batch_labels in batches:
        assert batch_images.shape == (16, 32, 32, 3)
        np.testing.assert_array_equal(batch_images[:, 5, 5, 0], batch_labels * 30)  # pairs stay together
    again = list(airbench.airbench_batches(images, labels, 16, 2, 4, 2, True).as_numpy_iterator())
    for first, second in zip(batches, again):
        np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(batches[0][1], batches[3][1])  # a new order each epoch


def test_airbench_batches_resume_mid_run_with_the_same_epochs():
    labels = np.arange(64, dtype=np.int32) % 10
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    whole = list(airbench.airbench_batches(images, labels, 16, 3, 7, 2, True).as_numpy_iterator())
    resumed = list(airbench.airbench_batches(images, labels, 16, 3, 7, 2, True, first_epoch=2).as_numpy_iterator())
    assert len(resumed) == 4  # only the last epoch's batches
    for (first_images, first_labels), (second_images, second_labels) in zip(whole[8:], resumed):
        np.testing.assert_array_equal(first_images, second_images)  # same order, flips and shifts
        np.testing.assert_array_equal(first_labels, second_labels)
