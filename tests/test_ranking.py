"""One ranking: the last screen of `lrtune sweep`, `lrtune results` and `lrtune best` name the same best.

The sweeps are synthetic (written as real files, no training): `best` and
`results` run as subprocesses; the sweep's last screen is the CLI's own
`_print_outcome`, given the folder as a finished sweep leaves it.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import yaml
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))

from sweep_runs import lrtune  # noqa: E402
from synthetic_results import run, sgd, write_sweep  # noqa: E402

from lrtune import cli  # noqa: E402
from lrtune.engine.sweep import SweepOutcome  # noqa: E402
from lrtune.results.choice import choose  # noqa: E402
from lrtune.results.choice_text import short_config  # noqa: E402
from lrtune.results.tables import load_trials  # noqa: E402

EPOCHS = 4
#: One trial of it peaks highest of all (0.95 at epoch 2) but its mean at the final epoch is the worst.
PEAKY = sgd("step", lr=0.05, drop=0.5, epochs_drop=2)
#: The best mean at the final epoch (0.81), never above 0.82 at any epoch.
STEADY = {"optimizer": "adam", "lr": 0.001}
MIDDLE = sgd("constant", lr=0.05)


def last_screen(sweep_dir: str, metric: str = "val_accuracy") -> str:
    """What `lrtune sweep` prints when a sweep that left ``sweep_dir`` ends."""
    trials = load_trials(sweep_dir)
    counts: dict[str, int] = {}
    for status in trials["status"].to_pylist():
        counts[status] = counts.get(status, 0) + 1
    spec = SimpleNamespace(name="synthetic", metric=metric, metric_mode="max")
    outcome = SweepOutcome(sweep_dir=sweep_dir, counts=counts, trials=trials)
    buffer = io.StringIO()
    saved = cli.out
    cli.out = Console(file=buffer, width=400, color_system=None)
    try:
        cli._print_outcome(spec, outcome)
    finally:
        cli.out = saved
    return buffer.getvalue()


def first_row(screen: str) -> list[str]:
    """The cells of the first row of the screen's table (the line after its ━ rule)."""
    lines = screen.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("━"))
    return [cell.strip() for cell in lines[rule + 1].split("│")]


@pytest.fixture(scope="module")
def disagreeing_sweep(tmp_path_factory):
    """A finished sweep on which the old rankings disagreed.

    Single trials by their best epoch (the old final table and the old
    `results`) put PEAKY first, at 0.95; configuration means at the final
    epoch (`best`) put STEADY first, 0.81 against MIDDLE's 0.705 and
    PEAKY's 0.61.
    """
    runs = [
        run(PEAKY, [0.5, 0.95, 0.7, 0.60], repeat=0),
        run(PEAKY, [0.5, 0.64, 0.63, 0.62], repeat=1),
        run(STEADY, [0.6, 0.7, 0.78, 0.80], repeat=0),
        run(STEADY, [0.6, 0.7, 0.80, 0.82], repeat=1),
        run(MIDDLE, [0.5, 0.6, 0.68, 0.70], repeat=0),
        run(MIDDLE, [0.5, 0.6, 0.69, 0.71], repeat=1),
        run(sgd("time", lr=0.05, decay=0.01), [0.5, 0.97], status="stopped_early"),
    ]
    return write_sweep(tmp_path_factory.mktemp("ranking") / "sweep", runs, epochs=EPOCHS)


def test_the_sweeps_last_screen_results_and_best_name_the_same_configuration(disagreeing_sweep):
    # The construction: a single trial's best epoch names another configuration than the means.
    trials = pq.read_table(Path(disagreeing_sweep) / "trials.parquet").to_pylist()
    done = [r for r in trials if r["status"] == "done"]
    peak = max(done, key=lambda r: r["best_metric"])
    assert (peak["family"], peak["config.drop"]) == ("step", 0.5)

    expected = choose(disagreeing_sweep).best
    assert (expected.family, expected.config["lr"], expected.n) == ("adam", 0.001, 2)
    named = (expected.family, short_config(expected))

    best = lrtune("best", disagreeing_sweep)
    assert best.returncode == 0, best.stderr
    assert best.stdout.splitlines()[0].endswith(f": {expected.family}")
    assert yaml.safe_load(best.stdout)["space"] == expected.config

    results = lrtune("results", disagreeing_sweep)
    assert results.returncode == 0, results.stderr
    lines = results.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if "ranked as `lrtune best` ranks them" in line)
    first = lines[heading + 1]
    assert first.split()[0] == expected.family and " best " in first
    assert first.rstrip().endswith(named[1])

    row = first_row(last_screen(disagreeing_sweep))
    assert (row[0], row[1], row[3], row[4], row[5]) == ("1", named[0], "2", "best", named[1])


def test_with_no_trial_finished_the_summaries_say_so_instead_of_ranking(tmp_path):
    sweep_dir = write_sweep(
        tmp_path / "unfinished",
        [
            run(PEAKY, [0.5, 0.6], status="stopped_early"),
            run(STEADY, [0.5, 0.7], repeat=0, status="stopped_early"),
            run(MIDDLE, [], status="error", error="ValueError: out of memory on GPU 0"),
        ],
        epochs=EPOCHS,
    )
    plain = "no ranking: no trial has run every epoch (2 stopped early, 1 error)"
    results = lrtune("results", sweep_dir)
    assert results.returncode == 0, results.stderr
    assert plain in results.stdout
    assert "ranked as" not in results.stdout
    screen = last_screen(sweep_dir)
    assert plain in screen and "━" not in screen
    # `lrtune best` is unchanged: it compares them at their last epoch and says that is unfair.
    best = lrtune("best", sweep_dir)
    assert best.returncode == 0, best.stderr
    assert "which is not a fair comparison" in best.stdout


def test_with_every_trial_failed_the_summaries_say_there_is_nothing_to_rank(tmp_path):
    sweep_dir = write_sweep(
        tmp_path / "failed",
        [
            run(sgd("constant", lr=5.0), [0.2, math.nan], status="diverged"),
            run(MIDDLE, [], status="error", error="ValueError: out of memory on GPU 0"),
        ],
        epochs=EPOCHS,
    )
    results = lrtune("results", sweep_dir)
    assert results.returncode == 0, results.stderr
    assert "no ranking:" in results.stdout and "no trial to choose from" in results.stdout
    screen = last_screen(sweep_dir)
    assert "no ranking:" in screen and "no trial to choose from" in screen and "━" not in screen


def test_ranking_reads_each_trials_configuration_a_bounded_number_of_times(tmp_path, monkeypatch):
    # Matching every configuration against every trial made the pick quadratic: at the end
    # of a 5,000-trial sweep (benchmarks/scale.py) it ran for minutes.
    from lrtune.results.trials import Trial

    runs = [run(sgd("constant", lr=0.001 * (i + 1)), [0.5, 0.6 + i / 1000]) for i in range(300)]
    sweep_dir = write_sweep(tmp_path / "many", runs, epochs=2)
    reads = 0
    key = Trial.key.fget

    def counted(trial):
        nonlocal reads
        reads += 1
        return key(trial)

    monkeypatch.setattr(Trial, "key", property(counted))
    choice = choose(sweep_dir)
    assert choice.best.config["lr"] == pytest.approx(0.3)
    assert reads <= 3 * len(runs), f"{reads} reads of Trial.key for {len(runs)} trials"
