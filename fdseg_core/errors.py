"""Errors that name a configuration option.

The core speaks in field names (``n_folds``, ``train_sizes``, ``resume``): that is what
an API user passes. The command line renders the same error with its flags
(``--folds``, ``--train-sizes``, ``--resume``). An :class:`OptionError` carries a
template with one ``{field}`` placeholder per option it names, so that each caller
shows the names its user typed.

This module imports nothing from fdseg; every layer may use it. It also holds the
errors of writing outputs (:class:`DiskFullError`, :class:`OutputNotWritableError`),
which the atomic writers and the run lock both raise.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "DiskFullError",
    "FdsegError",
    "InputError",
    "Interrupted",
    "MissingExtraError",
    "NamesOptions",
    "OptionError",
    "OutputNotWritableError",
    "OutputWriteError",
    "TrainingDivergedError",
    "TrainingInterrupted",
]


class FdsegError(Exception):
    """The base of every error fdseg raises on purpose; anything else that reaches the
    command line (a ``ValueError`` from inside torch or numpy, say) is an internal error."""


class InputError(FdsegError, ValueError):
    """The user's mistake: a bad value, file or dataset (a :class:`ValueError`, so that
    API callers catching ``ValueError`` keep working). The command line prints it as one
    line and exits 2."""


class MissingExtraError(InputError, ImportError):
    """An optional extra that a command needs is not installed; the message names it
    (``pip install 'fdseg[slurm]'``).

    Args:
        message: What needs it and how to install it, or just what needs it (then the
            install line is added).
        extra: The extra's name in ``pyproject.toml``.
    """

    def __init__(self, message: str, extra: str) -> None:
        self.extra = extra
        if "pip install" not in message:
            message = f"{message} needs the {extra} extra: pip install 'fdseg[{extra}]'"
        super().__init__(message)


class DiskFullError(FdsegError, OSError):
    """A write failed for lack of space; the target (and its previous content) is intact.

    The message names the file and the cause, on one line.
    """

    def __str__(self) -> str:
        return str(self.strerror)  # without OSError's "[Errno 28]" prefix


class OutputNotWritableError(FdsegError, PermissionError):
    """An output folder that cannot be written (read-only, or no permission); the
    message names the folder, on one line."""

    def __str__(self) -> str:
        return str(self.strerror)


class OutputWriteError(FdsegError, OSError):
    """An output that could not be written once the work was done (a folder made
    read-only meanwhile, a vanished mount): the message names the user's path, never a
    temp file, on one line. Nothing half-written is left, and no earlier output is
    replaced."""

    def __str__(self) -> str:
        return str(self.strerror)


class NamesOptions:
    """A message that names options by a template: each caller spells the names its
    user typed (field names in the API, flags on the command line).

    Args:
        template: The message, with ``{name}`` where an option is named.
        options: The option (field) names the template uses.
    """

    template: str
    options: tuple[str, ...]

    def _named(self, template: str, options: tuple[str, ...]) -> str:
        self.template = template
        self.options = tuple(options)
        return self.render(lambda name: name)

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each option spelled by ``spell`` (a field name -> text).

        Only the ``{name}`` placeholders of :attr:`options` are replaced, so other braces
        in the message (a path, a dict) are left as they are.
        """
        text = self.template
        for name in self.options:
            text = text.replace("{" + name + "}", spell(name))
        return text


class OptionError(NamesOptions, InputError):
    """A bad value of a named option (an :class:`InputError`, so a ``ValueError``).

    Args:
        template: The message, with ``{name}`` where an option is named, e.g.
            ``"{n_folds} 5 needs at least 5 training cases"``.
        options: The option (field) names the template uses.

    Example:
        >>> e = OptionError("{train_sizes} 9: fold 0 holds only 8 cases", "train_sizes")
        >>> str(e)
        'train_sizes 9: fold 0 holds only 8 cases'
        >>> e.render(lambda name: "--" + name.replace("_", "-"))
        '--train-sizes 9: fold 0 holds only 8 cases'
    """

    def __init__(self, template: str, *options: str) -> None:
        super().__init__(self._named(template, options))


class TrainingDivergedError(NamesOptions, FdsegError, RuntimeError):
    """The training loss became NaN or infinite: the run stopped at that step, with its
    earlier checkpoints kept. Not an input error (exit code 1 on the command line); the
    message names the options that are the likely causes.

    Attributes:
        step: The optimiser step (1-based, over the whole run) whose loss was not finite.
    """

    def __init__(self, template: str, *options: str, step: int) -> None:
        self.step = step
        super().__init__(self._named(template, options))


class Interrupted(FdsegError, RuntimeError):
    """Work stopped by a signal (SIGTERM from a scheduler, SIGINT from Ctrl-C) after
    saving what it had done; the message says where, and how to go on.

    Attributes:
        signal_name: ``"SIGTERM"`` or ``"SIGINT"``.
        exit_code: The conventional exit code: 128 + the signal number (143, 130).
    """

    def __init__(self, message: str, *, signal_name: str, exit_code: int) -> None:
        self.signal_name = signal_name
        self.exit_code = exit_code
        super().__init__(message)


class TrainingInterrupted(NamesOptions, Interrupted):
    """A run stopped by a signal after saving ``last.pt`` at the current step.

    Attributes:
        signal_name: ``"SIGTERM"`` or ``"SIGINT"``.
        exit_code: The conventional exit code: 128 + the signal number (143, 130).
        step: The optimiser steps done, saved in ``last.pt``.
    """

    def __init__(
        self, template: str, *options: str, signal_name: str, exit_code: int, step: int
    ) -> None:
        self.step = step
        super().__init__(
            self._named(template, options), signal_name=signal_name, exit_code=exit_code
        )
