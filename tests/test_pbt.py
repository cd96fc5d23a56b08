"""Population-based training on a real local Ray: in-range perturbations, the
rows of the model each member ended with, and a record of every exploit."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from lrtune.engine.sweep import run_sweep
from lrtune.results.tables import load, load_trials
from lrtune.spec import parse_spec, parse_yaml
from lrtune.training.checkpoints import StateStore

pytestmark = pytest.mark.ray

# val_accuracy: on the learnable fixture members reach accuracy 1.0 and tie. Ray's own PBT
# then kept cloning the same paused donors (the clone inherits the donor's time, so with 4
# members on 2 slots the donors never got a slot again) and this sweep never ended.
PBT = """
name: pbt
data: {classes: [airplane, automobile]}
epochs: 4
batch_size: 16
metric: val_accuracy
space: {optimizer: sgd, lr: {loguniform: [1.0e-4, 1.0e-2]}, momentum: {uniform: [0.9, 0.95]}}
num_samples: 4
scheduler: {pbt: {perturbation_interval: 1, quantile_fraction: 0.5, resample_probability: 0.0}}
"""


@pytest.fixture(scope="module")
def pbt_sweep(cifar_archive, tmp_path_factory, ray_running):
    spec = parse_spec(parse_yaml(PBT, "pbt.yaml"), "pbt.yaml")
    storage = tmp_path_factory.mktemp("pbt")
    return run_sweep(spec, storage=str(storage), data=str(cifar_archive), quiet=True)


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


def _constant_member(config):
    """A TensorFlow-free PBT member: 3 epochs, each reporting ``config["score"]`` with a checkpoint."""
    import json
    import tempfile

    from ray import tune

    start = 0
    if (given := tune.get_checkpoint()) is not None:
        with given.as_directory() as d, open(f"{d}/epoch.json") as f:
            start = json.load(f)
    for epoch in range(start + 1, 4):
        with tempfile.TemporaryDirectory() as d:
            with open(f"{d}/epoch.json", "w") as f:
                json.dump(epoch, f)
            tune.report(
                {"score": config["score"], "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d)
            )


def test_pbt_clones_a_strictly_better_member(ray_running, tmp_path):
    # The tied case (no exploit at all) is the bounded-exploits test's `tied` below.
    from ray import tune

    from lrtune.engine.pbt import PopulationBasedTraining

    pbt = PopulationBasedTraining(
        time_attr="epoch",
        perturbation_interval=1,
        quantile_fraction=0.5,
        hyperparam_mutations={"x": tune.uniform(0, 1)},
    )
    results = tune.Tuner(
        tune.with_resources(_constant_member, {"cpu": 1}),
        param_space={"score": tune.grid_search([0.4, 0.5]), "x": 0.5},
        tune_config=tune.TuneConfig(scheduler=pbt, metric="score", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert [r.metrics["epoch"] for r in results] == [3, 3]
    assert pbt._num_perturbations > 0, pbt.debug_string()


def _drifting_member(config):
    """A TensorFlow-free member: ``epochs`` epochs of 0.3 s, each scoring ``score - slope * epoch``.

    A clone goes on with its donor's ``score`` (the checkpoint holds it), as weights would.
    """
    import json
    import tempfile
    import time

    from ray import tune

    start, score = 0, config["score"]
    if (given := tune.get_checkpoint()) is not None:
        with given.as_directory() as d, open(f"{d}/state.json") as f:
            start, score = json.load(f)
    for epoch in range(start + 1, config["epochs"] + 1):
        time.sleep(0.3)
        with tempfile.TemporaryDirectory() as d:
            with open(f"{d}/state.json", "w") as f:
                json.dump([epoch, score], f)
            metrics = {
                "score": score - config["slope"] * epoch,
                "epoch": epoch,
                "done": epoch == config["epochs"],
            }
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.ray
@pytest.mark.parametrize(
    ("scores", "slope"),
    [((0.50, 0.51, 0.52, 0.53), 0.1), ((0.5, 0.5, 0.5, 0.5), 0.0)],
    ids=["worse-with-training", "tied"],
)
def test_pbt_ends_in_a_bounded_number_of_exploits_whatever_the_metric_does(
    ray_running, tmp_path, scores, slope
):
    # 4 members on 2 slots. Ray's PBT has a bottom member clone a donor whose older score is
    # better (or tied): the clone takes the donor's time, gets the slot again, clones again.
    # lrtune's clones only a strictly better donor, later in time than any it cloned before.
    from ray import tune

    from lrtune.engine.pbt import PopulationBasedTraining

    members, epochs = len(scores), 3
    pbt = PopulationBasedTraining(
        time_attr="epoch",
        perturbation_interval=1,
        quantile_fraction=0.5,
        hyperparam_mutations={"x": tune.uniform(0, 1)},
    )
    results = tune.Tuner(
        tune.with_resources(_drifting_member, {"cpu": 1}),
        param_space={"score": tune.grid_search(list(scores)), "slope": slope, "epochs": epochs, "x": 0.5},
        # The budget only keeps a regression from hanging the suite: the sweep must end before it.
        tune_config=tune.TuneConfig(scheduler=pbt, metric="score", mode="max", time_budget_s=240),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    print(pbt.summary())
    assert [r.metrics["epoch"] for r in results] == [epochs] * members, pbt.summary()
    assert pbt.exploits <= members * (epochs - 1), pbt.summary()
    assert pbt.summary().startswith(f"PBT: {pbt.exploits} exploits")
    if slope == 0.0:  # tied: Ray's own PBT clones on a tie too; a tie is no evidence of a better donor
        assert pbt.exploits == 0, pbt.summary()
