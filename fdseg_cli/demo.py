"""``fdseg demo``: split and fuse a built-in volume with every backend and say what happened."""

from __future__ import annotations

import time

import click

from fdseg_cli.options import shape_option
from fdseg_core.choices import DEFAULT_BETA

__all__ = ["demo"]


@click.command()
@click.option(
    "--beta", type=float, default=DEFAULT_BETA, show_default=True, help="Relative band width."
)
@shape_option("Volume size X Y Z of the built-in volume.", default=(160, 160, 128))
def demo(beta: float, shape: tuple[int, int, int]) -> None:
    """Split and fuse a built-in volume with every backend and print what it did."""
    # lazy: the band operators import torch; `--help` stays instant
    from fdseg_core.bands import available_backends, band_fuse, band_split, paper_band_split
    from fdseg_core.bands.demo import demo_volume

    if min(shape) < 1:
        raise click.BadParameter(f"sizes must be positive, got {shape}", param_hint="--shape")
    x = demo_volume(shape)[None, None]
    click.echo(f"volume: {tuple(x.shape)} float32, a synthetic head with deep nuclei, beta={beta}")
    t0 = time.perf_counter()
    paper_band_split(x, beta)
    paper_ms = (time.perf_counter() - t0) * 1e3
    click.echo(f"paper pipeline (fftn + fftshift + mask + 2 ifftn): {paper_ms:8.1f} ms")
    energy = float(x.square().sum())
    for backend in available_backends("cpu"):
        band_split(x, beta, backend=backend)  # warm-up
        t0 = time.perf_counter()
        low, high = band_split(x, beta, backend=backend)
        ms = (time.perf_counter() - t0) * 1e3
        err = float((band_fuse(low, high, beta, backend=backend) - x).abs().max())
        share = 1.0 - float(high.square().sum()) / energy
        click.echo(
            f"backend {backend:7s}: low {tuple(low.shape)}, high {tuple(high.shape)}, "
            f"split {ms:7.1f} ms, low band holds {100 * share:5.1f}% of the energy, "
            f"max |fuse(split(x)) - x| = {err:.1e}"
        )
