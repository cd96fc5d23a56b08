"""Feeding a trial: batch order by (seed, epoch), every image once per epoch, no copy of the data."""

import numpy as np
import pytest

from lrtune.training.batches import (
    ALIGN_BYTES,
    epoch_order,
    shared_tensor,
    training_batches,
    validation_batches,
)


def aligned_read_only(array):
    """``array`` in a 64-byte aligned, read-only buffer: how Ray's object store hands it to a trial."""
    buffer = np.empty(array.nbytes + ALIGN_BYTES, np.uint8)
    start = -buffer.ctypes.data % ALIGN_BYTES
    out = buffer[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    out.flags.writeable = False
    return out


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(70, 32, 32, 3), dtype=np.uint8)
    y = np.arange(70, dtype=np.int32)  # the label names the image: batches are checkable by label
    return aligned_read_only(x), aligned_read_only(y)


def epochs_of(dataset, steps_per_epoch):
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    return [batches[i : i + steps_per_epoch] for i in range(0, len(batches), steps_per_epoch)]


def test_each_epoch_is_its_seeded_order_cut_into_batches(arrays):
    x, y = arrays
    epochs = epochs_of(training_batches(x, y, 16, seed=5, initial_epoch=0, epochs=3), steps_per_epoch=5)
    assert len(epochs) == 3
    for epoch, batches in enumerate(epochs):
        order = epoch_order(5, epoch, 70)
        assert [len(b[1]) for b in batches] == [16, 16, 16, 16, 6]
        assert [sorted(b[1].tolist()) for b in batches] == [
            sorted(order[i : i + 16]) for i in range(0, 70, 16)
        ]
        for images, labels in batches:
            np.testing.assert_array_equal(images, x[labels])
    assert epochs[0][0][1].tolist() != epochs[1][0][1].tolist()


def test_a_resumed_pipeline_repeats_the_epochs_of_a_straight_one(arrays):
    x, y = arrays
    straight = epochs_of(training_batches(x, y, 16, seed=2, initial_epoch=0, epochs=4), 5)
    resumed = epochs_of(training_batches(x, y, 16, seed=2, initial_epoch=2, epochs=4), 5)
    for a, b in zip(straight[2:], resumed, strict=True):
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)


def test_validation_is_every_image_in_order_once(arrays):
    x, y = arrays
    batches = [(a.numpy(), b.numpy()) for a, b in validation_batches(x, y, 32)]
    assert [len(b) for _, b in batches] == [32, 32, 6]
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), y)
    np.testing.assert_array_equal(np.concatenate([a for a, _ in batches]), x)


def test_pipelines_run_without_tf_data_autotuning(arrays):
    # Autotuning's model thread slowed 2-core epochs ~10% and held each trial
    # 6-7 s at the end of fit() while the iterator waited for it to stop.
    x, y = arrays
    for dataset in (
        training_batches(x, y, 16, seed=0, initial_epoch=0, epochs=2),
        validation_batches(x, y, 16),
    ):
        assert dataset.options().autotune.enabled is False


class Exported:
    """What ``np.from_dlpack`` reads: TensorFlow's DLPack capsule of a tensor's buffer."""

    def __init__(self, tensor):
        import tensorflow as tf

        self.capsule = tf.experimental.dlpack.to_dlpack(tensor)

    def __dlpack__(self, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)  # CPU


def buffer_address(tensor) -> int:
    return np.from_dlpack(Exported(tensor)).ctypes.data


def test_a_shared_read_only_array_is_not_copied(arrays):
    x, _ = arrays
    # The tensor's buffer is the array's memory: DLPack hands the same address back.
    assert buffer_address(shared_tensor(x)) == x.ctypes.data


def _addresses_in_a_worker(data):
    """(read-only?, array address, tensor address) of each array, as a trial sees them."""
    from lrtune.training.batches import shared_tensor

    arrays = (data.x_train, data.y_train, data.x_val, data.y_val)
    return [(not a.flags.writeable, a.ctypes.data, buffer_address(shared_tensor(a))) for a in arrays]


@pytest.mark.ray
def test_a_ray_worker_feeds_from_the_object_store_without_a_copy(ray_running, tiny_dataset):
    import ray

    seen = ray.get(ray.remote(_addresses_in_a_worker).remote(ray.put(tiny_dataset)))
    # Read-only: the object store's memory, which Ray aligns for TensorFlow, so no copy is made.
    assert seen == [(True, array, array) for _, array, _ in seen]


def test_an_unaligned_array_is_copied_into_an_aligned_buffer():
    # TensorFlow's kernels abort the process on a buffer that is not 64-byte aligned.
    buffer = np.zeros(64 * 10 + 1, np.uint8)
    start = -buffer.ctypes.data % ALIGN_BYTES + 1
    unaligned = buffer[start : start + 64 * 9].reshape(9, 64)
    unaligned[:] = np.arange(9)[:, None]
    tensor = shared_tensor(unaligned)
    import tensorflow as tf

    np.testing.assert_array_equal(tf.gather(tensor, [8, 0]).numpy(), unaligned[[8, 0]])


def test_a_resumed_trial_repeats_the_straight_runs_epochs_exactly(tiny_dataset):
    from lrtune.training.trial import TrainSettings, run_trial

    settings = TrainSettings(model="seed-tiny", epochs=3, batch_size=32, threads=1)
    config = {"optimizer": "sgd", "schedule": "constant", "lr": 0.05, "momentum": 0.5, "seed": 4}
    straight, checkpoints, resumed = [], [], []

    def keep(row, checkpoint_dir):
        import shutil
        import tempfile

        straight.append(row)
        checkpoints.append(shutil.copytree(checkpoint_dir, tempfile.mkdtemp(), dirs_exist_ok=True))

    run_trial(config, tiny_dataset, settings, keep)
    run_trial(config, tiny_dataset, settings, lambda row, _: resumed.append(row), restore_from=checkpoints[0])
    assert [r["epoch"] for r in resumed] == [2, 3]
    # Same batches, same weights, same dropout draws: the same losses to the last bit.
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight[1:]]
