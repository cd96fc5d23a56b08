"""What ``cluster/sim.sh run`` does once the simulated hosts are up.

The docs' commands (docs/cluster.md, "On your own machines") on the laptop,
against cluster-local.yaml as shipped with only the addresses and the user
substituted, then the checks: every listed node up, trials on every worker,
a worker host's processes killed mid-sweep, the driver killed and the sweep
resumed with ``--resume``, each (trial, epoch) once on the shared storage, and
no Ray process left on any host after ``ray down``. Exits non-zero, saying
which check failed; sim.sh then takes the hosts down either way.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import yaml

SIM = Path(sys.argv[1])
REPO = Path(__file__).resolve().parent.parent
SIMSH = str(REPO / "cluster" / "sim.sh")
HEAD, WORKERS = "10.213.7.10", ["10.213.7.11", "10.213.7.12"]
CONFIG = SIM / "cluster-local.yaml"
DASHBOARD = "http://127.0.0.1:8265"
STORAGE = SIM / "storage"  # /mnt/lrtune on every host
SWEEP = STORAGE / "sim"
_SWEEP = yaml.safe_load((REPO / "cluster" / "sim-sweep.yaml").read_text())
EPOCHS, TRIALS = _SWEEP["epochs"], len(_SWEEP["space"]["lr"]["grid"])
T0 = time.monotonic()
timings: dict[str, float] = {}


def say(message: str) -> None:
    print(f"[sim {time.monotonic() - T0:6.1f}s] {message}", flush=True)


def client(*cmd: str, check=True, capture=False, timeout=600, env: dict | None = None):
    """A command on the simulated laptop, from the repository root."""
    prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    result = subprocess.run(
        [SIMSH, "client", *prefix, *cmd], text=True, capture_output=capture, timeout=timeout
    )
    if check and result.returncode != 0:
        raise SystemExit(
            f"FAILED: {' '.join(cmd)} (exit {result.returncode})\n{result.stdout or ''}{result.stderr or ''}"
        )
    return result


def host(name: str, script: str, check=False) -> str:
    result = subprocess.run([SIMSH, "host", name, "bash", "-c", script], text=True, capture_output=True)
    if check and result.returncode != 0:
        raise SystemExit(f"FAILED on {name}: {script}\n{result.stdout}{result.stderr}")
    return result.stdout


def ray_processes(name: str) -> list[str]:
    """The Ray processes of one host (its PID namespace only)."""
    out = host(name, "ps -eo pid=,args=")
    return [
        line.strip()
        for line in out.splitlines()
        if re.search(r"ray/|raylet|gcs_server|ray::|ray start", line)
    ]


def metric_rows():
    parts = sorted((SWEEP / "metrics").glob("**/*.parquet")) if (SWEEP / "metrics").exists() else []
    if not parts:
        return []
    try:
        return ds.dataset([str(p) for p in parts]).to_table(columns=["trial_id", "epoch", "node"]).to_pylist()
    except (OSError, ValueError):  # a part being written or compacted right now
        return []


def wait_for(what: str, test, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"FAILED: {what} within {timeout:.0f} s")


def job_status(job_id: str) -> str:
    result = client("ray", "job", "status", "--address", DASHBOARD, job_id, check=False, capture=True)
    found = re.search(r"Job '[^']+' (succeeded|failed|was stopped)", result.stdout + result.stderr)
    return found.group(1).replace("was ", "") if found else "running"


def submit(*extra: str) -> str:
    out = client(
        "ray",
        "job",
        "submit",
        "--address",
        DASHBOARD,
        "--working-dir",
        ".",
        "--no-wait",
        "--",
        "lrtune",
        "sweep",
        "cluster/sim-sweep.yaml",
        "--address",
        "auto",
        "--storage",
        "/mnt/lrtune",
        "--name",
        "sim",
        "--data",
        "/mnt/lrtune/data/cifar.tar.gz",
        "--quiet",
        *extra,
        capture=True,
    ).stdout
    return re.search(r"raysubmit_\w+", out).group(0)


def main() -> int:
    # The file the docs tell users to run, with only addresses, user and key substituted.
    text = (REPO / "cluster-local.yaml").read_text()
    text = (
        text.replace("192.0.2.10", HEAD).replace("192.0.2.11", WORKERS[0]).replace("192.0.2.12", WORKERS[1])
    )
    text = text.replace("YOUR-SSH-USER", "root")
    CONFIG.write_text(text)

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_cifar_archive  # noqa: E402  (the tests' own tiny CIFAR archive)

    (STORAGE / "data").mkdir(parents=True, exist_ok=True)
    write_cifar_archive(STORAGE / "data" / "cifar.tar.gz", train_per_batch=600, test=200)

    say("ray up cluster-local.yaml")
    start = time.monotonic()
    client("ray", "up", "-y", "--no-config-cache", str(CONFIG), timeout=900)
    timings["ray up returned"] = time.monotonic() - start

    def three_nodes():
        out = host("head", "RAY_AUTH_MODE=token ray status 2>/dev/null")
        active = re.search(r"Active:\s*\n\s*(\d+) ", out)
        return active and int(active.group(1)) >= 3 and out

    status = wait_for("3 nodes in `ray status`", three_nodes, 300, every=2)
    timings["ray up to all nodes up"] = time.monotonic() - start
    say(f"all 3 nodes up after {timings['ray up to all nodes up']:.1f} s")
    print(status[: status.find("Resources")].rstrip(), flush=True)
    print(
        host(
            "head",
            'RAY_AUTH_MODE=token python -c \'import ray; ray.init("auto", logging_level=40); '
            '[print("  node", n["NodeManagerHostname"], n["NodeManagerAddress"], n["Resources"].get("CPU", 0), "CPU") '
            'for n in ray.nodes() if n["Alive"]]\'',
        ),
        flush=True,
    )

    say("ray dashboard cluster-local.yaml (SSH tunnel to the head's 127.0.0.1:8265)")
    tunnel = subprocess.Popen(
        [SIMSH, "client", "ray", "dashboard", str(CONFIG)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "the dashboard tunnel",
            lambda: (
                client("ray", "job", "list", "--address", DASHBOARD, check=False, capture=True).returncode
                == 0
            ),
            120,
            2,
        )
        refused = client(
            "ray",
            "job",
            "list",
            "--address",
            DASHBOARD,
            check=False,
            capture=True,
            env={"RAY_AUTH_TOKEN": "0" * 64, "RAY_AUTH_TOKEN_PATH": "/nonexistent"},
        )
        if refused.returncode == 0:
            raise SystemExit("FAILED: a wrong token was accepted")
        say("token authentication: a wrong token is refused")
        sweep(start)
    finally:
        tunnel.kill()

    say("ray exec cluster-local.yaml 'sh ~/lrtune/cluster/stop-workers.sh'; ray down cluster-local.yaml")
    start = time.monotonic()
    client("ray", "exec", str(CONFIG), "sh ~/lrtune/cluster/stop-workers.sh")
    client("ray", "down", "-y", str(CONFIG))
    timings["ray down"] = time.monotonic() - start
    left = {name: ray_processes(name) for name in ("head", "w1", "w2")}
    for name, procs in left.items():
        print(f"  {name}: {len(procs)} Ray processes" + "".join(f"\n    {p}" for p in procs))
    if any(left.values()):
        raise SystemExit("FAILED: Ray processes left after ray down")
    for what, seconds in timings.items():
        print(f"TIMING {what}: {seconds:.1f} s")
    say("PASSED")
    return 0


def sweep(start_all: float) -> None:
    say("ray job submit ... lrtune sweep cluster/sim-sweep.yaml --address auto --storage /mnt/lrtune")
    start = time.monotonic()
    job = submit()

    # Node loss: once both workers have written rows, kill every process of w2
    # but its sshd (the machine stays reachable, Ray on it is gone).
    def both_workers_wrote():
        nodes = {r["node"] for r in metric_rows()}
        return {"w1", "w2"} <= nodes and nodes

    wait_for("rows from both workers", both_workers_wrote, 600, 1)
    timings["submit to rows from both workers"] = time.monotonic() - start
    killed = host(
        "w2",
        'for p in $(ps -eo pid=,comm=,args= | awk -v me=$$ \'$1 != 1 && $1 != me && $2 != "sshd" && $2 != "sshfs" && $0 !~ /ps -eo/ {print $1}\'); do '
        "kill -KILL $p 2>/dev/null && echo $p; done; true",
    )
    say(f"node loss: killed {len(killed.split())} processes on w2 (all but sshd, sshfs)")
    rows_at_kill = len(metric_rows())

    # The driver: killed once more rows arrived (trials running on w1 only now).
    wait_for("rows after the node loss", lambda: len(metric_rows()) >= rows_at_kill + 2, 600, 1)
    host(
        "head",
        "kill -KILL $(ps -eo pid=,args= | awk -v me=$$ '$1 != me && /lrtune sweep/ && !/awk/ {print $1}')",
        check=True,
    )
    say(
        f"driver killed ({len(metric_rows())} rows so far); job {job}: {wait_for('the job to fail', lambda: job_status(job) in ('failed', 'stopped') and job_status(job), 120, 2)}"
    )

    job = submit("--resume")
    say(f"resubmitted with --resume: {job}")
    final = wait_for(
        "the resumed sweep to end",
        lambda: job_status(job) in ("succeeded", "failed", "stopped") and job_status(job),
        900,
        3,
    )
    timings["sweep (submit, node loss, driver kill, --resume) to done"] = time.monotonic() - start
    logs = client("ray", "job", "logs", "--address", DASHBOARD, job, check=False, capture=True).stdout
    print(logs[-3000:], flush=True)
    if final != "succeeded":
        raise SystemExit(f"FAILED: the resumed job {final}")

    rows = metric_rows()
    seen: dict[tuple[str, int], int] = {}
    for r in rows:
        seen[(r["trial_id"], r["epoch"])] = seen.get((r["trial_id"], r["epoch"]), 0) + 1
    trials = {t for t, _ in seen}
    twice = {k: n for k, n in seen.items() if n > 1}
    missing = {(t, e) for t in trials for e in range(1, EPOCHS + 1)} - set(seen)
    nodes = sorted({r["node"] for r in rows})
    say(f"{len(rows)} rows, {len(trials)} trials, nodes {nodes}, twice {len(twice)}, missing {len(missing)}")
    if len(trials) != TRIALS or twice or missing or set(nodes) != {"w1", "w2"}:
        raise SystemExit(
            f"FAILED: rows: twice={twice} missing={sorted(missing)} nodes={nodes} trials={len(trials)}"
        )
    # A trial of the lost host went on elsewhere from its last epoch: rows on w2, then on w1.
    path = {}
    for r in sorted(rows, key=lambda r: (r["trial_id"], r["epoch"])):
        path.setdefault(r["trial_id"], []).append(r["node"])
    moved = {t: p for t, p in path.items() if "w2" in p and p[-1] == "w1"}
    for t, p in path.items():
        print(f"  trial {t}: epochs on " + " ".join(p))
    if not moved:
        raise SystemExit("FAILED: no trial of the lost host w2 continued on w1")
    say(f"{len(moved)} trial(s) of w2 continued on w1 from their last epoch")


if __name__ == "__main__":
    sys.exit(main())
