"""Feeding the shared images to Keras one batch at a time.

Given NumPy arrays, ``model.fit`` first converts the whole training set to
a TensorFlow tensor: a private copy per trial (147 MiB for CIFAR-10's
50,000 images) of data that Ray's object store already holds once per
node. :class:`Batches` hands Keras one shuffled batch at a time, sliced
from the shared read-only arrays, so a trial's memory is its model and
TensorFlow, not the data.

The shuffle of epoch ``e`` depends only on ``(seed, e)``, so a trial
resumed from a checkpoint sees the same batches as one that never stopped.
"""

from __future__ import annotations

import math

import keras
import numpy as np

__all__ = ["Batches"]


class Batches(keras.utils.PyDataset):
    """``(x[i], y[i])`` batches of ``batch_size``, reshuffled every epoch if ``shuffle``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Order the images as epoch ``epoch`` (0-based) sees them."""
        n = len(self.x)
        self.order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else None
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int):
        if self.order is None:
            batch = slice(index * self.batch_size, (index + 1) * self.batch_size)
            return self.x[batch], self.y[batch]
        # Sorted indices read the shared array front to back; the batch's order
        # within itself does not matter to a gradient.
        batch = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        return self.x[batch], self.y[batch]

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)
