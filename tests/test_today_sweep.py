"""A real sweep trains each of today's schedules and optimizers: one Ray start, seed-tiny, 2 epochs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from lrtune.training.hparams import HPARAMS, resolve
from lrtune.training.schedules import lr_by_epoch

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import lrtune  # noqa: E402

pytestmark = pytest.mark.ray

EPOCHS, BATCH = 2, 64
SWEEP = f"""
name: today
data: {{classes: [airplane, automobile], validation: test}}
model: seed-tiny
epochs: {EPOCHS}
batch_size: {BATCH}
space:
  - {{optimizer: sgd, schedule: wsd, lr: 0.05, decay_fraction: 0.5, decay_shape: 1-sqrt, warmup_epochs: 0.5, momentum: 0.9}}
  - {{optimizer: sgd, schedule: linear_to_zero, lr: 0.05, momentum: 0.9}}
  - {{optimizer: schedule_free_adamw, lr: 0.005, warmup_epochs: 0.5}}
  - {{optimizer: muon, schedule: cosine, lr: 0.002}}
scheduler: fifo
search: grid
resources: {{cpu: 1}}
"""


def test_a_sweep_trains_wsd_linear_to_zero_schedule_free_and_muon(cifar_archive, tmp_path):
    sweep_file = tmp_path / "today.yaml"
    sweep_file.write_text(SWEEP)
    result = lrtune("sweep", sweep_file, "--data", cifar_archive, "--storage", tmp_path / "r", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = ds.dataset(str(tmp_path / "r" / "today" / "metrics")).to_table().to_pylist()
    by_trial: dict[str, list[dict]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    assert sorted(r[0]["config.optimizer"] for r in by_trial.values()) == sorted(
        ["sgd", "sgd", "schedule_free_adamw", "muon"]
    )
    steps_per_epoch = math.ceil(400 / BATCH)  # the fixture archive: 400 training images of the two classes
    for trial_rows in by_trial.values():
        trial_rows.sort(key=lambda r: r["epoch"])
        assert [r["epoch"] for r in trial_rows] == [1, 2]
        assert trial_rows[-1]["status"] == "done"
        assert all(math.isfinite(r["loss"]) for r in trial_rows)
        config = {name: trial_rows[0][h.column] for name, h in HPARAMS.items()}
        expected = lr_by_epoch(resolve(config, EPOCHS).schedule(), EPOCHS, steps_per_epoch)
        np.testing.assert_allclose([r["lr"] for r in trial_rows], expected, rtol=1e-6)
