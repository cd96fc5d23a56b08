"""Feeding the shared images to Keras as a ``tf.data`` pipeline, without a copy.

Given NumPy arrays, ``model.fit`` first converts the whole training set to
a TensorFlow tensor: a private copy per trial (147 MiB for CIFAR-10's
50,000 images) of data that Ray's object store already holds once per
node. Here the arrays become tensors over their own memory (DLPack), and a
``tf.data`` pipeline gathers each batch from them in C++ and prefetches the
next one while the step runs, as Keras's own pipeline for NumPy arrays does
after its copy: a trial's memory is its model and TensorFlow, not the data.

The shuffle of epoch ``e`` depends only on ``(seed, e)``
(:func:`epoch_order`), so a trial resumed from a checkpoint sees the same
batches as one that never stopped.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

__all__ = ["epoch_order", "shared_tensor", "training_batches", "validation_batches"]

#: TensorFlow's kernels require tensor buffers aligned to this many bytes
#: (EIGEN_MAX_ALIGN_BYTES; an unaligned one aborts the process in a kernel's
#: ``IsAligned()`` check). Ray's object store aligns large buffers to 64 bytes.
ALIGN_BYTES = 64

#: Batches prepared ahead of the step, a fixed number. tf.data's autotuning is
#: off in these pipelines: its model thread cost ~10% of each epoch on 2 cores
#: (4.7 -> 4.2 s per epoch, seed-tiny, 10,000 images, 2 trials at once) and,
#: when the iterator was destroyed at the end of ``fit``, held the trial
#: 6-7 s waiting for that thread (every trial of three 4 x 3-epoch runs).
PREFETCH = 2


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` training images in epoch ``epoch`` (0-based): a permutation of ``0..n-1``.

    ``np.random.default_rng([seed, epoch]).permutation(n)``: a pure function
    of ``(seed, epoch)``, so a re-run epoch repeats exactly.

    >>> epoch_order(0, 3, 5).tolist() == epoch_order(0, 3, 5).tolist()
    True
    >>> sorted(epoch_order(1, 0, 5).tolist())
    [0, 1, 2, 3, 4]
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def shared_tensor(array: np.ndarray):
    """A ``tf.Tensor`` over ``array``'s memory: no copy when it is C-contiguous and 64-byte aligned.

    Arrays from Ray's object store are both, and read-only; DLPack (as
    TensorFlow reads it) cannot mark a buffer read-only, so the tensor is
    made over a writable alias of the same memory, which keeps ``array``
    alive. Only reading ops (``tf.gather``, slices) may touch the tensor.
    Any other array (a local load, a slice) is copied once into an aligned
    buffer first.
    """
    import tensorflow as tf

    if not array.flags.c_contiguous or array.ctypes.data % ALIGN_BYTES:
        buffer = np.empty(array.nbytes + ALIGN_BYTES, np.uint8)
        start = -buffer.ctypes.data % ALIGN_BYTES
        aligned = buffer[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
        aligned[...] = array
        array = aligned
    if not array.flags.writeable:
        memory = (ctypes.c_char * array.nbytes).from_address(array.ctypes.data)
        memory.owner = array  # the alias must not outlive the shared array
        array = np.frombuffer(memory, array.dtype).reshape(array.shape)
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__())


def training_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, initial_epoch: int, epochs: int
):
    """Shuffled ``(x, y)`` batches of epochs ``initial_epoch .. epochs - 1``, one after the other.

    Epoch ``e`` is ``epoch_order(seed, e, len(x))`` cut into batches of
    ``batch_size`` (the last one shorter); each batch is read in ascending
    index order, front to back through the shared array (the order within a
    batch does not change its gradient). Pass it to ``model.fit`` with
    ``steps_per_epoch=ceil(len(x) / batch_size)`` and ``shuffle=False``: the
    one iterator then runs through all epochs.

    Returns a ``tf.data.Dataset`` of ``(uint8 (B, 32, 32, 3), int32 (B,))``
    (dtypes and shapes as ``x``, ``y``), ``B <= batch_size``, that gathers
    :data:`PREFETCH` batches ahead of the step, with tf.data's autotuning off.
    """
    import tensorflow as tf

    images, labels, n = shared_tensor(x), shared_tensor(y), len(x)
    steps_per_epoch = math.ceil(n / batch_size)

    def order(epoch):
        return epoch_order(seed, int(epoch), n).astype(np.int64)

    def epoch_batches(epoch):
        indices = tf.numpy_function(order, [epoch], tf.int64, stateful=False)
        indices.set_shape([n])
        return tf.data.Dataset.from_tensor_slices(indices).batch(batch_size)

    def gather(indices):
        indices = tf.sort(indices)
        return tf.gather(images, indices), tf.gather(labels, indices)

    return (
        tf.data.Dataset.range(initial_epoch, epochs)
        .flat_map(epoch_batches)
        .map(gather)
        .apply(tf.data.experimental.assert_cardinality((epochs - initial_epoch) * steps_per_epoch))
        .prefetch(PREFETCH)
        .with_options(_options())
    )


def validation_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    """``(x, y)`` in order, ``batch_size`` at a time (the last batch shorter): one pass.

    Returns a ``tf.data.Dataset`` with the dtypes and shapes of
    :func:`training_batches`, sliced from ``x`` and ``y`` without a copy,
    prefetched as :func:`training_batches` is.
    """
    import tensorflow as tf

    images, labels, n = shared_tensor(x), shared_tensor(y), len(x)

    def batch(index):
        start = index * batch_size
        end = tf.minimum(start + batch_size, n)
        return images[start:end], labels[start:end]

    return (
        tf.data.Dataset.range(math.ceil(n / batch_size))
        .map(batch)
        .prefetch(PREFETCH)
        .with_options(_options())
    )


def _options():
    """``tf.data.Options`` of lrtune's pipelines: autotuning off (see :data:`PREFETCH`)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options
