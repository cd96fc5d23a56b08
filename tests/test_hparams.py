"""One table of hyperparameters, one resolution of a trial's settings, written to its rows.

A trial resolves its config once (:func:`lrtune.training.hparams.resolve`:
the optimizer's defaults and the schedule's spans filled in), trains with
that, and sends it once per run; the sink writes it to every row of that
run. So the ``config.*`` columns rebuild the schedule the trial trained
with, whatever ``epochs`` a later sweep (or ``lrtune best``'s fragment) has.
"""

from __future__ import annotations

import inspect
import math
import time

import numpy as np
import pytest
import yaml
from ray.tune.experiment import Trial

from lrtune.engine.sink import ParquetSink
from lrtune.results.best import choose, format_choice
from lrtune.results.tables import CONFIG_COLUMNS, KIND_TYPES, SHOWN, load
from lrtune.space import PARAMS, WHOLE_NUMBERS
from lrtune.spec import parse_spec
from lrtune.training.hparams import HPARAMS, resolve
from lrtune.training.optimizers import DEFAULTS
from lrtune.training.schedules import SCHEDULES, SPAN_PARAMS, WARMUP_PARAMS, lr_by_epoch, schedule_params
from lrtune.training.trial import TrainSettings, run_trial

# --- the table ------------------------------------------------------------------


def test_every_optimizer_setting_and_schedule_parameter_has_a_row_and_every_row_is_one():
    settings = {k for defaults in DEFAULTS.values() for k in defaults}
    parameters = {p for name in SCHEDULES for p in schedule_params(name)} | set(WARMUP_PARAMS)
    assert set(HPARAMS) == {"optimizer", "schedule"} | settings | parameters
    assert HPARAMS["optimizer"].rule == tuple(DEFAULTS) and HPARAMS["schedule"].rule == tuple(SCHEDULES)


def test_space_schema_and_display_derive_from_the_table():
    assert list(PARAMS) == list(CONFIG_COLUMNS) == list(HPARAMS)
    assert all(PARAMS[k] == h.rule and CONFIG_COLUMNS[k] == KIND_TYPES[h.kind] for k, h in HPARAMS.items())
    assert WHOLE_NUMBERS == {k for k, h in HPARAMS.items() if h.kind == "whole"}
    assert set(SHOWN) == {k for k, h in HPARAMS.items() if h.shown is not None}
    assert [HPARAMS[k].shown for k in SHOWN] == sorted(HPARAMS[k].shown for k in SHOWN)


def test_schedule_defaults_lie_in_their_rows_ranges():
    from lrtune.space import check_value

    for name in SCHEDULES:
        for p in inspect.signature(SCHEDULES[name]).parameters.values():
            if p.default is not inspect.Parameter.empty:
                check_value(p.name, p.default)
    for defaults in DEFAULTS.values():
        for k, v in defaults.items():
            check_value(k, v)


# --- the resolution ---------------------------------------------------------------


def test_resolution_fills_defaults_and_spans_and_resolving_again_changes_nothing():
    trial = resolve({"optimizer": "adamw", "schedule": "cosine", "warmup_epochs": 2, "seed": 5}, epochs=10)
    assert trial.schedule_params == {"lr": 0.001, "warmup_epochs": 2, "decay_epochs": 8}
    assert trial.optimizer_settings == {k: v for k, v in DEFAULTS["adamw"].items() if k != "lr"}
    assert trial.seed == 5
    assert resolve(trial.values(), epochs=50).values() == trial.values()


def test_a_key_no_part_of_the_trial_takes_is_named_with_its_value():
    with pytest.raises(ValueError, match=r"Optimizer 'sgd' takes .*; got unexpected decay_epochs=5"):
        resolve({"schedule": "step", "lr": 0.1, "drop": 0.5, "epochs_drop": 2, "decay_epochs": 5}, epochs=10)


# --- trial -> report -> sink -> rows ------------------------------------------------

SETTINGS = TrainSettings(model="seed-tiny", epochs=2, batch_size=64, threads=1)

#: Every schedule with a span the trial fills, that span left out (one behind a warmup).
SPANNED = {
    "cosine": {"optimizer": "adamw", "lr": 0.002, "lr_min": 1e-4, "warmup_epochs": 0.5},
    "one_cycle": {"optimizer": "sgd", "max_lr": 0.1, "momentum": 0.9},
    "polynomial": {"optimizer": "adam", "lr": 0.002, "end_lr": 0.0, "power": 2.0},
    "wsd": {
        "optimizer": "muon",
        "lr": 0.002,
        "decay_fraction": 0.5,
        "decay_shape": "cosine",
        "warmup_epochs": 0.5,
    },
    "linear_to_zero": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
}


def test_every_schedule_with_a_span_is_covered():
    assert set(SPANNED) == {n for n in SCHEDULES if set(SPAN_PARAMS) & set(schedule_params(n))}


def sink_rows(tmp_path, config, data, settings=SETTINGS):
    """Train ``config`` and pass its reports through the sink as Tune would: the rows written."""
    reports = []
    run_trial(config, data, settings, lambda row, _: reports.append(row), extra={"trial": "t_0", "run": "r1"})
    trial = Trial("lrtune_test", config={"arm": dict(config)}, trial_id="t_0", stub=True)
    trial.set_status(Trial.RUNNING)
    sink = ParquetSink(
        str(tmp_path / "s"), sweep="s", metric="val_accuracy", mode="max", epochs=settings.epochs
    )
    sink.setup()
    for i, row in enumerate(reports):
        result = dict(row, lineage="[]", restored_epoch=0) if i == 0 else row
        sink.on_trial_result(i + 1, [trial], trial, result)
    trial.set_status(Trial.TERMINATED)
    sink.on_experiment_end([trial])
    return reports, load(str(tmp_path / "s")).to_pylist()


def steps_per_epoch(data, settings=SETTINGS) -> int:
    return math.ceil(len(data.x_train) / settings.batch_size)


def applied(row) -> dict:
    """A row's hyperparameters, as a trial config (nulls left out)."""
    return {k.removeprefix("config."): v for k, v in row.items() if k.startswith("config.") and v is not None}


@pytest.mark.parametrize("name", list(SPANNED))
def test_config_columns_are_the_settings_the_trial_trained_with(name, tiny_dataset, tmp_path):
    config = {"schedule": name, "seed": 1, **SPANNED[name]}
    reports, rows = sink_rows(tmp_path, config, tiny_dataset)
    trained = resolve(config, SETTINGS.epochs)
    # Sent once per run: with the first epoch, not with the others.
    assert reports[0]["hparams"] == trained.values() and all("hparams" not in r for r in reports[1:])
    span = next(k for k in SPAN_PARAMS if k in schedule_params(name))
    assert {r[f"config.{span}"] for r in rows} == {SETTINGS.epochs - config.get("warmup_epochs", 0)}
    for row in rows:
        assert {k: row[k] for k in trained.columns()} == pytest.approx(trained.columns())
    # The schedule built from the columns is the one trained: the same lr at every step.
    rebuilt = resolve(applied(rows[0]), SETTINGS.epochs).schedule()
    steps = np.arange(SETTINGS.epochs * steps_per_epoch(tiny_dataset))
    n = steps_per_epoch(tiny_dataset)
    np.testing.assert_allclose(rebuilt.at_step(steps, n), trained.schedule().at_step(steps, n), rtol=1e-12)
    np.testing.assert_allclose(lr_by_epoch(rebuilt, SETTINGS.epochs, n), [r["lr"] for r in rows], rtol=1e-5)


@pytest.mark.parametrize("name", list(SPANNED))
def test_the_lr_column_replays_from_the_columns_and_from_bests_fragment_at_another_epochs(
    name, tiny_dataset, tmp_path
):
    config = {"schedule": name, "seed": 1, **SPANNED[name]}
    _, rows = sink_rows(tmp_path, config, tiny_dataset)
    recorded = [r["lr"] for r in sorted(rows, key=lambda r: r["epoch"])]
    n = steps_per_epoch(tiny_dataset)
    for epochs in (SETTINGS.epochs, 7, 50):
        replayed = lr_by_epoch(resolve(applied(rows[0]), epochs).schedule(), SETTINGS.epochs, n)
        np.testing.assert_allclose(replayed, recorded, rtol=1e-5)
    # `lrtune best`'s fragment, pasted into a sweep of 7 epochs, trains the same schedule.
    data = yaml.safe_load(format_choice(choose(str(tmp_path / "s"))))
    spec = parse_spec({"name": "replay", "epochs": 7, **data}, "best.yaml")
    arm = {k: dist.args[0] for k, dist in spec.space[0].params.items()}
    replayed = lr_by_epoch(resolve(arm, spec.epochs).schedule(), SETTINGS.epochs, n)
    np.testing.assert_allclose(replayed, recorded, rtol=1e-5)


# --- the sink, per run ------------------------------------------------------------


def result(epoch: int, run: str, hparams=None, **extra):
    row = {
        "epoch": epoch,
        "lr": 0.1,
        "loss": 1.0,
        "accuracy": 0.5,
        "val_loss": 1.0,
        "val_accuracy": 0.5 + epoch / 100,
        "epoch_seconds": 0.01,
        "images_per_second": 1.0,
        "status": "running",
        "epoch_end": time.time(),
        "seed": 1,
        "trial": "t_0",
        "run": run,
        **extra,
    }
    if hparams is not None:
        row["hparams"] = hparams
    return row


def test_the_sink_keeps_each_runs_settings_and_resolves_the_trials_when_it_has_none(tmp_path):
    config = {"arm": {"schedule": "cosine", "lr": 0.1, "label": "a", "repeat": 0}}
    trial = Trial("lrtune_test", config=config, trial_id="t_0", stub=True)
    trial.set_status(Trial.RUNNING)
    sink = ParquetSink(str(tmp_path / "s"), sweep="s", metric="val_accuracy", mode="max", epochs=6)
    sink.setup()
    # Epoch 1: a result from before (no settings): the trial's config, resolved at the sweep's 6 epochs.
    sink.on_trial_result(1, [trial], trial, result(1, "r0", lineage="[]", restored_epoch=0))
    # Then a run (PBT changed lr) that sends its settings with its first epoch only.
    second = resolve({"schedule": "cosine", "lr": 0.05}, 6).values()
    sink.on_trial_result(2, [trial], trial, result(2, "r1", second, lineage="[]", restored_epoch=1))
    sink.on_trial_result(3, [trial], trial, result(3, "r1"))
    trial.set_status(Trial.TERMINATED)
    sink.on_experiment_end([trial])
    rows = sorted(load(str(tmp_path / "s")).to_pylist(), key=lambda r: r["epoch"])
    assert [(r["config.lr"], r["config.decay_epochs"]) for r in rows] == [(0.1, 6), (0.05, 6), (0.05, 6)]
    assert {(r["arm"], r["repeat"], r["family"], r["config.momentum"]) for r in rows} == {
        ("a", 0, "cosine", 0.0)
    }


# --- a new hyperparameter: one row in the table, one default per optimizer ------------


def test_amsgrad_is_a_flag_of_adam_and_adamw_from_the_sweep_file_to_the_rows():
    assert CONFIG_COLUMNS["amsgrad"] == KIND_TYPES["flag"]
    spec = parse_spec({"name": "a", "epochs": 2, "space": {"optimizer": "adamw", "amsgrad": True}}, "a.yaml")
    assert spec.space[0].params["amsgrad"].args == (True,)
    assert resolve({"optimizer": "adamw", "amsgrad": True}, 2).columns()["config.amsgrad"] is True
    assert resolve({"optimizer": "adam"}, 2).columns()["config.amsgrad"] is False
    assert resolve({"optimizer": "sgd"}, 2).columns()["config.amsgrad"] is None
    with pytest.raises(ValueError, match=r"optimizer sgd does not use amsgrad \(only adam, adamw does\)"):
        parse_spec({"name": "a", "epochs": 2, "space": {"optimizer": "sgd", "amsgrad": True}}, "a.yaml")
