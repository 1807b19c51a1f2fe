"""``fdseg experiment``: the paper's training-size x method x seed protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from fdseg_cli.options import (
    count_option,
    explicit_options,
    int_list,
    memory_option,
    out_option,
    training_options,
)
from fdseg_cli.train import echo_recipe, given_fields
from fdseg_core.choices import CASE_DRAWS, DEFAULT_MARGIN, FUSIONS, LAYOUTS, MAX_SEEDS, N_RESAMPLES

if TYPE_CHECKING:  # the report imports scipy and matplotlib: only when the command runs
    from fdseg_core.experiment.report import SummaryRow

__all__ = ["experiment"]


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False, exists=True))
@out_option("Experiment folder (runs, tables, plot).")
@click.option(
    "--train-sizes", default="2,4,8", show_default=True, help="Comma-separated training-set sizes."
)
@click.option(
    "--fusion",
    "fusions",
    default=",".join(FUSIONS),
    show_default=True,
    help="Comma-separated methods; 'none' is the baseline.",
)
@count_option("--seeds", default=3, help="Seeds per (size, method).")
@click.option(
    "--case-draw",
    type=click.Choice(CASE_DRAWS),
    default="independent",
    show_default=True,
    help="How each run's training cases are drawn from the fold: a draw per seed and size "
    "(independent), or the first N of one permutation per seed (nested: a seed's smaller "
    "sets are part of its larger ones, so its sizes are not independent).",
)
@click.option(
    "--layouts",
    default=None,
    help=f"Comma-separated band layouts to compare ({','.join(LAYOUTS)}): each fusion runs "
    "once per layout [default: the --layout option's].",
)
@click.option(
    "--checkpoint",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Evaluate each run's best validation checkpoint (the one early stopping selects, "
    "as `fdseg predict` takes), or its last one.",
)
@count_option(
    "--bootstrap",
    minimum=100,
    default=N_RESAMPLES,
    help="Bootstrap resamples of the confidence intervals.",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 100, min_open=True, max_open=True),
    default=100 * DEFAULT_MARGIN,
    show_default=True,
    help="Equivalence margin of the verdicts, in Dice points: 'no effect beyond ±margin' "
    "only where a seed-level interval lies within it; an interval that includes 0 and "
    "reaches beyond is 'not detected', with the gains and losses that remain possible.",
)
@click.option(
    "--target-effect",
    type=click.FloatRange(0, 100, min_open=True),
    default=None,
    help="Also print how many seeds each (size, method) needs to detect a true mean gain "
    "of this many Dice points with 80 % power, from the spread of the seeds in OUT (a "
    "pilot); with --report-only, nothing is trained.",
)
@click.option(
    "--plan/--no-plan",
    "planning",
    default=True,
    show_default=True,
    help="Plan target spacing, patch and batch size from the dataset, as `fdseg train` "
    "does, when you give no --patch-size, --target-spacing or --whole-volume; recorded "
    "in OUT/plans.json and OUT/experiment.json.",
)
@click.option(
    "--list",
    "list_runs",
    is_flag=True,
    help="Print the grid's runs in their fixed order (training sizes, then seeds, then "
    "methods), one per line with its index and whether it has finished; train nothing.",
)
@click.option(
    "--shard",
    default=None,
    metavar="K/N",
    help="Run only the unfinished runs of shard K of N (runs whose index i has "
    "i % N == K-1): a job array of N tasks covers the grid, e.g. "
    "--shard $((SLURM_ARRAY_TASK_ID+1))/N.",
)
@count_option(
    "--jobs",
    default=1,
    help="Runs at once on this machine, one process each; the CPU threads (or the visible "
    "GPUs, one per run) are divided among them.",
)
@click.option(
    "--report-only",
    is_flag=True,
    help="Train nothing: rebuild the tables and plots from the results there are, and say "
    "how many runs are missing.",
)
@click.option(
    "--slurm",
    is_flag=True,
    help="Submit the unfinished runs as one SLURM job array through submitit "
    "(pip install 'fdseg[slurm]'), then wait for them, a line each time the counts of "
    "pending, running, finished and failed runs change, and report (see --no-wait). "
    "Needs SLURM's sbatch on PATH: without it, one line says so and nothing is written.",
)
@click.option(
    "--slurm-local",
    is_flag=True,
    help="Run the same job array as processes on this machine through submitit's local "
    "executor, without SLURM (to try a submission, or on a machine of your own).",
)
@click.option("--slurm-partition", default=None, help="SLURM partition of the array's tasks.")
@click.option("--slurm-account", default=None, help="SLURM account the tasks are charged to.")
@click.option("--slurm-qos", default=None, help="SLURM quality of service of the tasks.")
@click.option(
    "--slurm-constraint", default=None, help="SLURM node features the tasks need (--constraint)."
)
@count_option("--slurm-time", default=240, help="Time limit of each task, in minutes.")
@count_option("--slurm-mem", default=32, help="Memory of each task, in GB.")
@count_option("--slurm-gpus", minimum=0, default=1, help="GPUs of each task.")
@count_option("--slurm-cpus", default=8, help="CPU cores of each task.")
@count_option("--slurm-parallelism", default=8, help="Tasks of the array that run at once.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="With --slurm: wait for the array and write the report, or return at once "
    "(a later --report-only reports what has finished).",
)
@memory_option
@training_options
def experiment(
    dataset,
    out,
    train_sizes,
    fusions,
    seeds,
    case_draw,
    layouts,
    checkpoint,
    bootstrap,
    margin,
    target_effect,
    planning,
    list_runs,
    shard,
    jobs,
    report_only,
    slurm,
    slurm_local,
    slurm_partition,
    slurm_account,
    slurm_qos,
    slurm_constraint,
    slurm_time,
    slurm_mem,
    slurm_gpus,
    slurm_cpus,
    slurm_parallelism,
    wait,
    memory_gb,
    **opts,
):
    """Train every (training size, method, seed) on DATASET, evaluate each on the same
    held-out test cases, and write a table (CSV, Markdown), a plot of Dice against training
    size and the training curves of every run. Finished runs are
    skipped, so an interrupted experiment resumes."""
    # the experiment imports torch: only when the command runs, so --help is instant
    from fdseg_core.experiment.protocol import run_list
    from fdseg_core.experiment.slurm import ArraySubmission
    from fdseg_core.jobs import experiment_job, run_experiment_job
    from fdseg_core.parallel import parse_shard

    sizes = int_list(train_sizes, "--train-sizes")
    methods = tuple(m.strip() for m in fusions.split(",") if m.strip())
    bad = [m for m in methods if m not in FUSIONS]
    if bad or not methods:
        raise click.BadParameter(
            f"unknown methods {bad}; expected {', '.join(FUSIONS)}", param_hint="--fusion"
        )
    layout_list = ()
    if layouts:
        if "layout" in explicit_options(["layout"]):
            raise click.UsageError("--layouts and --layout exclude each other")
        layout_list = tuple(x.strip() for x in layouts.split(",") if x.strip())
        bad_layouts = [x for x in layout_list if x not in LAYOUTS]
        if bad_layouts or not layout_list:
            raise click.BadParameter(
                f"unknown layouts {bad_layouts}; expected {', '.join(LAYOUTS)}",
                param_hint="--layouts",
            )
    slurm_options = None
    if slurm and slurm_local:
        raise click.UsageError("--slurm and --slurm-local exclude each other")
    if slurm or slurm_local:
        from fdseg_core.experiment.slurm import SlurmOptions  # lazy: on use

        slurm_options = SlurmOptions(
            partition=slurm_partition,
            account=slurm_account,
            qos=slurm_qos,
            constraint=slurm_constraint,
            time_min=slurm_time,
            mem_gb=slurm_mem,
            gpus_per_task=slurm_gpus,
            cpus_per_task=slurm_cpus,
            parallelism=slurm_parallelism,
            local=slurm_local,
        )
        if not report_only:
            slurm_options.check()  # no SLURM here: one line, before anything is printed
    given = given_fields(opts)
    config, job = experiment_job(
        dataset,
        out,
        given=given,
        planning=planning,
        memory_gb=memory_gb,
        progress=opts["progress"],
        train_sizes=sizes,
        fusions=methods,
        seeds=seeds,
        case_draw=case_draw,
        n_resamples=bootstrap,
        layouts=layout_list,
        checkpoint=checkpoint,
        margin=margin / 100,
    )
    shard_k_n = parse_shard(shard) if shard is not None else None
    if list_runs:
        for run, finished in run_list(config):
            click.echo(f"{run.index}\t{run.name}\t{'finished' if finished else 'to run'}")
        return
    for line in job.notes:
        click.echo(line, err=True)
    per_run = {"fusion": f"per run, from --fusion {fusions}"}
    if layout_list:
        per_run["layout"] = f"per run, from --layouts {layouts}"
    echo_recipe(job.config, job.applied, per_run=per_run)
    result = run_experiment_job(
        config,
        job,
        progress=job.config.progress,
        shard=shard_k_n,
        jobs=jobs,
        report_only=report_only,
        slurm=slurm_options,
        wait=wait,
    )
    if isinstance(result, ArraySubmission):
        n = len(result.submitted)
        if result.local:
            click.echo(f"ran {n} runs through submitit's local executor on this machine")
        elif n:
            click.echo(f"submitted {n} runs as job array {result.array}")
        else:
            click.echo("nothing to submit: every run has its result")
        if result.report is None:
            click.echo(f"not waiting: `fdseg experiment ... --out {out} --report-only` reports")
            return
        report = result.report
    else:
        report = result
    click.echo(report.markdown)
    curves = f", {report.curves}" if report.curves else ""
    click.echo(f"wrote {out}/table.csv, {out}/table.md, {report.plot}{curves}")
    if target_effect is not None:
        _echo_seeds_needed(report.table, target_effect)
    missing = report.missing
    click.echo(
        f"trained {report.trained} runs here; "
        + (f"{len(missing)} runs have no result yet" if missing else "every run has its result")
    )


def _echo_seeds_needed(table: Sequence[SummaryRow], points: float) -> None:
    """One line per (size, method): the seeds a true mean gain of ``points`` needs."""
    from fdseg_core.experiment.report import seeds_table  # lazy: the report imports scipy

    rows = seeds_table(table, points / 100)
    if not rows:
        click.echo(
            f"seeds for +{points:g} points: no (size, method) has a paired difference to "
            "the baseline yet (run the baseline and a method with 2 or more seeds)"
        )
        return
    click.echo(
        f"seeds needed to detect a true mean gain of +{points:g} points (80 % power, "
        "two-sided 5 % t test, from the spread of the seeds so far):"
    )
    for row in rows:
        sd = row.sd_seeds
        needed = row.seeds_needed
        spread = "unknown (1 seed)" if sd != sd else f"{100 * sd:.2f} points"
        answer = needed if needed is not None else f"more than {MAX_SEEDS} (or unknown)"
        click.echo(
            f"  {row.train_size} cases, {row.method}: {answer} "
            f"(between-seed SD {spread} from {row.n_seeds} seeds)"
        )
