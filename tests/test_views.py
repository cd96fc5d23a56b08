"""The views of the kept rows, read back with each tool's own reader: TensorBoard's
event accumulator, an MLflow tracking store (sqlite), W&B's offline run files.

No Ray here: the rows are given to the views as the sink gives them.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrtune.engine.views.tensorboard import TRIALS_DIR, TensorBoardView
from lrtune.engine.views.trackers import MlflowRuns, WandbRuns
from lrtune.spec import SweepFileError, parse_spec

ROOT = Path(__file__).parent.parent


def spec_with(tmp_path, **extra):
    return parse_spec(
        {
            "name": "views",
            "epochs": 3,
            "space": {
                "optimizer": "sgd",
                "schedule": "step",
                "lr": {"loguniform": [0.01, 0.1]},
                "drop": {"grid": [0.5, 0.25]},
                "epochs_drop": 1,
            },
            **extra,
        },
        "views.yaml",
    )


CONFIG = {"optimizer": "sgd", "schedule": "step", "lr": 0.05, "drop": 0.5, "epochs_drop": 1}


def row(trial_id, epoch, val_accuracy, trained_by=None):
    return {
        "trial_id": trial_id,
        "epoch": epoch,
        "val_accuracy": val_accuracy,
        "loss": 1.0 - val_accuracy,
        "lr": 0.05 * 0.5**epoch,
        "timestamp": dt.datetime.now(dt.timezone.utc),
        "trained_by": trained_by or trial_id,
    }


def feed_a_restored_trial(view):
    """Three epochs, then a PBT exploit rewrites epochs 2 and 3 with the donor's (t2) history."""
    view.trial_started("t1", CONFIG)
    view.rows_kept([row("t1", 1, 0.5), row("t1", 2, 0.6), row("t1", 3, 0.7)])
    view.rows_withdrawn("t1", [2, 3])
    view.rows_kept([row("t1", 2, 0.8, "t2"), row("t1", 3, 0.9, "t2")])
    view.trial_ended("t1", "done")
    view.sweep_ended({"trial_ids": ["t1"], "mean": 0.9})
    return view.close(30)


KEPT = [(1, 0.5), (2, 0.8), (3, 0.9)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_reads_the_kept_value_at_every_step_after_a_withdrawal(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert feed_a_restored_trial(TensorBoardView(str(tmp_path), spec_with(tmp_path))) == []
    events = EventAccumulator(str(tmp_path / TRIALS_DIR / "t1"))
    events.Reload()
    got = [(s.step, s.value) for s in events.Scalars("val_accuracy")]
    assert got == [(e, pytest.approx(v)) for e, v in KEPT]
    assert [(s.step, s.value) for s in events.Scalars("lineage/inherited")] == [(1, 0.0), (2, 1.0), (3, 1.0)]
    # The text plugin's data, as the TensorBoard server reads it (its accumulator purges tensors too).
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator as Server

    served = Server(str(tmp_path / TRIALS_DIR / "t1"))
    served.Reload()
    trained_by = [(t.step, t.tensor_proto.string_val[0].decode()) for t in served.Tensors("trained_by")]
    assert trained_by == [(1, "t1"), (2, "t2"), (3, "t2")]
    assert [(t.step, t.tensor_proto.float_val[0]) for t in served.Tensors("val_accuracy")] == [
        (e, pytest.approx(v)) for e, v in KEPT
    ]


def test_the_view_writes_without_importing_tensorflow_into_the_driver(tmp_path):
    """TensorBoard's writer imports TensorFlow where installed (6.8 s of a driver's CPU): the view keeps it out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_views import TensorBoardView, feed_a_restored_trial, spec_with
from pathlib import Path
assert feed_a_restored_trial(TensorBoardView({str(tmp_path)!r}, spec_with(Path({str(tmp_path)!r})))) == []
print("tensorflow" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"], "the view imported TensorFlow"
    events = EventAccumulator(str(tmp_path / TRIALS_DIR / "t1"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("val_accuracy")] == [
        (e, pytest.approx(v)) for e, v in KEPT
    ]


def test_the_hparams_experiment_lists_every_hyperparameter_of_the_space_and_the_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    TensorBoardView(str(tmp_path), spec_with(tmp_path)).close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    content = events.SummaryMetadata(metadata.EXPERIMENT_TAG).plugin_data.content
    experiment = metadata.parse_experiment_plugin_data(content)
    hparams = {h.name: h for h in experiment.hparam_infos}
    assert {"optimizer", "schedule", "lr", "drop", "epochs_drop"} <= set(hparams)
    assert (hparams["lr"].domain_interval.min_value, hparams["lr"].domain_interval.max_value) == (0.01, 0.1)
    assert sorted(v.number_value for v in hparams["drop"].domain_discrete.values) == [0.25, 0.5]
    assert {m.name.tag for m in experiment.metric_infos} >= {"val_accuracy", "val_loss", "lr"}


def test_an_mlflow_run_per_trial_holds_the_kept_rows_as_its_history(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = spec_with(tmp_path, trackers={"mlflow": {"tracking_uri": uri, "experiment": "lr sweeps"}})
    assert feed_a_restored_trial(MlflowRuns(spec, spec.trackers.mlflow)) == []
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("lr sweeps")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_name for r in runs] == ["t1"]
    run = runs[0]
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert sorted(history) == [(e, pytest.approx(v)) for e, v in KEPT]
    assert (run.info.status, run.data.tags["lrtune.status"], run.data.params["lr"]) == (
        "FINISHED",
        "done",
        "0.05",
    )
    assert run.data.tags["lrtune.pick"] == "best"
    assert '"trial_ids": ["t1"]' in experiment.tags["lrtune.pick"]


def test_a_resumed_sweep_empties_the_mlflow_run_of_a_trial_whose_rows_parquet_no_longer_holds(tmp_path):
    # A driver showed t1's epoch 1, withdrew it (PBT) and died before the run was replaced: Parquet
    # holds no row of t1, MLflow still shows the old one. The resumed driver's resync must take it
    # back, or t1's history ends with two values at epoch 1 (the PBT kill soak, seed 3, 2026-12-07).
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = spec_with(tmp_path, trackers={"mlflow": {"tracking_uri": uri}})
    killed = MlflowRuns(spec, spec.trackers.mlflow)
    killed.trial_started("t1", CONFIG)
    killed.trial_started("t2", CONFIG)
    killed.rows_kept([row("t1", 1, 0.42), row("t2", 1, 1.0)])
    assert killed.close(30) == []
    resumed = MlflowRuns(spec, spec.trackers.mlflow)
    resumed.resync([row("t2", 1, 1.0)])
    resumed.trial_started("t1", CONFIG)
    resumed.rows_kept([row("t1", 1, 1.0, "t2")])
    assert resumed.close(30) == []
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("views").experiment_id])
    history = {
        r.info.run_name: sorted(
            (m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_accuracy")
        )
        for r in runs
    }
    assert history == {"t1": [(1, pytest.approx(1.0))], "t2": [(1, pytest.approx(1.0))]}
    assert runs[0].data.params["lr"] == "0.05"


def wandb_records(run_dir: Path) -> list:
    """The records of an offline W&B run, read with W&B's own reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    (path,) = run_dir.glob("run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    records = []
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        records.append(record)
    return records


def wandb_history(run_dir: Path, key: str) -> list[tuple[int, float]]:
    import json

    found = []
    for record in wandb_records(run_dir):
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            if key in items:
                found.append((int(items["_step"]), items[key]))
    return found


def test_a_wandb_offline_run_per_trial_holds_the_kept_rows_as_its_history(tmp_path):
    spec = spec_with(tmp_path, trackers={"wandb": {"project": "lrtune-test", "mode": "offline"}})
    assert feed_a_restored_trial(WandbRuns(spec, spec.trackers.wandb, str(tmp_path))) == []
    trial_runs = sorted((tmp_path / "wandb").glob("offline-run-*-views-t1*"))
    assert len(trial_runs) == 1, "the withdrawal replaced the trial's run, it did not add one"
    assert wandb_history(trial_runs[0], "val_accuracy") == [(e, pytest.approx(v)) for e, v in KEPT]
    runs = [d for d in (tmp_path / "wandb").glob("offline-run-*") if d not in trial_runs]
    assert len(runs) == 1  # the pick's run
    job_types = [r.run.job_type for r in wandb_records(runs[0]) if r.WhichOneof("record_type") == "run"]
    assert job_types[0] == "pick"


def test_an_unreachable_mlflow_server_is_retried_reported_and_never_raised(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = spec_with(tmp_path, trackers={"mlflow": {"tracking_uri": uri}})
    view = MlflowRuns(spec, spec.trackers.mlflow, waits_s=(0.2,))
    start = time.monotonic()
    view.trial_started("t1", CONFIG)
    view.rows_kept([row("t1", 1, 0.5)])
    assert time.monotonic() - start < 1.0, "the sink waited on the tracker"
    failures = view.close(60)
    assert len(failures) == 2
    assert failures[0].startswith("mlflow: start t1: MlflowException: API request to ")
    assert "Connection refused" in failures[0] and failures[0].endswith("(2 tries)")
    assert failures[1].startswith("mlflow: rows of t1: ") and failures[1].endswith("(1 tries)")


def test_trackers_in_a_sweep_file_are_checked_like_every_key(tmp_path):
    with pytest.raises(
        SweepFileError,
        match=r"views.yaml: trackers.mlflow.uri: unknown key; allowed here: tracking_uri, experiment",
    ):
        spec_with(tmp_path, trackers={"mlflow": {"uri": "x"}})
    with pytest.raises(
        SweepFileError, match=r"views.yaml: trackers.wandb.mode: Input should be 'online' or 'offline'"
    ):
        spec_with(tmp_path, trackers={"wandb": {"project": "p", "mode": "disabled"}})


def test_a_tracker_whose_package_is_missing_is_refused_with_the_install_command(tmp_path):
    """In a Python whose path has every installed package but mlflow (links to the real ones)."""
    import site

    packages = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    farm = tmp_path / "site-packages"
    farm.mkdir()
    for entry in packages.iterdir():
        if not entry.name.lower().startswith("mlflow"):
            (farm / entry.name).symlink_to(entry)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nspace: {lr: 0.1}\ntrackers: {mlflow: {tracking_uri: sqlite:///x.db}}\n")
    code = f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(farm)!r}]; from lrtune.cli import app; app()"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, "validate", str(sweep)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "s.yaml: trackers.mlflow: the mlflow package is not installed; install it with "
        "pip install 'lrtune[mlflow]' (or remove trackers.mlflow)"
    ) in " ".join(done.stderr.split())


def test_trackers_can_be_switched_on_with_set(tmp_path):
    from lrtune.spec import apply_overrides

    raw = apply_overrides(
        {"name": "s", "space": {"lr": 0.1}},
        [
            "trackers.mlflow.tracking_uri=sqlite:///m.db",
            "trackers.wandb.project=p",
            "trackers.wandb.mode=offline",
        ],
        "s.yaml",
    )
    trackers = parse_spec(raw, "s.yaml").trackers
    assert (trackers.mlflow.tracking_uri, trackers.wandb.project, trackers.wandb.mode) == (
        "sqlite:///m.db",
        "p",
        "offline",
    )
