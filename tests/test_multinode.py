"""Several Ray nodes on one machine: placement, gathering, node failure.

A head that runs no trials and worker nodes that each advertise one GPU
(a label here: TensorFlow runs on the CPU), as on a cluster started with
``ray up cluster.yaml``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from lrtune.engine.sweep import run_sweep
from lrtune.results.tables import load, load_trials
from lrtune.spec import parse_spec, parse_yaml

# A Ray of their own (a multi-node Cluster): not the session's embedded Ray.
pytestmark = pytest.mark.ray


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    # The session's embedded Ray (an earlier module's), if up, is this process's own: the test
    # joins the cluster instead, and the next user of `ray_running` starts the embedded Ray again.
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def make_spec(text):
    return parse_spec(parse_yaml(text, "test.yaml"), "test.yaml")


def test_fractional_gpus_pack_two_trials_per_node_and_rows_name_their_node(
    cluster, cifar_archive, tmp_path, monkeypatch
):
    import ray

    workers = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    worker_ids = {w.node_id for w in workers}

    # The driver reads the data, then the file goes away: trials can only get
    # the images through the object store, not from any node's disk.
    import lrtune.data

    real_load = lrtune.data.load_dataset
    copy = tmp_path / "copy.tar.gz"
    copy.write_bytes(cifar_archive.read_bytes())

    def load_then_delete(*args, **kwargs):
        dataset = real_load(*args, **kwargs)
        copy.unlink()
        return dataset

    monkeypatch.setattr(lrtune.data, "load_dataset", load_then_delete)
    spec = make_spec(
        """
name: packed
data: {classes: [airplane, automobile]}
epochs: 2
batch_size: 32
space: {optimizer: sgd, lr: {grid: [0.01, 0.02, 0.03, 0.04]}}
resources: {cpu: 1, gpu: 0.5}
"""
    )
    outcome = run_sweep(spec, storage=str(tmp_path / "results"), data=str(copy), quiet=True)
    assert not copy.exists()
    assert outcome.counts == {"done": 4}
    metrics = load(outcome.sweep_dir)
    assert metrics.num_rows == 4 * 2
    node_of = {}
    for row in metrics.select(["trial_id", "node_id", "node"]).to_pylist():
        node_of.setdefault(row["trial_id"], set()).add(row["node_id"])
        assert row["node"]  # the host name
    assert all(len(nodes) == 1 for nodes in node_of.values())
    placed = [next(iter(nodes)) for nodes in node_of.values()]
    assert set(placed) <= worker_ids  # never on the head
    assert sorted(placed.count(n) for n in worker_ids) == [2, 2]  # gpu: 0.5 -> two per GPU


def test_a_dead_node_s_trial_resumes_elsewhere_from_its_checkpoint(
    cluster, make_cifar_archive, tmp_path, monkeypatch
):
    import ray

    # The trial holds after each epoch while this file exists, so the kill lands while it has
    # epochs left (under load it once landed after the last: the trial never ran elsewhere).
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv("LRTUNE_TEST_HOLD_FILE", str(hold))  # before the nodes start: they inherit it
    archive = make_cifar_archive(tmp_path / "bigger.tar.gz", train_per_batch=300)
    nodes = {n.node_id: n for n in (cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2))}
    ray.init(address=cluster.address, log_to_driver=False)
    spec = make_spec(
        """
name: nodefail
data: {classes: [airplane, automobile]}
epochs: 6
batch_size: 8
space: {optimizer: sgd, schedule: time, lr: 0.02, decay: 0.001, momentum: 0.5}
resources: {cpu: 1, gpu: 1}
max_failures: 2
"""
    )
    sweep_dir = tmp_path / "results" / "nodefail"
    killed = {}

    def kill_node_after_the_first_epoch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            parts = list((sweep_dir / "metrics").glob("part-*.parquet")) if sweep_dir.exists() else []
            if parts and ds.dataset([str(p) for p in parts]).count_rows() >= 1:
                # Kill the node the trial runs on; the other one is free.
                node_id = (
                    ds.dataset([str(p) for p in parts]).to_table(columns=["node_id"])["node_id"][0].as_py()
                )
                cluster.remove_node(nodes[node_id], allow_graceful=False)
                killed["node_id"] = node_id
                hold.unlink()  # the trial, restarted on the other node, trains on
                return
            time.sleep(0.2)

    thread = threading.Thread(target=kill_node_after_the_first_epoch, daemon=True)
    thread.start()
    outcome = run_sweep(spec, storage=str(tmp_path / "results"), data=str(archive), quiet=True)
    thread.join()
    assert killed, "the node was never killed"
    metrics = load(outcome.sweep_dir).to_pylist()
    assert [r["epoch"] for r in metrics] == [1, 2, 3, 4, 5, 6]  # none lost, none twice
    ran_on = [r["node_id"] for r in metrics]
    assert ran_on[0] == killed["node_id"] and ran_on[-1] != killed["node_id"]
    # The restarted trial continued the time-based schedule from its checkpoint's step count.
    steps_per_epoch = math.ceil(5 * 300 / 8)  # 5 batches of 300 images
    for r in metrics:
        assert r["lr"] == pytest.approx(0.02 / (1 + 0.001 * (r["epoch"] * steps_per_epoch - 1)), rel=1e-5)
    assert load_trials(outcome.sweep_dir)["status"].to_pylist() == ["done"]


def port_free() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lrtune_sweep_joins_a_running_cluster_by_address(cifar_archive, tmp_path, kill_group):
    """`ray start --head` then `lrtune sweep --address`: the cluster path, end to end."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import uuid

    from ray._private.services import get_node_ip_address

    port = port_free()
    address = f"{get_node_ip_address()}:{port}"
    # A token of this test's own: ~/.ray/auth_token is shared with every local Ray here.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    # --block keeps `ray start` in the foreground, in a process group of its own
    # with the processes it starts: the test stops exactly this Ray, never a
    # user's (stopping Ray by name would stop every Ray on the machine).
    head = subprocess.Popen(
        [
            sys.executable, "-c", "from ray.scripts.scripts import main; main()",
            "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
            "--include-dashboard=false", "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:  # the head's GCS is up
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head failed"
            time.sleep(0.5)
        sweep_file = tmp_path / "joined.yaml"
        sweep_file.write_text(
            "name: joined\ndata: {classes: [airplane, automobile]}\nepochs: 2\nbatch_size: 32\n"
            "space: {optimizer: sgd, lr: {grid: [0.01, 0.05]}}\n"
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "lrtune",
                "sweep",
                str(sweep_file),
                "--address",
                address,
                "--data",
                str(cifar_archive),
                "--storage",
                str(tmp_path / "results"),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "joined: 2 trials (2 done)" in result.stdout
        assert load(str(tmp_path / "results" / "joined")).num_rows == 4
    finally:
        kill_group(head)


def test_the_users_model_reaches_other_nodes_only_through_what_lrtune_ships(
    cluster, cifar_archive, tmp_path, monkeypatch
):
    """The driver imports the user's package from a folder no worker has on its path; the trials,
    all on worker nodes, can build it only from the copy Ray's py_modules shipped with the job."""
    import ray

    sys.path.insert(0, str(Path(__file__).parent))
    from user_project import write_project

    workers = {cluster.add_node(num_cpus=1).node_id for _ in range(2)}
    project = write_project(tmp_path / "project", package="shippednets")
    monkeypatch.syspath_prepend(str(project))  # the driver's path only: not its working directory
    spec = make_spec(
        """
name: shipped
data: {classes: [airplane, automobile]}
model: {import: "shippednets.nets:convnet", args: {width: 2}}
epochs: 2
batch_size: 32
space: {optimizer: sgd, lr: {grid: [0.01, 0.02]}}
resources: {cpu: 1}
"""
    )
    outcome = run_sweep(
        spec, storage=str(tmp_path / "results"), data=str(cifar_archive), quiet=True, address=cluster.address
    )
    assert outcome.counts == {"done": 2}, load_trials(outcome.sweep_dir).select(["error"]).to_pylist()
    assert {r["node_id"] for r in load(outcome.sweep_dir).to_pylist()} <= workers  # never the head: 0 CPUs

    # Without lrtune's runtime env, a task on a worker cannot import the package.
    ray.init(address=cluster.address, log_to_driver=False)

    @ray.remote(num_cpus=1)
    def importable() -> bool:
        import importlib.util

        return importlib.util.find_spec("shippednets") is not None

    assert ray.get(importable.remote()) is False
