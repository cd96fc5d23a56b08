"""Packing trials on the cores: one trial using every core vs one trial per core.

whole:  1 trial, resources cpu = cores (TensorFlow intra-op threads = cores).
packed: `cores` trials at once, cpu = 1 each (1 thread each).
Throughput is total training images/s from the sweep's metrics Parquet: the
`images_per_second` of the trials summed per epoch, median over epochs after
the first. The check column sums only epochs in progress at the same moment
(common.concurrent_images_per_second): well below the total, the trials did
not really overlap (epochs too short next to the trials' start-up).
"""

import common


def throughput(args, name, trials, cpu):
    spec = common.make_spec(
        name,
        common.STEP_ARM,
        epochs=args.epochs,
        repeats=trials,
        cpu=cpu,
        batch_size=args.batch_size,
        limit=args.limit or None,
    )
    outcome, wall, _, rows = common.run(spec, args, max_concurrent=trials)
    by_epoch = {}
    for r in rows:
        if r["epoch"] > 1:
            by_epoch[r["epoch"]] = by_epoch.get(r["epoch"], 0.0) + r["images_per_second"]
    return {
        "images_per_second": common.median(by_epoch.values()),
        "overlap_images_per_second": common.concurrent_images_per_second(rows),
        "per_trial_images_per_second": common.median(r["images_per_second"] for r in rows if r["epoch"] > 1),
        "epoch_s": common.median(r["epoch_seconds"] for r in rows if r["epoch"] > 1),
        "wall_s": wall,
    }


def main():
    p = common.parser(__doc__)
    p.add_argument("--epochs", type=int, help="epochs per trial (default 5; quick 2)")
    p.add_argument("--limit", type=int, help="training images, 0 = all 10,000 (default 0; quick 2000)")
    p.add_argument("--batch-size", type=int, default=64)
    args = common.parse(p, full=dict(epochs=5, limit=0), quick=dict(epochs=2, limit=2000))

    runs = []
    for i in range(args.repeats):
        whole = throughput(args, f"packing-whole-{i}", 1, args.cores)
        packed = throughput(args, f"packing-packed-{i}", args.cores, 1)
        runs.append(
            {
                "whole": whole,
                "packed": packed,
                "speedup": packed["images_per_second"] / whole["images_per_second"],
            }
        )
        print(
            f"repeat {i}: whole {whole['images_per_second']:.0f} img/s, packed {packed['images_per_second']:.0f} "
            f"img/s, packed/whole {runs[-1]['speedup']:.2f}",
            flush=True,
        )

    med = {k: {m: common.median(r[k][m] for r in runs) for m in runs[0][k]} for k in ("whole", "packed")}
    speedup = common.median(r["speedup"] for r in runs)
    print(
        f"\n{args.cores} cores, seed-tiny, batch {args.batch_size}, {args.epochs} epochs, "
        f"limit {args.limit or 'none'}; medians over {args.repeats} repeat(s)"
    )
    common.table(
        [
            "layout",
            "trials x cpu",
            "total img/s",
            "check: at once",
            "img/s per trial",
            "epoch (s)",
            "sweep wall (s)",
        ],
        [
            ["whole", f"1 x {args.cores}", *med["whole"].values()],
            ["packed", f"{args.cores} x 1", *(med["packed"][k] for k in med["whole"])],
        ],
    )
    print(f"packed / whole total images/s: {speedup:.2f}")
    common.emit(
        "packing",
        args,
        epochs=args.epochs,
        limit=args.limit,
        speedup=speedup,
        speedups=[r["speedup"] for r in runs],
        **med,
    )


if __name__ == "__main__":
    main()
