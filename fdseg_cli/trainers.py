"""``fdseg trainers``: the trainers ``fdseg train --trainer`` selects."""

from __future__ import annotations

import inspect
import json

import click

__all__ = ["trainers"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def trainers(as_json: bool) -> None:
    """List the trainers: fdseg's own and those plugins register, by the name
    `fdseg train --trainer` takes, with the module that defines each and the first
    line of its description."""
    # lazy: listing the trainers loads torch and the plugins; `--help` stays instant
    from fdseg_core.train.trainer import list_trainers

    rows = [
        {
            "name": name,
            "module": cls.__module__,
            "description": (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " "),
        }
        for name, cls in list_trainers().items()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['description']} ({r['module']})")
