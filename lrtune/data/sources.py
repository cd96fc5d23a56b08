"""From a sweep file's ``data:`` to a loader: :func:`load_dataset` and :func:`describe_data`.

``data`` is the sweep file's validated ``data:`` section
(:class:`lrtune.spec.DataSpec`, read here by attribute so the data layer
needs nothing above it). Its one source decides the loader:

============================  =============================================
``dataset: cifar10`` (default)  :func:`lrtune.data.cifar.load_cifar10` from ``path``
``dataset: cifar100``           :func:`lrtune.data.cifar.load_cifar100` from ``path``, ``labels``
``folder: PATH``                :func:`lrtune.data.image_folder.load_image_folder`
``arrays: FILE.npz``            :func:`lrtune.data.arrays.load_arrays`
============================  =============================================

``path_override`` (``--data``) replaces the path of that source: the CIFAR
archive, the image folder or the npz.
"""

from __future__ import annotations

from typing import Any

from lrtune.data.arrays import describe_arrays, load_arrays
from lrtune.data.cifar import cifar_class_names, class_indices, load_cifar10, load_cifar100
from lrtune.data.dataset import Dataset, DataShape
from lrtune.data.image_folder import describe_image_folder, load_image_folder

__all__ = ["describe_data", "load_dataset", "source_kind", "source_path"]


def source_kind(data: Any) -> str:
    """``cifar10``, ``cifar100``, ``folder`` or ``arrays``: which source ``data`` names."""
    if getattr(data, "folder", None) is not None:
        return "folder"
    if getattr(data, "arrays", None) is not None:
        return "arrays"
    return getattr(data, "dataset", None) or "cifar10"


def source_path(data: Any, path_override: str | None) -> str | None:
    """Where the source lies: ``path_override``, else the path the file gives it (None: Keras's CIFAR copy)."""
    if path_override:
        return path_override
    kind = source_kind(data)
    return data.folder if kind == "folder" else data.arrays if kind == "arrays" else data.path


def load_dataset(data: Any, path_override: str | None, seed: int) -> Dataset:
    """Load what a sweep file's ``data:`` says, from ``path_override`` if given.

    Raises:
        lrtune.data.DataError: the source is missing, unreadable, corrupt or
            selects nothing; the message names the file and what is allowed.
    """
    kind = source_kind(data)
    path = source_path(data, path_override)
    common = {"classes": data.classes, "seed": seed, "limit": data.limit}
    if kind == "folder":
        return load_image_folder(
            path,
            validation_folder=data.validation_folder,
            validation=None if data.validation_folder is not None else _fraction(data.validation),
            image_size=None if data.image_size is None else tuple(data.image_size),
            color_mode=data.color_mode or "rgb",
            **common,
        )
    if kind == "arrays":
        return load_arrays(path, validation=data.validation, **common)
    if kind == "cifar100":
        return load_cifar100(path, labels=data.labels or "fine", validation=data.validation, **common)
    return load_cifar10(path, validation=data.validation, **common)


def describe_data(data: Any, path_override: str | None) -> DataShape | None:
    """Input shape and class names of what ``data:`` names, from headers only.

    CIFAR needs no file; a folder reads its class folders (and, without
    ``image_size``, the first image's header); an npz reads ``x_train``'s
    header and the labels. None if the folder or file is not there.

    Raises:
        lrtune.data.DataError: what is already wrong (one class, an
            unknown class name, an array holding objects, ...).
    """
    kind = source_kind(data)
    if kind in ("cifar10", "cifar100"):
        names = cifar_class_names(kind, data.labels or "fine")
        return DataShape(
            input_shape=(32, 32, 3), class_names=tuple(names[i] for i in class_indices(data.classes, names))
        )
    path = source_path(data, path_override)
    if kind == "folder":
        return describe_image_folder(
            path,
            classes=data.classes,
            image_size=None if data.image_size is None else tuple(data.image_size),
            color_mode=data.color_mode or "rgb",
        )
    return describe_arrays(path, classes=data.classes)


def _fraction(validation: Any) -> Any:
    # A folder has no test batch: "test" (the file's default) stands for its validation_folder.
    return None if validation == "test" else validation
