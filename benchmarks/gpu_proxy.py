"""GPU packing PROXY for lrtune trials: Keras 3 on the JAX backend, not lrtune's TensorFlow trial path.

What this is
    One process = one "trial": it builds one of lrtune's nets
    (``seed_tiny`` or ``keras_cifar10_cnn``, loaded by file path from
    ``lrtune/training/models.py``), trains it on the CIFAR-10 subset with
    SGD (momentum 0.9, lr 0.01) and sparse categorical cross-entropy, and
    prints one JSON line (per-epoch seconds, images/s after the first
    epoch, final val accuracy, peak XLA memory, error or "oom").
    ``gpu_proxy.sh`` starts k of these at once on one GPU to see what
    packing several trials on one GPU (Ray Tune's fractional ``gpu``) does.

Why a proxy
    The lent accelerator machine has no TensorFlow and no Ray and cannot
    install from the network; Python packages travel only as wheels in a
    64 MiB working tree. Ray's wheel (79 MB) and TensorFlow's GPU wheel
    (~600 MB, plus CUDA 12 libraries; the machine has CUDA 13) do not fit,
    so lrtune's own trial path (``lrtune/training/trial.py``: TensorFlow,
    memory growth, ``mixed_float16``, Ray actors) cannot run there. This
    runs the same Keras layers on Keras's JAX backend (JAX is always
    XLA-compiled), with plain numpy inputs instead of lrtune's tf.data
    pipeline, and with each process capped at its share of GPU memory
    (``XLA_PYTHON_CLIENT_MEM_FRACTION=0.9/k``, preallocated), the JAX
    analogue of a per-trial hard memory limit. Mixed precision here is
    ``mixed_bfloat16``, where lrtune uses ``mixed_float16``. Figures from
    it describe this proxy, not lrtune's TensorFlow trials.

Timing
    After building and compiling the model, each process runs a short
    warm-up fit (a few full batches) so that XLA compilation is out of
    the timed epochs, then waits at a file barrier until all k processes
    are ready, so that the timed epochs overlap. The training set is cut
    to a multiple of the batch size (no partial last batch, so no second
    compilation). Validation runs once, after the timed epochs.

Usage (``gpu_proxy.sh`` runs all of this; needs keras>=3 and jax[cuda], no TensorFlow)
    python3 gpu_proxy.py --prepare DATA.tar.gz CACHE.npz   # once: decode the pickles
    python3 gpu_proxy.py --data CACHE.npz --model seed_tiny --k 4 --index 0 \
        --epochs 3 --batch 64 [--mixed] [--barrier DIR] [--n-train N]
    python3 gpu_proxy.py --summarize RESULTS.jsonl SMI.csv  # the table
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import statistics
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # this file sits one folder below the repository root
MODELS_FILE = REPO / "lrtune" / "training" / "models.py"


# ---------------------------------------------------------------- data
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batch dicts: builtins plus numpy's array reconstruction only."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def _batch(raw: bytes):
    import numpy as np

    d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    y = np.asarray(d[b"labels"], dtype=np.int32)
    return np.ascontiguousarray(x), y


def prepare(src: str, dst: str) -> None:
    import numpy as np

    train, test = [], None
    with tarfile.open(src, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for i in range(1, 6):
            name = f"data_batch_{i}"
            if name in members:
                train.append(_batch(tar.extractfile(members[name]).read()))
        test = _batch(tar.extractfile(members["test_batch"]).read())
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    np.savez(dst, x_train=x_train, y_train=y_train, x_test=test[0], y_test=test[1])
    print(
        json.dumps(
            {
                "prepared": dst,
                "train": list(x_train.shape),
                "test": list(test[0].shape),
                "train_classes": np.bincount(y_train).tolist(),
            }
        )
    )


# ---------------------------------------------------------------- one trial
def _load_models():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lrtune_models_by_path", MODELS_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _is_oom(text: str) -> bool:
    t = text.lower()
    return "resource_exhausted" in t or "out of memory" in t or "oom" in t.split()


def _barrier(directory: str | None, k: int, index: int, timeout: float = 180.0) -> float:
    """Wait until k processes have written their ready file; returns seconds waited."""
    if not directory or k <= 1:
        return 0.0
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"ready.{index}").write_text(str(time.time()))
    t0 = time.time()
    while len(list(d.glob("ready.*"))) < k:
        if time.time() - t0 > timeout:
            break
        time.sleep(0.02)
    return time.time() - t0


def trial(a) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ["KERAS_BACKEND"] == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / a.k:.4f}")
    out = {
        "proxy": "keras-on-" + os.environ["KERAS_BACKEND"],
        "model": a.model,
        "k": a.k,
        "index": a.index,
        "batch": a.batch,
        "epochs": a.epochs,
        "precision": "mixed_bfloat16" if a.mixed else "float32",
        "mem_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
        "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "error": None,
    }
    t_start = time.time()
    stage = "import"
    try:
        import keras
        import numpy as np

        out["keras"] = keras.__version__
        if os.environ["KERAS_BACKEND"] == "jax":
            import jax

            out["jax"] = jax.__version__
            dev = jax.devices()[0]
            out["device"] = f"{dev.platform}:{getattr(dev, 'device_kind', '')}"
        elif os.environ["KERAS_BACKEND"] == "torch":  # fallback only: the per-process cap is torch's
            import torch

            out["torch"] = torch.__version__
            if torch.cuda.is_available():
                torch.cuda.set_per_process_memory_fraction(0.9 / a.k)
                out["device"] = "cuda:" + torch.cuda.get_device_name(0)
                out["mem_fraction"] = f"{0.9 / a.k:.4f} (torch)"
        stage = "data"
        z = np.load(a.data)
        x, y, xt, yt = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
        n = min(len(x), a.n_train) if a.n_train else len(x)
        n -= n % a.batch  # whole batches only: no second compilation for a short last batch
        x, y = x[:n], y[:n]
        if a.n_train:
            nt = min(len(xt), max(a.batch, a.n_train // 5))
            xt, yt = xt[:nt], yt[:nt]
        out["n_train"], out["n_test"] = int(n), int(len(xt))

        stage = "build"
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if a.mixed else "float32")
        keras.utils.set_random_seed(a.index)
        models = _load_models()
        model = models.build_model(a.model.replace("_", "-"), 10)
        out["params"] = int(model.count_params())
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )

        stage = "warmup"
        t0 = time.time()
        model.fit(x[: a.batch * 4], y[: a.batch * 4], batch_size=a.batch, epochs=1, verbose=0, shuffle=False)
        out["warmup_s"] = round(time.time() - t0, 3)
        out["startup_s"] = round(time.time() - t_start, 3)
        out["barrier_wait_s"] = round(_barrier(a.barrier, a.k, a.index), 3)

        stage = "train"
        marks: list[tuple[float, float]] = []

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.time()

            def on_epoch_end(self, epoch, logs=None):
                float((logs or {}).get("loss", 0.0))  # logs are host values: the epoch's steps are done
                marks.append((self._t, time.time()))

        model.fit(
            x, y, batch_size=a.batch, epochs=a.epochs, verbose=0, shuffle=True, callbacks=[EpochTimer()]
        )
        secs = [e - b for b, e in marks]
        out["epoch_s"] = [round(s, 4) for s in secs]
        steady = secs[1:] if len(secs) > 1 else secs
        out["steady_from_epoch"] = 2 if len(secs) > 1 else 1
        out["img_per_s"] = round(n * len(steady) / sum(steady), 1)
        # wall window of the steady epochs, so the shell can compute the aggregate over overlap
        out["steady_t0"] = marks[1][0] if len(marks) > 1 else marks[0][0]
        out["steady_t1"] = marks[-1][1]
        out["steady_images"] = int(n * len(steady))

        stage = "eval"
        res = model.evaluate(xt, yt, batch_size=256, verbose=0, return_dict=True)
        out["val_accuracy"] = round(float(res["accuracy"]), 4)
        out["val_loss"] = round(float(res["loss"]), 4)
    except Exception as e:  # noqa: BLE001 - the point is to report it
        msg = f"{type(e).__name__}: {e}"
        out["error"] = "oom" if _is_oom(msg) else "error"
        out["error_stage"] = stage
        out["error_text"] = msg[:600]
    finally:
        try:
            if os.environ.get("KERAS_BACKEND") == "jax" and "jax" in sys.modules:
                import jax

                ms = jax.devices()[0].memory_stats() or {}
                if ms:
                    out["xla_peak_mib"] = round(ms.get("peak_bytes_in_use", 0) / 2**20, 1)
                    out["xla_limit_mib"] = round(ms.get("bytes_limit", 0) / 2**20, 1)
            if os.environ.get("KERAS_BACKEND") == "torch" and "torch" in sys.modules:
                import torch

                if torch.cuda.is_available():
                    out["xla_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)  # torch's peak
        except Exception:  # noqa: BLE001
            pass
        out["wall_s"] = round(time.time() - t_start, 3)
    return out


# ---------------------------------------------------------------- table
def summarize(results: str, smi: str | None) -> None:
    rows = [json.loads(line) for line in Path(results).read_text().splitlines() if line.startswith("{")]
    samples: dict[str, list[tuple[float, float]]] = {}
    if smi and Path(smi).exists():
        for line in Path(smi).read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                try:
                    samples.setdefault(parts[0], []).append((float(parts[1]), float(parts[2])))
                except ValueError:
                    pass
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get("tag", "?"), []).append(r)
    hdr = (
        f"{'model':<18} {'precision':<14} {'k':>3} {'batch':>5} {'img/s/proc':>10} {'total img/s':>11} "
        f"{'overlap':>7} {'smi peak MiB':>12} {'smi util% mean/max':>18} {'XLA peak MiB/proc':>17} "
        f"{'oom':>3} {'err':>3} {'val acc':>7}"
    )
    print(
        "PROXY: lrtune's Keras nets on Keras 3 + JAX (not lrtune's TensorFlow trial path); k processes share one GPU"
    )
    print(hdr)
    print("-" * len(hdr))
    for tag, rs in groups.items():
        ok = [r for r in rs if not r.get("error")]
        k = rs[0]["k"]
        oom = sum(r.get("error") == "oom" for r in rs)
        err = sum(r.get("error") == "error" for r in rs)
        per = statistics.median([r["img_per_s"] for r in ok]) if ok else float("nan")
        if ok:
            t0 = min(r["steady_t0"] for r in ok)
            t1 = max(r["steady_t1"] for r in ok)
            total = sum(r["steady_images"] for r in ok) / (t1 - t0)
            # overlap: the window all of them were in steady epochs together, over the whole window
            common = min(r["steady_t1"] for r in ok) - max(r["steady_t0"] for r in ok)
            overlap = max(0.0, common) / (t1 - t0)
            acc = statistics.median([r["val_accuracy"] for r in ok])
            xla = max(r.get("xla_peak_mib", float("nan")) for r in ok)
        else:
            total = overlap = acc = xla = float("nan")
        s = samples.get(tag, [])
        mem = max((m for m, _ in s), default=float("nan"))
        utils = [u for _, u in s]
        umean = statistics.mean(utils) if utils else float("nan")
        umax = max(utils, default=float("nan"))
        print(
            f"{rs[0]['model']:<18} {rs[0]['precision']:<14} {k:>3} {rs[0]['batch']:>5} {per:>10.0f} {total:>11.0f} "
            f"{overlap:>7.2f} {mem:>12.0f} {umean:>9.0f}/{umax:<8.0f} {xla:>17.1f} {oom:>3} {err:>3} {acc:>7.3f}"
        )
        if len(rs) != k:
            print(
                f"   ^ {tag}: {len(rs)} result lines for k={k} (missing lines = process died without output)"
            )
    print(
        "smi util% mean covers the whole config, process start-up and compilation included (little GPU work):"
    )
    print("it understates the load during the timed epochs; max is the highest 0.5 s sample.")
    print("img/s/proc: median over processes of training images/s in epochs 2..E (after warm-up compile).")
    print(
        "total img/s: all processes' steady-epoch images / wall window from first steady start to last end."
    )
    print(
        "smi peak MiB includes XLA preallocation (0.9/k of the card per process): it is reserved, not needed;"
    )
    print(
        "XLA peak MiB/proc is jax memory_stats peak_bytes_in_use (what the trial actually used), max over processes."
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prepare", nargs=2, metavar=("SRC_TAR_GZ", "DST_NPZ"))
    p.add_argument("--summarize", nargs="+", metavar="FILE")
    p.add_argument("--data", default="/tmp/cifar_subset.npz")
    p.add_argument("--model", default="seed_tiny", choices=["seed_tiny", "keras_cifar10_cnn"])
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mixed", action="store_true")
    p.add_argument(
        "--n-train", type=int, default=0, help="cut the training set (0: all); test set cut to n/5"
    )
    p.add_argument("--barrier", default=None)
    p.add_argument("--tag", default="")
    a = p.parse_args()
    if a.prepare:
        prepare(*a.prepare)
        return
    if a.summarize:
        summarize(a.summarize[0], a.summarize[1] if len(a.summarize) > 1 else None)
        return
    r = trial(a)
    r["tag"] = a.tag
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
