"""Scalar refinement layers (issue 20's high-rate layers): exact symbols on the snapped grid, each layer halving
the error bound, dyadic reconstruction, and exact coding under static per-dimension tables."""
import pytest
import torch

from vqcodec.bitstream import VQFormatError
from vqcodec.coding.refinement import (TABLE_TOTAL, decode_refinement, encode_refinement, fit_tables,
                                       refinement_bits)
from vqcodec.quantization.scalar_refinement import (CONTEXTS, layer_alphabet, layer_contexts, refine_symbols,
                                                    refinement_steps, refinement_values)


def _latents(n=500, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g) * torch.linspace(0.05, 1.5, d)
    base = z + torch.randn(n, d, generator=g) * 0.3  # a coarse reconstruction: residuals of ~0.3
    return z, base


def test_each_layer_halves_the_error_bound():
    z, base = _latents()
    shift, layers = 2, 5
    symbols = refine_symbols(z, base, shift, layers)
    assert symbols.shape == (layers, 500, 16) and symbols.dtype == torch.int64
    snap_err = 2.0 ** -11  # latents and bases are snapped to the 2^-10 grid first
    for cut in range(1, layers + 1):
        rec = base + refinement_values(symbols[:cut], shift)
        bound = refinement_steps(shift, cut)[-1] / 2 + 2 * snap_err + 1e-6
        assert float((rec - z).abs().max()) <= bound
    for j in range(1, layers):  # later layers are -1, 0 or 1
        lo, hi = layer_alphabet(j + 1, 31)
        assert int(symbols[j].min()) >= lo and int(symbols[j].max()) <= hi == 1


def test_symbols_depend_only_on_the_snapped_grid():
    """Perturbations far below the grid's half step leave every symbol as it was (machines whose latents
    differ in the last float bits code the same symbols, unless a value sits on a grid boundary)."""
    z, base = _latents(seed=1)
    on_grid = torch.round(z * 1024) / 1024
    for nudge in (1e-7, -1e-7, 2e-4, -2e-4):  # far less than half a grid step (4.9e-4) either way
        assert torch.equal(refine_symbols(on_grid + nudge, base, 2, 4), refine_symbols(on_grid, base, 2, 4))
    assert not torch.equal(refine_symbols(on_grid + 0.126, base, 2, 4), refine_symbols(on_grid, base, 2, 4))


def test_first_layer_clamps_and_steps_are_checked():
    z = torch.tensor([[40.0, -40.0, 0.1]])
    s = refine_symbols(z, torch.zeros_like(z), 2, 2, max_first=7)
    assert s[0].tolist() == [[7, -7, 0]]
    with pytest.raises(ValueError, match="first_shift"):
        refinement_steps(8, 4)  # a step below the 2^-10 grid
    with pytest.raises(ValueError, match="same"):
        refine_symbols(z, torch.zeros(2, 3), 2, 2)


def test_tables_code_exactly_and_cost_what_they_say():
    z, base = _latents(n=2000, seed=2)
    fit = refine_symbols(z, base, 2, 3)
    held_z, held_base = _latents(n=300, seed=3)
    held = refine_symbols(held_z, held_base, 2, 3)
    for j in range(3):
        lo, hi = layer_alphabet(j + 1, 31)
        table = fit_tables(fit[j], layer_contexts(fit[:j]), CONTEXTS, lo, hi)
        assert table.shape == (CONTEXTS, 16, hi - lo + 1) and bool((table >= 1).all())
        assert bool((table.sum(2) == TABLE_TOTAL).all())
        ctx = layer_contexts(held[:j])
        data = encode_refinement(held[j], ctx, table, lo)
        assert torch.equal(decode_refinement(data, ctx, table, lo), held[j])
        ideal = refinement_bits(held[j], ctx, table, lo)
        assert len(data) * 8 <= ideal + 64  # within the range coder's few words of the ideal length
        if j:  # the context pays: a single table per dimension costs more
            flat = fit_tables(fit[j], torch.zeros_like(fit[j]), 1, lo, hi)
            assert ideal < refinement_bits(held[j], torch.zeros_like(held[j]), flat, lo)


def test_layer_contexts():
    before = torch.tensor([[[0, 1, -1, 3]], [[0, -1, 1, 0]]])  # two layers, one position, four dims
    assert layer_contexts(before[:0]).tolist() == [[2, 2, 2, 2]]  # the first layer: one context
    # value so far in units of the third layer's step: 4 * s1 + 2 * s2
    assert layer_contexts(before).tolist() == [[2, 4, 0, 4]]


def test_damaged_stream_and_bad_symbols_are_refused():
    z, base = _latents(seed=4)
    s = refine_symbols(z, base, 2, 1)[0]
    ctx = torch.full_like(s, 2)
    table = fit_tables(s, ctx, CONTEXTS, -31, 31)
    data = encode_refinement(s, ctx, table, -31)
    with pytest.raises(VQFormatError):
        decode_refinement(data[: len(data) // 2], ctx, table, -31)
    with pytest.raises(ValueError, match="alphabet"):
        encode_refinement(s + 100, ctx, table, -31)
    with pytest.raises(ValueError, match="outside"):
        fit_tables(s + 100, ctx, CONTEXTS, -31, 31)
    with pytest.raises(ValueError, match="contexts outside"):
        encode_refinement(s, ctx + 5, table, -31)


def test_grid_coding_reads_the_row_above_and_round_trips():
    """Smooth fields give neighbouring positions alike magnitudes: the row context pays, and a grid decodes
    row by row to exactly what was coded."""
    from vqcodec.coding.refinement import (ROW_BUCKETS, decode_refinement_grid, encode_refinement_grid,
                                           grid_contexts, row_activity)

    def grid(seed, h=24, w=20, d=8):
        g = torch.Generator().manual_seed(seed)
        scale = torch.nn.functional.interpolate(torch.rand(1, 1, 4, 4, generator=g) * 2, (h, w), mode="bilinear")
        z = torch.randn(h, w, d, generator=g) * scale[0, 0, :, :, None]
        return refine_symbols(z.reshape(-1, d), torch.zeros(h * w, d), 2, 2).reshape(2, h, w, d)

    fit = [grid(s) for s in range(6)]
    held = grid(99)
    for j in range(2):
        lo, hi = layer_alphabet(j + 1, 31)
        lctx = [layer_contexts(g[:j]) for g in fit]  # elementwise: any grid shape
        ctx = torch.cat([grid_contexts(g[j], c).reshape(-1, 8) for g, c in zip(fit, lctx)])
        table = fit_tables(torch.cat([g[j].reshape(-1, 8) for g in fit]), ctx, CONTEXTS * ROW_BUCKETS, lo, hi)
        held_lctx = layer_contexts(held[:j])
        data = encode_refinement_grid(held[j], held_lctx, table, lo)
        assert torch.equal(decode_refinement_grid(data, held_lctx, table, lo), held[j])
        if j == 0:  # the row context against the layer context alone
            flat = fit_tables(torch.cat([g[j].reshape(-1, 8) for g in fit]), torch.cat([c.reshape(-1, 8) for c in lctx]),
                              CONTEXTS, lo, hi)
            with_rows = refinement_bits(held[j].reshape(-1, 8), grid_contexts(held[j], held_lctx).reshape(-1, 8),
                                        table, lo)
            assert with_rows < refinement_bits(held[j].reshape(-1, 8), held_lctx.reshape(-1, 8), flat, lo)
    assert row_activity(torch.tensor([[0], [1], [0], [3], [0], [0], [-2], [-2]]))[:, 0].tolist() == [1, 1, 2, 2, 2, 1, 2, 2]
