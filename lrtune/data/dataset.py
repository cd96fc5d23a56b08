"""What every loader returns: a :class:`Dataset` of uint8 images, and the seeded steps they share.

Every source (CIFAR-10, CIFAR-100, an image folder, an ``.npz``) ends in
the same three seeded steps, in this order, done on indices so only the
images kept are ever gathered: keep ``classes`` (renumbered 0..n-1), hold
out ``validation``, cap at ``limit`` (:func:`choose`).

>>> scale_pixels(np.array([0, 51, 255], dtype=np.uint8))
array([0. , 0.2, 1. ], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["DataError", "DataShape", "Dataset", "Split", "check_options", "choose", "scale_pixels"]

#: Channels per ``color_mode``, as Keras's ``image_dataset_from_directory`` has them.
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


class DataError(ValueError):
    """A data source that cannot be loaded: the message names the file and the fix."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Training and validation images, ready to share through Ray's object store.

    ``x_*`` are ``uint8`` arrays of shape ``(N, H, W, C)`` (channels last,
    ``C`` 1, 3 or 4, pixels 0..255, not scaled); ``y_*`` are ``int32``
    labels in ``0..num_classes-1``, indexing ``class_names``. ``source``
    says where the images came from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)):
            if len(x) != len(y):
                raise ValueError(
                    f"Dataset: x_{split} and y_{split} must have one label per image, got {len(x)=} {len(y)=}"
                )
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise ValueError(
                f"Dataset: training and validation images must have one shape, got "
                f"{self.x_train.shape[1:]} and {self.x_val.shape[1:]}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image's shape, ``(H, W, C)``: what the model takes."""
        height, width, channels = self.x_train.shape[1:]
        return int(height), int(width), int(channels)

    def __repr__(self) -> str:
        return (
            f"Dataset(train={len(self.x_train)}, val={len(self.x_val)}, input_shape={self.input_shape}, "
            f"class_names={self.class_names!r}, source={self.source!r})"
        )


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know of the data, read without loading the pixels."""

    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def scale_pixels(x) -> np.ndarray:
    """Pixels 0..255 as ``float32`` in [0, 1]: ``x / 255``.

    The same scaling the models apply with a ``Rescaling(1 / 255)`` layer.

    >>> scale_pixels(np.array([[0, 255]], dtype=np.uint8))
    array([[0., 1.]], dtype=float32)
    """
    return np.asarray(x, dtype=np.float32) / np.float32(255)


def check_options(validation: Any, seed: Any, limit: Any, *, own: str = "the test batch") -> str | float:
    """``validation`` checked (``"test"``: ``own``, the source's validation images; or a fraction), and ``seed``, ``limit``."""
    if isinstance(validation, str) and validation == "test":
        held_out: str | float = "test"
    elif isinstance(validation, Real) and not isinstance(validation, bool) and 0 < validation < 1:
        held_out = float(validation)
    else:
        raise DataError(
            f"validation must be 'test' (validate on {own}) or a fraction "
            f"in (0, 1) of the training images to hold out, got {validation!r}"
        )
    if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    if limit is not None and (not isinstance(limit, Integral) or isinstance(limit, bool) or limit < 1):
        raise DataError(f"limit must be a positive number of training images or None, got {limit!r}")
    return held_out


@dataclass(frozen=True)
class Split:
    """Which images a :class:`Dataset` keeps: indices into the source's arrays, and their new labels.

    ``val_from_train``: the validation indices point into the training
    images (a held-out fraction), not the source's validation images.
    """

    train_idx: np.ndarray
    y_train: np.ndarray
    val_idx: np.ndarray
    y_val: np.ndarray
    val_from_train: bool


def choose(
    train_labels: np.ndarray,
    val_labels: np.ndarray | None,
    *,
    wanted: Iterable[int],
    num_classes: int,
    names: tuple[str, ...],
    validation: str | float,
    seed: int,
    limit: int | None,
    shown: str,
) -> Split:
    """The seeded selection every loader shares: keep ``wanted`` classes, hold out, cap.

    ``wanted`` are label values, renumbered 0..n-1 in the order given.
    ``validation="test"`` keeps ``val_labels`` (the source's own validation
    images); a fraction ``f`` holds out the first ``round(f * N)`` of a
    permutation seeded with ``seed`` (a plain permutation, not stratified).
    ``limit`` keeps a seeded random ``limit`` training images and
    ``max(1, limit // 5)`` validation images.

    >>> s = choose(np.array([0, 1, 2, 1]), np.array([2, 0]), wanted=[2, 0], num_classes=3,
    ...            names=("a", "b", "c"), validation="test", seed=0, limit=None, shown="x")
    >>> s.train_idx.tolist(), s.y_train.tolist(), s.val_idx.tolist(), s.y_val.tolist()
    ([0, 2], [1, 0], [0, 1], [0, 1])
    """
    wanted = list(wanted)
    rng = np.random.default_rng(seed)
    # Class subset, renumbered through a lookup table: -1 marks a dropped class.
    lookup = np.full(num_classes, -1, dtype=np.int32)
    lookup[wanted] = np.arange(len(wanted), dtype=np.int32)
    train_idx = np.flatnonzero(lookup[train_labels] >= 0)
    picked = ", ".join(names[i] for i in wanted)
    if len(train_idx) == 0:
        raise DataError(f"{shown}: classes [{picked}] leave no training images")

    if validation == "test":
        if val_labels is None:
            raise DataError(f"{shown}: has no validation images; hold some out with validation: FRACTION")
        val_idx = np.flatnonzero(lookup[val_labels] >= 0)
        from_labels = val_labels
    else:
        train_idx = rng.permutation(train_idx)
        num_val = round(validation * len(train_idx))
        if not 0 < num_val < len(train_idx):
            raise DataError(
                f"validation={validation} of {len(train_idx)} training images holds out {num_val}; "
                "choose a fraction that leaves at least one image on each side"
            )
        train_idx, val_idx = train_idx[num_val:], train_idx[:num_val]
        from_labels = train_labels
    if len(val_idx) == 0:
        raise DataError(f"{shown}: classes [{picked}] leave no validation images")

    if limit is not None:
        train_idx = rng.permutation(train_idx)[:limit]
        val_idx = rng.permutation(val_idx)[: max(1, limit // 5)]
    return Split(
        train_idx=train_idx,
        y_train=lookup[train_labels[train_idx]],
        val_idx=val_idx,
        y_val=lookup[from_labels[val_idx]],
        val_from_train=validation != "test",
    )
