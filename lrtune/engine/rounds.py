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

from lrtune.results.tables import CONFIG_COLUMNS, config_columns, filesystem
from lrtune.spec import SweepSpec

__all__ = [
    "COMPARABLE",
    "Round",
    "check_compatible",
    "concrete_trials",
    "identity",
    "plan_extension",
    "read_rounds",
    "round_dir",
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


def round_dir(sweep_dir: str, index: int) -> str:
    """``<sweep>/rounds/<index>``: round ``index``'s Tune experiment and trials.parquet."""
    return f"{sweep_dir.rstrip('/')}/rounds/{index}"


def read_rounds(sweep_dir: str) -> list[Round]:
    """The rounds a sweep has, by index (empty when it has none).

    Raises:
        ValueError: a ``round.json`` that is not one lrtune wrote.
    """
    from pyarrow import fs

    fs_, root = filesystem(sweep_dir)
    infos = fs_.get_file_info(fs.FileSelector(f"{root.rstrip('/')}/rounds", allow_not_found=True))
    rounds = []
    for info in infos:
        if info.type != fs.FileType.Directory or not info.base_name.isdigit():
            continue
        path = f"{info.path}/round.json"
        try:
            with fs_.open_input_stream(path) as f:
                raw = json.loads(f.read().decode())
        except FileNotFoundError:
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
            raise ValueError(f"{path}: not a round lrtune wrote ({e!r})") from None
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
    over :func:`lrtune.engine.sweep.param_space` with the sweep's seed, so a
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
    from ray.tune.search.sample import _BackwardsCompatibleNumpyRng
    from ray.tune.search.variant_generator import generate_variants

    from lrtune.engine.sweep import param_space
    from lrtune.training.hparams import resolve
    from lrtune.training.schedules import SPAN_PARAMS
    from lrtune.training.trial import config_seed

    if spec.search == "tpe":
        raise ValueError(
            "search: tpe cannot extend a sweep (TPE suggests as results come); use grid or random"
        )
    rng = _BackwardsCompatibleNumpyRng(spec.seed)
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
    import pyarrow.parquet as pq

    if not rounds:
        return None
    last = rounds[-1]
    fs_, root = filesystem(round_dir(sweep_dir, last.index))
    try:
        statuses = pq.read_table(f"{root}/trials.parquet", filesystem=fs_, columns=["status"])["status"]
    except FileNotFoundError:
        return last
    if len(statuses) < len(last.trials) or any(s in ("pending", "running") for s in statuses.to_pylist()):
        return last
    return None


def base_unfinished(sweep_dir: str) -> bool:
    """Whether the sweep's own trials (round 0) include any still pending or running."""
    import pyarrow.parquet as pq

    from lrtune.results.tables import trials_path

    fs_, root = filesystem(sweep_dir)
    try:
        statuses = pq.read_table(trials_path(root), filesystem=fs_, columns=["status"])["status"]
    except FileNotFoundError:
        return True
    return any(s in ("pending", "running") for s in statuses.to_pylist())


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
    **run: Any,
) -> Extension:
    """Add the trials of ``spec`` that sweep ``name`` lacks, as its next round.

    The sweep must have finished (else ``--resume`` it first); ``spec``
    must train what the sweep trained (:func:`check_compatible`); trials it
    already has are reused (:func:`plan_extension`). With ``resume``,
    finish the round an interrupted ``--extend`` of the same file started.
    Without ``data``, the data the sweep recorded in ``data.json``.
    ``run`` goes to :func:`lrtune.engine.sweep.run_sweep` (``address``,
    ``max_concurrent``, ``quiet``, ``console``).

    Raises:
        lrtune.engine.sweep.SweepError: no such sweep, settings that differ,
            ``search: tpe`` or PBT, an unfinished sweep or round, another
            driver on the sweep.
    """
    from lrtune.engine.lock import SweepLock, SweepLocked
    from lrtune.engine.sweep import SweepError, _acquire, _read_saved_spec, run_sweep, sweep_dir_for
    from lrtune.results.tables import load_trials

    spec = spec.model_copy(update={"name": name})
    sweep_dir = sweep_dir_for(storage, name)
    saved = _read_saved_spec(sweep_dir)
    if saved is None:
        raise SweepError(f"--extend {name}: no sweep {name!r} in {storage} (no {sweep_dir}/sweep.yaml)")
    if spec.search == "tpe" or spec.scheduler.name == "pbt":
        raise SweepError(
            f"--extend {name}: a sweep file with "
            + ("search: tpe" if spec.search == "tpe" else "scheduler: pbt")
            + " cannot extend a sweep (its trials depend on each other's results); use search: grid or "
            "random with fifo, asha, hyperband or median"
        )
    try:
        check_compatible(saved, spec, sweep_dir)
    except ValueError as e:
        raise SweepError(f"--extend {name}: {e}") from None
    data = data or spec.data.path or recorded_data(sweep_dir)
    lock = SweepLock(sweep_dir)
    _acquire(lock, SweepLocked)
    try:
        rounds = read_rounds(sweep_dir)
        pending = open_round(sweep_dir, rounds)
        if pending is not None:
            if not resume:
                raise SweepError(
                    f"--extend {name}: round {pending.index} of the sweep ({pending.kind}) did not finish; "
                    + _resume_hint(pending, name)
                )
            if pending.kind != "extend" or pending.spec != spec.to_yaml_dict():
                raise SweepError(
                    f"--resume: round {pending.index} of {name} ran another sweep file "
                    f"({round_dir(sweep_dir, pending.index)}/round.json); " + _resume_hint(pending, name)
                )
            outcome = run_sweep(
                spec, storage=storage, data=data, resume=True, round=pending, lock=lock, **run
            )
            return Extension(sweep_dir, pending, 0, outcome)
        if resume:
            raise SweepError(
                f"--resume --extend {name}: every round of the sweep finished; nothing to resume"
            )
        if base_unfinished(sweep_dir):
            raise SweepError(
                f"--extend {name}: the sweep has trials that did not finish; finish it first with "
                f"`lrtune sweep <its file> --name {name} --resume`"
            )
        index = rounds[-1].index + 1 if rounds else 1
        planned, reused = plan_extension(spec, load_trials(sweep_dir).to_pylist(), index)
        if planned is None:
            return Extension(sweep_dir, None, reused, None)
        outcome = run_sweep(spec, storage=storage, data=data, round=planned, lock=lock, **run)
        return Extension(sweep_dir, planned, reused, outcome)
    finally:
        lock.release()


def _resume_hint(pending: Round, name: str) -> str:
    if pending.kind == "confirm":
        return f"finish it with `lrtune confirm <storage>/{name}`"
    return f"finish it with `lrtune sweep <the file it ran> --extend {name} --resume`"


def recorded_data(sweep_dir: str) -> str | None:
    """The data source a sweep recorded in ``data.json`` (None if it recorded none)."""
    fs_, root = filesystem(sweep_dir)
    try:
        with fs_.open_input_stream(f"{root}/data.json") as f:
            return json.loads(f.read().decode()).get("source")
    except FileNotFoundError:
        return None
