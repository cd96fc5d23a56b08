"""Driving `lrtune` as a user does, in subprocesses, and reading what a sweep left: shared by the CLI, find and fault tests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from lrtune.training.checkpoints import StateStore

COLUMNS = ["trial_id", "epoch", "run", "lr", "loss", "val_accuracy", "status"]
ROOT = Path(__file__).parent.parent


def lrtune(*args, cwd=ROOT, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``python -m lrtune ARGS`` run to its end in the repository, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "lrtune", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start(*args, env=None, cwd=None):
    return subprocess.Popen(
        [sys.executable, "-m", "lrtune", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes Ray's processes too
        env={**os.environ, **(env or {})},
    )


def soak_seed(default: int | None = None) -> int:
    """The seed of a kill soak's random moments, printed so that a failure can be replayed.

    ``LRTUNE_SOAK_SEED``: a number replays that seed, ``random`` draws a fresh
    one; unset, ``default`` (a fresh one when ``None``).
    """
    value = os.environ.get("LRTUNE_SOAK_SEED")
    if value is None and default is not None:
        value = str(default)
    seed = random.SystemRandom().randrange(10**6) if value in (None, "random") else int(value)
    print(f"LRTUNE_SOAK_SEED={seed}")
    return seed


def rows(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / "metrics"
    if not path.is_dir() or not any(path.glob("*.parquet")):
        return []
    try:
        return ds.dataset(str(path)).to_table(columns=COLUMNS).to_pylist()
    except (FileNotFoundError, OSError):  # a file replaced while listed: read again
        return rows(sweep_dir)


def result_lines(sweep_dir: Path) -> list[dict]:
    """Every result Tune received, from each trial's result.json (all runs)."""
    lines = []
    for path in sweep_dir.glob("*/result.json"):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def assert_rows_are_the_final_models_history(sweep_dir: Path, trials: int, epochs: int) -> None:
    """Every (trial, epoch) once, each row that of the state the trial ended with."""
    found = rows(sweep_dir)
    keys = [(r["trial_id"], r["epoch"]) for r in found]
    assert len(keys) == len(set(keys)), "a (trial, epoch) row is there twice"
    by_trial: dict[str, dict[int, dict]] = {}
    for r in found:
        by_trial.setdefault(r["trial_id"], {})[r["epoch"]] = r
    assert len(by_trial) == trials
    for trial_id, got in by_trial.items():
        store = StateStore(str(sweep_dir), trial_id)
        final = store.states()[-1]
        history = store.meta(final.name)["history"]
        assert sorted(got) == list(range(1, epochs + 1)) == [h["epoch"] for h in history]
        for h in history:
            row = got[h["epoch"]]
            assert (row["run"], row["loss"], row["val_accuracy"], row["lr"]) == pytest.approx(
                (h["run"], h["loss"], h["val_accuracy"], h["lr"])
            ), f"{trial_id} epoch {h['epoch']}: the row is not the final model's"
