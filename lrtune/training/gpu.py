"""A trial's share of a GPU, made a hard TensorFlow memory limit.

``resources: {gpu: 0.25}`` makes Ray pack four trials on a GPU, but Ray
limits none of them (ray-project/ray#13680, #10677): each TensorFlow
grabs what it can, and with memory growth they race until one fails with
CUDA_ERROR_OUT_OF_MEMORY. So each trial's TensorFlow gets a logical device
capped at its share of the GPU's total memory, less what the CUDA context
itself takes outside TensorFlow's allocator::

    limit_mb = floor(total_mb * share) - CUDA_CONTEXT_MB

A whole GPU (``share >= 1``) gets no cap, only memory growth. A share whose
limit is under :data:`MIN_TRIAL_MEMORY_MB` is refused before any trial
starts (:func:`check_gpu_share`, run by the driver on a GPU node).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess

__all__ = [
    "CUDA_CONTEXT_MB",
    "GPU_MEMORY_ENV",
    "MIN_TRIAL_MEMORY_MB",
    "GpuShareError",
    "check_gpu_share",
    "configure_gpus",
    "gpu_total_memory_mb",
    "memory_limit_mb",
]

#: Memory a process's CUDA context, cuDNN and cuBLAS take outside TensorFlow's
#: allocator (and so outside its memory limit); an estimate, not measured per GPU.
CUDA_CONTEXT_MB = 512
#: The least TensorFlow memory a trial of lrtune's models is given: the small CIFAR
#: convnets at batch 64-256 need far less; below this a trial is refused.
MIN_TRIAL_MEMORY_MB = 256
#: Each visible GPU's total memory in MB, comma-separated, where nvidia-smi cannot
#: tell (and for tests with GPUs Ray only counts).
GPU_MEMORY_ENV = "LRTUNE_GPU_MEMORY_MB"


class GpuShareError(ValueError):
    """A GPU share too small for a trial."""


def memory_limit_mb(total_mb: float, share: float) -> int | None:
    """The TensorFlow memory limit of a trial holding ``share`` of a GPU of ``total_mb``.

    ``floor(total_mb * share) - CUDA_CONTEXT_MB``; None for a whole GPU or more.

    >>> memory_limit_mb(24576, 0.25)   # an A10G, four trials
    5632
    >>> memory_limit_mb(24576, 1) is None
    True
    """
    if not 0 < share:
        raise ValueError(f"`share` must be > 0. Received: share={share}")
    if share >= 1:
        return None
    return math.floor(total_mb * share) - CUDA_CONTEXT_MB


def check_gpu_share(total_mb: float, share: float) -> int | None:
    """:func:`memory_limit_mb`, refusing a limit under :data:`MIN_TRIAL_MEMORY_MB`.

    Raises:
        GpuShareError: the share leaves a trial too little memory; the message
            says how many trials per GPU would fit.
    """
    limit = memory_limit_mb(total_mb, share)
    if limit is not None and limit < MIN_TRIAL_MEMORY_MB:
        most = math.floor(total_mb / (MIN_TRIAL_MEMORY_MB + CUDA_CONTEXT_MB))
        raise GpuShareError(
            f"resources.gpu: {share:g} of a {total_mb:g} MB GPU leaves a trial {limit} MB "
            f"(floor({total_mb:g} * {share:g}) - {CUDA_CONTEXT_MB} MB for the CUDA context), "
            f"under the {MIN_TRIAL_MEMORY_MB} MB a trial needs: at most {most} trials fit on this GPU "
            f"(resources.gpu >= {1 / max(most, 1):.4g})"
        )
    return limit


def gpu_total_memory_mb() -> list[float]:
    """Total memory in MB of each GPU this process may use (``CUDA_VISIBLE_DEVICES``, as Ray sets it).

    From :data:`GPU_MEMORY_ENV` if set, else ``nvidia-smi``; [] without either.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in (visible or "").split(",") if d.strip()] if visible is not None else None
    if os.environ.get(GPU_MEMORY_ENV):
        totals = [float(v) for v in os.environ[GPU_MEMORY_ENV].split(",")]
        return totals if devices is None else [totals[min(int(d), len(totals) - 1)] for d in devices]
    if shutil.which("nvidia-smi") is None or devices == []:
        return []
    command = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    if devices is not None:
        command += ["-i", ",".join(devices)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return []
    return [float(line) for line in out.stdout.split() if line.strip()]


def configure_gpus(share: float) -> list[int | None]:
    """Cap each visible GPU at the trial's share (memory growth for a whole GPU); the limits set.

    Call before TensorFlow runs anything. A memory limit and memory growth
    cannot be combined on one device, so a capped GPU has no growth.

    Raises:
        GpuShareError: the share is too small (:func:`check_gpu_share`).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    totals = gpu_total_memory_mb() if gpus else []
    limits = []
    for i, gpu in enumerate(gpus):
        limit = check_gpu_share(totals[i], share) if share and i < len(totals) else None
        if limit is None:
            tf.config.experimental.set_memory_growth(gpu, True)
        else:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
            )
        limits.append(limit)
    return limits
