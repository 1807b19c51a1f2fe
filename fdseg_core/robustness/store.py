"""The scores an audit has made so far, kept in its output folder so that it resumes.

``OUT/robustness.scores.json`` holds every score an audit into ``OUT`` has made: per
model (its name, the SHA-256 of its checkpoint files and, for an experiment's run, of
its ``result.json``), per test case (the SHA-256 of its image and label files) and per
perturbation (``kind@strength``), the Dice of each class; and the key of the perturbed
images (suite version, seed, cut-off, band axes). An audit into the same folder takes
the scores it finds for the same images of the same cases and the same checkpoints, and
scores only the rest. So an audit stopped by a signal (or cut short) goes on where it
stopped, an audit of an experiment that has finished more runs scores only the new
ones, and an audit with more kinds or levels scores only those. An experiment's run
whose checkpoint is gone (checkpoints stay on the machine a run trained on; this file
can be committed with the results) keeps the scores stored under the same
``result.json``. Models given as networks in memory have no checkpoint to identify
them: they are scored every time and never stored.

The file is written atomically after each case, at most every
:data:`SAVE_EVERY_S` seconds in between, and when a signal stops the audit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdseg_core.atomic import atomic_write_text
from fdseg_core.errors import InputError
from fdseg_core.robustness.perturbations import Perturbation, PerturbationSuite

__all__ = ["SAVE_EVERY_S", "SCORES", "ModelKey", "ScoreStore", "file_digest"]

logger = logging.getLogger(__name__)

#: The file, in the audit's output folder.
SCORES = "robustness.scores.json"

#: Seconds between two saves while a case is being scored.
SAVE_EVERY_S = 30.0

_FORMAT = 1


def file_digest(paths: Iterable[str | Path]) -> str:
    """The SHA-256 of the files' contents, in order (what identifies a checkpoint, an
    ensemble's folds, or a case's image and label files)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class ModelKey:
    """What identifies a model's stored scores.

    Attributes:
        checkpoint: The SHA-256 of its checkpoint files (:func:`file_digest`), or
            ``None`` when they are gone.
        run: The SHA-256 of its run's ``result.json``, for an experiment's run (what
            identifies it once its checkpoint is gone), else ``None``.
    """

    checkpoint: str | None
    run: str | None = None


class ScoreStore:
    """The scores of one audit folder: read at the start, added to as models are
    scored, saved atomically.

    Args:
        path: ``OUT/robustness.scores.json``.
        suite: The audit's suite (its :meth:`~PerturbationSuite.images_key` must match
            the stored one's).
        models: ``{name: key}`` of the audit's models; ``None`` for a model that is
            never stored (a network in memory). A key without a checkpoint digest takes
            the scores stored under the same run digest, and adds none.
        cases: ``{case id: digest}`` of the audit's cases.

    Raises:
        InputError: The file exists but is not an audit's scores, or holds scores of
            other perturbed images or of other files under a case's id (the message
            names the file and how to start again); before any work.
    """

    def __init__(
        self,
        path: Path,
        suite: PerturbationSuite,
        models: Mapping[str, ModelKey | None],
        cases: Mapping[str, str],
    ) -> None:
        self.path = path
        self.images = suite.images_key()
        self.identity = dict(models)
        self.cases = dict(cases)
        self.reused = 0
        self.made = 0
        self._dirty = False
        self._saved_at = time.monotonic()
        self._models: dict[str, dict[str, Any]] = {}
        self._stored_cases: dict[str, str] = {}
        self._unknown: set[str] = set()
        #: The models whose stored scores were made with other weights (a checkpoint that
        #: has changed since, or for a run whose checkpoint is gone another
        #: ``result.json``): set aside, never served.
        self.changed: set[str] = set()
        if path.is_file():
            self._read()
        for name, key in list(self.identity.items()):
            entry = self._models.get(name)
            if key is None:
                continue
            if key.checkpoint is None:  # gone: the scores of the same run, if any
                if entry is None or key.run is None or entry.get("run") != key.run:
                    self._unknown.add(name)
                    if entry is not None:
                        self.changed.add(name)
                continue
            if entry is not None and entry["digest"] != key.checkpoint:
                logger.info(
                    f"{path}: {name}'s checkpoint changed since it was scored: scoring it again"
                )
                self.changed.add(name)
                entry = None
            if entry is None:
                entry = self._models[name] = {"digest": key.checkpoint, "scores": {}}
            if key.run is not None and entry.get("run") != key.run:
                entry["run"] = key.run
                self._dirty = True

    def _read(self) -> None:
        again = "give another output folder, or move it away to start again"
        try:
            data = json.loads(self.path.read_text())
            stored_images, models, cases = data["images"], data["models"], data["cases"]
            ok = data.get("format") == _FORMAT and isinstance(models, dict)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{self.path} cannot be read as an audit's scores ({exc}); {again}"
            ) from exc
        if not ok:
            raise InputError(f"{self.path} is not in the format of this version's audit; {again}")
        if stored_images != self.images:
            raise InputError(
                f"{self.path} holds scores of other perturbed images ({stored_images}; this "
                f"audit makes {self.images}); {again}"
            )
        for case_id, digest in cases.items():
            if case_id in self.cases and self.cases[case_id] != digest:
                raise InputError(
                    f"{self.path} scored another image or label under the case id "
                    f"{case_id!r}; {again}"
                )
        self._stored_cases = dict(cases)
        self._models = models

    def get(self, model: str, case_id: str, p: Perturbation) -> dict[str, float] | None:
        """The stored Dice per class of one model on one perturbed case (``nan`` where
        undefined), or ``None``."""
        entry = self._models.get(model)
        if entry is None or self.identity.get(model) is None or model in self._unknown:
            return None
        dice = entry["scores"].get(case_id, {}).get(p.name)
        if dice is None:
            return None
        return {k: float("nan") if v is None else float(v) for k, v in dice.items()}

    def missing(self, models: Sequence[str], case_id: str, p: Perturbation) -> list[str]:
        """The models (of ``models``, in order) without a stored score of this case and
        perturbation."""
        return [m for m in models if self.get(m, case_id, p) is None]

    def put(self, model: str, case_id: str, p: Perturbation, dice: Mapping[str, float]) -> None:
        """Keep one score (in memory until the next :meth:`save`)."""
        self.made += 1
        key = self.identity.get(model)
        if key is None or key.checkpoint is None:
            return
        scores = self._models[model]["scores"].setdefault(case_id, {})
        scores[p.name] = {k: None if math.isnan(v) else float(v) for k, v in dice.items()}
        self._dirty = True

    def save(self, *, force: bool = False) -> None:
        """Write the file atomically if something new was kept, and ``force`` or
        :data:`SAVE_EVERY_S` seconds have passed since the last save."""
        if not self._dirty:
            return
        if not force and time.monotonic() - self._saved_at < SAVE_EVERY_S:
            return
        cases = {**self._stored_cases, **self.cases}
        payload = {"format": _FORMAT, "images": self.images, "cases": cases, "models": self._models}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(payload, separators=(",", ":")) + "\n")
        self._dirty = False
        self._saved_at = time.monotonic()

    @property
    def count(self) -> int:
        """The scores the file holds once saved (every model's)."""
        return sum(len(v) for e in self._models.values() for v in e["scores"].values())
