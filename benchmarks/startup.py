"""Start-up: from `lrtune sweep` to the first epoch row readable in Parquet, and its parts.

cli:        `python -m lrtune sweep FILE --data ... --storage ... --quiet` as a
            subprocess running 1 trial (cpu 1); this script polls its process
            tree every 50 ms for the trial's worker (`ray::ImplicitFunc`) and the
            metrics dataset for the first row.
instrument: a fresh Python (`startup.py --instrument`) doing what a trial does,
            without Ray: import TensorFlow/Keras (configure_tensorflow), load the
            data, build and compile the model, train to the first step and the
            first epoch end, write the checkpoint (lrtune's Reporter).
The difference between them is Ray: start the node, start the worker, ship
the data, report, and the sink's flush.
"""

import json
import os
import subprocess
import sys
import time

import common
import yaml


def instrument(t0: float, data: str, limit: int):
    """Timestamps of a trial's start-up to its first checkpoint, unix seconds; printed as JSON."""
    marks = {"python": t0}
    from lrtune.training.trial import configure_tensorflow

    configure_tensorflow(1)
    import keras

    marks["tensorflow"] = time.time()
    from lrtune.data import load_cifar10
    from lrtune.training.reporter import Reporter, local_checkpoint

    data = load_cifar10(data, limit=limit or None)
    marks["data"] = time.time()
    model = common.compiled_model(common.STEP_ARM, data.num_classes, -(-len(data.x_train) // 64))
    marks["model"] = time.time()
    reports = []
    first_step = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: b == 0 and marks.setdefault("first_step", time.time())
    )
    reporter = Reporter(
        lambda row, ckpt: reports.append((row, time.time())),
        num_train=len(data.x_train),
        epochs=1,
        checkpoint=local_checkpoint,
    )
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=64,
        epochs=1,
        verbose=0,
        shuffle=True,
        validation_data=(data.x_val, data.y_val),
        callbacks=[first_step, reporter],
    )
    reporter.finish()  # the last epoch's row is sent once fit() has returned, as in a trial
    row, reported = reports[0]
    marks["epoch_end"] = row["epoch_end"]
    marks["checkpoint"] = reported
    print(json.dumps({"marks": marks}))


def run_instrumented(args):
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--instrument", str(t0), args.data, str(args.limit)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    m = got["marks"]
    return {
        "python_and_tf_import_s": m["tensorflow"] - m["python"],
        "load_data_s": m["data"] - m["tensorflow"],
        "build_compile_s": m["model"] - m["data"],
        "first_step_s": m["first_step"] - m["model"],
        "rest_of_epoch1_s": m["epoch_end"] - m["first_step"],
        "checkpoint_s": m["checkpoint"] - m["epoch_end"],
        "instrumented_to_epoch1_s": m["checkpoint"] - m["python"],
    }


def run_cli(args, i):
    from lrtune.results.tables import METRICS_SCHEMA

    name = f"startup-{i}"
    spec = {
        "name": name,
        "data": {"validation": "test", **({"limit": args.limit} if args.limit else {})},
        "model": "seed-tiny",
        "epochs": args.epochs,
        "space": common.STEP_ARM,
        "resources": {"cpu": 1},
    }
    path = f"{args.storage}/{name}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(spec, f)
    metrics = f"{args.storage}/{name}/metrics"
    start = time.time()
    log = open(f"{args.storage}/{name}.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lrtune",
            "sweep",
            path,
            "--data",
            args.data,
            "--storage",
            args.storage,
            "--quiet",
        ],
        stdout=log,
        stderr=log,
    )
    t_trial = t_row = None
    import pyarrow.dataset as ds

    while proc.poll() is None:
        now = time.time()
        if t_trial is None:
            for pid in common.process_tree(proc.pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"ImplicitFunc" in f.read():
                            t_trial = now
                except OSError:
                    pass
        if t_row is None and os.path.isdir(metrics):
            if ds.dataset(metrics, format="parquet", schema=METRICS_SCHEMA).count_rows() > 0:
                t_row = now
        time.sleep(0.05)
    end = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"lrtune sweep failed ({proc.returncode}); see {log.name}")
    first = min(common.rows(f"{args.storage}/{name}"), key=lambda r: r["epoch"])
    return {
        "cli_to_trial_worker_s": t_trial - start,
        "trial_worker_to_row_readable_s": t_row - t_trial,
        "of_which_epoch1_s": first["epoch_seconds"],
        "cli_to_first_row_readable_s": t_row - start,
        "cli_total_s": end - start,
    }


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--instrument":
        t0, data, limit = sys.argv[2:5]
        return instrument(float(t0), data, int(limit))
    p = common.parser(__doc__)
    p.add_argument("--epochs", type=int, help="epochs of the one trial (default 2; quick 1)")
    p.add_argument("--limit", type=int, help="training images, 0 = all 10,000 (default 0; quick 2000)")
    args = common.parse(p, full=dict(epochs=2, limit=0), quick=dict(epochs=1, limit=2000))

    runs = []
    for i in range(args.repeats):
        run = {**run_cli(args, i), **run_instrumented(args)}
        run["first_row_over_floor"] = run["cli_to_first_row_readable_s"] / run["instrumented_to_epoch1_s"]
        runs.append(run)
        print(
            f"repeat {i}: first row readable {run['cli_to_first_row_readable_s']:.2f} s, "
            f"no-Ray floor {run['instrumented_to_epoch1_s']:.2f} s, ratio {run['first_row_over_floor']:.2f}",
            flush=True,
        )
    med = {k: common.median(r[k] for r in runs) for k in runs[0]}
    med["ray_and_sink_s"] = med["cli_to_first_row_readable_s"] - med["instrumented_to_epoch1_s"]
    print(f"1 trial, seed-tiny, cpu 1, limit {args.limit or 'none'}; medians over {args.repeats} repeat(s)")
    names = {
        "cli_to_trial_worker_s": "cli: start -> trial worker exists (ray::ImplicitFunc)",
        "trial_worker_to_row_readable_s": "cli: trial worker -> first row readable",
        "of_which_epoch1_s": "cli:   of which epoch 1 (epoch_seconds)",
        "cli_to_first_row_readable_s": "cli: start -> first row readable  [headline]",
        "cli_total_s": "cli: whole run",
        "python_and_tf_import_s": "instrument: python + TensorFlow import",
        "load_data_s": "instrument: load data",
        "build_compile_s": "instrument: build + compile model",
        "first_step_s": "instrument: fit() -> first step done",
        "rest_of_epoch1_s": "instrument: rest of epoch 1 (+ validation)",
        "checkpoint_s": "instrument: checkpoint save",
        "instrumented_to_epoch1_s": "instrument: start -> epoch 1 checkpointed",
        "ray_and_sink_s": "difference: Ray + report + Parquet flush",
        "first_row_over_floor": "first row readable / no-Ray floor (ratio, within each repeat)",
    }
    common.table(["", "seconds"], [[names[k], med[k]] for k in names])
    met = med["cli_to_first_row_readable_s"] <= 5 or med["first_row_over_floor"] <= 1.3
    print(
        f"first row readable {med['cli_to_first_row_readable_s']:.2f} s, {med['first_row_over_floor']:.2f}x "
        f"the no-Ray floor (target <= 5 s or <= 1.3x: {'met' if met else 'NOT met'})"
    )
    common.emit("startup", args, epochs=args.epochs, limit=args.limit, **med)


if __name__ == "__main__":
    main()
