"""The models a sweep can train: lrtune's two convnets by name, or the user's own.

Built-in nets take uint8 images (N, H, W, C), 32x32 RGB for CIFAR, and
scale them to [0, 1] in their first layer: the dataset then travels
through Ray's object store at one byte per pixel, four times smaller than
float32, and no trial copies it to convert it.

A user's model is a function ``build(num_classes, input_shape, **args) ->
keras.Model`` returning an *uncompiled* model; lrtune compiles it with the
trial's optimizer and schedule, the loss and the metrics, as it does its
own nets. It is named in a sweep file as ``model: {import: "pkg.mod:fn",
args: {...}}`` (:class:`ModelSource` ``.target``), or given from Python
(``run_sweep(spec, model=build)``: ``.function``). It receives the same
uint8 pixels (0..255): scale them in the model, as lrtune's nets do.
:func:`check_model` builds it once on the driver before anything starts.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

__all__ = [
    "MODELS",
    "ModelError",
    "ModelSource",
    "build_model",
    "check_model",
    "import_builder",
    "keras_cifar10_cnn",
    "seed_tiny",
]

INPUT_SHAPE = (32, 32, 3)


def _inputs(input_shape: tuple[int, ...]) -> list:
    import keras

    return [keras.Input(shape=input_shape, dtype="uint8"), keras.layers.Rescaling(1.0 / 255)]


def seed_tiny(num_classes: int, input_shape: tuple[int, ...] = INPUT_SHAPE) -> keras.Sequential:
    """The net the seed article's notebook trained (cats vs dogs), ~100k weights.

    Conv(4, 3x3) - Conv(8, 3x3) - MaxPool 2 - Dropout .25 - Dense 16 -
    Dropout .5 - Dense(num_classes, softmax).
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            *_inputs(input_shape),
            layers.Conv2D(4, 3, activation="relu"),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(16, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),  # stable under mixed precision
        ],
        name="seed_tiny",
    )


def keras_cifar10_cnn(num_classes: int, input_shape: tuple[int, ...] = INPUT_SHAPE) -> keras.Sequential:
    """The classic Keras CIFAR-10 example convnet, ~1.25M weights.

    Conv32(same) - Conv32 - MaxPool - Dropout .25 - Conv64(same) - Conv64 -
    MaxPool - Dropout .25 - Dense 512 - Dropout .5 - Dense(num_classes).
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            *_inputs(input_shape),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),  # stable under mixed precision
        ],
        name="keras_cifar10_cnn",
    )


MODELS: dict[str, Callable[..., keras.Model]] = {
    "seed-tiny": seed_tiny,
    "keras-cifar10-cnn": keras_cifar10_cnn,
}


class ModelError(ValueError):
    """A model that cannot be built or does not fit the data; the message says which and how to fix it."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Which model a trial builds: exactly one of ``name``, ``target`` or ``function``.

    ``name``: one of :data:`MODELS`. ``target``: ``"package.module:function"``,
    imported where the trial runs (its code is shipped there: see
    :func:`module_path`). ``function``: a Python callable, sent to the
    trials pickled (by value where its module is not installed). ``args``:
    keyword arguments for the user's function.
    """

    name: str | None = None
    target: str | None = None
    function: Callable[..., Any] | None = None
    args: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.name, self.target, self.function)) != 1:
            raise ValueError(
                f"ModelSource needs exactly one of name, target, function; got {self.name=}, "
                f"{self.target=}, {self.function=}"
            )

    @property
    def label(self) -> str:
        """``seed-tiny``, ``mynets.convnet:build``, ``__main__:build``."""
        if self.name is not None:
            return self.name
        if self.target is not None:
            return self.target
        return f"{self.function.__module__}:{getattr(self.function, '__qualname__', repr(self.function))}"

    def builder(self) -> Callable[..., keras.Model]:
        """``(num_classes, input_shape) -> keras.Model``.

        Raises:
            ModelError: an unknown name, a target that does not import.
        """
        if self.name is not None:
            if self.name not in MODELS:
                raise ModelError(f"Unknown model {self.name!r}. Valid models: {', '.join(MODELS)}.")
            return MODELS[self.name]
        fn = import_builder(self.target) if self.target is not None else self.function
        args = dict(self.args)
        return lambda num_classes, input_shape: fn(num_classes, input_shape, **args)


def import_builder(target: str, *, key: str = "model.import") -> Callable[..., Any]:
    """The function ``target`` names (``"package.module:function"``), imported here.

    The current working directory is searched first, then ``sys.path``
    (``lrtune`` run from a project's root finds the project's modules).

    Raises:
        ModelError: a target not of that form, a module that does not
            import (with the error it raised), a missing or non-callable name.
    """
    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr:
        raise ModelError(f'{key}: {target!r} is not "package.module:function"; e.g. "mynets.convnet:build"')
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ModelError(
            f"{key}: cannot import module {module_name!r} ({e}); run lrtune from the folder that holds "
            "it, or install it in this environment"
        ) from None
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing: say what
        raise ModelError(f"{key}: importing {module_name!r} raised {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ModelError(
            f"{key}: module {module_name!r} has no function {attr!r}"
            + (f" (it is a {type(fn).__name__})" if fn is not None else "")
        )
    return fn


def module_path(target: str) -> str | None:
    """The file or package folder that holds ``target``'s top-level package, if it is not installed.

    What Ray's ``runtime_env`` ``py_modules`` must ship so that the trials,
    on any node, import ``target`` as the driver does; None for a module
    installed in this environment (site-packages), which the cluster's
    machines install as lrtune itself. The current working directory is
    searched first, as :func:`import_builder` does; nothing is imported.

    Raises:
        ModelError: no top-level module or package of that name is found.
    """
    import importlib.util
    import sysconfig

    module_name = target.partition(":")[0]
    top = module_name.split(".")[0]
    module = sys.modules.get(top)
    if module is not None:
        locations = getattr(module, "__path__", None)
        path = list(locations)[0] if locations else getattr(module, "__file__", None)
    else:
        cwd = os.getcwd()
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)
        try:
            spec = importlib.util.find_spec(top)  # finds, does not import
        except (ImportError, ValueError):
            spec = None
        finally:
            if added:
                sys.path.remove(cwd)
        if spec is None:
            raise ModelError(
                f"model.import: cannot import module {module_name!r} (No module named {top!r}); run lrtune "
                "from the folder that holds it, or install it in this environment"
            )
        path = spec.submodule_search_locations[0] if spec.submodule_search_locations else spec.origin
    if path is None or not os.path.exists(path):
        return None
    path = os.path.realpath(path)
    installed = {
        os.path.realpath(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
    }
    if any(path.startswith(p + os.sep) for p in installed):
        return None
    return path


def check_model(source: ModelSource, num_classes: int, input_shape: tuple[int, ...]) -> str:
    """Build ``source`` once and check it can be trained on this data; returns a one-line summary.

    The checks a trial would otherwise be the first to fail: the builder
    returns a ``keras.Model``, not compiled (lrtune compiles it with the
    trial's optimizer, loss and metrics), its input takes images of
    ``input_shape`` (H, W, C), its output has ``num_classes`` units, and
    it has trainable weights.

    Raises:
        ModelError: the message names the model and what is wrong.
    """
    import keras

    label = source.label
    try:
        model = source.builder()(num_classes, tuple(input_shape))
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's builder raised: report it, named
        raise ModelError(
            f"model {label}: building it with num_classes={num_classes}, input_shape={tuple(input_shape)} "
            f"raised {type(e).__name__}: {e}"
        ) from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"model {label}: returned a {type(model).__name__}, not a keras.Model")
    if model.compiled:
        raise ModelError(
            f"model {label}: returned a compiled model; lrtune compiles it with each trial's optimizer, "
            "learning-rate schedule, loss and metrics, so return it uncompiled (remove model.compile(...))"
        )
    wanted = (None, *input_shape)
    try:
        got = tuple(model.input_shape)
    except (AttributeError, ValueError):
        got = None
    if (
        got is None
        or len(got) != len(wanted)
        or any(g is not None and g != w for g, w in zip(got, wanted, strict=True))
    ):
        raise ModelError(
            f"model {label}: its input is {got}, but the data's images are {tuple(input_shape)} "
            f"(height, width, channels): build it with keras.Input(shape=input_shape)"
        )
    out = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if out is None or out[-1] != num_classes or len(out) != 2:
        raise ModelError(
            f"model {label}: its output is {model.output_shape}, but the data has {num_classes} classes: "
            f"end with Dense({num_classes}, activation='softmax')"
        )
    if not model.trainable_weights:
        raise ModelError(f"model {label}: it has no trainable weights; nothing to train")
    count = sum(math.prod(w.shape) for w in model.trainable_weights)
    return f"{label}: input {tuple(input_shape)}, {num_classes} classes, {count:,} trainable weights"


def build_model(
    source: ModelSource | str, num_classes: int, input_shape: tuple[int, ...] = INPUT_SHAPE
) -> keras.Model:
    """The model ``source`` names, with ``num_classes`` outputs, for images of ``input_shape``.

    Raises:
        ModelError: an unknown name or a target that does not import.
        ValueError: fewer than 2 classes.
    """
    if isinstance(source, str):
        source = ModelSource(name=source)
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}")
    return source.builder()(num_classes, tuple(input_shape))
