"""`lrtune importance`: each hyperparameter's share of the metric's variance, by Optuna's
evaluators, on synthetic sweeps whose answer is known (a metric made of lr alone)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from lrtune.results.importance import format_importance, importance

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import lrtune  # noqa: E402
from synthetic_results import run, sgd, write_sweep  # noqa: E402

LRS = [0.003, 0.01, 0.03, 0.1, 0.3]
MOMENTA = [0.5, 0.6, 0.7, 0.8, 0.9]


def accuracy(lr: float, momentum: float, repeat: int) -> float:
    """Made of lr (0.30 between the worst and best), a trace of momentum, a little seed noise."""
    return 0.5 + 0.1 * math.log10(lr) + 0.001 * momentum + 0.0005 * (repeat - 0.5)


def lr_sweep(tmp_path, lrs=LRS, momenta=MOMENTA) -> str:
    runs = [
        run(sgd("constant", lr=lr, momentum=m), [0.3, accuracy(lr, m, r)], repeat=r)
        for lr in lrs
        for m in momenta
        for r in (0, 1)
    ]
    return write_sweep(tmp_path / "sweep", runs, epochs=2)


@pytest.mark.parametrize("evaluator", ["fanova", "ped-anova"])
def test_a_metric_made_of_lr_gives_lr_nearly_all_the_variance(tmp_path, evaluator):
    result = importance(lr_sweep(tmp_path), evaluator=evaluator)
    assert list(result.shares) == ["lr", "momentum"]
    assert result.shares["lr"] > 0.9
    assert sum(result.shares.values()) == pytest.approx(1.0)
    assert result.configurations == 25 and result.caveat is None


def test_seed_noise_is_the_mean_spread_over_repeats(tmp_path):
    result = importance(lr_sweep(tmp_path))
    # Two repeats 0.0005 apart: std = 0.0005 / sqrt(2) for every configuration.
    assert result.seed_std == pytest.approx(0.0005 / math.sqrt(2))


def test_too_few_configurations_come_with_a_caveat(tmp_path):
    result = importance(lr_sweep(tmp_path, lrs=[0.01, 0.1], momenta=[0.5, 0.9]))
    assert result.caveat.startswith("only 4 configurations for 2 varied hyperparameters (about 20 needed)")
    assert "caveat: only 4 configurations" in format_importance(result)


def test_fewer_than_three_configurations_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^2 configurations with a val_accuracy to compare: too few to say"):
        importance(lr_sweep(tmp_path, lrs=[0.01, 0.1], momenta=[0.9]))


def test_the_command_prints_the_shares_and_draws_the_figure(tmp_path):
    sweep_dir = lr_sweep(tmp_path)
    done = lrtune("importance", sweep_dir, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "share of val_accuracy's variance over 25 configurations (final epoch, mean over seeds; fANOVA, Optuna)"
    )
    assert lines[1].split()[0] == "lr" and lines[2].split()[0] == "momentum"
    assert lines[-1] == f"figure: {sweep_dir}/importance.png"
    assert (Path(sweep_dir) / "importance.png").stat().st_size > 5000
