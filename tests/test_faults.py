"""Faults lose nothing: a raising trial, unwritable storage (a killed driver: ``test_resume.py``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from lrtune.engine.sink import SinkError
from lrtune.engine.sweep import run_sweep
from lrtune.results.tables import load_trials
from lrtune.space import Dist
from lrtune.spec import parse_spec, parse_yaml

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import start  # noqa: E402

pytestmark = pytest.mark.ray

SLOW = """
name: {name}
data: {{classes: [airplane, automobile]}}
epochs: {epochs}
batch_size: 8
repeats: 2
space: {{optimizer: sgd, schedule: time, lr: {{grid: [0.01, 0.03]}}, decay: 0.001, momentum: 0.5}}
resources: {{cpu: 1}}
"""


def rows(sweep_dir: str):
    path = Path(sweep_dir, "metrics")
    if not path.exists() or not any(path.glob("*.parquet")):
        return []
    return ds.dataset(str(path)).to_table(columns=["trial_id", "epoch", "lr", "config.lr"]).to_pylist()


def readable_rows(metrics: Path) -> int:
    """How many rows a reader finds in ``metrics/`` now (0 while it has none, or is being rewritten)."""
    try:
        return ds.dataset(str(metrics)).count_rows() if metrics.is_dir() else 0
    except (FileNotFoundError, OSError):  # a part replaced while listed
        return 0


def exactly_once(table_rows, expected_trials: int, epochs: int):
    keys = [(r["trial_id"], r["epoch"]) for r in table_rows]
    assert len(keys) == len(set(keys)), "a (trial, epoch) row was written twice"
    assert len({t for t, _ in keys}) == expected_trials
    assert sorted(keys) == sorted((t, e) for t in {t for t, _ in keys} for e in range(1, epochs + 1))


RUNNING: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_leftover_sweeps(kill_group):
    yield
    for process in RUNNING:
        if process.poll() is None:
            kill_group(process)
    RUNNING.clear()


def lrtune(*args, **kwargs):
    process = start(*args, **kwargs)
    RUNNING.append(process)
    return process


def make_spec(text):
    return parse_spec(parse_yaml(text, "test.yaml"), "test.yaml")


def test_a_raising_trial_is_recorded_as_error_and_the_others_finish(
    ray_running, cifar_archive, tmp_path, capfd
):
    spec = make_spec(
        """
name: raising
data: {classes: [airplane, automobile]}
epochs: 2
batch_size: 32
max_failures: 0
space:
  - {optimizer: sgd, lr: 0.05, momentum: 0.5}
  - {optimizer: sgd, lr: 0.05, momentum: 0.5}
"""
    )
    # A config that slipped past validation: Keras refuses momentum 1.5 inside the trial.
    bad = spec.space[1].model_copy(
        update={"params": {**spec.space[1].params, "momentum": Dist("fixed", (1.5,))}}
    )
    spec = spec.model_copy(update={"space": [spec.space[0], bad]})
    outcome = run_sweep(spec, storage=str(tmp_path), data=str(cifar_archive), quiet=True)
    trials = {t["config.momentum"]: t for t in load_trials(outcome.sweep_dir).to_pylist()}
    assert trials[0.5]["status"] == "done" and trials[0.5]["epochs_run"] == 2
    assert trials[1.5]["status"] == "error"
    assert "momentum" in trials[1.5]["error"] and "ValueError" in trials[1.5]["error"]
    assert outcome.counts == {"done": 1, "error": 1} and not outcome.all_failed
    assert "Traceback" not in capfd.readouterr().err  # --quiet: the error is in trials.parquet


def test_unwritable_storage_stops_the_sweep_and_resume_completes_it(ray_running, cifar_archive, tmp_path):
    import threading

    spec = make_spec(SLOW.format(name="storage", epochs=4))
    metrics = tmp_path / "storage" / "metrics"
    broken = threading.Event()

    def break_storage():  # the storage "goes away": its folder becomes a file
        # Wait for what the test asserts, two readable rows: an entry of metrics/ need not be
        # one (pyarrow skips names starting with "_" or "."; a part may hold one row).
        while readable_rows(metrics) < 2:
            time.sleep(0.1)
        metrics.rename(metrics.with_name("metrics.saved"))
        metrics.write_text("not a folder")
        broken.set()

    threading.Thread(target=break_storage, daemon=True).start()
    with pytest.raises(
        SinkError,
        match=rf"cannot write results to {tmp_path}/storage .*fix the storage and run again with --resume",
    ):
        run_sweep(spec, storage=str(tmp_path), data=str(cifar_archive), quiet=True)
    assert broken.is_set()
    saved = ds.dataset(str(metrics.with_name("metrics.saved"))).to_table()
    assert saved.num_rows >= 2  # what was written is intact and readable

    metrics.unlink()  # fix the storage
    metrics.with_name("metrics.saved").rename(metrics)
    run_sweep(spec, storage=str(tmp_path), data=str(cifar_archive), quiet=True, resume=True)
    exactly_once(rows(str(tmp_path / "storage")), expected_trials=4, epochs=4)


class _Failing:
    """A Ray actor whose method raises, like a trial whose storage went away."""

    def fail(self):
        raise ValueError("the storage went away")


@pytest.fixture
def plain_ray():
    """A Ray at its default log level (the session's embedded one logs errors only): Ray's
    "Unhandled error" lines show there, so the test can see --quiet silence them."""
    import ray

    ray.shutdown()  # this process's connection to the session Ray; ray_running starts it again
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize("quiet", [False, True], ids=["loud", "quiet"])
def test_quiet_keeps_ray_from_printing_the_errors_of_dropped_trials(plain_ray, capfd, caplog, quiet):
    # Ray logs the error of every actor task whose result nobody fetched (the trials Tune drops
    # when a storage failure ends the sweep): --quiet leaves lrtune's one line alone.
    import gc

    import ray

    from lrtune.engine.driver import quiet_tune_logs

    actor = ray.remote(_Failing).remote()
    with quiet_tune_logs(quiet):
        refs = [actor.fail.remote() for _ in range(2)]
        time.sleep(2)  # failed (ray.wait would count as handling them)
        del refs
        gc.collect()
        time.sleep(3)  # Ray reports them from another thread
    ray.kill(actor)
    # Ray's logger writes to stderr; under pytest its records reach caplog.
    assert ("Unhandled error" in capfd.readouterr().err + caplog.text) is not quiet
