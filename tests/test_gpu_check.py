"""benchmarks/gpu_check.sh and its table (benchmarks/gpu_table.py), without a GPU.

The table is checked on run folders written here, with figures known in
advance; the script's refusal without a GPU, and its dry run (a fake GPU
Ray and lrtune believe in, trials on the CPU) through the k loop and the
XLA / mixed-precision settings to the table.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from lrtune.training.gpu import CUDA_CONTEXT_MB

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_results import run, sgd, write_sweep  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GPU_CHECK = REPO / "benchmarks" / "gpu_check.sh"
GPU_TABLE = REPO / "benchmarks" / "gpu_table.py"
TOTAL_MB = 143771


def write_run(out: Path, name: str, *, k: int, errors: list[str | None], epochs: int = 4) -> dict:
    """A run folder as gpu_check.sh leaves it; trial i trains at 1000 (i + 1) + 10 e images/s in epoch e."""
    folder = out / name
    runs = [
        run(sgd(lr=0.01 * (i + 1)), [0.5] * epochs, status="error" if e else "done", error=e)
        for i, e in enumerate(errors)
    ]
    write_sweep(folder / "sweep", runs, epochs=epochs, name="sweep")
    part = folder / "sweep" / "metrics" / "part-0.parquet"
    table = pq.read_table(part)
    speeds = [
        1000.0 * (int(t[-5:]) + 1) + 10 * e
        for t, e in zip(table["trial_id"].to_pylist(), table["epoch"].to_pylist(), strict=True)
    ]
    table = table.set_column(
        table.schema.get_field_index("images_per_second"), "images_per_second", pa.array(speeds)
    )
    pq.write_table(table, part)
    (folder / "wall").write_text("40.0\n")
    (folder / "driver.pid").write_text("100\n")
    # The driver (pid 100) holds the most and is left out; trial processes 201, 202.
    (folder / "procs.csv").write_text("100, 9000\n201, 700\n202, 650\n201, 900\n[N/A]\n202, 800\n")
    (folder / "gpu-mem.csv").write_text("1200\n2600\n2400\n")
    return {"table": table, "trials": len(errors)}


@pytest.fixture
def out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "gpu.csv").write_text(f"NVIDIA H200, {TOTAL_MB}\n")
    return out


def table_json(out: Path) -> tuple[str, dict]:
    result = subprocess.run(
        [sys.executable, str(GPU_TABLE), str(out)], capture_output=True, text=True, check=True
    )
    return result.stdout, json.loads(result.stdout.strip().splitlines()[-1])


def test_the_table_has_per_trial_and_total_speed_memory_and_out_of_memory_per_run(out):
    write_run(out, "xla0-mp0-k2", k=2, errors=[None, None])
    write_run(
        out,
        "xla1-mp1-k4",
        k=4,
        errors=[
            None,
            "RESOURCE_EXHAUSTED: OOM when allocating tensor",
            "CUDA_ERROR_OUT_OF_MEMORY: out of memory",
            "ValueError: nan",
        ],
    )
    text, line = table_json(out)
    plain, packed = line["runs"]["xla0-mp0-k2"], line["runs"]["xla1-mp1-k4"]
    assert (plain["xla"], plain["mixed_precision"], plain["k"]) == (False, False, 2)
    assert (packed["xla"], packed["mixed_precision"], packed["k"]) == (True, True, 4)
    # Trial i: median of 1000 (i + 1) + 10 e over epochs 2-4 is 1000 (i + 1) + 30.
    assert plain["images_per_second_by_trial"] == {"sweep_00000": 1030.0, "sweep_00001": 2030.0}
    assert plain["images_per_second_per_trial"] == statistics.median([1030.0, 2030.0])
    assert plain["images_per_second_total"] == 2 * 1530.0
    assert packed["images_per_second_total"] == 4 * statistics.median([1030.0, 2030.0, 3030.0, 4030.0])
    # Every epoch is 2 s in write_sweep: images = sum of 2 x images/s, over 40 s.
    assert plain["images_per_second_sweep"] == pytest.approx(
        sum(2 * (1000 * (i + 1) + 10 * e) for i in range(2) for e in range(1, 5)) / 40
    )
    assert plain["peak_mib_per_trial"] == 900  # pid 201's peak; the driver's 9000 left out
    assert plain["trial_processes"] == 2
    assert plain["tf_limit_mib"] == TOTAL_MB // 2 - CUDA_CONTEXT_MB
    assert packed["tf_limit_mib"] == TOTAL_MB // 4 - CUDA_CONTEXT_MB
    assert plain["peak_gpu_mib"] == 2600 and plain["peak_gpu_mib_per_trial"] == 1300
    assert (plain["oom"], plain["failed"]) == (0, 0)
    assert (packed["oom"], packed["failed"]) == (2, 3)
    assert "img/s per trial" in text and "TF limit MiB" in text


def test_one_trial_per_gpu_has_no_memory_limit_but_growth(out):
    write_run(out, "xla0-mp0-k1", k=1, errors=[None])
    text, line = table_json(out)
    assert line["runs"]["xla0-mp0-k1"]["tf_limit_mib"] is None
    assert "growth" in text


def test_the_table_refuses_a_folder_without_runs(tmp_path):
    result = subprocess.run([sys.executable, str(GPU_TABLE), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "no run folder (xla<0|1>-mp<0|1>-k<k>) here" in result.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_without_a_gpu_the_check_stops_at_once_saying_so(tmp_path):
    result = subprocess.run(
        ["bash", str(GPU_CHECK), str(tmp_path / "data.tar.gz"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "gpu_check.sh: no NVIDIA GPU here" in result.stderr
    assert "GPU_CHECK_DRY_RUN=1" in result.stderr


@pytest.mark.ray
def test_the_dry_run_goes_through_the_settings_to_the_table(tmp_path, cifar_archive):
    # One sweep (about 45 s on 2 cores): the suite's time is CI's budget; the table test covers several runs.
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        "name: tiny\ndata: {classes: [airplane, automobile]}\nepochs: 3\nbatch_size: 32\n"
        "space: {optimizer: sgd, lr: {grid: [0.01, 0.02]}}\nresources: {cpu: 1}\n"
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "GPU_CHECK_DRY_RUN": "1",
        "PYTHON": sys.executable,
        "SWEEP": str(sweep),
        "KS": "2",
        "XLA": "false",
        "MP": "true",
    }
    result = subprocess.run(
        ["bash", str(GPU_CHECK), str(cifar_archive), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "DRY RUN" in result.stdout
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(line["runs"]) == ["xla0-mp1-k2"]
    for name, k in (("xla0-mp1-k2", 2),):
        figures = line["runs"][name]
        spec = yaml.safe_load((out / name / "sweep" / "sweep.yaml").read_text())
        assert (spec["xla"], spec["mixed_precision"], spec["epochs"]) == (False, True, 2)
        assert spec["resources"]["gpu"] == pytest.approx(1 / k)
        assert (figures["trials"], figures["epochs"], figures["failed"]) == (2, 4, 0)
        assert figures["images_per_second_per_trial"] > 0
        assert figures["trial_processes"] >= 1 and figures["peak_gpu_mib"] > 0
        assert figures["tf_limit_mib"] == 143771 // k - CUDA_CONTEXT_MB  # the fake GPU's
    assert (out / "table.txt").read_text().startswith("xla")
