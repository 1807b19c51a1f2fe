"""The shared per-axis kernel (every epilogue, both views) and its launch machinery."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="the Triton kernels need the optional 'triton' package")

import triton  # noqa: E402

from fdseg_kernels import _common  # noqa: E402

pytestmark = pytest.mark.triton

# (shape of a, dim, rows m of the matrix): middle axis (post > 1), last axis (post == 1,
# transposed view), more rows than one block (m > 128), a contraction longer than one block
AXES = [
    pytest.param((3, 37, 5), 1, 20, id="middle-down"),
    pytest.param((4, 6, 37), 2, 11, id="last-down"),
    pytest.param((2, 7, 33), 1, 150, id="middle-up-multirow"),
    pytest.param((300, 7), 1, 140, id="last-up-multiblock"),
    pytest.param((2, 200, 3), 1, 5, id="middle-long-contraction"),
]


def _matmul_reference(a, matrix, dim):
    return torch.movedim(torch.tensordot(matrix, a.movedim(dim, 0), dims=1), 0, dim)


@pytest.mark.parametrize(
    ("epilogue", "scale"),
    [(_common.EPILOGUE_NONE, 1.0), (_common.EPILOGUE_MINUS, 0.7), (_common.EPILOGUE_RESIDUAL, 1.0)],
    ids=["none", "minus-scaled", "residual"],
)
@pytest.mark.parametrize(("shape", "dim", "rows"), AXES)
def test_apply_along_matches_float64_matmul(shape, dim, rows, epilogue, scale):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(shape, generator=gen)
    matrix = torch.randn(rows, shape[dim], generator=gen)
    out_shape = list(shape)
    out_shape[dim] = rows
    e = torch.randn(out_shape, generator=gen)
    got = _common.apply_along(
        a,
        matrix,
        dim,
        out_dtype=torch.float32,
        epilogue=epilogue,
        e=None if epilogue == _common.EPILOGUE_NONE else e,
        e_scale=scale,
    )
    ref = _matmul_reference(a.double(), matrix.double(), dim)
    if epilogue == _common.EPILOGUE_MINUS:
        ref = ref - scale * e.double()
    elif epilogue == _common.EPILOGUE_RESIDUAL:
        ref = e.double() - ref
    assert got.shape == tuple(out_shape) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max())


def test_apply_along_reads_low_precision_and_writes_output_dtype():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2, 19, 6, generator=gen).to(torch.bfloat16)
    e = torch.randn(2, 7, 6, generator=gen).to(torch.float16)
    matrix = torch.randn(7, 19, generator=gen)
    got = _common.apply_along(
        a, matrix, 1, out_dtype=torch.float16, epilogue=_common.EPILOGUE_RESIDUAL, e=e
    )
    ref = e.double() - _matmul_reference(a.double(), matrix.double(), 1)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.double(), ref, rtol=2e-3, atol=2e-3 * ref.abs().max())


def test_band_project_returns_compute_dtype_small_and_input_dtype_out():
    x = torch.randn(1, 2, 12, 10, 3).to(torch.bfloat16)
    small, out = _common.band_project(x, (2, 3), (3, 2))
    assert small.dtype == torch.float32 and small.shape == (1, 2, 3, 2, 3)
    assert out.dtype == torch.bfloat16 and out.shape == x.shape


def test_interpreter_blocks_cover_the_problem_up_to_caps():
    assert _common.launch_config(3, 17, 9) == {"BLOCK_M": 16, "BLOCK_K": 32, "BLOCK_Q": 16}
    assert _common.launch_config(150, 5, 1000) == {"BLOCK_M": 128, "BLOCK_K": 16, "BLOCK_Q": 256}


def test_prune_keeps_blocks_near_the_problem_size():
    kept = _common._prune_configs(_common._GPU_CONFIGS, {"m_rows": 16, "n_cols": 160})
    assert kept and all(c.kwargs["BLOCK_M"] <= 32 for c in kept)
    kept = _common._prune_configs(_common._GPU_CONFIGS, {"m_rows": 160, "n_cols": 16})
    assert kept and all(c.kwargs["BLOCK_K"] <= 32 for c in kept)
    assert any(c.kwargs["BLOCK_M"] >= 64 for c in kept)


def test_kernel_variant_is_chosen_per_call():
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.interpreter import InterpretedFunction

    assert isinstance(_common._kernel(True), InterpretedFunction)
    tuned = _common._kernel(False)
    assert isinstance(tuned, Autotuner)
    assert len(tuned.configs) == len(_common._GPU_CONFIGS)
    assert isinstance(tuned.fn, triton.JITFunction)


@pytest.mark.parametrize(
    ("precision", "present", "absent"),
    [("ieee", ["fma.rn.f32"], ["tf32", "mma"]), ("tf32x3", ["tf32"], [])],
)
def test_kernel_compiles_for_hopper_with_the_requested_dot_precision(precision, present, absent):
    """Ahead-of-time compile for sm_90 (no GPU needed): "ieee" dots are FMA, never TF32;
    "tf32x3" (float32 on the GPU) runs on TF32 tensor cores."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = _common._kernel(False).fn
    signature = {name: "*fp32" for name in ("a_ptr", "m_ptr", "e_ptr", "out_ptr")}
    for name in kernel.arg_names[4:17]:
        signature[name] = "i32"
    signature["s_ptr"] = "*fp32"
    constexprs = {
        "EPILOGUE": 2,
        "PRECISION": precision,
        "BLOCK_M": 64,
        "BLOCK_K": 16,
        "BLOCK_Q": 128,
    }
    signature.update(dict.fromkeys(constexprs, "constexpr"))
    compiled = triton.compile(
        ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": 4, "num_stages": 2, "enable_fp_fusion": True},
    )
    ptx = compiled.asm["ptx"]
    for text in present:
        assert text in ptx
    for text in absent:
        assert text not in ptx


def test_dot_precision_is_exact_for_float64_and_the_interpreter():
    assert _common.dot_precision(torch.float64, False) == "ieee"
    assert _common.dot_precision(torch.float32, True) == "ieee"
    assert _common.dot_precision(torch.float32, False) == _common.GPU_FLOAT32_PRECISION
