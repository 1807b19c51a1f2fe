"""Builders the tests share: a small synthetic dataset on disk, in either layout, and a
tiny training run as a configuration or as command-line options (imported as
``builders``: ``pythonpath = ["tests"]`` in pyproject.toml)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fdseg_core.data.io import save_nifti
from fdseg_core.train import TrainConfig

#: A small unet3d: two levels below the top, four filters.
SMALL_NET = {"base_filters": 4, "levels": 3}

#: The network of a tiny run, named rather than left to the defaults (which train the
#: larger ``paper_unet3d`` with the sigmoid Dice loss): a ``unet3d`` with the softmax
#: Dice + CE loss. Tests of the defaults themselves build their config without it.
TINY_NETWORK: dict[str, Any] = dict(backbone="unet3d", loss="dice_ce")
#: The fusion of a tiny single run (an experiment sets its own per run), so that tiny
#: runs exercise the band split and fusion.
TINY_FUSION = "late"

#: The fields of a tiny run: one step of 16 x 16 x 8 patches, a validation per epoch,
#: two folds, no progress bars.
TINY_FIELDS: dict[str, Any] = dict(
    **TINY_NETWORK,
    epochs=1,
    iters_per_epoch=1,
    patch_size=(16, 16, 8),
    val_every=1,
    n_folds=2,
    progress=False,
)


def tiny_config(ds: str | Path, out: str | Path, **changes: Any) -> TrainConfig:
    """A tiny run's :class:`TrainConfig` on ``ds`` (with the small network), changed."""
    fields = {**TINY_FIELDS, "fusion": TINY_FUSION, "backbone_options": SMALL_NET, **changes}
    return TrainConfig(dataset=str(ds), out=str(out), **fields)


def tiny_args(
    *,
    epochs: int = 1,
    iters: int = 1,
    folds: bool = True,
    fusion: str | None = TINY_FUSION,
    network: bool = True,
) -> list[str]:
    """The command-line options of a tiny run (:data:`TINY_NETWORK` at its default size);
    ``fusion=None`` leaves the fusion out (an experiment's ``--fusion`` lists its own),
    ``network=False`` the backbone and loss (a recipe's, or the defaults, then apply)."""
    args = (
        ["--backbone", TINY_NETWORK["backbone"], "--loss", TINY_NETWORK["loss"]] if network else []
    )
    args += ["--fusion", fusion] if fusion else []
    args += ["--epochs", str(epochs), "--iters-per-epoch", str(iters)]
    args += ["--patch-size", "16", "16", "8", "--val-every", "1"]
    args += ["--folds", "2"] if folds else []
    return [*args, "--no-progress"]


def fdseg_ok(*args: str | Path):
    """Run ``fdseg ARGS`` in this process; it must succeed (its output is the failure
    message). Returns click's result."""
    from click.testing import CliRunner  # lazy: the CLI only for the tests that run it

    from fdseg_cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def toy_case(shape: tuple[int, int, int], seed: int, channels: int = 1):
    """An image with two bright ellipsoids (labels 1 and 2) on a noisy background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    label = np.zeros(shape, dtype=np.uint8)
    for cls in (1, 2):
        centre = np.array([rng.uniform(0.3, 0.7) * s for s in shape])
        radii = np.array([rng.uniform(0.12, 0.2) * s for s in shape])
        inside = (((grid - centre) / radii) ** 2).sum(-1) <= 1
        label[inside] = cls
    image = rng.normal(0, 0.2, (channels, *shape)).astype(np.float32)
    for c in range(channels):
        image[c] += (label == 1) * (1.0 + 0.2 * c) + (label == 2) * (2.0 - 0.3 * c)
    return image, label


def make_toy_dataset(
    root: str | Path,
    *,
    layout: str = "nnunet",
    n_cases: int = 4,
    n_test: int = 1,
    shape: tuple[int, int, int] = (24, 24, 16),
    channels: int = 1,
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.0),
    seed: int = 0,
) -> Path:
    """Write a small dataset with two labelled structures in the nnU-Net v2 or MSD layout.

    Returns:
        The dataset root.
    """
    if layout not in ("nnunet", "msd"):
        raise ValueError(f"layout must be 'nnunet' or 'msd', got {layout!r}")
    root = Path(root)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    training = []
    for i in range(n_cases + n_test):
        split = "Tr" if i < n_cases else "Ts"
        case = f"toy_{i:03d}"
        image, label = toy_case(shape, seed * 1000 + i, channels)
        if layout == "nnunet":
            for c in range(channels):
                save_nifti(image[c], affine, root / f"images{split}" / f"{case}_{c:04d}.nii.gz")
        else:
            data = image[0] if channels == 1 else np.moveaxis(image, 0, -1)
            save_nifti(data, affine, root / f"images{split}" / f"{case}.nii.gz")
        save_nifti(label, affine, root / f"labels{split}" / f"{case}.nii.gz")
        if split == "Tr":
            training.append(
                {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
            )
    names = ["MRI"] + [f"MRI{c}" for c in range(1, channels)]
    if layout == "nnunet":
        meta = {
            "name": "Toy",
            "channel_names": {str(c): n for c, n in enumerate(names)},
            "labels": {"background": 0, "blob": 1, "ball": 2},
            "numTraining": n_cases,
            "file_ending": ".nii.gz",
        }
    else:
        meta = {
            "name": "Toy",
            "modality": {str(c): n for c, n in enumerate(names)},
            "labels": {"0": "background", "1": "blob", "2": "ball"},
            "numTraining": n_cases,
            "training": training,
            "test": [f"./imagesTs/toy_{i:03d}.nii.gz" for i in range(n_cases, n_cases + n_test)],
        }
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root


def hippocampus_root() -> Path:
    """The MSD Task04 Hippocampus cases: ``../shared/data/msd-hippocampus`` beside the
    repository, or ``FDSEG_HIPPOCAMPUS``; a test without them fails, naming the folder."""
    env = os.environ.get("FDSEG_HIPPOCAMPUS")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/msd-hippocampus"
    if not (root / "dataset.json").is_file():
        pytest.fail(
            f"the MSD hippocampus cases are not at {root}: put ../shared beside the "
            "repository, or name the folder in FDSEG_HIPPOCAMPUS"
        )
    return root


def _hippocampus_case(root: Path, case: str) -> dict[str, str]:
    return {
        "image": str(root / "imagesTr" / f"hippocampus_{case}.nii.gz"),
        "label": str(root / "labelsTr" / f"hippocampus_{case}.nii.gz"),
    }


def hippocampus_view(folder: Path, train: Sequence[str], test: Sequence[str]) -> Path:
    """An MSD dataset of these cases (``"033"`` for ``hippocampus_033``): a
    ``dataset.json`` in ``folder`` whose paths point at the shared files (no image is
    copied), the test cases labelled."""
    root = hippocampus_root()
    raw = json.loads((root / "dataset.json").read_text())
    folder.mkdir(parents=True)
    view = {k: raw[k] for k in ("name", "modality", "labels")}
    view |= {
        "numTraining": len(train),
        "training": [_hippocampus_case(root, c) for c in train],
        "test": [_hippocampus_case(root, c) for c in test],
    }
    (folder / "dataset.json").write_text(json.dumps(view, indent=1))
    return folder


def hippocampus_nnunet(folder: Path, cases: Sequence[str], *, labels=None) -> Path:
    """An nnU-Net v2 dataset written at test time from MSD hippocampus cases (``"033"``
    for ``hippocampus_033``), which a test may then damage: ``imagesTr/{case}_0000``,
    ``labelsTr/{case}``, ``dataset.json`` (``labels``: another label table)."""
    import nibabel as nib

    root = hippocampus_root()
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case in cases:
        name = f"hippocampus_{case}"
        image = nib.load(str(root / "imagesTr" / f"{name}.nii.gz"))
        label = nib.load(str(root / "labelsTr" / f"{name}.nii.gz"))
        nib.save(image, str(folder / "imagesTr" / f"{name}_0000.nii.gz"))
        nib.save(label, str(folder / "labelsTr" / f"{name}.nii.gz"))
    meta = {
        "channel_names": {"0": "MRI"},
        "labels": labels or {"background": 0, "Anterior": 1, "Posterior": 2},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(meta, indent=1))
    return folder


def trainer_at_step(n: int, action, *, name: str = "Trainer"):
    """A :class:`~fdseg_core.train.trainer.Trainer` subclass whose ``n``-th training step
    (counted from 1, over every run it trains) returns ``action(loss)`` instead of its
    loss; ``name`` the name it is selected and saved by (the default ``"Trainer"``:
    runs it trains resume with the default trainer). Returns ``(cls, calls)``,
    ``calls["n"]`` the steps it took."""
    from fdseg_core.train.trainer import Trainer

    calls = {"n": 0}

    class AtStep(Trainer):
        def train_step(self, model, opt, image, label):
            loss = super().train_step(model, opt, image, label)
            calls["n"] += 1
            return action(loss) if calls["n"] == n else loss

    AtStep.name = name
    return AtStep, calls


def trainer_validating(means, *, name: str = "Trainer"):
    """A trainer whose validations return these mean Dice values in turn (two foreground
    classes at that value, background NaN), without predicting anything."""
    from fdseg_core.train.trainer import Trainer

    values = iter(means)

    class Scripted(Trainer):
        def validate(self, *args, **kwargs):
            m = next(values)
            return np.array([np.nan, m, m])

    Scripted.name = name
    return Scripted


class plugin_trainers:  # noqa: N801 - used as a context manager, like a function
    """Register trainer classes as a plugin does (``fdseg_register_trainers``) while the
    ``with`` block runs, so that ``fdseg train --trainer NAME`` finds them."""

    def __init__(self, *classes) -> None:
        self.classes = list(classes)

    def __enter__(self):
        from fdseg_core.plugins import hookimpl
        from fdseg_core.plugins.manager import get_plugin_manager

        self._hook = type(
            "TestTrainers", (), {"fdseg_register_trainers": hookimpl(lambda: self.classes)}
        )
        self._pm = get_plugin_manager()
        self._pm.register(self._hook, name=f"test-trainers-{id(self)}")
        return self

    def __exit__(self, *exc) -> None:
        self._pm.unregister(self._hook)


def trainer_dying_in_epoch_2():
    """A trainer (the default one's computation) interrupted while it draws epoch 2's
    curves, before that epoch's checkpoint is written: as a SIGKILL would."""
    from fdseg_core.train.trainer import Trainer

    class DiesInEpoch2(Trainer):
        name = "Trainer"

        def write_curves(self, rows, path):
            if len(rows) == 2:
                raise KeyboardInterrupt
            super().write_curves(rows, path)

    return DiesInEpoch2


def model_card(
    *,
    normalization: Sequence[str] = ("zscore",),
    patch_size: Sequence[int] = (16, 16, 8),
    labels: dict[str, int] | None = None,
    **fields: Any,
):
    """A :class:`~fdseg_core.infer.card.ModelCard` for a test model: one input channel per
    normalisation, the toy dataset's classes unless told, softmax, flips not recorded."""
    from fdseg_core.infer.card import ModelCard

    labels = labels if labels is not None else {"background": 0, "blob": 1, "ball": 2}
    return ModelCard(
        in_channels=len(normalization),
        num_classes=fields.pop("num_classes", max(labels.values()) + 1),
        labels=labels,
        normalization=tuple(normalization),
        patch_size=tuple(patch_size),
        activation=fields.pop("activation", "softmax"),
        **fields,
    )


def sigterm_after(args: list[str], marker: str, *, wait_s: float = 0.0):
    """Run a command, and send it SIGTERM once a line of its standard output holds
    ``marker`` (then ``wait_s`` seconds later), as a scheduler preempts a job.

    Returns:
        ``(exit code, its output lines up to the marker, its standard error, seconds
        from the signal to its exit)``.
    """
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            break
    time.sleep(wait_s)
    assert proc.poll() is None, "ended before the signal: " + "".join(lines)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.stdout.read()
    code = proc.wait(timeout=60)
    return code, lines, rest, time.perf_counter() - sent
