"""One epoch of fdseg's nnUNetTrainerFDEarly under nnU-Net's own commands, on CUDA with
torch.compile (``nnUNet_compile=true``): the step of ``benchmarks/gpu_session.sh`` that
shows a CUDA-only or compile-only fault of the integration.

    python benchmarks/nnunet_gpu_epoch.py OUT      # OUT/raw, preprocessed, results, ext

Needs the nnunet extra (``pip install 'fdseg[nnunet]'``) and a CUDA device.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from fdseg_core.integrations.nnunet import workspace_environment

BIN = Path(sys.executable).parent
#: one epoch of a few iterations, keeping nnU-Net's __init__ signature (it records it)
ONE_EPOCH = textwrap.dedent(
    """
    import torch

    from fdseg_core.integrations.nnunet.trainer import nnUNetTrainerFDEarly


    class nnUNetTrainerFDEarly_1epoch(nnUNetTrainerFDEarly):
        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = 1
            self.num_iterations_per_epoch = 10
            self.num_val_iterations_per_epoch = 2
    """
)


def main(out: str) -> int:
    root = Path(out)
    (root / "ext").mkdir(parents=True, exist_ok=True)
    (root / "ext" / "fdseg_one_epoch.py").write_text(ONE_EPOCH)
    env = workspace_environment(root, root / "ext", nnUNet_compile="true")
    steps = [
        [sys.executable, "-m", "fdseg_cli", "phantom", str(root / "raw" / "Dataset501_QSMPhantom")]
        + ["--cases", "5", "--test-cases", "1", "--shape", "80", "80", "64", "--spacing", "2"]
        + ["--no-progress"],
        [str(BIN / "nnUNetv2_plan_and_preprocess"), "-d", "501", "-c", "3d_fullres", "-np", "2"],
        [str(BIN / "nnUNetv2_train"), "501", "3d_fullres", "0", "-tr"]
        + ["nnUNetTrainerFDEarly_1epoch", "-device", "cuda"],
    ]
    for command in steps:
        print("$", " ".join(command), flush=True)
        if subprocess.run(command, env=env, check=False).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "nnunet-gpu"))
