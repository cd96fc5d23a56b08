"""Starting (or joining) the Ray a sweep runs on, and lrtune's trial slots.

An *embedded* Ray is the one lrtune starts itself when no ``--address`` is
given: quiet workers, no dashboard, and :data:`TRIAL_SLOT` resources so that
``max_concurrent`` limits the trials *running* (a paused trial gives its
slot back). Every command (``sweep``, ``find``, ``--extend``, ``confirm``)
and the test suite start it through :func:`start_ray`, so it is the same Ray
everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lrtune.engine.errors import SweepError

__all__ = ["TRIAL_SLOT", "UNLIMITED_SLOTS", "load_while_ray_starts", "start_ray"]


#: A custom Ray resource of lrtune's embedded Ray: each trial holds one while it
#: runs, so the sweep's ``max_concurrent`` (that many slots) limits the trials
#: *running*; a trial paused by its scheduler (sha at a rung, PBT) gives its slot back.
TRIAL_SLOT = "lrtune_trial_slot"
#: The slots of an embedded Ray started without a limit.
UNLIMITED_SLOTS = 1_000_000


def start_ray(address: str | None, slots: int | None = None, py_modules: Sequence[str] = ()) -> bool:
    """Join ``address`` or start an embedded local Ray; True if we started it.

    An embedded Ray has ``slots`` :data:`TRIAL_SLOT` resources
    (:data:`UNLIMITED_SLOTS` for None), so a resumed sweep's trials, which
    ask for one, always find them. ``py_modules``: local packages or ``.py``
    files the trials import (a user's model), shipped to every worker of
    every node through Ray's ``runtime_env``; on a joined cluster they are
    added to the job's own runtime env. A Ray already initialised in this
    process is used as it is (False is returned).
    """
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        # An embedded Ray: quiet workers (no TensorFlow banner per trial). Ray's
        # preload_python_modules (prestarted workers importing TensorFlow while
        # the driver loads the data) was measured and left out: on 2 cores the
        # prestarted workers import at once and the first row came later
        # (16.4 s against 14.5 s, benchmarks/startup.py).
        ray.init(
            # "local": a new Ray, never one that `ray start` left running here.
            address="local",
            log_to_driver=False,
            logging_level=logging.ERROR,
            include_dashboard=False,
            runtime_env={
                "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"},
                **({"py_modules": list(py_modules)} if py_modules else {}),
            },
            resources={TRIAL_SLOT: slots or UNLIMITED_SLOTS},
        )
    else:
        # A cluster (or a `ray job submit` driver): keep the job's own runtime env.
        try:
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level=logging.ERROR,
                runtime_env={"py_modules": list(py_modules)} if py_modules else None,
            )
        except ConnectionError as e:
            raise SweepError(
                f"--address {address}: cannot join a Ray cluster there ({e}). Start one "
                "(`ray up cluster.yaml`, `ray start --head`), or leave out --address for a local Ray."
            ) from None
    return True


def load_while_ray_starts(
    load, address: str | None, slots: int | None = None, py_modules: Sequence[str] = ()
):
    """``(load(), started)``: ``load`` runs in a thread while Ray starts (:func:`start_ray`) here.

    Loading the data is mostly decompression and hashing, which release the
    GIL; starting Ray is mostly waiting for its processes. An error from
    ``load`` comes first (it is the user's to fix), and a Ray started for
    nothing is shut down.
    """
    import concurrent.futures

    import ray

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lrtune-data") as pool:
        loading = pool.submit(load)
        try:
            started = start_ray(address, slots, py_modules)
        except BaseException:
            if loading.exception() is not None:
                raise loading.exception() from None
            raise
        try:
            return loading.result(), started
        except BaseException:
            if started:
                ray.shutdown()
            raise
