"""Rounds: trials added to a sweep after it ran (``lrtune sweep --extend``, ``lrtune confirm``).

Ray Tune cannot change the space of an experiment it restores
(``Tuner.restore``), so lrtune adds trials to a sweep as *rounds*: round
``k`` is a Tune experiment of its own in ``<sweep>/rounds/<k>/``, with the
trial configurations written out one by one in ``round.json``. Its rows go
to the sweep's ``metrics/`` and its trials to ``rounds/<k>/trials.parquet``,
which :func:`lrtune.results.tables.load_trials` reads together with the
sweep's own ``trials.parquet``: ``best``, ``results`` and ``report`` see
every round as one sweep. Tune's trial ids (a random prefix per experiment
and a counter) are checked against the sweep's before a round starts.

A round trains what the sweep trained: the same data (``data.json``),
model, epochs, batch size, objective and precision (:func:`check_compatible`).
Each trial's seed is written into its configuration, so a trial of the
extended space that the sweep already has (same hyperparameters, same seed)
is reused, not run again (:func:`plan_extension`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lrtune.engine.errors import StorageError, SweepError
from lrtune.folder import SweepFolder
from lrtune.results.tables import CONFIG_COLUMNS, config_columns
from lrtune.spec import SweepSpec

__all__ = [
    "COMPARABLE",
    "Round",
    "check_compatible",
    "concrete_trials",
    "identity",
    "plan_extension",
    "read_rounds",
    "run_round",
]

#: Sweep settings a round must share with its sweep: they decide what a row
#: of ``metrics/`` means, so rows trained under others are not comparable.
COMPARABLE = ("model", "epochs", "batch_size", "metric", "mode", "data", "xla", "mixed_precision")


@dataclasses.dataclass(frozen=True)
class Round:
    """Round ``index`` (1, 2, ...) of a sweep: ``kind`` is ``extend`` or ``confirm``.

    ``trials`` holds one trial configuration per trial (the flat
    hyperparameters with ``label``, ``sample``, ``repeat`` and an explicit
    ``seed``), in the order Tune starts them; ``spec`` is the sweep file the
    round ran as (its scheduler, resources and concurrency apply).
    """

    index: int
    kind: str
    spec: dict[str, Any]
    trials: tuple[dict[str, Any], ...]

    def to_json(self) -> str:
        return json.dumps(
            {"index": self.index, "kind": self.kind, "spec": self.spec, "trials": list(self.trials)}, indent=1
        )


def read_rounds(sweep_dir: str) -> list[Round]:
    """The rounds a sweep has, by index (empty when it has none).

    Raises:
        ValueError: a ``round.json`` that is not one lrtune wrote.
    """
    folder = SweepFolder(sweep_dir)
    rounds = []
    for index in folder.round_indices():
        round_folder = folder.round_folder(index)
        raw = round_folder.read_json(round_folder.round_file_path)
        if raw is None:
            continue  # a round whose start was interrupted before it was written
        try:
            rounds.append(
                Round(
                    index=int(raw["index"]),
                    kind=str(raw["kind"]),
                    spec=dict(raw["spec"]),
                    trials=tuple(dict(t) for t in raw["trials"]),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{round_folder.path}/round.json: not a round lrtune wrote ({e!r})") from None
    return sorted(rounds, key=lambda r: r.index)


def check_compatible(saved: Mapping[str, Any], spec: SweepSpec, sweep_dir: str) -> None:
    """Refuse a round whose rows would not be comparable with the sweep's.

    ``saved`` is the sweep's ``sweep.yaml``. Raises ``ValueError`` naming
    every setting of :data:`COMPARABLE` that differs, with both values.
    """
    new = spec.to_yaml_dict()
    differ = [
        f"{key}: {saved.get(key)!r} in the sweep, {new.get(key)!r} now"
        for key in COMPARABLE
        if saved.get(key) != new.get(key)
    ]
    if differ:
        raise ValueError(
            f"{sweep_dir}/sweep.yaml: the trials to add would not be comparable with the sweep's ("
            + "; ".join(differ)
            + "). Keep these settings as the sweep ran them, or start a new sweep with another --name"
        )


def concrete_trials(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every trial configuration ``spec`` runs, resolved as Tune resolves them, seeds written in.

    Grid points and random draws come from Tune's own variant generator
    over :func:`lrtune.engine.translation.param_space` with the sweep's seed, so a
    grid resolves to the same values as in a sweep run; each trial's seed is
    :func:`lrtune.training.trial.config_seed`'s (the seed rule of its sample
    and repeat), and each span its schedule leaves to the trial
    (``decay_epochs``, ``cycle_epochs``) is written in, as the trial
    resolves it (:func:`lrtune.training.hparams.resolve`), so its
    :func:`identity` is that of the rows such a trial writes.

    Raises:
        ValueError: ``search: tpe`` (TPE draws from results as they come,
            not from a list made in advance).
    """
    from ray.tune.search.variant_generator import generate_variants

    from lrtune.engine import tune_internals
    from lrtune.engine.translation import param_space
    from lrtune.training.hparams import resolve
    from lrtune.training.schedules import SPAN_PARAMS
    from lrtune.training.trial import config_seed

    if spec.search == "tpe":
        raise ValueError(
            "search: tpe cannot extend a sweep (TPE suggests as results come); use grid or random"
        )
    rng = tune_internals.numpy_rng(spec.seed)
    trials = []
    for _, resolved in generate_variants(param_space(spec), constant_grid_search=True, random_state=rng):
        arm = dict(resolved["arm"])
        arm["seed"] = config_seed(arm, spec.seed, spec.repeats)
        filled = resolve(arm, spec.epochs).schedule_params
        arm.update({k: filled[k] for k in SPAN_PARAMS if k in filled and arm.get(k) is None})
        trials.append(arm)
    return trials


def identity(columns: Mapping[str, Any], seed: int) -> tuple:
    """What makes two trials the same run: every ``config.<name>`` value and the seed.

    ``columns`` is a ``trials.parquet`` row, or :func:`~lrtune.results.tables.config_columns`
    of a trial configuration (whose spans :func:`concrete_trials` wrote in, as a trial's
    rows have them). Floats compare exactly: values written in a sweep file
    resolve to the same floats every time.
    """
    return (*(_hashable(columns[f"config.{k}"]) for k in CONFIG_COLUMNS), int(seed))


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def plan_extension(
    spec: SweepSpec, existing: Iterable[Mapping[str, Any]], index: int
) -> tuple[Round | None, int]:
    """(the round that adds ``spec``'s new trials, how many of its trials the sweep has already).

    ``existing`` holds the sweep's ``trials.parquet`` rows. A trial counts as
    already run when a trial of the sweep that did not fail has its
    :func:`identity`; a failed one runs again. The round is None when
    nothing is new.
    """
    have = {identity(r, r["seed"]) for r in existing if r["status"] != "error" and r["seed"] is not None}
    trials = concrete_trials(spec)
    new = [t for t in trials if identity(config_columns(t), t["seed"]) not in have]
    reused = len(trials) - len(new)
    if not new:
        return None, reused
    return Round(index=index, kind="extend", spec=spec.to_yaml_dict(), trials=tuple(new)), reused


def confirm_trials(
    configs: Sequence[tuple[Mapping[str, Any], str | None, int]], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """One trial per (configuration, seed): ``configs`` are (hyperparameters, arm label, repeats so far)."""
    trials = []
    for hyper, label, done in configs:
        for i, seed in enumerate(seeds):
            trials.append(
                {**hyper, "label": label or "confirm", "sample": 0, "repeat": done + i, "seed": seed}
            )
    return trials


def open_round(sweep_dir: str, rounds: Sequence[Round]) -> Round | None:
    """The last round if it has not finished (no ``trials.parquet`` yet, or a trial still pending/running)."""
    if not rounds:
        return None
    last = rounds[-1]
    statuses = _statuses(SweepFolder(sweep_dir).round_folder(last.index))
    if (
        statuses is None
        or len(statuses) < len(last.trials)
        or any(s in ("pending", "running") for s in statuses)
    ):
        return last
    return None


def base_unfinished(sweep_dir: str) -> bool:
    """Whether the sweep's own trials (round 0) include any still pending or running."""
    statuses = _statuses(SweepFolder(sweep_dir))
    return statuses is None or any(s in ("pending", "running") for s in statuses)


def _statuses(folder: SweepFolder) -> list[str] | None:
    """The trial statuses in ``folder``'s ``trials.parquet`` (None: none written yet)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(folder.trials_path, filesystem=folder.fs, columns=["status"])[
            "status"
        ].to_pylist()
    except FileNotFoundError:
        return None


def run_round(driver, round: Round, *, resume: bool = False, quiet: bool = False, console=None):
    """Run round ``round`` of ``driver``'s sweep (its own Tune experiment in ``rounds/<k>/``).

    ``resume``: finish a round an interrupted driver left; a round whose
    start was killed before Tune wrote its state starts again from
    ``round.json``. The driver must be started and hold the lock.
    Returns the :class:`lrtune.engine.sweep.SweepOutcome` of the round's trials.

    Raises:
        StorageError: ``round.json`` cannot be written.
        lrtune.engine.sink.SinkError: the results storage failed.
    """
    from ray import tune

    from lrtune.engine.sweep import run_trials
    from lrtune.engine.translation import tune_config

    folder = driver.folder.round_folder(round.index)
    run = dict(round_index=round.index, trials=len(round.trials), quiet=quiet, console=console)
    if resume and tune.Tuner.can_restore(folder.path):
        return run_trials(driver, restore=True, **run)
    space = {"arm": tune.grid_search(list(round.trials)) if len(round.trials) > 1 else round.trials[0]}
    config = tune_config(driver.spec, driver.live_limit, trial_prefix=f"r{round.index}")
    try:
        folder.write_text(folder.round_file_path, round.to_json())
    except OSError as e:
        raise StorageError(f"cannot write to --storage {driver.folder.path}: {e}") from None
    return run_trials(driver, space=space, config=config, **run)


@dataclasses.dataclass(frozen=True)
class Extension:
    """What ``lrtune sweep FILE --extend NAME`` did: the round it ran (None: nothing new) and its outcome."""

    sweep_dir: str
    round: Round | None
    reused: int
    outcome: Any  # lrtune.engine.sweep.SweepOutcome, None when nothing ran


def extend_sweep(
    spec: SweepSpec,
    name: str,
    *,
    storage: str = "./lrtune-results",
    data: str | None = None,
    resume: bool = False,
    address: str | None = None,
    max_concurrent: int | None = None,
    quiet: bool = False,
    console=None,
    model=None,
) -> Extension:
    """Add the trials of ``spec`` that sweep ``name`` lacks, as its next round.

    The sweep must have finished (else ``--resume`` it first); ``spec``
    must train what the sweep trained (:func:`check_compatible`); trials it
    already has are reused (:func:`plan_extension`). With ``resume``,
    finish the round an interrupted ``--extend`` of the same file started.
    Without ``data``, the data the sweep recorded in ``data.json``.
    ``address``, ``max_concurrent``, ``quiet``, ``console``, ``model``: as
    :func:`lrtune.engine.sweep.run_sweep`.

    Raises:
        SweepError: no such sweep, settings that differ, ``search: tpe``
            or PBT, an unfinished sweep or round, another driver on the sweep.
    """
    from lrtune.engine.driver import Driver, with_model_function
    from lrtune.results.tables import load_trials

    spec = with_model_function(spec.model_copy(update={"name": name}), model)
    folder = SweepFolder.at(storage, name)
    data = data or spec.data.path or recorded_data(folder.path)
    driver = Driver(folder, spec, data=data, address=address, max_concurrent=max_concurrent, model=model)
    with driver:
        saved = driver.saved_spec()
        if saved is None:
            raise SweepError(f"--extend {name}: no sweep {name!r} in {storage} (no {folder.path}/sweep.yaml)")
        if spec.search == "tpe" or spec.scheduler.name == "pbt":
            raise SweepError(
                f"--extend {name}: a sweep file with "
                + ("search: tpe" if spec.search == "tpe" else "scheduler: pbt")
                + " cannot extend a sweep (its trials depend on each other's results); use search: grid or "
                "random with fifo, asha, hyperband or median"
            )
        try:
            check_compatible(saved, spec, folder.path)
        except ValueError as e:
            raise SweepError(f"--extend {name}: {e}") from None
        driver.lock()
        rounds = read_rounds(folder.path)
        pending = open_round(folder.path, rounds)
        run = dict(quiet=quiet, console=console)
        if pending is not None:
            if not resume:
                raise SweepError(
                    f"--extend {name}: round {pending.index} of the sweep ({pending.kind}) did not finish; "
                    + _resume_hint(pending, name)
                )
            if pending.kind != "extend" or pending.spec != spec.to_yaml_dict():
                raise SweepError(
                    f"--resume: round {pending.index} of {name} ran another sweep file "
                    f"({folder.round_folder(pending.index).path}/round.json); " + _resume_hint(pending, name)
                )
            driver.start(same_data=True)
            return Extension(folder.path, pending, 0, run_round(driver, pending, resume=True, **run))
        if resume:
            raise SweepError(
                f"--resume --extend {name}: every round of the sweep finished; nothing to resume"
            )
        if base_unfinished(folder.path):
            raise SweepError(
                f"--extend {name}: the sweep has trials that did not finish; finish it first with "
                f"`lrtune sweep <its file> --name {name} --resume`"
            )
        index = rounds[-1].index + 1 if rounds else 1
        planned, reused = plan_extension(spec, load_trials(folder.path).to_pylist(), index)
        if planned is None:
            return Extension(folder.path, None, reused, None)
        driver.start(same_data=True)
        return Extension(folder.path, planned, reused, run_round(driver, planned, **run))


def _resume_hint(pending: Round, name: str) -> str:
    if pending.kind == "confirm":
        return f"finish it with `lrtune confirm <storage>/{name}`"
    return f"finish it with `lrtune sweep <the file it ran> --extend {name} --resume`"


def recorded_data(sweep_dir: str) -> str | None:
    """The data source a sweep recorded in ``data.json`` (None if it recorded none)."""
    record = SweepFolder(sweep_dir).read_data_record()
    return None if record is None else record.get("source")
