"""Keras batches read from uint8 arrays one at a time: memory maps stay on disk, only a batch is in memory.

`keras.utils.PyDataset`, so every Keras backend reads it. The finetune recipe trains from it (shuffled per
epoch) and `train` validates from it (in order) when the arrays are too large to hand to Keras whole, which
would copy them into one tensor.
"""

import keras
import numpy as np

# Arrays up to this size are handed to Keras (or TensorFlow's graph) whole, which copies them into one tensor
# (fastest); larger ones, memory-mapped from the decode cache, are read batch by batch, so memory stays flat.
IN_GRAPH_BYTES = 256 * 2**20
VALIDATION_BATCH = 500  # images per step of the per-epoch validation pass


class ArrayBatches(keras.utils.PyDataset):
    """(float32 images, int32 labels) batches of uint8 arrays, the last one partial. With a `seed`, in a seeded
    order reshuffled every epoch (it depends only on (seed, epoch): a resumed run sees the batches an
    uninterrupted one would); without, in order."""

    def __init__(self, images, labels, batch_size: int, seed: int | None = None, epoch: int = 0):
        super().__init__()
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.epoch = epoch
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if self.seed is None:
            return np.arange(len(self.labels))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.labels))

    def __len__(self):
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, index):
        rows = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])  # in file order: faster
        return self.images[rows].astype(np.float32), self.labels[rows]

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._order()


def validation_data(images, labels):
    """The per-epoch validation data Keras is given: the arrays themselves up to IN_GRAPH_BYTES, else batches
    read from them one at a time (a memory map stays on disk)."""
    if images.nbytes <= IN_GRAPH_BYTES:
        return images, labels
    return ArrayBatches(images, labels, VALIDATION_BATCH)
