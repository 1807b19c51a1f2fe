"""The ``fdseg`` command group.

Subcommands live in their own modules and are imported only when invoked (or
listed by ``--help``), so the group starts fast. User and input errors raised by
the core (``ValueError``, ``TypeError``, ``FileNotFoundError``, a folder another run
holds, ...) become one line on stderr and exit code 2; a full disk becomes one line
naming the file and exit code 1 (nothing earlier is lost: every write is atomic);
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from fdseg_core.atomic import DiskFullError
from fdseg_core.errors import OptionError

__all__ = ["cli", "COMMANDS", "UserInputError"]

#: name -> ("module:attribute", one-line help) of every subcommand, imported lazily;
#: the help text lives here so that ``fdseg --help`` imports no subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("fdseg_cli.demo:demo", "Split and fuse a built-in volume with every backend."),
    "backbones": ("fdseg_cli.backbones:backbones", "List the registered backbones."),
    "train": ("fdseg_cli.train:train", "Train a (frequency-disentangled) segmentation model."),
    "predict": ("fdseg_cli.predict:predict", "Segment images with a checkpoint or an ONNX file."),
    "export": ("fdseg_cli.export:export", "Export a checkpoint to ONNX (band operators included)."),
    "evaluate": ("fdseg_cli.evaluate:evaluate", "Dice, HD95, ASSD and volumes of predictions."),
    "phantom": ("fdseg_cli.phantom:phantom", "Write a synthetic QSM midbrain dataset."),
    "plan": ("fdseg_cli.plan:plan", "Plan spacing, patch and batch size from a dataset."),
    "experiment": ("fdseg_cli.experiment:experiment", "Training size x method x seed protocol."),
    "bench": ("fdseg_cli.bench:bench", "Time the band operators on every backend."),
    "nnunet": ("fdseg_cli.nnunet:nnunet", "Trainers for nnU-Net v2's own commands (path, check)."),
}

#: Exceptions that mean "the user gave us something wrong": exit code 2, one line.
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


class UserInputError(click.ClickException):
    """A usage or input error: printed as one line, exit code 2."""

    exit_code = 2


class _EchoHandler(logging.Handler):
    """Messages of the core's loggers as one line on stderr (``warning:`` prefixed)."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"warning: {text}"
        click.echo(text, err=True)


def _route_core_logs() -> None:
    """Show the INFO messages of ``fdseg_core`` on stderr, once per process."""
    core = logging.getLogger("fdseg_core")
    if not any(isinstance(h, _EchoHandler) for h in core.handlers):
        core.addHandler(_EchoHandler())
    core.setLevel(logging.INFO)
    core.propagate = False


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, OptionError):  # the core names fields; here we name the flags
        # options.py builds options from TrainConfig: imported on this error path only,
        # so that `fdseg --help` stays light
        from fdseg_cli.options import flag_of

        text = exc.render(flag_of)
    text = " ".join(text.split())
    return text or type(exc).__name__


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DiskFullError as exc:  # not the user's input: exit 1, still one line
            if debug:
                raise
            raise click.ClickException(_one_line(exc)) from exc
        except _INPUT_ERRORS as exc:
            if debug:
                raise
            raise UserInputError(_one_line(exc)) from exc
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="fdseg", prog_name="fdseg")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Frequency-disentangled learning for 3D medical image segmentation.

    Fu et al., "Frequency Disentangled Learning for Segmentation of Midbrain
    Structures from Quantitative Susceptibility Mapping Data", arXiv 2302.12980.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _route_core_logs()


def main() -> None:  # pragma: no cover - thin wrapper for ``python -m fdseg_cli``
    cli(prog_name="fdseg")
