"""The few places lrtune reaches past Ray Tune's public API, in one adapter.

Ray 2.60 offers no public way to do these; each function says why lrtune
needs it, and ``tests/test_tune_internals.py`` pins this Ray's behaviour so
that an upgrade that changes it fails there, not in a user's sweep.
"""

from __future__ import annotations

from typing import Any

__all__ = ["numpy_rng", "replace_callbacks", "restored_scheduler", "set_trial_id_prefix"]


def replace_callbacks(tuner, callbacks: list[Any]) -> None:
    """Give a restored ``Tuner`` this run's callbacks.

    ``Tuner.restore`` brings back the callbacks pickled with the first run;
    a resumed sweep needs fresh ones (a sink and live view with this run's
    state and ``--quiet``).

    Raises:
        RuntimeError: this Ray's ``Tuner`` has no local tuner to set them on.
    """
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        raise RuntimeError("this Ray's Tuner has no _local_tuner: lrtune's resume needs Ray 2.60")
    local.get_run_config().callbacks = callbacks


def restored_scheduler(tuner):
    """The trial scheduler a restored ``Tuner`` will run with (Tune restores it as it was built)."""
    return tuner._local_tuner._tune_config.scheduler


def set_trial_id_prefix(search_alg, prefix: str) -> None:
    """Make ``BasicVariantGenerator`` name its trials ``<prefix><counter>``.

    Tune names trials ``<5 random hex>_<counter>``; a round of a sweep
    (``--extend``, ``confirm``) needs ids that cannot collide with the
    sweep's, and a prefix such as ``r1_`` cannot equal a hex one.

    Raises:
        RuntimeError: this Ray's generator has no such prefix.
    """
    if not hasattr(search_alg, "_uuid_prefix"):
        raise RuntimeError("this Ray's BasicVariantGenerator has no _uuid_prefix: rounds need Ray 2.60")
    search_alg._uuid_prefix = prefix


def numpy_rng(seed: int):
    """The random state Tune's variant generator takes, seeded as a sweep's ``BasicVariantGenerator`` is.

    Lets :func:`lrtune.engine.rounds.concrete_trials` resolve a space to the
    very values a sweep with that seed drew.
    """
    from ray.tune.search.sample import _BackwardsCompatibleNumpyRng

    return _BackwardsCompatibleNumpyRng(seed)
