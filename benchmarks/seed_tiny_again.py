"""seed-tiny written again as a user would, for `overhead.py --user-model`.

The same layers as lrtune's built-in ``seed-tiny``
(:func:`lrtune.training.models.seed_tiny`), built in a module lrtune knows
nothing of, so the benchmark compares the user's-model path (import on
the driver, shipped to the workers, built by the trial) with the built-in
one on the same network.
"""

import keras
from keras import layers


def build(num_classes, input_shape):
    return keras.Sequential(
        [
            keras.Input(shape=input_shape, dtype="uint8"),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(4, 3, activation="relu"),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(16, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="seed_tiny_again",
    )
