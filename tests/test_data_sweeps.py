"""A real sweep on a CIFAR-100 archive, killed and resumed.

(An image folder and an .npz are swept, killed and resumed with the user's
own models in ``test_user_model.py``: one sweep per source.)

Each drives ``lrtune sweep`` as a user does, in a subprocess of its own
process group, on a private local Ray: killed once its first rows exist,
resumed with ``--resume``; then every trial is done, every (trial, epoch)
is there once, and ``lrtune best`` names one of its configurations.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from lrtune.results.tables import load_trials

sys.path.insert(0, str(Path(__file__).parent))
from data_files import write_cifar100_archive  # noqa: E402
from sweep_runs import assert_rows_are_the_final_models_history, lrtune, rows, start  # noqa: E402

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


def run_killed_and_resumed(tmp_path, kill_group, name, data, *data_option):
    sweep_file = tmp_path / f"{name}.yaml"
    sweep_file.write_text(SWEEP.format(name=name, data=data))
    storage, sweep_dir = tmp_path / "results", tmp_path / "results" / name
    process = start("sweep", sweep_file, *data_option, "--storage", storage, "--quiet")
    deadline = time.monotonic() + 300
    while not rows(sweep_dir) and process.poll() is None:
        assert time.monotonic() < deadline, "no row in 300 s"
        time.sleep(0.1)
    if process.poll() is None:
        kill_group(process)
    else:
        assert process.returncode == 0, process.stdout.read()
    resumed = lrtune("sweep", sweep_file, "--storage", storage, "--quiet", "--resume", timeout=420)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert load_trials(str(sweep_dir))["status"].to_pylist() == ["done"] * TRIALS
    assert_rows_are_the_final_models_history(sweep_dir, TRIALS, EPOCHS)
    best = lrtune("best", sweep_dir)
    assert best.returncode == 0, best.stderr
    assert yaml.safe_load(best.stdout)["space"]["lr"] in LRS
    return sweep_file, storage


def test_a_sweep_on_a_cifar100_archive_resumes_after_a_kill(tmp_path, kill_group):
    archive = write_cifar100_archive(tmp_path / "cifar-100-python.tar.gz")
    run_killed_and_resumed(
        tmp_path, kill_group, "c100", f"{{dataset: cifar100, labels: coarse, path: {archive}}}"
    )
