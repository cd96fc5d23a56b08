"""The table of gpu_check.sh: per (XLA, mixed precision, trials per GPU), speed, memory and out-of-memory trials.

Reads every run gpu_check.sh left in OUT, OUT/xla<0|1>-mp<0|1>-k<k>/:

- ``sweep/``: the sweep (metrics Parquet, trials.parquet);
- ``wall``: the sweep's wall seconds;
- ``gpu-mem.csv``: the GPU's memory used, MiB, one nvidia-smi sample per line;
- ``procs.csv``: ``pid, MiB`` per GPU process and sample
  (``nvidia-smi --query-compute-apps=pid,used_memory``);
- ``driver.pid``: the sweep's driver, left out of the trial processes;

and OUT/gpu.csv (``name, memory.total`` in MiB). Columns:

- img/s per trial: each trial's median ``images_per_second`` over its epochs
  after the first, then the median over trials;
- img/s total: k x img/s per trial (k trials run at once while any wait);
- img/s sweep: every training image of the sweep / its wall time (start-up,
  validation and ASHA's early stops included);
- peak MiB/trial: the largest peak of one trial process (nvidia-smi per
  process). Not mapped to trial ids: each running trial has its own Ray
  worker process, which Tune reuses for the next trial, so a process's peak
  is the most any trial it ran held (TensorFlow keeps what it took);
- TF limit MiB: the trial's TensorFlow memory limit,
  floor(total / k) - 512 (none for k = 1: memory growth);
- peak GPU MiB and /k: the GPU's peak memory used, and that over k;
- OOM: trials whose error mentions OOM, RESOURCE_EXHAUSTED,
  CUDA_ERROR_OUT_OF_MEMORY or "out of memory"; failed: trials with any error.

    python benchmarks/gpu_table.py OUT
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
from pathlib import Path

import common

RUN = re.compile(r"xla([01])-mp([01])-k(\d+)$")
OOM = re.compile(r"\bOOM\b|RESOURCE_EXHAUSTED|CUDA_ERROR_OUT_OF_MEMORY|out of memory", re.IGNORECASE)
HEADER = [
    "xla",
    "mixed",
    "trials/GPU",
    "trials",
    "epochs",
    "img/s per trial",
    "img/s total",
    "img/s sweep",
    "wall (s)",
    "peak MiB/trial",
    "TF limit MiB",
    "peak GPU MiB",
    "peak GPU MiB /k",
    "OOM",
    "failed",
]


def numbers(path: Path) -> list[float]:
    """Every number of a one-column file (nvidia-smi's "[N/A]" and blank lines skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(float(line.strip()))
        except ValueError:
            continue
    return out


def process_peaks(path: Path, leave_out: set[int]) -> dict[int, float]:
    """Each process's peak MiB from ``pid, MiB`` samples, less the pids in ``leave_out``."""
    peaks: dict[int, float] = {}
    if not path.exists():
        return peaks
    for line in path.read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0].isdigit():
            continue
        try:
            pid, mib = int(fields[0]), float(fields[1])
        except ValueError:
            continue
        if pid not in leave_out:
            peaks[pid] = max(mib, peaks.get(pid, 0.0))
    return peaks


def trial_speeds(rows: list[dict]) -> dict[str, float]:
    """Each trial's median images/s over its epochs after the first (trials with one epoch: none)."""
    by_trial: dict[str, list[float]] = {}
    for r in rows:
        if r["epoch"] > 1:
            by_trial.setdefault(r["trial_id"], []).append(r["images_per_second"])
    return {t: statistics.median(v) for t, v in by_trial.items()}


def gpu_total_mb(out: Path) -> float | None:
    """memory.total of OUT/gpu.csv (``name, MiB``), or None."""
    path = out / "gpu.csv"
    if not path.exists():
        return None
    try:
        return float(path.read_text().splitlines()[0].rsplit(",", 1)[1])
    except (IndexError, ValueError):
        return None


def figures(run: Path, k: int, total_mb: float | None) -> dict:
    """The figures of one run folder."""
    from lrtune.results.tables import load, load_trials
    from lrtune.training.gpu import memory_limit_mb

    sweep = str(run / "sweep")
    try:
        rows = load(sweep).to_pylist()
    except FileNotFoundError:
        rows = []
    try:
        trials = load_trials(sweep).to_pylist()
    except FileNotFoundError:
        trials = []
    speeds = trial_speeds(rows)
    per_trial = common.median(speeds.values())
    wall = (numbers(run / "wall") or [float("nan")])[0]
    images = sum(r["images_per_second"] * r["epoch_seconds"] for r in rows)
    driver = {int(v) for v in numbers(run / "driver.pid")}
    peaks = process_peaks(run / "procs.csv", driver)
    gpu_memory = numbers(run / "gpu-mem.csv")
    errors = [t["error"] or "" for t in trials]
    return {
        "trials": len({t["trial_id"] for t in trials} | {r["trial_id"] for r in rows}),
        "epochs": len(rows),
        "images_per_second_per_trial": per_trial,
        "images_per_second_total": k * per_trial,
        "images_per_second_sweep": images / wall if wall == wall and wall > 0 else float("nan"),
        "wall_s": wall,
        "peak_mib_per_trial": max(peaks.values()) if peaks else None,
        "tf_limit_mib": memory_limit_mb(total_mb, 1 / k) if total_mb else None,
        "peak_gpu_mib": max(gpu_memory) if gpu_memory else None,
        "peak_gpu_mib_per_trial": max(gpu_memory) / k if gpu_memory else None,
        "oom": sum(bool(OOM.search(e)) for e in errors),
        "failed": sum(bool(e) for e in errors),
        "trial_processes": len(peaks),
        "images_per_second_by_trial": speeds,
    }


def runs(out: Path) -> list[tuple[bool, bool, int, Path]]:
    """(xla, mixed precision, k, folder) of each run in OUT, in order."""
    found = []
    for path in out.iterdir():
        match = RUN.match(path.name)
        if match and path.is_dir():
            found.append((match[1] == "1", match[2] == "1", int(match[3]), path))
    return sorted(found, key=lambda r: r[:3])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="the folder gpu_check.sh wrote to")
    args = p.parse_args(argv)
    out = Path(args.out)
    total_mb = gpu_total_mb(out)
    found = runs(out)
    if not found:
        raise SystemExit(f"{out}: no run folder (xla<0|1>-mp<0|1>-k<k>) here; expected gpu_check.sh's OUT")

    body, by_run = [], {}
    for xla, mixed, k, path in found:
        f = figures(path, k, total_mb)
        by_run[path.name] = {"xla": xla, "mixed_precision": mixed, "k": k, **f}
        shown = [
            f["trials"],
            f["epochs"],
            f["images_per_second_per_trial"],
            f["images_per_second_total"],
            f["images_per_second_sweep"],
            f["wall_s"],
            f["peak_mib_per_trial"],
            f["tf_limit_mib"] if f["tf_limit_mib"] is not None else "growth",
            f["peak_gpu_mib"],
            f["peak_gpu_mib_per_trial"],
            f["oom"],
            f["failed"],
        ]
        body.append(
            [
                "on" if xla else "off",
                "on" if mixed else "off",
                k,
                *(v if v is not None else "-" for v in shown),
            ]
        )
    common.table(HEADER, body)
    print(
        "img/s per trial: median over trials of each trial's median over its epochs after the first; total: k x per "
        "trial; sweep: all training images / wall time. peak MiB/trial: the largest per-process peak of the trial "
        "processes (nvidia-smi --query-compute-apps, every 0.5 s; not mapped to trial ids: Tune reuses a process for "
        "the next trial); TF limit: floor(total/k) - 512; peak GPU /k: the GPU's peak over k."
    )
    print(
        json.dumps(
            common.jsonable(
                {
                    "benchmark": "gpu_check",
                    "date": dt.datetime.now().isoformat(timespec="seconds"),
                    "out": str(out),
                    "gpu_total_mib": total_mb,
                    "runs": by_run,
                }
            )
        )
    )


if __name__ == "__main__":
    main()
