"""The ``lrtune`` command: each command parses its arguments and calls one function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Learning-rate schedule sweeps for Keras convnets on Ray Tune.",
)
err = Console(stderr=True)
out = Console()

# Options several commands share, declared once.
SweepFile = Annotated[Path, typer.Argument(help="The sweep file (YAML).", show_default=False)]
DataOption = Annotated[
    Optional[str], typer.Option("--data", help="CIFAR-10 archive, folder or URI (s3://, gs://).")
]
StorageOption = Annotated[
    str, typer.Option("--storage", help="Results folder or URI; one subfolder per sweep.")
]
AddressOption = Annotated[
    Optional[str],
    typer.Option("--address", help="Ray cluster to join: 'auto' or ray://host:10001. Default: a local Ray."),
]
SetOption = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a field: KEY=VALUE, dotted for nesting.")
]
MaxConcurrentOption = Annotated[
    Optional[int], typer.Option("--max-concurrent", min=1, help="Most trials at once.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No live view; just the final table.")]


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    # Escaped: a message may hold brackets rich would take for markup (pip install 'lrtune[mlflow]').
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def sweep(
    sweep_file: SweepFile,
    data: DataOption = None,
    storage: StorageOption = "./lrtune-results",
    name: Annotated[Optional[str], typer.Option(help="Sweep name (default: the file's name:).")] = None,
    address: AddressOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted sweep of the same name.")
    ] = False,
    set_: SetOption = None,
    max_concurrent: MaxConcurrentOption = None,
    quiet: QuietOption = False,
    extend: Annotated[
        Optional[str],
        typer.Option(
            help="Add SWEEP_FILE's trials to the finished sweep of this name; trials it has are reused."
        ),
    ] = None,
):
    """Run a sweep: every trial of SWEEP_FILE on Ray Tune, results to Parquet.

    With --extend NAME, add the trials of SWEEP_FILE (a new or changed space) that sweep
    NAME lacks, as a new round of it: best, results and report then see old and new together.
    """
    from lrtune.data import DataError
    from lrtune.engine.errors import StorageError, SweepError
    from lrtune.engine.rounds import extend_sweep
    from lrtune.engine.sink import SinkError
    from lrtune.engine.sweep import run_sweep
    from lrtune.spec import SweepFileError, load_spec

    overrides = list(set_ or [])
    if extend is not None and name is not None and name != extend:
        _fail(f"--name {name} and --extend {extend}: the extended sweep keeps its name; give one of them")
    if name is not None:
        overrides.append(f"name={name}")
    try:
        spec = load_spec(sweep_file, overrides)
        if extend is not None:
            extension = extend_sweep(
                spec,
                extend,
                storage=storage,
                data=data,
                address=address,
                resume=resume,
                max_concurrent=max_concurrent,
                quiet=quiet,
                console=err,
            )
            if extension.round is None:
                out.print(
                    f"{extension.sweep_dir}: nothing to add; the sweep has all {extension.reused} "
                    f"trials of {sweep_file} already"
                )
                return
            spec = spec.model_copy(update={"name": extend})
            out.print(
                f"{extend}: round {extension.round.index} ran {len(extension.round.trials)} new trials"
                + (
                    f"; {extension.reused} of {sweep_file}'s trials were in the sweep already"
                    if extension.reused
                    else ""
                ),
                highlight=False,
            )
            outcome = extension.outcome
        else:
            outcome = run_sweep(
                spec,
                storage=storage,
                data=data,
                address=address,
                resume=resume,
                max_concurrent=max_concurrent,
                quiet=quiet,
                console=err,
            )
    except (SinkError, StorageError) as e:
        _fail(str(e), code=3)
    except (SweepFileError, DataError, SweepError) as e:
        _fail(str(e))
    _print_outcome(spec, outcome)
    if outcome.interrupted:
        _interrupted(outcome)
    if outcome.all_failed:
        _fail(
            f"every trial failed ({outcome.counts.get('error', 0)}); see the error column of {outcome.sweep_dir}/trials.parquet",
            code=1,
        )


def _interrupted(outcome) -> None:
    """Exit 130 (as a shell does after Ctrl-C), naming the unfinished trials and the command that finishes them."""
    import shlex

    unfinished = outcome.counts.get("running", 0) + outcome.counts.get("pending", 0)
    again = shlex.join(["lrtune", *sys.argv[1:], *([] if "--resume" in sys.argv else ["--resume"])])
    _fail(
        f"interrupted: {unfinished} trials unfinished, their progress kept; finish them with: {again}",
        code=130,
    )


def _print_outcome(spec, outcome) -> None:
    """The sweep's last screen: trials by status, then its configurations ranked as `lrtune best` ranks them."""
    from lrtune.engine.progress import ranking_table
    from lrtune.results.choice import rank
    from lrtune.results.choice_text import unranked
    from lrtune.results.trials import read_results

    counts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in outcome.counts.items() if n)
    out.print(f"[bold]{spec.name}[/]: {sum(outcome.counts.values())} trials ({counts})")
    try:
        ranking = rank(read_results(outcome.sweep_dir))
    except (FileNotFoundError, ValueError) as e:  # no epoch recorded, or no trial with a finite metric
        out.print(f"no ranking: {e}", highlight=False, soft_wrap=True)
    else:
        reason = unranked(ranking)
        if reason is not None:
            out.print(reason, highlight=False, soft_wrap=True)
        else:
            out.print(ranking_table(ranking))
    for note in outcome.notes:
        out.print(note, highlight=False, soft_wrap=True)
    rows = outcome.trials.to_pylist()
    errors = [r for r in rows if r["status"] == "error"]
    for r in errors[:3]:
        out.print(f"[red]error[/] {r['trial_id']}: {r['error']}", highlight=False)
    failures = getattr(outcome, "view_failures", ())
    for line in failures[:5]:
        out.print(f"[yellow]not shown[/] {line}", highlight=False, soft_wrap=True)
    if failures:
        out.print(
            f"{len(failures)} tracker failures in all: {outcome.sweep_dir}/trackers.json", soft_wrap=True
        )
    out.print(
        f"results: {outcome.sweep_dir}/metrics (Parquet), {outcome.sweep_dir}/trials.parquet", soft_wrap=True
    )


@app.command()
def find(
    sweep_file: SweepFile,
    data: DataOption = None,
    storage: StorageOption = "./lrtune-results",
    name: Annotated[
        Optional[str], typer.Option(help="Results subfolder (default: <the file's name:>-lr-range).")
    ] = None,
    steps: Annotated[
        int,
        typer.Option(
            min=2,
            help="Training steps of the first ramp (the lr rises each step); a curve that cannot be read "
            "runs again twice as long, up to --max-steps.",
        ),
    ] = 100,
    max_steps: Annotated[
        Optional[int],
        typer.Option(
            min=2,
            help="The longest ramp (default: the steps of one trial of the sweep, epochs x steps per epoch; "
            "--max-steps equal to --steps: one ramp).",
        ),
    ] = None,
    min_lr: Annotated[float, typer.Option(help="The lr at the first step.")] = 1e-7,
    max_lr: Annotated[float, typer.Option(help="The lr at the last step.")] = 10.0,
    repeats: Annotated[
        Optional[int], typer.Option(min=1, help="Tests per arm, one seed each (default: the file's repeats).")
    ] = None,
    address: AddressOption = None,
    max_concurrent: MaxConcurrentOption = None,
    set_: SetOption = None,
):
    """The learning-rate range test for every arm of SWEEP_FILE: suggested lr ranges as a space: fragment."""
    from lrtune.data import DataError
    from lrtune.engine.errors import Interrupted, StorageError, SweepError
    from lrtune.engine.find import run_find
    from lrtune.spec import SweepFileError, load_spec

    try:
        spec = load_spec(sweep_file, list(set_ or []))
        outcome = run_find(
            spec, storage=storage, data=data, name=name, steps=steps, max_steps=max_steps, min_lr=min_lr, max_lr=max_lr,
            repeats=repeats, address=address, max_concurrent=max_concurrent, source=str(sweep_file),
        )  # fmt: skip
    except StorageError as e:
        _fail(str(e), code=3)
    except Interrupted as e:
        _fail(str(e), code=130)
    except (SweepFileError, DataError, SweepError) as e:
        _fail(str(e))
    from lrtune.results.lr_range import format_suggestions

    sys.stdout.write(format_suggestions(outcome))
    if not outcome.arms:
        _fail(f"no range test produced a curve; see {outcome.sweep_dir}", code=1)


@app.command()
def validate(
    sweep_file: SweepFile,
    data: DataOption = None,
    set_: SetOption = None,
):
    """Check a sweep file and print how many trials it would start; a model of your own is built once."""
    from lrtune.data import DataError
    from lrtune.engine.driver import check_sweep_model
    from lrtune.engine.errors import SweepError
    from lrtune.spec import SweepFileError, load_spec

    try:
        spec = load_spec(sweep_file, list(set_ or []))
        model = check_sweep_model(spec, data)
    except (SweepFileError, DataError, SweepError) as e:
        _fail(f"{sweep_file}: {e}" if isinstance(e, SweepError) else str(e))
    arms = ", ".join(a.label for a in spec.space)
    out.print(
        f"{sweep_file}: ok: {spec.name}: {spec.trial_count()} trials x {spec.epochs} epochs, "
        f"arms: {arms}, scheduler: {spec.scheduler.name}, search: {spec.search}",
        highlight=False,
        soft_wrap=True,
    )
    if model is not None:
        out.print(
            f"model {model}" if not model.startswith("model ") else model, highlight=False, soft_wrap=True
        )


@app.command()
def schedules(
    plot: Annotated[Optional[Path], typer.Option(help="Draw LR against epoch into this PNG.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs to draw.")] = 100,
    steps_per_epoch: Annotated[
        int, typer.Option(min=1, help="Iterations per epoch (per-step schedules).")
    ] = 157,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="A schedule parameter, e.g. step.drop=0.25 or lr=0.05."),
    ] = None,
):
    """List the schedules with their formulas; --plot draws them."""
    from rich.markup import escape

    from lrtune.results.plots import format_params, plot_schedules, schedule_catalogue

    try:
        catalogue = schedule_catalogue(list(set_ or []), epochs=epochs)
    except ValueError as e:
        _fail(str(e))
    for label, formula, _, params in catalogue:
        out.print(f"[bold]{label}[/]  {escape(formula)}", highlight=False, soft_wrap=True)
        out.print("    " + escape(format_params(params)), highlight=False, soft_wrap=True)
    from lrtune.training.optimizers import NOTES

    for name, note in NOTES.items():
        out.print(f"[bold]optimizer {name}[/]  {escape(note)}", highlight=False, soft_wrap=True)
    if plot is not None:
        plot_schedules(
            [(label, name, p) for label, _, name, p in catalogue],
            plot,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
        )
        out.print(f"wrote {plot}")


@app.command()
def results(
    sweep_dir: Annotated[str, typer.Argument(help="A sweep's folder: <storage>/<name> (path or URI).")],
    sql: Annotated[
        Optional[str],
        typer.Option(help="A DuckDB query; the metrics are the table `metrics`, trials `trials`."),
    ] = None,
):
    """Summarise a sweep's results (also while it runs), or query them with SQL."""
    from lrtune.results.summary import summarize

    try:
        if sql is not None:
            from lrtune.results.sql import query

            table = query(sweep_dir, sql)
            out.print(table.to_pandas().to_string(index=False), highlight=False, soft_wrap=True)
            return
        out.print(summarize(sweep_dir), highlight=False, soft_wrap=True)
    except (FileNotFoundError, ValueError, ImportError) as e:
        _fail(str(e))


@app.command()
def best(
    sweep_dir: Annotated[str, typer.Argument(help="A sweep's folder: <storage>/<name>.")],
    metric: Annotated[Optional[str], typer.Option(help="Metric to choose on (default: the sweep's).")] = None,
    family: Annotated[Optional[str], typer.Option(help="Only this family (step, time, adam, ...).")] = None,
    at: Annotated[
        str, typer.Option(help="Take each trial's metric at its 'final' or 'best' epoch.")
    ] = "final",
    format_: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
):
    """Print the best configuration (mean over repeats), or the ones within noise of it.

    On a PBT sweep: the best member of the final population and the schedule it learned.
    """
    from lrtune.results.best import choose, format_choice

    if at not in ("final", "best"):
        _fail(f"--at must be final or best, got {at!r}")
    if format_ not in ("yaml", "json"):
        _fail(f"--format must be yaml or json, got {format_!r}")
    try:
        choice = choose(sweep_dir, metric=metric, family=family, at=at)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    sys.stdout.write(format_choice(choice, format_))


@app.command()
def confirm(
    sweep_dir: Annotated[str, typer.Argument(help="A finished sweep's folder: <storage>/<name>.")],
    top: Annotated[int, typer.Option(help="Most configurations per round, the best included.")] = 3,
    repeats: Annotated[int, typer.Option(help="New seeds per configuration and round.")] = 3,
    budget_epochs: Annotated[
        Optional[int],
        typer.Option(
            help="Most epochs all rounds may train (default: three rounds: 3 x top x repeats x epochs)."
        ),
    ] = None,
    data: Annotated[
        Optional[str], typer.Option(help="The sweep's data (default: the one it recorded in data.json).")
    ] = None,
    address: AddressOption = None,
    max_concurrent: MaxConcurrentOption = None,
    quiet: QuietOption = False,
    format_: Annotated[str, typer.Option("--format", help="yaml or json (the final pick).")] = "yaml",
):
    """Run the configurations within noise of the best again, with new seeds, until it is separated.

    Each round adds `repeats` trials of the best and of the next configurations within noise
    (at most `top` in all) to the same sweep; it stops when the best is separated from the
    rest, or before a round that would pass --budget-epochs. Then prints the pick as `best` does.
    """
    import shlex

    from lrtune.data import DataError
    from lrtune.engine.confirm import confirm as run_confirm
    from lrtune.engine.errors import StorageError, SweepError
    from lrtune.engine.sink import SinkError
    from lrtune.results.best import format_choice

    if format_ not in ("yaml", "json"):
        _fail(f"--format must be yaml or json, got {format_!r}")
    try:
        result = run_confirm(
            sweep_dir,
            top=top,
            repeats=repeats,
            budget_epochs=budget_epochs,
            data=data,
            address=address,
            max_concurrent=max_concurrent,
            quiet=quiet,
            console=err,
        )
    except (SinkError, StorageError) as e:
        _fail(str(e), code=3)
    except (SweepError, DataError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    trials = sum(len(r.trials) for r in result.rounds)
    ran = (
        f"ran round{'s' if len(result.rounds) > 1 else ''} "
        + ", ".join(str(r.index) for r in result.rounds)
        + f" ({trials} trials, {result.epochs_spent} of {result.budget_epochs} budget epochs)"
        if result.rounds
        else f"ran no round (budget {result.budget_epochs} epochs)"
    )
    if result.stopped == "interrupted":
        again = shlex.join(["lrtune", *sys.argv[1:]])
        err.print(f"confirm {result.sweep_dir}: {ran}", highlight=False, soft_wrap=True)
        _fail(
            f"interrupted: round {result.rounds[-1].index} did not finish; finish it with: {again}", code=130
        )
    if result.stopped == "separated":
        verdict = "the best is separated from every other configuration"
    else:
        others = len(result.choice.within_noise)
        verdict = (
            f"budget reached: {others} configuration{'s' if others != 1 else ''} still within noise of the best; "
            "raise --budget-epochs or --repeats to go on"
        )
    if result.left_out:
        verdict += f" ({result.left_out} more within noise were left out by --top {top})"
    err.print(f"confirm {result.sweep_dir}: {ran}; {verdict}", highlight=False, soft_wrap=True)
    sys.stdout.write(format_choice(result.choice, format_))


@app.command()
def importance(
    sweep_dir: Annotated[str, typer.Argument(help="A sweep's folder: <storage>/<name>.")],
    metric: Annotated[Optional[str], typer.Option(help="Metric to explain (default: the sweep's).")] = None,
    evaluator: Annotated[str, typer.Option(help="fanova (variance shares) or ped-anova.")] = "fanova",
    figure: Annotated[
        Optional[str], typer.Option(help="PNG to draw the shares in (default: <sweep_dir>/importance.png).")
    ] = None,
):
    """Which hyperparameters matter: each one's share of the metric's variance over the configurations."""
    from lrtune.results.importance import figure_importance, format_importance
    from lrtune.results.importance import importance as explain

    try:
        result = explain(sweep_dir, metric=metric, evaluator=evaluator)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    sys.stdout.write(format_importance(result))
    path = (
        figure
        if figure is not None
        else (None if "://" in sweep_dir else f"{sweep_dir.rstrip('/')}/importance.png")
    )
    if path is not None:
        figure_importance(result).savefig(path, dpi=100)
        sys.stdout.write(f"figure: {path}\n")


@app.command()
def report(
    sweep_dir: Annotated[str, typer.Argument(help="A sweep's folder: <storage>/<name>.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="HTML file to write.")] = None,
):
    """Write a self-contained HTML report with figures (PNG files beside it)."""
    from lrtune.results.report import write_report

    try:
        files = write_report(sweep_dir, output)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    out.print(f"wrote {files.html}")
    for png in files.pngs:
        out.print(f"      {png}")
