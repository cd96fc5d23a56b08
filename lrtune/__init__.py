"""lrtune: learning-rate schedule sweeps for Keras convnets on Ray Tune.

The public surface::

    from lrtune import load_spec, run_sweep, results
    spec = load_spec("sweeps/quickstart.yaml", ["epochs=3"])
    outcome = run_sweep(spec, storage="./lrtune-results", data="cifar-10-python.tar.gz")
    table = results.load(outcome.sweep_dir)      # pyarrow.Table, one row per (trial, epoch)

Importing lrtune imports nothing else: each name below is imported when
first used (PEP 562), so ``python -m lrtune`` can turn a Ctrl-C during its
imports into exit status 130, and TensorFlow and Ray load only where needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> (module, attribute or None for the module itself).
_EXPORTS = {
    "SCHEDULES": ("lrtune.training.schedules", "SCHEDULES"),
    "SweepFileError": ("lrtune.spec", "SweepFileError"),
    "SweepSpec": ("lrtune.spec", "SweepSpec"),
    "load_spec": ("lrtune.spec", "load_spec"),
    "make_schedule": ("lrtune.training.schedules", "make_schedule"),
    "results": ("lrtune.results", None),
    "run_sweep": ("lrtune.engine.sweep", "run_sweep"),
    "schedules": ("lrtune.training.schedules", None),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name of :data:`__all__` on first use.

    Raises:
        AttributeError: ``name`` is not one of :data:`__all__`.
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lrtune' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily loaded public ones included (PEP 562)."""
    return sorted([*globals(), *__all__])
