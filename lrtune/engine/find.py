"""Run the learning-rate range test for every arm of a sweep file on Ray Tune.

Each arm's optimizer configuration (the optimizer and its fixed settings;
a ``grid``/``choice`` of settings gives one configuration per value) runs
once per repeat as a Tune trial of
:func:`lrtune.training.lr_range.tune_range_trainable`. Arms that differ only
in their schedule share a configuration: schedules do not apply during
the test. The trials' rows stream to ``<storage>/<name>/lr_range/`` through
:class:`RangeSink`, a Tune callback on the driver that writes atomic part
files (:class:`~lrtune.engine.parquet_parts.PartFiles`) every
``flush_seconds`` and compacts them at the end, so a reader never sees half
a file. Ray start-up, the data, the placement and storage checks, the
folder lock and ``max_concurrent`` are the driver's, as for a sweep
(:class:`lrtune.engine.driver.Driver`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from ray.tune import Callback

from lrtune.engine.errors import Interrupted, StorageError, SweepError
from lrtune.engine.parquet_parts import PartFiles
from lrtune.folder import SweepFolder
from lrtune.results.lr_range import LR_RANGE_SCHEMA, SETTING_COLUMNS
from lrtune.spec import SweepSpec

__all__ = ["RangeArm", "FindOutcome", "RangeSink", "range_arms", "run_find"]


@dataclass(frozen=True)
class RangeArm:
    """One optimizer configuration to test, and the sweep file's arms (indices) it serves."""

    optimizer: str
    settings: tuple[tuple[str, Any], ...]
    arms: tuple[int, ...]

    @property
    def label(self) -> str:
        """``sgd momentum=0.5``, ``adam``."""
        return " ".join(
            [
                self.optimizer,
                *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.settings),
            ]
        )

    def config(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, **dict(self.settings), "label": self.label}


def range_arms(spec: SweepSpec, source: str = "the sweep file") -> list[RangeArm]:
    """The optimizer configurations of ``spec``'s arms, each once, in the order they first appear.

    An arm whose schedule takes no ``lr`` (``piecewise``, ``one_cycle``)
    is left out: the test's range would not go to ``lr``. So is
    ``schedule_free_adamw``: the test reads the training loss at ``y =
    0.1 * z + 0.9 * x`` (beta_1 0.9), and ``x`` averages every step alike
    (1/t), so the loss answers late and damped to a rising rate; no
    published range-test rule exists for it. Muon is tested like any
    optimizer (its Muon and AdamW parts share the rate).

    Raises:
        SweepError: an optimizer setting is sampled from a continuous
            distribution (the test needs fixed values; ``grid``/``choice``
            expand), or no arm takes ``lr``.
    """
    import itertools

    from lrtune.training.optimizers import DEFAULTS
    from lrtune.training.schedules import schedule_params

    found: dict[tuple, list[int]] = {}
    for index, arm in enumerate(spec.space):
        if any("lr" not in schedule_params(s) for s in arm.schedules):
            continue
        for optimizer in arm.optimizers:
            if optimizer in NOT_RANGE_TESTED:
                continue
            keys = [k for k in arm.params if k in DEFAULTS[optimizer] and k != "lr"]
            for key in keys:
                dist = arm.params[key]
                if not dist.is_discrete():
                    raise SweepError(
                        f"{source}: space.{index}.{key}: the range test needs fixed values of the optimizer's "
                        f"settings, got {{{dist.kind}: {list(dist.args)}}}; fix it with "
                        f"--set space.{index}.{key}=VALUE or list values with {{grid: [...]}}"
                    )
            for values in itertools.product(*(arm.params[k].values() for k in keys)):
                settings = tuple(
                    (k, float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                    for k, v in zip(keys, values, strict=True)
                )
                found.setdefault((optimizer, settings), []).append(index)
    if not found:
        raise SweepError(
            f"{source}: no arm takes lr (piecewise and one_cycle set their own rates) on an optimizer the "
            "range test suits (schedule_free_adamw's training loss, at its interpolation y, answers too "
            "late to a rising rate); nothing to test"
        )
    return [
        RangeArm(optimizer, settings, tuple(dict.fromkeys(arms)))
        for (optimizer, settings), arms in found.items()
    ]


#: Optimizers the range test leaves out (see :func:`range_arms`).
NOT_RANGE_TESTED = ("schedule_free_adamw",)


class RangeSink(Callback):
    """Write each range-test trial's rows to ``<sweep_dir>/lr_range/`` (one row per (trial, ramp length, step)).

    A row whose (trial, length, step) was written before is dropped, so a result
    delivered twice lands once. Rows wait in memory at most
    ``flush_seconds``; a finished trial's rows are written at once.

    Raises:
        SweepError: (from any hook) the storage cannot be written; the message names the path.
    """

    def __init__(self, sweep_dir: str, *, name: str, flush_seconds: float = 2.0):
        # A key per row: (trial, ramp length, step).
        self.sweep_dir = sweep_dir.rstrip("/")
        self.name = name
        self.flush_seconds = flush_seconds
        folder = SweepFolder(self.sweep_dir)
        session = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._parts = PartFiles(
            folder.fs, folder.lr_range_path, LR_RANGE_SCHEMA, session, self._storage_error
        )
        self._fs, self._root = folder.fs, folder.lr_range_path
        self._seen: set[tuple[str, int, int]] = set()
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self.errors: dict[str, str] = {}
        self.ended: set[str] = set()  # trials Tune ended (complete or error); Ctrl-C ends none
        self.trials: list[Any] = []

    def _storage_error(self, path: str, error: Exception) -> None:
        raise StorageError(f"cannot write the range test's results to {path}: {error}")

    def setup(self, **info):
        try:
            self._fs.create_dir(self._root, recursive=True)
        except OSError as e:
            self._storage_error(self._root, e)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.add(trial.trial_id, trial.config, result)
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.add(trial.trial_id)
        self.flush()

    def on_trial_error(self, iteration, trials, trial, **info):
        from lrtune.engine.sink import trial_error_message

        self.ended.add(trial.trial_id)
        self.errors[trial.trial_id] = trial_error_message(trial) or "error (no trace recorded)"
        self.flush()

    def on_experiment_end(self, trials, **info):
        self.trials = list(trials)
        self.flush()
        self._compact()

    @property
    def unfinished(self) -> int:
        """Range tests the run left unfinished: Tune's interrupt (Ctrl-C) stops them without ending them."""
        return sum(t.trial_id not in self.ended for t in self.trials)

    def add(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Queue the rows of one report (``result["rows"]``) of trial ``trial_id``."""
        arm = config.get("arm", {})
        settings = {f"config.{k}": arm.get(k) for k in SETTING_COLUMNS}
        for row in result.get("rows", ()):
            key = (trial_id, int(row.get("length", 0)), int(row["step"]))
            if key in self._seen:
                continue
            self._seen.add(key)
            self._buffer.append(
                {
                    "sweep": self.name,
                    "trial_id": trial_id,
                    "length": int(row.get("length", 0)),
                    "step": int(row["step"]),
                    "lr": float(row["lr"]),
                    "loss": float(row["loss"]),
                    "smoothed_loss": float(row["smoothed_loss"]),
                    "status": row["status"],
                    "arm": arm.get("label"),
                    "optimizer": arm.get("optimizer"),
                    "repeat": int(config.get("repeat", 0)),
                    "seed": result.get("seed"),
                    "timestamp": dt.datetime.fromtimestamp(row["timestamp"], dt.timezone.utc),
                    "node": result.get("node"),
                    **settings,
                }
            )

    def flush(self) -> None:
        """Write the queued rows as one new part file."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        table = pa.Table.from_pylist(self._buffer, schema=LR_RANGE_SCHEMA)
        self._buffer = []
        self._parts.add(table)

    def _compact(self) -> None:
        names = self._parts.names()
        if len(names) < 2:
            return
        table = pa.concat_tables([self._parts.read(n) for n in names])
        table = table.sort_by([("trial_id", "ascending"), ("length", "ascending"), ("step", "ascending")])
        self._parts.add(table, replaces=names, kind="compacted")


@dataclass(frozen=True)
class FindOutcome:
    """What ``lrtune find`` left behind and suggests."""

    sweep_dir: str
    arms: Sequence[Any]  # lrtune.results.lr_range.ArmSuggestions, one per tested configuration
    fragment: str
    errors: Mapping[str, str]
    html: str | None
    png: str | None
    seconds: float
    ramps: tuple[int, ...] = ()  # the ramp lengths a test could run (RangeSettings.ramps)
    max_steps_why: str = ""  # where the longest came from


def run_find(
    spec: SweepSpec,
    *,
    storage: str = "./lrtune-results",
    data: str | None = None,
    name: str | None = None,
    steps: int = 100,
    max_steps: int | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    repeats: int | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    source: str = "the sweep file",
    model=None,
) -> FindOutcome:
    """Run the range test for every arm of ``spec`` and return the suggestions.

    Args:
        spec: the validated sweep; its model, batch size, data, seed and
            resources are the test's.
        name: the results folder ``<storage>/<name>``; default ``<spec.name>-lr-range``.
        steps, min_lr, max_lr: the first ramp (:func:`lrtune.training.lr_range.range_schedule`).
        max_steps: the longest ramp: a test whose curve cannot be read runs again
            twice as long, up to this (:func:`lrtune.training.lr_range.run_range_test`).
            Default: as many steps as one trial of the sweep trains,
            ``epochs * ceil(training images / batch_size)``, and at least ``steps``.
        repeats: trials per configuration, seeds ``spec.seed + r``; default ``spec.repeats``.
        address, max_concurrent: as :func:`lrtune.engine.sweep.run_sweep` (the
            same Ray, the same trial slots: ``max_concurrent`` range tests run at once).
        model: a Python function that builds the model, as for :func:`lrtune.engine.sweep.run_sweep`.

    Raises:
        SweepError: bad arguments, an existing folder of that name, a
            continuous optimizer setting, trials that fit on no node (a
            :class:`~lrtune.engine.sweep.StorageError` when the storage fails;
            :class:`~lrtune.engine.errors.Interrupted` after Ctrl-C).
        lrtune.data.DataError: the data cannot be read.
    """
    from ray import tune

    from lrtune.engine.driver import Driver, with_model_function
    from lrtune.results.lr_range import (
        last_ramps,
        load_lr_range,
        space_fragment,
        suggest_arms,
        write_lr_range_report,
    )
    from lrtune.spec import Scheduler
    from lrtune.training.lr_range import RangeSettings, range_schedule, tune_range_trainable

    started_at = time.monotonic()
    try:
        range_schedule(min_lr, max_lr, steps)
    except ValueError as e:
        raise SweepError(f"--min-lr/--max-lr/--steps: {e}") from None
    if max_steps is not None and max_steps < steps:
        raise SweepError(f"--max-steps must be >= --steps ({steps}), got {max_steps}")
    repeats = spec.repeats if repeats is None else repeats
    if repeats < 1:
        raise SweepError(f"--repeats must be >= 1, got {repeats}")
    name = name or f"{spec.name}-lr-range"
    arms = range_arms(spec, source)
    folder = SweepFolder.at(storage, name)
    sweep_dir = folder.path
    if folder.exists(folder.find_path):
        raise SweepError(
            f"a range test {name!r} already exists in {sweep_dir}: give another --name or --storage"
        )
    # The range tests run one after another as they come: no scheduler pauses them.
    spec = with_model_function(spec, model)
    run_spec = spec.model_copy(update={"scheduler": Scheduler(fifo={}), "search": "grid"})
    driver = Driver(folder, run_spec, data=data, address=address, max_concurrent=max_concurrent, model=model)
    with driver:
        driver.check_writable()
        driver.start()
        driver.lock()
        per_epoch = math.ceil(len(driver.dataset.x_train) / spec.batch_size)
        if max_steps is None:
            max_steps = max(steps, spec.epochs * per_epoch)
            why = f"a trial of the sweep: {spec.epochs} epochs of {per_epoch} steps"
        else:
            why = f"--max-steps; a trial of the sweep trains {spec.epochs * per_epoch}"
        settings = RangeSettings(
            model=driver.model,
            batch_size=spec.batch_size,
            steps=steps,
            max_steps=max_steps,
            min_lr=min_lr,
            max_lr=max_lr,
            threads=max(1, int(spec.resources.cpu)),
            xla=spec.xla,
            seed=spec.seed,
        )
        record = {
            "sweep": spec.to_yaml_dict(),
            "source": source,
            "steps": steps,
            "max_steps": max_steps,
            "ramps": settings.ramps(),
            "min_lr": min_lr,
            "max_lr": max_lr,
            "repeats": repeats,
            "arms": [{"label": a.label, "config": a.config(), "serves": list(a.arms)} for a in arms],
        }
        try:
            folder.write_text(folder.find_path, json.dumps(record, indent=2))
        except OSError as e:
            raise StorageError(f"cannot write to --storage {storage}: {e}") from None
        sink = RangeSink(sweep_dir, name=name)
        trainable = tune.with_resources(
            tune.with_parameters(tune_range_trainable, data=driver.dataset, settings=settings),
            driver.trial_resources(),
        )
        space = {
            "arm": tune.grid_search([a.config() for a in arms]) if len(arms) > 1 else arms[0].config(),
            "repeat": tune.grid_search(list(range(repeats))) if repeats > 1 else 0,
        }
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=driver.live_limit, reuse_actors=True,
                trial_dirname_creator=lambda trial: f"{trial.trial_id}",
            ),
            run_config=tune.RunConfig(
                name=folder.name, storage_path=folder.storage, callbacks=[sink], verbose=0,
                # A failed test is recorded, not retried: a rerun would start its curve again.
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )  # fmt: skip
        grid = driver.fit(tuner, quiet=True)
        if sink.unfinished:
            raise Interrupted(
                f"interrupted: {sink.unfinished} of {len(sink.trials)} range tests did not finish, and a "
                f"curve cut short is not read for a range: nothing is suggested. Their rows are in "
                f"{sweep_dir}/lr_range/; run the test again with another --name, or remove {sweep_dir} first"
            )
        errors = dict(sink.errors)
        for (
            result
        ) in grid:  # also trials that failed before Tune called the sink (e.g. a refused worker reuse)
            if result.error is not None:
                trial_id = os.path.basename(str(result.path).rstrip("/"))
                errors.setdefault(trial_id, (str(result.error).strip().splitlines() or ["error"])[-1][:300])
    try:
        table = load_lr_range(sweep_dir)
    except FileNotFoundError:
        table = LR_RANGE_SCHEMA.empty_table()
    found = suggest_arms(table)
    table = last_ramps(table)
    by_label = {a.arm: a for a in found}
    ranges: dict[int, tuple[float, float]] = {}
    for arm in arms:
        if arm.label not in by_label or by_label[arm.label].flat:
            continue
        low, high = by_label[arm.label].low, by_label[arm.label].high
        for index in arm.arms:
            lo, hi = ranges.get(index, (low, high))
            ranges[index] = (min(lo, low), max(hi, high))
    fragment = space_fragment(record["sweep"]["space"], ranges)
    html = png = None
    if found and "://" not in sweep_dir:
        files = write_lr_range_report(sweep_dir, found, fragment, table, title=name)
        html, png = files.html, files.png
    folder.write_text(folder.suggestions_path, fragment)
    return FindOutcome(
        sweep_dir=sweep_dir,
        arms=found,
        fragment=fragment,
        errors=errors,
        html=html,
        png=png,
        seconds=time.monotonic() - started_at,
        ramps=tuple(settings.ramps()),
        max_steps_why=why,
    )
