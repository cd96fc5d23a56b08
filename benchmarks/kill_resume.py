"""Kill and resume: how many sweeps finish every trial, each row once, after a SIGKILL.

Runs ``lrtune sweep`` as a user does (a subprocess in its own process
group), SIGKILLs the group once a row count drawn at random is readable,
runs the same command with ``--resume``, and checks that every trial ended
``done`` and every (trial, epoch) is in ``metrics/`` exactly once.

    python benchmarks/kill_resume.py --runs 10      # sweeps/seed-article.yaml, 8 trials x 8 epochs
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import emit, parser

ROOT = Path(__file__).resolve().parent.parent


def rows(sweep_dir: Path) -> list[tuple[str, int]]:
    import pyarrow.dataset as ds

    path = sweep_dir / "metrics"
    if not path.is_dir() or not any(path.glob("*.parquet")):
        return []
    try:
        table = ds.dataset(str(path)).to_table(columns=["trial_id", "epoch"])
    except (FileNotFoundError, OSError):
        return rows(sweep_dir)
    return list(zip(table["trial_id"].to_pylist(), table["epoch"].to_pylist(), strict=True))


def sweep(args, storage: Path, resume: bool) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "lrtune", "sweep", str(ROOT / "sweeps/seed-article.yaml"),
        "--data", args.data, "--storage", str(storage), "--quiet",
        "--set", f"epochs={args.epochs}", "--set", "repeats=1",
        *(["--resume"] if resume else []),
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def main() -> None:
    import pyarrow.parquet as pq

    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.storage = args.storage or "/tmp/lrtune-kill-resume"
    rng = random.Random(args.seed)
    results = []
    for run in range(args.runs):
        storage = Path(args.storage) / f"run{run}"
        shutil.rmtree(storage, ignore_errors=True)
        sweep_dir = storage / "seed-article"
        total = 8 * args.epochs
        kill_at = rng.randrange(1, total)
        first = sweep(args, storage, resume=False)
        while len(rows(sweep_dir)) < kill_at and first.poll() is None:
            time.sleep(0.1)
        killed = first.poll() is None
        if killed:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = sweep(args, storage, resume=True)
        output, _ = second.communicate()

        statuses = pq.read_table(sweep_dir / "trials.parquet", columns=["status"])["status"].to_pylist()
        keys = rows(sweep_dir)
        once = len(keys) == len(set(keys)) == total
        ok = second.returncode == 0 and statuses == ["done"] * 8 and once
        results.append({"run": run, "kill_at_rows": kill_at, "killed": killed, "ok": ok,
                        "statuses": statuses.count("done"), "rows": len(keys), "unique": len(set(keys))})  # fmt: skip
        print(f"run {run}: killed at {kill_at} rows: {statuses.count('done')}/8 done, "
              f"{len(keys)} rows ({len(set(keys))} unique of {total}) -> {'ok' if ok else 'FAILED'}", flush=True)  # fmt: skip
        if not ok:
            print(output[-3000:])
    finished = sum(r["ok"] for r in results)
    print(f"{finished} of {len(results)} kill/resume runs finished every trial with each row once")
    emit("kill_resume", args, finished=finished, runs=results)


if __name__ == "__main__":
    main()
