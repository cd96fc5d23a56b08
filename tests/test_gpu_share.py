"""A trial's share of a GPU: its TensorFlow memory limit, Ray's packing, the refusal of a share too small.

The GPUs of the Ray tests are fake: a node declaring ``num_gpus`` and
``LRTUNE_GPU_MEMORY_MB`` for their memory. Ray assigns them exactly as real
ones (``CUDA_VISIBLE_DEVICES``); benchmarks/gpu_check.sh runs the limit on a
real GPU.
"""

from __future__ import annotations

import collections
import os

import pytest

from lrtune.training.gpu import (
    CUDA_CONTEXT_MB,
    GPU_MEMORY_ENV,
    GpuShareError,
    check_gpu_share,
    gpu_total_memory_mb,
    memory_limit_mb,
)


def test_memory_limit_is_the_share_of_the_total_less_the_cuda_context():
    assert memory_limit_mb(24576, 0.25) == 6144 - CUDA_CONTEXT_MB
    assert memory_limit_mb(143771, 1 / 16) == 8985 - CUDA_CONTEXT_MB  # floor(143771 / 16)


def test_a_whole_gpu_gets_no_limit():
    assert memory_limit_mb(24576, 1) is None
    assert check_gpu_share(1024, 1) is None


def test_a_share_must_be_positive():
    with pytest.raises(ValueError, match=r"`share` must be > 0. Received: share=0"):
        memory_limit_mb(24576, 0)


def test_a_share_too_small_is_refused_naming_the_trials_that_fit():
    # 8192 / 16 - 512 = 0 MB for TensorFlow; 8192 // (256 + 512) = 10 trials fit.
    with pytest.raises(
        GpuShareError,
        match=r"resources.gpu: 0.0625 of a 8192 MB GPU leaves a trial 0 MB .* at most 10 trials fit",
    ):
        check_gpu_share(8192, 1 / 16)


def test_the_smallest_share_that_fits_is_accepted():
    assert check_gpu_share(8192, 0.1) == 819 - CUDA_CONTEXT_MB


def test_total_memory_follows_the_visible_devices(monkeypatch):
    monkeypatch.setenv(GPU_MEMORY_ENV, "16000,24000")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu_total_memory_mb() == [24000]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_total_memory_mb() == []


@pytest.fixture
def fake_gpu_cluster(monkeypatch):
    """A head with no resources and a worker node declaring 2 GPUs of 24000 MB."""
    import ray
    from ray.cluster_utils import Cluster

    # The raylets inherit it, and so every worker process.
    monkeypatch.setenv(GPU_MEMORY_ENV, "24000,24000")
    # The session's embedded Ray (an earlier module's), if up, is this process's own: the test
    # joins the cluster instead, and the next user of `ray_running` starts the embedded Ray again.
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=4, num_gpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.ray
def test_half_gpu_trials_pack_two_per_gpu_each_seeing_its_own_with_half_the_memory(fake_gpu_cluster):
    from ray import tune

    def trial(config):
        import time

        from lrtune.training.gpu import check_gpu_share, gpu_total_memory_mb

        (total,) = gpu_total_memory_mb()  # exactly one GPU visible
        time.sleep(3)  # all four hold their share at once
        tune.report({"visible": os.environ["CUDA_VISIBLE_DEVICES"], "limit": check_gpu_share(total, 0.5)})

    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1, "gpu": 0.5}),
        param_space={"i": tune.grid_search([0, 1, 2, 3])},
        tune_config=tune.TuneConfig(max_concurrent_trials=4),
    )
    results = [r.metrics for r in tuner.fit()]
    assert sorted(collections.Counter(r["visible"] for r in results).values()) == [2, 2]
    assert {r["visible"] for r in results} == {"0", "1"}
    assert {r["limit"] for r in results} == {24000 // 2 - CUDA_CONTEXT_MB}


@pytest.mark.ray
def test_a_sweep_whose_gpu_share_is_too_small_is_refused_before_anything_starts(
    fake_gpu_cluster, cifar_archive, tmp_path
):
    from lrtune.engine.errors import SweepError
    from lrtune.engine.sweep import run_sweep
    from lrtune.spec import parse_spec, parse_yaml

    text = """
name: packed
data: {classes: [airplane, automobile]}
epochs: 1
space: {optimizer: sgd, lr: 0.01}
resources: {cpu: 0.1, gpu: 0.01}
"""
    spec = parse_spec(parse_yaml(text, "packed.yaml"), "packed.yaml")
    with pytest.raises(
        SweepError,
        match=r"packed: resources.gpu: 0.01 of a 24000 MB GPU leaves a trial -272 MB .* at most 31 trials fit",
    ):
        run_sweep(
            spec, storage=str(tmp_path / "results"), data=str(cifar_archive), address="auto", quiet=True
        )
    assert not (tmp_path / "results" / "packed").exists()
