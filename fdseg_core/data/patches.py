"""Training patches: foreground oversampling, augmentation, reproducible from a seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fdseg_core.data.augment import apply_params, sample_params
from fdseg_core.data.preprocess import Volume
from fdseg_core.errors import InputError

__all__ = ["PatchDataset", "crop_or_pad"]


def crop_or_pad(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The window ``[start, start + size)`` of the last three axes, zero-padded where it
    leaves the array (``start`` may be negative)."""
    spatial = array.shape[-3:]
    out = np.zeros((*array.shape[:-3], *size), dtype=array.dtype)
    src, dst = [], []
    for s, n, p in zip(start, spatial, size, strict=True):
        a, b = max(s, 0), min(s + p, n)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - s, a - s + max(0, b - a)))
    out[(..., *dst)] = array[(..., *src)]
    return out


class PatchDataset(torch.utils.data.Dataset):
    """An epoch of random patches drawn from preprocessed volumes.

    Sample ``i`` of epoch ``e`` depends only on ``(seed, e, i)``: the same patches come
    back after ``--resume``, in any number of worker processes, and each rank of a
    distributed run (a ``DistributedSampler`` hands it disjoint indices) gets its own.

    Args:
        volumes: Preprocessed training volumes (with labels).
        patch_size: ``(X, Y, Z)`` of a patch.
        samples_per_epoch: Length of the dataset.
        foreground_oversample: Probability that a patch is centred on a random
            foreground voxel of a random class present in the volume.
        augment: Apply the augmentation of :mod:`fdseg_core.data.augment`.
        seed: Seed of everything random here.
        whole_volumes: Every sample is a whole volume, centred and zero-padded (or
            cropped) to ``patch_size``; each epoch visits the volumes in a seeded
            random order (sample ``i`` is volume ``order[i % len(volumes)]``).
        intensity_augment: Include the intensity changes in the augmentation (off
            when the channels are pipeline bands, which a gamma or noise would mix).
    """

    def __init__(
        self,
        volumes: Sequence[Volume],
        *,
        patch_size: Sequence[int],
        samples_per_epoch: int,
        foreground_oversample: float = 0.33,
        augment: bool = True,
        seed: int = 0,
        whole_volumes: bool = False,
        intensity_augment: bool = True,
    ) -> None:
        if not volumes:
            raise InputError("PatchDataset needs at least one volume")
        if any(v.label is None for v in volumes):
            raise InputError("every training volume needs a label")
        self.volumes = list(volumes)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.foreground_oversample = float(foreground_oversample)
        self.augment = augment
        self.seed = int(seed)
        self.whole_volumes = bool(whole_volumes)
        self.intensity_augment = bool(intensity_augment)
        self.epoch = 0
        rng = np.random.default_rng(seed)
        # per volume, per class: up to 20,000 voxel coordinates to centre patches on
        self.fg: list[dict[int, np.ndarray]] = []
        for v in self.volumes:
            classes = {}
            for c in np.unique(v.label):
                if c == 0:
                    continue
                idx = np.argwhere(v.label == c)
                if len(idx) > 20000:
                    idx = idx[rng.choice(len(idx), 20000, replace=False)]
                classes[int(c)] = idx
            self.fg.append(classes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _generator(self, index: int) -> torch.Generator:
        mixed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(mixed))

    def _epoch_order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch, 7]).permutation(len(self.volumes))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = self._generator(index)
        if self.whole_volumes:
            vi = int(self._epoch_order()[index % len(self.volumes)])
        else:
            vi = int(torch.randint(0, len(self.volumes), (), generator=gen))
        vol, fg = self.volumes[vi], self.fg[vi]
        spatial = vol.image.shape[1:]
        p = self.patch_size
        if self.whole_volumes:
            start = [(n - s) // 2 for n, s in zip(spatial, p, strict=True)]
        elif fg and float(torch.rand((), generator=gen)) < self.foreground_oversample:
            cls = list(fg)[int(torch.randint(0, len(fg), (), generator=gen))]
            coords = fg[cls]
            centre = coords[int(torch.randint(0, len(coords), (), generator=gen))]
            start = [int(c) - s // 2 for c, s in zip(centre, p, strict=True)]
            # keep the window inside the volume where the volume is large enough
            start = [
                min(max(st, 0), max(n - s, 0)) if n >= s else (n - s) // 2
                for st, n, s in zip(start, spatial, p, strict=True)
            ]
        else:
            start = [
                int(torch.randint(0, n - s + 1, (), generator=gen)) if n >= s else (n - s) // 2
                for n, s in zip(spatial, p, strict=True)
            ]
        image = torch.from_numpy(crop_or_pad(vol.image, start, p))
        label = torch.from_numpy(crop_or_pad(vol.label, start, p))
        if self.augment:
            params = sample_params(gen, square_xy=p[0] == p[1])
            image, label = apply_params(image, label, params, intensity=self.intensity_augment)
        return image.float(), label.long()
