"""What the benchmarks share: arguments, sweep specs, timing, tables and the JSON line.

Each benchmark prints a table for people, then one line of JSON (its last
line) for comparing runs: ``python benchmarks/x.py | tail -1 >> runs.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
# A fresh local Ray for every sweep: with no address, ray.init joins any cluster
# named in /tmp/ray/ray_current_cluster (another user's `ray start`, a test's Cluster).
os.environ.setdefault("RAY_ADDRESS", "local")

# The shared data folder beside the repository's checkout (../shared/data).
DEFAULT_DATA = str(
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar-10-subset-python.tar.gz"
)

# The trial the benchmarks run unless they say otherwise: the quickstart's step arm.
STEP_ARM = {
    "optimizer": "sgd",
    "schedule": "step",
    "lr": 0.05,
    "drop": 0.5,
    "epochs_drop": 3,
    "momentum": 0.9,
}


def compiled_model(arm: dict, num_classes: int, steps_per_epoch: int):
    """lrtune's model, schedule and optimizer for ``arm``, compiled as run_trial compiles them."""
    from lrtune.training.models import build_model
    from lrtune.training.optimizers import build_optimizer
    from lrtune.training.schedules import make_schedule, schedule_params

    wanted = schedule_params(arm["schedule"])
    schedule = make_schedule(arm["schedule"], **{k: arm[k] for k in wanted})
    settings = {k: v for k, v in arm.items() if k not in ("optimizer", "schedule", *wanted)}
    model = build_model("seed-tiny", num_classes)
    model.compile(
        optimizer=build_optimizer(arm["optimizer"], schedule, steps_per_epoch, **settings),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def cores() -> int:
    """CPU cores this process may use (the cgroup/affinity view, not the host's)."""
    return len(os.sched_getaffinity(0))


def parser(doc: str) -> argparse.ArgumentParser:
    """The flags every benchmark takes; scripts add their own."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 archive or folder (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="runs of the whole benchmark; medians are reported")
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the script end to end, figures mean little"
    )
    p.add_argument("--storage", default=None, help="results folder (default: a new temporary folder)")
    p.add_argument("--cores", type=int, default=cores(), help="cores to plan for (default: %(default)s)")
    return p


def parse(p: argparse.ArgumentParser, *, full: dict, quick: dict) -> argparse.Namespace:
    """Parse the flags; a size flag left unset (None) takes its ``full`` or ``--quick`` value."""
    args = p.parse_args()
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.storage = args.storage or tempfile.mkdtemp(prefix="lrtune-bench-")
    return args


def make_spec(
    name: str,
    space,
    *,
    epochs: int,
    repeats: int = 1,
    classes=None,
    limit=None,
    scheduler="fifo",
    cpu: float = 1,
    gpu: float = 0,
    batch_size: int = 64,
    model: str = "seed-tiny",
    seed: int = 0,
):
    """A validated :class:`~lrtune.spec.SweepSpec`, built as a sweep file would be (``seed``: the sweep's base seed)."""
    from lrtune.spec import parse_spec

    data = {"dataset": "cifar10", "validation": "test"}
    if classes:
        data["classes"] = list(classes)
    if limit:
        data["limit"] = limit
    raw = {
        "name": name,
        "data": data,
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "repeats": repeats,
        "space": space,
        "scheduler": scheduler,
        "search": "grid",
        "resources": {"cpu": cpu, "gpu": gpu},
        "seed": seed,
    }
    return parse_spec(raw, f"<{name}>")


@contextlib.contextmanager
def arrivals():
    """Record when each epoch's result reaches the driver: ``{(trial_id, epoch): unix seconds}``.

    The Parquet ``timestamp`` column holds whole seconds, taken after the
    checkpoint is written (Ray's session overwrites the reporter's float
    timestamp), too coarse to time epochs of a second. This probe wraps
    ``ParquetSink.on_trial_result`` (driver side, a dict insert per result).
    """
    from lrtune.engine.sink import ParquetSink

    seen = {}
    original = ParquetSink.on_trial_result

    def on_trial_result(self, iteration, trials, trial, result, **info):
        seen.setdefault((trial.trial_id, int(result.get("epoch", 0))), time.time())
        return original(self, iteration, trials, trial, result, **info)

    ParquetSink.on_trial_result = on_trial_result
    try:
        yield seen
    finally:
        ParquetSink.on_trial_result = original


def run(spec, args, *, max_concurrent: int):
    """Run ``spec`` with lrtune; returns (outcome, wall seconds, start time, rows)."""
    from lrtune.engine.sweep import run_sweep

    with arrivals() as seen:
        start = time.time()
        outcome = run_sweep(
            spec, storage=args.storage, data=args.data, max_concurrent=max_concurrent, quiet=True
        )
        wall = time.time() - start
    return outcome, wall, start, rows(outcome.sweep_dir, seen)


def rows(sweep_dir: str, arrived: dict | None = None) -> list[dict]:
    """The sweep's metric rows, plus ``end`` and ``start`` of each epoch (unix seconds).

    ``end`` is the driver's arrival time when ``arrived`` has it (see
    :func:`arrivals`), else the row's whole-second ``timestamp``;
    ``start`` is ``end - epoch_seconds``.
    """
    from lrtune.results.tables import load

    out = load(sweep_dir).to_pylist()
    for r in out:
        r["end"] = (arrived or {}).get((r["trial_id"], r["epoch"]), r["timestamp"].timestamp())
        r["start"] = r["end"] - r["epoch_seconds"]
    return out


def concurrent_images_per_second(rows: list[dict]) -> float:
    """Total training images/s of the trials running at once, median over epochs after the first.

    At the middle of each epoch (epoch > 1), add up the ``images_per_second``
    of every epoch in progress at that moment (any trial). With trials that
    start together this is the per-epoch sum over trials; it stays right
    when trials come in waves or stop early. Needs exact epoch times: rows
    from :func:`run` (driver arrival times), not the whole-second timestamps.
    """
    totals = []
    for r in rows:
        if r["epoch"] > 1:
            mid = (r["start"] + r["end"]) / 2
            totals.append(sum(o["images_per_second"] for o in rows if o["start"] <= mid <= o["end"]))
    return median(totals)


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc/<pid>/stat."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def table(header: list[str], body: list[list]) -> None:
    """Print an aligned table; floats with 3 decimals."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in [header, *body]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def emit(name: str, args: argparse.Namespace, **figures) -> None:
    """The machine-readable last line: the benchmark, its settings and its figures."""
    line = {
        "benchmark": name,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cores": args.cores,
        "quick": args.quick,
        "repeats": args.repeats,
        "data": args.data,
        "storage": args.storage,
        **figures,
    }
    print(json.dumps(jsonable(line)))


def jsonable(value):
    """JSON-ready: NaN becomes null (strict JSON has no NaN), tuples and numpy numbers plain."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
