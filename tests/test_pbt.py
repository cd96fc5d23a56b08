"""Population-based training on a real local Ray: in-range perturbations, the
rows of the model each member ended with, and a record of every exploit."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from lrtune.engine.sweep import run_sweep
from lrtune.results.tables import load, load_trials
from lrtune.spec import parse_spec, parse_yaml
from lrtune.training.checkpoints import StateStore

# val_loss, not val_accuracy: on the learnable fixture every member reaches accuracy 1.0,
# and with tied scores Ray's PBT keeps cloning the same paused donors (the exploiting trial
# inherits the donor's time, so the donors never get a slot again).
PBT = """
name: pbt
data: {classes: [airplane, automobile]}
epochs: 4
batch_size: 16
metric: val_loss
space: {optimizer: sgd, lr: {loguniform: [1.0e-4, 1.0e-2]}, momentum: {uniform: [0.9, 0.95]}}
num_samples: 4
scheduler: {pbt: {perturbation_interval: 1, quantile_fraction: 0.5, resample_probability: 0.0}}
"""


@pytest.fixture(scope="module")
def pbt_sweep(cifar_archive, tmp_path_factory):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        spec = parse_spec(parse_yaml(PBT, "pbt.yaml"), "pbt.yaml")
        storage = tmp_path_factory.mktemp("pbt")
        outcome = run_sweep(spec, storage=str(storage), data=str(cifar_archive), quiet=True)
    finally:
        ray.shutdown()
    return outcome


def test_every_member_finishes(pbt_sweep):
    trials = load_trials(pbt_sweep.sweep_dir).to_pylist()
    assert [t["status"] for t in trials] == ["done"] * 4, [t["error"] for t in trials]


def test_perturbed_values_stay_inside_the_space(pbt_sweep):
    rows = load(pbt_sweep.sweep_dir).to_pylist()
    assert all(0.9 <= r["config.momentum"] <= 0.95 for r in rows), sorted(
        {r["config.momentum"] for r in rows}
    )
    assert all(1e-4 <= r["config.lr"] <= 1e-2 for r in rows)


def test_each_members_rows_are_the_history_of_the_model_it_ended_with(pbt_sweep):
    rows = load(pbt_sweep.sweep_dir).to_pylist()
    for trial_id in {r["trial_id"] for r in rows}:
        mine = sorted((r for r in rows if r["trial_id"] == trial_id), key=lambda r: r["epoch"])
        store = StateStore(pbt_sweep.sweep_dir, trial_id)
        history = store.meta(store.states()[-1].name)["history"]
        assert [r["epoch"] for r in mine] == [h["epoch"] for h in history] == [1, 2, 3, 4]
        for row, h in zip(mine, history, strict=True):
            assert row["trained_by"] == h["trial"] and row["run"] == h["run"]
            assert (row["val_accuracy"], row["lr"]) == pytest.approx((h["val_accuracy"], h["lr"]))
            assert (row["config.lr"], row["config.momentum"]) == pytest.approx(
                (h["hparams"]["lr"], h["hparams"]["momentum"])
            )


def test_every_exploit_is_recorded_with_its_donor(pbt_sweep):
    exploits = pq.read_table(f"{pbt_sweep.sweep_dir}/exploits.parquet").to_pylist()
    rows = load(pbt_sweep.sweep_dir).to_pylist()
    assert exploits, "PBT never exploited"
    by_key = {(r["trial_id"], r["epoch"]): r for r in rows}
    for e in exploits:
        assert e["donor_trial_id"] != e["trial_id"]
        assert 1 <= e["donor_epoch"] <= e["epoch"] <= 4
    # The last exploit of a member shows in its rows: after the donor's epochs, its own.
    last = {}
    for e in exploits:
        last[e["trial_id"]] = e
    inherited = {r["trial_id"] for r in rows if r["trained_by"] != r["trial_id"]}
    assert inherited, "no member's rows show the donor's epochs it went on from"
    for member, e in last.items():
        if e["donor_epoch"] < 4:
            assert by_key[(member, e["donor_epoch"] + 1)]["trained_by"] == member
