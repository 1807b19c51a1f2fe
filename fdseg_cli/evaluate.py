"""``fdseg evaluate``: Dice, HD95, ASSD and volumes of predictions against labels."""

from __future__ import annotations

import click

__all__ = ["evaluate"]


@click.command()
@click.argument("pred", type=click.Path(file_okay=False))
@click.argument("labels", type=click.Path(file_okay=False))
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write per-case metrics and the summary as JSON.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    help="Write one row per case and class as CSV.",
)
@click.option(
    "--dataset-json",
    type=click.Path(dir_okay=False, exists=True),
    help="dataset.json whose 'labels' name the classes [default: the dataset.json of the "
    "dataset LABELS or PRED sits in, when there is one].",
)
def evaluate(pred, labels, json_path, csv_path, dataset_json):
    """Compare the label maps in PRED with those in LABELS (matched by file name):
    per case and class Dice, 95% Hausdorff distance and average symmetric surface
    distance in mm, and volumes in mL; means and standard deviations."""
    # lazy: the metrics import scipy and nibabel; `--help` stays instant
    from fdseg_core.atomic import check_output_file
    from fdseg_core.data.layout import label_names_near, read_label_names
    from fdseg_core.metrics import evaluate_folder, write_report

    for path in (json_path, csv_path):  # before the work: an output that cannot be written
        if path:
            check_output_file(path)

    if dataset_json:
        try:
            names = read_label_names(dataset_json)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dataset-json") from None
    else:
        names, found = label_names_near(labels, pred)
        if found is not None:
            click.echo(f"class names from {found}", err=True)
    report = evaluate_folder(pred, labels, labels=names)

    def fmt(stat, digits):
        if stat.mean is None:
            return "n/a (n=0)"
        return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f} (n={stat.n})"

    columns = [("Dice", "dice", 3), ("HD95 mm", "hd95_mm", 2), ("ASSD mm", "assd_mm", 2)]
    columns += [("pred mL", "pred_ml", 3), ("ref mL", "ref_ml", 3)]
    click.echo(f"{'class':20} {'cases':>5} " + " ".join(f"{t:>24}" for t, _, _ in columns))
    absent = []
    for cls, s in report.summary.items():
        cells = " ".join(f"{fmt(s[key], digits):>24}" for _, key, digits in columns)
        click.echo(f"{cls:20} {s.n_cases:>5} {cells}")
        if s.n_absent:
            absent.append(f"{cls} in {s.n_absent}")
    click.echo(
        "n: cases with the class in the prediction or the reference (Dice, volumes) or "
        "in both (HD95, ASSD)"
        + (f"; absent from both and left out: {', '.join(absent)}" if absent else "")
    )
    # the table is on the screen before the files are written: a failed write loses
    # nothing that was computed
    write_report(report, json_path=json_path, csv_path=csv_path)
    for path in (json_path, csv_path):
        if path:
            click.echo(f"wrote {path}")
