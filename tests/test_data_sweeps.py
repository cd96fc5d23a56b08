"""A real sweep on a CIFAR-100 archive, run as a user runs it.

(Sweeps killed and resumed: an image folder with the user's own model in
``test_user_model.py``, CIFAR-10 in ``test_resume.py`` and ``test_kill_soak.py``;
the resume path does not depend on the data's format.)

``lrtune sweep`` runs in a subprocess on a private local Ray; then every
trial is done, every (trial, epoch) is there once, and ``lrtune best``
names one of its configurations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from lrtune.results.tables import load_trials

sys.path.insert(0, str(Path(__file__).parent))
from data_files import write_cifar100_archive  # noqa: E402
from sweep_runs import assert_rows_are_the_final_models_history, lrtune  # noqa: E402

pytestmark = pytest.mark.ray

TRIALS, EPOCHS, LRS = 2, 3, (0.01, 0.02)
SWEEP = """
name: {name}
data: {data}
epochs: 3
batch_size: 8
space: {{optimizer: sgd, lr: {{grid: [0.01, 0.02]}}, momentum: 0.9}}
resources: {{cpu: 1}}
"""


def test_a_sweep_on_a_cifar100_archive_runs_to_the_end(tmp_path):
    # Killed and resumed until 2026-12-07 (52 s of the suite); the CIFAR-10 and image-folder
    # sweeps still are.
    archive = write_cifar100_archive(tmp_path / "cifar-100-python.tar.gz")
    sweep_file = tmp_path / "c100.yaml"
    sweep_file.write_text(
        SWEEP.format(name="c100", data=f"{{dataset: cifar100, labels: coarse, path: {archive}}}")
    )
    storage, sweep_dir = tmp_path / "results", tmp_path / "results" / "c100"
    done = lrtune("sweep", sweep_file, "--storage", storage, "--quiet", timeout=420)
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_trials(str(sweep_dir))["status"].to_pylist() == ["done"] * TRIALS
    assert_rows_are_the_final_models_history(sweep_dir, TRIALS, EPOCHS)
    best = lrtune("best", sweep_dir)
    assert best.returncode == 0, best.stderr
    assert yaml.safe_load(best.stdout)["space"]["lr"] in LRS
