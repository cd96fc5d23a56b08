"""Synchronous successive halving (``scheduler: sha``) on a real local Ray.

Three learning rates x two seeds, 3 epochs, grace 1, reduction 3: one rung
at epoch 1, where 1 of the 3 configurations goes on. The weak learning rate
comes first in the grid: under ASHA its two trials reach the rung first,
have nobody to lose to, and go on.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from lrtune.engine.sweep import run_sweep
from lrtune.results.tables import load, load_trials
from lrtune.spec import parse_spec, parse_yaml

SHA = """
name: {name}
data: {{classes: [airplane, automobile]}}
epochs: 3
batch_size: 32
repeats: 2
space: {{optimizer: sgd, lr: {{grid: [1.0e-6, 0.1, 2.0e-6]}}, momentum: 0.9}}
scheduler: {{sha: {{grace_period: 1, reduction_factor: 3}}}}
max_concurrent: 2
"""


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        (
            "{sha: {reduction_factor: 1}}",
            r"scheduler\.sha\.reduction_factor: Input should be greater than 1 \(got 1\)",
        ),
        (
            "{sha: {grace: 2}}",
            r"scheduler\.sha\.grace: unknown key; allowed here: grace_period, reduction_factor",
        ),
    ],
)
def test_bad_sha_settings_name_the_key_and_what_is_allowed(scheduler, message):
    from lrtune.spec import SweepFileError

    text = SHA.format(name="bad").replace("{sha: {grace_period: 1, reduction_factor: 3}}", scheduler)
    with pytest.raises(SweepFileError, match=message):
        parse_spec(parse_yaml(text, "bad.yaml"), "bad.yaml")


def test_the_rungs_follow_grace_times_reduction_to_the_k_below_the_last_epoch():
    from lrtune.engine.schedulers import rungs

    assert rungs(2, 3, 20) == [2, 6, 18]
    assert rungs(2, 3, 18) == [2, 6]  # none at the last epoch: it ends the trial anyway
    assert rungs(1, 4, 20) == [1, 4, 16]
    with pytest.raises(ValueError, match=r"`reduction_factor` must be > 1, but got reduction_factor=1"):
        rungs(1, 1, 20)


@pytest.fixture(scope="module")
def halved(ray_running, cifar_archive, tmp_path_factory):
    """(trials.parquet rows, metrics rows) of the sweep above."""
    spec = parse_spec(parse_yaml(SHA.format(name="sha"), "sha.yaml"), "sha.yaml")
    outcome = run_sweep(
        spec, storage=str(tmp_path_factory.mktemp("sha")), data=str(cifar_archive), quiet=True
    )
    return load_trials(outcome.sweep_dir).to_pylist(), load(outcome.sweep_dir).to_pylist()


@pytest.mark.ray
def test_the_repeats_of_a_configuration_go_on_or_stop_together_on_their_mean(halved):
    trials, rows = halved
    assert sorted(t["status"] for t in trials) == ["done"] * 2 + ["stopped_early"] * 4
    by_lr = defaultdict(list)
    for t in trials:
        by_lr[t["config.lr"]].append((t["status"], t["epochs_run"]))
    for lr, runs in by_lr.items():
        assert len(runs) == 2 and runs[0] == runs[1], f"lr {lr}: its repeats ended apart: {runs}"
    mean_at_rung = {
        lr: sum(r["val_accuracy"] for r in rows if r["epoch"] == 1 and r["config.lr"] == lr) / 2
        for lr in by_lr
    }
    kept = next(lr for lr, runs in by_lr.items() if runs[0] == ("done", 3))
    assert mean_at_rung[kept] == max(mean_at_rung.values()), mean_at_rung


@pytest.mark.ray
def test_no_trial_trains_past_the_rung_before_every_configuration_reached_it(halved):
    _, rows = halved
    last_at_rung = max(r["timestamp"].timestamp() for r in rows if r["epoch"] == 1)
    after = [r for r in rows if r["epoch"] == 2]
    assert len(after) == 2
    # timestamp is the epoch's end: epoch 2 began its length before.
    began = [r["timestamp"].timestamp() - r["epoch_seconds"] for r in after]
    assert min(began) >= last_at_rung, (last_at_rung, began)


@pytest.mark.parametrize("limit_in", ["file", "argument"])
def test_tpe_with_sha_and_max_concurrent_is_refused_before_anything_starts(tmp_path, limit_in):
    # TPE's limit counts live trials, so each trial would be alone at every rung of sha.
    from lrtune.engine.errors import SweepError

    text = SHA.format(name="tpe-sha").replace("max_concurrent: 2\n", "")
    text = text.replace("lr: {grid: [1.0e-6, 0.1, 2.0e-6]}", "lr: {loguniform: [1.0e-6, 0.1]}")
    assert "max_concurrent" not in text
    text += "search: tpe\nnum_samples: 3\n" + ("max_concurrent: 1\n" if limit_in == "file" else "")
    spec = parse_spec(parse_yaml(text, "tpe.yaml"), "tpe.yaml")
    with pytest.raises(
        SweepError,
        match=r"search: tpe with scheduler: sha and max_concurrent 1: .*sha would stop nothing\. "
        r"Use scheduler: asha .*or leave out max_concurrent",
    ):
        run_sweep(
            spec, storage=str(tmp_path), max_concurrent=1 if limit_in == "argument" else None, quiet=True
        )
    assert not (tmp_path / "tpe-sha").exists()  # nothing written, nothing started
