"""The simulated bare-host cluster: ``cluster/sim.sh run``, about 2.5 minutes on 2 cores.

cluster-local.yaml as shipped (addresses and user substituted) on three
simulated hosts (network namespaces on a private bridge, own mount, UTS and
PID namespaces, sshd, sshfs storage): ``ray up`` to all nodes up, the sweep
cluster/sim-sweep.yaml as a Ray job, one worker host's processes killed
mid-sweep, the driver killed and ``--resume`` submitted, then
``stop-workers.sh`` and ``ray down``. cluster/sim_run.py checks each step as
it goes; this test checks the outcome again from what the run leaves: the
rows on the shared storage, the output, and the machine.

It runs with the venv pytest runs in (``LRTUNE_SIM_VENV=sys.prefix``), and
skips only where the machine cannot run it: not root, no namespaces, no
sshd, sshfs or rsync (.ci/run installs them), or no ``lrtune[cluster]`` in
this venv. The run's whole output is kept in ``LRTUNE_SIM_DIR/run.log``.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.soak]

REPO = Path(__file__).resolve().parent.parent
SIM_SH = REPO / "cluster" / "sim.sh"
SIM_DIR = Path(os.environ.get("LRTUNE_SIM_DIR", "/var/tmp/lrtune-sim"))
SWEEP = yaml.safe_load((REPO / "cluster" / "sim-sweep.yaml").read_text())
EPOCHS = SWEEP["epochs"]
TRIALS = len(SWEEP["space"]["lr"]["grid"])
WORKERS = {"w1", "w2"}
TIMEOUT_S = 1200


def cannot_run() -> str | None:
    """Why this machine cannot run the simulation, or None."""
    if sys.prefix == sys.base_prefix:
        return "the simulation starts every host from the venv pytest runs in; this Python is no venv"
    if not all(importlib.util.find_spec(m) for m in ("aiohttp_cors", "boto3")):
        return "needs lrtune[cluster] in this venv (ray[default] for `ray job`, boto3): pip install -e '.[test,cluster]'"
    if os.geteuid() != 0:
        return "needs root (network, mount and PID namespaces)"
    missing = [t for t in ("unshare", "nsenter", "ip", "sshfs", "rsync", "ssh-keygen") if not shutil.which(t)]
    if not os.access("/usr/sbin/sshd", os.X_OK):
        missing.append("/usr/sbin/sshd")
    if missing:
        return f"missing {', '.join(missing)}: apt-get install openssh-server sshfs rsync util-linux iproute2"
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot make namespaces here (unshare: {probe.stderr.strip()})"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` does not work here"
    return None


def processes_of_the_simulation() -> list[str]:
    """Processes in one of the simulation's network namespaces, or naming its folder."""
    inodes = set()
    if (SIM_DIR / "netns").exists():
        inodes = {line.split()[1] for line in (SIM_DIR / "netns").read_text().splitlines() if line.strip()}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            net = str(os.stat(proc / "ns" / "net").st_ino)
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if net in inodes or str(SIM_DIR) in args:
            found.append(f"{proc.name} {args[:200]}")
    return found


@pytest.fixture(scope="module")
def sim_run():
    """``cluster/sim.sh run`` once: (exit status, output)."""
    reason = cannot_run()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "LRTUNE_SIM_VENV": sys.prefix, "LRTUNE_SIM_DIR": str(SIM_DIR)}
    run = subprocess.Popen(
        [str(SIM_SH), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = run.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        output, _ = run.communicate()
        subprocess.run([str(SIM_SH), "down"], env=env, check=False)
        output += f"\n(test: sim.sh run killed after {TIMEOUT_S} s; sim.sh down run)\n"
    SIM_DIR.mkdir(parents=True, exist_ok=True)
    (SIM_DIR / "run.log").write_text(output)
    return run.returncode, output


def test_the_simulated_cluster_run_passes(sim_run):
    status, output = sim_run
    assert status == 0 and "PASSED" in output, f"sim.sh run exited {status}:\n{output[-6000:]}"
    for step in ("all 3 nodes up", "node loss: killed", "driver killed", "resubmitted with --resume"):
        assert step in output


def test_every_trial_epoch_lands_once_on_the_shared_storage_from_every_worker(sim_run):
    import pyarrow.dataset as ds

    rows = (
        ds.dataset(str(SIM_DIR / "storage" / "sim" / "metrics"))
        .to_table(columns=["trial_id", "epoch", "node"])
        .to_pylist()
    )
    counts = collections.Counter((r["trial_id"], r["epoch"]) for r in rows)
    trials = {t for t, _ in counts}
    assert len(trials) == TRIALS
    assert set(counts) == {(t, e) for t in trials for e in range(1, EPOCHS + 1)}
    assert set(counts.values()) == {1}
    assert {r["node"] for r in rows} == WORKERS


def test_a_trial_of_the_lost_worker_continued_on_the_other_from_its_last_epoch(sim_run):
    import pyarrow.dataset as ds

    rows = ds.dataset(str(SIM_DIR / "storage" / "sim" / "metrics")).to_table(
        columns=["trial_id", "epoch", "node"]
    )
    path = collections.defaultdict(dict)
    for r in rows.to_pylist():
        path[r["trial_id"]][r["epoch"]] = r["node"]
    nodes = {t: [by_epoch[e] for e in sorted(by_epoch)] for t, by_epoch in path.items()}
    moved = [p for p in nodes.values() if "w2" in p and p[-1] == "w1"]
    # w2 up to some epoch, w1 from the next one on: no epoch trained twice (the test above), none lost.
    assert moved and all(p == sorted(p, key=lambda n: n != "w2") for p in moved), nodes


def test_the_resumed_driver_finished_every_trial(sim_run):
    import pyarrow.parquet as pq

    trials = pq.read_table(str(SIM_DIR / "storage" / "sim" / "trials.parquet")).to_pylist()
    assert sorted(t["status"] for t in trials) == ["done"] * TRIALS
    assert {t["epochs_run"] for t in trials} == {EPOCHS}
    assert len(re.findall(r"raysubmit_\w+", sim_run[1])) >= 2  # the first job and the --resume one


def test_ray_down_leaves_no_ray_process_on_any_host(sim_run):
    for name in ("head", "w1", "w2"):
        assert f"{name}: 0 Ray processes" in sim_run[1]


def test_nothing_of_the_simulation_is_left_running(sim_run):
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [line for line in namespaces.splitlines() if line.startswith("lrtsim-")]
    assert processes_of_the_simulation() == []
