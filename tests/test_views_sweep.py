"""Real sweeps seen through TensorBoard's server, an MLflow store and W&B's offline runs.

Each sweep runs as a user runs it (``lrtune sweep`` in a subprocess); a
TensorBoard server the test starts on 127.0.0.1 serves the sweep folder,
and the test reads what users would see: the HParams plugin's
``experiment`` and ``session_groups``, the scalars plugin's values. The
server and the sweeps are stopped by the tests that start them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from lrtune.results.tables import load, load_trials

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import start  # noqa: E402
from test_views import wandb_history, wandb_records  # noqa: E402

pytestmark = pytest.mark.ray

SWEEP = """
name: {name}
data: {{classes: [airplane, automobile]}}
epochs: {epochs}
batch_size: 16
space: {{optimizer: sgd, schedule: step, lr: {{grid: [0.01, 0.05]}}, drop: 0.5, epochs_drop: 1, momentum: {{grid: [0.0, 0.9]}}}}
trackers:
  mlflow: {{tracking_uri: "sqlite:///{storage}/mlflow.db"}}
  wandb: {{project: lrtune-test, mode: offline}}
"""

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoardServer:
    """``tensorboard --logdir DIR`` on a free loopback port, reloading every second."""

    def __init__(self, logdir: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
             "--port", str(self.port), "--reload_interval", "1", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/data/runs", timeout=5).read()
                return
            except OSError:
                assert self.process.poll() is None, "tensorboard exited"
                assert time.monotonic() < deadline, "tensorboard did not answer"
                time.sleep(0.5)

    def post(self, path: str, body: dict):
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        return json.loads(urllib.request.urlopen(request, timeout=30).read())

    def get(self, path: str, **query):
        return json.loads(
            urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(query)}", timeout=30).read()
        )

    def experiment(self):
        return self.post("/data/plugin/hparams/experiment", {"experimentName": ""})

    def session_groups(self, metric: str = "val_accuracy"):
        body = {
            "experimentName": "",
            "allowedStatuses": STATUSES,
            "colParams": [{"metric": {"tag": metric}}],
            "startIndex": 0,
            "sliceSize": 1000,
            "aggregationType": "AGGREGATION_AVG",
        }
        return self.post("/data/plugin/hparams/session_groups", body)["sessionGroups"]

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        return [
            (step, value) for _, step, value in self.get("/data/plugin/scalars/scalars", run=run, tag=tag)
        ]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def pairs(values) -> list:
    """(step, value) pairs to compare: steps exact, values as float32 holds them."""
    return [(step, pytest.approx(value, rel=1e-6)) for step, value in sorted(values)]


def final_metric(group: dict, tag: str = "val_accuracy"):
    return next(m for m in group["metricValues"] if m["name"]["tag"] == tag)


@pytest.fixture(scope="module")
def watched_sweep(cifar_archive, tmp_path_factory):
    """A 4-trial sweep with both trackers, watched by a TensorBoard server from before it starts."""
    tmp = tmp_path_factory.mktemp("watched")
    storage = tmp / "results"
    sweep_dir = storage / "views"
    server = TensorBoardServer(sweep_dir)
    sweep_file = tmp / "views.yaml"
    sweep_file.write_text(SWEEP.format(name="views", epochs=3, storage=storage))
    # The trials wait after each epoch while this file exists (lrtune's test hook), so the
    # moment "a trial shown, none done" lasts until the test has seen it, whatever the load.
    hold = tmp / "hold"
    hold.touch()
    process = start(
        "sweep", sweep_file, "--data", cifar_archive, "--storage", storage, "--quiet",
        env={"LRTUNE_TEST_HOLD_FILE": str(hold)},
    )  # fmt: skip
    during = []
    try:
        deadline = time.monotonic() + 300
        released = time.monotonic() + 180  # never hold the sweep past this, seen or not
        while process.poll() is None:
            assert time.monotonic() < deadline, "the sweep did not end"
            groups = server.session_groups()
            if groups and (sweep_dir / "trials.parquet").exists():
                statuses = load_trials(str(sweep_dir))["status"].to_pylist()
                if "done" not in statuses and any(g["metricValues"] for g in groups):
                    during.append((statuses, groups))
            if hold.exists() and (during or time.monotonic() > released):
                hold.unlink()
            time.sleep(1)
        output = process.stdout.read()
        assert process.returncode == 0, output
        time.sleep(3)  # two reloads
        yield {"dir": sweep_dir, "storage": storage, "server": server, "during": during, "output": output}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        server.stop()


def test_the_hparams_tab_lists_trials_while_the_sweep_runs(watched_sweep):
    assert watched_sweep["during"], "no moment with a trial shown and none done was seen"
    statuses, groups = watched_sweep["during"][0]
    assert "running" in statuses
    for group in groups:
        assert set(group["hparams"]) >= {"optimizer", "lr", "momentum", "drop"}
        assert group["sessions"][0]["status"] in ("STATUS_UNKNOWN", "STATUS_RUNNING")


def test_the_hparams_experiment_holds_every_hyperparameter_of_the_space(watched_sweep):
    infos = {h["name"]: h for h in watched_sweep["server"].experiment()["hparamInfos"]}
    assert {"optimizer", "schedule", "lr", "momentum", "drop", "epochs_drop"} <= set(infos)
    assert sorted(infos["lr"]["domainDiscrete"]) == [0.01, 0.05]
    assert sorted(infos["momentum"]["domainDiscrete"]) == [0.0, 0.9]


def test_after_the_sweep_each_trial_shows_its_hyperparameters_status_and_final_metric(watched_sweep):
    sweep_dir = watched_sweep["dir"]
    trials = {t["trial_id"]: t for t in load_trials(str(sweep_dir)).to_pylist()}
    groups = {g["name"]: g for g in watched_sweep["server"].session_groups()}
    assert set(groups) == set(trials)
    for trial_id, group in groups.items():
        trial = trials[trial_id]
        assert (group["hparams"]["lr"], group["hparams"]["momentum"]) == (
            trial["config.lr"],
            trial["config.momentum"],
        )
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS" and trial["status"] == "done"
        final = final_metric(group)
        assert (final["trainingStep"], final["value"]) == (3, pytest.approx(trial["final_metric"]))


def test_ray_tunes_raw_tensorboard_logs_are_off(watched_sweep):
    sweep_dir = watched_sweep["dir"]
    assert not [p for p in sweep_dir.rglob("events.out.tfevents*") if "lrtune" not in p.name]
    assert list(sweep_dir.glob("*/result.json")), "Tune's JSON logs stay (its analysis reads them)"


def test_mlflow_holds_one_run_per_trial_with_the_rows_as_history_and_the_pick(watched_sweep):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{watched_sweep['storage']}/mlflow.db")
    experiment = client.get_experiment_by_name("views")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    table = load(str(watched_sweep["dir"])).to_pylist()
    assert set(runs) == {r["trial_id"] for r in table}
    for trial_id, run in runs.items():
        history = sorted(
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy")
        )
        kept = sorted((r["epoch"], r["val_accuracy"]) for r in table if r["trial_id"] == trial_id)
        assert history == pairs(kept)
        assert (run.info.status, run.data.tags["lrtune.status"]) == ("FINISHED", "done")
    pick = json.loads(experiment.tags["lrtune.pick"])
    assert all(runs[t].data.tags.get("lrtune.pick") == "best" for t in pick["trial_ids"])


def test_wandb_writes_one_offline_run_per_trial_its_reader_loads_back(watched_sweep):
    table = load(str(watched_sweep["dir"])).to_pylist()
    runs = sorted((watched_sweep["dir"] / "wandb").glob("offline-run-*-views-*"))
    assert len(runs) == 4
    for run_dir in runs:
        trial_id = run_dir.name.rsplit("-views-", 1)[1]
        kept = sorted((r["epoch"], r["val_accuracy"]) for r in table if r["trial_id"] == trial_id)
        assert wandb_history(run_dir, "val_accuracy") == pairs(kept)
        assert any(
            r.WhichOneof("record_type") == "exit" and r.exit.exit_code == 0 for r in wandb_records(run_dir)
        )


def assert_every_view_shows_the_rows(sweep_dir: Path, tracking_uri: str) -> None:
    """TensorBoard's server, the MLflow store and the W&B offline runs show the sweep's rows, no others.

    For a sweep with both trackers: each trial's ``val_accuracy`` and ``lr``
    scalars, its MLflow metric history and its W&B history are its kept
    (epoch, value) rows, whatever PBT rewrote and kills replayed (the kill
    soak of ``test_kill_soak.py`` calls it after PBT and kills).
    """
    from mlflow.tracking import MlflowClient

    name = sweep_dir.name
    kept: dict[str, dict[int, dict]] = {}
    for r in load(str(sweep_dir)).to_pylist():
        kept.setdefault(r["trial_id"], {})[r["epoch"]] = r
    server = TensorBoardServer(sweep_dir)
    try:
        for trial_id, epochs in kept.items():
            for tag in ("val_accuracy", "lr"):
                expected = pairs((e, epochs[e][tag]) for e in epochs)
                assert server.scalars(f"tensorboard/{trial_id}", tag) == expected, (trial_id, tag)
    finally:
        server.stop()
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(kept)
    for run in runs:
        history = sorted(
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy")
        )
        assert history == pairs((e, r["val_accuracy"]) for e, r in kept[run.info.run_name].items())
    trial_runs = sorted((sweep_dir / "wandb").glob(f"offline-run-*-{name}-*"))
    assert len(trial_runs) == len(kept)
    for run_dir in trial_runs:
        trial_id = run_dir.name.split(f"-{name}-", 1)[1].split("-")[0]
        assert wandb_history(run_dir, "val_accuracy") == pairs(
            (e, r["val_accuracy"]) for e, r in kept[trial_id].items()
        )
