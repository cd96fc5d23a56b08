"""The hyperparameters a trial trains with: one table, one resolution.

:data:`HPARAMS` is the one place a hyperparameter's name, valid range,
kind, Parquet column and display live. The search space's checks
(:data:`lrtune.space.PARAMS`), the results' schema
(:data:`lrtune.results.tables.CONFIG_COLUMNS`) and the short description
beside a trial (:data:`lrtune.results.tables.SHOWN`) are derived from it.
What each optimizer defaults to stays in :data:`lrtune.training.optimizers.DEFAULTS`
and what each schedule takes in its factory's signature
(:mod:`lrtune.training.schedules`); every one of those names has a row here.

:func:`resolve` turns a trial config (what a sweep sampled) into a
:class:`ResolvedTrial`: the settings the trial trains with, the optimizer's
defaults and the schedule's spans filled in. The trial builds its schedule
and optimizer from it, and its :meth:`ResolvedTrial.columns` are the
``config.<name>`` values written to the trial's rows.

>>> HPARAMS["momentum"].rule, HPARAMS["momentum"].kind, HPARAMS["momentum"].column
(Range(low=0, high=1, low_open=False, high_open=True), 'number', 'config.momentum')
>>> trial = resolve({"optimizer": "adam", "schedule": "cosine", "lr": 0.01}, epochs=6)
>>> trial.schedule_params, trial.optimizer_settings["beta_2"]
({'lr': 0.01, 'decay_epochs': 6}, 0.999)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

from lrtune.training.optimizers import DEFAULTS as OPTIMIZER_DEFAULTS
from lrtune.training.optimizers import schedule_conflict
from lrtune.training.schedules import (
    ANNEALING,
    CYCLE_MODES,
    DECAY_SHAPES,
    SCHEDULES,
    WARMUP_PARAMS,
    Schedule,
    fit_to_trial,
    make_schedule,
    schedule_params,
)

__all__ = [
    "Range",
    "Numbers",
    "POSITIVE",
    "NON_NEGATIVE",
    "HParam",
    "HPARAMS",
    "TRIAL_KEYS",
    "ResolvedTrial",
    "resolve",
    "columns",
]


@dataclasses.dataclass(frozen=True)
class Range:
    """An allowed interval; ``low_open``/``high_open`` exclude the ends.

    >>> str(Range(0, 1, high_open=True)), Range(0, 1, high_open=True).contains(1.0)
    ('[0, 1)', False)
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return math.isfinite(x) and above and below

    def __str__(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        high = "inf" if math.isinf(self.high) else f"{self.high:g}"
        return f"{left}{self.low:g}, {high}{right}"


@dataclasses.dataclass(frozen=True)
class Numbers:
    """A non-empty list of numbers, each in ``item``: one hyperparameter value.

    Written as a plain list it is a fixed value (``boundaries: [10, 20]``),
    not a distribution; ``{grid: [[10, 20], [5, 15]]}`` tries several.
    """

    item: Range

    def __str__(self) -> str:
        return f"a list of numbers in {self.item}"


POSITIVE = Range(0, math.inf, low_open=True, high_open=True)
NON_NEGATIVE = Range(0, math.inf, high_open=True)

#: What a value is, which fixes its Parquet type (:mod:`lrtune.results.tables`):
#: ``number`` (float64), ``whole`` (a number that may stay an int as written,
#: float64), ``flag`` (bool), ``category`` (string), ``numbers`` (list of float64).
Kind = Literal["number", "whole", "flag", "category", "numbers"]

Rule = Range | Numbers | tuple[str, ...] | type


@dataclasses.dataclass(frozen=True)
class HParam:
    """One hyperparameter: its valid values and how results show it.

    ``rule``: a :class:`Range` for a number, :class:`Numbers` for a list,
    a tuple of names for a category, ``bool`` for a flag. ``whole``: a
    length in epochs, which only lrtune's schedules read, so it may stay an
    int as written (every other number becomes a ``float``: Keras checks
    ``isinstance(momentum, float)``). ``shown``: its place in the short
    description beside a trial (None: not shown).
    """

    name: str
    rule: Rule
    whole: bool = False
    shown: int | None = None

    @property
    def kind(self) -> Kind:
        if isinstance(self.rule, tuple):
            return "category"
        if isinstance(self.rule, Numbers):
            return "numbers"
        if self.rule is bool:
            return "flag"
        return "whole" if self.whole else "number"

    @property
    def column(self) -> str:
        """The Parquet column holding it: ``config.<name>``."""
        return f"config.{self.name}"


def _table(*rows: HParam) -> dict[str, HParam]:
    return {row.name: row for row in rows}


#: Every hyperparameter a trial may set, in the order of the Parquet columns.
HPARAMS: dict[str, HParam] = _table(
    HParam("optimizer", tuple(OPTIMIZER_DEFAULTS)),
    HParam("schedule", tuple(SCHEDULES)),
    HParam("lr", POSITIVE, shown=0),
    HParam("decay", NON_NEGATIVE, shown=4),
    HParam("drop", Range(0, 1, low_open=True), shown=5),
    HParam("epochs_drop", POSITIVE, whole=True, shown=6),
    HParam("k", NON_NEGATIVE, shown=7),
    HParam("momentum", Range(0, 1, high_open=True), shown=2),
    HParam("nesterov", bool),
    HParam("rho", Range(0, 1, low_open=True, high_open=True), shown=8),
    HParam("beta_1", Range(0, 1, high_open=True)),
    HParam("beta_2", Range(0, 1, high_open=True)),
    HParam("epsilon", POSITIVE),
    HParam("boundaries", Numbers(POSITIVE)),
    HParam("values", Numbers(POSITIVE)),
    HParam("lr_min", NON_NEGATIVE, shown=10),
    HParam("decay_epochs", POSITIVE, whole=True),
    HParam("period_epochs", POSITIVE, whole=True, shown=11),
    HParam("period_mult", Range(1, math.inf, high_open=True), shown=12),
    HParam("restart_decay", Range(0, 1, low_open=True)),
    HParam("max_lr", POSITIVE, shown=1),
    HParam("cycle_epochs", POSITIVE, whole=True),
    HParam("pct_start", Range(0, 1, low_open=True, high_open=True)),
    HParam("div_factor", Range(1, math.inf, high_open=True)),
    HParam("final_div_factor", Range(1, math.inf, high_open=True)),
    HParam("anneal", ANNEALING),
    HParam("step_size_epochs", POSITIVE, whole=True, shown=13),
    HParam("cycle_mode", CYCLE_MODES, shown=14),
    HParam("gamma", Range(0, 1, low_open=True)),
    HParam("end_lr", NON_NEGATIVE),
    HParam("power", POSITIVE, shown=15),
    HParam("factor", Range(0, 1, low_open=True, high_open=True), shown=16),
    HParam("patience", NON_NEGATIVE, shown=17),
    HParam("min_lr", NON_NEGATIVE),
    HParam("cooldown", NON_NEGATIVE),
    HParam("warmup_epochs", POSITIVE, whole=True, shown=9),
    HParam("warmup_start", NON_NEGATIVE),
    HParam("weight_decay", NON_NEGATIVE, shown=3),
    HParam("amsgrad", bool),
    HParam("decay_fraction", Range(0, 1, low_open=True), shown=18),
    HParam("decay_shape", DECAY_SHAPES, shown=19),
)

#: Keys of a trial config that are not hyperparameters: which trial it is.
TRIAL_KEYS = frozenset({"seed", "repeat", "label", "sample"})


@dataclasses.dataclass(frozen=True)
class ResolvedTrial:
    """The settings a trial trains with, every default and span filled in.

    ``schedule_params``: the arguments of schedule ``schedule_name``
    (:func:`lrtune.training.schedules.make_schedule`), ``lr`` defaulting to
    the optimizer's, each span the trial fills (``decay_epochs``,
    ``cycle_epochs``) written in, and any warmup. ``optimizer_settings``:
    the optimizer's settings but ``lr`` (the schedule carries it), its
    defaults (:data:`lrtune.training.optimizers.DEFAULTS`) filled in.
    """

    optimizer: str
    schedule_name: str
    schedule_params: Mapping[str, Any]
    optimizer_settings: Mapping[str, Any]
    seed: int = 0

    def schedule(self) -> Schedule:
        """The learning-rate schedule these settings train with."""
        return make_schedule(self.schedule_name, **self.schedule_params)

    def values(self) -> dict[str, Any]:
        """Every hyperparameter that applies, by name (none is None).

        >>> resolve({"schedule": "step", "lr": 0.1, "drop": 0.5, "epochs_drop": 2}).values()
        {'optimizer': 'sgd', 'schedule': 'step', 'lr': 0.1, 'drop': 0.5, 'epochs_drop': 2, \
'momentum': 0.0, 'nesterov': False, 'weight_decay': 0.0}
        """
        return {
            "optimizer": self.optimizer,
            "schedule": self.schedule_name,
            **self.schedule_params,
            **self.optimizer_settings,
        }

    def columns(self) -> dict[str, Any]:
        """``config.<name>`` for every row of :data:`HPARAMS`; None where it does not apply."""
        return columns(self.values())


def columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """``config.<name>`` for every row of :data:`HPARAMS`, from ``values`` by name; None where absent.

    >>> columns({"optimizer": "sgd", "lr": 0.1})["config.lr"], columns({})["config.momentum"]
    (0.1, None)
    """
    return {row.column: values.get(name) for name, row in HPARAMS.items()}


def resolve(config: Mapping[str, Any], epochs: int | None = None) -> ResolvedTrial:
    """The settings a trial with ``config`` trains with over ``epochs`` epochs.

    ``config`` is a flat trial config: ``optimizer`` (default ``sgd``),
    ``schedule`` (default ``constant``), the schedule's parameters, the
    optimizer's settings, and trial keys (``seed``, ``label``, ``sample``,
    ``repeat``: :data:`TRIAL_KEYS`). A None value counts as left out.
    Filled in: ``lr`` with the optimizer's default when the schedule takes
    one; each span the schedule takes and ``config`` leaves out with
    ``epochs`` less any ``warmup_epochs``
    (:func:`lrtune.training.schedules.fit_to_trial`; none with
    ``epochs=None``: a configuration alone, not a trial); every optimizer
    setting left out with its default. This is the one place a schedule
    learns the trial's length. Resolving a resolved trial's
    :meth:`~ResolvedTrial.values` again gives the same trial.

    Raises:
        ValueError: an unknown optimizer or schedule, a key that neither
            the schedule nor the optimizer takes, a schedule the optimizer
            refuses (:func:`lrtune.training.optimizers.schedule_conflict`),
            or a warmup that leaves no epoch for the schedule.

    >>> resolve({"schedule": "one_cycle", "max_lr": 0.1, "warmup_epochs": 2}, epochs=10).schedule_params
    {'max_lr': 0.1, 'warmup_epochs': 2, 'cycle_epochs': 8}
    >>> resolve({"optimizer": "rmsprop", "momentum": 0.9})
    Traceback (most recent call last):
    ...
    ValueError: Optimizer 'rmsprop' takes (rho, epsilon); got unexpected momentum=0.9.
    """
    optimizer = config.get("optimizer") or "sgd"
    if optimizer not in OPTIMIZER_DEFAULTS:
        raise ValueError(
            f"Unknown optimizer {optimizer!r}. Valid optimizers: {', '.join(OPTIMIZER_DEFAULTS)}."
        )
    name = config.get("schedule") or "constant"
    conflict = schedule_conflict(optimizer, name)
    if conflict:
        raise ValueError(conflict)
    takes = (*schedule_params(name), *WARMUP_PARAMS)
    given = {k: v for k, v in config.items() if v is not None and k not in TRIAL_KEYS}
    params = {k: given[k] for k in takes if k in given}
    if "lr" in takes:
        params.setdefault("lr", OPTIMIZER_DEFAULTS[optimizer]["lr"])
    if epochs is not None:
        params = fit_to_trial(name, params, epochs)
    defaults = {k: v for k, v in OPTIMIZER_DEFAULTS[optimizer].items() if k != "lr"}
    rest = {k: v for k, v in given.items() if k not in ("optimizer", "schedule", *takes)}
    unexpected = sorted(set(rest) - set(defaults))
    if unexpected:
        raise ValueError(
            f"Optimizer {optimizer!r} takes ({', '.join(defaults) or 'no settings'}); got unexpected "
            + ", ".join(f"{k}={rest[k]!r}" for k in unexpected)
            + "."
        )
    return ResolvedTrial(
        optimizer=optimizer,
        schedule_name=name,
        schedule_params=params,
        optimizer_settings={**defaults, **rest},
        seed=int(config.get("seed") or 0),
    )
