"""``fdseg nnunet``: frequency-disentangled learning inside nnU-Net v2."""

from __future__ import annotations

import click

from fdseg_cli.main import UserInputError
from fdseg_core.integrations.nnunet.setup import (
    EXT_TRAINER_ENV,
    nnunet_available,
    setup_problems,
    trainer_folder,
)

__all__ = ["nnunet"]


@click.group()
def nnunet() -> None:
    """fdseg's trainers for nnU-Net v2's own commands (docs/nnunet.md):

    \b
    export nnUNet_extTrainer=$(fdseg nnunet path)
    nnUNetv2_train DATASET 3d_fullres 0 -tr nnUNetTrainerFDEarly
    """


@nnunet.command()
def path() -> None:
    """Print the folder to put in nnUNet_extTrainer (one line)."""
    reason = nnunet_available()
    if reason is not None:
        raise UserInputError(reason)
    click.echo(str(trainer_folder()))


@nnunet.command()
def check() -> None:
    """Check that nnU-Net's commands will find fdseg's trainers: nnunetv2 installed and
    nnUNet_extTrainer listing fdseg's trainer folder. One line per problem, exit 2."""
    problems = setup_problems()
    for line in problems:
        click.echo(f"error: {line}", err=True)
    if problems:
        raise SystemExit(2)
    click.echo(f"ok: nnU-Net finds fdseg's trainers ({EXT_TRAINER_ENV} lists {trainer_folder()})")
