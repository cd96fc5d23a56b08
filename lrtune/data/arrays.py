"""Images and labels given as arrays in an ``.npz`` (``numpy.savez`` or ``savez_compressed``).

The file holds ``x_train`` and ``y_train`` and, unless ``validation`` holds
out a fraction of the training images, ``x_val`` and ``y_val``; other
arrays are ignored. Images are ``(N, H, W, C)`` with ``C`` 1, 3 or 4, or
``(N, H, W)`` (one channel), of integers 0..255 (stored as ``uint8``);
labels are ``(N,)`` or ``(N, 1)`` integers 0..n-1, where ``n`` is the
length of ``classes`` when given, else the largest label + 1, and every
class has a training image.

No code runs from the file and nothing is allocated that its bytes do not
justify: every array's header is read first (:mod:`numpy.lib.format`) and
refused if it holds Python objects (arrays load with ``allow_pickle=False``)
or declares more bytes than the member holds, or a member inflates more
than deflate can (1032:1).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy_format

from lrtune.data.dataset import DataError, Dataset, DataShape, check_options, choose

__all__ = ["describe_arrays", "load_arrays"]

# Deflate's ceiling: one compressed byte never inflates to more than 1032.
_MAX_INFLATION = 1032
_KEYS = ("x_train", "y_train", "x_val", "y_val")


@dataclass(frozen=True)
class _Header:
    shape: tuple[int, ...]
    dtype: np.dtype


def load_arrays(
    path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    validation: str | float = "test",
    seed: int = 0,
    limit: int | None = None,
) -> Dataset:
    """Load an ``.npz`` of ``x_train``, ``y_train``, ``x_val``, ``y_val`` (see the module docstring).

    Args:
        classes: the class names, label ``i`` naming ``classes[i]``;
            ``None``: ``"0"``, ``"1"``, ... up to the largest label.
        validation: ``"test"``: ``x_val`` and ``y_val``; a fraction: hold out
            that share of the training images (seeded), ``x_val`` unread.
        seed, limit: as :func:`lrtune.data.load_cifar10`.

    Raises:
        DataError: the file is missing or not an npz, an array is missing,
            holds objects, has the wrong shape or type, or declares more
            than its bytes; labels outside the classes, a class with no
            training image.
    """
    shown = os.fspath(path)
    held_out = check_options(validation, seed, limit, own="x_val and y_val")
    keys = _KEYS if held_out == "test" else _KEYS[:2]
    with _open(shown) as npz:
        headers = {key: _header(npz, key, shown) for key in keys}
        _check_shapes(headers, shown)
        arrays = {key: _read(npz, key, shown) for key in keys}
    y_train = _labels(arrays["y_train"])
    y_val = _labels(arrays["y_val"]) if "y_val" in arrays else None
    names = _class_names(y_train, y_val, classes, shown)
    split = choose(
        y_train,
        y_val,
        wanted=range(len(names)),
        num_classes=len(names),
        names=names,
        validation=held_out,
        seed=seed,
        limit=limit,
        shown=shown,
    )
    x_train = arrays["x_train"]
    x_val = x_train if split.val_from_train else arrays["x_val"]
    return Dataset(
        x_train=_pixels(x_train, split.train_idx, shown, "x_train"),
        y_train=split.y_train,
        x_val=_pixels(x_val, split.val_idx, shown, "x_train" if split.val_from_train else "x_val"),
        y_val=split.y_val,
        class_names=names,
        source=shown,
    )


def describe_arrays(path: str | os.PathLike, *, classes: Sequence[str] | None = None) -> DataShape | None:
    """Input shape from ``x_train``'s header and classes from ``classes`` or the labels; None if no file.

    Only the labels are read (they are small); the images are not.
    """
    shown = os.fspath(path)
    if not os.path.exists(shown):
        return None
    with _open(shown) as npz:
        x_train = _header(npz, "x_train", shown)
        if classes is None:
            labels = [
                _labels(_read(npz, key, shown, checked=False))
                for key in ("y_train", "y_val")
                if key == "y_train" or key in _members(npz)
            ]
    shape = _image_shape(x_train)
    if classes is None:
        largest = max(int(y.max()) for y in labels if len(y)) if any(len(y) for y in labels) else 0
        classes = [str(i) for i in range(largest + 1)]
    return DataShape(input_shape=(shape[0], shape[1], shape[2]), class_names=tuple(classes))


def _open(shown: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(shown)
    except FileNotFoundError:
        raise DataError(f"{shown}: no such file; give an .npz of x_train, y_train, x_val, y_val") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(
            f"{shown}: is not an .npz (a zip of .npy arrays, as numpy.savez writes) ({e}); "
            "it must hold x_train, y_train, x_val, y_val"
        ) from None


def _members(npz: zipfile.ZipFile) -> set[str]:
    return {name.removesuffix(".npy") for name in npz.namelist()}


def _header(npz: zipfile.ZipFile, key: str, shown: str) -> _Header:
    """The array's shape and dtype, checked against the member's bytes before any of it is read."""
    try:
        info = npz.getinfo(f"{key}.npy")
    except KeyError:
        have = ", ".join(sorted(_members(npz))) or "nothing"
        raise DataError(
            f"{shown}: has no array {key!r} (it holds {have}); an lrtune .npz holds x_train, y_train "
            "and x_val, y_val (or set data.validation: FRACTION to hold out training images instead)"
        ) from None
    where = f"{shown} (array {key!r})"
    if (
        info.compress_type != zipfile.ZIP_STORED
        and info.file_size > _MAX_INFLATION * info.compress_size + 1024
    ):
        raise DataError(
            f"{where}: claims to inflate {info.compress_size} bytes to {info.file_size}, more than "
            f"deflate can ({_MAX_INFLATION}:1); the file is corrupt or made to exhaust memory"
        )
    try:
        with npz.open(info) as member:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(member)
            else:
                raise ValueError(f".npy format version {version}; lrtune reads 1.0 and 2.0")
            offset = member.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{where}: is not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise DataError(
            f"{where}: holds Python objects (dtype {dtype}); lrtune loads arrays with allow_pickle=False, "
            "so no code in the file runs: save numbers (uint8 pixels, integer labels)"
        )
    declared = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if declared != info.file_size - offset:
        raise DataError(
            f"{where}: declares shape {shape} ({dtype}, {declared} bytes) but holds {info.file_size - offset} "
            "bytes; the file is truncated or was made to exhaust memory"
        )
    return _Header(tuple(int(d) for d in shape), dtype)


def _check_shapes(headers: dict[str, _Header], shown: str) -> None:
    for split in ("train", "val"):
        if f"x_{split}" not in headers:
            continue
        x, y = headers[f"x_{split}"], headers[f"y_{split}"]
        where = f"{shown} (array 'x_{split}')"
        if x.dtype.kind not in "ui":
            raise DataError(
                f"{where}: holds {x.dtype}; lrtune shares pixels as uint8 0..255: save "
                f"x_{split}.astype('uint8') (floats in [0, 1] multiplied by 255 first)"
            )
        if len(x.shape) not in (3, 4) or len(x.shape) == 4 and x.shape[3] not in (1, 3, 4):
            raise DataError(
                f"{where}: has shape {x.shape}; images are (N, height, width, channels) with 1, 3 or 4 "
                "channels, or (N, height, width) for one channel"
            )
        if 0 in x.shape[1:]:
            raise DataError(f"{where}: has shape {x.shape}; images need a height and width of at least 1")
        if y.dtype.kind not in "ui" or not (len(y.shape) == 1 or len(y.shape) == 2 and y.shape[1] == 1):
            raise DataError(
                f"{shown} (array 'y_{split}'): has {y.dtype} of shape {y.shape}; labels are integers, "
                "shape (N,) or (N, 1)"
            )
        if y.shape[0] != x.shape[0]:
            raise DataError(
                f"{shown}: x_{split} has {x.shape[0]} images but y_{split} has {y.shape[0]} labels"
            )
    if "x_val" in headers:
        train, val = _image_shape(headers["x_train"]), _image_shape(headers["x_val"])
        if train != val:
            raise DataError(
                f"{shown}: x_train images are {train} (height, width, channels) but x_val images are {val}; "
                "they must match"
            )


def _image_shape(header: _Header) -> tuple[int, ...]:
    return header.shape[1:] if len(header.shape) == 4 else (*header.shape[1:], 1)


def _read(npz: zipfile.ZipFile, key: str, shown: str, checked: bool = True) -> np.ndarray:
    """The array ``key``; ``checked``: its header passed :func:`_header` already."""
    if not checked:
        _header(npz, key, shown)
    try:
        with npz.open(f"{key}.npy") as member:
            return npy_format.read_array(member, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # a bad CRC, a short stream
        raise DataError(f"{shown} (array {key!r}): cannot be read ({type(e).__name__}: {e})") from None


def _labels(y: np.ndarray) -> np.ndarray:
    return y.reshape(-1)


def _class_names(
    y_train: np.ndarray, y_val: np.ndarray | None, classes: Sequence[str] | None, shown: str
) -> tuple[str, ...]:
    everything = y_train if y_val is None else np.concatenate([y_train, y_val])
    if len(y_train) == 0:
        raise DataError(f"{shown}: x_train holds no images")
    n = len(classes) if classes is not None else int(everything.max()) + 1
    allowed = f"0..{n - 1} (" + (
        f"classes lists {n} names)" if classes is not None else "the largest label + 1)"
    )
    for key, y in (("y_train", y_train), ("y_val", y_val)):
        if y is None or not len(y):
            continue
        outside = (y < 0) | (y >= n)
        if outside.any():
            raise DataError(
                f"{shown} (array {key!r}): label {int(y[outside][0])} is outside the classes {allowed}; "
                f"{np.count_nonzero(outside)} labels are out of range"
            )
    if n < 2:
        raise DataError(
            f"{shown}: labels make {n} class; a classifier needs at least 2 (labels 0..n-1, or list "
            "data.classes)"
        )
    counts = np.bincount(y_train, minlength=n)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        names = tuple(classes) if classes is not None else tuple(str(i) for i in range(n))
        raise DataError(
            f"{shown} (array 'y_train'): class {int(empty[0])} ({names[empty[0]]!r}) has no training image; "
            f"every class 0..{n - 1} needs one ({len(empty)} have none): relabel, or list only the "
            "classes present in data.classes"
        )
    return tuple(classes) if classes is not None else tuple(str(i) for i in range(n))


def _pixels(x: np.ndarray, index: np.ndarray, shown: str, key: str) -> np.ndarray:
    """``x[index]`` as contiguous uint8 ``(N, H, W, C)``, values checked when stored wider than uint8."""
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if len(index) == len(x) and np.array_equal(index, np.arange(len(x))):
        picked = x  # all of it, in order: no copy
    else:
        picked = x[index]
    if picked.dtype != np.uint8:
        if picked.size and (picked.min() < 0 or picked.max() > 255):
            raise DataError(
                f"{shown} (array {key!r}): has pixel values outside 0..255 (min {picked.min()}, "
                f"max {picked.max()}); save uint8 pixels 0..255"
            )
        picked = picked.astype(np.uint8)
    return np.ascontiguousarray(picked)
