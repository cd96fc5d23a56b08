"""Peak memory of the node with 1, 2 and 4 concurrent trials.

Every 0.2 s a thread reads /proc for this process and all its descendants
(the Ray node it starts: raylet with the plasma store, GCS, agents, workers):
VmRSS, RssShmem and Pss (smaps_rollup). RSS counts a shared page once per
process that maps it, so the plasma copy of the dataset is counted again in
every trial that reads it zero-copy; PSS splits shared pages among their
users and is the honest total. (psutil is not installed here; /proc is what
it would read.) If the dataset is held once, in the object store, the growth
per extra trial is the model + TensorFlow, well apart from x_train.nbytes.
"""

import os
import threading

import common

KB = 1024


def sample(pid: int, root: int) -> tuple[str, dict] | None:
    """(kind, {rss, hwm, shmem, pss} in bytes) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return None
    kb = {k: int(status.get(k, "0 kB").split()[0]) * KB for k in ("VmRSS", "VmHWM", "RssShmem")}
    if pid == root:
        kind = "driver"
    elif "ImplicitFunc" in cmd:  # a Tune function trainable's actor: one trial
        kind = "trial"
    elif "raylet" in cmd:  # the plasma object store lives in the raylet
        kind = "raylet"
    else:
        kind = "ray other"
    return kind, {"rss": kb["VmRSS"], "hwm": kb["VmHWM"], "shmem": kb["RssShmem"], "pss": pss * KB}


class Sampler(threading.Thread):
    """Peak sums over the process tree, by kind; plasma stats once `trials` trials run."""

    def __init__(self, trials: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.trials, self.period, self.root = trials, period, os.getpid()
        self.peak: dict[str, int] = {}
        self.plasma = "(not sampled: the trials never ran at once)"
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(self.period):
            sums: dict[str, int] = {}
            for pid in common.process_tree(self.root):
                got = sample(pid, self.root)
                if got is None:
                    continue
                kind, m = got
                sums["node_rss"] = sums.get("node_rss", 0) + m["rss"]
                sums["node_pss"] = sums.get("node_pss", 0) + m["pss"]
                sums[f"{kind}_rss"] = sums.get(f"{kind}_rss", 0) + m["rss"]
                sums[f"{kind}_count"] = sums.get(f"{kind}_count", 0) + 1
                if kind == "trial":
                    sums["trial_max_hwm"] = max(sums.get("trial_max_hwm", 0), m["hwm"])
                    sums["trial_max_shmem"] = max(sums.get("trial_max_shmem", 0), m["shmem"])
            for key, value in sums.items():
                self.peak[key] = max(self.peak.get(key, 0), value)
            if sums.get("trial_count", 0) >= self.trials and self.plasma.startswith("(not"):
                self.plasma = plasma_stats()


def plasma_stats() -> str:
    import ray
    from ray._private.internal_api import memory_summary

    try:  # the explicit address: address=None would look for some other cluster on this machine
        return memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True).strip()
    except Exception as e:  # noqa: BLE001 - the figure is optional; say why it is missing
        return f"(memory_summary failed: {e})"


def slope(points) -> float:
    """Least-squares growth of y per unit of x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def main():
    p = common.parser(__doc__)
    p.add_argument("--epochs", type=int, help="epochs per trial (default 2; quick 1)")
    p.add_argument("--limit", type=int, help="training images, 0 = all 10,000 (default 0; quick 2000)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = common.parse(p, full=dict(epochs=2, limit=0), quick=dict(epochs=1, limit=2000))
    if len(args.concurrency) < 2:
        p.error("--concurrency needs two values or more, to measure growth per trial")
    from lrtune.data import load_cifar10

    dataset_bytes = load_cifar10(args.data, limit=args.limit or None).x_train.nbytes

    peaks = {k: [] for k in args.concurrency}
    for i in range(args.repeats):
        for k in args.concurrency:
            spec = common.make_spec(
                f"memory-{k}-{i}",
                common.STEP_ARM,
                epochs=args.epochs,
                repeats=k,
                cpu=args.cores / k,
                limit=args.limit or None,
            )
            sampler = Sampler(k)
            sampler.start()
            common.run(spec, args, max_concurrent=k)
            sampler.stop.set()
            sampler.join()
            peaks[k].append(sampler.peak)
            print(
                f"repeat {i}, {k} trial(s): node RSS {sampler.peak['node_rss'] / 2**20:.0f} MiB, "
                f"PSS {sampler.peak['node_pss'] / 2**20:.0f} MiB\nplasma: {sampler.plasma}",
                flush=True,
            )

    keys = (
        "node_rss",
        "node_pss",
        "trial_rss",
        "raylet_rss",
        "driver_rss",
        "ray other_rss",
        "trial_max_hwm",
        "trial_max_shmem",
    )
    med = {k: {key: common.median(p.get(key) for p in peaks[k]) for key in keys} for k in args.concurrency}
    mib = 2**20
    print(
        f"\nlimit {args.limit or 'none'}: x_train.nbytes = {dataset_bytes / mib:.1f} MiB; "
        f"peaks in MiB, medians over {args.repeats} repeat(s)"
    )
    common.table(
        [
            "trials",
            "node RSS",
            "node PSS",
            "trials RSS",
            "raylet RSS",
            "driver RSS",
            "other RSS",
            "max trial HWM",
            "max trial shmem",
        ],
        [[k, *(med[k][key] / mib for key in keys)] for k in args.concurrency],
    )
    growth = {key: slope([(k, med[k][key]) for k in args.concurrency]) for key in ("node_rss", "node_pss")}
    print(
        f"growth per extra trial: RSS {growth['node_rss'] / mib:.0f} MiB, PSS {growth['node_pss'] / mib:.0f} MiB "
        f"(x_train {dataset_bytes / mib:.1f} MiB; PSS growth per trial / x_train = "
        f"{growth['node_pss'] / dataset_bytes:.1f})"
    )
    common.emit(
        "memory",
        args,
        epochs=args.epochs,
        limit=args.limit,
        dataset_bytes=dataset_bytes,
        growth_rss_bytes=growth["node_rss"],
        growth_pss_bytes=growth["node_pss"],
        peaks={str(k): med[k] for k in args.concurrency},
    )


if __name__ == "__main__":
    main()
