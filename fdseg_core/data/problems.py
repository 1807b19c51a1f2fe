"""A problem of a dataset: what is wrong, where, and how bad (error or warning).

The layout reader and the case checks both report into a list of :class:`Problem`; a
strict caller raises the first error, ``fdseg check`` lists them all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ERROR", "WARNING", "Problem"]

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One problem of a dataset.

    Attributes:
        severity: ``"error"`` (training would fail or be wrong) or ``"warning"`` (worth
            knowing before training).
        kind: A short name for scripts (``"missing_file"``, ``"grid"``,
            ``"non_integer_label"``, ``"unlisted_label"``, ``"non_consecutive_labels"``,
            ``"non_finite"``, ``"unreadable"``, ``"empty_label"``, ``"rare_class"``,
            ``"mixed_orientation"``, ``"mixed_spacing"``, ``"mixed_dtype"``,
            ``"too_small"``, ``"case_count"``).
        message: One line naming the case and the file, and what to do.
        case: The case id, when the problem is one case's.
        file: The file, when there is one.
        missing: Whether the problem is a missing file (the strict readers raise
            ``FileNotFoundError`` for these).
    """

    severity: str
    kind: str
    message: str
    case: str | None = None
    file: str | None = None
    missing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
