"""Rounds: `lrtune sweep --extend` and `lrtune confirm` add trials to a finished sweep, on a real local Ray."""

from __future__ import annotations

import random
import shutil
import sys
import time
from pathlib import Path

import pytest

from lrtune.engine.rounds import extend_sweep, open_round, read_rounds
from lrtune.engine.sweep import SweepError, run_sweep
from lrtune.results.best import choose
from lrtune.results.tables import load, load_trials
from lrtune.spec import parse_spec, parse_yaml

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import assert_rows_are_the_final_models_history, rows, soak_seed, start  # noqa: E402

pytestmark = pytest.mark.ray

BASE = """
name: grow
data: {classes: [airplane, automobile], limit: 256}
epochs: 2
batch_size: 32
repeats: 2
search: grid
space:
  - {optimizer: sgd, lr: 0.05, momentum: 0.5}
"""


def make_spec(text: str, *sets: str):
    raw = parse_yaml(text, "test.yaml")
    for s in sets:
        key, value = s.split("=", 1)
        raw[key] = parse_yaml(value, "--set")
    return parse_spec(raw, "test.yaml")


def assert_each_row_once(sweep_dir, trials: int, epochs: int):
    rows = load(str(sweep_dir))
    keys = list(zip(rows["trial_id"].to_pylist(), rows["epoch"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == trials * epochs


@pytest.fixture(scope="module")
def grown(ray_running, cifar_archive, tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    run_sweep(make_spec(BASE), storage=str(storage), data=str(cifar_archive), quiet=True)
    bigger = BASE.replace("lr: 0.05", "lr: {grid: [0.05, 0.02]}").replace("repeats: 2", "repeats: 3")
    extension = extend_sweep(make_spec(bigger, "name=other"), "grow", storage=str(storage), quiet=True)
    return storage, bigger, extension


def test_extend_runs_only_the_new_trials_and_reuses_the_rest(grown):
    storage, _, extension = grown
    assert extension.reused == 2  # lr 0.05, seeds 0 and 1
    assert extension.round.index == 1 and len(extension.round.trials) == 4
    trials = load_trials(str(storage / "grow")).to_pylist()
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)) == 6
    assert sum(i.startswith("r1_") for i in ids) == 4
    assert {t["status"] for t in trials} == {"done"}
    seeds = {lr: sorted(t["seed"] for t in trials if t["config.lr"] == lr) for lr in (0.05, 0.02)}
    assert seeds == {0.05: [0, 1, 2], 0.02: [0, 1, 2]}
    assert_each_row_once(storage / "grow", trials=6, epochs=2)
    choice = choose(str(storage / "grow"))
    assert sorted((c.config["lr"], c.n) for c in choice.ranked) == [(0.02, 3), (0.05, 3)]


def test_extend_with_nothing_new_runs_nothing(grown):
    storage, bigger, _ = grown
    again = extend_sweep(make_spec(bigger), "grow", storage=str(storage), quiet=True)
    assert again.round is None and again.reused == 6
    assert [r.index for r in read_rounds(str(storage / "grow"))] == [1]


def test_extend_refuses_settings_that_change_what_a_row_means(grown):
    storage, bigger, _ = grown
    with pytest.raises(SweepError, match=r"sweep.yaml: .*epochs: 2 in the sweep, 3 now"):
        extend_sweep(make_spec(bigger, "epochs=3"), "grow", storage=str(storage), quiet=True)
    with pytest.raises(SweepError, match=r"--extend nope: no sweep 'nope'"):
        extend_sweep(make_spec(bigger), "nope", storage=str(storage), quiet=True)
    with pytest.raises(SweepError, match=r"scheduler: pbt cannot extend a sweep"):
        pbt = bigger + "scheduler: {pbt: {mutations: {lr: {loguniform: [0.01, 0.1]}}}}\n"
        extend_sweep(make_spec(pbt.replace("search: grid", "search: random")), "grow", storage=str(storage))


# Two arms that train the same model (a time decay of 0 is a constant lr): never separated.
TIED = """
name: tied
data: {classes: [airplane, automobile], limit: 256}
epochs: 2
batch_size: 32
repeats: 2
space:
  - {optimizer: sgd, schedule: constant, lr: 0.05, momentum: 0.5}
  - {optimizer: sgd, schedule: time, lr: 0.05, decay: 0.0, momentum: 0.5}
"""


@pytest.fixture(scope="module")
def tied_sweep(ray_running, cifar_archive, tmp_path_factory):
    """The TIED sweep, run once: each test confirms on a copy of its folder."""
    storage = tmp_path_factory.mktemp("tied")
    run_sweep(make_spec(TIED), storage=str(storage), data=str(cifar_archive), quiet=True)
    return storage / "tied"


def test_confirm_adds_rounds_of_new_seeds_until_the_budget_when_the_best_is_not_separated(
    tied_sweep, tmp_path
):
    from lrtune.engine.confirm import confirm

    shutil.copytree(tied_sweep, tmp_path / "tied")
    # Each round: 2 configurations x 1 seed x 2 epochs = 4 epochs; room for two rounds, not three.
    result = confirm(str(tmp_path / "tied"), top=2, repeats=1, budget_epochs=11, quiet=True)
    assert result.stopped == "budget" and [r.index for r in result.rounds] == [1, 2]
    assert result.epochs_spent == 8
    trials = load_trials(str(tmp_path / "tied")).to_pylist()
    assert {t["status"] for t in trials} == {"done"} and len(trials) == 8
    by_round = {p: sorted(t["seed"] for t in trials if t["trial_id"].startswith(p)) for p in ("r1_", "r2_")}
    assert by_round == {"r1_": [2, 2], "r2_": [3, 3]}  # new seeds, shared by the configurations of a round
    assert_each_row_once(tmp_path / "tied", trials=8, epochs=2)
    assert sorted(c.n for c in result.choice.ranked) == [4, 4]  # old and new repeats pooled per configuration
    assert len(result.choice.within_noise) == 1


SEPARABLE = """
name: separable
data: {classes: [airplane, automobile], limit: 256}
epochs: 2
batch_size: 32
space:
  - {optimizer: sgd, lr: {grid: [0.05, 1.0e-7]}, momentum: 0.5}
"""


def test_confirm_stops_as_soon_as_the_best_is_separated(ray_running, cifar_archive, tmp_path):
    from lrtune.engine.confirm import confirm

    run_sweep(make_spec(SEPARABLE), storage=str(tmp_path), data=str(cifar_archive), quiet=True)
    before = choose(str(tmp_path / "separable"))
    assert before.within_noise, "one run each: the spread is unknown, so nothing is separated yet"
    result = confirm(str(tmp_path / "separable"), top=2, repeats=2, quiet=True)
    assert result.stopped == "separated" and [r.index for r in result.rounds] == [1]
    assert result.choice.best.config["lr"] == 0.05 and result.choice.best.n == 3
    assert not result.choice.within_noise


@pytest.mark.soak
def test_a_killed_confirm_finishes_its_round_when_run_again(tied_sweep, tmp_path, kill_group):
    """Kill `lrtune confirm` at a random moment of its first round, run it again: every trial once."""
    seed = soak_seed()
    rng = random.Random(seed)
    sweep_dir = tmp_path / "results" / "tied"
    shutil.copytree(tied_sweep, sweep_dir)
    args = ("confirm", sweep_dir, "--top", "2", "--repeats", "2", "--budget-epochs", "8", "--quiet")
    process = start(*args)
    threshold = 8 + rng.randrange(8)  # the base sweep's 8 rows, then a row count inside round 1
    deadline = time.monotonic() + 240
    while len(rows(sweep_dir)) < threshold and process.poll() is None:
        assert time.monotonic() < deadline, f"seed {seed}: no progress"
        time.sleep(0.1)
    time.sleep(rng.uniform(0.0, 0.5))
    assert process.poll() is None, f"seed {seed}: confirm ended before the kill: {process.stdout.read()}"
    kill_group(process)
    rounds = read_rounds(str(sweep_dir))
    finished = bool(rounds) and open_round(str(sweep_dir), rounds) is None
    print(
        f"confirm kill seed={seed} at {threshold} rows, round 1 {'finished' if finished else 'not finished'}"
    )
    again = start(*args)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, f"seed {seed}: {output}"
    # A round not finished (or not yet begun) is run first, against this run's budget; after a
    # finished one, this run has its own budget, for a round of its own.
    expected = "ran round 2 (4 trials" if finished else "ran round 1 (4 trials"
    assert f"{expected}, 8 of 8 budget epochs)" in output, f"seed {seed}: {output}"
    total = 4 + (8 if finished else 4)  # the sweep's 4 trials, then 4 per round
    trials = load_trials(str(sweep_dir)).to_pylist()
    assert len(trials) == total and {t["status"] for t in trials} == {"done"}, f"seed {seed}: {trials}"
    assert_rows_are_the_final_models_history(sweep_dir, trials=total, epochs=2)
