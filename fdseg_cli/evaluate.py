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
    help="dataset.json whose 'labels' name the classes.",
)
def evaluate(pred, labels, json_path, csv_path, dataset_json):
    """Compare the label maps in PRED with those in LABELS (matched by file name):
    per case and class Dice, 95% Hausdorff distance and average symmetric surface
    distance in mm, and volumes in mL; means and standard deviations."""
    import json
    from pathlib import Path

    from fdseg_core.metrics import evaluate_folder, write_report

    names = None
    if dataset_json:
        raw = json.loads(Path(dataset_json).read_text())
        lab = raw.get("labels", {})
        if lab and all(str(k).isdigit() for k in lab):  # MSD: index -> name
            names = {str(v): int(k) for k, v in lab.items()}
        else:
            names = {str(k): int(v) for k, v in lab.items()}
    report = evaluate_folder(pred, labels, labels=names)
    write_report(report, json_path=json_path, csv_path=csv_path)

    def fmt(stat, scale=1.0, digits=3):
        if stat["mean"] is None:
            return "n/a"
        return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"

    click.echo(
        f"{'class':20} {'n':>3} {'Dice':>15} {'HD95 (mm)':>15} {'ASSD (mm)':>15} "
        f"{'pred mL':>15} {'ref mL':>15}"
    )
    for cls, s in report["summary"].items():
        click.echo(
            f"{cls:20} {s['dice']['n']:>3} {fmt(s['dice']):>15} "
            f"{fmt(s['hd95_mm'], digits=2):>15} {fmt(s['assd_mm'], digits=2):>15} "
            f"{fmt(s['pred_ml'], digits=3):>15} {fmt(s['ref_ml'], digits=3):>15}"
        )
    for path in (json_path, csv_path):
        if path:
            click.echo(f"wrote {path}")
