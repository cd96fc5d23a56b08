"""Shared fixtures: a real CIFAR-10 archive written here, thread limits, and the session's Ray.

The archive is the official python layout (pickled batches inside a
``.tar.gz``), small and learnable: class 0 images are dark in their top
half, class 1 bright, so a tiny net's loss falls within an epoch or two.

Tiers: a test that starts Ray (here, or through ``lrtune sweep/find/confirm``
in a subprocess) is marked ``ray``; a kill/resume loop also ``soak``. The
fast tier, ``pytest -m "not ray and not soak"``, starts no Ray: the hook and
the guard below check it. In-process Ray tests share lrtune's embedded Ray
through ``ray_running``.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI stays deterministic);
# LRTUNE_HYPOTHESIS=random draws fresh ones to look for new failures.
settings.register_profile("lrtune", derandomize=os.environ.get("LRTUNE_HYPOTHESIS") != "random")
settings.load_profile("lrtune")

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

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone already (a driver that exited after Ctrl-C)
        process.wait(timeout=30)
        return
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


#: The fixtures that give a test Ray: a test using one must be marked ``ray``.
RAY_FIXTURES = ("ray_session", "ray_running")


def pytest_collection_modifyitems(config, items):
    """Refuse a test that gets Ray from a fixture but is not marked ``ray``, or a ``soak`` that is not.

    ``pytest -m "not ray and not soak"`` (the fast tier) must never start a
    Ray: the marks are what it goes by.
    """
    wrong = []
    for item in items:
        marked = item.get_closest_marker("ray") is not None
        fixtures = [f for f in RAY_FIXTURES if f in getattr(item, "fixturenames", ())]
        if fixtures and not marked:
            wrong.append(f"{item.nodeid}: uses {', '.join(fixtures)} but is not marked `ray`")
        if item.get_closest_marker("soak") is not None and not marked:
            wrong.append(f"{item.nodeid}: is marked `soak` but not `ray` (every soak starts Ray)")
    if wrong:
        raise pytest.UsageError(
            "tests that start Ray must be marked ray (pytestmark = pytest.mark.ray, or @pytest.mark.ray):\n  "
            + "\n  ".join(wrong)
        )
    longest_files_first(items)


def longest_files_first(items) -> None:
    """Order the files: those with a ``soak`` test, then those with a ``ray`` test, then the rest.

    Under ``-n 2 --dist loadfile`` a worker takes the next file when it is
    free, so the long files must come first and the short ones fill the
    end; xdist's own default order (most tests first, ``--loadscope-reorder``,
    turned off in pyproject.toml) put the few-test soak files last, where one
    worker ran them alone. Order within a file, and between files of a kind,
    is kept.
    """
    kind: dict = {}
    for item in items:
        rank = 0 if item.get_closest_marker("soak") else 1 if item.get_closest_marker("ray") else 2
        kind[item.path] = min(kind.get(item.path, 2), rank)
    items.sort(key=lambda item: kind[item.path])


@pytest.fixture(autouse=True)
def no_ray_unless_marked(request, monkeypatch):
    """A test not marked ``ray`` fails if it starts a Ray, here or in a subprocess it runs.

    Ray puts a new Ray's files under ``$RAY_TMPDIR/ray``: a fresh, short
    ``RAY_TMPDIR`` per unmarked test (Ray's socket paths must stay short)
    shows whether one started. A test that only joins a Ray this process
    already holds starts none, so the check bites in the fast tier, where no
    Ray runs.
    """
    if request.node.get_closest_marker("ray") is not None:
        yield
        return
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="lrtune-noray-")
    monkeypatch.setenv("RAY_TMPDIR", folder)
    try:
        yield
        if os.path.exists(os.path.join(folder, "ray")):
            pytest.fail(
                f"{request.node.nodeid} started Ray (it wrote {folder}/ray) but is not marked `ray`: "
                "mark it, so that the fast tier (-m 'not ray and not soak') leaves it out"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _embedded_ray() -> None:
    """Make this process's Ray lrtune's embedded one, as ``lrtune sweep`` without --address starts it.

    Started again if a test shut it down or left another Ray (a
    ``ray.cluster_utils.Cluster``) connected: only this process's own Ray is
    stopped, never one by name.
    """
    import ray

    from lrtune.engine.ray_runtime import TRIAL_SLOT, UNLIMITED_SLOTS, start_ray

    if ray.is_initialized():
        if ray.cluster_resources().get(TRIAL_SLOT) == UNLIMITED_SLOTS:
            return
        ray.shutdown()
    start_ray(None)


@pytest.fixture(scope="session")
def ray_session():
    """lrtune's embedded Ray (:func:`lrtune.engine.ray_runtime.start_ray`), started once per session.

    All the machine's CPUs (Ray's default, as users get), and
    ``UNLIMITED_SLOTS`` trial slots: a sweep's ``max_concurrent`` is then
    not a limit (a warning says so); the CPUs are. Tests use it through
    :func:`ray_running`.
    """
    import ray

    _embedded_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_running(ray_session):
    """The session's embedded Ray, started again if an earlier test shut it down or joined another.

    Module-scoped, so that a module's shared sweep fixture can use it; a test
    that needs a Ray of its own (a multi-node ``Cluster``, a Ray it kills)
    goes into a module without ``ray_running``, or comes after its users.
    """
    _embedded_ray()
