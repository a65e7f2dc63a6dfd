import numpy as np
import pytest

from imagerec.training import batches


def _images(count: int = 10):
    labels = np.arange(count, dtype=np.int32)
    images = np.broadcast_to(labels.astype(np.uint8)[:, None, None, None], (count, 2, 2, 3)).copy()
    return images, labels


def _epoch(stream) -> list:
    return [stream[index] for index in range(len(stream))]


def test_a_seeded_order_depends_only_on_seed_and_epoch():
    images, labels = _images()
    first, again = batches.ArrayBatches(images, labels, 4, seed=3), batches.ArrayBatches(images, labels, 4, seed=3)
    for (x, y), (x_again, y_again) in zip(_epoch(first), _epoch(again)):
        np.testing.assert_array_equal(x, x_again) and np.testing.assert_array_equal(y, y_again)
    first.on_epoch_end()  # a resumed run starts at epoch 1 and must see what the uninterrupted one saw
    resumed = batches.ArrayBatches(images, labels, 4, seed=3, epoch=1)
    np.testing.assert_array_equal(np.concatenate([y for _, y in _epoch(first)]),
                                  np.concatenate([y for _, y in _epoch(resumed)]))
    orders = {tuple(np.concatenate([y for _, y in _epoch(batches.ArrayBatches(images, labels, 4, seed, epoch))]))
              for seed in (3, 4) for epoch in (0, 1)}
    assert len(orders) == 4  # another seed or another epoch: another order


def test_each_epoch_gives_every_image_once_as_float32_with_its_label_and_a_partial_last_batch():
    images, labels = _images(10)
    stream = batches.ArrayBatches(images, labels, 4, seed=0)
    epoch = _epoch(stream)
    assert len(stream) == 3 and [len(y) for _, y in epoch] == [4, 4, 2]
    assert sorted(np.concatenate([y for _, y in epoch]).tolist()) == list(range(10))
    for x, y in epoch:
        assert x.dtype == np.float32 and (x[:, 0, 0, 0] == y).all()


def test_without_a_seed_batches_come_in_order_from_a_memory_map(tmp_path):
    images, labels = _images(7)
    np.save(tmp_path / "x.npy", images)
    stream = batches.ArrayBatches(np.load(tmp_path / "x.npy", mmap_mode="r"), labels, 3)
    assert [y.tolist() for _, y in _epoch(stream)] == [[0, 1, 2], [3, 4, 5], [6]]


def test_validation_data_is_the_arrays_up_to_the_in_graph_limit_and_batches_beyond(monkeypatch):
    images, labels = _images(6)
    assert batches.validation_data(images, labels) == (images, labels)
    monkeypatch.setattr(batches, "IN_GRAPH_BYTES", images.nbytes - 1)
    stream = batches.validation_data(images, labels)
    assert isinstance(stream, batches.ArrayBatches) and stream.batch_size == batches.VALIDATION_BATCH
    assert _epoch(stream)[0][1].tolist() == labels.tolist()  # in order


@pytest.mark.parametrize("batch_size", [1, 5, 6])
def test_the_number_of_batches_covers_every_image(batch_size):
    images, labels = _images(6)
    assert len(batches.ArrayBatches(images, labels, batch_size)) == -(-6 // batch_size)
