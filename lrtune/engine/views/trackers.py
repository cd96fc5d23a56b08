"""MLflow and W&B runs from the kept rows: one run per trial, its history the kept lineage.

Each tracker gets its work through :class:`Outbox`, a queue drained by a
thread of its own: the sink never waits on a tracker's server. A call
that fails is tried again, waiting ``RETRY_WAITS_S`` in turn; one that
still fails is reported (in the sweep's last lines and in
``<sweep>/trackers.json``), and while a tracker keeps failing each later
call is tried once, so a server that is down costs the sweep at most
``CLOSE_WAIT_S`` at its end. A tracker never fails a trial and never
touches the Parquet rows.

A tracker cannot take values back: when the sink withdraws epochs a run
already shows (a restore, a PBT exploit), the trial's run is replaced by
a new one holding the kept rows (the old one is deleted: MLflow's soft
delete; W&B's offline run folder, or the run through W&B's API online),
so every trial keeps one run whose history equals its rows.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lrtune.engine.views import VIEW_METRICS, RowView
from lrtune.engine.views.tensorboard import trial_hparams

__all__ = ["Outbox", "MlflowRuns", "WandbRuns", "RETRY_WAITS_S", "CLOSE_WAIT_S"]

#: Waits between the tries of one call to a tracker (4 tries in all).
RETRY_WAITS_S = (1.0, 4.0, 15.0)
#: Longest a sweep's end waits for a tracker to send what it holds.
CLOSE_WAIT_S = 60.0

#: MLflow's HTTP settings lrtune sets unless the environment has them: each call fails within seconds.
MLFLOW_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
#: lrtune status -> MLflow run status.
MLFLOW_STATUS = {"done": "FINISHED", "stopped_early": "KILLED", "diverged": "FAILED", "error": "FAILED"}


class Outbox:
    """Calls to one tracker, made in order on a thread of their own, each tried again on failure."""

    def __init__(self, name: str, waits_s: Sequence[float] = RETRY_WAITS_S):
        self.name = name
        self.waits_s = tuple(waits_s)
        self.failures: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._failing = False
        self._thread = threading.Thread(target=self._drain, name=f"lrtune-{name}", daemon=True)
        self._thread.start()

    def send(self, what: str, call: Callable[[], None]) -> None:
        self._queue.put((what, call))

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            what, call = item
            waits = () if self._failing else self.waits_s
            first = None
            for attempt in range(len(waits) + 1):
                try:
                    call()
                except Exception as e:  # noqa: BLE001 - any tracker error is reported, never raised
                    error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    first = first or error
                    if attempt < len(waits):
                        time.sleep(waits[attempt])
                        continue
                    # The first error is the cause; a retry may fail otherwise (W&B: "run ID ... is in use").
                    errors = error if error == first else f"{first}; last: {error}"
                    self.failures.append(f"{self.name}: {what}: {errors} ({attempt + 1} tries)")
                    self._failing = True
                else:
                    self._failing = False
                    break

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> list[str]:
        """Wait at most ``timeout_s`` for the calls queued; return the failures (and what was left unsent)."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        failures = list(self.failures)
        if self._thread.is_alive():
            left = self._queue.qsize()
            failures.append(f"{self.name}: gave up after {timeout_s:g} s with {left} calls unsent")
        return failures


class _TrackerView(RowView):
    """What both trackers share: the kept rows per trial, and when a run must be replaced."""

    name = "tracker"

    def __init__(self, spec, waits_s: Sequence[float] = RETRY_WAITS_S):
        self.sweep = spec.name
        self.epochs = spec.epochs
        self.outbox = Outbox(self.name, waits_s)
        self._rows: dict[str, dict[int, dict[str, Any]]] = {}  # trial -> epoch -> values
        self._params: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _values(row: Mapping[str, Any]) -> dict[str, Any]:
        values = {k: float(row[k]) for k in VIEW_METRICS if row.get(k) is not None}
        wall = row["timestamp"].timestamp() if row.get("timestamp") is not None else time.time()
        return {"values": values, "wall": wall, "trained_by": row.get("trained_by")}

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        if trial_id in self._params:
            return
        params = self._params[trial_id] = trial_hparams(config, self.epochs)
        self.outbox.send(f"start {trial_id}", lambda: self._start(trial_id, params))

    def rows_kept(self, rows: Sequence[Mapping[str, Any]]) -> None:
        by_trial: dict[str, dict[int, dict[str, Any]]] = {}
        for row in rows:
            by_trial.setdefault(row["trial_id"], {})[int(row["epoch"])] = self._values(row)
        for trial_id, new in by_trial.items():
            self._rows.setdefault(trial_id, {}).update(new)
            self.outbox.send(f"rows of {trial_id}", lambda t=trial_id, n=new: self._log(t, n))

    def rows_withdrawn(self, trial_id: str, epochs: Sequence[int]) -> None:
        kept = self._rows.setdefault(trial_id, {})
        if not any(e in kept for e in epochs):
            return  # never shown: nothing to take back
        for epoch in epochs:
            kept.pop(epoch, None)
        snapshot, params = dict(kept), self._params.get(trial_id, {})
        self.outbox.send(f"replace {trial_id}", lambda: self._replace(trial_id, params, snapshot))

    def resync(self, rows: Sequence[Mapping[str, Any]]) -> None:
        by_trial: dict[str, dict[int, dict[str, Any]]] = {}
        for row in rows:
            by_trial.setdefault(row["trial_id"], {})[int(row["epoch"])] = self._values(row)
        for trial_id, kept in by_trial.items():
            self._rows[trial_id] = kept
            self.outbox.send(f"resync {trial_id}", lambda t=trial_id, k=dict(kept): self._resync(t, k))
        # A trial with no row left in Parquet may still show some: an earlier driver withdrew
        # them and died before its run was replaced.
        with_rows = set(by_trial)
        self.outbox.send("resync the runs of trials without rows", lambda: self._resync_rowless(with_rows))

    def trial_ended(self, trial_id: str, status: str) -> None:
        self.outbox.send(f"end {trial_id}", lambda: self._end(trial_id, status))

    def sweep_ended(self, pick: Mapping[str, Any] | None) -> None:
        self.outbox.send("the pick", lambda: self._pick(pick))

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> list[str]:
        return self.outbox.close(timeout_s)

    # --- per tracker, called on the outbox's thread --------------------------
    def _start(self, trial_id: str, params: Mapping[str, Any]) -> None: ...
    def _log(self, trial_id: str, rows: Mapping[int, Mapping[str, Any]]) -> None: ...
    def _replace(
        self, trial_id: str, params: Mapping[str, Any], rows: Mapping[int, Mapping[str, Any]]
    ) -> None: ...
    def _resync(self, trial_id: str, rows: Mapping[int, Mapping[str, Any]]) -> None: ...
    def _resync_rowless(self, with_rows: set[str]) -> None: ...
    def _end(self, trial_id: str, status: str) -> None: ...
    def _pick(self, pick: Mapping[str, Any] | None) -> None: ...


class MlflowRuns(_TrackerView):
    """One MLflow run per trial (tags ``lrtune.sweep``, ``lrtune.trial_id``), in ``experiment``.

    Params: the trial's hyperparameters as it started. Metrics: each
    kept row, step = epoch. The sweep's pick: the experiment's tag
    ``lrtune.pick`` (JSON) and the tag ``lrtune.pick=best`` on its runs.
    """

    name = "mlflow"

    def __init__(self, spec, settings, waits_s: Sequence[float] = RETRY_WAITS_S):
        super().__init__(spec, waits_s)
        # MLflow's own HTTP retries wait up to 2 minutes a call (7 tries, backoff factor 2): the
        # outbox retries instead, so a server that is down costs seconds, not the sweep's end.
        # A user's own settings of these win.
        for name, value in MLFLOW_HTTP.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=settings.tracking_uri)
        self.experiment_name = settings.experiment or spec.name
        self._experiment_id: str | None = None
        self._runs: dict[str, str] = {}  # trial -> run id (outbox thread only)

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(self.experiment_name)
            )
        return self._experiment_id

    def _find(self, trial_id: str) -> str | None:
        if trial_id not in self._runs:
            found = self.client.search_runs(
                [self._experiment()],
                filter_string=f"tags.`lrtune.sweep` = '{self.sweep}' and tags.`lrtune.trial_id` = '{trial_id}'",
                max_results=1,
            )
            if found:
                self._runs[trial_id] = found[0].info.run_id
        return self._runs.get(trial_id)

    def _create(self, trial_id: str, params: Mapping[str, Any]) -> str:
        from mlflow.entities import Param, RunTag

        run = self.client.create_run(
            self._experiment(),
            run_name=trial_id,
            tags={"lrtune.sweep": self.sweep, "lrtune.trial_id": trial_id},
        )
        run_id = self._runs[trial_id] = run.info.run_id
        self.client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("lrtune.status", "running")],
        )
        return run_id

    def _run(self, trial_id: str) -> str:
        return self._find(trial_id) or self._create(trial_id, self._params.get(trial_id, {}))

    def _start(self, trial_id, params):
        if self._find(trial_id) is None:
            self._create(trial_id, params)

    def _log(self, trial_id, rows):
        from mlflow.entities import Metric

        metrics = [
            Metric(key, value, int(row["wall"] * 1000), epoch)
            for epoch, row in sorted(rows.items())
            for key, value in row["values"].items()
        ]
        run_id = self._run(trial_id)
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])

    def _replace(self, trial_id, params, rows):
        old = self._find(trial_id)
        if old is not None:
            self.client.delete_run(old)
            del self._runs[trial_id]
        self._create(trial_id, params)
        self._log(trial_id, rows)

    def _resync(self, trial_id, rows):
        run_id = self._find(trial_id)
        if run_id is None and not rows:
            return
        if run_id is not None and self._history(run_id) == {
            (k, e, v) for e, row in rows.items() for k, v in row["values"].items()
        }:
            return
        params = self._params.get(trial_id) or (
            dict(self.client.get_run(run_id).data.params) if run_id is not None else {}
        )
        self._replace(trial_id, params, rows)

    def _resync_rowless(self, with_rows):
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self._experiment()],
                filter_string=f"tags.`lrtune.sweep` = '{self.sweep}'",
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
        for run in runs:
            trial_id = run.data.tags.get("lrtune.trial_id")
            if trial_id is not None and trial_id not in with_rows:
                self._runs[trial_id] = run.info.run_id
                self._resync(trial_id, {})  # an empty run in place of one that shows rows

    def _history(self, run_id: str) -> set[tuple[str, int, float]]:
        return {
            (key, m.step, m.value)
            for key in VIEW_METRICS
            for m in self.client.get_metric_history(run_id, key)
        }

    def _end(self, trial_id, status):
        run_id = self._run(trial_id)
        self.client.set_tag(run_id, "lrtune.status", status)
        self.client.set_terminated(run_id, status=MLFLOW_STATUS.get(status, "FINISHED"))

    def _pick(self, pick):
        if pick is None:
            return
        self.client.set_experiment_tag(self._experiment(), "lrtune.pick", json.dumps(pick, default=str))
        for trial_id in pick.get("trial_ids", ()):
            self.client.set_tag(self._run(trial_id), "lrtune.pick", "best")


class WandbRuns(_TrackerView):
    """One W&B run per trial (``job_type="trial"``, group = the sweep), and one ``job_type="pick"`` run with the pick.

    A run is open while its trial runs (W&B takes several at once with
    ``reinit="create_new"``); its summary gets ``lrtune_status`` and it
    finishes with exit code 1 when the trial diverged or failed.
    """

    name = "wandb"

    def __init__(self, spec, settings, sweep_dir: str, waits_s: Sequence[float] = RETRY_WAITS_S):
        super().__init__(spec, waits_s)
        import wandb

        self.wandb = wandb
        self.settings = settings
        self.dir = settings.dir or (os.getcwd() if "://" in sweep_dir else sweep_dir)
        self._open: dict[str, Any] = {}  # trial -> run (outbox thread only)
        self._replaced: dict[str, int] = {}
        self._seen: set[str] = set()  # trials this driver made a run for

    def _init(self, trial_id: str, params: Mapping[str, Any], **kw):
        os.makedirs(self.dir, exist_ok=True)
        if trial_id not in self._seen and self.settings.mode == "offline":
            # An earlier (killed) driver's runs of the trial: this driver's run replaces them.
            base = f"{self.sweep}-{trial_id}"
            for run_dir in glob.glob(os.path.join(self.dir, "wandb", f"offline-run-*-{base}*")):
                if run_dir.endswith(base) or run_dir.rsplit(base, 1)[1].lstrip("-").isdigit():
                    shutil.rmtree(run_dir)
        self._seen.add(trial_id)
        k = self._replaced.get(trial_id, 0)
        run = self.wandb.init(
            project=self.settings.project,
            entity=self.settings.entity,
            mode=self.settings.mode,
            dir=self.dir,
            id=f"{self.sweep}-{trial_id}" + (f"-{k}" if k else ""),
            name=trial_id,
            group=self.sweep,
            job_type=kw.pop("job_type", "trial"),
            config=dict(params),
            reinit="create_new",
            settings=self.wandb.Settings(silent=True, console="off", init_timeout=30),
            **kw,
        )
        return run

    def _run(self, trial_id: str):
        run = self._open.get(trial_id)
        if run is None:
            run = self._open[trial_id] = self._init(trial_id, self._params.get(trial_id, {}))
        return run

    def _start(self, trial_id, params):
        self._run(trial_id)

    def _log(self, trial_id, rows):
        run = self._run(trial_id)
        for epoch, row in sorted(rows.items()):
            run.log({**row["values"], "epoch": epoch, "trained_by": row["trained_by"]}, step=epoch)

    def _replace(self, trial_id, params, rows):
        old = self._open.pop(trial_id, None)
        if old is not None:
            self._delete(old)
        self._replaced[trial_id] = self._replaced.get(trial_id, 0) + 1
        self._open[trial_id] = self._init(trial_id, params)
        self._log(trial_id, rows)

    def _delete(self, run) -> None:
        online = self.settings.mode == "online"
        path, run_dir = f"{run.entity}/{run.project}/{run.id}", os.path.dirname(run.dir)
        run.finish()
        if online:
            self.wandb.Api().run(path).delete()
        else:
            shutil.rmtree(run_dir)

    def _resync(self, trial_id, rows):
        # An earlier driver's run cannot be read back offline: the trial gets a new run holding its
        # rows (offline, the earlier driver's run folders of the trial go: see _init).
        self._replaced[trial_id] = int(time.time())
        self._open[trial_id] = self._init(trial_id, self._params.get(trial_id, {}))
        self._log(trial_id, rows)

    def _resync_rowless(self, with_rows):
        # Offline, an earlier driver's run folders of a trial go when this driver first makes a
        # run for it (_init). Online runs of trials without rows are left as they are.
        pass

    def _end(self, trial_id, status):
        run = self._run(trial_id)
        run.summary["lrtune_status"] = status
        run.finish(exit_code=1 if status in ("diverged", "error") else 0)
        del self._open[trial_id]

    def _pick(self, pick):
        for trial_id in list(self._open):  # trials Tune never ended (a stopped sweep)
            self._open.pop(trial_id).finish()
        if pick is None:
            return
        run = self.wandb.init(
            project=self.settings.project,
            entity=self.settings.entity,
            mode=self.settings.mode,
            dir=self.dir,
            name=f"{self.sweep}-pick",
            group=self.sweep,
            job_type="pick",
            config={"pick": json.loads(json.dumps(pick, default=str))},
            reinit="create_new",
            settings=self.wandb.Settings(silent=True, console="off", init_timeout=30),
        )
        run.summary.update({"trial_ids": list(pick.get("trial_ids", ())), "mean": pick.get("mean")})
        run.finish()

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> list[str]:
        # W&B's own service process writes the runs' files and uploads them; teardown waits
        # until it has (a run file read right after finish() once lacked its run record).
        self.outbox.send("W&B's last writes", lambda: self.wandb.teardown())
        return self.outbox.close(timeout_s)
