"""ONNX export of (frequency-disentangled) segmentation models.

The band operators go into the graph as the matmul backend's per-axis matrix
products (``docs/export.md``), whatever backend the model runs on in PyTorch: the
torch.fft backend would become ONNX ``DFT`` nodes on complex pairs, and the Triton
kernels cannot leave PyTorch at all. With dynamic spatial sizes the band matrices
are built inside the graph from ``Range``, ``Cos`` and ``Sin`` of the input's shape
(``k = floor(n * beta)`` at run time), so one file serves any input whose spatial
sizes are multiples of the backbone's size divisor.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from fdseg_core.atomic import atomic_path
from fdseg_core.bands import min_band_size
from fdseg_core.choices import DEFAULT_KERNEL
from fdseg_core.errors import InputError, MissingExtraError
from fdseg_core.export.metadata import METADATA_KEY, checkpoint_metadata
from fdseg_core.export.runtime import OnnxModel
from fdseg_core.nn import FrequencyDisentangledNet
from fdseg_core.train.checkpoint import load_model

__all__ = [
    "ExportResult",
    "METADATA_KEY",
    "checkpoint_metadata",
    "export_checkpoint",
    "export_onnx",
    "onnx_available",
]

#: Largest spatial size the dynamic dims allow (ONNX Runtime needs no bound; export does).
_MAX_SPATIAL = 4096


def onnx_available() -> str | None:
    """``None`` when ONNX export can run here, else what is missing (one line).

    Export writes the file with onnx and onnxscript and runs it in ONNX Runtime (the
    probe of a second size, ``check``): all three are the ``onnx`` extra.
    """
    missing = [
        m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None
    ]
    if missing:
        return (
            f"ONNX export needs {' and '.join(missing)}: pip install 'fdseg[onnx]' "
            "(onnx, onnxscript, onnxruntime)"
        )
    return None


def _require_onnx() -> None:
    reason = onnx_available()
    if reason is not None:
        raise MissingExtraError(reason, "onnx")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: The ``.onnx`` file.
        dynamic_spatial: Whether the spatial sizes are dynamic (multiples of
            ``size_divisor``), or fixed at ``example_shape``.
        size_divisor: Spatial sizes the file accepts are multiples of this.
        example_shape: The input shape traced.
        note: Why the spatial size is fixed, when it is (``None`` otherwise).
        max_abs_error: ``max |onnxruntime - torch|`` on the example input, when checked.
    """

    path: Path
    dynamic_spatial: bool
    size_divisor: int
    example_shape: tuple[int, ...]
    note: str | None = None
    max_abs_error: float | None = None


@contextlib.contextmanager
def _matmul_bands(model: nn.Module) -> Iterator[None]:
    """Run every FrequencyDisentangledNet inside ``model`` on the matmul backend (which has
    no kernel designs: the default design goes with it)."""
    nets = [m for m in model.modules() if isinstance(m, FrequencyDisentangledNet)]
    saved = [(n.backend, n.kernel) for n in nets]
    try:
        for n in nets:
            n.backend, n.kernel = "matmul", DEFAULT_KERNEL
        yield
    finally:
        for n, (backend, kernel) in zip(nets, saved, strict=True):
            n.backend, n.kernel = backend, kernel


def _layer_of(error: BaseException, program: Any) -> str | None:
    """The layer (module path and class) of the graph node an ONNX error names."""
    text = "\n".join(str(e) for e in (error, error.__cause__, error.__context__) if e is not None)
    node_name = re.search(r"translating node %(\S+)", text)
    target = re.search(r"target=torch\.ops\.(\S+?)\]?\(", text) or re.search(
        r"OpOverload\(op='([^']+)'", text
    )
    op = target.group(1) if target else None
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        if (node_name and node.name == node_name.group(1)) or (
            op and str(node.target).startswith(op)
        ):
            stack = node.meta.get("nn_module_stack") or {}
            path, cls = list(stack.values())[-1] if stack else ("", type(program).__name__)
            return f"layer {path or '<root>'!r} ({cls.rsplit('.', 1)[-1]}) uses {node.target}"
    return None


def _dynamic_shapes(
    example: torch.Tensor, divisor: int, min_size: int, dynamic_spatial: bool
) -> dict[str, dict[int, Any]]:
    shapes: dict[int, Any] = {0: Dim("batch", min=1, max=1024)}
    if dynamic_spatial:
        lo = max(1, math.ceil(min_size / divisor))
        for i in range(2, example.ndim):
            shapes[i] = divisor * Dim(f"spatial{i - 2}", min=lo, max=_MAX_SPATIAL // divisor)
    return {"x": shapes}


def _trace(model: nn.Module, example: torch.Tensor, divisor: int, min_size: int, dynamic: bool):
    with _quiet_exporter():
        return torch.export.export(
            model,
            (example,),
            dynamic_shapes=_dynamic_shapes(example, divisor, min_size, dynamic),
            strict=False,
        )


class _NotUsedOps(logging.Filter):
    """torch.onnx's registry warns, once per operator, that torchvision's operators are
    skipped when torchvision is absent: fdseg's models use none of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter without the noise that says nothing about fdseg's model: the
    torchvision registry lines, and torch's own deprecation of ``LeafSpec`` checks
    inside its exporter (a ``FutureWarning`` from torch's code, not ours)."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    quiet = _NotUsedOps()
    registry.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        registry.removeFilter(quiet)


def _to_onnx(program: Any, example: torch.Tensor, opset: int | None) -> Any:
    """The ``torch.onnx`` program of an exported program; untranslatable layers named."""
    try:
        with _quiet_exporter():
            return torch.onnx.export(
                program,
                (example,),
                input_names=["image"],
                output_names=["logits"],
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:
        layer = _layer_of(exc, program)
        what = layer or str(exc).strip().splitlines()[0]
        raise InputError(f"cannot export to ONNX: {what}, which has no ONNX translation") from exc


def _probe_other_size(
    model: nn.Module, onnx_program: Any, example: torch.Tensor, divisor: int
) -> str | None:
    """Run a dynamic graph at a second spatial size (one divisor larger on every axis)
    in ONNX Runtime; ``None`` when it matches PyTorch, else why not (one line)."""
    import onnxruntime as ort  # lazy: the optional onnx extra (see onnx_available)

    probe = torch.randn(
        (1, *example.shape[1:2], *(s + divisor for s in example.shape[2:])),
        generator=torch.Generator().manual_seed(1),
    )
    size = "x".join(map(str, probe.shape[2:]))
    try:
        session = ort.InferenceSession(
            onnx_program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        got = session.run(None, {"image": probe.numpy()})[0]
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:160]
        return f"{size}: {first}"
    want = model(probe)
    got = torch.from_numpy(got)
    if got.shape != want.shape:
        return f"{size}: output shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    scale = float(want.abs().max()) or 1.0
    error = float((got - want).abs().max()) / scale
    if not error <= 1e-3:
        return f"{size}: relative difference {error:.2g} to PyTorch"
    return None


def _checked_shape(example_shape: Sequence[int], divisor: int) -> tuple[int, ...]:
    """``example_shape`` as ints, checked: ``(N, C, *spatial)``, 2 or 3 spatial dims, each
    a multiple of ``divisor``."""
    shape = tuple(int(s) for s in example_shape)
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise InputError(
            f"example_shape must be (N, C, *spatial) with 2 or 3 spatial dims, got {shape}"
        )
    bad = [s for s in shape[2:] if s % divisor]
    if bad:
        raise InputError(
            f"example_shape {shape}: spatial sizes must be multiples of the model's size "
            f"divisor {divisor}"
        )
    return shape


def _min_size(model: nn.Module, divisor: int) -> int:
    """Smallest spatial size of the dynamic dims: the divisor, and with a fusion at least
    ``1 / beta`` (one sample in the low band)."""
    beta = float(getattr(model, "beta", 0.5))
    fusion = getattr(model, "fusion", "none")
    return divisor if fusion == "none" else max(divisor, min_band_size(beta))


def _random_input(shape: Sequence[int]) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0))


def _dynamic_example(example: torch.Tensor, divisor: int) -> torch.Tensor:
    """The input of a dynamic trace: torch.export fixes sizes of 1, so a dynamic size
    traced at 1 x divisor would be specialised; every spatial size is at least 2 x
    divisor."""
    if min(example.shape[2:]) >= 2 * divisor:
        return example
    n, c, *spatial = example.shape
    return _random_input((n, c, *(max(s, 2 * divisor) for s in spatial)))


def _export_fixed(
    model: nn.Module, example: torch.Tensor, divisor: int, min_size: int, opset: int | None
) -> Any:
    """The ONNX program with the spatial sizes fixed at ``example``'s."""
    program = _trace(model, example, divisor, min_size, False)
    return _to_onnx(program, example, opset)


def _export_dynamic(
    model: nn.Module, example: torch.Tensor, divisor: int, min_size: int, opset: int | None
) -> tuple[Any, str | None]:
    """The ONNX program with dynamic spatial sizes, checked at a second size; ``(None,
    why)`` when the model cannot be traced with dynamic sizes or the graph fails there."""
    traced = _dynamic_example(example, divisor)
    try:
        program = _trace(model, traced, divisor, min_size, True)
    except Exception as exc:  # the sizes could not stay symbolic
        first = str(exc).strip().splitlines()[0][:200]
        return None, f"the model could not be traced with dynamic sizes ({first})"
    onnx_program = _to_onnx(program, traced, opset)
    failure = _probe_other_size(model, onnx_program, traced, divisor)
    if failure is not None:
        # a size baked into the graph (e.g. a transformer's window count) that
        # torch.export did not flag: fix the size rather than ship a broken file
        return None, f"the dynamic graph failed at another size ({failure})"
    return onnx_program, None


def _convert(
    model: nn.Module,
    example: torch.Tensor,
    divisor: int,
    min_size: int,
    dynamic_spatial: bool,
    opset: int | None,
) -> tuple[Any, bool, str | None]:
    """The ONNX program, whether its spatial sizes are dynamic, and why they are fixed
    when dynamic sizes were asked for but could not be had (``None`` otherwise)."""
    if not dynamic_spatial:
        try:
            program = _trace(model, example, divisor, min_size, False)
        except Exception as exc:
            raise InputError(f"the model cannot be traced for export: {exc}") from exc
        return _to_onnx(program, example, opset), False, None
    onnx_program, why = _export_dynamic(model, example, divisor, min_size, opset)
    if onnx_program is not None:
        return onnx_program, True, None
    note = f"spatial size fixed at {'x'.join(map(str, example.shape[2:]))}: {why}"
    return _export_fixed(model, example, divisor, min_size, opset), False, note


def _set_metadata(onnx_program: Any, meta: Mapping[str, Any]) -> None:
    """``meta`` as JSON under :data:`METADATA_KEY`, and each entry as a key of its own."""
    props = onnx_program.model.metadata_props
    props[METADATA_KEY] = json.dumps(meta, default=str)
    for key, value in meta.items():
        props[str(key)] = value if isinstance(value, str) else json.dumps(value, default=str)


def _max_abs_error(model: nn.Module, path: Path, example: torch.Tensor) -> float:
    """``max |onnxruntime - torch|`` of the file at ``path`` on ``example``."""
    with _matmul_bands(model), torch.no_grad():
        want = model(example)
    got = OnnxModel(path)(example)
    return float((got - want).abs().max())


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    example_shape: Sequence[int],
    dynamic_spatial: bool = True,
    metadata: Mapping[str, Any] | None = None,
    check: bool = True,
    opset: int | None = None,
) -> ExportResult:
    """Export a segmentation model to one ONNX file, band operators included.

    Args:
        model: A model mapping ``(N, C, *spatial)`` to logits, typically a
            :class:`~fdseg_core.nn.FrequencyDisentangledNet` (any backend: the band
            operators are exported as matmuls).
        path: The ``.onnx`` file to write (atomically: a temp file, then a rename).
        example_shape: ``(N, C, *spatial)`` to trace with; spatial sizes must be
            multiples of the model's ``size_divisor``. The batch is always dynamic.
        dynamic_spatial: Make the spatial sizes dynamic (multiples of the size
            divisor, band matrices built in the graph). The dynamic graph is run in
            ONNX Runtime at a second size (one divisor larger on every axis) and
            compared with PyTorch. When the model cannot be traced with dynamic sizes,
            or the dynamic graph fails that check (a size baked in, as in a windowed
            transformer), the sizes are fixed at ``example_shape`` and
            :attr:`ExportResult.note` says why.
        metadata: Written into the file: ``fdseg.meta`` holds it as JSON, and each
            entry also as a key of its own.
        check: Run the file with ONNX Runtime on the example input and record the
            largest difference to PyTorch.
        opset: ONNX opset (``None``: the exporter's default).

    Returns:
        An :class:`ExportResult`.

    Raises:
        ValueError: A missing ``onnx`` extra, a bad example shape, or a layer with no
            ONNX translation (the message names the layer, its class and the op).
    """
    _require_onnx()
    divisor = int(getattr(model, "size_divisor", 1))
    shape = _checked_shape(example_shape, divisor)
    # batch 2: a traced batch of 1 is specialised to 1 by torch.export
    example = _random_input((max(2, shape[0]), *shape[1:]))
    model = model.eval()
    with _matmul_bands(model), torch.no_grad():
        onnx_program, dynamic_spatial, note = _convert(
            model, example, divisor, _min_size(model, divisor), dynamic_spatial, opset
        )
    meta = dict(metadata or {})
    meta.update(size_divisor=divisor, dynamic_spatial=dynamic_spatial, example_shape=list(shape))
    _set_metadata(onnx_program, meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx_program.save(tmp)
    error = _max_abs_error(model, path, example) if check else None
    return ExportResult(path, dynamic_spatial, divisor, shape, note, error)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    *,
    dynamic_spatial: bool = True,
    spatial: Sequence[int] | None = None,
    check: bool = True,
) -> ExportResult:
    """Export the model of a training checkpoint (``best.pt`` / ``last.pt``) to ONNX.

    Args:
        checkpoint: The checkpoint.
        path: The ``.onnx`` file to write.
        dynamic_spatial: See :func:`export_onnx`.
        spatial: Spatial size to trace with (default: the checkpoint's patch size, the
            whole-volume shape for a whole-volume run); with ``dynamic_spatial=False``
            the file accepts only this size.
        check: See :func:`export_onnx`.

    Returns:
        An :class:`ExportResult`.
    """
    _require_onnx()  # before loading the model
    model, card = load_model(checkpoint)
    size = tuple(int(s) for s in (spatial or card.patch_size))
    channels = card.input_channels
    return export_onnx(
        model,
        path,
        example_shape=(1, channels, *size),
        dynamic_spatial=dynamic_spatial,
        metadata=checkpoint_metadata(card),
        check=check,
    )
