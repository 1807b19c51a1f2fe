"""The names every layer agrees on, defined once.

This module imports nothing from fdseg: the band operators, the network, the
configuration, inference and the CLI all read their choices from here, so that a
new fusion, layout, loss or activation is added in one place.
"""

from __future__ import annotations

from fdseg_core.errors import InputError

__all__ = [
    "MAX_SEEDS",
    "N_RESAMPLES",
    "PER_RUN_FIELDS",
    "ACTIVATIONS",
    "BACKENDS",
    "BANDS",
    "BENCH_OPS",
    "BEST_SELECTIONS",
    "CASE_DRAWS",
    "DEFAULT_MARGIN",
    "DEFAULT_OVERLAP",
    "DEFAULT_WINDOW_BATCH",
    "DEFAULT_BAND_DIMS",
    "DEFAULT_BETA",
    "DEFAULT_KERNEL",
    "DEFAULT_MEMORY_GB",
    "COMPILE_MODES",
    "DEVICES",
    "FULL",
    "FUSIONS",
    "FUSION_AT",
    "FUSION_POINTS",
    "KERNELS",
    "LAYOUTS",
    "LOSSES",
    "LOSS_ACTIVATION",
    "OPTIMIZERS",
    "SCHEDULES",
    "activation_of_loss",
]

#: ``"none"`` is the baseline (no band split); early fuses after the first stem, late
#: before the last decoder stage.
FUSIONS: tuple[str, ...] = ("none", "early", "late")
#: Where fusion happens: at the backbone's own fusion points when it declares them
#: (``"auto"``), or always through the generic stems and head.
FUSION_AT: tuple[str, ...] = ("auto", "generic")
#: The fusion points a backbone may declare (early fusion at ``"stem"``, late at
#: ``"decoder"``).
FUSION_POINTS: tuple[str, ...] = ("stem", "decoder")
#: Band layouts: the paper's text (a centred box) and its public code (unshifted).
LAYOUTS: tuple[str, ...] = ("centered", "reference")
#: Band-operator backends (``"auto"`` picks one per call).
BACKENDS: tuple[str, ...] = ("torch", "matmul", "triton")
#: Designs of the Triton kernels (used when the Triton backend serves a call): one launch
#: per axis and direction, the two-pass kernels (both in-plane axes per launch, where two
#: adjacent band dims allow them; per-axis elsewhere), or ``"auto"`` (= fused where it
#: applies).
KERNELS: tuple[str, ...] = ("per_axis", "fused", "auto")
#: The kernel design when none is given: the per-axis kernels, measured on an H100; the
#: two-pass kernels are not measured on a GPU yet (``kernels/README.md``).
DEFAULT_KERNEL = "per_axis"
#: Where the band split is computed: in the model on each input, or once per whole
#: volume in the data pipeline.
BANDS: tuple[str, ...] = ("model", "volume")
#: ``patch_size`` value that trains on whole volumes.
FULL = "full"
#: The relative width of the low band when none is given (the paper's).
DEFAULT_BETA = 0.1
#: The band dims of an ``(N, C, *spatial)`` input when none are given: the first two
#: spatial dims (the in-plane axes of a 3D volume, X and Y in NIfTI order).
DEFAULT_BAND_DIMS: tuple[int, ...] = (2, 3)
#: The training fields each run of an experiment sets for itself (its place in the
#: grid), not the experiment's template.
PER_RUN_FIELDS: tuple[str, ...] = ("fusion", "train_cases", "seed", "case_draw")
#: Bootstrap resamples of every interval of an experiment's report, unless asked otherwise.
N_RESAMPLES = 10000
#: The most seeds a sample-size answer searches (``seeds_needed``); more is "unknown".
MAX_SEEDS = 10000
#: How ``best.pt`` is chosen: by the mean Dice of one validation, or by its exponential
#: moving average over validations (nnU-Net's rule).
BEST_SELECTIONS: tuple[str, ...] = ("dice", "ema")
#: How a run's training cases are drawn from its fold: ``nested`` (one seeded
#: permutation per seed, so a smaller training set is part of every larger one) or
#: ``independent`` (a separate draw for each seed and training size).
CASE_DRAWS: tuple[str, ...] = ("nested", "independent")
#: The equivalence margin of an experiment's verdicts (Dice): an interval within ±1
#: point says that no effect beyond it exists; a wider one that includes 0 is "not
#: detected".
DEFAULT_MARGIN = 0.01
#: The overlap of neighbouring sliding windows when none is given.
DEFAULT_OVERLAP = 0.5
#: Sliding windows per forward pass when none is given (``fdseg predict --batch-size``;
#: validation batches windows as training batches patches, ``TrainConfig.batch_size``).
#: Not 1: at one thread, PyTorch's CPU ``conv3d`` runs a batch of one window on its slow
#: im2col path (``aten::slow_conv3d_forward``) and a batch of two on oneDNN, 3.3 times
#: faster for 48 x 48 x 32 windows (``benchmarks/test_sliding_window_cpu.py``). The
#: windows are independent (a network in eval mode), so the probabilities are the same
#: up to float rounding.
DEFAULT_WINDOW_BATCH = 2
#: The operations ``fdseg bench`` times.
BENCH_OPS: tuple[str, ...] = ("split", "split+bwd", "fuse", "fuse+bwd")
#: The memory budget of one training step when planning from a dataset, in GiB.
DEFAULT_MEMORY_GB = 8.0
#: Training losses.
LOSSES: tuple[str, ...] = ("dice_ce", "sigmoid_dice")
#: How logits become probabilities and labels (:mod:`fdseg_core.infer.activation`).
ACTIVATIONS: tuple[str, ...] = ("softmax", "sigmoid")
#: The activation each loss trains: inference must follow it.
LOSS_ACTIVATION: dict[str, str] = {"dice_ce": "softmax", "sigmoid_dice": "sigmoid"}
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
SCHEDULES: tuple[str, ...] = ("poly", "cosine", "constant")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune")


def activation_of_loss(loss: str) -> str:
    """The activation a loss trains (``"softmax"`` or ``"sigmoid"``).

    Raises:
        ValueError: Unknown loss.
    """
    if loss not in LOSS_ACTIVATION:
        raise InputError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    return LOSS_ACTIVATION[loss]
