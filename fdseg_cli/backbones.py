"""``fdseg backbones``: the registered backbones and where they come from."""

from __future__ import annotations

import json
import warnings

import click

__all__ = ["backbones"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def backbones(as_json: bool) -> None:
    """List the registered backbones: name, providing package and version, description,
    spatial dims, size divisor and where early and late fusion happen (at the backbone's
    fusion points, or by generic stems and heads). Problems with plugins are reported
    on stderr."""
    # lazy: listing the backbones loads the plugins (and torch); `--help` stays instant
    from fdseg_core.plugins import list_backbones

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        specs = list_backbones()
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    rows = [
        {
            "name": s.name,
            "package": s.package,
            "version": s.version,
            "description": s.description,
            "spatial_dims": list(s.spatial_dims),
            "size_divisor": s.size_divisor,
            "fusion_points": list(s.fusion_points),
            "early_fusion_at": "stem" if "stem" in s.fusion_points else "input stems",
            "late_fusion_at": "decoder" if "decoder" in s.fusion_points else "output head",
        }
        for s in specs
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(
        f"{'name':18} {'package':24} {'dims':6} {'divisor':>7} {'fusion points':14}  description"
    )
    for r in rows:
        pkg = f"{r['package']} {r['version'] or ''}".strip()
        dims = ",".join(f"{d}d" for d in r["spatial_dims"])
        points = ",".join(r["fusion_points"]) or "-"
        click.echo(
            f"{r['name']:18} {pkg:24} {dims:6} {r['size_divisor']:>7} {points:14}  "
            f"{r['description']}"
        )
