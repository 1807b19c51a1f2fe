"""The ``fdseg`` command group.

Subcommands live in their own modules and are imported only when invoked (or
listed by ``--help``), so the group starts fast. How an error ends, in one line on
stderr (``--debug`` shows the full traceback instead):

* user and input errors raised by the core's checks (``ValueError`` and fdseg's
  ``OptionError``, ``FileNotFoundError``, a folder another run holds, an output folder
  that is not writable, ...): exit code 2;
* a full disk, naming the file (nothing earlier is lost: every write is atomic), and a
  training loss that diverged: exit code 1;
* SIGTERM or SIGINT during training: ``last.pt`` saved at the current step; during a
  robustness audit: the scores so far saved in its folder; exit code 143 or 130;
* anything else is an internal error of fdseg, not the user's: exit code 1, with how to
  see the traceback and where to report it.

Under ``torchrun`` only rank 0 prints the line; every rank exits with the same code.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time

import click

from fdseg_core.errors import (
    DiskFullError,
    InputError,
    Interrupted,
    NamesOptions,
    OutputWriteError,
    TrainingDivergedError,
)

__all__ = ["cli", "COMMANDS", "UserInputError"]

#: name -> ("module:attribute", one-line help) of every subcommand, imported lazily;
#: the help text lives here so that ``fdseg --help`` imports no subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("fdseg_cli.demo:demo", "Split and fuse a built-in volume with every backend."),
    "backbones": ("fdseg_cli.backbones:backbones", "List the registered backbones."),
    "trainers": ("fdseg_cli.trainers:trainers", "List the trainers `fdseg train --trainer` runs."),
    "train": ("fdseg_cli.train:train", "Train a (frequency-disentangled) segmentation model."),
    "predict": ("fdseg_cli.predict:predict", "Segment images with a checkpoint or an ONNX file."),
    "export": ("fdseg_cli.export:export", "Export a checkpoint to ONNX (band operators included)."),
    "evaluate": ("fdseg_cli.evaluate:evaluate", "Dice, HD95, ASSD and volumes of predictions."),
    "overlay": ("fdseg_cli.overlay:overlay", "Pictures of a case (or a dataset) with its labels."),
    "phantom": ("fdseg_cli.phantom:phantom", "Write a synthetic QSM midbrain dataset."),
    "plan": ("fdseg_cli.plan:plan", "Plan spacing, patch and batch size from a dataset."),
    "experiment": ("fdseg_cli.experiment:experiment", "Training size x method x seed protocol."),
    "bench": ("fdseg_cli.bench:bench", "Time the band operators on every backend."),
    "data": ("fdseg_cli.data:data", "Public datasets (the MSD tasks): download, check, unpack."),
    "robustness": (
        "fdseg_cli.robustness:robustness",
        "Score trained models on perturbed test images (artifacts, bands, intensity).",
    ),
    "check": ("fdseg_cli.check:check", "Every problem of a dataset at once (and a remapped copy)."),
    "nnunet": ("fdseg_cli.nnunet:nnunet", "Trainers for nnU-Net v2's own commands (path, check)."),
}

#: Exceptions that mean "the user gave us something wrong": exit code 2, one line. A
#: plain ValueError is not one: raised inside a library, it is an internal error.
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


class UserInputError(click.ClickException):
    """A usage or input error: printed as one line, exit code 2."""

    exit_code = 2


#: Loggers whose INFO lines are progress (an epoch, a validation, an audited case): standard
#: output, beside the run's results; every other message goes to standard error.
_PROGRESS_LOGGERS = ("fdseg_core.train.loop", "fdseg_core.robustness.scoring")


class _EchoHandler(logging.Handler):
    """Messages of the core's loggers as one line (``warning:`` prefixed), written above
    any progress bar on the screen (never inside one), flushed at once: a training run's
    and an audit's progress lines on standard output, notes and warnings on standard error."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm  # lazy: --help stays instant

        text = record.getMessage()
        stream = sys.stderr
        if record.levelno >= logging.WARNING:
            text = f"warning: {text}"
        elif record.name in _PROGRESS_LOGGERS:
            stream = sys.stdout
        tqdm.write(text, file=stream)
        stream.flush()


def _route_core_logs() -> None:
    """Show the INFO messages of ``fdseg_core`` on stderr, once per process."""
    core = logging.getLogger("fdseg_core")
    if not any(isinstance(h, _EchoHandler) for h in core.handlers):
        core.addHandler(_EchoHandler())
    core.setLevel(logging.INFO)
    core.propagate = False


#: Where an internal error is reported.
REPORT_TO = "the fdseg developers (the issue tracker of the repository fdseg came from)"


def _rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


#: Seconds a rank other than 0 waits before it exits on an error. torchrun's agent stops
#: every rank once one exits non-zero; the wait lets rank 0 print its line first.
QUIET_RANK_GRACE_S = 3.0


class _QuietError(click.ClickException):
    """An error that a rank other than 0 ends with: rank 0 prints the one line."""

    def show(self, file=None) -> None:
        time.sleep(QUIET_RANK_GRACE_S)


def _fail(message: str, code: int) -> click.ClickException:
    error: click.ClickException = (
        UserInputError(message) if code == 2 else click.ClickException(message)
    )
    if _rank() != 0:
        error = _QuietError(message)
    error.exit_code = code
    return error


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, NamesOptions):  # the core names fields; here we name the flags
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
        except Interrupted as exc:  # saved what it had done: say so, and how to go on
            if _rank() == 0:
                click.echo(_one_line(exc), err=True)
            sys.exit(exc.exit_code)
        except (DiskFullError, OutputWriteError, TrainingDivergedError) as exc:  # exit 1
            if debug:
                raise
            raise _fail(_one_line(exc), 1) from exc
        except _INPUT_ERRORS as exc:
            if debug:
                raise
            check = getattr(exc, "check", None)  # a dataset's errors: all of them first
            if check is not None and len(check.errors) > 1 and _rank() == 0:
                for problem in check.errors:
                    click.echo(f"error: {problem.message}", err=True)
            raise _fail(_one_line(exc), 2) from exc
        except KeyboardInterrupt:
            if _rank() == 0:
                click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug of fdseg's, not the user's mistake
            if debug:
                raise
            raise _fail(
                f"internal error ({type(exc).__name__}: {_one_line(exc)}); rerun with "
                f"`fdseg --debug ...` to see the traceback, and report it to {REPORT_TO}",
                1,
            ) from exc


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
