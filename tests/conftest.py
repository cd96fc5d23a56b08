"""Shared fixtures: a real CIFAR-10 archive written here, and thread limits.

The archive is the official python layout (pickled batches inside a
``.tar.gz``), small and learnable: class 0 images are dark in their top
half, class 1 bright, so a tiny net's loss falls within an epoch or two.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

# Trials and tests share 2 cores: keep every TensorFlow small and quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

LABEL_NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def learnable_batch(n: int, seed: int, num_classes: int = 2) -> dict:
    """A CIFAR batch dict whose class shows in the brightness of the top half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    images = rng.integers(0, 90, (n, 3, 32, 32)).astype(np.uint8)
    for c in range(1, num_classes):
        images[labels == c, :, : 16 if c == 1 else 32, : 16 if c == 2 else 32] += np.uint8(120)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(v) for v in labels],
        b"data": images.reshape(n, 3072),
        b"filenames": [f"{i}.png".encode() for i in range(n)],
    }


def write_cifar_archive(
    path, *, train_per_batch: int = 80, test: int = 100, protocol: int = 4, num_classes: int = 2
):
    """Write ``cifar-10-batches-py/`` (5 train batches + test) as a .tar.gz."""
    members = {
        "batches.meta": {
            b"label_names": LABEL_NAMES,
            b"num_cases_per_batch": train_per_batch,
            b"num_vis": 3072,
        }
    }
    for i in range(1, 6):
        members[f"data_batch_{i}"] = learnable_batch(train_per_batch, seed=i, num_classes=num_classes)
    members["test_batch"] = learnable_batch(test, seed=99, num_classes=num_classes)
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            blob = pickle.dumps(obj, protocol=protocol)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture(scope="session")
def make_cifar_archive():
    """:func:`write_cifar_archive`, for tests that need another size or format."""
    return write_cifar_archive


@pytest.fixture(scope="session")
def cifar_archive(tmp_path_factory):
    """A learnable two-class CIFAR-10 archive: 400 training, 100 test images."""
    return write_cifar_archive(tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz")


@pytest.fixture(scope="session")
def tiny_dataset(cifar_archive):
    from lrtune.data import load_cifar10

    return load_cifar10(str(cifar_archive), classes=["airplane", "automobile"])


def kill_process_group(process) -> None:
    """SIGKILL ``process``'s group (started with ``start_new_session``) until every member is gone.

    Tests stop only what they started: a process group, never Ray by name,
    which would stop every Ray on the machine, a user's sweep included.
    """
    import signal
    import time

    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)  # reap the leader: a zombie still counts as a member
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"process group {process.pid} outlived SIGKILL")


@pytest.fixture(scope="session")
def kill_group():
    """:func:`kill_process_group`."""
    return kill_process_group


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray with 2 CPUs for the tests of one module (never one `ray start` left running)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
