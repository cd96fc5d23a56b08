"""The sweep file: parsed once, checked completely, frozen.

:func:`load_spec` reads a YAML sweep file (safe YAML: no tags, no code),
applies ``--set`` overrides and returns a :class:`SweepSpec`, or raises a
:class:`SweepFileError` naming the file, the key path and what is allowed,
before anything starts::

    sweeps/x.yaml: space.drop.grid: 1.5 is not in (0, 1]

Everything after this module trusts the spec.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lrtune.space import DISTRIBUTIONS, PARAMS, Dist, Range, SpaceError, parse_dist
from lrtune.training.models import MODELS as MODEL_NAMES
from lrtune.training.optimizers import DEFAULTS as OPTIMIZER_DEFAULTS
from lrtune.training.optimizers import NOT_PERTURBED, schedule_conflict
from lrtune.training.schedules import (
    SCHEDULES,
    SPAN_PARAMS,
    WARMUP_PARAMS,
    fit_to_trial,
    make_schedule,
    required_params,
    schedule_params,
)

__all__ = ["SweepSpec", "SweepFileError", "load_spec", "parse_spec", "apply_overrides", "Arm"]


class SweepFileError(ValueError):
    """A sweep file (or an override of it) is invalid."""


# --- YAML -------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads ``1e-3`` as a number, as YAML 1.2 does.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``), so a
    learning rate written ``1e-3`` would arrive as the string ``'1e-3'``.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """Safe-load YAML ``text``; errors name ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise SweepFileError(f"{source}: not valid YAML: {e}") from None


# --- the spec ---------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0, strict=True)]


# Which keys each data source takes: the sweep file gives exactly one source.
_DATA_KEYS = {
    "cifar10": ("dataset", "path", "classes", "validation", "limit"),
    "cifar100": ("dataset", "path", "labels", "classes", "validation", "limit"),
    "folder": ("folder", "validation_folder", "image_size", "color_mode", "classes", "validation", "limit"),
    "arrays": ("arrays", "classes", "validation", "limit"),
}
_SOURCE_NAMES = {
    "cifar10": "dataset: cifar10",
    "cifar100": "dataset: cifar100",
    "folder": "folder: (an image folder)",
    "arrays": "arrays: (an .npz)",
}


class DataSpec(_Strict):
    """Where the images come from and which part of them to use.

    Exactly one source: ``dataset: cifar10`` (the default) or ``cifar100``
    (``labels: fine | coarse``) read from ``path`` (else Keras's copy);
    ``folder:`` an image folder, one subfolder per class
    (``validation_folder``, ``image_size: [h, w]``, ``color_mode``);
    ``arrays:`` an ``.npz`` of ``x_train``, ``y_train``, ``x_val``, ``y_val``.
    ``validation: test`` (the default) validates on the source's own
    validation images (CIFAR's test batch, the ``validation_folder``, the
    npz's ``x_val``); a fraction holds out training images instead.
    """

    dataset: Literal["cifar10", "cifar100"] | None = None
    path: str | None = None
    labels: Literal["fine", "coarse"] | None = None
    folder: Annotated[str, Field(min_length=1)] | None = None
    validation_folder: Annotated[str, Field(min_length=1)] | None = None
    image_size: list[int] | None = None
    color_mode: Literal["rgb", "grayscale", "rgba"] | None = None
    arrays: Annotated[str, Field(min_length=1)] | None = None
    classes: list[str | int] | None = None
    validation: Literal["test"] | Annotated[float, Field(gt=0, lt=1)] = "test"
    limit: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        given = [key for key in ("dataset", "folder", "arrays") if value.get(key) is not None]
        options = ", ".join(f"`{name}`" for name in _SOURCE_NAMES.values())
        if len(given) > 1:
            raise SpaceError(
                "data", f"names {len(given)} sources ({', '.join(given)}); give exactly one: {options}"
            )
        kind = given[0] if given and given[0] != "dataset" else value.get("dataset") or "cifar10"
        if not isinstance(kind, str) or kind not in _DATA_KEYS:
            return value  # an unknown dataset, or not a name: its Literal says what is allowed
        for key, item in value.items():
            if item is None or key in _DATA_KEYS[kind] or key not in cls.model_fields:
                continue
            takes = [_SOURCE_NAMES[k] for k, keys in _DATA_KEYS.items() if key in keys]
            raise SpaceError(
                f"data.{key}",
                f"applies to {' or '.join(takes)}, not to {_SOURCE_NAMES[kind]}; "
                f"{_SOURCE_NAMES[kind]} takes {', '.join(_DATA_KEYS[kind])}",
            )
        if kind == "folder":
            fraction = value.get("validation") not in (None, "test")
            if fraction and value.get("validation_folder") is not None:
                raise SpaceError(
                    "data.validation",
                    "a folder's validation images come from validation_folder or a held-out fraction, "
                    "not both: remove one",
                )
            if not fraction and value.get("validation_folder") is None:
                raise SpaceError(
                    "data.folder",
                    "needs validation images: add validation_folder: PATH (the same layout, one subfolder "
                    "per class) or validation: FRACTION (e.g. 0.2) of the training images to hold out",
                )
        if kind in ("cifar10", "cifar100"):
            value = {**value, "dataset": kind}  # written out, as sweep.yaml has always recorded it
        return value

    @field_validator("image_size", mode="before")
    @classmethod
    def _image_size(cls, value: Any) -> Any:
        if value is None:
            return value
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
        ):
            raise ValueError(f"must be [height, width], two positive whole numbers of pixels, got {value!r}")
        return list(value)

    @field_validator("classes", mode="after")
    @classmethod
    def _classes(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        from lrtune.data import (
            CIFAR100_COARSE_NAMES,
            CIFAR100_FINE_NAMES,
            CLASS_NAMES,
            DataError,
            class_indices,
        )

        if info.data.get("arrays") is not None:
            if not all(isinstance(name, str) for name in value) or len(set(value)) != len(value):
                raise ValueError(
                    f"for arrays:, classes names labels 0, 1, ... in order: a list of distinct names, got {value!r}"
                )
        elif info.data.get("folder") is not None:
            if len(set(map(str, value))) != len(value):
                raise ValueError(f"lists a class twice: {value!r}; name each class folder once")
        else:
            names = (
                CLASS_NAMES
                if info.data.get("dataset") != "cifar100"
                else CIFAR100_COARSE_NAMES
                if info.data.get("labels") == "coarse"
                else CIFAR100_FINE_NAMES
            )
            try:
                class_indices(value, names)
            except DataError as e:
                raise ValueError(str(e).removeprefix("classes: ")) from None
        if len(value) < 2:
            raise ValueError(
                f"a classifier needs at least 2 classes, got {value!r}; list two or more, "
                "or leave out classes for all of them"
            )
        return value


_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


class UserModel(_Strict):
    """The user's own model: ``model: {import: "package.module:function", args: {...}}``.

    The function is called as ``function(num_classes, input_shape, **args)``
    and returns an uncompiled ``keras.Model`` (:mod:`lrtune.training.models`).
    ``function`` is not written in sweep files: it records which Python
    callable ``run_sweep(spec, model=...)`` was given (``module:qualname``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    import_: Annotated[str | None, Field(alias="import")] = None
    function: str | None = None
    args: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one(self) -> UserModel:
        if (self.import_ is None) == (self.function is None):
            raise ValueError(
                'give the model\'s function as import: "package.module:function" '
                "(a function(num_classes, input_shape, **args) returning an uncompiled keras.Model)"
            )
        if self.import_ is not None and not _TARGET.fullmatch(self.import_):
            raise ValueError(
                f'import: {self.import_!r} is not "package.module:function" (dotted module, a colon, '
                'the function\'s name), e.g. "mynets.convnet:build"'
            )
        return self

    def source(self, function=None):
        """The :class:`lrtune.training.models.ModelSource` to build; ``function``: the callable ``run_sweep`` got."""
        from lrtune.training.models import ModelSource

        args = tuple(sorted(self.args.items()))
        if self.import_ is not None:
            return ModelSource(target=self.import_, args=args)
        return ModelSource(function=function, args=args)


class Resources(_Strict):
    """What one trial reserves. ``gpu: 0.25`` packs four trials on a GPU."""

    cpu: Annotated[float, Field(gt=0)] = 1
    gpu: Annotated[float, Field(ge=0)] = 0


class Asha(_Strict):
    """Asynchronous successive halving (``ray.tune.schedulers.ASHAScheduler``)."""

    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 3
    brackets: PositiveInt = 1


class Sha(_Strict):
    """Synchronous successive halving over configurations (:class:`lrtune.engine.schedulers.SuccessiveHalving`).

    Rungs at ``grace_period * reduction_factor**k`` epochs; at each, the best
    ``max(1, floor(n / reduction_factor))`` of the ``n`` configurations (mean
    over their repeats) go on, the others stop, all repeats together.
    """

    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 3


class HyperBand(_Strict):
    """``ray.tune.schedulers.HyperBandScheduler``."""

    reduction_factor: Annotated[float, Field(gt=1)] = 3


class Median(_Strict):
    """``ray.tune.schedulers.MedianStoppingRule``."""

    grace_period: PositiveInt = 1
    min_samples_required: PositiveInt = 3


class Pbt(_Strict):
    """Population-based training over ``lr`` and ``momentum``.

    ``mutations`` defaults to the space's own distributions of ``lr`` and
    ``momentum`` (the sampled ones); every ``perturbation_interval`` epochs
    the worst ``quantile_fraction`` of trials copy a better trial's
    checkpoint and perturb its values. ``mutations`` is kept as written
    (``sweep.yaml`` saves it so) and checked against the space by
    :class:`SweepSpec`.
    """

    perturbation_interval: PositiveInt = 2
    quantile_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.25
    resample_probability: Annotated[float, Field(ge=0, le=1)] = 0.25
    mutations: dict[str, Any] | None = None


class Scheduler(_Strict):
    """Exactly one of the trial schedulers, or FIFO (no early stopping)."""

    fifo: dict[str, Any] | None = None
    asha: Asha | None = None
    sha: Sha | None = None
    hyperband: HyperBand | None = None
    median: Median | None = None
    pbt: Pbt | None = None

    @model_validator(mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {value: {}}
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ValueError(
                "give exactly one scheduler: fifo, asha, sha, hyperband, median or pbt "
                "(a name, or a mapping of one name to its settings)"
            )
        return {k: ({} if v is None else v) for k, v in value.items()}

    @property
    def name(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def settings(self) -> Any:
        return getattr(self, self.name)


class TensorBoardLogs(_Strict):
    """TensorBoard: lrtune writes its own from the kept rows (:mod:`lrtune.engine.views.tensorboard`).

    ``ray_logs: true`` also keeps Ray Tune's raw per-trial logs, which show
    every run of a trial, the epochs a restore or PBT exploit discarded included.
    """

    ray_logs: StrictBool = False


class MlflowTracker(_Strict):
    """One MLflow run per trial; ``experiment`` defaults to the sweep's name, ``tracking_uri`` to MLflow's own default."""

    tracking_uri: str | None = None
    experiment: str | None = None


class WandbTracker(_Strict):
    """One W&B run per trial in ``project``; ``mode: offline`` writes them under ``dir`` (default: the sweep folder)."""

    project: Annotated[str, Field(min_length=1)]
    entity: str | None = None
    mode: Literal["online", "offline"] = "online"
    dir: str | None = None


#: Tracker -> (the module it needs, the extra that installs it).
TRACKER_PACKAGES = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}


class Trackers(_Strict):
    """Experiment trackers fed from the kept rows (:mod:`lrtune.engine.views.trackers`)."""

    mlflow: MlflowTracker | None = None
    wandb: WandbTracker | None = None

    @field_validator("mlflow", "wandb")
    @classmethod
    def _installed(cls, value: Any, info) -> Any:
        import importlib.util

        module, extra = TRACKER_PACKAGES[info.field_name]
        if value is not None and importlib.util.find_spec(module) is None:
            raise ValueError(
                f"the {module} package is not installed; install it with "
                f"pip install 'lrtune[{extra}]' (or remove trackers.{info.field_name})"
            )
        return value

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in TRACKER_PACKAGES if getattr(self, n) is not None)


class Arm(BaseModel):
    """One sub-space: each hyperparameter as a :class:`~lrtune.space.Dist`."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    params: dict[str, Dist]

    def options(self, key: str) -> tuple[Any, ...]:
        """Every value ``key`` can take in this arm (categories only)."""
        dist = self.params.get(key)
        return dist.values() if dist is not None else ()

    @property
    def optimizers(self) -> tuple[str, ...]:
        return self.options("optimizer") or ("sgd",)

    @property
    def schedules(self) -> tuple[str, ...]:
        return self.options("schedule") or ("constant",)

    @property
    def label(self) -> str:
        """A readable name: ``sgd/step``, ``sgd/warmup+cosine``, ``adam``, or the choices joined."""
        optimizer = "|".join(self.optimizers)
        schedule = "|".join(self.schedules)
        if "warmup_epochs" in self.params:
            schedule = f"warmup+{schedule}"
        return optimizer if schedule == "constant" and optimizer != "sgd" else f"{optimizer}/{schedule}"


#: Ranges narrower than :data:`lrtune.space.PARAMS`'s for one optimizer: what its
#: Keras class checks when it is built (``keras.optimizers.Lion``: "beta_1 must be
#: in the [0, 1] range. Otherwise, the optimizer degenerates to SignSGD", raised for 0).
#: Schedule-free AdamW divides by beta_1 to recover its averaged weights (x = (y - (1 - beta_1) * z) / beta_1).
OPTIMIZER_RANGES: dict[str, dict[str, Range]] = {
    "lion": {"beta_1": Range(0, 1, low_open=True, high_open=True)},
    "schedule_free_adamw": {"beta_1": Range(0, 1, low_open=True, high_open=True)},
}


def parse_arm(raw: Any, where: str) -> Arm:
    """An :class:`Arm` from a mapping; every key checked against its family."""
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError(where, "expected a mapping of hyperparameters, e.g. {optimizer: sgd, lr: 0.1}")
    params = {}
    for key, value in raw.items():
        try:
            params[key] = parse_dist(str(key), value)
        except SpaceError as e:
            raise SpaceError(f"{where}.{e.key}", str(e).split(": ", 1)[1]) from None
    arm = Arm(params=params)
    for key in params:
        if key in ("optimizer", "schedule", *WARMUP_PARAMS):
            continue
        users = [s for s in arm.schedules if key in schedule_params(s)]
        if key == "lr":
            for schedule in arm.schedules:
                if "lr" not in schedule_params(schedule):
                    raise SpaceError(
                        f"{where}.lr",
                        f"schedule {schedule} does not use lr (it takes {', '.join(schedule_params(schedule))}); "
                        "remove lr",
                    )
            continue
        if key in {p for s in SCHEDULES for p in schedule_params(s)}:
            if len(users) != len(arm.schedules):
                takes = [s for s in SCHEDULES if key in schedule_params(s)]
                raise SpaceError(
                    f"{where}.{key}",
                    f"schedule {'|'.join(arm.schedules)} does not use {key} "
                    f"(only {', '.join(takes)} does); put each family in its own arm",
                )
            continue
        for optimizer in arm.optimizers:
            if key not in OPTIMIZER_DEFAULTS[optimizer]:
                takes = [o for o in OPTIMIZER_DEFAULTS if key in OPTIMIZER_DEFAULTS[o]]
                raise SpaceError(
                    f"{where}.{key}",
                    f"optimizer {optimizer} does not use {key} (only {', '.join(takes)} does); "
                    "put each optimizer in its own arm",
                )
    for optimizer in arm.optimizers:
        for schedule in arm.schedules:
            conflict = schedule_conflict(optimizer, schedule)
            if conflict:
                raise SpaceError(f"{where}.schedule", conflict)
        for key, allowed in OPTIMIZER_RANGES.get(optimizer, {}).items():
            bad = [v for v in params[key].values() if not allowed.contains(float(v))] if key in params else []
            if bad:
                raise SpaceError(
                    f"{where}.{key}",
                    f"optimizer {optimizer} needs {key} in {allowed} (Keras refuses {bad[0]:g}); "
                    "put the values it cannot take in another optimizer's arm",
                )
    missing = [
        (s, p)
        for s in arm.schedules
        for p in required_params(s)
        if p != "lr" and p not in SPAN_PARAMS and p not in params  # the trial supplies lr and spans
    ]
    if missing:
        schedule, param = missing[0]
        raise SpaceError(where, f"schedule {schedule} needs {param}")
    return arm


def _check_fixed_schedules(arm: Arm, epochs: int, where: str) -> None:
    """Build each schedule of ``arm`` at every combination of its parameters'
    extreme values, so rules between parameters (``lr_min <= lr``,
    ``max_lr > lr``, ``warmup_epochs < epochs``, one more value than
    boundaries) fail here rather than in the trials that draw them.

    A sampled parameter contributes its bounds (the rules are monotone in
    each parameter), a category or grid every value.
    """
    import itertools

    for schedule in arm.schedules:
        takes = (*schedule_params(schedule), *WARMUP_PARAMS)
        keys = [k for k in arm.params if k in takes]
        corners = [arm.params[k].values() for k in keys]
        if math.prod(len(c) for c in corners) > 4096:
            continue  # too many to try; the trials check their own
        for values in itertools.product(*corners):
            params = dict(zip(keys, values, strict=True))
            if "lr" in takes and "lr" not in params:
                params["lr"] = OPTIMIZER_DEFAULTS[arm.optimizers[0]]["lr"]
            try:
                make_schedule(schedule, **fit_to_trial(schedule, params, epochs))
            except ValueError as e:
                sampled = ", ".join(
                    f"{k}={v:g}"
                    for k, v in params.items()
                    if arm.params.get(k) is not None
                    and arm.params[k].kind != "fixed"
                    and isinstance(v, (int, float))
                )
                at = f" (at {sampled}, values the space can draw)" if sampled else ""
                raise ValueError(f"{where}: {e}{at}") from None


#: What PBT may not perturb: a trained state is built for its optimizer and schedule.
_NOT_PERTURBED = ("optimizer", "schedule")


def _pbt_mutations(spec: SweepSpec) -> dict[str, Dist]:
    """PBT's mutations, checked against every arm: see :meth:`SweepSpec.pbt_mutations`.

    PBT copies a better trial's whole configuration, then perturbs the
    mutated keys: with several arms a member may continue any arm's
    model, so every key it perturbs must be one every arm sets (Ray
    Tune reads the donor's value of it), and ``mutations`` must be given.

    Raises:
        SpaceError: a key that is unknown, not a distribution, out of its
            range, the optimizer or schedule, or not set by an arm; or
            nothing to perturb.
    """
    where = "scheduler.pbt.mutations"
    raw = spec.scheduler.pbt.mutations
    several = len(spec.space) > 1
    if raw is None:
        if several:
            raise SpaceError(
                "scheduler.pbt",
                "with several arms give mutations, the hyperparameters to perturb, each one that every "
                "arm sets (e.g. mutations: {lr: {loguniform: [1.0e-3, 0.3]}}): PBT copies whole "
                "configurations between arms",
            )
        sampled = {
            k: d for k, d in spec.space[0].params.items() if k in ("lr", "momentum") and d.kind != "fixed"
        }
        if not sampled:
            raise SpaceError(
                "scheduler.pbt",
                "nothing to perturb: the space samples neither lr nor momentum and there are no "
                "mutations; sample one (e.g. lr: {loguniform: [1.0e-3, 0.3]}) or give mutations "
                "(to train a fixed schedule, such as one `lrtune best` printed, use scheduler: fifo)",
            )
        return sampled
    if not raw:
        raise SpaceError(
            where,
            "is empty: name at least one hyperparameter to perturb, e.g. {lr: {loguniform: [1.0e-3, 0.3]}}, "
            "or leave mutations out to perturb the space's sampled lr and momentum",
        )
    dists = {}
    for key, value in raw.items():
        key = str(key)
        try:
            dist = parse_dist(key, value)
        except SpaceError as e:
            raise SpaceError(f"{where}.{e.key}", str(e).split(": ", 1)[1]) from None
        if key in _NOT_PERTURBED:
            raise SpaceError(
                f"{where}.{key}",
                f"PBT cannot change the {key} of a trained model (its state is built for it); "
                "perturb numbers such as lr or momentum, and put each optimizer or schedule in its own arm",
            )
        if dist.kind == "fixed":
            raise SpaceError(
                f"{where}.{key}",
                f"{value!r} is a single value, nothing to perturb within; give a distribution: "
                f"{', '.join(f'{{{name}: ...}}' for name in DISTRIBUTIONS)}",
            )
        for i, arm in enumerate(spec.space):
            for optimizer in arm.optimizers:
                reason = NOT_PERTURBED.get(optimizer, {}).get(key)
                if reason:
                    raise SpaceError(
                        f"{where}.{key}",
                        f"PBT cannot change {key} of optimizer {optimizer} during training: {reason}; "
                        "perturb lr instead",
                    )
            if key not in arm.params:
                arm_at = f"space.{i}" if several else "space"
                raise SpaceError(
                    f"{where}.{key}",
                    f"{arm_at} ({arm.label}) does not set {key}; PBT perturbs a value every trial runs "
                    f"with, so each arm must set it: add {key} to {arm_at} or remove it from mutations "
                    f"({arm_at} sets {', '.join(arm.params)})",
                )
        dists[key] = dist
    return dists


class SweepSpec(_Strict):
    """A whole sweep, as written in a sweep file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)]
    data: DataSpec = DataSpec()
    model: str | UserModel = "seed-tiny"
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    metric: Literal["val_accuracy", "val_loss", "accuracy", "loss"] = "val_accuracy"
    mode: Literal["max", "min"] | None = None
    repeats: PositiveInt = 1
    seed: Annotated[int, Field(ge=0, strict=True)] = 0
    space: list[Arm]
    scheduler: Scheduler = Scheduler(fifo={})
    search: Literal["random", "grid", "tpe"] = "random"
    num_samples: PositiveInt = 1
    max_concurrent: PositiveInt | None = None
    time_budget_s: Annotated[float, Field(gt=0)] | None = None
    resources: Resources = Resources()
    max_failures: Annotated[int, Field(ge=0, strict=True)] = 2
    xla: StrictBool = False
    mixed_precision: StrictBool = False
    tensorboard: TensorBoardLogs | None = None
    trackers: Trackers | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> str | UserModel:
        if isinstance(value, Mapping):
            try:
                return UserModel.model_validate(dict(value))
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-after"))
                raise ValueError(
                    (f"{where}: " if where else "") + first["msg"].removeprefix("Value error, ")
                ) from None
        if isinstance(value, UserModel):
            return value
        if not isinstance(value, str):
            raise ValueError(
                f"{value!r} is not a model; give a name ({', '.join(MODEL_NAMES)}) "
                'or your own as {import: "package.module:function", args: {...}}'
            )
        if value not in MODEL_NAMES:
            raise ValueError(
                f"{value!r} is not a model; allowed: {', '.join(MODEL_NAMES)}, "
                'or your own as {import: "package.module:function", args: {...}}'
            )
        return value

    @field_validator("space", mode="before")
    @classmethod
    def _space(cls, value: Any) -> list[Arm]:
        arms = value if isinstance(value, list) else [value]
        if not arms:
            raise ValueError("needs at least one arm")
        return [
            a if isinstance(a, Arm) else parse_arm(a, f"space.{i}" if isinstance(value, list) else "space")
            for i, a in enumerate(arms)
        ]

    @model_validator(mode="after")
    def _rules(self) -> SweepSpec:
        if self.search == "grid":
            for i, arm in enumerate(self.space):
                for key, dist in arm.params.items():
                    if not dist.is_discrete():
                        raise ValueError(
                            f"space.{i}.{key}: search: grid needs fixed, grid or choice values, "
                            f"got {dist.kind}; use search: random"
                        )
        for i, arm in enumerate(self.space):
            _check_fixed_schedules(arm, self.epochs, f"space.{i}" if len(self.space) > 1 else "space")
        if self.scheduler.name == "pbt":
            if self.search == "tpe":
                raise ValueError(
                    "search: tpe cannot run with scheduler pbt (Ray Tune refuses a search algorithm "
                    "beside PopulationBasedTraining, which makes new configurations itself); "
                    "use search: random or grid"
                )
            _pbt_mutations(self)
        return self

    def pbt_mutations(self) -> dict[str, Dist]:
        """What PBT perturbs, key -> :class:`~lrtune.space.Dist`; empty without PBT.

        ``scheduler.pbt.mutations`` when given, else the space's sampled
        (not fixed) ``lr`` and ``momentum``. Validated with the spec, so
        this does not raise on a :class:`SweepSpec`.
        """
        return _pbt_mutations(self) if self.scheduler.name == "pbt" else {}

    @property
    def metric_mode(self) -> str:
        """``mode``, or ``max`` for accuracies and ``min`` for losses."""
        return self.mode or ("min" if self.metric.endswith("loss") else "max")

    def trial_count(self) -> int:
        """Trials this sweep starts: arms x grid points x samples x repeats.

        TPE draws ``num_samples`` configurations over all arms together.
        """
        if self.search == "tpe":
            return self.num_samples * self.repeats
        total = 0
        for arm in self.space:
            grid = math.prod(len(d.args) for d in arm.params.values() if d.kind == "grid")
            if self.search == "grid":
                grid = math.prod(len(d.args) for d in arm.params.values() if d.kind in ("grid", "choice"))
            total += grid
        return total * self.num_samples * self.repeats

    def to_yaml_dict(self) -> dict[str, Any]:
        """The spec as plain data, for saving beside the results."""
        data = self.model_dump(exclude={"space"}, exclude_none=True, by_alias=True)
        data["space"] = [{k: d.to_json() for k, d in arm.params.items()} for arm in self.space]
        return data


# --- loading ------------------------------------------------------------------


def _format_loc(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after[_rules()]",))


def parse_spec(raw: Any, source: str) -> SweepSpec:
    """A :class:`SweepSpec` from parsed YAML; errors name ``source`` and keys."""
    if not isinstance(raw, Mapping):
        raise SweepFileError(
            f"{source}: expected a mapping of settings (name, space, ...), got {type(raw).__name__}"
        )
    try:
        return SweepSpec.model_validate(dict(raw))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = _format_loc(err["loc"])
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, SpaceError):
                lines.append(f"{source}: {cause}")
                continue
            if err["type"] == "extra_forbidden":
                parent = err["loc"][:-1]
                allowed = _allowed_keys(parent)
                msg = f"unknown key; allowed here: {', '.join(allowed)}"
            elif err["type"] == "missing":
                msg = "is required"
            else:
                msg = err["msg"].removeprefix("Value error, ")
                if "input" in err and err["type"] != "value_error" and not isinstance(err["input"], Mapping):
                    msg += f" (got {err['input']!r})"
            lines.append(f"{source}: {loc + ': ' if loc else ''}{msg}")
        raise SweepFileError("\n".join(lines)) from None


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    model: type[BaseModel] = SweepSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            break
        ann = field.annotation
        candidates = [
            a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            break
        model = candidates[0]
    return list(model.model_fields)


def _parse_value(text: str) -> Any:
    return parse_yaml(text, "--set") if text.strip() else ""


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """``raw`` with each ``KEY=VALUE`` override set; dotted keys nest.

    Values are YAML (``3``, ``1e-3``, ``[0.1, 0.01]``, ``{grid: [1, 2]}``).
    A list index selects an arm (``space.0.lr=0.1``). Setting a distribution
    name under a hyperparameter replaces its distribution
    (``space.lr.grid=[0.1,0.01]``).

    >>> apply_overrides({"epochs": 50, "space": {"lr": {"loguniform": [1e-3, 0.3]}}},
    ...                 ["epochs=3", "space.lr.grid=[0.1, 0.01]"], "x.yaml")
    {'epochs': 3, 'space': {'lr': {'grid': [0.1, 0.01]}}}
    """
    data = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SweepFileError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=3")
        value = _parse_value(text)
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            here = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SweepFileError(f"--set {key}: {here} is not an arm index (0..{len(node) - 1})")
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise SweepFileError(f"--set {key}: {'.'.join(parts[:depth])} is not a mapping")
            if part not in node or not isinstance(node[part], (dict, list)):
                if part not in node and depth == 0 and part not in SweepSpec.model_fields:
                    raise SweepFileError(
                        f"--set {key}: {source} has no key {part!r}; allowed: {', '.join(SweepSpec.model_fields)}"
                    )
                node[part] = {}
            node = node[part]
        leaf = parts[-1]
        if isinstance(node, list):
            if not leaf.isdigit() or int(leaf) >= len(node):
                raise SweepFileError(f"--set {key}: {leaf} is not an arm index (0..{len(node) - 1})")
            node[int(leaf)] = value
        elif isinstance(node, dict):
            if leaf in DISTRIBUTIONS and len(parts) >= 2:
                node.clear()
            elif len(parts) == 1 and leaf not in SweepSpec.model_fields:
                raise SweepFileError(
                    f"--set {key}: no such setting; allowed: {', '.join(SweepSpec.model_fields)}"
                )
            node[leaf] = value
        else:
            raise SweepFileError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")
    return data


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read, override and validate the sweep file at ``path``."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SweepFileError(f"{source}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepFileError(f"{source}: cannot read: {e}") from None
    raw = parse_yaml(text, source)
    if overrides:
        if not isinstance(raw, Mapping):
            raise SweepFileError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
        raw = apply_overrides(raw, overrides, source)
    return parse_spec(raw, source)


__all__ += ["DataSpec", "Resources", "Scheduler", "PARAMS", "Trackers", "TensorBoardLogs"]
