"""Where fdseg's nnU-Net trainers live, and what keeps nnU-Net from finding them.

Imports neither torch nor nnU-Net, so that ``fdseg nnunet path`` answers at once.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "EXT_TRAINER_ENV",
    "nnunet_available",
    "setup_problems",
    "trainer_folder",
    "workspace_environment",
]

#: The environment variable nnU-Net reads for folders of external trainers.
EXT_TRAINER_ENV = "nnUNet_extTrainer"


def trainer_folder() -> Path:
    """The folder to put in ``nnUNet_extTrainer``: fdseg's nnU-Net trainer modules."""
    return Path(__file__).resolve().parent / "trainers"


#: nnU-Net's folder variables, and the folder of a workspace that each names.
_WORKSPACE_FOLDERS = {
    "nnUNet_raw": "raw",
    "nnUNet_preprocessed": "preprocessed",
    "nnUNet_results": "results",
}


def workspace_environment(
    root: str | Path, *trainer_folders: str | Path, **settings: str
) -> dict[str, str]:
    """The environment in which nnU-Net's commands work in the folder ``root`` and find
    fdseg's trainers.

    Args:
        root: The workspace: its folders ``raw``, ``preprocessed`` and ``results``
            (created when missing) become ``nnUNet_raw``, ``nnUNet_preprocessed`` and
            ``nnUNet_results``.
        *trainer_folders: More folders of trainer modules, listed in ``nnUNet_extTrainer``
            after fdseg's own (:func:`trainer_folder`).
        **settings: More variables to set (``nnUNet_compile="false"``, ...).

    Returns:
        A copy of ``os.environ`` with those variables set.
    """
    env = dict(os.environ)
    for name, folder in _WORKSPACE_FOLDERS.items():
        path = Path(root) / folder
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env[EXT_TRAINER_ENV] = os.pathsep.join(str(f) for f in (trainer_folder(), *trainer_folders))
    return {**env, **settings}


def nnunet_available() -> str | None:
    """``None`` when nnU-Net v2 is installed, else how to install it (one line)."""
    if importlib.util.find_spec("nnunetv2") is None:
        return "nnU-Net v2 is not installed: pip install 'fdseg[nnunet]'"
    return None


def setup_problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """What keeps ``nnUNetv2_train -tr nnUNetTrainerFDEarly`` from finding fdseg's
    trainers: one line per problem (empty when none).

    Args:
        environ: The environment to check (default: ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    problems = []
    reason = nnunet_available()
    if reason is not None:
        problems.append(reason)
    folder = trainer_folder()
    value = environ.get(EXT_TRAINER_ENV, "")
    listed = [Path(p).resolve() for p in value.split(os.pathsep) if p.strip()]
    if not value.strip():
        problems.append(
            f"{EXT_TRAINER_ENV} is not set: export {EXT_TRAINER_ENV}=$(fdseg nnunet path)"
        )
    elif folder not in listed:
        problems.append(
            f"{EXT_TRAINER_ENV}={value} does not list fdseg's trainer folder {folder}: "
            f"export {EXT_TRAINER_ENV}=$(fdseg nnunet path)"
        )
    return problems
