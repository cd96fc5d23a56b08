"""Run a validated sweep on Ray Tune: :func:`run_sweep`, and the Tune run every command shares.

:func:`run_sweep` checks what a new or resumed sweep needs and hands its
trials to :func:`run_trials`, the one Tune run of lrtune: the trainable
with the dataset in Ray's object store, the Parquet sink, the live view,
state retention and the lock's lease, Tune's ``FailureConfig`` and
checkpoints. A round of a sweep (``--extend``, ``confirm``) is another
caller of :func:`run_trials` (:mod:`lrtune.engine.rounds`). The driver's
session (lock, Ray, data, checks) is :class:`lrtune.engine.driver.Driver`;
the translation spec -> Tune is :mod:`lrtune.engine.translation`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lrtune.engine import tune_internals
from lrtune.engine.driver import Driver, with_model_function
from lrtune.engine.errors import StorageError, SweepError
from lrtune.engine.ray_runtime import TRIAL_SLOT
from lrtune.engine.record import read_record
from lrtune.engine.translation import param_space, tune_config
from lrtune.folder import SweepFolder
from lrtune.spec import SweepSpec

__all__ = ["run_sweep", "run_trials", "trainable_for", "SweepOutcome", "SweepError", "StorageError"]


@dataclass(frozen=True)
class SweepOutcome:
    """What a finished (or stopped) sweep left behind."""

    sweep_dir: str
    counts: Mapping[str, int]  # trial status -> number of trials
    trials: Any  # pyarrow.Table of trials.parquet
    view_failures: tuple[str, ...] = ()  # what TensorBoard or a tracker could not show (trackers.json)
    notes: tuple[str, ...] = ()  # what the scheduler says of its decisions (PBT: exploits made and declined)
    interrupted: bool = False  # Tune's run was interrupted (Ctrl-C): trials are left unfinished for --resume

    @property
    def all_failed(self) -> bool:
        total = sum(self.counts.values())
        return total > 0 and self.counts.get("error", 0) == total


def run_sweep(
    spec: SweepSpec,
    *,
    storage: str = "./lrtune-results",
    data: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    quiet: bool = False,
    console=None,
    model: Callable[..., Any] | None = None,
) -> SweepOutcome:
    """Run ``spec`` to completion (or resume it) and return its outcome.

    The dataset is loaded once here and shared with every trial through
    Ray's object store (``tune.with_parameters``). Everything that can be
    checked is checked before the sweep folder is written: the sweep's
    name, the data, Ray, whether the trials fit on a node, the storage.

    Args:
        spec: the validated sweep.
        storage: where sweep folders go (path or URI); this one is
            ``<storage>/<spec.name>``.
        data: the data's path or URI (default: the file's ``data.path``, else Keras's copy).
        address: a Ray to join; None starts an embedded local Ray.
        resume: finish the sweep a killed driver left.
        max_concurrent: most trials running at once (default: the file's).
        quiet, console: no live view; where it draws.
        model: a Python function ``build(num_classes, input_shape, **args) ->
            keras.Model`` (uncompiled) to train instead of the file's model;
            it is sent to the trials pickled by value (``sweep.yaml`` records
            its name; resume with the same function).

    Raises:
        SweepError: the sweep cannot start (the message says why and what to
            do; a :class:`StorageError` when the storage cannot be read or written).
        lrtune.data.DataError: the data cannot be read.
        lrtune.engine.sink.SinkError: the results storage failed.
    """
    spec = with_model_function(spec, model)
    folder = SweepFolder.at(storage, spec.name)
    driver = Driver(folder, spec, data=data, address=address, max_concurrent=max_concurrent, model=model)
    with driver:
        saved = driver.saved_spec()
        if resume and saved is None:
            raise SweepError(
                f"--resume: no sweep {spec.name!r} in {storage} (no {folder.path}/sweep.yaml); "
                "run it without --resume first"
            )
        if not resume and saved is not None:
            raise SweepError(
                f"sweep {spec.name!r} already exists in {folder.path}: add --resume to finish it, "
                "or give another --name or --storage"
            )
        if resume and saved != spec.to_yaml_dict():
            raise SweepError(
                f"--resume: {folder.path}/sweep.yaml differs from the sweep given now; "
                "resume with the same file and --set values, or start a new --name"
            )
        if resume:
            driver.lock()
            driver.start(same_data=True)
            return run_trials(driver, restore=True, quiet=quiet, console=console)
        driver.check_writable()
        driver.start()
        # Built before sweep.yaml is written: Tune and Optuna check them here.
        space, config = param_space(spec), tune_config(spec, driver.live_limit)
        driver.save_spec()
        return run_trials(driver, space=space, config=config, quiet=quiet, console=console)


def run_trials(
    driver: Driver,
    *,
    space: Mapping[str, Any] | None = None,
    config=None,
    restore: bool = False,
    round_index: int | None = None,
    trials: int | None = None,
    quiet: bool = False,
    console=None,
) -> SweepOutcome:
    """One Tune run of ``driver``'s sweep: a new experiment (``space``, ``config``) or a restored one.

    The experiment is the sweep folder itself, or round ``round_index``'s
    folder (:mod:`lrtune.engine.rounds`), whose rows join the sweep's
    ``metrics/`` and whose trials go to the round's ``trials.parquet``.
    ``trials``: how many trials the run has, for the live view (None: the
    sweep's). The driver must be started and hold the folder's lock.

    Raises:
        lrtune.engine.sink.SinkError: the results storage failed.
    """
    from ray import tune

    from lrtune.engine.budget import TimeBudget
    from lrtune.engine.housekeeping import LeaseRenewal, StateRetention
    from lrtune.engine.progress import LiveView
    from lrtune.engine.sink import ParquetSink
    from lrtune.engine.views import views_for
    from lrtune.training.trial import TrainSettings, TrialStorage

    spec, folder = driver.spec, driver.folder
    experiment = folder if round_index is None else folder.round_folder(round_index)
    settings = TrainSettings(
        model=driver.model,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        threads=max(1, int(spec.resources.cpu)),
        xla=spec.xla,
        mixed_precision=spec.mixed_precision,
        gpu=spec.resources.gpu,
        seed=spec.seed,
        metric=spec.metric,
        mode=spec.metric_mode,
        repeats=spec.repeats,
    )
    trial_storage = TrialStorage(folder.path, finished=_finished_trials(folder.path) if restore else {})
    trainable = trainable_for(
        driver.dataset,
        settings,
        trial_storage,
        cpu=spec.resources.cpu,
        gpu=spec.resources.gpu,
        slot=TRIAL_SLOT in driver.trial_resources(),
    )
    views = views_for(spec, folder.path, spec.epochs)
    if restore:
        _resync(views, folder.path)
    budget = TimeBudget(spec.time_budget_s) if spec.time_budget_s is not None else None
    sink = ParquetSink(
        folder.path,
        budget=budget,
        sweep=spec.name,
        metric=spec.metric,
        mode=spec.metric_mode,
        epochs=spec.epochs,
        round_index=round_index,
        views=views,
    )
    view = LiveView(spec, folder.path, sink=sink, quiet=quiet, console=console, trials=trials)
    retention = StateRetention(folder.path, pin_clones=spec.scheduler.name == "pbt")
    callbacks = [sink, retention, LeaseRenewal(driver.lease), view, *_ray_loggers(spec)]
    # Tune adds its CSV, JSON and TensorBoard loggers unless told not to: lrtune names
    # the ones it keeps (_ray_loggers); Ray's raw TensorBoard logs only on request.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Tune's checkpoints are pointers of a few bytes (lrtune.training.checkpoints):
    # keep every one, so a lagging experiment snapshot never names a
    # deleted one, and store no metrics with them, so snapshots stay small.
    os.environ["TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE"] = "1"
    if restore:
        tuner = tune.Tuner.restore(
            experiment.path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
        # Tune restores the callbacks pickled with the first run; this run's
        # sink and view (fresh state, this run's --quiet) replace them.
        tune_internals.replace_callbacks(tuner, callbacks)
        tune_internals.replace_stopper(tuner, budget)
        # And the scheduler as it was built, empty: each of lrtune's takes up its
        # decisions again from the rows, trial statuses and exploits (lrtune.engine.record).
        scheduler = tune_internals.restored_scheduler(tuner)
        if hasattr(scheduler, "restore_decisions"):
            with_states = getattr(scheduler, "reads_state_histories", False)
            scheduler.restore_decisions(read_record(folder.path, spec.metric, with_states=with_states))
    else:
        scheduler = config.scheduler if config is not None else None
        tuner = tune.Tuner(
            trainable,
            param_space=dict(space or {}),
            tune_config=config,
            run_config=tune.RunConfig(
                name=experiment.name,
                storage_path=experiment.storage,
                callbacks=callbacks,
                stop=budget,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            ),
        )
    try:
        with view:
            driver.fit(tuner, quiet=quiet)
    finally:
        failures = _close_views(views, sink, folder)
    table = sink.trials_table(view.trials)
    counts: dict[str, int] = {}
    for status in table.column("status").to_pylist():
        counts[status] = counts.get(status, 0) + 1
    notes = (scheduler.summary(),) if hasattr(scheduler, "summary") else ()
    return SweepOutcome(
        sweep_dir=folder.path,
        counts=counts,
        trials=table,
        view_failures=tuple(failures),
        notes=notes,
        interrupted=sink.interrupted,
    )


def _ray_loggers(spec: SweepSpec) -> list:
    """Tune's CSV and JSON loggers (its experiment analysis reads them), and its TensorBoard one if the file asks."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    keep_tensorboard = spec.tensorboard is not None and spec.tensorboard.ray_logs
    return [CSVLoggerCallback(), JsonLoggerCallback(), *([TBXLoggerCallback()] if keep_tensorboard else [])]


def _resync(views, sweep_dir: str) -> None:
    """A resumed sweep: every view shows exactly the rows Parquet holds (a killed driver may have died between the writes)."""
    from lrtune.results.tables import load

    try:
        rows = load(sweep_dir).to_pylist()
    except FileNotFoundError:
        return
    for view in views:
        view.resync(rows)


def _pick(sweep_dir: str) -> dict[str, Any] | None:
    """What `lrtune best` picks, for the trackers; None when nothing can be chosen yet."""
    from lrtune.results.choice import choose

    try:
        choice = choose(sweep_dir)
    except (FileNotFoundError, ValueError):
        return None
    best = choice.best
    return {
        "metric": choice.metric,
        "mode": choice.mode,
        "config": best.config,
        "mean": best.mean,
        "n": best.n,
        "trial_ids": list(best.trial_ids),
        "within_noise": len(choice.within_noise),
    }


def _close_views(views, sink, folder: SweepFolder) -> list[str]:
    """Tell the views the pick, wait for them (bounded), and write what failed to ``trackers.json``."""
    import json
    import time

    from lrtune.engine.views.trackers import CLOSE_WAIT_S

    pick = _pick(folder.path) if views else None
    failures = list(sink.view_failures)
    for view in views:  # the pick is queued on every view before any is waited for
        try:
            view.sweep_ended(pick)
        except Exception as e:  # noqa: BLE001 - a view never fails the sweep; it is reported
            failures.append(f"{type(view).__name__}: {type(e).__name__}: {e}")
    deadline = time.monotonic() + CLOSE_WAIT_S  # one wait for all of them
    for view in views:
        try:
            failures += view.close(max(0.0, deadline - time.monotonic()))
        except Exception as e:  # noqa: BLE001
            failures.append(f"{type(view).__name__}: {type(e).__name__}: {e}")
    if failures or folder.exists(folder.trackers_path):
        folder.write_text(folder.trackers_path, json.dumps({"failures": failures}, indent=1))
    return failures


def trainable_for(dataset, settings, storage, *, cpu: float, gpu: float, slot: bool = False):
    """The Tune trainable: the dataset goes into the object store once, here.

    ``slot``: each trial also holds one :data:`~lrtune.engine.ray_runtime.TRIAL_SLOT` while it runs.
    """
    from ray import tune

    from lrtune.training.trial import tune_trainable

    return tune.with_resources(
        tune.with_parameters(tune_trainable, data=dataset, settings=settings, storage=storage),
        {"cpu": cpu, "gpu": gpu, **({TRIAL_SLOT: 1} if slot else {})},
    )


def _finished_trials(sweep_dir: str) -> dict[str, dict[str, Any]]:
    """Trials that trials.parquet records as over (done, stopped early, diverged), each with its last row."""
    from lrtune.results.tables import load, load_trials

    try:
        trials = load_trials(sweep_dir)
        metrics = load(sweep_dir)
    except FileNotFoundError:
        return {}
    over = {
        r["trial_id"]: r["epochs_run"]
        for r in trials.select(["trial_id", "status", "epochs_run"]).to_pylist()
        if r["status"] in ("done", "stopped_early", "diverged")
    }
    keep = ["epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "status"]
    last = {}
    for row in metrics.select(["trial_id", *keep]).to_pylist():
        if over.get(row["trial_id"]) == row["epoch"]:
            last[row.pop("trial_id")] = row
    return last
