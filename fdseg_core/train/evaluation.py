"""One evaluation of a model on whole volumes, for every path that scores one.

Validation during training, the experiment's test evaluation and cross-validation's
pooled validation all call :func:`evaluate_volumes` (the last two through
:func:`evaluate_checkpoint`, which reads a checkpoint's model card): the sliding
window (or one pass), labels by the rule of the model's loss (softmax argmax or
sigmoid, :mod:`fdseg_core.infer.activation`), and the Dice per class.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fdseg_core.choices import DEFAULT_WINDOW_BATCH
from fdseg_core.data.preprocess import Volume, resample
from fdseg_core.infer import labels_from_probabilities, sliding_window_inference
from fdseg_core.infer.card import ModelCard
from fdseg_core.infer.sliding_window import InferenceStopped
from fdseg_core.metrics import dice_per_class

__all__ = [
    "VolumeScore",
    "evaluate_checkpoint",
    "evaluate_volumes",
    "mean_foreground",
    "nan_as_worst",
]


def nan_as_worst(dice: float) -> float:
    """A Dice to rank by: NaN (a class absent from prediction and reference) counts as
    -1, below every real score, so that a run or a mode with a real score wins."""
    return -1.0 if np.isnan(dice) else float(dice)


def mean_foreground(dice: np.ndarray) -> float:
    """The mean Dice over the foreground classes (NaN-aware); the background's alone
    when there is no foreground class."""
    return float(np.nanmean(dice[1:])) if len(dice) > 1 else float(dice[0])


@dataclass
class VolumeScore:
    """One volume, scored.

    Attributes:
        case_id: The case.
        dice: ``(num_classes,)`` float64 Dice per class (NaN: absent from both).
        labels: The predicted labels (``keep_labels``), on the grid they were scored on.
        reference: The reference labels on that grid (``keep_labels``).
        affine: The voxel-to-world affine of that grid (the case's own on its grid).
    """

    case_id: str
    dice: np.ndarray
    labels: np.ndarray | None = None
    reference: np.ndarray | None = None
    affine: np.ndarray | None = None


@torch.no_grad()
def evaluate_volumes(
    model: Callable[[torch.Tensor], torch.Tensor],
    volumes: Sequence[Volume],
    *,
    num_classes: int,
    patch_size: Sequence[int],
    overlap: float,
    device: torch.device,
    activation: str,
    target_spacing: Sequence[float] | None = None,
    case_grid: bool = False,
    keep_labels: bool = False,
    batch_size: int = DEFAULT_WINDOW_BATCH,
    should_stop: Callable[[], bool] | None = None,
    on_case: Callable[[int], None] | None = None,
) -> list[VolumeScore]:
    """Score a model on whole preprocessed volumes.

    Args:
        model: The network (in eval mode), ``(1, C, *spatial) -> (1, K, *spatial)``.
        volumes: Preprocessed volumes with labels (:class:`~fdseg_core.data.Preprocessor`).
        num_classes: Output classes, background included.
        patch_size: The window of the sliding window (one pass when a volume fits).
        overlap: Overlap of neighbouring windows.
        device: Where the model runs.
        activation: ``"softmax"`` or ``"sigmoid"``: the rule of the model's loss.
        target_spacing: The spacing the volumes were resampled to (``None``: the cases'
            own grid).
        case_grid: Score on each case's own grid, as ``fdseg predict`` writes it: the
            probabilities are resampled back before the labels are taken, and compared
            with the case's original label. Without a target spacing the two grids are
            one.
        keep_labels: Keep the predicted and reference labels (and the affine) in the
            scores, e.g. to decide post-processing.
        batch_size: Windows per forward pass (the time and memory, not the scores).
        should_stop: Asked before each volume and after each batch of windows
            (:class:`~fdseg_core.infer.sliding_window.InferenceStopped` then ends it).
        on_case: Called with the number of volumes scored after each one.

    Returns:
        One :class:`VolumeScore` per volume, in order.

    Raises:
        InferenceStopped: ``should_stop`` asked for it.
    """
    scores = []
    for vol in volumes:
        if should_stop is not None and should_stop():
            raise InferenceStopped
        image = torch.as_tensor(vol.image)[None].to(device)
        probs = sliding_window_inference(
            image,
            model,
            patch_size,
            overlap=overlap,
            device=device,
            activation=activation,
            batch_size=batch_size,
            should_stop=should_stop,
        )
        reference = vol.label
        affine = vol.loaded.affine if vol.loaded is not None else None
        if case_grid and target_spacing is not None:
            loaded = vol.loaded
            back = resample(
                probs[0].cpu().numpy(),
                target_spacing,
                loaded.spacing,
                order=1,
                shape=loaded.image.shape[1:],
            )
            probs = torch.from_numpy(back)[None]
            reference = loaded.label
        pred = labels_from_probabilities(probs, activation)[0].cpu()
        ref = torch.as_tensor(np.asarray(reference, dtype=np.int64))
        dice = dice_per_class(pred, ref, num_classes)
        score = VolumeScore(vol.case_id, np.asarray(dice, dtype=np.float64), affine=affine)
        if keep_labels:
            score.labels = pred.numpy()
            score.reference = ref.numpy()
        scores.append(score)
        if on_case is not None:
            on_case(len(scores))
    return scores


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    cases: Sequence,
    device: torch.device,
    *,
    overlap: float | None = None,
    keep_labels: bool = False,
) -> tuple[list[VolumeScore], ModelCard]:
    """Score a checkpoint on labelled cases as ``fdseg predict`` + ``fdseg evaluate``
    score it: its own input pipeline (:meth:`~fdseg_core.infer.card.ModelCard.preprocessor`),
    its window, activation and window batch, each case on its own grid.

    Args:
        checkpoint: A run's ``best.pt`` or ``last.pt``.
        cases: Labelled cases (:class:`~fdseg_core.data.Case`).
        device: Where the model runs.
        overlap: Sliding-window overlap (``None``: the run's own, the one its
            validation used).
        keep_labels: Keep each case's predicted and reference labels in the scores.

    Returns:
        ``(scores, card)``: one :class:`VolumeScore` per case, and the checkpoint's
        model card.
    """
    from fdseg_core.train.checkpoint import load_model  # the network: torch, on use

    model, card = load_model(checkpoint, map_location=device)
    prep = card.preprocessor()
    scores = evaluate_volumes(
        model.eval(),
        [prep(case) for case in cases],
        num_classes=card.num_classes,
        patch_size=card.patch_size,
        overlap=card.overlap if overlap is None else overlap,
        device=device,
        activation=card.activation,
        batch_size=card.window_batch,
        target_spacing=card.target_spacing,
        case_grid=True,
        keep_labels=keep_labels,
    )
    return scores, card
