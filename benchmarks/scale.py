"""What lrtune's driver side costs at thousands of trials, by simulation.

Runs N trials x E reports of a trainable that only reports (no TensorFlow,
no training, no checkpoints) twice, each in a fresh Python and a fresh local
Ray:

1. plain Ray Tune: the same trainable, param space and TuneConfig as lrtune
   builds (``param_space``, ``tune_config``: random search, reuse_actors,
   max_concurrent), no callbacks;
2. lrtune: the real ``run_sweep`` driver path (Parquet sink, state
   retention, lease renewal, the live view drawn to /dev/null as to a
   terminal), with ``lrtune.engine.sweep.trainable_for`` replaced by one
   that returns the report-only trainable.

The trainable reports what lrtune's trial reports (lrtune.training.reporter):
epoch, lr, the four metrics, epoch_seconds, images_per_second, status
(``done`` at the last epoch, with Tune's ``done``), epoch_end, seed, node,
trial, run, hparams, and on its first report restored_epoch /
restored_from / lineage, so the sink does its real work. It writes no
checkpoint, so StateRetention has nothing to prune.

Figures: wall time of each (from the call to the return, Ray start and
stop included), their ratio, the driver's peak RSS (VmHWM), the longest
flush, the longest live-view redraw, the time spent in lrtune's callbacks
per result over the first and the last tenth of the results, without the
periodic flushes that run inside them (it must not grow with the trials
seen), the mean flush and trials.parquet write over the first and last
tenth of them, and trial errors (must be 0).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time

import common


def report_only(config, epochs: int, epoch_seconds: float):
    """A trial that reports ``epochs`` rows shaped like lrtune's and trains nothing."""
    import random
    import socket
    import uuid

    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    hyper = dict(config.get("arm", config))
    seed = int(hyper.get("sample", 0))
    hyper.setdefault("seed", seed)
    rng = random.Random(seed)
    extra = {"seed": seed, "node": socket.gethostname(), "node_id": "0" * 56, "trial": trial_id}
    extra.update(run=uuid.uuid4().hex[:12], hparams=hyper)
    lineage = {"restored_epoch": 0, "restored_from": None, "lineage": "[]"}
    for epoch in range(1, epochs + 1):
        if epoch_seconds:
            time.sleep(epoch_seconds)
        status = "done" if epoch == epochs else "running"
        accuracy = min(0.99, 0.1 + 0.08 * epoch + 0.05 * rng.random())
        row = {
            "epoch": epoch,
            "lr": float(hyper.get("lr", 0.05)),
            "loss": 2.3 - 2 * accuracy,
            "accuracy": accuracy,
            "val_loss": 2.4 - 2 * accuracy,
            "val_accuracy": accuracy - 0.02,
            "epoch_seconds": epoch_seconds,
            "images_per_second": 3000.0,
            "status": status,
            "epoch_end": time.time(),
            **extra,
            **lineage,
        }
        lineage = {}
        tune.report({**row, "done": status == "done"})


def trainable(epochs: int, epoch_seconds: float, cpu: float, slot: bool = False):
    from ray import tune

    from lrtune.engine.ray_runtime import TRIAL_SLOT

    return tune.with_resources(
        tune.with_parameters(report_only, epochs=epochs, epoch_seconds=epoch_seconds),
        {"cpu": cpu, **({TRIAL_SLOT: 1} if slot else {})},
    )


def make_spec(args):
    from lrtune.spec import parse_spec

    raw = {
        "name": f"scale-{args.variant}",
        "data": {"dataset": "cifar10", "validation": "test", "limit": 500},
        "model": "seed-tiny",
        "epochs": args.epochs,
        "space": [
            {
                "optimizer": "sgd",
                "schedule": "step",
                "lr": {"loguniform": [0.01, 0.1]},
                "drop": 0.5,
                "epochs_drop": 3,
                "momentum": 0.9,
            }
        ],
        "search": "random",
        "num_samples": args.trials,
        "max_concurrent": args.concurrent,
        "resources": {"cpu": args.cores / args.concurrent},
    }
    return parse_spec(raw, "<scale>")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_plain(args) -> dict:
    import logging

    import ray
    from ray import tune

    from lrtune.engine.translation import param_space, tune_config

    spec = make_spec(args)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    start = time.time()
    ray.init(address="local", log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False)
    tuner = tune.Tuner(
        trainable(args.epochs, args.epoch_seconds, spec.resources.cpu),
        param_space=param_space(spec),
        tune_config=tune_config(spec, args.concurrent),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=args.storage,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )
    grid = tuner.fit()
    ray.shutdown()
    wall = time.time() - start
    results = sum(int((r.metrics or {}).get("training_iteration", 0)) for r in grid)
    return {"wall_s": wall, "trials": len(grid), "results": results, "errors": len(grid.errors)}


def run_lrtune(args) -> dict:
    from rich.console import Console

    import lrtune.engine.sweep as sweep
    from lrtune.engine import housekeeping
    from lrtune.engine.progress import LiveView
    from lrtune.engine.sink import ParquetSink

    spec = make_spec(args)
    sweep.trainable_for = lambda dataset, settings, storage, *, cpu, gpu, slot=False: trainable(
        args.epochs, args.epoch_seconds, cpu, slot
    )
    flushes, redraws, tables = [], [], []
    per_hook: dict[str, list[float]] = {}
    per_hook_cpu: dict[str, list[float]] = {}
    spent = {"s": 0.0}
    in_flush = {"s": 0.0, "cpu": 0.0}

    def timed(cls, name):
        original = getattr(cls, name)
        record = cpu_record = None
        if name == "on_trial_result":
            record = per_hook.setdefault(f"{cls.__name__}.{name}", [])
            cpu_record = per_hook_cpu.setdefault(f"{cls.__name__}.{name}", [])

        def wrapper(self, *a, **kw):
            t, c, f, fc = time.perf_counter(), time.thread_time(), in_flush["s"], in_flush["cpu"]
            try:
                return original(self, *a, **kw)
            finally:
                d = time.perf_counter() - t
                spent["s"] += d
                if record is not None:
                    # The periodic flush runs inside the hook: its share is timed apart. The
                    # thread's CPU time leaves out the waits for the GIL other threads hold.
                    record.append(d - (in_flush["s"] - f))
                    cpu_record.append(time.thread_time() - c - (in_flush["cpu"] - fc))

        setattr(cls, name, wrapper)

    for cls in (ParquetSink, LiveView, housekeeping.StateRetention, housekeeping.LeaseRenewal):
        for hook in (
            "on_trial_result",
            "on_step_end",
            "on_trial_complete",
            "on_checkpoint",
            "on_experiment_end",
        ):
            if hook in cls.__dict__:
                timed(cls, hook)
    original_flush = ParquetSink.flush
    original_tables = ParquetSink.write_tables

    def flush(self, *a, **kw):
        t, c = time.perf_counter(), time.thread_time()
        original_flush(self, *a, **kw)
        d = time.perf_counter() - t
        flushes.append(d)
        in_flush["s"] += d
        in_flush["cpu"] += time.thread_time() - c

    def write_tables(self):
        t = time.perf_counter()
        original_tables(self)
        tables.append(time.perf_counter() - t)

    ParquetSink.flush = flush
    ParquetSink.write_tables = write_tables
    original_render = LiveView.render

    def render(self):
        t = time.perf_counter()
        out = original_render(self)
        redraws.append(time.perf_counter() - t)
        return out

    LiveView.render = render
    # The view draws as to a terminal, into /dev/null (rich's own output cost included).
    console = Console(file=open(os.devnull, "w"), force_terminal=True, width=120, stderr=False)
    start = time.time()
    outcome = sweep.run_sweep(
        spec, storage=args.storage, data=args.data, max_concurrent=args.concurrent, console=console
    )
    wall = time.time() - start
    from lrtune.results.tables import load

    metrics = load(outcome.sweep_dir)
    keys = set(zip(metrics["trial_id"].to_pylist(), metrics["epoch"].to_pylist(), strict=True))
    # Each result runs every class's hook once, in the same order: sum them per result.
    per_result = [sum(ds) for ds in zip(*per_hook.values(), strict=True)]
    per_result_cpu = [sum(ds) for ds in zip(*per_hook_cpu.values(), strict=True)]
    return {
        "wall_s": wall,
        "trials": sum(outcome.counts.values()),
        "results": len(per_result),
        "errors": outcome.counts.get("error", 0),
        "counts": dict(outcome.counts),
        "rows": metrics.num_rows,
        "rows_unique": len(keys),
        "flushes": len(flushes),
        "flush_s": sum(flushes),
        "flush_max_s": max(flushes, default=float("nan")),
        "flush_ms_first_last_tenth": tenths(flushes),
        "tables_written": len(tables),
        "tables_s": sum(tables),
        "tables_ms_first_last_tenth": tenths(tables),
        "redraws": len(redraws),
        "redraw_max_s": max(redraws, default=float("nan")),
        "callbacks_s": spent["s"],
        "on_result_first_tenth_ms": tenths(per_result)[0],
        "on_result_last_tenth_ms": tenths(per_result)[1],
        "on_result_by_class_ms": {name: tenths(ds) for name, ds in per_hook.items()},
        "on_result_cpu_first_tenth_ms": tenths(per_result_cpu)[0],
        "on_result_cpu_last_tenth_ms": tenths(per_result_cpu)[1],
    }


def tenths(seconds: list[float]) -> list[float]:
    """Mean of the first and of the last tenth of ``seconds``, in ms."""
    if not seconds:
        return [float("nan"), float("nan")]
    n = max(1, len(seconds) // 10)
    return [1000 * sum(seconds[:n]) / n, 1000 * sum(seconds[-n:]) / n]


def child(args) -> None:
    out = run_plain(args) if args.variant == "plain" else run_lrtune(args)
    out["peak_rss_mib"] = peak_rss_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["driver_cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(common.jsonable(out)))


def run_child(args, variant: str, repeat: int) -> dict:
    """One child's figures: kept in ``STORAGE/runs.jsonl`` as it finishes, or taken from there (``--reuse``)."""
    log = os.path.join(args.storage, "runs.jsonl")
    sizes = {k: getattr(args, k) for k in ("trials", "epochs", "concurrent", "epoch_seconds", "cores")}
    if args.reuse and os.path.exists(log):
        with open(log) as f:
            for line in f:
                kept = json.loads(line)
                if (kept["variant"], kept["repeat"], kept["sizes"]) == (variant, repeat, sizes):
                    print(f"{variant} repeat {repeat + 1}: kept from {kept['finished']}", file=sys.stderr)
                    return kept["out"]
    storage = f"{args.storage}/{variant}-{repeat}"
    shutil.rmtree(storage, ignore_errors=True)
    os.makedirs(storage)
    command = [sys.executable, os.path.abspath(__file__), "--child", variant, "--storage", storage]
    command += ["--trials", str(args.trials), "--epochs", str(args.epochs), "--data", args.data]
    command += ["--concurrent", str(args.concurrent), "--epoch-seconds", str(args.epoch_seconds)]
    command += ["--cores", str(args.cores)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{variant} run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(log, "a") as f:
        f.write(
            json.dumps(
                {"variant": variant, "repeat": repeat, "sizes": sizes, "finished": finished, "out": out}
            )
            + "\n"
        )
    return out


def main():
    p = common.parser(__doc__)
    p.add_argument("--trials", type=int, help="trials (default 5000; quick 50)")
    p.add_argument("--epochs", type=int, help="reports per trial (default 10; quick 3)")
    p.add_argument("--concurrent", type=int, default=8, help="trials at once (default %(default)s)")
    p.add_argument("--epoch-seconds", type=float, default=0.0, help="sleep before each report (default 0)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="take each repeat's figures kept in STORAGE/runs.jsonl by an earlier run of the same sizes "
        "(a run stopped part-way goes on where it stopped)",
    )
    p.add_argument("--child", choices=["plain", "lrtune"], help=None)
    args = common.parse(p, full=dict(trials=5000, epochs=10), quick=dict(trials=50, epochs=3))
    if args.child:
        args.variant = args.child
        child(args)
        return

    runs = []
    for i in range(args.repeats):
        plain, lrtune = run_child(args, "plain", i), run_child(args, "lrtune", i)
        runs.append({"plain": plain, "lrtune": lrtune, "ratio": lrtune["wall_s"] / plain["wall_s"]})
    # A repeat kept by an earlier version of this script may lack a figure: the medians are over those that have it.
    med = lambda side, key: common.median(r[side].get(key) for r in runs)  # noqa: E731
    print(
        f"{args.trials} trials x {args.epochs} reports, {args.concurrent} at once, report-only trainable "
        f"(no TensorFlow, no checkpoints); medians over {args.repeats} repeat(s)"
    )
    common.table(
        ["", "plain Tune", "lrtune"],
        [
            ["wall (s)", med("plain", "wall_s"), med("lrtune", "wall_s")],
            ["driver peak RSS (MiB)", med("plain", "peak_rss_mib"), med("lrtune", "peak_rss_mib")],
            ["driver CPU (s)", med("plain", "driver_cpu_s"), med("lrtune", "driver_cpu_s")],
            ["trial errors", med("plain", "errors"), med("lrtune", "errors")],
            ["results", med("plain", "results"), med("lrtune", "results")],
        ],
    )
    ratio = common.median(r["ratio"] for r in runs)
    scalar = lambda side: list(  # noqa: E731
        dict.fromkeys(k for r in runs for k, v in r[side].items() if isinstance(v, int | float))
    )
    lr = {k: med("lrtune", k) for k in scalar("lrtune")}
    each = ", ".join(f"{r['ratio']:.3f}" for r in runs)
    print(f"\nwall lrtune / plain Tune: {ratio:.3f} (per repeat: {each})")
    print("\nthe spread: each repeat, plain Tune then lrtune in fresh processes")
    common.table(
        ["repeat", "plain wall (s)", "lrtune wall (s)", "plain CPU (s)", "lrtune CPU (s)"],
        [
            [
                i + 1,
                r["plain"]["wall_s"],
                r["lrtune"]["wall_s"],
                r["plain"]["driver_cpu_s"],
                r["lrtune"]["driver_cpu_s"],
            ]
            for i, r in enumerate(runs)
        ],
    )
    common.table(
        ["lrtune driver", "value"],
        [
            ["rows in metrics/ (unique)", f"{lr['rows']:.0f} ({lr['rows_unique']:.0f})"],
            ["flushes", lr["flushes"]],
            ["longest flush (s)", lr["flush_max_s"]],
            ["live-view redraws", lr["redraws"]],
            ["longest redraw (s)", lr["redraw_max_s"]],
            ["time in lrtune callbacks (s)", lr["callbacks_s"]],
            ["time in flushes (s)", lr["flush_s"]],
            ["trials.parquet writes", lr["tables_written"]],
            ["time in trials.parquet writes (s)", lr["tables_s"]],
            ["on_trial_result without flushes, first tenth (ms)", lr["on_result_first_tenth_ms"]],
            ["on_trial_result without flushes, last tenth (ms)", lr["on_result_last_tenth_ms"]],
            ["of which its thread's CPU, first tenth (ms)", lr.get("on_result_cpu_first_tenth_ms", "-")],
            ["of which its thread's CPU, last tenth (ms)", lr.get("on_result_cpu_last_tenth_ms", "-")],
        ],
    )
    print("\nper repeat, mean ms over the first -> the last tenth")
    common.table(
        ["repeat", "what", "first tenth (ms)", "last tenth (ms)"],
        [
            [i + 1, what, *values]
            for i, r in enumerate(runs)
            for what, values in [
                ("flush", r["lrtune"].get("flush_ms_first_last_tenth", ["-", "-"])),
                ("trials.parquet write", r["lrtune"].get("tables_ms_first_last_tenth", ["-", "-"])),
                *r["lrtune"].get("on_result_by_class_ms", {}).items(),
            ]
        ],
    )
    common.emit(
        "scale",
        args,
        trials=args.trials,
        epochs=args.epochs,
        concurrent=args.concurrent,
        epoch_seconds=args.epoch_seconds,
        ratio=ratio,
        ratios=[r["ratio"] for r in runs],
        per_repeat=[
            {side: {k: r[side][k] for k in ("wall_s", "driver_cpu_s")} for side in ("plain", "lrtune")}
            for r in runs
        ],
        plain={k: med("plain", k) for k in scalar("plain")},
        lrtune=lr,
        lrtune_per_repeat=[r["lrtune"] for r in runs],
        counts=runs[-1]["lrtune"]["counts"],
    )


if __name__ == "__main__":
    main()
