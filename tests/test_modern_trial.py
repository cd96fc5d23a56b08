"""Today's schedules and optimizers through real (tiny) trials, without Ray."""

import json
import math
import os

import numpy as np
import pytest

from lrtune.training.schedules import fit_to_trial, lr_by_epoch, make_schedule
from lrtune.training.trial import TrainSettings, run_trial

SETTINGS = TrainSettings(model="seed-tiny", epochs=2, batch_size=64, threads=1)

#: One arm per schedule, each on another optimizer, several with a warmup.
ARMS = {
    "piecewise": {"optimizer": "sgd", "boundaries": [1], "values": [0.05, 0.02], "weight_decay": 1e-4},
    "cosine": {"optimizer": "adamw", "lr": 0.002, "lr_min": 1e-4, "warmup_epochs": 1},
    "cosine_restarts": {
        "optimizer": "nadam",
        "lr": 0.002,
        "period_epochs": 1,
        "period_mult": 1,
        "restart_decay": 0.5,
    },
    "one_cycle": {
        "optimizer": "sgd",
        "max_lr": 0.1,
        "momentum": 0.9,
        "warmup_epochs": 0.5,
        "warmup_start": 0.001,
    },
    "cyclic": {
        "optimizer": "lion",
        "lr": 1e-5,
        "max_lr": 1e-4,
        "step_size_epochs": 1,
        "cycle_mode": "triangular2",
    },
    "polynomial": {"optimizer": "adam", "lr": 0.002, "power": 2.0, "end_lr": 0.0, "weight_decay": 0.01},
}


def collect(config, data, settings=SETTINGS, **kwargs):
    import shutil
    import tempfile

    rows, checkpoints = [], []

    def report(row, checkpoint_dir):
        rows.append(row)
        if checkpoint_dir:
            keep = tempfile.mkdtemp()
            shutil.copytree(checkpoint_dir, keep, dirs_exist_ok=True)
            checkpoints.append(keep)

    reporter = run_trial(config, data, settings, report, **kwargs)
    return rows, checkpoints, reporter


@pytest.mark.parametrize("name", list(ARMS))
def test_lr_column_is_the_formula_at_each_epochs_last_step(name, tiny_dataset):
    config = {"schedule": name, "seed": 1, **ARMS[name]}
    rows, _, reporter = collect(config, tiny_dataset)
    assert reporter.status == "done"
    steps_per_epoch = math.ceil(len(tiny_dataset.x_train) / SETTINGS.batch_size)
    params = {k: v for k, v in config.items() if k not in ("optimizer", "seed", "momentum", "weight_decay")}
    params.pop("schedule")
    schedule = make_schedule(name, **fit_to_trial(name, params, SETTINGS.epochs))
    expected = lr_by_epoch(schedule, SETTINGS.epochs, steps_per_epoch)
    np.testing.assert_allclose([r["lr"] for r in rows], expected, rtol=1e-5)
    assert all(math.isfinite(r["loss"]) for r in rows)


def test_a_span_left_out_is_the_trials_epochs_less_the_warmup():
    from lrtune.training.hparams import resolve

    schedule = resolve({"schedule": "cosine", "lr": 0.1, "warmup_epochs": 2}, epochs=10).schedule()
    assert schedule.params["decay_epochs"] == 8


def test_a_warmup_as_long_as_the_trial_is_an_error():
    from lrtune.training.hparams import resolve

    with pytest.raises(
        ValueError, match=r"warmup_epochs=3 leaves no epoch of the trial's 3 for schedule 'cosine'"
    ):
        resolve({"schedule": "cosine", "lr": 0.1, "warmup_epochs": 3}, epochs=3)


# --- reduce on plateau ----------------------------------------------------------

# The training loss falls every epoch, so watched with mode "max" it never
# improves after epoch 1: a reduction every `patience` epochs, known in advance.
PLATEAU_SETTINGS = TrainSettings(
    model="seed-tiny", epochs=4, batch_size=64, threads=1, metric="loss", mode="max"
)
PLATEAU = {
    "optimizer": "sgd",
    "schedule": "plateau",
    "lr": 0.04,
    "factor": 0.5,
    "patience": 1,
    "min_lr": 0.006,
    "seed": 2,
}


@pytest.fixture(scope="module")
def plateau_run(tiny_dataset):
    return collect(PLATEAU, tiny_dataset, PLATEAU_SETTINGS)


def test_plateau_reduces_from_the_epoch_after_patience_runs_out(plateau_run):
    rows, _, _ = plateau_run
    # epoch 1 sets the best; 2 does not improve (wait 1 = patience): x0.5 from epoch 3; then again, floored.
    assert [r["lr"] for r in rows] == pytest.approx([0.04, 0.04, 0.02, 0.01], rel=1e-6)


def test_plateau_lr_column_follows_the_rule_on_the_logged_metric(plateau_run):
    from lrtune.training.plateau import replay

    rows, _, _ = plateau_run
    expected = replay(
        make_schedule("plateau", **{k: PLATEAU[k] for k in ("lr", "factor", "patience", "min_lr")}),
        [r["loss"] for r in rows],
        "max",
    )
    assert [r["lr"] for r in rows] == pytest.approx(expected, rel=1e-6)


def test_plateau_state_is_in_the_checkpoint(plateau_run):
    _, checkpoints, _ = plateau_run
    with open(os.path.join(checkpoints[1], "trial.json")) as f:
        state = json.load(f)["extra_state"]["plateau"]
    assert state["lr"] == pytest.approx(0.02) and state["wait"] == 0 and state["base_lr"] == 0.04


def test_plateau_continues_across_a_resume(plateau_run, tiny_dataset):
    rows, checkpoints, _ = plateau_run
    resumed, _, _ = collect(PLATEAU, tiny_dataset, PLATEAU_SETTINGS, restore_from=checkpoints[1])
    assert [r["epoch"] for r in resumed] == [3, 4]
    assert [r["lr"] for r in resumed] == pytest.approx([r["lr"] for r in rows[2:]], rel=1e-6)


def test_plateau_after_a_pbt_change_of_lr_scales_the_current_rate(plateau_run, tiny_dataset):
    _, checkpoints, _ = plateau_run
    resumed, _, _ = collect(
        {**PLATEAU, "lr": 0.08}, tiny_dataset, PLATEAU_SETTINGS, restore_from=checkpoints[1]
    )
    # saved: 0.02 of base 0.04; the new base 0.08 doubles it, then epoch 3 halves it again for epoch 4
    assert [r["lr"] for r in resumed] == pytest.approx([0.04, 0.02], rel=1e-6)
