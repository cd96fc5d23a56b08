"""Pins the Ray Tune behaviour behind lrtune.engine.tune_internals, on the installed Ray.

Each function there reaches past Tune's public API; if a Ray upgrade changes
what it relies on, these fail here rather than in a user's resumed sweep or
extended round.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lrtune.engine import tune_internals
from lrtune.engine.asha import AsyncSuccessiveHalving
from lrtune.engine.translation import tune_config
from lrtune.spec import parse_spec, parse_yaml

pytestmark = pytest.mark.ray

SPEC = """
name: internals
epochs: 2
scheduler: {asha: {grace_period: 1}}
space:
  - {optimizer: sgd, lr: {grid: [0.1, 0.2]}}
"""


def report_twice(config):
    from ray import tune

    for epoch in (1, 2):
        tune.report({"epoch": epoch, "val_accuracy": config["arm"]["lr"]})


class Seen:
    """A Tune callback that records the trials it saw start."""

    def __init__(self):
        from ray.tune import Callback

        class _Callback(Callback):
            def __init__(inner):
                inner.started = []

            def on_trial_start(inner, iteration, trials, trial, **info):
                inner.started.append(trial.trial_id)

            def setup(inner, **info):
                inner.set_up = True

        self.callback = _Callback()


def test_round_prefix_restored_callbacks_and_scheduler_behave_as_lrtune_needs(ray_running, tmp_path):
    from ray import tune

    from lrtune.engine.translation import param_space

    spec = parse_spec(parse_yaml(SPEC, "internals.yaml"), "internals.yaml")
    first = Seen()
    tuner = tune.Tuner(
        report_twice,
        param_space=param_space(spec),
        tune_config=tune_config(spec, None, trial_prefix="r7"),
        run_config=tune.RunConfig(
            name="exp", storage_path=str(tmp_path), callbacks=[first.callback], verbose=0
        ),
    )
    grid = tuner.fit()
    assert len(grid) == 2 and not grid.errors
    # set_trial_id_prefix: the round's ids cannot collide with a sweep's <5 hex>_<n>.
    assert sorted(first.callback.started) == ["r7_00000", "r7_00001"]

    restored = tune.Tuner.restore(str(tmp_path / "exp"), trainable=report_twice, resume_unfinished=True)
    # restored_scheduler: Tune brings back the scheduler as it was built (lrtune refills ASHA's rungs).
    assert isinstance(tune_internals.restored_scheduler(restored), AsyncSuccessiveHalving)
    # replace_callbacks: this run's callbacks, not the pickled ones, are the ones Tune calls.
    second = Seen()
    tune_internals.replace_callbacks(restored, [second.callback])
    restored.fit()
    assert getattr(second.callback, "set_up", False)


def test_numpy_rng_draws_as_a_seeded_sweep_does():
    """The generator rounds use to resolve a space repeats its draws for the same seed."""
    a, b = tune_internals.numpy_rng(3), tune_internals.numpy_rng(3)
    assert [a.uniform(0, 1) for _ in range(3)] == [b.uniform(0, 1) for _ in range(3)]


def test_a_generator_without_the_prefix_attribute_is_refused_with_the_ray_version_needed():
    with pytest.raises(RuntimeError, match="rounds need Ray 2.60"):
        tune_internals.set_trial_id_prefix(object(), "r1_")


def test_the_callback_usage_tag_is_rays_own_without_importing_wandb_or_mlflow(tmp_path):
    """Tune's usage tag imported W&B and MLflow into every sweep's driver (1.5-4 s each); not any more."""
    import inspect

    from ray.tune import tune

    # tune.run looks the function up on the module at each call: the stand-in is seen.
    assert "air_usage.tag_callbacks(callbacks)" in inspect.getsource(tune.run)
    script = """
import json, sys
from ray.air._internal import usage
from ray.tune import Callback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback
from lrtune.engine.tune_internals import callback_usage_without_integrations

class Sink(Callback): pass
class View(LoggerCallback): pass

tags = []
usage.record_extra_usage_tag = lambda key, value: tags.append(json.loads(value))
callbacks = [Sink(), Sink(), View(), CSVLoggerCallback(), JsonLoggerCallback(), "not a callback"]
with callback_usage_without_integrations():
    usage.tag_callbacks(callbacks)
    usage.tag_callbacks([])
imported = sorted(m for m in ("wandb", "mlflow", "comet_ml") if m in sys.modules)
usage.tag_callbacks(callbacks)  # Ray's own, restored on leaving the block
print(json.dumps({"tags": tags, "imported": imported}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["imported"] == [], "the stand-in imported a tracker"
    ours, rays = seen["tags"]
    assert ours == rays == {"CustomCallback": 2, "CustomLoggerCallback": 1, "CSVLoggerCallback": 1,
                            "JsonLoggerCallback": 1}  # fmt: skip
