"""Each scheduler takes up its decisions after kills: a kill/resume soak per scheduler.

For sha, hyperband and median, a sweep is killed at seeded random moments
and resumed (some kills at once after a new row: between a scheduler's
decision and Tune recording it). After the last resume every trial has the
status a run never killed gives it (known by construction), and its
epochs or one more (a stop decided but not yet recorded when the driver
died: the trial trains on one epoch and is judged again); every (trial, epoch) row is there once and is the history
of the state the trial ended with; and the epochs trained are those of the
run never killed plus at most one per kill (one trial slot: one epoch in
flight). PBT's members all finish, with the same rows check, in a bounded
number of exploits, and every view of the results (TensorBoard's server,
an MLflow store, W&B's offline runs) shows those same rows. fifo and asha have their soaks in ``test_resume.py``.

``LRTUNE_SOAK_SEED`` replays a seed; each test prints its seed and kills.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lrtune.results.tables import load_trials
from lrtune.training.checkpoints import StateStore

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import result_lines, rows, soak_seed, start  # noqa: E402
from test_views_sweep import assert_every_view_shows_the_rows  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.soak]

COMMON = """
name: {name}
data: {{classes: [airplane, automobile]}}
epochs: {epochs}
batch_size: 8
max_concurrent: {slots}
"""

#: scheduler -> (epochs, trial slots, the rest of the sweep file, what a run never killed gives:
#: {trial counter: (status, epochs run)}, known by construction).
SWEEPS = {
    # Rungs at 1 and 3: one configuration of three goes on from epoch 1, the one that learns
    # (lr 0.05; 1e-6 and 2e-6 barely move); alone from there, it runs to the end.
    "sha": (
        4,
        1,
        """
space: {optimizer: sgd, lr: {grid: [0.05, 1.0e-6, 2.0e-6]}, momentum: 0.9}
scheduler: {sha: {grace_period: 1, reduction_factor: 3}}
""",
        {0: ("done", 4), 1: ("stopped_early", 1), 2: ("stopped_early", 1)},
    ),
    # max_t 4, eta 3: trials 0-1 fill a bracket that never halves (r = 4); trials 2-4 one of
    # r = 1, halved to the one that learns (lr 0.04), which stops at the bracket's last
    # milestone, 3 epochs (Ray's stop_last_trials).
    "hyperband": (
        4,
        1,
        """
space: {optimizer: sgd, lr: {grid: [0.05, 0.03, 0.04, 1.0e-6, 2.0e-6]}, momentum: 0.9}
scheduler: {hyperband: {reduction_factor: 3}}
""",
        {
            0: ("done", 4),
            1: ("done", 4),
            2: ("stopped_early", 3),
            3: ("stopped_early", 1),
            4: ("stopped_early", 1),
        },
    ),
    # Good trials first, then hopeless ones, one at a time (the sweep, smaller). A trial
    # short of two others' samples waits (Ray pauses it): the hopeless ones are judged at epoch 1
    # against the good ones (val_accuracy 1.0 against 0.46 here) and stop; past epoch 1 each good
    # trial has one other to compare with, too few, and runs to the end.
    "median": (
        3,
        1,
        """
space:
  - {optimizer: adam, lr: {grid: [0.001, 0.002]}}
  - {optimizer: sgd, lr: {grid: [1.0e-6, 2.0e-6]}}
scheduler: {median: {grace_period: 1, min_samples_required: 2}}
""",
        {0: ("done", 3), 1: ("done", 3), 2: ("stopped_early", 1), 3: ("stopped_early", 1)},
    ),
}


#: The seed the suite runs with: seeds 1, 2 and 3 passed for every scheduler here. A random seed
#: (LRTUNE_SOAK_SEED=random) failed the median soak, 508529 on 2026-12-06: a stop lost with the
#: driver (tests/test_median.py pins the fix).
DEFAULT_SEED = 3


def trial_order(trial_id: str) -> int:
    """Tune's counter at the end of a trial id: the same trial in two runs of one sweep file."""
    return int(trial_id.rsplit("_", 1)[-1])


def outcome(sweep_dir: Path) -> dict[int, tuple[str, int]]:
    """``{trial counter: (status, epochs_run)}``."""
    return {
        trial_order(t["trial_id"]): (t["status"], t["epochs_run"])
        for t in load_trials(str(sweep_dir)).to_pylist()
    }


def epochs_trained(sweep_dir: Path) -> int:
    """Epochs trained, each once however often it was reported (a replay keeps its run id)."""
    return len({(r["trial_id"], r["run"], r["epoch"]) for r in result_lines(sweep_dir) if "run" in r})


def assert_rows_are_each_trials_final_history(sweep_dir: Path, seed: int) -> None:
    """Every (trial, epoch) row once, the rows of a trial those of the state it ended with."""
    found = rows(sweep_dir)
    keys = [(r["trial_id"], r["epoch"]) for r in found]
    assert len(keys) == len(set(keys)), f"seed {seed}: a (trial, epoch) row is there twice"
    by_trial: dict[str, dict[int, dict]] = {}
    for r in found:
        by_trial.setdefault(r["trial_id"], {})[r["epoch"]] = r
    for t in load_trials(str(sweep_dir)).to_pylist():
        got = by_trial.get(t["trial_id"], {})
        store = StateStore(str(sweep_dir), t["trial_id"])
        history = store.meta(store.states()[-1].name)["history"]
        assert sorted(got) == [h["epoch"] for h in history] == list(range(1, t["epochs_run"] + 1)), (
            f"seed {seed}: {t['trial_id']}"
        )
        for h in history:
            row = got[h["epoch"]]
            assert (row["run"], row["loss"], row["val_accuracy"], row["lr"]) == pytest.approx(
                (h["run"], h["loss"], h["val_accuracy"], h["lr"])
            ), f"seed {seed}: {t['trial_id']} epoch {h['epoch']}: the row is not the final model's"


def kill_and_resume(
    sweep_file: Path, data, storage: Path, sweep_dir: Path, rng, kills: int, total: int, kill_group
):
    """Run, killing the driver ``kills`` times at row counts drawn from ``rng``; resume to the end.

    Returns the kills that landed (the sweep may end before the last).
    """
    thresholds = sorted(rng.randrange(1, max(2, total)) for _ in range(kills))
    landed = 0
    for threshold in thresholds:
        resume = ["--resume"] if (sweep_dir / "sweep.yaml").exists() else []
        process = start("sweep", sweep_file, "--data", data, "--storage", storage, "--quiet", *resume)
        deadline, seen = time.monotonic() + 240, len(rows(sweep_dir))
        # The threshold's row, or at least one new row of this run.
        while (len(rows(sweep_dir)) < threshold or len(rows(sweep_dir)) <= seen) and process.poll() is None:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        # At once (between a scheduler's decision on that row and Tune recording it), or a moment later.
        time.sleep(0.0 if rng.random() < 0.4 else rng.uniform(0.0, 2.0))
        if process.poll() is not None:
            assert process.returncode == 0, process.stdout.read()
            return landed
        kill_group(process)
        landed += 1
    last = start("sweep", sweep_file, "--data", data, "--storage", storage, "--quiet", "--resume")
    output, _ = last.communicate(timeout=420)
    assert last.returncode == 0, output
    assert "Traceback" not in output, output
    return landed


@pytest.mark.parametrize("scheduler", list(SWEEPS))
def test_a_scheduler_killed_at_random_moments_decides_as_a_run_never_killed(
    scheduler, cifar_archive, tmp_path, kill_group
):
    seed = soak_seed(DEFAULT_SEED)
    rng = random.Random(seed)
    epochs, slots, rest, reference = SWEEPS[scheduler]
    sweep_file = tmp_path / f"{scheduler}.yaml"
    sweep_file.write_text(COMMON.format(name=scheduler, epochs=epochs, slots=slots) + rest)
    total = sum(e for _, e in reference.values())

    storage = tmp_path / "killed"
    sweep_dir = storage / scheduler
    kills = kill_and_resume(sweep_file, cifar_archive, storage, sweep_dir, rng, 2, total, kill_group)
    got = outcome(sweep_dir)
    print(f"soak {scheduler} seed={seed} kills={kills} reference={reference} got={got}")
    assert kills >= 1, f"seed {seed}: the sweep ended before the first kill"
    assert set(got) == set(reference), f"seed {seed}"
    for k, (status, run) in reference.items():
        # A stop decided but not recorded when the driver died: one epoch more, judged again.
        assert got[k][0] == status and run <= got[k][1] <= run + (status == "stopped_early"), (
            f"seed {seed}: trial {k} {got[k]}, run straight {(status, run)}; all: {got} vs {reference}"
        )
    assert_rows_are_each_trials_final_history(sweep_dir, seed)
    trained = epochs_trained(sweep_dir)
    assert trained <= total + kills * slots, f"seed {seed}: {trained} epochs trained, {total} run straight"


PBT = """
space: {{optimizer: sgd, lr: {{loguniform: [1.0e-5, 1.0e-1]}}, momentum: {{uniform: [0.9, 0.95]}}}}
num_samples: 4
metric: val_loss
scheduler: {{pbt: {{perturbation_interval: 1, quantile_fraction: 0.5, resample_probability: 0.0}}}}
trackers:
  mlflow: {{tracking_uri: "sqlite:///{storage}/mlflow.db"}}
  wandb: {{project: lrtune-test, mode: offline}}
"""


def test_pbt_killed_at_random_moments_ends_every_member_in_bounded_exploits_and_views_show_the_rows(
    cifar_archive, tmp_path, kill_group
):
    seed = soak_seed(DEFAULT_SEED)
    rng = random.Random(seed)
    members, epochs, slots = 4, 3, 2
    sweep_file = tmp_path / "pbt.yaml"
    storage = tmp_path / "killed"
    sweep_file.write_text(COMMON.format(name="pbt", epochs=epochs, slots=slots) + PBT.format(storage=storage))
    sweep_dir = storage / "pbt"
    kills = kill_and_resume(
        sweep_file, cifar_archive, storage, sweep_dir, rng, 2, members * epochs, kill_group
    )
    exploits = (
        pq.read_table(sweep_dir / "exploits.parquet").num_rows
        if (sweep_dir / "exploits.parquet").exists()
        else 0
    )
    print(f"soak pbt seed={seed} kills={kills} exploits={exploits}")
    statuses = load_trials(str(sweep_dir))["status"].to_pylist()
    assert statuses == ["done"] * members, f"seed {seed}: {statuses}"
    assert_rows_are_each_trials_final_history(sweep_dir, seed)
    # At most one exploit per member and epoch but the last, in each run of the driver.
    assert exploits <= members * (epochs - 1) * (kills + 1), f"seed {seed}: {exploits} exploits"
    assert_every_view_shows_the_rows(sweep_dir, f"sqlite:///{storage}/mlflow.db")
