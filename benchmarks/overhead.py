"""lrtune's overhead: the same trials as bare model.fit processes and as an lrtune sweep.

(a) bare: a spawn Pool of `cores` processes, each with lrtune's TensorFlow
thread settings (intra-op = 1 CPU per trial, inter-op as
configure_tensorflow), the data pickled to it once, then model.fit on
lrtune's own model/optimizer/schedule: no reporter, no checkpoints, no Ray.
(b) lrtune: run_sweep on the same trials (seeds 0..N-1), cpu 1 per trial,
max_concurrent = cores, per-epoch reports, Parquet and checkpoints on.
Both timings include loading the data in the driver. Targets: (b)/(a) <= 1.05
for the default 4 trials x 10 epochs, <= 1.03 for trials of a minute or more
(`--long-epochs`, run after the short ones by default).

The breakdown comes from each trial's epoch spans: in (a) a timing callback,
in (b) each epoch's result arriving at the driver minus its `epoch_seconds`,
so (b)'s "between epochs" is everything an epoch costs beyond training and
validation: checkpoint save, report to the driver, waiting to continue.
"""

import math
import multiprocessing as mp
import os
import time

import common

_data = None


def _init_worker(data, threads, t_pool):
    global _data
    entered = time.time()
    # Silence TensorFlow's start-up log lines; errors still come back through the pool.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    from lrtune.training.trial import configure_tensorflow

    configure_tensorflow(threads)
    import keras  # noqa: F401 - TensorFlow and Keras imported once per process, as a reused Tune worker does

    _data = (data, entered - t_pool, time.time() - entered)


def _bare_trial(job):
    import keras

    seed, arm, epochs, batch_size = job
    data, spawn_s, import_s = _data
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = common.compiled_model(arm, data.num_classes, math.ceil(len(data.x_train) / batch_size))
    spans = []
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: spans.append([time.time(), None]),
        on_epoch_end=lambda e, logs: spans[-1].__setitem__(1, time.time()),
    )
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        validation_data=(data.x_val, data.y_val),
        callbacks=[clock],
    )
    return {"trial": seed, "spans": spans, "spawn_s": spawn_s, "import_s": import_s}


def bare(args, data_args):
    from lrtune.data import load_cifar10
    from lrtune.training.trial import configure_tensorflow  # noqa: F401 - fail here, not in a child

    start = time.time()
    data = load_cifar10(args.data, **data_args)
    jobs = [(seed, common.STEP_ARM, args.epochs, args.batch_size) for seed in range(args.trials)]
    with mp.get_context("spawn").Pool(args.cores, _init_worker, (data, 1, time.time())) as pool:
        results = pool.map(_bare_trial, jobs, chunksize=1)
    wall = time.time() - start
    trials = {r["trial"]: r["spans"] for r in results}
    return wall, start, trials, results


def lrtune(args, data_args, name, model="seed-tiny"):
    spec = common.make_spec(
        name,
        common.STEP_ARM,
        epochs=args.epochs,
        repeats=args.trials,
        batch_size=args.batch_size,
        cpu=1,
        model=model,
        **data_args,
    )
    outcome, wall, start, rows = common.run(spec, args, max_concurrent=args.cores)
    trials = {}
    for r in rows:
        trials.setdefault(r["trial_id"], []).append([r["start"], r["end"]])
    return wall, start, trials


def breakdown(wall, start, trials):
    """Where the wall time goes, from each trial's epoch (start, end) times."""
    spans = sorted(trials.values(), key=lambda s: s[0][0])
    ends = sorted(s[-1][1] for s in spans)
    handover = [s[0][0] - max((e for e in ends if e <= s[0][0]), default=math.nan) for s in spans]
    return {
        "wall_s": wall,
        "first_epoch_start_s": min(s[0][0] for s in spans) - start,
        "epoch1_s": common.median(s[0][1] - s[0][0] for s in spans),
        "epoch_s": common.median(e - b for s in spans for b, e in s[1:]),
        "trial_s": common.median(s[-1][1] - s[0][0] for s in spans),
        "between_epochs_s": common.median(s[i][0] - s[i - 1][1] for s in spans for i in range(1, len(s))),
        "between_trials_s": common.median(h for h in handover if not math.isnan(h)),
        "tail_s": start + wall - ends[-1],
    }


NAMES = {
    "wall_s": "wall time (s)",
    "first_epoch_start_s": "start -> first epoch begins (s)",
    "epoch1_s": "first epoch (s)",
    "epoch_s": "later epochs, median (s)",
    "trial_s": "one trial's training, first epoch start -> last end (s)",
    "between_epochs_s": "between epochs (s): checkpoint + report",
    "between_trials_s": "trial end -> next trial's epoch 1 (s)",
    "tail_s": "last epoch -> sweep returns (s)",
    "spawn_s": "bare: process spawn + data unpickle (s)",
    "tf_import_s": "bare: TensorFlow import + config (s)",
}


def measure(args, data_args, trials: int, epochs: int, label: str, target: float) -> dict:
    """``args.repeats`` rounds of (a) and (b) at one size; prints them and returns the medians."""
    sized = type(args)(**{**vars(args), "trials": trials, "epochs": epochs})
    runs = []
    for i in range(args.repeats):  # alternate the order so drift in the machine's load hits both
        order = ("bare", "lrtune") if i % 2 == 0 else ("lrtune", "bare")
        run = {}
        for kind in order:
            if kind == "bare":
                wall, start, trial_spans, results = bare(sized, data_args)
                run["bare"] = breakdown(wall, start, trial_spans)
                run["bare"]["spawn_s"] = common.median(r["spawn_s"] for r in results)
                run["bare"]["tf_import_s"] = common.median(r["import_s"] for r in results)
            else:
                run["lrtune"] = breakdown(*lrtune(sized, data_args, f"overhead-{label}-{i}"))
        run["ratio"] = run["lrtune"]["wall_s"] / run["bare"]["wall_s"]
        runs.append(run)
        print(
            f"{label} repeat {i}: bare {run['bare']['wall_s']:.1f} s, lrtune {run['lrtune']['wall_s']:.1f} s, "
            f"ratio {run['ratio']:.3f}",
            flush=True,
        )
    med = {
        kind: {k: common.median(r[kind].get(k) for r in runs) for k in runs[0][kind]}
        for kind in ("bare", "lrtune")
    }
    ratio = common.median(r["ratio"] for r in runs)
    print(
        f"\n{label}: {trials} trials x {epochs} epochs, {args.cores} at a time, "
        f"limit {args.limit or 'none'}; medians over {args.repeats} repeat(s)"
    )
    common.table(
        ["", "bare (a)", "lrtune (b)", "(b)-(a)"],
        [
            [
                NAMES[k],
                med["bare"][k],
                med["lrtune"].get(k, "-"),
                med["lrtune"][k] - med["bare"][k] if k in med["lrtune"] else "-",
            ]
            for k in NAMES
        ],
    )
    met = "met" if ratio <= target else "NOT met"
    print(f"{label} ratio (b)/(a): {ratio:.3f}  (target <= {target}: {met})\n", flush=True)
    return {
        "trials": trials,
        "epochs": epochs,
        "target": target,
        "ratio": ratio,
        "ratios": [r["ratio"] for r in runs],
        "bare": med["bare"],
        "lrtune": med["lrtune"],
    }


def compare_models(args, data_args, target: str) -> dict:
    """lrtune (b) with the built-in seed-tiny and with ``target`` (the same net as a user's module), alternately."""
    runs = []
    for i in range(args.repeats):
        order = ("builtin", "user") if i % 2 == 0 else ("user", "builtin")
        run = {}
        for kind in order:
            model = "seed-tiny" if kind == "builtin" else {"import": target}
            run[kind] = breakdown(*lrtune(args, data_args, f"overhead-model-{kind}-{i}", model=model))
        run["epoch_ratio"] = run["user"]["epoch_s"] / run["builtin"]["epoch_s"]
        run["wall_ratio"] = run["user"]["wall_s"] / run["builtin"]["wall_s"]
        runs.append(run)
        print(
            f"repeat {i}: later epoch built-in {run['builtin']['epoch_s']:.3f} s, user {run['user']['epoch_s']:.3f} s "
            f"(ratio {run['epoch_ratio']:.3f}); wall {run['builtin']['wall_s']:.1f} s vs {run['user']['wall_s']:.1f} s",
            flush=True,
        )
    med = {k: {m: common.median(r[k][m] for r in runs) for m in runs[0][k]} for k in ("builtin", "user")}
    common.table(
        ["", "built-in seed-tiny", f"user {target}"],
        [[NAMES[k], med["builtin"][k], med["user"][k]] for k in NAMES if k in med["user"]],
    )
    epoch_ratio = common.median(r["epoch_ratio"] for r in runs)
    print(
        f"user model / built-in, later epoch (median of {args.repeats}): {epoch_ratio:.3f}; "
        f"wall: {common.median(r['wall_ratio'] for r in runs):.3f}",
        flush=True,
    )
    return {"epoch_ratio": epoch_ratio, "ratios": [r["epoch_ratio"] for r in runs], **med}


def main():
    p = common.parser(__doc__)
    p.add_argument(
        "--user-model",
        metavar="MODULE:FUNCTION",
        help="instead: lrtune with the built-in seed-tiny against this user's module defining the same net "
        "(e.g. benchmarks.seed_tiny_again:build, run from the repository root)",
    )
    p.add_argument("--trials", type=int, help="trials (default 4; quick 2)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default 10; quick 2)")
    p.add_argument("--limit", type=int, help="training images, 0 = all 10,000 (default 0; quick 2000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--long-epochs",
        type=int,
        help="then `cores` trials of this many epochs (trials of a minute or more: 50 epochs of "
        "10,000 images take 60-70 s); 0 = skip (default 50; quick 0)",
    )
    args = common.parse(
        p,
        full=dict(trials=4, epochs=10, limit=0, long_epochs=50),
        quick=dict(trials=2, epochs=2, limit=2000, long_epochs=0),
    )
    data_args = {"limit": args.limit or None}
    if args.user_model:
        common.emit("overhead-user-model", args, **compare_models(args, data_args, args.user_model))
        return

    figures = {"short": measure(args, data_args, args.trials, args.epochs, "short", target=1.05)}
    if args.long_epochs:
        figures["long"] = measure(args, data_args, args.cores, args.long_epochs, "long", target=1.03)
    for label, f in figures.items():
        print(
            f"{label}: {f['trials']} x {f['epochs']} epochs, one trial trains "
            f"{f['lrtune']['trial_s']:.0f} s: ratio {f['ratio']:.3f} (target <= {f['target']})"
        )
    common.emit("overhead", args, limit=args.limit, **figures)


if __name__ == "__main__":
    main()
