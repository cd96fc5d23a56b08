"""Feeding: seconds per epoch of bare `model.fit` on NumPy arrays against lrtune's pipeline.

Same model (seed-tiny, lrtune's step arm), same data, one TensorFlow thread
(`configure_tensorflow(1)`, as a `cpu: 1` trial), in one process, the two
alternating: (a) `model.fit(x, y, shuffle=True)` (Keras copies the arrays
into a tensor first); (b) `lrtune.training.batches` over read-only, 64-byte
aligned arrays, as Ray's object store hands them to a trial (no copy).
Reports the median epoch after the first, per kind, and (b)/(a).
"""

import math
import time

import common
import numpy as np


def object_store_like(array: np.ndarray) -> np.ndarray:
    """``array`` in a read-only, 64-byte aligned buffer, as a trial receives it from Ray."""
    buffer = np.empty(array.nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    out = buffer[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    out.flags.writeable = False
    return out


def epoch_seconds(kind: str, data, epochs: int, batch_size: int) -> list[float]:
    """Seconds of each epoch (training + validation) of one ``fit`` fed by ``kind``."""
    import keras

    from lrtune.training.batches import training_batches, validation_batches

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    steps = math.ceil(len(data.x_train) / batch_size)
    model = common.compiled_model(common.STEP_ARM, data.num_classes, steps)
    marks = []
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: marks.append(time.perf_counter()),
        on_epoch_end=lambda e, logs: marks.append(time.perf_counter()),
    )
    if kind == "bare":
        model.fit(
            data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
            validation_data=(data.x_val, data.y_val), callbacks=[clock],
        )  # fmt: skip
    else:
        model.fit(
            training_batches(data.x_train, data.y_train, batch_size, seed=0, initial_epoch=0, epochs=epochs),
            steps_per_epoch=steps, epochs=epochs, shuffle=False, verbose=0,
            validation_data=validation_batches(data.x_val, data.y_val, batch_size), callbacks=[clock],
        )  # fmt: skip
    return [marks[i + 1] - marks[i] for i in range(0, len(marks), 2)]


def main():
    import dataclasses

    p = common.parser(__doc__)
    p.add_argument("--epochs", type=int, help="epochs per fit (default 6; quick 2)")
    p.add_argument("--limit", type=int, help="training images, 0 = all 10,000 (default 0; quick 2000)")
    p.add_argument("--batch-size", type=int, default=64)
    args = common.parse(p, full=dict(epochs=6, limit=0), quick=dict(epochs=2, limit=2000))

    from lrtune.training.trial import configure_tensorflow

    configure_tensorflow(1)
    from lrtune.data import load_cifar10

    data = load_cifar10(args.data, limit=args.limit or None)
    data = dataclasses.replace(
        data, **{k: object_store_like(getattr(data, k)) for k in ("x_train", "y_train", "x_val", "y_val")}
    )
    epochs = {"bare": [], "lrtune": []}
    ratios = []
    for i in range(args.repeats):
        order = ("bare", "lrtune") if i % 2 == 0 else ("lrtune", "bare")
        got = {kind: epoch_seconds(kind, data, args.epochs, args.batch_size)[1:] for kind in order}
        for kind in order:
            epochs[kind] += got[kind]
        ratios.append(common.median(got["lrtune"]) / common.median(got["bare"]))
        print(
            f"repeat {i}: " + ", ".join(f"{k} {common.median(v):.3f} s" for k, v in got.items()), flush=True
        )
    med = {kind: common.median(v) for kind, v in epochs.items()}
    print(
        f"\nseed-tiny, 1 thread, {len(data.x_train)} images, epochs after the first, {args.repeats} repeat(s)"
    )
    common.table(
        ["", "s per epoch"],
        [["bare model.fit(x, y) (a)", med["bare"]], ["lrtune pipeline (b)", med["lrtune"]]],
    )
    ratio = common.median(ratios)
    print(f"ratio (b)/(a): {ratio:.3f} (median of per-repeat ratios)")
    common.emit("feeding", args, epochs=args.epochs, limit=args.limit, ratio=ratio, ratios=ratios, **med)


if __name__ == "__main__":
    main()
