"""fdseg's nnU-Net v2 trainers, for ``nnUNet_extTrainer``.

This folder holds trainer modules only, because nnU-Net imports every module of the
folders named in ``nnUNet_extTrainer`` to find a trainer class by name::

    export nnUNet_extTrainer=$(fdseg nnunet path)
    nnUNetv2_train DATASET 3d_fullres 0 -tr nnUNetTrainerFDEarly

The classes live in ``fdseg_core.integrations.nnunet.trainer`` (derive your own from
there); this module only makes them findable by name.
"""

from fdseg_core.integrations.nnunet.trainer import (  # noqa: F401 - found by name
    nnUNetTrainer_plateau,
    nnUNetTrainerFD,
    nnUNetTrainerFDEarly,
    nnUNetTrainerFDEarly_beta0p05,
    nnUNetTrainerFDEarly_beta0p2,
    nnUNetTrainerFDEarly_plateau,
    nnUNetTrainerFDEarly_reference,
    nnUNetTrainerFDLate,
    nnUNetTrainerFDLate_beta0p05,
    nnUNetTrainerFDLate_beta0p2,
    nnUNetTrainerFDLate_plateau,
    nnUNetTrainerFDLate_reference,
)
