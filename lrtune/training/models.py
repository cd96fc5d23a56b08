"""The convnets a sweep can train, by name.

Both take uint8 images (N, 32, 32, 3) and scale them to [0, 1] in their
first layer: the dataset then travels through Ray's object store at one
byte per pixel, four times smaller than float32, and no trial copies it
to convert it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

__all__ = ["MODELS", "build_model", "seed_tiny", "keras_cifar10_cnn"]

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


def build_model(name: str, num_classes: int, input_shape: tuple[int, ...] = INPUT_SHAPE) -> keras.Model:
    """Model ``name`` with ``num_classes`` outputs; unknown names list the valid ones."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}. Valid models: {', '.join(MODELS)}.")
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}")
    return MODELS[name](num_classes, input_shape)
