"""``lrtune confirm``: settle a pick the sweep could not separate, with new seeds.

When :func:`lrtune.results.best.choose` finds configurations within noise of
the best, the honest next step is more repeats of exactly those. Each round
runs the best and the (at most ``top - 1``) next configurations within noise
``repeats`` more times, on seeds no trial of the sweep has used, as a round
of the same sweep (:mod:`lrtune.engine.rounds`): same folder, same Parquet,
``best``/``results``/``report`` see old and new together. Rounds go on until
the best is separated from every other configuration or the next round would
spend more than ``budget_epochs`` epochs. Every round runs its trials to the
end (``fifo``): an early-stopping scheduler would cut the very repeats that
are meant to settle the comparison.

New seeds are shared across the configurations of a round (each is
compared on the same initialisations, as the seed rule does within a
sweep: :func:`lrtune.training.trial.trial_seed`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lrtune.engine.errors import StorageError, SweepError
from lrtune.engine.rounds import (
    Round,
    base_unfinished,
    confirm_trials,
    open_round,
    read_rounds,
    recorded_data,
    run_round,
)
from lrtune.folder import SweepFolder

__all__ = ["Confirmation", "confirm"]


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """What :func:`confirm` did and found.

    ``rounds`` are the rounds it ran (a resumed one included), ``epochs_spent``
    their epochs (trials x epochs), ``stopped`` why it stopped: ``separated``
    (no configuration within noise of the best), ``budget`` (the next round
    would pass ``budget_epochs``), ``interrupted`` (Ctrl-C stopped a round;
    the same call finishes it). ``choice`` is ``best``'s choice over the
    whole sweep afterwards; ``left_out`` counts configurations within noise
    that ``top`` kept out of the rounds.
    """

    sweep_dir: str
    rounds: tuple[Round, ...]
    epochs_spent: int
    budget_epochs: int
    stopped: str
    choice: Any  # lrtune.results.best.Choice
    left_out: int


def confirm(
    sweep_dir: str,
    *,
    top: int = 3,
    repeats: int = 3,
    budget_epochs: int | None = None,
    data: str | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    quiet: bool = False,
    console=None,
    model=None,
) -> Confirmation:
    """Run the configurations within noise of the best again until the best is separated.

    Args:
        sweep_dir: ``<storage>/<name>`` of a finished sweep.
        top: most configurations per round, the best included (>= 2).
        repeats: new seeds per configuration and round (>= 1).
        budget_epochs: most epochs (trials x epochs per trial) all rounds
            of this call may train; default ``3 * top * repeats * epochs``
            (three full rounds).
        data: the sweep's data; default the file or the ``data.json`` source.
        address, max_concurrent, quiet, console: as :func:`lrtune.engine.sweep.run_sweep`.
        model: the Python function a sweep of one was run with (``run_sweep(model=...)``).

    Raises:
        SweepError: no such sweep, a PBT sweep, an
            unfinished sweep or ``--extend`` round, another driver on it,
            bad ``top``/``repeats``/``budget_epochs``.
        ValueError: the sweep has no finished trial to compare.
    """
    from lrtune.engine.driver import Driver
    from lrtune.results.best import choose
    from lrtune.results.tables import load_trials
    from lrtune.spec import Scheduler, parse_spec

    if top < 2:
        raise SweepError(
            f"--top {top}: confirm compares the best with at least one other configuration (>= 2)"
        )
    if repeats < 1:
        raise SweepError(f"--repeats {repeats}: at least 1 new seed per configuration and round")
    folder = SweepFolder(sweep_dir)
    sweep_dir, name = folder.path, folder.name
    try:
        saved = folder.read_spec()
    except OSError as e:
        raise StorageError(f"cannot read --storage {sweep_dir}: {e}") from None
    if saved is None:
        raise SweepError(f"{sweep_dir}: no sweep here (no sweep.yaml); give <storage>/<name> of a sweep")
    spec = parse_spec(saved, f"{sweep_dir}/sweep.yaml")
    if spec.scheduler.name == "pbt":
        raise SweepError(
            f"{sweep_dir}: a PBT sweep's members share weights and have no repeats to add; "
            "replay the learned schedule `lrtune best` prints, with repeats, as a new sweep"
        )
    spec = spec.model_copy(
        update={
            "name": name,
            "scheduler": Scheduler(fifo={}),
            "search": "grid",
            "repeats": 1,
            "num_samples": 1,
        }
    )
    budget = budget_epochs if budget_epochs is not None else 3 * top * repeats * spec.epochs
    if budget < 1:
        raise SweepError(f"--budget-epochs {budget_epochs}: must be at least 1")
    data = data or spec.data.path or recorded_data(sweep_dir)
    run = dict(quiet=quiet, console=console)
    driver = Driver(folder, spec, data=data, address=address, max_concurrent=max_concurrent, model=model)
    with driver:
        driver.lock()
        rounds = read_rounds(sweep_dir)
        pending = open_round(sweep_dir, rounds)
        if pending is not None and pending.kind != "confirm":
            raise SweepError(
                f"{sweep_dir}: round {pending.index} (--extend) did not finish; finish it first with "
                f"`lrtune sweep <the file it ran> --extend {name} --resume`"
            )
        if pending is None and base_unfinished(sweep_dir):
            raise SweepError(
                f"{sweep_dir}: the sweep has trials that did not finish; finish it first with "
                f"`lrtune sweep <its file> --name {name} --resume`"
            )
        driver.start(same_data=True)
        ran: list[Round] = []
        spent = 0
        interrupted = False
        if pending is not None:  # an interrupted confirm: finish its round first
            interrupted = run_round(driver, pending, resume=True, **run).interrupted
            ran.append(pending)
            spent += len(pending.trials) * spec.epochs
        index = rounds[-1].index + 1 if rounds else 1
        while True:
            choice = choose(sweep_dir)
            if interrupted:  # Ctrl-C: the round is left for the same command to finish
                stopped = "interrupted"
                break
            contenders = [choice.best, *choice.within_noise]
            if len(contenders) == 1:
                stopped = "separated"
                break
            picked = contenders[:top]
            cost = len(picked) * repeats * spec.epochs
            if spent + cost > budget:
                stopped = "budget"
                break
            trials = load_trials(sweep_dir).to_pylist()
            arms = {t["trial_id"]: t["arm"] for t in trials}
            first = max((t["seed"] for t in trials if t["seed"] is not None), default=-1) + 1
            configs = [(c.config, arms.get(c.trial_ids[0]), c.n) for c in picked]
            planned = Round(
                index=index,
                kind="confirm",
                spec=spec.to_yaml_dict(),
                trials=tuple(confirm_trials(configs, range(first, first + repeats))),
            )
            interrupted = run_round(driver, planned, **run).interrupted
            ran.append(planned)
            spent += cost
            index += 1
    return Confirmation(
        sweep_dir=sweep_dir,
        rounds=tuple(ran),
        epochs_spent=spent,
        budget_epochs=budget,
        stopped=stopped,
        choice=choice,
        left_out=max(0, len(contenders) - top),
    )
