"""Prediction of cases from files, folders or a dataset's ``imagesTs``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fdseg_core.choices import DEFAULT_OVERLAP, DEFAULT_WINDOW_BATCH
from fdseg_core.data.checks import DatasetCheck, DatasetCheckError, inspect_case
from fdseg_core.data.io import load_case, save_nifti
from fdseg_core.data.layout import Case, group_channel_files, load_dataset, strip_nifti_ending
from fdseg_core.data.preprocess import resample
from fdseg_core.data.problems import ERROR
from fdseg_core.errors import InputError
from fdseg_core.infer.activation import labels_from_probabilities
from fdseg_core.infer.card import ModelCard
from fdseg_core.infer.overlay import render_overlay
from fdseg_core.infer.postprocess import keep_largest_per_class
from fdseg_core.infer.sliding_window import sliding_window_inference, tta_passes
from fdseg_core.progress import progress_bar
from fdseg_core.runlock import RunLock

logger = logging.getLogger(__name__)

__all__ = [
    "AGREE",
    "check_ensemble",
    "gather_inputs",
    "predict_cases",
    "predict_ensemble",
    "tta_axes",
]


def gather_inputs(inputs: Iterable[str | Path], n_channels: int) -> list[Case]:
    """Cases from NIfTI files, folders of NIfTI files, or a dataset root (its ``imagesTs``).

    Files named ``{case}_{0000}`` (4-digit channel suffixes) are grouped into one case.

    Raises:
        FileNotFoundError: A path that does not exist.
        ValueError: No NIfTI file, or a case whose channel count is wrong.
    """
    cases: dict[str, list[Path]] = {}
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        if path.is_dir() and (path / "dataset.json").is_file():
            info = load_dataset(path)
            if not info.test:
                raise InputError(f"dataset {path} has no imagesTs cases to predict")
            for case in info.test:
                cases[case.case_id] = list(case.image_paths)
        elif path.is_dir():
            for case, files in group_channel_files(path).items():
                cases[case] = files
        else:
            stem = strip_nifti_ending(path.name)
            if stem is None:
                raise InputError(f"input {path} is not a NIfTI file (.nii or .nii.gz)")
            if n_channels > 1 and stem[-5:-4] == "_" and stem[-4:].isdigit():
                cases.setdefault(stem[:-5], []).append(path)
            else:
                key = stem[:-5] if stem[-5:-4] == "_" and stem[-4:].isdigit() else stem
                cases[key] = [path]
    if not cases:
        raise InputError("no NIfTI input found")
    out = []
    for case_id, files in sorted(cases.items()):
        files = sorted(files)
        if len(files) != n_channels and not (len(files) == 1 and n_channels > 1):
            raise InputError(
                f"case {case_id!r}: {len(files)} channel files, the model expects {n_channels}"
            )
        out.append(Case(case_id, tuple(files)))
    return out


#: What every member of an ensemble must agree on (they are averaged voxel by voxel).
AGREE = ("labels", "in_channels", "normalization", "activation")


def check_ensemble(cards: Sequence[ModelCard], names: Sequence[str]) -> None:
    """Members of an ensemble must agree on their classes, input channels,
    normalisation and activation.

    Args:
        cards: Each member's :class:`~fdseg_core.infer.card.ModelCard`.
        names: Each member's file, for the message.

    Raises:
        ValueError: One line naming the first disagreement and the two files.
    """
    first = cards[0]
    for card, name in zip(cards[1:], names[1:], strict=True):
        for key in AGREE:
            a, b = _agreeing(first, key), _agreeing(card, key)
            if a != b:
                raise InputError(
                    f"the models disagree on {key}: {names[0]} has {a!r}, {name} has {b!r}; "
                    "an ensemble averages models of the same classes, channels, "
                    "normalisation and activation"
                )


def _agreeing(card: ModelCard, key: str) -> Any:
    value = getattr(card, key)
    if key == "labels":
        return dict(sorted(dict(value).items()))
    return list(value) if isinstance(value, tuple) else value


def check_inputs(cases: Sequence[Case]) -> None:
    """Read every input image once before any prediction, with the checks of
    :func:`fdseg_core.data.checks.inspect_case` (readable, numeric, finite, channels on
    one grid): a bad input ends the command before any output is written.

    Raises:
        DatasetCheckError: Every problem found (the message names the first).
    """
    problems = [p for case in cases for p in inspect_case(case, set())[1] if p.severity == ERROR]
    if problems:
        where = str(Path(cases[0].image_paths[0]).parent) if cases else "the inputs"
        raise DatasetCheckError(DatasetCheck(where, tuple(problems), (), {}))


def tta_axes(cards: Sequence[ModelCard]) -> tuple[tuple[int, ...], str | None]:
    """The spatial axes test-time flips may use for these models, and a line to say
    when that is fewer than all three.

    A model is flipped only along axes it saw flipped in training (``flip_axes`` of its
    card: all three with augmentation, none without), as nnU-Net mirrors only along the
    axes its training mirrored: a model that never saw a flipped image may fail on one
    (an MSD hippocampus, cropped around one hemisphere, lost 60 Dice points). An
    ensemble takes the axes every member saw flipped. A file that does not record them
    (an ONNX file exported before they were recorded) is taken to have seen every axis.
    """
    axes = {0, 1, 2}
    unknown = False
    for card in cards:
        if card.flip_axes is None:
            unknown = True
        else:
            axes &= set(card.flip_axes)
    if axes == {0, 1, 2}:
        note = (
            "test-time flips: the model does not record the flips of its training; "
            "flipping every axis"
            if unknown
            else None
        )
        return (0, 1, 2), note
    if not axes:
        return (), (
            "test-time flips are off: the model was trained without flips (no augmentation), "
            "so flipped images are ones it never saw; predicting without them"
        )
    return tuple(sorted(axes)), f"test-time flips along the axes {sorted(axes)} only"


def predict_cases(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    card: ModelCard,
    cases: Sequence[Case],
    out_dir: str | Path,
    **options: Any,
) -> list[Path]:
    """Segment cases with one model; see :func:`predict_ensemble` (the same, with a
    single member) for the options.

    ``model`` is a PyTorch model (moved to ``device``) or any callable from a batch of
    windows to logits, such as :class:`~fdseg_core.export.OnnxModel`.
    """
    return predict_ensemble([(model, card)], cases, out_dir, **options)


def predict_ensemble(
    members: Sequence[tuple[nn.Module | Callable[[torch.Tensor], torch.Tensor], ModelCard]],
    cases: Sequence[Case],
    out_dir: str | Path,
    *,
    overlap: float = DEFAULT_OVERLAP,
    tta: bool = False,
    save_probabilities: bool = False,
    overlay: bool = False,
    device: torch.device | str = "cpu",
    batch_size: int = DEFAULT_WINDOW_BATCH,
    progress: bool = True,
    keep_largest: str | Mapping[int, str] = "none",
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Segment cases with one model or the average of several, and write ``{case}.nii.gz``
    label maps on each input's grid.

    Each member's image is normalised (and resampled) exactly as during its training
    (its :class:`~fdseg_core.infer.card.ModelCard`: normalisation, target spacing,
    window), predicted
    with :func:`sliding_window_inference`, and its probabilities brought back to the
    input grid; the members' probabilities are averaged (softmax or sigmoid, as each
    model was trained: :mod:`fdseg_core.infer.activation`), and the label of each voxel
    follows from the average by that activation's rule. The map is written with the
    input's affine and header, optionally after removing all but the largest connected
    component per class (:mod:`fdseg_core.infer.postprocess`). Optionally
    ``{case}_probabilities.nii.gz`` (4D, classes last) and ``overlays/{case}.png``. The
    folder is held (:class:`~fdseg_core.runlock.RunLock`) while it is written.

    Args:
        members: ``(model, card)`` pairs: a PyTorch model (moved to ``device``) or any
            callable from a batch of windows to logits (e.g.
            :class:`~fdseg_core.export.OnnxModel`), and its model card.
        cases: The cases (:func:`gather_inputs`).
        out_dir: The output folder.
        overlap: Sliding-window overlap.
        tta: Flip test-time augmentation, along the axes the models saw flipped in
            training (:func:`tta_axes`).
        save_probabilities: Also write the averaged probabilities.
        overlay: Also write PNG overlays.
        device: Where PyTorch models run.
        batch_size: Windows per forward pass (the time and memory, not the result).
        progress: Show a progress bar over cases.
        keep_largest: ``"none"``, ``"class"`` or ``"hemisphere"`` for every class, or a
            mode per class value (the decision of a cross-validation).
        names: Each member's file, for error messages.

    Raises:
        ValueError: An output path would overwrite one of the inputs, or members that
            disagree (:func:`check_ensemble`).
        RunLockedError: Another live fdseg process writes into ``out_dir``.
    """
    if not members:
        raise InputError("predict needs at least one model")
    check_inputs(cases)
    names = list(names) if names is not None else [f"model {i}" for i in range(len(members))]
    check_ensemble([m for _, m in members], names)
    activation = members[0][1].activation
    card0 = members[0][1]
    out_dir = Path(out_dir)
    inputs = {p.resolve() for c in cases for p in c.image_paths}
    device = torch.device(device)
    runners = []
    for model, card in members:
        if isinstance(model, nn.Module):
            model = model.to(device).eval()
        runners.append((model, card, card.preprocessor()))
    written = []
    flips: tuple[int, ...] = ()
    if tta:
        flips, note = tta_axes([m for _, m in members])
        if note:
            logger.warning(note)
    with RunLock(out_dir, command="fdseg predict"):
        passes = len(runners) * tta_passes(len(flips))
        for index, case in enumerate(
            progress_bar(cases, progress=progress, desc="predict", unit="case"), start=1
        ):
            if flips:  # TTA is slow: a line per case (above the bar when there is one)
                logger.info(
                    f"predict {case.case_id} ({index} of {len(cases)}): {passes} passes "
                    "over the volume (test-time flips)"
                )
            target = out_dir / f"{case.case_id}.nii.gz"
            prob_path = out_dir / f"{case.case_id}_probabilities.nii.gz"
            for p in (target, prob_path):
                if p.resolve() in inputs:
                    raise InputError(f"refusing to overwrite input file {p}; choose another --out")
            loaded = load_case(case, with_label=False)
            probs = None
            for model, card, prep in runners:
                p = _member_probabilities(
                    model, card, prep, loaded, overlap, flips, device, batch_size, activation
                )
                probs = p if probs is None else probs + p
            probs = probs / len(runners)
            seg = labels_from_probabilities(probs, activation, dim=0).astype(np.uint8)
            if keep_largest != "none":
                seg = keep_largest_per_class(seg, keep_largest, affine=loaded.affine)
            save_nifti(seg, loaded.affine, target, header=loaded.header, dtype=np.uint8)
            written.append(target)
            if save_probabilities:
                save_nifti(
                    np.moveaxis(probs, 0, -1).astype(np.float32),
                    loaded.affine,
                    prob_path,
                    header=loaded.header,
                )
            if overlay:
                render_overlay(
                    loaded.image[0],
                    seg,
                    out_dir / "overlays" / f"{case.case_id}.png",
                    labels=dict(card0.labels),
                    affine=loaded.affine,
                    title=f"{case.case_id}: prediction",
                )
    return written


def _member_probabilities(
    model, card: ModelCard, prep, loaded, overlap, flips, device, batch_size, activation
) -> np.ndarray:
    """One member's probabilities of a case, on the case's own grid ``(K, X, Y, Z)``."""
    vol = prep(loaded, with_label=False)
    image = torch.from_numpy(vol.image)[None]
    probs = sliding_window_inference(
        image,
        model,
        card.patch_size,
        overlap=overlap,
        tta_flips=flips,
        device=device,
        batch_size=batch_size,
        activation=activation,
    )[0].numpy()
    if card.target_spacing:
        probs = resample(
            probs, card.target_spacing, loaded.spacing, order=1, shape=loaded.image.shape[1:]
        )
    return probs
