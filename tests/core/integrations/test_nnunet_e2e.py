"""End to end with nnU-Net's own commands: plan and preprocess the phantom, train fdseg's
early and late trainers (test-sized subclasses), predict and evaluate, as subprocesses
with ``nnUNet_extTrainer`` set. They skip cleanly without the nnunet extra."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip(
    "nnunetv2", reason="nnU-Net v2 is the nnunet extra (pip install 'fdseg[nnunet]')"
)

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from fdseg_core.integrations.nnunet import workspace_environment  # noqa: E402

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DATASET = "Dataset501_QSMPhantom"

#: test-sized subclasses, in a folder of their own added to nnUNet_extTrainer
TINY_TRAINERS = textwrap.dedent(
    """
    import torch

    from fdseg_core.integrations.nnunet.trainer import (
        nnUNetTrainer_plateau,
        nnUNetTrainerFDEarly,
        nnUNetTrainerFDLate,
    )


    class _Tiny:
        # nnU-Net records its __init__ arguments by name: keep its signature
        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = 1
            self.num_iterations_per_epoch = 2
            self.num_val_iterations_per_epoch = 1


    class nnUNetTrainerFDEarly_tiny(_Tiny, nnUNetTrainerFDEarly):
        pass


    class nnUNetTrainerFDLate_tiny(_Tiny, nnUNetTrainerFDLate):
        pass


    class nnUNetTrainer_plateau_tiny(nnUNetTrainer_plateau):
        # no EMA gain can exceed 1: the plateau comes at the earliest epoch allowed
        plateau_iterations = 1
        plateau_val_iterations = 1
        plateau_max_epochs = 8
        plateau_patience = 2
        plateau_min_epochs = 4
        plateau_min_delta = 1.0
    """
)


def _run(command: list[str], env: dict[str, str], timeout: int = 900) -> str:
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def nnunet_env(tmp_path_factory):
    if not (BIN / "nnUNetv2_train").exists():
        pytest.skip("nnU-Net's commands are not installed next to this Python")
    root = tmp_path_factory.mktemp("nnunet")
    (root / "ext").mkdir()
    (root / "ext" / "fdseg_tiny_trainers.py").write_text(TINY_TRAINERS)
    env = workspace_environment(
        root, root / "ext", nnUNet_compile="false", nnUNet_n_proc_DA="1", OMP_NUM_THREADS="2"
    )
    # the phantom is written in nnU-Net's raw layout already
    _run(
        ["fdseg", "phantom", str(root / "raw" / DATASET), "--cases", "5", "--test-cases", "2"]
        + ["--seed", "3", "--shape", "48", "48", "40", "--spacing", "3.4", "--no-progress"],
        env,
    )
    out = _run(
        ["nnUNetv2_plan_and_preprocess", "-d", "501", "-c", "3d_fullres", "-np", "1"]
        + ["--verify_dataset_integrity"],
        env,
    )
    assert (
        "Preprocessing" in out or (root / "preprocessed" / DATASET / "nnUNetPlans.json").is_file()
    )
    env["nnUNet_n_proc_DA"] = "0"  # train without augmentation worker processes
    return root, env


@pytest.mark.parametrize("fusion", ["Early", "Late"])
def test_nnunets_own_commands_train_predict_and_evaluate_fdseg_trainers(nnunet_env, fusion):
    root, env = nnunet_env
    trainer = f"nnUNetTrainerFD{fusion}_tiny"
    _run(["nnUNetv2_train", "501", "3d_fullres", "0", "-tr", trainer, "-device", "cpu"], env)
    fold = root / "results" / DATASET / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"
    checkpoint = fold / "checkpoint_final.pth"
    assert checkpoint.is_file() and (fold / "progress.png").is_file()
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["trainer_name"] == trainer
    assert any(k.startswith("low_stem.") for k in saved["network_weights"])  # fdseg's net
    validation = json.loads((fold / "validation" / "summary.json").read_text())
    assert isinstance(validation["foreground_mean"]["Dice"], float)

    pred = root / f"pred-{fusion}"
    raw = root / "raw" / DATASET
    _run(
        ["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(pred), "-d", "501"]
        + ["-c", "3d_fullres", "-f", "0", "-tr", trainer, "-chk", "checkpoint_final.pth"]
        + ["-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"],
        env,
    )
    for label in sorted((raw / "labelsTs").glob("*.nii.gz")):
        seg = nib.load(str(pred / label.name))
        ref = nib.load(str(label))
        assert seg.shape == ref.shape
        np.testing.assert_allclose(seg.affine, ref.affine, atol=1e-4)
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2}

    plans = root / "preprocessed" / DATASET / "nnUNetPlans.json"
    _run(
        ["nnUNetv2_evaluate_folder", str(raw / "labelsTs"), str(pred)]
        + ["-djfile", str(raw / "dataset.json"), "-pfile", str(plans)],
        env,
    )
    summary = json.loads((pred / "summary.json").read_text())
    dice = summary["foreground_mean"]["Dice"]
    assert isinstance(dice, float) and (np.isnan(dice) or 0.0 <= dice <= 1.0)


def test_the_plateau_schedule_stops_nnunets_loop_at_the_plateau(nnunet_env):
    """A short schedule that stops after the epoch the plateau rule names (here the 4th
    of at most 8: no EMA gain can exceed the minimum of 1), then ends as nnU-Net's
    training ends (final checkpoint, validation)."""
    root, env = nnunet_env
    trainer = "nnUNetTrainer_plateau_tiny"
    _run(["nnUNetv2_train", "501", "3d_fullres", "0", "-tr", trainer, "-device", "cpu"], env)
    fold = root / "results" / DATASET / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"
    import torch

    saved = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    log = next(fold.glob("training_log_*.txt")).read_text()
    # nnU-Net saves the epoch to run next: 4 ran (0..3) of at most 8
    assert saved["current_epoch"] == 4, (saved["logging"]["ema_fg_dice"], log[-3000:])
    assert saved["init_args"]["fold"] == 0 and saved["trainer_name"] == trainer
    assert len(saved["logging"]["ema_fg_dice"]) == 4
    assert "plateau: the EMA pseudo Dice did not improve by more than 1.0 in 2 epochs" in log
    assert (fold / "validation" / "summary.json").is_file()
