"""A user's own Keras model, as lrtune trains it: build(num_classes, input_shape, **args) -> uncompiled model.

lrtune calls ``build`` with the number of classes and the images' shape
(height, width, channels) from the data, compiles the model with each
trial's optimizer and learning-rate schedule, and feeds it uint8 pixels
(0..255): scale them in the model.
"""

import keras
from keras import layers


def small_convnet(num_classes, input_shape, width=16, dropout=0.25):
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (width, 2 * width):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_convnet")
