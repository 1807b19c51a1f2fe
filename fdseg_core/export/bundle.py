"""A trained model as a MONAI bundle: ``fdseg export CHECKPOINT --bundle DIR``.

The bundle follows MONAI's bundle conventions, so that MONAI's own runner segments a
folder of NIfTI files with it::

    python -m monai.bundle run --config_file DIR/configs/inference.json \\
        --bundle_root DIR --dataset_dir IMAGES --output_dir OUT

``configs/inference.json`` names the ids MONAI's conventions use: ``network_def`` (the
network, rebuilt from ``models/fdseg_card.json``), ``preprocessing`` (fdseg's own input
pipeline: normalisation and resampling as in training), ``inferer`` (fdseg's Gaussian
sliding window), ``postprocessing`` (labels by the rule of the model's loss, brought back
to each input's grid and written with its affine and header) and ``evaluator`` (the loop
over the files, after loading ``models/model.pt``). Every stage is the one ``fdseg
predict`` runs, so the labels are the same. ``configs/metadata.json`` holds the fields of
MONAI's metadata schema; ``README.md`` is the model card (data, split, bands and fusion,
validation Dice, the command that trained it); ``models/model.onnx`` is written too when
the onnx extra is installed.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdseg_core import __version__
from fdseg_core.data.io import load_case, save_nifti
from fdseg_core.data.layout import Case, strip_nifti_ending
from fdseg_core.data.preprocess import resample
from fdseg_core.errors import InputError, MissingExtraError
from fdseg_core.export.onnx import export_checkpoint, onnx_available
from fdseg_core.infer.activation import labels_from_probabilities
from fdseg_core.infer.card import ModelCard
from fdseg_core.infer.sliding_window import sliding_window_inference
from fdseg_core.train.checkpoint import build_model, load_checkpoint, load_model

__all__ = [
    "CARD",
    "Evaluator",
    "Postprocessing",
    "Preprocessing",
    "SlidingWindow",
    "export_bundle",
    "network",
]

logger = logging.getLogger(__name__)

#: The file that rebuilds the network and its pipeline (``models/`` of the bundle).
CARD = "fdseg_card.json"


def _card(path: str | os.PathLike) -> ModelCard:
    """The bundle's model card (``models/fdseg_card.json``: the checkpoint's card and
    training configuration)."""
    stored = json.loads(Path(path).read_text())
    return ModelCard.from_checkpoint({"data": stored, "config": stored["config"]})


def network(card: str | os.PathLike) -> torch.nn.Module:
    """The network of a bundle's card, untrained (``network_def``; the evaluator loads
    ``models/model.pt`` into it)."""
    model_card = _card(card)
    return build_model(
        dict(model_card.config), model_card.in_channels, model_card.num_classes
    ).eval()


class Preprocessing:
    """``preprocessing``: a NIfTI file -> the loaded case and its network input (fdseg's
    :class:`~fdseg_core.data.Preprocessor`, as in training)."""

    def __init__(self, card: str | os.PathLike) -> None:
        self.card = _card(card)
        self.prep = self.card.preprocessor()

    def __call__(self, path: str | os.PathLike):
        path = Path(path)
        case = Case(strip_nifti_ending(path.name) or path.stem, (path,))
        loaded = load_case(case, with_label=False)
        volume = self.prep(loaded, with_label=False)
        return loaded, torch.from_numpy(volume.image)[None]


class SlidingWindow:
    """``inferer``: fdseg's Gaussian sliding window at the model's patch size, with the
    activation of its loss (probabilities ``(1, K, *spatial)``)."""

    def __init__(self, card: str | os.PathLike, overlap: float = 0.5, batch_size: int = 2) -> None:
        self.card = _card(card)
        self.overlap = overlap
        self.batch_size = batch_size

    def __call__(self, inputs: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
        return sliding_window_inference(
            inputs,
            net,
            self.card.patch_size,
            overlap=self.overlap,
            batch_size=self.batch_size,
            activation=self.card.activation,
        )


class Postprocessing:
    """``postprocessing``: probabilities -> labels by the rule of the model's loss, on the
    input's own grid, written as ``OUTPUT_DIR/{case}.nii.gz`` with its affine and header."""

    def __init__(self, card: str | os.PathLike, output_dir: str | os.PathLike) -> None:
        self.card = _card(card)
        self.output_dir = Path(output_dir)

    def __call__(self, probs: torch.Tensor, loaded) -> Path:
        p = probs[0].cpu().numpy()
        if self.card.target_spacing:
            p = resample(
                p,
                self.card.target_spacing,
                loaded.spacing,
                order=1,
                shape=loaded.image.shape[1:],
            )
        seg = labels_from_probabilities(p, self.card.activation, dim=0).astype(np.uint8)
        target = self.output_dir / f"{loaded.case_id}.nii.gz"
        save_nifti(seg, loaded.affine, target, header=loaded.header, dtype=np.uint8)
        return target


class Evaluator:
    """``evaluator``: load the weights, then segment every NIfTI file of ``dataset_dir``
    (``run()``), one line per file."""

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        network: torch.nn.Module,
        checkpoint: str | os.PathLike,
        preprocessing: Preprocessing,
        inferer: SlidingWindow,
        postprocessing: Postprocessing,
    ) -> None:
        self.files = sorted(
            glob.glob(os.path.join(str(dataset_dir), "*.nii.gz"))
            + glob.glob(os.path.join(str(dataset_dir), "*.nii"))
        )
        if not self.files:
            raise InputError(f"{dataset_dir} holds no NIfTI file to segment")
        self.network = network
        self.checkpoint = checkpoint
        self.preprocessing = preprocessing
        self.inferer = inferer
        self.postprocessing = postprocessing

    def run(self) -> list[Path]:
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        self.network.load_state_dict(state["model"] if "model" in state else state)
        self.network.eval()
        written = []
        with torch.no_grad():
            for path in self.files:
                loaded, image = self.preprocessing(path)
                probs = self.inferer(image, self.network)
                written.append(self.postprocessing(probs, loaded))
                logger.info(f"segmented {path} -> {written[-1]}")
        return written


def _inference_config() -> dict[str, Any]:
    return {
        "imports": ["$import torch", "$import fdseg_core.export.bundle"],
        "bundle_root": ".",
        "dataset_dir": "$@bundle_root + '/sample'",
        "output_dir": "$@bundle_root + '/eval'",
        "card": "$@bundle_root + '/models/" + CARD + "'",
        "network_def": {"_target_": "fdseg_core.export.bundle.network", "card": "@card"},
        "network": "@network_def",
        "preprocessing": {"_target_": "fdseg_core.export.bundle.Preprocessing", "card": "@card"},
        "inferer": {
            "_target_": "fdseg_core.export.bundle.SlidingWindow",
            "card": "@card",
            "overlap": 0.5,
        },
        "postprocessing": {
            "_target_": "fdseg_core.export.bundle.Postprocessing",
            "card": "@card",
            "output_dir": "@output_dir",
        },
        "evaluator": {
            "_target_": "fdseg_core.export.bundle.Evaluator",
            "dataset_dir": "@dataset_dir",
            "network": "@network",
            "checkpoint": "$@bundle_root + '/models/model.pt'",
            "preprocessing": "@preprocessing",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
        },
        "run": ["$@evaluator.run()"],
    }


def _metadata(card: ModelCard, ckpt: dict[str, Any], *, licence: str, authors: str):
    config = card.config
    names = card.class_names
    classes = {str(v): names[v] for v in sorted(names)}
    channels = {str(i): n for i, n in enumerate(card.channel_names)}
    rule = (
        "argmax of the softmax"
        if card.activation == "softmax"
        else "per-class sigmoids: the best class where it reaches 0.5, else background"
    )
    try:
        import monai  # lazy: the monai extra, which the bundle names the version of
    except ImportError as exc:
        raise MissingExtraError("--bundle (MONAI)", "monai") from exc

    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
        "0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by fdseg {__version__}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"fdseg": __version__, "nibabel": _version("nibabel")},
        # the name of the same field in bundles of the 2022 schema
        "optional_packages_version": {"fdseg": __version__, "nibabel": _version("nibabel")},
        "task": f"segmentation of {', '.join(n for v, n in sorted(names.items()) if v)}",
        "description": (
            f"fdseg {config.get('backbone')} with fusion {config.get('fusion')} "
            f"(beta {config.get('beta')}, layout {config.get('layout')}), trained with "
            f"{config.get('loss')}"
        ),
        "authors": authors,
        "copyright": licence,
        "license": licence,
        "data_source": str(config.get("dataset")),
        "data_type": "nifti",
        "image_classes": f"{len(channels)} channel(s): {', '.join(channels.values())}",
        "label_classes": ", ".join(f"{v}: {n}" for v, n in classes.items()),
        "pred_classes": ", ".join(f"{v}: {n}" for v, n in classes.items()),
        "eval_metrics": {"mean_dice": float(ckpt.get("best_dice", float("nan")))},
        "intended_use": "research; not for clinical use",
        "references": [
            "Fu et al., Frequency Disentangled Learning for Segmentation of Midbrain "
            "Structures from Quantitative Susceptibility Mapping Data, arXiv:2302.12980"
        ],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": ", ".join(channels.values()),
                    "num_channels": len(channels),
                    "spatial_shape": list(card.patch_size),
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": True,
                    "channel_def": channels,
                    "spacing_mm": list(card.spacing) if card.spacing else None,
                    "normalization": list(card.normalization),
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": card.num_classes,
                    "spatial_shape": list(card.patch_size),
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": classes,
                    "activation": card.activation,
                    "label_rule": rule,
                }
            },
        },
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _readme(card: ModelCard, ckpt: dict[str, Any], checkpoint: Path) -> str:
    config = card.config
    command = (
        f"fdseg train {config.get('dataset')} --out {config.get('out')} --recipe "
        f"{config.get('recipe')} --backbone {config.get('backbone')} --fusion "
        f"{config.get('fusion')} --seed {config.get('seed')}"
    )
    return "\n".join(
        [
            "# fdseg model (MONAI bundle)",
            "",
            f"Exported by fdseg {__version__} from `{checkpoint.name}`.",
            "",
            "## Model",
            f"- Backbone `{config.get('backbone')}`, fusion `{config.get('fusion')}` (beta "
            f"{config.get('beta')}, band layout `{config.get('layout')}`, band axes "
            f"{config.get('dims') or [2, 3]}), loss `{config.get('loss')}`: labels by "
            f"the {card.activation} rule.",
            f"- Classes: {dict(card.labels)}; input channels: {list(card.channel_names)} "
            f"(normalisation {list(card.normalization)}); patch {list(card.patch_size)} "
            f"voxels at {list(card.spacing) if card.spacing else None} mm.",
            "",
            "## Training",
            f"- Data: `{config.get('dataset')}`; fold {config.get('fold')} of "
            f"{config.get('n_folds')}; training cases {config.get('train_cases') or 'all'}; "
            f"seed {config.get('seed')}.",
            f"- Validation: best mean Dice {ckpt.get('best_dice', float('nan')):.4f} at epoch "
            f"{ckpt.get('best_epoch')}.",
            f"- Trained with: `{command}` (every option in `models/{CARD}`).",
            f"- Dataset root when trained: `{card.dataset_root or '?'}`.",
            "",
            "## Use",
            "```bash",
            "python -m monai.bundle run --config_file configs/inference.json \\",
            "    --bundle_root . --dataset_dir IMAGES --output_dir OUT",
            "```",
            "or `fdseg predict models/model.onnx` with `--onnx` (when the ONNX file is here).",
            "",
        ]
    )


def export_bundle(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    onnx: bool = True,
    licence: str = "see the licence of the training data",
    authors: str = "fdseg user",
) -> Path:
    """Write a MONAI bundle of a training checkpoint into ``out``.

    Returns:
        The bundle's folder.

    Raises:
        InputError: ``out`` exists and is not empty; the monai extra is missing.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--bundle {out} exists and is not empty: give a new folder")
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    model, card = load_model(checkpoint)
    stored = {**card.to_dict(), "config": dict(card.config)}
    metadata = _metadata(card, ckpt, licence=licence, authors=authors)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "configs").mkdir()
        (tmp / "models").mkdir()
        (tmp / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")
        (tmp / "configs" / "inference.json").write_text(
            json.dumps(_inference_config(), indent=1) + "\n"
        )
        (tmp / "models" / CARD).write_text(json.dumps(stored, indent=1, default=str) + "\n")
        torch.save({"model": model.state_dict()}, tmp / "models" / "model.pt")
        (tmp / "README.md").write_text(_readme(card, ckpt, checkpoint))
        (tmp / "LICENSE").write_text(f"{licence}\n")
        if onnx:
            _maybe_onnx(checkpoint, tmp / "models" / "model.onnx")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _maybe_onnx(checkpoint: Path, path: Path) -> None:
    if onnx_available() is not None:
        logger.info("the bundle has no ONNX file: the onnx extra is not installed")
        return
    export_checkpoint(checkpoint, path, check=False)
