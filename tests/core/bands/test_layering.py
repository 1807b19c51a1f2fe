"""The band operators and the kernels import downwards only: no import cycle, and each
module imports only modules of lower layers (function-level imports included)."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import low_band_shape, low_band_shape_at, resolve_backend
from fdseg_core.bands.api import BACKENDS, LAYOUTS, check_low_matches
from fdseg_core.bands.operators import band_width

#: Top to bottom. A module may import modules of lower layers only.
LAYERS = [
    ("fdseg_core.bands", "fdseg_core.bands.paper", "fdseg_core.bands.api"),
    ("fdseg_core.bands.ops",),
    ("fdseg_core.bands.dispatch",),
    ("fdseg_kernels",),  # the whole package
    ("fdseg_core.bands.matmul", "fdseg_core.bands.fft"),
    ("fdseg_core.bands.checks",),
    ("fdseg_core.bands.operators",),
]

#: Inside fdseg_kernels, top to bottom.
KERNEL_LAYERS = [
    ("fdseg_kernels",),
    ("fdseg_kernels.band_split", "fdseg_kernels.band_fuse"),
    ("fdseg_kernels._common",),
    ("fdseg_kernels.band_fused",),
    ("fdseg_kernels._launch",),
    ("fdseg_kernels._env",),
]


@pytest.fixture(scope="module")
def graph():
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("fdseg_core", "fdseg_kernels", cache_dir=None)


def _ours(module: str) -> bool:
    return module.startswith(("fdseg_core.bands", "fdseg_kernels"))


def _layer_of(module: str, layers) -> int | None:
    for i, layer in enumerate(layers):
        for name in layer:
            if name == "fdseg_kernels" and layers is LAYERS:
                if module == name or module.startswith(name + "."):
                    return i
            elif module == name:
                return i
    return None


def test_no_import_cycle_among_bands_and_kernels(graph):
    ours = {m for m in graph.modules if _ours(m)}
    cycles = []
    for m in sorted(ours):
        for other in graph.find_modules_directly_imported_by(m) & ours:
            if other != m and graph.chain_exists(importer=other, imported=m):
                cycles.append((m, other))
    assert cycles == []


@pytest.mark.parametrize("layers", [LAYERS, KERNEL_LAYERS], ids=["bands", "kernels"])
def test_modules_import_lower_layers_only(graph, layers):
    upward = []
    for importer in sorted(m for m in graph.modules if _ours(m)):
        mine = _layer_of(importer, layers)
        if mine is None:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            theirs = _layer_of(imported, layers)
            if theirs is not None and theirs < mine:
                upward.append((importer, imported))
            elif theirs == mine and layers is KERNEL_LAYERS and importer != imported:
                upward.append((importer, imported))
    assert upward == []


def test_backend_and_layout_names_come_from_choices():
    from fdseg_core import choices
    from fdseg_core.bands import BACKENDS as exported_backends
    from fdseg_core.bands import LAYOUTS as exported_layouts

    assert BACKENDS is choices.BACKENDS is exported_backends
    assert LAYOUTS is choices.LAYOUTS is exported_layouts


@pytest.mark.parametrize(
    ("backend", "layout", "message"),
    [
        ("nope", "centered", "unknown backend 'nope'; expected 'auto' or one of"),
        ("auto", "nope", r"unknown layout 'nope'; expected one of \['centered', 'reference'\]"),
        ("triton", "reference", "backend 'triton' implements layout='centered' only"),
    ],
)
def test_early_name_check_and_resolution_give_the_same_message(backend, layout, message):
    from fdseg_core.bands import band_split

    with pytest.raises(ValueError, match=message):
        resolve_backend(backend, layout, torch.device("cpu"))
    with pytest.raises(ValueError, match=message):
        band_split(torch.zeros(1, 1, 20, 20), 0.1, backend=backend, layout=layout)


def test_low_band_shape_puts_the_widths_on_the_band_dims():
    assert low_band_shape((2, 3, 40, 36, 8), (2, 3), (4, 3)) == (2, 3, 4, 3, 8)
    assert low_band_shape(torch.Size([1, 1, 20, 20]), [3], [5]) == (1, 1, 20, 5)
    shape = (1, 2, 160, 150, 16)
    assert low_band_shape_at(shape, (2, 3), 0.1) == (
        1,
        2,
        band_width(160, 0.1),
        band_width(150, 0.1),
        16,
    )
    with pytest.raises(ValueError):
        low_band_shape((1, 1, 8, 8), (2, 3), (2,))


def test_low_band_shape_is_the_shape_of_the_split():
    from fdseg_core.bands import band_split

    x = torch.randn(1, 2, 20, 16, 10)
    for dims in [(2, 3), (3, 4), (2, 4), (4,)]:
        low, _ = band_split(x, 0.25, dims=dims)
        assert tuple(low.shape) == low_band_shape_at(x.shape, dims, 0.25)


def test_check_low_matches_is_shared_with_the_kernels():
    from fdseg_core.bands import checks

    assert check_low_matches is checks.check_low_matches
    high = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"low has shape \(1, 1, 2, 3\), expected \(1, 1, 2, 2\)"):
        check_low_matches(torch.zeros(1, 1, 2, 3), high, (2, 3), (2, 2))
