"""One nnU-Net training iteration with and without frequency-disentangled fusion (issue 19).

nnU-Net's own trainer, on the phantom's own plans (3d_fullres, planned by nnU-Net in a
temporary ``nnUNet_raw``): ``nnUNetTrainer`` (the baseline), ``nnUNetTrainerFD`` (the
same network through fdseg's wrapper), ``nnUNetTrainerFDEarly`` and
``nnUNetTrainerFDLate``. One iteration is ``train_step`` on the next batch of nnU-Net's
training data loader (augmentation in the main process), its deep-supervision loss, the
backward pass and the SGD step. Run on the CPU (``-device cpu``); on a GPU the same file
times CUDA iterations. Ratios are to the baseline measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nnunetv2", reason="the nnunet extra: pip install 'fdseg[nnunet]'")

import torch  # noqa: E402

from fdseg_core.integrations.nnunet import workspace_environment  # noqa: E402

BIN = Path(sys.executable).parent
DATASET = "Dataset501_QSMPhantom"
_MEDIANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet-bench")
    env = workspace_environment(root, nnUNet_n_proc_DA="1", nnUNet_compile="false")
    for cmd in (
        ["fdseg", "phantom", str(root / "raw" / DATASET), "--cases", "5", "--test-cases", "0"]
        + ["--seed", "1", "--shape", "80", "80", "64", "--spacing", "2", "--no-progress"],
        ["nnUNetv2_plan_and_preprocess", "-d", "501", "-c", "3d_fullres", "-np", "1"],
    ):
        subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, check=True, capture_output=True)
    os.environ.update({k: v for k, v in env.items() if k.startswith("nnUNet")})
    os.environ["nnUNet_n_proc_DA"] = "0"  # the loader in this process: one step, timed
    return root


def _trainer(name: str):
    """The trainer as ``nnUNetv2_train`` makes it, started up to its first epoch."""
    from nnunetv2.run.run_training import get_trainer_from_args

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer = get_trainer_from_args("501", "3d_fullres", 0, name, device=device)
    trainer.on_train_start()  # initialises the network, optimiser and data loaders
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    return trainer


@pytest.mark.parametrize(
    "name", ["nnUNetTrainer", "nnUNetTrainerFD", "nnUNetTrainerFDEarly", "nnUNetTrainerFDLate"]
)
def test_nnunet_training_iteration(benchmark, planned, name):
    del planned  # the phantom planned by nnU-Net, in the environment the fixture set
    trainer = _trainer(name)
    cm = trainer.configuration_manager
    benchmark.group = (
        f"nnU-Net iteration, phantom plans: patch {cm.patch_size}, batch {cm.batch_size}"
    )
    try:
        benchmark.pedantic(
            lambda: trainer.train_step(next(trainer.dataloader_train)),
            rounds=5,
            warmup_rounds=1,
            iterations=1,
        )
    finally:
        trainer.on_train_end()
    _MEDIANS[name] = benchmark.stats.stats.median
    benchmark.extra_info["patch_size"] = list(cm.patch_size)
    benchmark.extra_info["batch_size"] = cm.batch_size
    benchmark.extra_info["device"] = str(trainer.device)
    if name != "nnUNetTrainer" and "nnUNetTrainer" in _MEDIANS:
        benchmark.extra_info["vs_nnUNetTrainer"] = _MEDIANS[name] / _MEDIANS["nnUNetTrainer"]
