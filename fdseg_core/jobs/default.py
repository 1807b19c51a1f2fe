"""The default main job: a cached synthetic QSM dataset and CPU-friendly training settings."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fdseg_core.cache import cache_dir

__all__ = ["PHANTOM_DATASET", "PHANTOM_TRAINING", "cache_dir", "ensure_default_dataset"]

#: The built-in dataset: the QSM midbrain phantom at 2 mm (the 160 x 160 x 128 mm field of
#: view of the 1 mm default), red and dentate nuclei labelled.
PHANTOM_DATASET = {
    "n_train": 10,
    "n_test": 4,
    "seed": 0,
    "shape": (80, 80, 64),
    "spacing": 2.0,
}

#: Training defaults used when ``fdseg train`` runs on the built-in phantom (any option
#: given on the command line wins). 600 steps: the default recipe (sigmoid Dice, constant
#: learning rate) reaches its best validation Dice on the phantom between steps 220 and
#: 520 (``docs/findings.md``).
PHANTOM_TRAINING = {
    "epochs": 30,
    "iters_per_epoch": 20,
    "patch_size": (48, 48, 32),
    "val_every": 5,
}

_VERSION = "v1"


def ensure_default_dataset(*, progress: bool = True) -> Path:
    """The built-in phantom dataset, generated once into the cache folder.

    Generation happens in a temporary sibling folder that is renamed into place
    when complete, so an interrupted run never leaves a half-written dataset.

    Returns:
        The dataset root (nnU-Net v2 layout).
    """
    # lazy: the CLI imports this module for PHANTOM_TRAINING when it builds its options,
    # and the phantom generator (scipy, nibabel, matplotlib) is needed only here
    from fdseg_core.phantom import PhantomConfig, write_phantom_dataset

    p = PHANTOM_DATASET
    shape = "x".join(map(str, p["shape"]))
    root = cache_dir() / f"Dataset501_QSMPhantom-{_VERSION}-{shape}-{p['spacing']}mm-s{p['seed']}"
    if (root / "dataset.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        write_phantom_dataset(
            tmp,
            n_train=p["n_train"],
            n_test=p["n_test"],
            seed=p["seed"],
            config=PhantomConfig(shape=p["shape"], spacing=p["spacing"]),
            force=True,
            progress=progress,
        )
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
