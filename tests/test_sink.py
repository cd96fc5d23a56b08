"""The Parquet sink at scale: what a flush writes, and what stays true after many trials and a kill.

The sink's Tune hooks are called in the order Tune's controller calls them,
with Tune's own ``Trial`` objects (stubs: no Ray needed) and results shaped
like lrtune's reporter's; files are real Parquet under ``tmp_path``.
"""

from __future__ import annotations

import json
import time

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from ray.tune.experiment import Trial

from lrtune.engine import sink as sink_module
from lrtune.engine.progress import trial_progress_table
from lrtune.engine.sink import MERGE_FAN_IN, ParquetSink
from lrtune.results.tables import METRICS_SCHEMA, load

EPOCHS = 3


def make_trial(i: int, lr: float = 0.05) -> Trial:
    config = {"arm": {"optimizer": "sgd", "schedule": "constant", "lr": lr, "label": "sgd", "repeat": 0}}
    trial = Trial("lrtune_test", config=config, trial_id=f"t_{i:05d}", stub=True)
    trial.set_status(Trial.RUNNING)
    return trial


def result(trial: Trial, epoch: int, *, run: str = "r1", lineage: list | None = None, restored: int = 0):
    accuracy = 0.1 * epoch + int(trial.trial_id[-5:]) / 100_000
    row = {
        "epoch": epoch,
        "lr": 0.05,
        "loss": 1.0,
        "accuracy": accuracy,
        "val_loss": 1.0,
        "val_accuracy": accuracy,
        "epoch_seconds": 0.01,
        "images_per_second": 1000.0,
        "status": "done" if epoch == EPOCHS else "running",
        "epoch_end": time.time(),
        "seed": 1,
        "node": "here",
        "trial": trial.trial_id,
        "run": run,
        "hparams": trial.config["arm"],
    }
    if lineage is not None:
        row.update(restored_epoch=restored, restored_from=trial.trial_id, lineage=json.dumps(lineage))
    return row


def make_sink(sweep_dir, flush_seconds: float = 3600.0) -> ParquetSink:
    sink = ParquetSink(
        str(sweep_dir),
        sweep="s",
        metric="val_accuracy",
        mode="max",
        epochs=EPOCHS,
        flush_seconds=flush_seconds,
    )
    sink.setup()
    return sink


def run_trials(sink: ParquetSink, trials: list[Trial], *, end: bool = True) -> None:
    """Each trial reports EPOCHS epochs and completes, one after the other, as under Tune.

    Tune saves its experiment snapshot (``get_state``) after each trial's end here: a
    flush per trial, the most a sweep of short trials makes.
    """
    seen: list[Trial] = []
    for trial in trials:
        seen.append(trial)
        for epoch in range(1, EPOCHS + 1):
            r = result(trial, epoch, lineage=[] if epoch == 1 else None)
            sink.on_trial_result(epoch, seen, trial, r)
            sink.on_step_end(epoch, seen)
        sink.on_trial_complete(EPOCHS, seen, trial)
        trial.set_status(Trial.TERMINATED)
        sink.get_state()
    if end:
        sink.on_experiment_end(seen)


def keys(table) -> list[tuple[str, int]]:
    return list(zip(table["trial_id"].to_pylist(), table["epoch"].to_pylist(), strict=True))


def test_the_first_row_is_readable_without_waiting_for_the_flush_period(tmp_path):
    sink = make_sink(tmp_path / "s", flush_seconds=3600)
    trial = make_trial(0)
    sink.on_trial_result(1, [trial], trial, result(trial, 1, lineage=[]))
    metrics = ds.dataset(tmp_path / "s" / "metrics", format="parquet", schema=METRICS_SCHEMA).to_table()
    assert keys(metrics) == [("t_00000", 1)]
    assert pq.read_table(tmp_path / "s" / "trials.parquet")["status"].to_pylist() == ["running"]
    # The next row waits for the period (or its trial's end), as before.
    sink.on_trial_result(2, [trial], trial, result(trial, 2))
    metrics = ds.dataset(tmp_path / "s" / "metrics", format="parquet", schema=METRICS_SCHEMA).to_table()
    assert metrics.num_rows == 1


def test_many_trials_leave_every_row_once_in_few_files_and_a_right_trials_table(tmp_path):
    n = 4 * MERGE_FAN_IN**2 // EPOCHS  # enough trial ends (one flush each) for two merge tiers
    trials = [make_trial(i) for i in range(n)]
    sink = make_sink(tmp_path / "s")
    run_trials(sink, trials, end=False)
    files = list((tmp_path / "s" / "metrics").glob("*.parquet"))
    # One file per trial end without merging; merged: at most FAN_IN - 1 per tier.
    assert len(files) < 3 * MERGE_FAN_IN
    raw = ds.dataset(tmp_path / "s" / "metrics", format="parquet", schema=METRICS_SCHEMA).to_table()
    assert sorted(keys(raw)) == [(t.trial_id, e) for t in trials for e in range(1, EPOCHS + 1)]

    sink.on_experiment_end(trials)
    table = pq.read_table(tmp_path / "s" / "trials.parquet").to_pylist()
    assert [r["trial_id"] for r in table] == [t.trial_id for t in trials]
    assert {r["status"] for r in table} == {"done"}
    assert {r["epochs_run"] for r in table} == {EPOCHS}
    assert {r["best_epoch"] for r in table} == {EPOCHS}
    assert table[7]["best_metric"] == pytest.approx(0.1 * EPOCHS + 7 / 100_000)
    assert len(list((tmp_path / "s" / "metrics").glob("*.parquet"))) == 1
    assert sorted(keys(load(str(tmp_path / "s")))) == sorted(keys(raw))


def test_after_a_kill_mid_merge_a_new_sink_finds_every_row_once(tmp_path, monkeypatch):
    trials = [make_trial(i) for i in range(MERGE_FAN_IN * 3)]
    sink = make_sink(tmp_path / "s")
    parts = sink._parts
    # A merge writes its file, then the driver dies before deleting the files it replaces.
    monkeypatch.setattr(parts, "_delete", lambda keeper, names: None)
    done = 0
    while not any(n.startswith("merged-") for n in parts.names()):
        run_trials(sink, trials[done : done + 1], end=False)
        done += 1
    assert len([n for n in parts.names() if n.startswith("part-")]) == MERGE_FAN_IN
    monkeypatch.undo()

    resumed = make_sink(tmp_path / "s")  # --resume: a new driver, a new sink
    assert [n for n in resumed._parts.names() if not n.startswith("merged-")] == []
    run_trials(resumed, trials[done:], end=True)
    rows = load(str(tmp_path / "s"))
    assert sorted(keys(rows)) == [(t.trial_id, e) for t in trials for e in range(1, EPOCHS + 1)]


def test_after_a_kill_mid_compaction_a_new_sink_starts_and_finds_every_row_once(tmp_path, monkeypatch):
    trials = [make_trial(i) for i in range(4)]
    sink = make_sink(tmp_path / "s")
    run_trials(sink, trials, end=False)
    monkeypatch.setattr(sink._parts, "_delete", lambda keeper, names: None)
    sink.compact()  # the compacted file is written; the driver dies before the parts go
    monkeypatch.undo()
    assert len(sink._parts.names()) > 2
    resumed = make_sink(tmp_path / "s")
    assert [n.split("-")[0] for n in resumed._parts.names()] == ["compacted"]
    assert sorted(keys(load(str(tmp_path / "s")))) == [(t.trial_id, e) for t in trials for e in range(1, 4)]


def test_a_restored_run_withdraws_rows_that_a_merge_moved(tmp_path):
    trials = [make_trial(i) for i in range(MERGE_FAN_IN + 1)]
    sink = make_sink(tmp_path / "s")
    run_trials(sink, trials[:MERGE_FAN_IN], end=False)  # trial 0's rows now sit in a merged file
    assert any(n.startswith("merged-") for n in sink._parts.names())
    first = trials[0]
    first.set_status(Trial.RUNNING)
    history = [{**result(first, 1), "run": "r1"}]
    # A new run of trial 0 resumed from epoch 1: its epochs 2 and 3 go, epoch 2 comes again.
    sink.on_trial_result(2, trials, first, result(first, 2, run="r2", lineage=history, restored=1))
    sink.on_experiment_end(trials)
    rows = load(str(tmp_path / "s")).to_pylist()
    mine = sorted((r["epoch"], r["run"]) for r in rows if r["trial_id"] == first.trial_id)
    assert mine == [(1, "r1"), (2, "r2")]
    assert sink.rows_withdrawn == 2
    assert len(rows) == EPOCHS * MERGE_FAN_IN - 1


def save_state_meta(sweep_dir, trial: Trial, history: list[dict], run: str) -> None:
    """A complete saved state's ``trial.json`` (what the sink reads of a state), as StateStore.save writes it."""
    epoch = history[-1]["epoch"]
    state = sweep_dir / trial.trial_id / "state" / f"epoch-{epoch:06d}-{run}"
    state.mkdir(parents=True)
    meta = {"trial_id": trial.trial_id, "run": run, "hparams": {**trial.config["arm"], "seed": 1}}
    (state / "trial.json").write_text(json.dumps({**meta, "epoch": epoch, "history": history}))


def test_a_trial_stopped_without_running_again_ends_with_the_rows_of_its_newest_state(tmp_path):
    # Found by the sha kill soak (seed 678938): a trial trained epoch 2 in a run whose driver was
    # killed before its row was written; after --resume, sha's restored verdict stopped it while
    # pending, so it never replayed epoch 2. Its newest state (the model it ends with) holds it.
    sweep_dir = tmp_path / "s"
    run1, run2 = "0123456789ab", "ba9876543210"  # run ids as trials make them (hex)
    trial = make_trial(1)
    first = make_sink(sweep_dir, flush_seconds=0.0)
    row1 = result(trial, 1, run=run1, lineage=[])
    first.on_trial_result(1, [trial], trial, row1)
    first.flush()  # the first driver wrote epoch 1, then died with epoch 2's row
    row2 = {**result(trial, 2, run=run2), "hparams": None}
    clean = [
        {k: v for k, v in r.items() if k not in ("lineage", "restored_epoch", "restored_from")}
        for r in (row1, row2)
    ]
    save_state_meta(sweep_dir, trial, clean[:1], run1)
    save_state_meta(sweep_dir, trial, clean, run2)

    resumed = make_sink(sweep_dir)
    trial.set_status(Trial.PENDING)
    resumed.on_trial_complete(3, [trial], trial)
    trial.set_status(Trial.TERMINATED)
    resumed.on_experiment_end([trial])
    rows = sorted(load(str(sweep_dir)).to_pylist(), key=lambda r: r["epoch"])
    assert [(r["epoch"], r["run"], r["accuracy"]) for r in rows] == [
        (1, run1, row1["accuracy"]),
        (2, run2, row2["accuracy"]),
    ]
    (status,) = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    assert (status["status"], status["epochs_run"]) == ("stopped_early", 2)
    assert resumed.rows_dropped == 0


class EventLog:
    """A view (lrtune.engine.views.RowView's hooks) that records what it is told, in order."""

    def __init__(self):
        self.events: list[tuple] = []

    def __getattr__(self, event):
        return lambda *args: self.events.append((event, *args))


def test_a_trials_end_waits_for_the_next_flush_and_views_hear_of_it_after_its_last_row(tmp_path):
    # At thousands of short trials a flush per trial end (a small file each) was most of
    # lrtune's driver time (benchmarks/scale.py at 5,000 trials: 5,005 flushes).
    views = EventLog()
    sink = make_sink(tmp_path / "s")
    sink.views = (views,)
    trial = make_trial(0)
    for epoch in range(1, EPOCHS + 1):
        sink.on_trial_result(epoch, [trial], trial, result(trial, epoch, lineage=[] if epoch == 1 else None))
    sink.on_trial_complete(EPOCHS, [trial], trial)
    trial.set_status(Trial.TERMINATED)
    metrics = ds.dataset(tmp_path / "s" / "metrics", format="parquet", schema=METRICS_SCHEMA)
    assert metrics.to_table().num_rows == 1  # the first row went at once; the rest wait
    assert [e[0] for e in views.events] == ["rows_kept"]

    assert sink.get_state() is None  # Tune saves its snapshot: the rows go first
    metrics = ds.dataset(tmp_path / "s" / "metrics", format="parquet", schema=METRICS_SCHEMA)
    assert sorted(keys(metrics.to_table())) == [("t_00000", e) for e in range(1, EPOCHS + 1)]
    assert [e[0] for e in views.events] == ["rows_kept", "rows_kept", "trial_ended"]
    assert views.events[-1] == ("trial_ended", "t_00000", "done")


def test_a_snapshot_that_ended_a_trial_ahead_of_its_rows_gets_them_from_the_state_it_ended_with(tmp_path):
    # Tune may upload a snapshot early (an upload still running when the next is saved):
    # the restored snapshot ends a trial whose last rows died with the driver's buffer.
    sweep_dir = tmp_path / "s"
    trial = make_trial(0)
    first = make_sink(sweep_dir)
    rows = [result(trial, e, run="0123456789ab", lineage=[] if e == 1 else None) for e in (1, 2, 3)]
    for epoch, row in enumerate(rows, 1):
        first.on_trial_result(epoch, [trial], trial, row)  # epoch 1 is written, 2 and 3 wait
    history = [
        {k: v for k, v in r.items() if k not in ("lineage", "restored_epoch", "restored_from")} for r in rows
    ]
    save_state_meta(sweep_dir, trial, history, "0123456789ab")  # the trial saved its state, then ended

    trial.set_status(Trial.TERMINATED)
    trial.update_last_result(dict(rows[-1]))
    resumed = make_sink(sweep_dir)
    resumed.on_step_begin(0, [trial])
    resumed.on_experiment_end([trial])
    kept = sorted(load(str(sweep_dir)).to_pylist(), key=lambda r: r["epoch"])
    assert [(r["epoch"], r["accuracy"]) for r in kept] == [(r["epoch"], r["accuracy"]) for r in rows]
    (status,) = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    assert (status["status"], status["epochs_run"]) == ("done", EPOCHS)


def test_trials_parquet_is_not_rewritten_at_every_trial_end_but_is_right_at_the_end(tmp_path):
    trials = [make_trial(i) for i in range(20)]
    sink = make_sink(tmp_path / "s", flush_seconds=3600)
    run_trials(sink, trials, end=False)
    # Written once, with the first row: rewriting it (one row per trial) at every
    # trial end costs O(trials) per trial, O(trials^2) per sweep.
    early = pq.read_table(tmp_path / "s" / "trials.parquet").to_pylist()
    assert [(r["trial_id"], r["epochs_run"]) for r in early] == [("t_00000", 1)]
    rows = ds.dataset(tmp_path / "s" / "metrics", format="parquet", schema=METRICS_SCHEMA).to_table()
    assert rows.num_rows == 20 * EPOCHS  # a trial's rows are written before Tune's snapshot
    sink.on_experiment_end(trials)
    final = pq.read_table(tmp_path / "s" / "trials.parquet").to_pylist()
    assert [(r["trial_id"], r["status"], r["epochs_run"]) for r in final] == [
        (t.trial_id, "done", EPOCHS) for t in trials
    ]


def test_trials_parquet_waits_longer_when_writing_it_takes_longer(tmp_path, monkeypatch):
    sink = make_sink(tmp_path / "s", flush_seconds=0.0)
    trials = [make_trial(i) for i in range(3)]
    writes = []
    write = sink_module.write_atomically

    def slow_write(filesystem, table, path, on_error):
        writes.append(path)
        time.sleep(0.05)
        write(filesystem, table, path, on_error)

    monkeypatch.setattr(sink_module, "write_atomically", slow_write)
    start = time.monotonic()
    run_trials(sink, trials, end=False)
    elapsed = time.monotonic() - start
    # 0.05 s a write, at most TABLES_SHARE of the time: one write, then one per 1 s.
    assert 1 <= len(writes) <= 1 + elapsed / (0.05 / sink_module.TABLES_SHARE)


def test_a_trials_row_follows_its_trials_status_rows_and_config(tmp_path):
    sink = make_sink(tmp_path / "s")
    trial = make_trial(0)
    sink.on_trial_result(1, [trial], trial, result(trial, 1, lineage=[]))
    (row,) = sink.trial_rows([trial])
    assert (row["status"], row["epochs_run"], row["config.lr"]) == ("running", 1, 0.05)
    sink.on_trial_result(2, [trial], trial, result(trial, 2))
    assert sink.trial_rows([trial])[0]["epochs_run"] == 2
    trial.set_config({"arm": {**trial.config["arm"], "lr": 0.2}})  # PBT replaces the config
    assert sink.trial_rows([trial])[0]["config.lr"] == 0.2
    sink.on_trial_complete(
        2, [trial], trial
    )  # a scheduler stopped it: Tune ends it, then marks it TERMINATED
    trial.set_status(Trial.TERMINATED)
    assert sink.trial_rows([trial])[0]["status"] == "stopped_early"


def test_the_best_table_keeps_the_first_of_tied_trials_like_a_stable_sort():
    rows = [
        {
            "trial_id": f"t{i}",
            "family": "sgd",
            "best_metric": m,
            "best_epoch": 1,
            "status": "done",
            "repeat": 0,
        }
        for i, m in enumerate([0.5, 0.9, 0.9, None, 0.7, 0.9])
    ]
    top = trial_progress_table(rows, "val_accuracy", "max", top=2)
    assert list(top.columns[0].cells) == ["t1", "t2"]
    low = trial_progress_table(rows, "val_accuracy", "min", top=2)
    assert list(low.columns[0].cells) == ["t0", "t4"]


def _cleanup_of_an_interrupt(sink: ParquetSink, tmp_path, budget=None):
    """A finished trial, one 2 epochs in, one waiting on resources; Tune's interrupt marks the last two TERMINATED."""
    done, running, waiting = make_trial(0), make_trial(1), make_trial(2)
    waiting.set_status(Trial.PENDING)
    trials = [done, running, waiting]
    sink.on_step_begin(0, trials)
    run_trials(sink, [done], end=False)
    for epoch in (1, 2):
        sink.on_trial_result(
            epoch, trials, running, result(running, epoch, lineage=[] if epoch == 1 else None)
        )
    sink.on_step_end(2, trials)
    # TuneController._cleanup_trials: _schedule_trial_stop, no on_trial_complete.
    running.set_status(Trial.TERMINATED)
    waiting.set_status(Trial.TERMINATED)
    sink.on_experiment_end(trials)
    return {
        t["trial_id"]: (t["status"], t["epochs_run"])
        for t in pq.read_table(tmp_path / "trials.parquet").to_pylist()
    }


def test_trials_an_interrupt_stopped_stay_unfinished(tmp_path):
    sink = make_sink(tmp_path)
    statuses = _cleanup_of_an_interrupt(sink, tmp_path)
    assert statuses == {"t_00000": ("done", 3), "t_00001": ("running", 2), "t_00002": ("pending", 0)}
    assert sink.interrupted


def test_trials_the_time_budget_stopped_are_stopped_early(tmp_path):
    from lrtune.engine.budget import TimeBudget

    budget = TimeBudget(0.001)
    budget.stop_all()
    time.sleep(0.01)
    assert budget.stop_all() and budget.spent
    sink = make_sink(tmp_path)
    sink.budget = budget
    statuses = _cleanup_of_an_interrupt(sink, tmp_path)
    assert statuses == {
        "t_00000": ("done", 3),
        "t_00001": ("stopped_early", 2),
        "t_00002": ("stopped_early", 0),
    }
    assert not sink.interrupted


def test_a_trial_stopped_early_before_a_resume_stays_stopped_early(tmp_path):
    first = make_sink(tmp_path)
    trial = make_trial(0)
    first.on_step_begin(0, [trial])
    first.on_trial_result(1, [trial], trial, result(trial, 1, lineage=[]))
    first.on_trial_complete(1, [trial], trial)  # a scheduler's stop: Tune ends it through the callbacks
    trial.set_status(Trial.TERMINATED)
    first.on_experiment_end([trial])
    resumed = make_sink(tmp_path)  # Tune restores it TERMINATED and never calls its hooks again
    resumed.on_step_begin(0, [trial])
    resumed.on_experiment_end([trial])
    assert pq.read_table(tmp_path / "trials.parquet").to_pylist()[0]["status"] == "stopped_early"
    assert not resumed.interrupted
