"""Frequency-disentangled learning inside nnU-Net v2.

nnU-Net (>= 2.8) finds trainer classes outside its package through the
``nnUNet_extTrainer`` environment variable: a list of folders whose modules it imports
to look for a class by name, in ``nnUNetv2_train`` and ``nnUNetv2_predict`` alike.
fdseg ships such a folder (:func:`trainer_folder`, ``fdseg nnunet path``) holding only
trainer modules. Its trainers (``nnUNetTrainerFDEarly``, ``nnUNetTrainerFDLate`` and
their variants) build nnU-Net's *planned* network as nnU-Net does, then wrap it
(:func:`wrap_planned_network`) in fdseg's band split and fusion at the network's own
fusion points (:class:`~fdseg_core.nn.PlannedUNet`): its first stage (early) and its
last full-resolution decoder features (late). Everything else is nnU-Net's: plans,
preprocessing, augmentation, deep supervision, mixed precision, ``torch.compile``,
checkpoints, 5-fold cross-validation, ensembling and post-processing. See
``docs/nnunet.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fdseg_core._lazy import lazy_attributes

#: public name -> module that defines it (resolved on first access: importing this
#: package loads neither torch nor nnU-Net)
_EXPORTS: dict[str, str] = {
    "EXT_TRAINER_ENV": "fdseg_core.integrations.nnunet.setup",
    "nnunet_available": "fdseg_core.integrations.nnunet.setup",
    "setup_problems": "fdseg_core.integrations.nnunet.setup",
    "trainer_folder": "fdseg_core.integrations.nnunet.setup",
    "workspace_environment": "fdseg_core.integrations.nnunet.setup",
    "NnUNetFrequencyDisentangledNet": "fdseg_core.integrations.nnunet.network",
    "band_dims_for": "fdseg_core.integrations.nnunet.network",
    "wrap_planned_network": "fdseg_core.integrations.nnunet.network",
}

__all__ = [
    "EXT_TRAINER_ENV",
    "NnUNetFrequencyDisentangledNet",
    "band_dims_for",
    "nnunet_available",
    "setup_problems",
    "trainer_folder",
    "workspace_environment",
    "wrap_planned_network",
]

if TYPE_CHECKING:  # pragma: no cover
    from fdseg_core.integrations.nnunet.network import (
        NnUNetFrequencyDisentangledNet,
        band_dims_for,
        wrap_planned_network,
    )
    from fdseg_core.integrations.nnunet.setup import (
        EXT_TRAINER_ENV,
        nnunet_available,
        setup_problems,
        trainer_folder,
        workspace_environment,
    )

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
