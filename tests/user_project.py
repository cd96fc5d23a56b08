"""A user's project written by the tests: a package of Keras model functions, good and bad."""

from __future__ import annotations

from pathlib import Path

NETS = '''
"""A user's models: a functional-API convnet and a model with no convolution."""
import keras


def convnet(num_classes, input_shape, width=4):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(width, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x), name="user_convnet")


def dense(num_classes, input_shape):
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def compiled(num_classes, input_shape):
    model = dense(num_classes, input_shape)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def one_output_too_many(num_classes, input_shape):
    return dense(num_classes + 1, input_shape)


def fixed_input(num_classes, input_shape):
    return dense(num_classes, (28, 28, 1))


def frozen(num_classes, input_shape):
    model = dense(num_classes, input_shape)
    model.trainable = False
    return model


def not_a_model(num_classes, input_shape):
    return "a model"


NOT_CALLABLE = 3
'''


def write_project(root: Path, package: str = "usernets") -> Path:
    """A project folder holding the user's package ``package`` (nets.py, broken.py)."""
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETS)
    (pkg / "broken.py").write_text("raise RuntimeError('the user module fails on import')\n")
    return root
