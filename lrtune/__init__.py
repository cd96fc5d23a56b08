"""lrtune: learning-rate schedule sweeps for Keras convnets on Ray Tune.

The public surface::

    from lrtune import load_spec, run_sweep, results
    spec = load_spec("sweeps/quickstart.yaml", ["epochs=3"])
    outcome = run_sweep(spec, storage="./lrtune-results", data="cifar-10-python.tar.gz")
    table = results.load(outcome.sweep_dir)      # pyarrow.Table, one row per (trial, epoch)

Importing lrtune does not import TensorFlow or Ray; the modules that need
them import them when used.
"""

from lrtune import results
from lrtune.spec import SweepFileError, SweepSpec, load_spec
from lrtune.training import schedules
from lrtune.training.schedules import SCHEDULES, make_schedule

__version__ = "0.1.0"

__all__ = [
    "SCHEDULES",
    "SweepFileError",
    "SweepSpec",
    "load_spec",
    "make_schedule",
    "results",
    "run_sweep",
    "schedules",
]


def run_sweep(*args, **kwargs):
    """Run a sweep on Ray Tune; see :func:`lrtune.engine.sweep.run_sweep`."""
    from lrtune.engine.sweep import run_sweep as _run_sweep

    return _run_sweep(*args, **kwargs)
