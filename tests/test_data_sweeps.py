"""A real sweep on each new source (an image folder, an .npz, a CIFAR-100 archive), killed and resumed.

Each drives ``lrtune sweep`` as a user does, in a subprocess of its own
process group, on a private local Ray: killed once its first rows exist,
resumed with ``--resume``; then every trial is done, every (trial, epoch)
is there once, and ``lrtune best`` names one of its configurations.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from lrtune.results.tables import load_trials

sys.path.insert(0, str(Path(__file__).parent))
from data_files import formula_images, write_cifar100_archive, write_image_folder, write_npz  # noqa: E402
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


def npz_arrays(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x_train": formula_images(range(40)),
        "y_train": rng.permutation(np.arange(40) % 2),
        "x_val": formula_images(range(40, 50)),
        "y_val": np.arange(10) % 2,
    }


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


def test_a_sweep_on_an_image_folder_resumes_after_a_kill(tmp_path, kill_group):
    write_image_folder(tmp_path / "imgs", ("cat", "dog", "fox"), 8)
    run_killed_and_resumed(
        tmp_path, kill_group, "folder", f"{{folder: {tmp_path / 'imgs'}, validation: 0.25}}"
    )


def test_a_sweep_on_an_npz_resumes_after_a_kill_and_refuses_other_arrays(tmp_path, kill_group):
    path = write_npz(tmp_path / "d.npz", **npz_arrays(0))
    # The path only on the command line: the resume finds it in data.json.
    sweep_file, storage = run_killed_and_resumed(
        tmp_path, kill_group, "arrays", "{arrays: given-by-data-option.npz}", "--data", path
    )
    write_npz(path, **npz_arrays(1))  # the same shapes, other labels
    refused = subprocess.run(
        [sys.executable, "-m", "lrtune", "sweep", sweep_file, "--storage", storage, "--quiet", "--resume"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--resume: the data differs from the data this sweep started with (40 training" in refused.stderr


def test_a_sweep_on_a_cifar100_archive_resumes_after_a_kill(tmp_path, kill_group):
    archive = write_cifar100_archive(tmp_path / "cifar-100-python.tar.gz")
    run_killed_and_resumed(
        tmp_path, kill_group, "c100", f"{{dataset: cifar100, labels: coarse, path: {archive}}}"
    )
