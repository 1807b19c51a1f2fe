"""Prediction of cases from files, folders or a dataset's ``imagesTs``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fdseg_core.data.io import load_case, save_nifti
from fdseg_core.data.layout import Case, group_channel_files, load_dataset, strip_nifti_ending
from fdseg_core.data.preprocess import Preprocessor, resample
from fdseg_core.infer.activation import labels_from_probabilities
from fdseg_core.infer.overlay import render_overlay
from fdseg_core.infer.sliding_window import sliding_window_inference

__all__ = ["gather_inputs", "predict_cases"]


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
                raise ValueError(f"dataset {path} has no imagesTs cases to predict")
            for case in info.test:
                cases[case.case_id] = list(case.image_paths)
        elif path.is_dir():
            for case, files in group_channel_files(path).items():
                cases[case] = files
        else:
            stem = strip_nifti_ending(path.name)
            if stem is None:
                raise ValueError(f"input {path} is not a NIfTI file (.nii or .nii.gz)")
            if n_channels > 1 and stem[-5:-4] == "_" and stem[-4:].isdigit():
                cases.setdefault(stem[:-5], []).append(path)
            else:
                key = stem[:-5] if stem[-5:-4] == "_" and stem[-4:].isdigit() else stem
                cases[key] = [path]
    if not cases:
        raise ValueError("no NIfTI input found")
    out = []
    for case_id, files in sorted(cases.items()):
        files = sorted(files)
        if len(files) != n_channels and not (len(files) == 1 and n_channels > 1):
            raise ValueError(
                f"case {case_id!r}: {len(files)} channel files, the model expects {n_channels}"
            )
        out.append(Case(case_id, tuple(files)))
    return out


def predict_cases(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    meta: dict,
    cases: Sequence[Case],
    out_dir: str | Path,
    *,
    overlap: float = 0.5,
    tta: bool = False,
    save_probabilities: bool = False,
    overlay: bool = False,
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Segment cases and write ``{case}.nii.gz`` label maps on each input's grid.

    ``model`` is a PyTorch model (moved to ``device``) or any callable from a batch of
    windows to logits, such as :class:`~fdseg_core.export.OnnxModel`.

    The image is normalised (and resampled) exactly as during training (``meta``:
    ``normalization``, ``target_spacing``, ``patch_size``, ``labels``), predicted with
    :func:`sliding_window_inference`, brought back to the input grid, and written with
    the input's affine and header. Probabilities and labels follow ``meta["activation"]``
    (``"softmax"``, the default, or ``"sigmoid"`` for a sigmoid-trained model:
    :mod:`fdseg_core.infer.activation`). Optionally ``{case}_probabilities.nii.gz`` (4D,
    classes last) and ``overlays/{case}.png``.

    Raises:
        ValueError: An output path would overwrite one of the inputs.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = {p.resolve() for c in cases for p in c.image_paths}
    prep = Preprocessor.from_meta(meta)
    activation = meta.get("activation", "softmax")
    device = torch.device(device)
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    written = []
    for case in tqdm(cases, disable=not progress, desc="predict", unit="case"):
        target = out_dir / f"{case.case_id}.nii.gz"
        prob_path = out_dir / f"{case.case_id}_probabilities.nii.gz"
        for p in (target, prob_path):
            if p.resolve() in inputs:
                raise ValueError(f"refusing to overwrite input file {p}; choose another --out")
        loaded = load_case(case, with_label=False)
        vol = prep(loaded, with_label=False)
        image = torch.from_numpy(vol.image)[None]
        probs = sliding_window_inference(
            image,
            model,
            meta["patch_size"],
            overlap=overlap,
            tta_flips=tta,
            device=device,
            batch_size=batch_size,
            activation=activation,
        )[0].numpy()
        if meta.get("target_spacing"):
            probs = resample(
                probs, meta["target_spacing"], loaded.spacing, order=1, shape=loaded.image.shape[1:]
            )
        seg = labels_from_probabilities(probs, activation, dim=0).astype(np.uint8)
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
                labels=meta.get("labels"),
                spacing=loaded.spacing,
                title=f"{case.case_id}: prediction",
            )
    return written
