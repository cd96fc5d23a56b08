"""Sweeps on a real local Ray: arms, repeats, schedulers, divergence, sharing."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from lrtune.engine.sweep import SweepError, run_sweep
from lrtune.results.tables import METRICS_SCHEMA, load, load_trials
from lrtune.spec import parse_spec, parse_yaml
from lrtune.training.schedules import lr_by_epoch, make_schedule


def make_spec(text: str):
    return parse_spec(parse_yaml(text, "test.yaml"), "test.yaml")


def sweep(text, storage, data, **kwargs):
    return run_sweep(make_spec(text), storage=str(storage), data=str(data), quiet=True, **kwargs)


ARMS = """
name: arms
data: {classes: [airplane, automobile]}
epochs: 3
batch_size: 32
repeats: 2
space:
  - {optimizer: sgd, schedule: step, lr: 0.05, drop: 0.5, epochs_drop: 1, momentum: 0.5}
  - {optimizer: adam, lr: 0.001}
  - {optimizer: sgd, lr: 1.0e+20, momentum: 0.9}
"""


def read_while_running(metrics_dir: Path, done: threading.Event, reads: list):
    """Read the dataset with plain pyarrow, again and again, as a user would."""
    while not done.is_set():
        if metrics_dir.is_dir() and any(metrics_dir.glob("*.parquet")):
            try:
                table = ds.dataset(str(metrics_dir)).to_table(columns=["trial_id", "epoch"])
            except FileNotFoundError:
                # Only the final compaction removes files, after the last trial.
                assert any(metrics_dir.glob("compacted-*.parquet"))
                return
            reads.append({(r["trial_id"], r["epoch"]) for r in table.to_pylist()})
        time.sleep(0.05)


@pytest.fixture(scope="module")
def arms_sweep(ray_running, cifar_archive, tmp_path_factory):
    import ray

    from lrtune.engine.ray_runtime import start_ray

    # The object-store check (test_one_copy_...) counts every object of this Ray, and the sweeps
    # of earlier modules leave theirs there (10 MiB in 30 objects after the pbt, rounds and
    # schedulers modules): this sweep gets a fresh embedded Ray, started as the session's was,
    # which the later modules then share.
    ray.shutdown()
    start_ray(None)
    storage = tmp_path_factory.mktemp("storage")
    done, reads = threading.Event(), []
    reader = threading.Thread(target=read_while_running, args=(storage / "arms" / "metrics", done, reads))
    reader.start()
    try:
        outcome = sweep(ARMS, storage, cifar_archive)
    finally:
        done.set()
        reader.join()
    READS.extend(reads)
    from ray._private.internal_api import memory_summary

    plasma = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    return outcome, plasma


READS: list[set] = []


@pytest.mark.ray
def test_the_dataset_reads_while_the_sweep_runs_and_only_grows(arms_sweep):
    assert len(READS) >= 3
    for before, after in zip(READS, READS[1:], strict=False):
        assert before <= after  # nothing seen once ever disappears
    assert len(READS[-1]) > len(READS[0])


@pytest.mark.ray
def test_every_trial_epoch_lands_once_with_the_documented_columns(arms_sweep):
    outcome, _ = arms_sweep
    metrics = ds.dataset(f"{outcome.sweep_dir}/metrics").to_table()
    assert metrics.schema.names == METRICS_SCHEMA.names
    trials = load_trials(outcome.sweep_dir).to_pylist()
    assert len(trials) == 6  # 3 arms x 2 repeats
    assert metrics.num_rows == sum(t["epochs_run"] for t in trials)
    keys = {(r["trial_id"], r["epoch"]) for r in metrics.select(["trial_id", "epoch"]).to_pylist()}
    assert len(keys) == metrics.num_rows


@pytest.mark.ray
def test_the_diverging_arm_is_recorded_and_the_sweep_completes(arms_sweep):
    outcome, _ = arms_sweep
    by_family = {}
    for t in load_trials(outcome.sweep_dir).to_pylist():
        by_family.setdefault(t["family"], []).append(t)
    assert [t["status"] for t in by_family["constant"]] == ["diverged", "diverged"]
    assert all(t["epochs_run"] == 1 for t in by_family["constant"])  # stopped at once
    assert all(t["status"] == "done" and t["epochs_run"] == 3 for t in by_family["step"] + by_family["adam"])
    assert outcome.counts == {"done": 4, "diverged": 2}


@pytest.mark.ray
def test_lr_column_follows_the_schedule(arms_sweep):
    outcome, _ = arms_sweep
    metrics = load(outcome.sweep_dir)
    step = metrics.filter(pc.equal(metrics["family"], "step"))
    steps_per_epoch = math.ceil(400 / 32)
    expected = lr_by_epoch(make_schedule("step", lr=0.05, drop=0.5, epochs_drop=1), 3, steps_per_epoch)
    for trial_id in pc.unique(step["trial_id"]).to_pylist():
        rows = step.filter(pc.equal(step["trial_id"], trial_id))
        np.testing.assert_allclose(rows["lr"].to_numpy(), expected, rtol=1e-6)


@pytest.mark.ray
def test_unused_hyperparameters_are_null_and_repeats_differ_only_in_seed(arms_sweep):
    outcome, _ = arms_sweep
    trials = [t for t in load_trials(outcome.sweep_dir).to_pylist()]
    adam = [t for t in trials if t["family"] == "adam"]
    assert all(t["config.drop"] is None and t["config.momentum"] is None for t in adam)
    assert all(t["config.lr"] == 0.001 and t["config.beta_2"] == 0.999 for t in adam)
    assert sorted((t["repeat"], t["seed"]) for t in adam) == [(0, 0), (1, 1)]


@pytest.mark.ray
def test_one_copy_of_the_dataset_serves_every_trial(arms_sweep, tiny_dataset, tmp_path):
    """The driver puts the images in the object store once; trials read that copy."""
    import re

    from ray import cloudpickle

    from lrtune.engine.sweep import trainable_for
    from lrtune.training.trial import TrainSettings, TrialStorage

    _, plasma = arms_sweep
    used_mib = int(re.search(r"Plasma memory usage (\d+) MiB", plasma).group(1))
    dataset_mib = (tiny_dataset.x_train.nbytes + tiny_dataset.x_val.nbytes) / 2**20
    assert used_mib <= math.ceil(dataset_mib), plasma  # 6 trials ran; one copy is held
    # ...and the trainable Tune ships to each trial holds a reference, not the images.
    trainable = trainable_for(tiny_dataset, TrainSettings(), TrialStorage(str(tmp_path)), cpu=1, gpu=0)
    assert len(cloudpickle.dumps(trainable)) < 50_000 < tiny_dataset.x_train.nbytes


@pytest.mark.ray
def test_asha_stops_the_weak_trials_early(ray_running, cifar_archive, tmp_path):
    text = """
name: asha
data: {classes: [airplane, automobile]}
epochs: 4
batch_size: 32
space: {optimizer: sgd, lr: {grid: [0.1, 0.05, 1.0e-5, 1.0e-6]}, momentum: 0.9}  # good ones first: they set the bar
scheduler: {asha: {grace_period: 1, reduction_factor: 2}}
max_concurrent: 2
"""
    outcome = sweep(text, tmp_path, cifar_archive)
    trials = load_trials(outcome.sweep_dir).to_pylist()
    stopped = [t for t in trials if t["status"] == "stopped_early"]
    assert stopped and all(t["epochs_run"] < 4 for t in stopped)
    assert sum(t["epochs_run"] for t in trials) < 4 * 4
    best = max(trials, key=lambda t: t["best_metric"])
    assert best["config.lr"] >= 0.05 and best["status"] == "done"


@pytest.mark.ray
def test_a_spent_time_budget_stops_the_trials_early_and_is_no_interrupt(ray_running, cifar_archive, tmp_path):
    text = """
name: budget
data: {classes: [airplane, automobile]}
epochs: 400
batch_size: 32
space: {optimizer: sgd, lr: {grid: [0.01, 0.02, 0.03]}}
max_concurrent: 1
time_budget_s: 6
"""
    started = time.monotonic()
    outcome = sweep(text, tmp_path, cifar_archive)
    assert time.monotonic() - started < 120
    trials = load_trials(outcome.sweep_dir).to_pylist()
    # The budget's trials are over (a resume does not run them), unlike those an interrupt leaves
    # (running, pending); with one trial at a time Tune had created no other when the budget ran
    # out. On a loaded machine the first trial may not have finished an epoch in 6 s.
    assert [t["status"] for t in trials] == ["stopped_early"] * len(trials), trials
    assert trials[0]["epochs_run"] < 400
    assert not outcome.interrupted


@pytest.mark.ray
def test_pbt_learned_schedules_trained_from_scratch_replay_the_members_lr(
    ray_running, cifar_archive, tiny_dataset, tmp_path
):
    """The winner's fragment from `lrtune best`, and every member's, retrain with the same lr per epoch."""
    import subprocess
    import sys

    import yaml

    from lrtune.results.best import learned_schedule, read_results
    from lrtune.training.trial import TrainSettings, run_trial

    # val_loss and small rates: the tiny fixture takes a fast learner to accuracy 1.0 and loss 0 in
    # an epoch or two, and tied members leave the choice to their trial ids.
    text = """
name: pbt-replay
data: {classes: [airplane, automobile]}
model: seed-tiny
epochs: 4
batch_size: 32
metric: val_loss
space: {optimizer: sgd, lr: {grid: [1.0e-4, 3.0e-4, 3.0e-3, 1.0e-2]}, momentum: 0.9}
scheduler: {pbt: {perturbation_interval: 1, quantile_fraction: 0.5, mutations: {lr: {loguniform: [1.0e-4, 1.0e-2]}}}}
"""
    outcome = sweep(text, tmp_path, cifar_archive)
    best = subprocess.run(
        [sys.executable, "-m", "lrtune", "best", outcome.sweep_dir],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert best.returncode == 0, best.stderr
    print(best.stdout)  # the learned schedule, for the log
    winner_id = best.stdout.splitlines()[0].rsplit(": ", 1)[1].split()[0]
    fragments = {winner_id: yaml.safe_load(best.stdout)["space"]}
    members = {t.trial_id: t for t in read_results(outcome.sweep_dir).trials}
    assert {t.status for t in members.values()} == {"done"}
    fragments.update({i: dict(learned_schedule(t).space) for i, t in members.items() if i != winner_id})
    assert any(f["schedule"] == "piecewise" for f in fragments.values()), "no member's lr changed: no exploit"
    # An exploited member goes on from the donor's epoch: its rows are epochs 1-4 once (below).

    metrics = load(outcome.sweep_dir)
    settings = TrainSettings(model="seed-tiny", epochs=4, batch_size=32, threads=1, checkpoint=False)
    for trial_id, fragment in fragments.items():
        make_spec(yaml.safe_dump({"name": "replay", "epochs": 4, "space": fragment}))  # a sweep file takes it
        rows = metrics.filter(pc.equal(metrics["trial_id"], trial_id)).sort_by("epoch")
        assert rows["epoch"].to_pylist() == [1, 2, 3, 4]
        replay: list[dict] = []
        seed = rows["seed"][-1].as_py()
        run_trial(
            {**fragment, "seed": seed}, tiny_dataset, settings, lambda row, _, out=replay: out.append(row)
        )
        assert [r["lr"] for r in replay] == pytest.approx(rows["lr"].to_pylist(), rel=1e-6), trial_id
        assert rows["lr"].to_pylist() == pytest.approx(rows["config.lr"].to_pylist(), rel=1e-6), trial_id


@pytest.mark.ray
def test_rerunning_a_finished_sweep_name_is_refused(arms_sweep, cifar_archive):
    outcome, _ = arms_sweep
    storage = outcome.sweep_dir.rsplit("/", 1)[0]
    with pytest.raises(SweepError, match=r"sweep 'arms' already exists in .*: add --resume to finish it"):
        sweep(ARMS, storage, cifar_archive)


def test_resume_of_an_unknown_sweep_is_refused(tmp_path, cifar_archive):
    with pytest.raises(SweepError, match=r"--resume: no sweep 'arms' in .*run it without --resume first"):
        sweep(ARMS, tmp_path, cifar_archive, resume=True)


@pytest.mark.ray
def test_tpe_searches_across_arms_and_repeats_each_suggestion(ray_running, cifar_archive, tmp_path):
    text = """
name: tpe
data: {classes: [airplane, automobile]}
epochs: 1
batch_size: 32
repeats: 2
search: tpe
num_samples: 3
space:
  - {optimizer: sgd, lr: {loguniform: [0.001, 0.1]}, momentum: {uniform: [0.0, 0.9]}}
  - {optimizer: adam, lr: {loguniform: [0.0001, 0.01]}}
"""
    outcome = sweep(text, tmp_path, cifar_archive)
    trials = load_trials(outcome.sweep_dir).to_pylist()
    assert len(trials) == 3 * 2 and outcome.counts == {"done": 6}
    by_config = {}
    for t in trials:
        by_config.setdefault((t["config.optimizer"], t["config.lr"], t["config.momentum"]), []).append(
            t["seed"]
        )
    # each suggestion over two seeds of its own: suggestion i gets 2i, 2i + 1
    assert sorted(map(sorted, by_config.values())) == [[0, 1], [2, 3], [4, 5]]
    for optimizer, _, momentum in by_config:
        assert (momentum is None) == (optimizer == "adam")  # each arm samples only its own parameters


@pytest.mark.ray
def test_samples_that_repeat_a_configuration_get_seeds_of_their_own(ray_running, cifar_archive, tmp_path):
    # Random search over choices only, and a grid point drawn in each of 2 samples: the same
    # configuration comes up in both samples. Seeds: seed + sample * repeats + repeat.
    text = """
name: seeds
data: {classes: [airplane, automobile], limit: 32}
epochs: 1
batch_size: 32
seed: 5
repeats: 2
num_samples: 2
space:
  - {optimizer: sgd, lr: {choice: [0.05]}, momentum: {choice: [0.9]}}
  - {optimizer: adam, lr: {grid: [0.001, 0.002]}}
"""
    from lrtune.results.best import choose

    outcome = sweep(text, tmp_path, cifar_archive)
    trials = load_trials(outcome.sweep_dir).to_pylist()
    assert outcome.counts == {"done": 12}
    by_config = {}
    for t in trials:
        by_config.setdefault((t["config.optimizer"], t["config.lr"]), []).append((t["repeat"], t["seed"]))
    assert {k: sorted(v) for k, v in by_config.items()} == {
        config: [(0, 5), (0, 7), (1, 6), (1, 8)]
        for config in (("sgd", 0.05), ("adam", 0.001), ("adam", 0.002))
    }
    choice = choose(outcome.sweep_dir)
    assert choice.best.n == 4  # four independent runs, not two runs counted twice


def test_tpe_suggestions_of_qloguniform_stay_on_the_grid_inside_the_bounds():
    import optuna

    from lrtune.engine.translation import ArmSpace

    spec = make_spec("name: q\nsearch: tpe\nspace: {lr: {qloguniform: [1.0e-3, 0.1, 1.0e-3]}}\n")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    arms = ArmSpace(spec.space)
    suggested = []
    for _ in range(60):
        trial = study.ask()
        config = arms(trial)
        suggested.append(config["arm"]["lr"])
        assert config["arm"]["sample"] == trial.number
        study.tell(trial, -abs(np.log(config["arm"]["lr"] / 0.05)))
    assert all(0.001 <= lr <= 0.1 for lr in suggested)
    assert all(lr == pytest.approx(round(lr / 0.001) * 0.001, abs=1e-12) for lr in suggested)


@pytest.mark.parametrize(
    ("dist", "value", "expected"),
    [
        ((1e-4, 0.1, 1e-3), 3e-4, 0.001),  # the bounds: rounding would give 0
        ((1e-4, 0.1, 1e-3), 0.0996, 0.1),
        ((0.001, 0.0995, 0.001), 0.0996, 0.099),  # never above the upper bound
    ],
)
def test_on_grid_is_a_multiple_of_q_inside_the_bounds(dist, value, expected):
    from lrtune.space import Dist

    assert Dist("qloguniform", dist).on_grid(value) == pytest.approx(expected)


def test_pbt_keeps_perturbed_values_inside_their_bounds():
    from lrtune.engine.translation import make_scheduler

    spec = make_spec(
        "name: p\nspace: {lr: {loguniform: [0.01, 0.1]}, momentum: {uniform: [0.5, 0.95]}}\nscheduler: pbt\n"
    )
    explore = make_scheduler(spec)._custom_explore_fn
    assert explore({"arm": {"lr": 0.1 * 1.2, "momentum": 0.95 * 1.2}}) == {
        "arm": {"lr": 0.1, "momentum": 0.95}
    }
