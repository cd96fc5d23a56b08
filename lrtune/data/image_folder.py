"""Images in a folder with one subfolder per class, as Keras's ``image_dataset_from_directory`` reads them.

Keras's conventions, decoded with Pillow into ``uint8`` arrays on the
driver (Keras's own loader needs TensorFlow there and decodes lazily, per
epoch)::

    flowers/            class names: the subfolder names, sorted
      daisy/  1.jpg 2.png sub/3.bmp ...   every image below a class folder, any depth
      rose/   ...

- Files ending ``.bmp``, ``.gif``, ``.jpeg``, ``.jpg`` or ``.png`` (any
  case) are images; other files, and files directly in the folder, are
  ignored. A GIF gives its first frame.
- ``color_mode``: ``rgb`` (3 channels, the default), ``grayscale`` (1) or
  ``rgba`` (4), converted by Pillow (grayscale is ITU-R 601-2 luma).
- ``image_size: (height, width)`` resizes every image with bilinear
  interpolation (Pillow's, which also smooths when it shrinks); without it
  every image must have the same size.
- Validation images come from a second folder of the same layout
  (``validation_folder``, its subfolders named for classes of the first),
  or a seeded fraction of the training images.

Nothing in a file runs and nothing is allocated before its header is
checked: an image that declares more pixels than its file size can hold is
refused as a decompression bomb (:func:`pixel_budget`) before it is decoded.

>>> pixel_budget(1_000)
1048576
>>> pixel_budget(10_000)
10240000
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from lrtune.data.cifar import class_indices
from lrtune.data.dataset import CHANNELS, DataError, Dataset, DataShape, check_options, choose

__all__ = ["EXTENSIONS", "describe_image_folder", "load_image_folder", "pixel_budget"]

#: What Keras's ``image_dataset_from_directory`` reads (``ALLOWLIST_FORMATS``).
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}

# The decompression-bomb rule. No format read here stores more than about
# 1032 decoded bytes per byte of file (deflate's ceiling, which PNG uses;
# GIF's LZW, BMP's RLE and JPEG stay below it), so an image declaring more
# pixels than 1024 per byte of its file cannot be backed by its data: it is
# a bomb or truncated. Tiny flat images legitimately compress further, so
# any image may have a megapixel (4 MB decoded as RGBA, harmless); and no
# image over 64 Mpx (256 MB as RGBA) is decoded at all, whatever its size.
PIXELS_PER_FILE_BYTE = 1024
PIXELS_FLOOR = 1 << 20
MAX_PIXELS = 1 << 26


_BOMB_RULE = (
    f"lrtune decodes at most {PIXELS_PER_FILE_BYTE} pixels per byte of image file (at least {PIXELS_FLOOR}, "
    f"at most {MAX_PIXELS}); an image declaring more is a decompression bomb"
)


def pixel_budget(file_bytes: int) -> int:
    """Most pixels an image file of ``file_bytes`` may declare: ``min(MAX, max(FLOOR, 1024 * bytes))``."""
    return min(MAX_PIXELS, max(PIXELS_FLOOR, PIXELS_PER_FILE_BYTE * file_bytes))


def load_image_folder(
    folder: str | os.PathLike,
    *,
    validation_folder: str | os.PathLike | None = None,
    validation: float | None = None,
    classes: Iterable[str | int] | None = None,
    image_size: tuple[int, int] | None = None,
    color_mode: str = "rgb",
    seed: int = 0,
    limit: int | None = None,
) -> Dataset:
    """Load a folder of class subfolders (see the module docstring).

    Args:
        folder: the training images, one subfolder per class.
        validation_folder: validation images in the same layout; or else
        validation: a fraction in (0, 1) of the training images to hold out
            (seeded by ``seed``). Exactly one of the two.
        classes: a subset of the class names (or their indices in sorted
            order), renumbered 0..n-1 in the order given; ``None``: all.
        image_size: ``(height, width)`` to resize every image to.
        color_mode: ``rgb``, ``grayscale`` or ``rgba``.
        seed, limit: as :func:`lrtune.data.load_cifar10`.

    Raises:
        DataError: a missing folder, fewer than two classes, an empty class
            folder, an unreadable, corrupt, truncated or oversized image
            (named), images of mixed sizes without ``image_size``.
    """
    shown = os.fspath(folder)
    _check_size_and_mode(image_size, color_mode)
    if (validation_folder is None) == (validation is None):
        raise DataError(
            f"{shown}: give validation images either as validation_folder: PATH (the same layout) or as "
            f"validation: FRACTION of the training images to hold out, not {'both' if validation else 'neither'}"
        )
    held_out = check_options(
        "test" if validation is None else validation, seed, limit, own="validation_folder"
    )
    names = class_names(shown)
    wanted = class_indices(classes, names)
    train_files, train_labels = _images(shown, names, wanted)
    val_files: list[str] = []
    val_labels = None
    if validation_folder is not None:
        val_shown = os.fspath(validation_folder)
        val_names = class_names(val_shown, at_least=1)
        extra = [name for name in val_names if name not in names]
        if extra:
            raise DataError(
                f"{val_shown}: has class folders {', '.join(extra)} that {shown} has not; "
                f"a validation folder's subfolders must be classes of the training folder: {', '.join(names)}"
            )
        keep = [names.index(name) for name in val_names if names.index(name) in wanted]
        val_files, val_labels = _images(val_shown, names, keep, folders=val_names)
    split = choose(
        train_labels,
        val_labels,
        wanted=wanted,
        num_classes=len(names),
        names=names,
        validation=held_out,
        seed=seed,
        limit=limit,
        shown=shown,
    )
    val_source = train_files if split.val_from_train else val_files
    chosen = [train_files[i] for i in split.train_idx] + [val_source[i] for i in split.val_idx]
    images = _decode_all(chosen, image_size, color_mode)
    n = len(split.train_idx)
    return Dataset(
        x_train=images[:n],
        y_train=split.y_train,
        x_val=images[n:],
        y_val=split.y_val,
        class_names=tuple(names[i] for i in wanted),
        source=shown,
    )


def describe_image_folder(
    folder: str | os.PathLike,
    *,
    classes: Iterable[str | int] | None = None,
    image_size: tuple[int, int] | None = None,
    color_mode: str = "rgb",
) -> DataShape | None:
    """Input shape and classes from the class folders and, without ``image_size``, the first image's header.

    None if ``folder`` does not exist (the data may live on another machine).
    """
    shown = os.fspath(folder)
    if not os.path.exists(shown):
        return None
    _check_size_and_mode(image_size, color_mode)
    names = class_names(shown)
    wanted = class_indices(classes, names)
    if image_size is None:
        files, _ = _images(shown, names, wanted[:1])
        width, height = _header(files[0])
        image_size = (height, width)
    return DataShape(
        input_shape=(int(image_size[0]), int(image_size[1]), CHANNELS[color_mode]),
        class_names=tuple(names[i] for i in wanted),
    )


def class_names(shown: str, *, at_least: int = 2) -> tuple[str, ...]:
    """The sorted subfolder names of ``shown``: its classes."""
    try:
        entries = sorted(os.scandir(shown), key=lambda e: e.name)
    except FileNotFoundError:
        raise DataError(
            f"{shown}: no such folder; give a folder with one subfolder of images per class"
        ) from None
    except NotADirectoryError:
        raise DataError(
            f"{shown}: is a file, not a folder; an image folder has one subfolder of images per class"
        ) from None
    except OSError as e:
        raise DataError(f"{shown}: cannot list folder: {e}") from e
    names = tuple(e.name for e in entries if e.is_dir())
    if len(names) < at_least:
        found = f"only {names[0]!r}" if names else "none"
        raise DataError(
            f"{shown}: has {len(names)} class folder{'s' if len(names) != 1 else ''} ({found}); a classifier "
            f"needs at least 2: one subfolder of images per class (Keras's image_dataset_from_directory layout)"
        )
    return names


def _images(
    shown: str, names: tuple[str, ...], wanted: Iterable[int], folders: Iterable[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Every image file of the ``wanted`` classes (sorted, as Keras walks them) and its label."""
    present = set(names if folders is None else folders)
    files: list[str] = []
    labels: list[int] = []
    for label in sorted(wanted):
        if names[label] not in present:
            continue
        root = os.path.join(shown, names[label])
        found = [
            os.path.join(where, name)
            for where, _, entries in sorted(os.walk(root), key=lambda w: w[0])
            for name in sorted(entries)
            if name.lower().endswith(EXTENSIONS)
        ]
        if not found:
            raise DataError(
                f"{root}: class folder holds no images ({', '.join(EXTENSIONS)}); put images in it or remove it"
            )
        files += found
        labels += [label] * len(found)
    return files, np.array(labels, dtype=np.int32)


def _check_size_and_mode(image_size: tuple[int, int] | None, color_mode: str) -> None:
    if color_mode not in _PIL_MODES:
        raise DataError(f"color_mode must be one of {', '.join(_PIL_MODES)}, got {color_mode!r}")
    if image_size is not None and (
        len(image_size) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in image_size)
    ):
        raise DataError(f"image_size must be [height, width], two positive integers, got {image_size!r}")


def _open(path: str):
    """The image at ``path``, opened lazily (header only) and checked against :func:`pixel_budget`."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = os.path.getsize(path)
        image = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: is not an image Pillow can read (corrupt, or not {'/'.join(EXTENSIONS)} inside)"
        ) from None
    except Image.DecompressionBombError as e:  # Pillow's own check, at 2 x MAX_IMAGE_PIXELS, came first
        raise DataError(f"{path}: {e}; {_BOMB_RULE}: refused, not decoded") from None
    except OSError as e:
        if e.errno is not None:  # the file system's, not Pillow's
            raise DataError(f"{path}: cannot read image: {e}") from None
        raise DataError(f"{path}: is a corrupt or truncated image ({e})") from None
    except (SyntaxError, ValueError, EOFError) as e:  # Pillow's parsers: a broken header
        raise DataError(f"{path}: is a corrupt or truncated image ({type(e).__name__}: {e})") from None
    width, height = image.size
    if width * height > pixel_budget(size):
        image.close()
        raise DataError(
            f"{path}: declares {width}x{height} = {width * height} pixels in a file of {size} bytes; "
            f"{_BOMB_RULE}, so this is one or a truncated image: refused, not decoded"
        )
    return image


def _header(path: str) -> tuple[int, int]:
    """``(width, height)`` from the header, after the bomb check."""
    with _open(path) as image:
        return image.size


def _decode_all(files: list[str], image_size: tuple[int, int] | None, color_mode: str) -> np.ndarray:
    """Every file decoded into one preallocated ``(N, H, W, C)`` uint8 array."""
    from PIL import Image

    sizes = [_header(path) for path in files]  # every header checked before any image is decoded
    if image_size is None:
        first = sizes[0]
        other = next((i for i, s in enumerate(sizes) if s != first), None)
        if other is not None:
            raise DataError(
                f"{files[other]}: is {sizes[other][0]}x{sizes[other][1]} (width x height) but {files[0]} is "
                f"{first[0]}x{first[1]}; images of mixed sizes need data.image_size: [height, width] "
                "to resize them all to"
            )
        height, width = first[1], first[0]
    else:
        height, width = image_size
    channels = CHANNELS[color_mode]
    images = np.empty((len(files), height, width, channels), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with _open(path) as image:
                image.load()
                converted = image.convert(_PIL_MODES[color_mode])
                if converted.size != (width, height):
                    converted = converted.resize((width, height), Image.Resampling.BILINEAR)
                images[i] = np.asarray(converted, dtype=np.uint8).reshape(height, width, channels)
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # Pillow: truncated, broken chunks, ...
            raise DataError(f"{path}: is a corrupt or truncated image ({type(e).__name__}: {e})") from None
    return images
