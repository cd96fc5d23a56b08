"""ParquetSink throughput, and how soon a finished epoch is readable.

No Ray cluster: the sink's Tune hooks are called the way Tune's controller
calls them, with synthetic rows and stand-in trials: on_trial_result for each
result (it flushes when `flush_seconds`, default 2 s, have passed, and each
flush rewrites trials.parquet), on_step_end every 0.1 s (TuneController.step
waits up to 0.1 s for events), on_experiment_end at the end (flush + compact).

1. throughput: results pushed as fast as the sink takes them, rows/s; plus
   add() alone, one flush with all trials known, and the final compaction.
2. delay, SIMULATED (not a real sweep): trials report an epoch every
   --epoch-seconds, staggered; another process polls pyarrow.dataset every
   50 ms; delay = first seen - the moment the result reached the sink. In a
   real sweep add the time from epoch end to the driver (startup.py).
"""

import multiprocessing as mp
import pathlib
import time
from types import SimpleNamespace

import common


def trials(n):
    return [
        SimpleNamespace(
            trial_id=f"bench_{i:05d}",
            status="RUNNING",
            config={"arm": {**common.STEP_ARM, "label": "sgd/step", "repeat": i % 2}},
        )
        for i in range(n)
    ]


def result(epoch, seed=0):
    return {
        "epoch": epoch,
        "lr": 0.05,
        "loss": 1.0,
        "accuracy": 0.6,
        "val_loss": 1.1,
        "val_accuracy": 0.55,
        "epoch_seconds": 3.0,
        "images_per_second": 3000.0,
        "status": "running",
        "timestamp": time.time(),
        "seed": seed,
        "node": "bench",
        "node_id": "0" * 56,
    }


def make_sink(args, name):
    from lrtune.engine.sink import ParquetSink

    sink = ParquetSink(f"{args.storage}/{name}", sweep=name, metric="val_accuracy", mode="max", epochs=10**6)
    sink.setup()
    return sink


def throughput(args, i):
    ts = trials(args.trials)
    epochs = args.rows // args.trials
    sink = make_sink(args, f"sink-add-{i}")
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for t in ts:
            sink.add(t.trial_id, t.config, result(epoch))
    add_rate = epochs * len(ts) / (time.perf_counter() - start)

    sink = make_sink(args, f"sink-hooks-{i}")
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for t in ts:
            sink.on_trial_result(epoch, ts, t, result(epoch))
    hooks_rate = epochs * len(ts) / (time.perf_counter() - start)
    flushes = []
    for epoch in range(epochs + 1, epochs + 6):  # one new row per flush, as with one result every 2 s
        sink.add(ts[0].trial_id, ts[0].config, result(epoch))
        start = time.perf_counter()
        sink.flush()
        flushes.append(time.perf_counter() - start)
    parts = len(list(pathlib.Path(sink.sweep_dir, "metrics").glob("*.parquet")))  # files compaction merges
    start = time.perf_counter()
    sink.on_experiment_end(ts)
    return {
        "add_rows_per_s": add_rate,
        "hooks_rows_per_s": hooks_rate,
        "flush_ms": 1000 * common.median(flushes),
        "compact_s": time.perf_counter() - start,
        "parts_compacted": parts,
    }


def reader(metrics_dir, stop, out):
    import pyarrow.dataset as ds

    from lrtune.results.tables import METRICS_SCHEMA

    seen = {}
    while not stop.is_set():
        try:
            dataset = ds.dataset(metrics_dir, format="parquet", schema=METRICS_SCHEMA)
            table = dataset.to_table(columns=["trial_id", "epoch"])
        except (FileNotFoundError, OSError):  # a part deleted by compaction between listing and reading
            continue
        now = time.time()
        for key in zip(table["trial_id"].to_pylist(), table["epoch"].to_pylist(), strict=True):
            seen.setdefault(key, now)
        time.sleep(0.05)
    out.put(seen)


def delay(args, i):
    ts = trials(args.delay_trials)
    sink = make_sink(args, f"sink-delay-{i}")
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=reader, args=(f"{sink.sweep_dir}/metrics", stop, out))
    proc.start()
    time.sleep(2)  # the reader's imports
    start, sent, epoch = time.time(), {}, {t.trial_id: 0 for t in ts}
    due = {t.trial_id: start + args.epoch_seconds * (1 + k / len(ts)) for k, t in enumerate(ts)}
    while time.time() - start < args.seconds + sink.flush_seconds + 1:  # then no new epochs: the last flush
        for t in ts:
            if time.time() >= due[t.trial_id] and time.time() - start < args.seconds:
                epoch[t.trial_id] += 1
                sent[(t.trial_id, epoch[t.trial_id])] = time.time()
                sink.on_trial_result(0, ts, t, result(epoch[t.trial_id]))
                due[t.trial_id] += args.epoch_seconds
        sink.on_step_end(0, ts)
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    seen = out.get(timeout=60)
    proc.join()
    delays = sorted(seen[k] - v for k, v in sent.items() if k in seen)
    return {
        "delay_median_s": common.median(delays),
        "delay_p95_s": delays[int(0.95 * (len(delays) - 1))],
        "delay_max_s": delays[-1],
        "delay_rows": len(sent),
        "rows_seen": len(delays),
    }


def main():
    p = common.parser(__doc__)
    p.add_argument("--rows", type=int, help="rows for the throughput test (default 100000; quick 5000)")
    p.add_argument("--trials", type=int, help="trials they are spread over (default 500; quick 50)")
    p.add_argument("--delay-trials", type=int, default=8)
    p.add_argument("--epoch-seconds", type=float, default=1.0)
    p.add_argument("--seconds", type=float, help="length of the delay simulation (default 60; quick 8)")
    args = common.parse(
        p, full=dict(rows=100_000, trials=500, seconds=60), quick=dict(rows=5000, trials=50, seconds=8)
    )

    runs = [{**throughput(args, i), **delay(args, i)} for i in range(args.repeats)]
    med = {k: common.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"{args.rows} rows over {args.trials} trials; delay: {args.delay_trials} trials, one epoch each "
        f"{args.epoch_seconds:g} s for {args.seconds:g} s (simulated callback calls); "
        f"medians over {args.repeats} repeat(s)"
    )
    names = {
        "add_rows_per_s": "add() alone (rows/s)",
        "hooks_rows_per_s": "on_trial_result, 2 s flushes (rows/s)",
        "flush_ms": f"one flush, 1 row + trials.parquet of {args.trials} trials (ms)",
        "compact_s": "on_experiment_end: flush + compact (s)",
        "parts_compacted": "part files compacted",
        "delay_median_s": "result -> readable, median (s)",
        "delay_p95_s": "result -> readable, p95 (s)",
        "delay_max_s": "result -> readable, max (s)",
        "rows_seen": f"rows seen by the reader (of {med['delay_rows']:.0f})",
    }
    common.table(["", "value"], [[names[k], float(med[k])] for k in names])
    common.emit("sink", args, rows=args.rows, trials=args.trials, delay_mode="simulated", **med)


if __name__ == "__main__":
    main()
