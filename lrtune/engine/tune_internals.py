"""The few places lrtune reaches past Ray Tune's public API, in one adapter.

Ray 2.60 offers no public way to do these; each function says why lrtune
needs it, and ``tests/test_tune_internals.py`` pins this Ray's behaviour so
that an upgrade that changes it fails there, not in a user's sweep.
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Iterator
from typing import Any

__all__ = [
    "callback_usage_without_integrations",
    "numpy_rng",
    "replace_callbacks",
    "replace_stopper",
    "restored_scheduler",
    "set_trial_id_prefix",
]


def replace_callbacks(tuner, callbacks: list[Any]) -> None:
    """Give a restored ``Tuner`` this run's callbacks.

    ``Tuner.restore`` brings back the callbacks pickled with the first run;
    a resumed sweep needs fresh ones (a sink and live view with this run's
    state and ``--quiet``).

    Raises:
        RuntimeError: this Ray's ``Tuner`` has no local tuner to set them on.
    """
    _local_tuner(tuner).get_run_config().callbacks = callbacks


def replace_stopper(tuner, stopper) -> None:
    """Give a restored ``Tuner`` this run's stopper (None: none), and drop a pickled ``time_budget_s``.

    Raises:
        RuntimeError: this Ray's ``Tuner`` has no local tuner to set it on.
    """
    local = _local_tuner(tuner)
    local.get_run_config().stop = stopper
    local._tune_config.time_budget_s = None


def _local_tuner(tuner):
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        raise RuntimeError("this Ray's Tuner has no _local_tuner: lrtune's resume needs Ray 2.60")
    return local


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


#: The modules of Ray's tracker callbacks, whose classes ``tag_callbacks`` imports to compare.
INTEGRATIONS = ("ray.air.integrations.", "ray.tune.logger.aim")


@contextlib.contextmanager
def callback_usage_without_integrations() -> Iterator[None]:
    """Within the block, Tune records its callback usage tag without importing W&B and MLflow.

    ``tune.run`` records which callbacks a run passed
    (``ray.air._internal.usage.tag_callbacks``); to tell Ray's built-in
    ones apart it imports ``ray.air.integrations.wandb`` and ``.mlflow``,
    which import ``wandb`` and ``mlflow`` where they are installed: 1.5-4 s
    of every sweep's driver, for a name check. lrtune passes only its own
    callbacks and Tune's default loggers, so the block records the tag Ray
    would (``{"CSVLoggerCallback": 1, "CustomCallback": 4}``: built-in
    classes by name, the others as custom) from the classes alone; a list
    holding one of Ray's tracker callbacks goes to Ray's function.
    The original is put back on leaving the block.

    Raises:
        RuntimeError: this Ray has no ``tag_callbacks`` to stand in for.
    """
    from ray.air._internal import usage

    original = getattr(usage, "tag_callbacks", None)
    if original is None:
        raise RuntimeError("this Ray has no ray.air._internal.usage.tag_callbacks: lrtune needs Ray 2.60")

    def tag_callbacks(callbacks) -> bool:
        from ray.tune import Callback
        from ray.tune.logger import LoggerCallback
        from ray.tune.utils.callback import DEFAULT_CALLBACK_CLASSES

        callbacks = [c for c in callbacks or [] if isinstance(c, Callback)]
        if any(type(c).__module__.startswith(INTEGRATIONS) for c in callbacks):
            return original(callbacks)  # imported already: Ray's own count costs nothing more
        if not callbacks:
            return False
        defaults = {cls.__name__ for cls in DEFAULT_CALLBACK_CLASSES}
        counts = collections.Counter(
            type(c).__name__
            if type(c).__name__ in defaults
            else "CustomLoggerCallback"
            if isinstance(c, LoggerCallback)
            else "CustomCallback"
            for c in callbacks
        )
        usage.record_extra_usage_tag(usage.TagKey.AIR_CALLBACKS, json.dumps(counts))
        return True

    usage.tag_callbacks = tag_callbacks
    try:
        yield
    finally:
        usage.tag_callbacks = original
