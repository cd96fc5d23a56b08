"""The table of gpu_check.sh: images/s per trial and in total, and peak GPU memory, per trials-per-GPU.

Reads, for each k, what gpu_check.sh left in OUT: the sweep OUT/gpu-k<k>/gpu-k<k>
(metrics Parquet), OUT/gpu-k<k>.wall (seconds) and OUT/gpu-k<k>.mem (nvidia-smi
memory.used samples in MiB, one per line and GPU; missing: "-").

    python benchmarks/gpu_table.py OUT 1 2 4 8
"""

import argparse
import datetime as dt
import json
import os

import common


def read_numbers(path: str) -> list[float]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [float(x) for x in f.read().split() if x.replace(".", "", 1).isdigit()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="the folder gpu_check.sh wrote to")
    p.add_argument("k", type=int, nargs="+", help="trials per GPU that were run")
    args = p.parse_args()

    body, figures = [], {}
    for k in args.k:
        rows = common.rows(f"{args.out}/gpu-k{k}/gpu-k{k}")
        per_trial = common.median(r["images_per_second"] for r in rows if r["epoch"] > 1)
        wall = (read_numbers(f"{args.out}/gpu-k{k}.wall") or [float("nan")])[0]
        memory = read_numbers(f"{args.out}/gpu-k{k}.mem")
        figures[k] = {
            "trials": len({r["trial_id"] for r in rows}),
            "epochs": len(rows),
            "images_per_second_per_trial": per_trial,
            "images_per_second_total": k * per_trial,
            "epochs_per_second": len(rows) / wall,
            "wall_s": wall,
            "peak_gpu_memory_mib": max(memory) if memory else None,
        }
        body.append([k, *(v if v is not None else "-" for v in figures[k].values())])
    common.table(
        [
            "trials/GPU",
            "trials",
            "epochs",
            "img/s per trial",
            "img/s total",
            "epochs/s (sweep)",
            "wall (s)",
            "peak GPU MiB",
        ],
        body,
    )
    print(
        "img/s per trial: median over epochs after the first; total: k x per trial (k trials run at once "
        "while any wait); epochs/s: all epochs / sweep wall time, start-up and early stopping included."
    )
    print(
        json.dumps(
            common.jsonable(
                {
                    "benchmark": "gpu_check",
                    "date": dt.datetime.now().isoformat(timespec="seconds"),
                    "out": args.out,
                    "by_k": figures,
                }
            )
        )
    )


if __name__ == "__main__":
    main()
