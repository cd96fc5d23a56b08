"""Search-space distributions and the hyperparameters they may set.

A sweep file writes a hyperparameter as a fixed value or as a one-key
mapping naming its distribution::

    lr: 0.1                              # fixed
    lr: {loguniform: [0.001, 0.3]}       # sampled
    momentum: {grid: [0.5, 0.8, 0.9]}    # every value, crossed with the rest
    epochs_drop: {choice: [5, 10, 20]}   # one value, sampled
    drop: {quniform: [0.25, 0.75, 0.25]}

Each :class:`Dist` checks its own rules and becomes a Ray Tune domain with
:meth:`Dist.to_tune`; :data:`PARAMS` holds each hyperparameter's allowed
range, which every value a distribution can produce must respect.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from lrtune.training.hparams import HPARAMS, NON_NEGATIVE, POSITIVE, Numbers, Range

__all__ = [
    "DISTRIBUTIONS",
    "PARAMS",
    "Dist",
    "parse_dist",
    "SpaceError",
    "KeepInBounds",
    "Range",
    "Numbers",
    "POSITIVE",
    "NON_NEGATIVE",
]


class SpaceError(ValueError):
    """A value in a search space breaks a rule; ``key`` says where."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


#: Every hyperparameter a space may set, from :data:`lrtune.training.hparams.HPARAMS`:
#: a Range for numbers, a tuple of names for categories, ``bool`` for flags.
PARAMS: dict[str, Range | Numbers | tuple[str, ...] | type] = {name: h.rule for name, h in HPARAMS.items()}

#: Numeric hyperparameters that may stay whole numbers as written: lengths
#: in epochs, which only lrtune's schedules read. Every other number is
#: coerced to ``float`` at the edge: YAML reads ``0`` as an int and Keras
#: checks ``isinstance(momentum, float)`` (``SGD(momentum=0)`` raises
#: "`momentum` must be a float between [0, 1]").
WHOLE_NUMBERS = frozenset(name for name, h in HPARAMS.items() if h.kind == "whole")


def check_value(key: str, value: Any) -> Any:
    """``value`` if hyperparameter ``key`` may take it, else a SpaceError."""
    rule = PARAMS[key]
    if isinstance(rule, tuple):
        if value not in rule:
            raise SpaceError(key, f"{value!r} is not one of: {', '.join(rule)}")
        return value
    if isinstance(rule, Numbers):
        if not isinstance(value, (list, tuple)) or not value:
            raise SpaceError(key, f"{value!r} is not {rule}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not rule.item.contains(float(v)):
                raise SpaceError(key, f"{v!r} in {list(value)} is not in {rule.item}")
        return tuple(value)
    if rule is bool:
        if not isinstance(value, bool):
            raise SpaceError(key, f"{value!r} is not true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(key, f"{value!r} is not a number")
    if not rule.contains(float(value)):
        raise SpaceError(key, f"{value!r} is not in {rule}")
    return value if key in WHOLE_NUMBERS else float(value)


@dataclasses.dataclass(frozen=True)
class Dist:
    """One distribution: ``kind`` in :data:`DISTRIBUTIONS` and its arguments."""

    kind: str
    args: tuple[Any, ...]

    def values(self) -> tuple[Any, ...]:
        """The values to check against a range: all options, or the bounds."""
        return self.args[:2] if self.kind in _BOUNDED else self.args

    def is_discrete(self) -> bool:
        return self.kind in ("fixed", "choice", "grid")

    def to_tune(self):
        """This distribution as a Ray Tune search-space domain."""
        from ray import tune

        if self.kind == "fixed":
            return _plain(self.args[0])
        if self.kind == "grid":
            return tune.grid_search([_plain(a) for a in self.args])
        if self.kind == "choice":
            return tune.choice([_plain(a) for a in self.args])
        if self.kind == "randint":
            low, high = self.args
            return tune.randint(low, high + 1)  # both ends included, as written
        return getattr(tune, self.kind)(*self.args)

    def clip(self, value: Any) -> Any:
        """``value`` moved to the nearest value this distribution can produce.

        Ray's PBT perturbs a continuous value by x0.8 or x1.2 and does not
        clip it (ray-project/ray#5035): momentum 0.95 becomes 1.14, which
        Keras refuses. Categories are returned as they are.

        >>> Dist("uniform", (0.5, 0.95)).clip(1.14)
        0.95
        >>> Dist("qloguniform", (0.001, 0.1, 0.001)).clip(0.00042)
        0.001
        >>> Dist("randint", (1, 10)).clip(11.6)
        10
        """
        if self.kind not in _BOUNDED:
            return value
        low, high = self.args[0], self.args[1]
        clipped = min(max(float(value), low), high)
        if self.kind == "randint":
            return int(round(clipped))
        if self.kind.startswith("q"):
            return self.on_grid(clipped)
        return clipped

    def on_grid(self, value: float) -> float:
        """``value`` moved to the nearest multiple of ``q`` inside ``[low, high]``.

        For ``quniform``/``qloguniform`` (both bounds are multiples of ``q``,
        see :func:`parse_dist`): a searcher that suggests floats (Optuna has
        no log scale with a step) rounds through this, so a suggestion is
        never 0 and never outside the bounds.

        >>> Dist("qloguniform", (0.001, 0.1, 0.001)).on_grid(0.0004)
        0.001
        >>> Dist("qloguniform", (0.001, 0.1, 0.001)).on_grid(0.0526)
        0.053
        """
        low, high, q = self.args
        k = min(max(round(value / q), math.ceil(low / q - 1e-9)), math.floor(high / q + 1e-9))
        return min(max(float(round(k * q, 12)), low), high)

    def to_json(self) -> Any:
        return _plain(self.args[0]) if self.kind == "fixed" else {self.kind: [_plain(a) for a in self.args]}


def _plain(value: Any) -> Any:
    """A list for a :class:`Numbers` value (kept as a tuple inside a Dist)."""
    return list(value) if isinstance(value, tuple) else value


_BOUNDED = ("uniform", "loguniform", "randint", "quniform", "qloguniform")

#: Distribution name -> the arguments it takes, for messages.
DISTRIBUTIONS = {
    "choice": "a non-empty list of values, one sampled per trial",
    "grid": "a non-empty list of values, every one tried",
    "uniform": "[low, high]",
    "loguniform": "[low, high], 0 < low",
    "randint": "[low, high], integers, both included",
    "quniform": "[low, high, q]",
    "qloguniform": "[low, high, q], 0 < low",
}


def parse_dist(key: str, raw: Any) -> Dist:
    """A :class:`Dist` for ``key`` from its sweep-file form, checked.

    >>> parse_dist("lr", {"loguniform": [0.001, 0.3]})
    Dist(kind='loguniform', args=(0.001, 0.3))
    >>> parse_dist("drop", {"grid": [0.5, 1.5]})
    Traceback (most recent call last):
    ...
    lrtune.space.SpaceError: drop.grid: 1.5 is not in (0, 1]
    """
    if key not in PARAMS:
        raise SpaceError(key, f"unknown hyperparameter; allowed: {', '.join(PARAMS)}")
    if not isinstance(raw, Mapping):
        if isinstance(raw, list) and not isinstance(PARAMS[key], Numbers):
            raise SpaceError(key, f"a list needs a distribution: {{grid: {raw}}} or {{choice: {raw}}}")
        return Dist("fixed", (check_value(key, raw),))
    if len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
        raise SpaceError(
            key,
            f"a mapping must have exactly one key, a distribution: {', '.join(DISTRIBUTIONS)}; "
            f"got {', '.join(map(str, raw)) or 'none'}",
        )
    kind, args = next(iter(raw.items()))
    where = f"{key}.{kind}"
    if not isinstance(args, list) or not args:
        raise SpaceError(where, f"expected {DISTRIBUTIONS[kind]}, got {args!r}")
    if kind in ("choice", "grid"):
        values = tuple(_checked(key, where, v) for v in args)
        if kind == "grid":
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice is not None:
                raise SpaceError(
                    where,
                    f"{twice!r} is listed twice; each grid value runs once (repeats: N runs it N times)",
                )
        return Dist(kind, values)
    arity = 3 if kind.startswith("q") else 2
    if len(args) != arity or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise SpaceError(where, f"expected {DISTRIBUTIONS[kind]}, got {args!r}")
    low, high = args[0], args[1]
    if not low < high:
        raise SpaceError(where, f"`low < high` must hold, but got low={low}, high={high}")
    if "log" in kind and low <= 0:
        raise SpaceError(where, f"`low > 0` must hold for a log scale, but got low={low}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise SpaceError(where, f"bounds must be integers, got {args!r}")
    if arity == 3 and not args[2] > 0:
        raise SpaceError(where, f"`q > 0` must hold, but got q={args[2]}")
    if not isinstance(PARAMS[key], Range):
        raise SpaceError(where, f"{key} is not numeric: use choice or grid")
    if kind == "randint" and key not in WHOLE_NUMBERS:
        raise SpaceError(
            where, f"{key} takes a float and randint draws integers: use uniform, or quniform [low, high, 1]"
        )
    for bound in (low, high):
        _checked(key, where, bound)
    if arity == 3:
        q = args[2]
        for name, bound in (("low", low), ("high", high)):
            if not math.isclose(bound / q, round(bound / q)):
                raise SpaceError(
                    where,
                    f"`{name}` must be a multiple of q (Ray Tune draws multiples of q between the bounds), "
                    f"but got {name}={bound}, q={q}; e.g. [{math.ceil(low / q) * q:g}, "
                    f"{math.floor(high / q) * q:g}, {q:g}]",
                )
    if key in WHOLE_NUMBERS:
        return Dist(kind, tuple(args))
    return Dist(kind, tuple(float(a) for a in args))


def _checked(key: str, where: str, value: Any) -> Any:
    try:
        return check_value(key, value)
    except SpaceError as e:
        raise SpaceError(where, str(e).split(": ", 1)[1]) from None


class KeepInBounds:
    """Moves perturbed values back into their distributions (:meth:`Dist.clip`).

    PBT multiplies a continuous value by 0.8 or 1.2, so ``momentum: 0.9``
    can become 1.08, which Keras refuses and which lies outside the space
    the sweep file allows (ray-project/ray#5035). Given as Ray Tune PBT's
    ``custom_explore_fn``: called with the whole trial config (values under
    ``config["arm"]``), it returns it with each value clipped.

    >>> KeepInBounds({"momentum": Dist("uniform", (0.5, 0.95))})({"arm": {"momentum": 1.08}})
    {'arm': {'momentum': 0.95}}
    """

    def __init__(self, dists: Mapping[str, Dist]):
        self.dists = dict(dists)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        values = config.get("arm", config)
        for key, dist in self.dists.items():
            if key in values:
                values[key] = dist.clip(values[key])
        return config
