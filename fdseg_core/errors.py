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

__all__ = ["DiskFullError", "OptionError", "OutputNotWritableError"]


class DiskFullError(OSError):
    """A write failed for lack of space; the target (and its previous content) is intact.

    The message names the file and the cause, on one line.
    """

    def __str__(self) -> str:
        return str(self.strerror)  # without OSError's "[Errno 28]" prefix


class OutputNotWritableError(PermissionError):
    """An output folder that cannot be written (read-only, or no permission); the
    message names the folder, on one line."""

    def __str__(self) -> str:
        return str(self.strerror)


class OptionError(ValueError):
    """A bad value of a named option (a :class:`ValueError`).

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
        self.template = template
        self.options = tuple(options)
        super().__init__(self.render(lambda name: name))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each option spelled by ``spell`` (a field name -> text).

        Only the ``{name}`` placeholders of :attr:`options` are replaced, so other braces
        in the message (a path, a dict) are left as they are.
        """
        text = self.template
        for name in self.options:
            text = text.replace("{" + name + "}", spell(name))
        return text
