"""Tests for vqcodec.kernels.nearest_code: torch and Triton backends against a float64 reference.

The Triton kernel runs on CPU tensors under the Triton interpreter. TRITON_INTERPRET=1 must be set
before the kernel module is imported, so those cases run in one child process (module-scoped
fixture) and this process never sets the variable. The child gets the inputs through a file and
sends the outputs back the same way; the checks all happen here.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from vqcodec.kernels import nearest_code, nearest_code_reference, nearest_code_torch
from vqcodec.kernels.nearest_code_torch import DEFAULT_BLOCK_BYTES, default_block_rows
from vqcodec.kernels.reference import squared_distances_reference

HAS_TRITON = importlib.util.find_spec("triton") is not None
EPS32 = torch.finfo(torch.float32).eps
NAN, INF = float("nan"), float("inf")

SMALL_BLOCK = 16  # torch backend block used for "N not a multiple of the block"
KS = (1, 7, 512, 1000)
DS = (3, 64, 100)


def make_inputs(n: int, k: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian codebook (K, D) and points (N, D) with an offset and a different scale."""
    g = torch.Generator().manual_seed(seed)
    codebook = torch.randn(k, d, generator=g)
    x = 1.3 * torch.randn(n, d, generator=g) + 0.2
    return x, codebook


def row_tolerance(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Float32 error allowance of the score ||e||^2 - 2 x.e for every row: (N,) float64."""
    scale = x.double().pow(2).sum(1) + codebook.double().pow(2).sum(1).max()
    return 4.0 * math.sqrt(x.shape[1]) * EPS32 * scale + 1e-30


def assert_matches_reference(x, codebook, indices, sq_dist, min_clear_fraction=0.5):
    """The chosen code must be a nearest one within float32 tolerance, and sq_dist its distance."""
    n = x.shape[0]
    assert indices.dtype == torch.int64 and indices.shape == (n,)
    assert sq_dist.dtype == torch.float32 and sq_dist.shape == (n,)
    assert int(indices.min()) >= 0 and int(indices.max()) < codebook.shape[0]
    dist = squared_distances_reference(x, codebook)
    d_min, ref_idx = dist.min(dim=1)
    chosen = dist.gather(1, indices[:, None]).squeeze(1)
    tol = row_tolerance(x, codebook)
    gap = chosen - d_min
    assert (gap <= tol).all(), f"chosen code farther than the nearest by {gap.max():.3g}"
    err = (sq_dist.double() - chosen).abs()
    assert (err <= tol).all(), f"sq_dist off from the chosen code's distance by {err.max():.3g}"
    if codebook.shape[0] > 1:
        second = dist.topk(2, dim=1, largest=False).values[:, 1]
        clear = (second - d_min) > 2 * tol  # winner not a float32 near-tie: index must agree
        assert clear.float().mean() >= min_clear_fraction, "test data has too many near-ties"
        assert torch.equal(indices[clear], ref_idx[clear])
    else:
        assert (indices == 0).all()


# ---------------------------------------------------------------------------------------------
# Cases shared by both backends (the Triton ones are computed in the interpreter child process).

def _grid_cases():
    cases = {}
    for k in KS:
        for d in DS:
            seed = 1000 * k + d
            # N = 37: 2 full blocks + 5 rows for torch (16-row blocks), 1 + 5 for triton (32-row)
            cases[f"grid_n1_k{k}_d{d}"] = (*make_inputs(1, k, d, seed), {})
            cases[f"grid_nodd_k{k}_d{d}"] = (*make_inputs(37, k, d, seed + 1), {})
    return cases


def _integer_tie_inputs(k: int = 300):
    """Small-integer data: every score is exact in float32, and exact ties are everywhere."""
    g = torch.Generator().manual_seed(7)
    codebook = torch.randint(-2, 3, (k, 3), generator=g).float()  # at most 125 distinct codes
    x = torch.randint(-3, 4, (45, 3), generator=g).float()
    x[0] = 0.0  # equidistant from many codes
    return x, codebook


def _duplicate_inputs():
    """Random codebook with code 40 duplicated at 41, 150 and 199; x lies next to code 40."""
    g = torch.Generator().manual_seed(8)
    codebook = torch.randn(200, 64, generator=g)
    for j in (41, 150, 199):
        codebook[j] = codebook[40]
    x = codebook[40] + 0.01 * torch.randn(20, 64, generator=g)
    return x, codebook


def _nonfinite_inputs(k: int):
    """Rows 1, 3, 4, 5 of x and codes 2, 5 are non-finite; code 6 equals row 0."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(7, 5, generator=g)
    codebook = torch.randn(k, 5, generator=g)
    x[1, 2] = NAN
    x[3, 0] = INF
    x[4, 1], x[4, 3] = -INF, NAN
    x[5] = 3e19  # finite, but ||x||^2 overflows float32
    codebook[2, 4] = NAN
    codebook[5, 0] = -INF
    codebook[6] = x[0]  # a NaN-free exact match keeps the good rows meaningful
    return x, codebook


TRITON_CASES = {
    **_grid_cases(),
    "ties_integer": (*_integer_tie_inputs(), {}),
    "ties_duplicates": (*_duplicate_inputs(), {}),
    "ties_integer_small_tiles": (*_integer_tie_inputs(), {"block_n": 16, "block_k": 16}),
    "ties_integer_k40": (*_integer_tie_inputs(40), {}),  # torch: plain torch.min path (K < 64)
    "nonfinite": (*_nonfinite_inputs(9), {}),
    "nonfinite_k100": (*_nonfinite_inputs(100), {}),  # the grouped argmin of the torch path
    "all_codes_nan": (make_inputs(5, 1, 4, 15)[0], torch.full((3, 4), NAN), {}),
    "all_codes_nan_k70": (make_inputs(5, 1, 4, 16)[0], torch.full((70, 4), NAN), {}),
    "empty_n": (torch.empty(0, 64), torch.randn(512, 64), {}),
    "d_chunked": (*make_inputs(5, 70, 300, 11), {}),  # D > 128: 32-wide D chunks
    "large_n_tiles": (*make_inputs(130, 1000, 64, 14), {"block_n": 128, "block_k": 64}),
    "float64_noncontig": (make_inputs(40, 30, 33, 12)[0].double().t().contiguous().t(),
                          make_inputs(40, 30, 33, 12)[1], {}),
    "float16": (*(t.half() for t in make_inputs(29, 50, 16, 13)), {}),
}

_TRITON_CHILD = textwrap.dedent(
    """
    import sys, torch
    from vqcodec.kernels.nearest_code_triton import is_interpreted, nearest_code_triton
    if not is_interpreted():
        sys.exit("TRITON_INTERPRET=1 did not reach the kernel module")
    cases = torch.load(sys.argv[1])
    out = {}
    for name, (x, codebook, kwargs) in cases.items():
        try:
            out[name] = nearest_code_triton(x, codebook, **kwargs)
        except Exception as exc:  # reported per case by the parent
            out[name] = f"{type(exc).__name__}: {exc}"
    torch.save(out, sys.argv[2])
    """
)


@pytest.fixture(scope="module")
def triton_results(tmp_path_factory):
    """Run every TRITON_CASES entry through the interpreted kernel in a child process."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    tmp = tmp_path_factory.mktemp("triton_interp")
    torch.save(TRITON_CASES, tmp / "cases.pt")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-c", _TRITON_CHILD, str(tmp / "cases.pt"), str(tmp / "out.pt")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"interpreter child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return torch.load(tmp / "out.pt")


def triton_output(results, name):
    out = results[name]
    if isinstance(out, str):
        pytest.fail(f"triton case {name} raised {out}")
    return out


def torch_output(name):
    x, codebook, _ = TRITON_CASES[name]
    return nearest_code_torch(x, codebook, block_rows=SMALL_BLOCK)


@pytest.fixture(params=["torch", "triton"])
def run_case(request):
    """Callable name -> (indices, sq_dist) for the parametrised backend."""
    if request.param == "triton":
        results = request.getfixturevalue("triton_results")
        return lambda name: triton_output(results, name)
    return torch_output


# ---------------------------------------------------------------------------------------------
# Correctness against the float64 reference

@pytest.mark.parametrize("name", [n for n in TRITON_CASES if n.startswith("grid_")])
def test_grid_matches_reference(run_case, name):
    x, codebook, _ = TRITON_CASES[name]
    indices, sq_dist = run_case(name)
    assert_matches_reference(x, codebook, indices, sq_dist)


@pytest.mark.parametrize("name", ["d_chunked", "large_n_tiles", "float64_noncontig", "float16"])
def test_other_shapes_and_dtypes(run_case, name):
    x, codebook, _ = TRITON_CASES[name]
    assert not x.is_contiguous() or name != "float64_noncontig"
    indices, sq_dist = run_case(name)
    # The reference sees the same float32-rounded values the kernels compute with.
    assert_matches_reference(x.float(), codebook.float(), indices, sq_dist)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("d", DS)
def test_torch_default_block_not_multiple(k, d):
    """N = one default block + 3 rows, so the last block is partial."""
    n = min(default_block_rows(k), 4096) + 3
    x, codebook = make_inputs(n, k, d, seed=k + d)
    indices, sq_dist = nearest_code_torch(x, codebook)
    assert_matches_reference(x, codebook, indices, sq_dist)


def test_default_block_is_a_few_megabytes():
    rows = default_block_rows(512)
    assert 1 << 20 <= rows * 512 * 4 <= 8 << 20
    assert rows * 512 * 4 <= DEFAULT_BLOCK_BYTES
    assert default_block_rows(1) == 1 << 16 and default_block_rows(10**9) == 16


# ---------------------------------------------------------------------------------------------
# Ties: exact score ties must go to the smallest index

@pytest.mark.parametrize("name", ["ties_integer", "ties_integer_small_tiles", "ties_integer_k40"])
def test_exact_ties_pick_smallest_index(run_case, name):
    x, codebook, _ = TRITON_CASES[name]
    indices, sq_dist = run_case(name)
    ref_idx, ref_dist = nearest_code_reference(x, codebook)
    dist = squared_distances_reference(x, codebook)
    n_tied = int((dist == ref_dist[:, None]).sum(1).gt(1).sum())
    assert n_tied >= 10, "the data should contain many rows with exact ties"
    assert torch.equal(indices, ref_idx)
    assert torch.equal(sq_dist.double(), ref_dist)


def test_duplicated_codes_pick_smallest_index(run_case):
    x, codebook, _ = TRITON_CASES["ties_duplicates"]
    indices, _ = run_case("ties_duplicates")
    assert (indices == 40).all(), indices


# ---------------------------------------------------------------------------------------------
# Non-finite input, N = 0

@pytest.mark.parametrize("name", ["nonfinite", "nonfinite_k100"])
def test_nonfinite_rows_and_codes(run_case, name):
    x, codebook, _ = TRITON_CASES[name]
    indices, sq_dist = run_case(name)
    assert indices[[1, 3, 4, 5]].tolist() == [0, 0, 0, 0]
    assert math.isnan(sq_dist[1]) and math.isnan(sq_dist[4])
    assert sq_dist[3] == INF and sq_dist[5] == INF
    good = torch.tensor([0, 2, 6])
    assert indices[0] == 6 and 0.0 <= sq_dist[0] <= 1e-5  # the exact match (code 6)
    usable = torch.tensor([j not in (2, 5) for j in range(codebook.shape[0])])
    assert usable[indices[good]].all(), "a non-finite code was chosen"
    # Among usable codes the answer matches the reference.
    sub = codebook[usable]
    ref_idx_sub, ref_dist = nearest_code_reference(x[good], sub)
    assert torch.equal(indices[good], torch.nonzero(usable).squeeze(1)[ref_idx_sub])
    torch.testing.assert_close(sq_dist[good].double(), ref_dist, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["all_codes_nan", "all_codes_nan_k70"])
def test_all_codes_nonfinite(run_case, name):
    indices, sq_dist = run_case(name)
    assert (indices == 0).all() and (sq_dist == INF).all()


def test_empty_n(run_case):
    indices, sq_dist = run_case("empty_n")
    assert indices.shape == (0,) and indices.dtype == torch.int64
    assert sq_dist.shape == (0,) and sq_dist.dtype == torch.float32


def test_both_backends_agree_on_nonfinite(triton_results):
    for name in ("nonfinite", "nonfinite_k100", "all_codes_nan", "all_codes_nan_k70"):
        t_idx, t_dist = triton_output(triton_results, name)
        c_idx, c_dist = torch_output(name)
        assert torch.equal(t_idx, c_idx)
        assert torch.equal(t_dist.isnan(), c_dist.isnan())
        assert torch.equal(t_dist.isinf(), c_dist.isinf())


# ---------------------------------------------------------------------------------------------
# Dispatch, validation, autograd

def test_auto_on_cpu_is_torch_backend():
    x, codebook = make_inputs(300, 512, 64, seed=3)
    got = nearest_code(x, codebook)
    want = nearest_code_torch(x, codebook)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(nearest_code(x, codebook, backend="torch")[0], want[0])


def test_no_grad_and_requires_grad_input():
    x, codebook = make_inputs(50, 16, 8, seed=4)
    x.requires_grad_(True)
    codebook.requires_grad_(True)
    indices, sq_dist = nearest_code(x, codebook)
    assert not indices.requires_grad and not sq_dist.requires_grad
    assert_matches_reference(x.detach(), codebook.detach(), indices, sq_dist)


@pytest.mark.parametrize(
    "x, codebook, match",
    [
        (torch.randn(4), torch.randn(3, 4), "shape \\(N, D\\)"),
        (torch.randn(2, 3, 4), torch.randn(3, 4), "shape \\(N, D\\)"),
        (torch.randn(5, 4), torch.randn(4), "shape \\(K, D\\)"),
        (torch.randn(5, 4), torch.randn(3, 5), "feature dimension mismatch"),
        (torch.randn(5, 4), torch.randn(0, 4), "K=0"),
        (torch.randn(5, 0), torch.randn(3, 0), "D=0"),
        (torch.ones(5, 4, dtype=torch.int64), torch.randn(3, 4), "floating point"),
        (torch.randn(5, 4).numpy(), torch.randn(3, 4), "torch tensors"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "torch", "triton"])
def test_invalid_inputs_raise_value_error(x, codebook, match, backend):
    with pytest.raises(ValueError, match=match):
        nearest_code(x, codebook, backend=backend)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        nearest_code(torch.randn(2, 3), torch.randn(4, 3), backend="cuda")


def test_torch_backend_rejects_bad_block():
    with pytest.raises(ValueError, match="block_rows"):
        nearest_code_torch(torch.randn(2, 3), torch.randn(4, 3), block_rows=0)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_on_cpu_without_interpreter_raises():
    mod = importlib.import_module("vqcodec.kernels.nearest_code_triton")
    if mod.is_interpreted():
        pytest.skip("TRITON_INTERPRET=1 is set in this process")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        nearest_code(torch.randn(2, 3), torch.randn(4, 3), backend="triton")
    with pytest.raises(ValueError, match="power of two"):
        mod.nearest_code_triton(torch.randn(2, 3), torch.randn(4, 3), block_n=24)


def _run_child(code: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_package_imports_without_triton():
    out = _run_child(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
        import torch
        from vqcodec.kernels import nearest_code, triton_importable
        from vqcodec.kernels import nearest_code_triton as mod
        assert not triton_importable() and not mod.TRITON_AVAILABLE
        idx, dist = nearest_code(torch.randn(5, 3), torch.randn(4, 3))
        assert idx.shape == (5,)
        try:
            nearest_code(torch.randn(5, 3), torch.randn(4, 3), backend="triton")
        except RuntimeError as exc:
            print("raised:", exc)
        """
    )
    assert "needs the triton package" in out


# ---------------------------------------------------------------------------------------------
# Peak memory of the torch backend: one block, not N x K

@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_torch_backend_peak_memory_is_one_block():
    """Peak RSS growth during one call on N=50k, K=512 (N x K float32 would be 98 MiB).

    VmHWM is per address space (ru_maxrss would be inherited from this big pytest process).
    The cdist run in the same child shows that the probe does see an N x K matrix.
    """
    out = _run_child(
        """
        import torch
        from pathlib import Path
        from vqcodec.kernels import nearest_code_torch

        def kib(field):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])

        def peak_extra(fn):
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to VmRSS
            before = kib("VmRSS")
            fn()
            return (kib("VmHWM") - before) * 1024

        torch.manual_seed(0)
        x, e = torch.randn(50_000, 64), torch.randn(512, 64)
        nearest_code_torch(x[:2048], e)  # warm-up: BLAS/OpenMP buffers, allocator
        print(peak_extra(lambda: nearest_code_torch(x, e)))
        print(peak_extra(lambda: torch.cdist(x, e).argmin(1)))
        """
    )
    ours, cdist = (int(v) for v in out.split())
    full_matrix = 50_000 * 512 * 4
    assert cdist >= full_matrix * 0.9, f"probe missed cdist's matrix: {cdist / 2**20:.1f} MiB"
    assert ours < full_matrix // 4, f"peak grew by {ours / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# The GPU build of the kernel: compile ahead of time for sm_90a (no GPU needed)

@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("n, d", [(1 << 20, 64), (6144, 100), (4096, 300)])
def test_kernel_compiles_for_h100_without_tensor_cores(n, d):
    mod = importlib.import_module("vqcodec.kernels.nearest_code_triton")
    if mod.is_interpreted():
        pytest.skip("TRITON_INTERPRET=1 is set in this process")
    import triton
    from triton.backends.compiler import GPUTarget

    try:
        triton.backends.backends["nvidia"]
    except (AttributeError, KeyError):
        pytest.skip("triton has no NVIDIA backend here")
    cfg = mod.launch_config(n, d)
    signature = {
        "x_ptr": "*fp32", "e_ptr": "*fp32", "esq_ptr": "*fp32", "idx_ptr": "*i64",
        "dist_ptr": "*fp32", "N": "i32", "K": "i32", "D": "i32", "stride_xn": "i32",
        "stride_xd": "i32", "stride_ek": "i32", "stride_ed": "i32",
        "BLOCK_N": "constexpr", "BLOCK_K": "constexpr", "BLOCK_D": "constexpr",
        "D_CHUNKS": "constexpr",
    }
    constexprs = {"BLOCK_N": cfg.block_n, "BLOCK_K": cfg.block_k, "BLOCK_D": cfg.block_d,
                  "D_CHUNKS": cfg.d_chunks}
    src = triton.compiler.ASTSource(fn=mod._nearest_code_kernel, signature=signature,
                                    constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": cfg.num_warps, "enable_fp_fusion": True})
    ptx = compiled.asm["ptx"]
    assert "fma.rn.f32" in ptx
    # input_precision="ieee": no TF32 tensor-core instructions
    assert "mma" not in ptx and "wgmma" not in ptx
