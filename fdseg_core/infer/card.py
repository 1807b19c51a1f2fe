"""The model card: what a trained model promises to inference, in one typed object.

A checkpoint's ``data`` section and an exported ONNX file's ``fdseg.meta`` both hold a
:class:`ModelCard`: the classes and their names, the input channels and their
normalisation, the spacing the model saw, the patch (window) size, the pipeline bands,
the rule by which its logits become labels, the axes training flipped, and the
backbone and version that made it. It is written by :meth:`ModelCard.to_dict` and read
by :meth:`ModelCard.from_checkpoint` / :meth:`ModelCard.from_onnx_metadata`, the only
places that know the stored keys; files written before a key was recorded still load
(each default is said where it is taken).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fdseg_core.choices import (
    DEFAULT_OVERLAP,
    DEFAULT_WINDOW_BATCH,
    LOSS_ACTIVATION,
    activation_of_loss,
)
from fdseg_core.data import Preprocessor, VolumeBands, class_names
from fdseg_core.errors import InputError
from fdseg_core.infer.activation import check_activation

__all__ = ["ModelCard"]

#: The keys of the training configuration an exported file records (what the model is).
_CONFIG_KEYS = ("backbone", "fusion", "beta", "layout", "dims", "fusion_at", "loss")


def _tuple(value: Sequence | None, kind=float) -> tuple | None:
    return None if value is None else tuple(kind(v) for v in value)


@dataclass(frozen=True)
class ModelCard:
    """What a trained model promises to inference.

    Attributes:
        in_channels: Image channels ``C`` of the model's input ``(N, C, X, Y, Z)``
            (before pipeline bands double them).
        num_classes: Output channels ``K`` of its logits ``(N, K, X, Y, Z)``,
            background included.
        labels: Class name -> label value (``{"background": 0, ...}``).
        channel_names: Name of each input channel.
        normalization: The normalisation scheme of each input channel.
        target_spacing: The spacing (mm) cases are resampled to before the model, or
            ``None`` (cases keep their grid).
        spacing: The voxel size (mm) the model saw (the target, or the training cases'
            median); ``None`` when the file does not record it.
        patch_size: The window ``(X, Y, Z)`` the model was trained on (sliding windows
            of this size; a whole-volume model's padded volume shape).
        bands: The pipeline bands (``{"beta": b, "dims": [..]}``) when the pipeline
            splits volumes before the model, else ``None``.
        activation: How logits become labels: ``"softmax"`` (argmax) or ``"sigmoid"``
            (the trained loss's rule; :mod:`fdseg_core.infer.activation`).
        flip_axes: The spatial axes training flipped (all three with augmentation,
            none without): the only ones test-time flips may use; ``None``: not
            recorded (every axis is then taken).
        overlap: The sliding-window overlap the run validated with.
        window_batch: Windows per forward pass the run validated with (its batch).
        config: The training configuration (``TrainConfig.to_dict()``); empty for an
            exported file, which records :attr:`model` instead.
        model: What the network is: backbone, fusion, band parameters and loss.
        backbone_package: The distribution that provided the backbone and its version,
            when recorded.
        fdseg_version: The fdseg that exported the file (``None`` for a checkpoint).
    """

    in_channels: int
    num_classes: int
    labels: Mapping[str, int]
    normalization: tuple[str, ...]
    patch_size: tuple[int, ...]
    activation: str
    channel_names: tuple[str, ...] = ()
    target_spacing: tuple[float, ...] | None = None
    spacing: tuple[float, ...] | None = None
    bands: Mapping[str, Any] | None = None
    flip_axes: tuple[int, ...] | None = None
    overlap: float = DEFAULT_OVERLAP
    window_batch: int = DEFAULT_WINDOW_BATCH
    config: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    backbone_package: Mapping[str, Any] | None = None
    dataset_root: str | None = None
    fdseg_version: str | None = None

    def __post_init__(self) -> None:
        check_activation(self.activation)
        if len(self.normalization) != self.in_channels:
            raise InputError(
                f"the model card has {self.in_channels} input channel(s) but "
                f"{len(self.normalization)} normalisation scheme(s)"
            )

    # --- what inference reads -----------------------------------------------------

    @property
    def class_names(self) -> dict[int, str]:
        """Label value -> class name (foreground and background)."""
        return class_names(self.labels)

    @property
    def input_channels(self) -> int:
        """The channels the network itself takes: ``in_channels``, twice that when the
        pipeline splits volumes into bands."""
        return self.in_channels * (2 if self.bands else 1)

    def preprocessor(self) -> Preprocessor:
        """The input pipeline the model expects (normalisation, resampling, bands)."""
        bands = self.bands
        return Preprocessor(
            normalization=self.normalization,
            target_spacing=self.target_spacing,
            bands=VolumeBands(bands["beta"], tuple(bands["dims"])) if bands else None,
        )

    # --- written and read here alone ------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The ``data`` section of a checkpoint (without the configuration, which the
        checkpoint holds beside it)."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "labels": dict(self.labels),
            "channel_names": list(self.channel_names),
            "normalization": list(self.normalization),
            "target_spacing": list(self.target_spacing) if self.target_spacing else None,
            "spacing": list(self.spacing) if self.spacing else None,
            "patch_size": list(self.patch_size),
            "bands": dict(self.bands) if self.bands else None,
            "activation": self.activation,
            "dataset_root": self.dataset_root,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> ModelCard:
        """The card of a loaded checkpoint (``load_checkpoint``'s dict).

        Older checkpoints: without ``activation``, the rule of the configured loss;
        without ``patch_size`` in ``data``, the configured one; without ``augment``,
        every axis flipped (augmentation was on by default then).
        """
        data, config = ckpt["data"], ckpt["config"]
        activation = data.get("activation") or activation_of_loss(config.get("loss", "dice_ce"))
        return cls(
            in_channels=int(data["in_channels"]),
            num_classes=int(data["num_classes"]),
            labels={str(k): int(v) for k, v in data["labels"].items()},
            channel_names=tuple(data.get("channel_names") or ()),
            normalization=tuple(data["normalization"]),
            target_spacing=_tuple(data.get("target_spacing")),
            spacing=_tuple(data.get("spacing")),
            patch_size=tuple(int(s) for s in (data.get("patch_size") or config["patch_size"])),
            bands=data.get("bands"),
            activation=activation,
            flip_axes=(0, 1, 2) if config.get("augment", True) else (),
            overlap=float(config.get("overlap", DEFAULT_OVERLAP)),
            window_batch=int(config.get("batch_size", DEFAULT_WINDOW_BATCH)),
            config=dict(config),
            model={k: config.get(k) for k in _CONFIG_KEYS},
            backbone_package=ckpt.get("backbone_package"),
            dataset_root=data.get("dataset_root"),
        )

    def to_onnx_metadata(self, fdseg_version: str) -> dict[str, Any]:
        """What an exported file records (``fdseg.meta``): the card without the
        training configuration, with :attr:`model` and ``classes``."""
        out = self.to_dict()
        out.pop("dataset_root")  # where the training data lay: not the model's business
        out["flip_axes"] = list(self.flip_axes) if self.flip_axes is not None else None
        out["classes"] = dict(self.labels)
        out.update({k: self.model.get(k) for k in _CONFIG_KEYS})
        out["overlap"] = self.overlap
        out["fdseg_version"] = fdseg_version
        return out

    @classmethod
    def from_onnx_metadata(cls, meta: Mapping[str, Any], source: str) -> ModelCard:
        """The card an exported file records.

        Older files: without ``activation``, the rule of the recorded loss (softmax when
        none is); without ``flip_axes``, ``None`` (every axis).

        Raises:
            InputError: The file lacks fdseg's metadata (``source`` names it).
        """
        required = ("normalization", "patch_size", "in_channels", "labels")
        missing = [k for k in required if k not in meta]
        if missing:
            raise InputError(
                f"{source} lacks fdseg metadata {missing}: export it with `fdseg export`"
            )
        labels = {str(k): int(v) for k, v in meta["labels"].items()}
        activation = meta.get("activation") or LOSS_ACTIVATION.get(
            meta.get("loss") or "dice_ce", "softmax"
        )
        flips = meta.get("flip_axes")
        return cls(
            in_channels=int(meta["in_channels"]),
            num_classes=int(meta.get("num_classes") or len(labels)),
            labels=labels,
            channel_names=tuple(meta.get("channel_names") or ()),
            normalization=tuple(meta["normalization"]),
            target_spacing=_tuple(meta.get("target_spacing")),
            spacing=_tuple(meta.get("spacing")),
            patch_size=tuple(int(s) for s in meta["patch_size"]),
            bands=meta.get("bands"),
            activation=activation,
            flip_axes=None if flips is None else tuple(int(a) for a in flips),
            overlap=float(meta.get("overlap", DEFAULT_OVERLAP)),
            model={k: meta.get(k) for k in _CONFIG_KEYS},
            fdseg_version=meta.get("fdseg_version"),
        )
