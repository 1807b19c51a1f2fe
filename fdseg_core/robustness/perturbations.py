"""The perturbation suite: what a scan that differs from the training scans may look like.

Three families, each at graded strengths (strength 0 is the clean image, exactly):

* MRI acquisition artifacts, from TorchIO (the ``robustness`` extra): a smooth bias
  field, rigid motion during the acquisition, ghosting, a k-space spike, Gaussian noise,
  blur, and anisotropic downsampling (fewer slices, interpolated back);
* spectral changes made with fdseg's own band operators at the cut-off ``beta``: the
  low band (the centred ``k``-box over the in-plane axes,
  :func:`fdseg_core.bands.band_split`) or the high band (the rest) scaled down, or
  removed at full strength;
* intensity changes that survive each channel's normalisation: a gamma curve and a
  contrast window (intensities clipped to a central percentile range). A linear change
  of brightness or contrast is not among them: z-score normalisation removes it.

Each perturbation acts on the image as loaded, before the model's normalisation and
resampling, on the case's own grid; labels are untouched. Random parameters (noise,
motion, spike position, the bias field's coefficients) come from a seed derived from
the suite's seed, the case and the kind, so every model sees the same perturbed image
(comparisons are paired), a rerun reproduces it, and a kind's levels scale one random
draw. The suite is
versioned (:data:`SUITE_VERSION`): results record it with every parameter.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fdseg_core.bands import band_split
from fdseg_core.choices import DEFAULT_BAND_DIMS, DEFAULT_BETA
from fdseg_core.errors import InputError, MissingExtraError

__all__ = [
    "KINDS",
    "LEVELS",
    "SUITE_VERSION",
    "Perturbation",
    "PerturbationSuite",
    "perturb",
    "require_torchio",
]

#: Changes whenever a kind, a level or a parameter changes: results of two versions are
#: not comparable.
SUITE_VERSION = "1"

#: kind -> (family, the strengths of its three levels, what a strength means)
KINDS: dict[str, tuple[str, tuple[float, ...], str]] = {
    "bias": ("artifact", (0.2, 0.4, 0.6), "largest coefficient of a cubic log bias field"),
    "motion": ("artifact", (2.0, 5.0, 10.0), "degrees and mm of up to 2 rigid movements"),
    "ghosting": ("artifact", (0.3, 0.6, 0.9), "intensity of 4 ghosts along the first axis"),
    "spike": ("artifact", (0.3, 0.6, 1.0), "intensity of one k-space spike"),
    "noise": ("artifact", (0.05, 0.1, 0.2), "noise std, as a fraction of the image's std"),
    "blur": ("artifact", (0.5, 1.0, 2.0), "Gaussian std in mm"),
    "anisotropy": ("artifact", (2.0, 3.0, 4.0), "downsampling factor of the last axis"),
    "low_band": ("spectral", (0.25, 0.5, 1.0), "fraction of the low band removed"),
    "high_band": ("spectral", (0.25, 0.5, 1.0), "fraction of the high band removed"),
    "gamma": ("intensity", (0.5, 1.0, 1.5), "log2 of the gamma of intensities in [0, 1]"),
    "contrast": ("intensity", (1.0, 5.0, 10.0), "percent clipped at each end"),
}

#: The levels of every kind: 1 (the weakest strength) to 3 (the strongest).
LEVELS: tuple[int, ...] = (1, 2, 3)

#: The TorchIO kinds: they need the robustness extra.
_TORCHIO = {k for k, (family, _, _) in KINDS.items() if family == "artifact"}


@dataclass(frozen=True)
class Perturbation:
    """One kind at one strength (0: the clean image).

    Attributes:
        kind: A key of :data:`KINDS`, or ``"clean"``.
        strength: Its strength (:data:`KINDS` says what it means); 0 for ``"clean"``.
        level: 0 for clean, else the level (1, 2, 3) of the strength.
    """

    kind: str
    strength: float
    level: int

    @property
    def name(self) -> str:
        """``clean`` or ``<kind>@<strength>``."""
        return "clean" if self.kind == "clean" else f"{self.kind}@{self.strength:g}"


@dataclass(frozen=True)
class PerturbationSuite:
    """The kinds an audit applies, each at its strengths, and the clean image.

    Args:
        kinds: Keys of :data:`KINDS` (default: all of them, in that order).
        seed: The seed every random parameter derives from.
        beta: The cut-off of the spectral kinds (relative width of the low band).
        band_dims: The axes of the band split of a ``(N, C, X, Y, Z)`` tensor.
        levels: Which of each kind's three strengths to apply (1: the weakest, 3: the
            strongest; default all). A level's image does not depend on which others
            are applied, so audits with other levels score the same images.

    Raises:
        InputError: An unknown kind (the message lists the known ones), or a level
            outside 1 to 3.
    """

    kinds: tuple[str, ...] = tuple(KINDS)
    seed: int = 0
    beta: float = DEFAULT_BETA
    band_dims: tuple[int, ...] = DEFAULT_BAND_DIMS
    levels: tuple[int, ...] = LEVELS
    version: str = field(default=SUITE_VERSION, init=False)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise InputError(f"unknown perturbation {unknown[0]!r}; expected some of {list(KINDS)}")
        if not self.kinds:
            raise InputError("the perturbation suite needs at least one kind")
        if not 0 < self.beta < 1:
            raise InputError(f"beta must be in (0, 1), got {self.beta}")
        bad = [level for level in self.levels if level not in LEVELS]
        if bad or not self.levels:
            got = bad[0] if bad else "none"
            raise InputError(f"perturbation levels must be some of {list(LEVELS)}, got {got}")

    @property
    def needs_torchio(self) -> bool:
        return any(k in _TORCHIO for k in self.kinds)

    def perturbations(self) -> list[Perturbation]:
        """The clean image first, then every kind at its strengths (those of ``levels``)."""
        out = [Perturbation("clean", 0.0, 0)]
        for kind in self.kinds:
            strengths = KINDS[kind][1]
            out += [Perturbation(kind, strengths[i - 1], i) for i in sorted(set(self.levels))]
        return out

    def case_seed(self, case_id: str, p: Perturbation) -> int:
        """The seed of one kind on one case (the same in every run, and at every
        strength: a stronger level scales the same random draw, so the levels of a kind
        grow from one another)."""
        return zlib.crc32(f"{self.seed}:{case_id}:{p.kind}".encode())

    def to_dict(self) -> dict[str, Any]:
        """What results record: the version, the seed, the cut-off, every kind's three
        strengths and the levels applied (``levels`` only when not all three)."""
        out: dict[str, Any] = {
            "version": self.version,
            "seed": self.seed,
            "beta": self.beta,
            "band_dims": list(self.band_dims),
            "kinds": {
                k: {"family": KINDS[k][0], "strengths": list(KINDS[k][1]), "meaning": KINDS[k][2]}
                for k in self.kinds
            },
        }
        if tuple(sorted(set(self.levels))) != LEVELS:
            out["levels"] = sorted(set(self.levels))
        return out

    def images_key(self) -> dict[str, Any]:
        """What makes one kind's image at one strength: the version, the seed, the
        cut-off and the band axes. Two suites with the same key make the same image for
        every (case, kind, strength) they share, whatever their kinds and levels."""
        return {
            "version": self.version,
            "seed": self.seed,
            "beta": self.beta,
            "band_dims": list(self.band_dims),
        }


def perturb(
    image: np.ndarray,
    affine: np.ndarray,
    p: Perturbation,
    suite: PerturbationSuite,
    case_id: str,
) -> np.ndarray:
    """One perturbation of one case's image.

    Args:
        image: ``(C, X, Y, Z)`` float32, as loaded (before normalisation).
        affine: The voxel-to-world affine of its grid (spacing for blur and motion).
        p: The perturbation; strength 0 (``"clean"``) returns ``image`` unchanged.
        suite: Its suite (seed, spectral cut-off).
        case_id: The case, for the seed.

    Returns:
        ``(C, X, Y, Z)`` float32 on the same grid.
    """
    if p.kind == "clean" or p.strength == 0:
        return image
    seed = suite.case_seed(case_id, p)
    if p.kind in _TORCHIO:
        return _torchio(image, affine, p, seed)
    if p.kind in ("low_band", "high_band"):
        return _spectral(image, p, suite)
    return _INTENSITY[p.kind](image, p.strength)


def _spectral(image: np.ndarray, p: Perturbation, suite: PerturbationSuite) -> np.ndarray:
    """``(1 - s) low + high`` or ``low + (1 - s) high``: the band operators' split of the
    whole volume, one band scaled (in float64; removed at ``s = 1``)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64))[None]
    _, high = band_split(x, suite.beta, dims=suite.band_dims)
    low = x - high  # the low band on the full grid (band_split's projection is exact)
    keep = 1.0 - p.strength
    out = keep * low + high if p.kind == "low_band" else low + keep * high
    return out[0].numpy().astype(np.float32)


def _gamma(image: np.ndarray, strength: float) -> np.ndarray:
    """Each channel rescaled to [0, 1], raised to ``2 ** strength``, scaled back."""
    out = np.empty_like(image, dtype=np.float32)
    for c, channel in enumerate(image):
        lo, hi = float(channel.min()), float(channel.max())
        if hi <= lo:
            out[c] = channel
            continue
        unit = (channel.astype(np.float64) - lo) / (hi - lo)
        out[c] = (lo + (hi - lo) * unit ** (2.0**strength)).astype(np.float32)
    return out


def _contrast(image: np.ndarray, strength: float) -> np.ndarray:
    """Each channel clipped to its ``[strength, 100 - strength]`` percentile window."""
    out = np.empty_like(image, dtype=np.float32)
    for c, channel in enumerate(image):
        lo, hi = np.percentile(channel, [strength, 100.0 - strength])
        out[c] = np.clip(channel, lo, hi)
    return out


_INTENSITY: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "gamma": _gamma,
    "contrast": _contrast,
}


def require_torchio() -> None:
    """Check that TorchIO (the ``robustness`` extra) is installed.

    Raises:
        MissingExtraError: It is not (the message names the extra).
    """
    try:
        import torchio  # noqa: F401 - lazy: the robustness extra
    except ImportError as exc:
        raise MissingExtraError("the MRI artifact perturbations (TorchIO)", "robustness") from exc


def _torchio(image: np.ndarray, affine: np.ndarray, p: Perturbation, seed: int) -> np.ndarray:
    require_torchio()
    import torchio as tio  # lazy: the robustness extra

    s = p.strength
    std = float(np.std(image)) or 1.0
    transforms: dict[str, Callable[[], Any]] = {
        "bias": lambda: tio.RandomBiasField(coefficients=s, order=3),
        "motion": lambda: tio.RandomMotion(degrees=s, translation=s, num_transforms=2),
        "ghosting": lambda: tio.RandomGhosting(num_ghosts=(4, 4), axes=(0,), intensity=(s, s)),
        "spike": lambda: tio.RandomSpike(num_spikes=(1, 1), intensity=(s, s)),
        "noise": lambda: tio.RandomNoise(mean=0.0, std=(s * std, s * std)),
        "blur": lambda: tio.RandomBlur(std=(s, s)),
        "anisotropy": lambda: tio.RandomAnisotropy(axes=(2,), downsampling=(s, s)),
    }
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(image)), affine=affine)
    )
    with torch.random.fork_rng(devices=[]):  # TorchIO draws from torch's global RNG
        torch.manual_seed(seed)
        out = transforms[p.kind]()(subject)
    return out["image"].data.numpy().astype(np.float32, copy=False)
