"""``fdseg robustness``: trained models scored on perturbed test images."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["robustness"]


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--dataset",
    type=click.Path(file_okay=False, exists=True),
    help="The labelled dataset whose test cases (imagesTs + labelsTs) are perturbed "
    "[default for an experiment folder: its own dataset and test cases].",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--kinds",
    default=None,
    help="Comma-separated perturbation kinds [default: all; see the list below].",
)
@click.option(
    "--levels",
    default=None,
    help="Comma-separated levels of every kind: 1 (the weakest strength) to 3 (the "
    "strongest) [default: 1,2,3].",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the perturbations.")
@click.option(
    "--beta",
    default=None,
    type=float,
    help="Cut-off of the spectral kinds (relative width of the low band) [default: 0.1].",
)
@click.option(
    "--max-cases",
    default=None,
    type=click.IntRange(min=1),
    help="Perturb only the first N test cases (a quick look).",
)
@click.option(
    "--device",
    default="auto",
    type=click.Choice(["auto", "cpu", "cuda"]),
    show_default=True,
    help="Where the models run.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Score nothing and write nothing: say, per model, how many of the scores the "
    "audit asks OUT already holds and how many it would make.",
)
def robustness(
    models, dataset, out, kinds, levels, seed, beta, max_cases, device, progress, dry_run
):
    """Score trained MODELS on perturbed versions of labelled test images.

    MODELS are checkpoints, run folders (best.pt), cross-validation folders (the
    ensemble of their folds) or one experiment folder (every finished run, with the
    experiment's dataset and test cases). Each test case is perturbed once per kind and
    strength (three strengths per kind, and the clean image), with the same seed for
    every model, and scored as `fdseg predict` + `fdseg evaluate` score it. Kinds: MRI
    artifacts from TorchIO (bias, motion, ghosting, spike, noise, blur, anisotropy;
    pip install 'fdseg[robustness]'), the low or the high band scaled down by fdseg's
    band operators (low_band, high_band), and intensity curves that survive
    normalisation (gamma, contrast). Writes OUT/robustness.csv (every score),
    OUT/robustness.json (suite, models, mean Dice and drop per perturbation),
    OUT/robustness.png and, for an experiment, OUT/robustness_vs_baseline.md (each
    method against the baseline, paired by seed and case, at seed level).

    Every score is also kept in OUT/robustness.scores.json. Run again into the same
    OUT, the audit takes the scores it finds there for the same images, cases and
    checkpoints and scores only the rest: SIGTERM or Ctrl-C stops it with every score
    saved (exit 143 or 130), the same command goes on, and an experiment that has
    finished more runs gets only those scored. --dry-run says what a call would take
    from OUT and what it would score, model by model, without loading a model."""
    # lazy: the audit imports torch; `--help` stays instant
    from fdseg_core.data import load_dataset
    from fdseg_core.robustness.scoring import (
        audit,
        coverage,
        experiment_models,
        is_experiment,
        labelled_cases,
        models_from_paths,
        suite_from,
    )
    from fdseg_core.train import resolve_device

    names = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
    chosen = [v.strip() for v in levels.split(",") if v.strip()] if levels else None
    if chosen and not all(v.isdigit() for v in chosen):
        raise click.BadParameter(f"expected levels 1 to 3, got {levels!r}", param_hint="--levels")
    # an unknown kind or level ends here, before any work
    suite = suite_from(names, seed, beta, [int(v) for v in chosen] if chosen else None)
    experiments = [m for m in models if is_experiment(m)]
    if experiments:
        if len(models) > 1:
            raise click.BadParameter(
                "give one experiment folder alone (its runs are the models)", param_hint="MODELS"
            )
        found, exp_dataset, case_ids = experiment_models(experiments[0])
        root = Path(dataset) if dataset else exp_dataset
        cases = labelled_cases(root, case_ids)
    else:
        if not dataset:
            raise click.BadParameter(
                "give the labelled dataset whose test cases to perturb", param_hint="--dataset"
            )
        found, root = models_from_paths(models), Path(dataset)
        cases = labelled_cases(root)
    if max_cases is not None:
        cases = cases[:max_cases]
    if suite.needs_torchio:
        from fdseg_core.robustness.perturbations import require_torchio  # lazy: in the body

        require_torchio()
    if dry_run:
        click.echo(coverage(found, cases, suite, out).report)
        return
    labels = dict(load_dataset(root).labels)
    result = audit(
        found,
        cases,
        suite,
        out,
        labels=labels,
        device=resolve_device(device),
        progress=progress,
    )
    click.echo(result.report)
