"""The images a sweep trains on: CIFAR-10, CIFAR-100, an image folder or an ``.npz``.

Every loader returns a :class:`Dataset` of ``uint8`` images ``(N, H, W, C)``
and ``int32`` labels, loaded once on the driver and shared through Ray's
object store. :func:`load_dataset` loads what a sweep file's ``data:``
says; :func:`describe_data` reads only what a model needs (input shape and
classes) from headers.

Modules, one per source: :mod:`~lrtune.data.cifar` (the official CIFAR
archives), :mod:`~lrtune.data.image_folder` (one subfolder per class,
decoded with Pillow), :mod:`~lrtune.data.arrays` (``x_train``, ``y_train``,
``x_val``, ``y_val`` in an ``.npz``); :mod:`~lrtune.data.dataset` holds what
they share and :mod:`~lrtune.data.sources` chooses between them.
"""

from lrtune.data.cifar import (
    CIFAR100_COARSE_NAMES,
    CIFAR100_FINE_NAMES,
    CLASS_NAMES,
    class_indices,
    load_cifar10,
    load_cifar100,
)
from lrtune.data.dataset import DataError, Dataset, DataShape, scale_pixels
from lrtune.data.sources import describe_data, load_dataset

__all__ = [
    "CIFAR100_COARSE_NAMES",
    "CIFAR100_FINE_NAMES",
    "CLASS_NAMES",
    "DataError",
    "DataShape",
    "Dataset",
    "class_indices",
    "describe_data",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "scale_pixels",
]
