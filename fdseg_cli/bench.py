"""``fdseg bench``: throughput of the band operators on every available backend."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from fdseg_cli.options import count_option, device_option, progress_option
from fdseg_core.atomic import atomic_write_text
from fdseg_core.choices import BENCH_OPS, DEFAULT_BAND_DIMS, DEFAULT_BETA, LAYOUTS

__all__ = ["bench"]

#: Shapes timed without --shape: one volume of the paper's size on the CPU (a batch of
#: 8-channel feature maps too is heavy on a small machine), and that batch too on CUDA.
_DEFAULT_SHAPES = {"cpu": ("1x1x160x160x128",), "cuda": ("1x1x160x160x128", "2x8x160x160x128")}
_STEP_FUSIONS = 3  # run_step_benchmarks times fusion none, early and late


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a shape like 2x8x160x160x128", param_hint="--shape"
        ) from None
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise click.BadParameter(
            f"{text!r}: expected N x C x X x Y x Z (or N x C x H x W) positive sizes",
            param_hint="--shape",
        )
    return shape


@dataclass(frozen=True)
class _Timings:
    """What to time, from the checked options."""

    shapes: list[tuple[int, ...]]
    device: str
    modes: tuple[str, ...]
    backends: list[str]
    ops: list[str]

    def cases(self, step_sizes: Sequence[int]) -> int:
        """How many timings (progress bar ticks) the timings and the training steps take."""
        backends_timed = len(dict.fromkeys(["torch", *self.backends]))
        total = len(self.shapes) * len(self.ops) * backends_timed * len(self.modes)
        return total + len(step_sizes) * _STEP_FUSIONS * len(self.modes)


def _resolve_device(device: str, modes: Sequence[str]) -> str:
    import torch  # lazy: torch is heavy, `fdseg bench --help` stays fast

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("no CUDA device is available here", param_hint="--device")
    if "cuda-graph" in modes and device != "cuda":
        raise click.BadParameter("cuda-graph needs --device cuda", param_hint="--mode")
    return device


def _timings(shapes, backends, ops, device, beta, layout, modes) -> _Timings:
    """The options checked (click.BadParameter naming the option otherwise)."""
    # lazy: the band operators import torch (heavy), `fdseg bench --help` stays fast
    from fdseg_core.bands import BACKENDS, available_backends, band_width
    from fdseg_core.benchmark import OPS, PAPER

    device = _resolve_device(device, modes)
    parsed = [_parse_shape(s) for s in shapes or _DEFAULT_SHAPES[device]]
    modes = ("eager", *[m for m in modes if m != "eager"])
    usable = available_backends(device)
    if layout == "reference":
        usable = [b for b in usable if b != "triton"]
    names = list(backends) or [PAPER, *usable]
    for name in names:
        if name != PAPER and name not in BACKENDS:
            raise click.BadParameter(
                f"unknown backend {name!r}; expected 'paper' or one of {list(BACKENDS)}",
                param_hint="--backend",
            )
        if name != PAPER and name not in usable:
            raise click.BadParameter(
                f"backend {name!r} is not available on {device} for layout {layout!r} here "
                f"(available: {usable})",
                param_hint="--backend",
            )
    chosen_ops = list(ops) or list(OPS)
    for shape in parsed:
        for d in DEFAULT_BAND_DIMS:
            if band_width(shape[d], beta) < 1:
                raise click.BadParameter(
                    f"shape {'x'.join(map(str, shape))}: dim {d} of size {shape[d]} keeps "
                    f"no sample at beta={beta}",
                    param_hint="--shape",
                )
    return _Timings(parsed, device, modes, names, chosen_ops)


@contextmanager
def _progress_bar(total: int, progress: bool) -> Iterator[Callable[[str], None]]:
    """A ``step(label)`` callback that advances a progress bar of ``total`` cases."""
    bar = tqdm(total=total, disable=not progress, desc="bench", unit="case", leave=False)

    def step(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    try:
        yield step
    finally:
        bar.close()


def _run(
    timings: _Timings,
    step_sizes: Sequence[int],
    *,
    dtype: str,
    beta: float,
    layout: str,
    warmup: int,
    repeats: int,
    progress: bool,
) -> tuple[list[Any], list[Any]]:
    """Time the band operators, then the training steps: ``(rows, steps)``."""
    import torch  # lazy: torch and the benchmarks are heavy, `fdseg bench --help` stays fast

    from fdseg_core.benchmark import run_benchmarks, run_step_benchmarks

    with _progress_bar(timings.cases(step_sizes), progress) as step:
        rows = run_benchmarks(
            timings.shapes,
            timings.backends,
            ops=timings.ops,
            dtype=getattr(torch, dtype),
            device=timings.device,
            beta=beta,
            warmup=warmup,
            repeats=repeats,
            progress=step,
            layout=layout,
            modes=timings.modes,
        )
        steps = run_step_benchmarks(
            step_sizes,
            device=timings.device,
            modes=timings.modes,
            repeats=repeats,
            warmup=max(warmup, 2),
            progress=step,
        )
    return rows, steps


def _environment(device: str) -> dict[str, Any]:
    """Where the timings ran: device, its name, torch version, threads."""
    import torch  # lazy: torch is heavy, `fdseg bench --help` stays fast

    device_name = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else (platform.processor() or platform.machine())
    )
    return {
        "device": device,
        "device_name": device_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _echo_op_table(rows: Sequence[Any], env: dict[str, Any], layout: str) -> None:
    cuda = env["device"] == "cuda"
    click.echo(
        f"device: {env['device']} ({env['device_name']}), threads: {env['threads']}, "
        f"torch {env['torch']}, layout: {layout}"
    )
    click.echo(
        f"{'backend':8} {'mode':10} {'op':9} {'shape':18} {'dtype':8} {'median ms':>10} "
        f"{'GB/s':>8} {'vs torch':>9}"
        + (f" {'% copy bw':>10} {'GPU ms':>8} {'% bw GPU':>9}" if cuda else "")
    )
    for r in rows:
        line = (
            f"{r.backend:8} {r.mode:10} {r.op:9} {'x'.join(map(str, r.shape)):18} {r.dtype:8} "
            f"{r.median_ms:10.2f} {r.gbps:8.2f} {r.speedup:8.2f}x"
        )
        if r.pct_copy_bw is not None:
            line += f" {r.pct_copy_bw:9.1f}%"
        if r.device_ms is not None:
            line += f" {r.device_ms:8.3f} {r.pct_copy_bw_device:8.1f}%"
        click.echo(line)


def _echo_step_table(steps: Sequence[Any], device: str) -> None:
    if not steps:
        return
    gpu = device == "cuda"
    click.echo("training step (unet3d, batch 2, AdamW, Dice+CE), overhead vs fusion none:")
    click.echo(
        f"{'fusion':7} {'patch':>6} {'mode':10} {'step ms':>9} {'overhead':>9}"
        + (f" {'GPU ms':>9} {'GPU overhead':>13}" if gpu else "")
    )
    for r in steps:
        over = "—" if r.overhead is None else f"{100 * r.overhead:+.1f} %"
        line = f"{r.fusion:7} {r.patch:>5}³ {r.mode:10} {r.median_ms:9.1f} {over:>9}"
        if gpu and r.device_ms is not None:
            dover = "—" if r.device_overhead is None else f"{100 * r.device_overhead:+.1f} %"
            line += f" {r.device_ms:9.1f} {dover:>13}"
        click.echo(line)


def _triton_version() -> str | None:
    try:
        import triton  # lazy: optional (the triton extra), only its version is read
    except ImportError:
        return None
    return triton.__version__


def _write_json(
    json_path: str, rows: Sequence[Any], steps: Sequence[Any], env: dict[str, Any], beta: float
) -> None:
    """The rows and training steps, each with the environment, as a JSON list."""
    env = {
        "device": env["device"],
        "device_name": env["device_name"],
        "torch": env["torch"],
        "triton": _triton_version(),
        "threads": env["threads"],
        "beta": beta,
    }
    payload = [dict(r.as_dict(), **env) for r in rows]
    payload += [dict(r.as_dict(), kind="train_step", **env) for r in steps]
    atomic_write_text(Path(json_path), json.dumps(payload, indent=1) + "\n")
    click.echo(f"wrote {json_path}")


@click.command()
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    help="Input shape NxCxXxYxZ; repeat for several [default: "
    f"{' '.join(_DEFAULT_SHAPES['cpu'])} on the CPU, also "
    f"{_DEFAULT_SHAPES['cuda'][-1]} on CUDA].",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    help="Backend to time (repeatable; default: every available one and the paper's "
    "pipeline). 'paper' is the paper's pipeline.",
)
@click.option(
    "--op",
    "ops",
    multiple=True,
    type=click.Choice(list(BENCH_OPS)),
    help="Operation (repeatable; default: all four).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16", "float64"]),
    default="float32",
    show_default=True,
    help="Data type of the input tensors.",
)
@device_option
@click.option(
    "--beta",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=DEFAULT_BETA,
    show_default=True,
    help="Relative width of the low band.",
)
@click.option(
    "--layout",
    type=click.Choice(list(LAYOUTS)),
    default="centered",
    show_default=True,
    help="Band layout: the paper's text (centered) or its public code (reference; "
    "no triton kernels).",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(["eager", "compiled", "cuda-graph"]),
    help="Also time the ops compiled (torch.compile) or replayed from a CUDA graph "
    "(repeatable; eager is always timed).",
)
@click.option(
    "--train-step",
    "step_sizes",
    multiple=True,
    type=click.IntRange(8),
    help="Also time a training step (unet3d, batch 2, AdamW) of fusion none / early / late "
    "at this cubic patch size (repeatable, e.g. --train-step 64 --train-step 128): the "
    "overhead table, with GPU busy time on CUDA.",
)
@count_option("--repeats", default=5, help="Timed runs; the median is reported.")
@count_option("--warmup", minimum=0, default=1, help="Untimed runs before the timed ones.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Also write the rows (and the environment) to this JSON file.",
)
@progress_option
def bench(
    shapes,
    backends,
    ops,
    dtype,
    device,
    beta,
    layout,
    modes,
    step_sizes,
    repeats,
    warmup,
    json_path,
    progress,
):
    """Time band_split and band_fuse (forward, and forward+backward) for every available
    backend and the paper's pipeline; print median ms, effective GB/s and the speed-up
    over the torch.fft backend measured in the same run; on CUDA also the GPU busy time
    (profiler) beside the wall time, and both as a percentage of the copy bandwidth."""
    timings = _timings(shapes, backends, ops, device, beta, layout, modes)
    rows, steps = _run(
        timings,
        step_sizes,
        dtype=dtype,
        beta=beta,
        layout=layout,
        warmup=warmup,
        repeats=repeats,
        progress=progress,
    )
    env = _environment(timings.device)
    _echo_op_table(rows, env, layout)
    _echo_step_table(steps, timings.device)
    if json_path:
        _write_json(json_path, rows, steps, env, beta)
