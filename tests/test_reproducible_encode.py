"""Reproducible encoding (issue 24, item 3): the same input and options give the same file whatever the torch
thread count or batch mode; the exact residual-VQ search (quantization/exact_search.py) gives one answer."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqcodec.quantization import exact_search as es

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT / "data" / "kodak"


# ------------------------------------------------------------------------------------------ exact search
def _brute_force(x: torch.Tensor, codebooks: list[torch.Tensor], beam: int):
    """The exact beam search by enumeration on the snapped grid, in Python integers (a reference)."""
    xs, books = es.snap(x).long().tolist(), [es.snap(c).long().tolist() for c in codebooks]
    paths_out, errors_out = [], []
    for v in xs:
        beams = [((), v)]  # (path, residual), best first
        row_paths, row_errors = [], []
        for stage, book in enumerate(books):
            width = 1 if stage == 0 else min(beam, len(book))
            cands = []
            for j, (path, r) in enumerate(beams):
                scored = sorted((sum((a - b) ** 2 for a, b in zip(r, c)), k) for k, c in enumerate(book))[:width]
                cands += [(e, j, k) for e, k in scored]  # ties: earlier candidate, smaller code
            cands.sort()
            beams = [(beams[j][0] + (k,), [a - b for a, b in zip(beams[j][1], book[k])]) for _, j, k in cands[:beam]]
            row_paths.append(list(beams[0][0]) + [-1] * (len(books) - stage - 1))
            row_errors.append(cands[0][0])
        paths_out.append(row_paths)
        errors_out.append(row_errors)
    return torch.tensor(paths_out), torch.tensor(errors_out)


@pytest.mark.parametrize("beam", [1, 2, 4])
def test_exact_search_equals_enumeration_with_ties(beam):
    """Integer-valued latents and codes on a coarse grid make exact ties common (and a duplicated code):
    the search must give the enumeration's answer, ties to the earlier candidate and smaller code."""
    g = torch.Generator().manual_seed(beam)
    codebooks = [torch.randint(-3, 4, (16, 4), generator=g).float() / 1024 for _ in range(3)]
    codebooks[1][5] = codebooks[1][9]
    x = torch.randint(-6, 7, (200, 4), generator=g).float() / 1024
    paths, errors = es.prefix_search_exact(x, codebooks, beam)
    ref_paths, ref_errors = _brute_force(x, codebooks, beam)
    assert torch.equal(paths, ref_paths) and torch.equal(errors, ref_errors)


def test_float_screen_gives_the_exact_answer(monkeypatch):
    """The CPU path screens with float32 and redoes uncertain rows exactly: the answer is the all-float64 one,
    on a realistic scale (latents ~N(0, 1)) where the screen decides most rows, and independent of chunking."""
    g = torch.Generator().manual_seed(0)
    codebooks = [torch.randn(128, 16, generator=g) * s for s in (1.0, 0.4, 0.2, 0.1)]
    x = torch.randn(3000, 16, generator=g)
    screened = es.prefix_search_exact(x, codebooks, 4)
    assert all(torch.equal(a, b) for a, b in zip(screened, es.prefix_search_exact(x, codebooks, 4, rows=77)))
    monkeypatch.setattr(es, "_screen_fits", lambda *shape: False)
    exact = es.prefix_search_exact(x, codebooks, 4)
    assert torch.equal(screened[0], exact[0]) and torch.equal(screened[1], exact[1])


def _near_tie_data(seed: int, n: int, d: int, k: int, stages: int, scale: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Latents (n, d) and `stages` codebooks (k, d) on the snap grid (integers / 1024) at magnitudes up to `scale`
    grid steps: half the latents near a few centres that the first codebook repeats, moved by one step (exact
    ties and 1-step near-ties with errors ~ scale^2, where float32 cannot tell them apart), later codebooks full
    of small vectors (more ties among the residuals), and far random codes and latents (which a float32 screen
    settles)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randint(-scale, scale + 1, (8, d), generator=g)
    x = centres[torch.randint(0, 8, (n,), generator=g)] + torch.randint(-1, 2, (n, d), generator=g)
    x[n // 2:] = torch.randint(-scale, scale + 1, (n - n // 2, d), generator=g)
    books = []
    for stage in range(stages):
        near = centres if stage == 0 else torch.randint(-2, 3, (8, d), generator=g)
        code = near[torch.randint(0, 8, (k,), generator=g)]
        code[torch.arange(k), torch.randint(0, d, (k,), generator=g)] += torch.randint(-1, 2, (k,), generator=g)
        far = torch.rand(k, generator=g) < 0.3
        code[far] = torch.randint(-scale, scale + 1, (int(far.sum()), d), generator=g)
        books.append(code.float() / 1024)
    return x.float() / 1024, books


@pytest.mark.parametrize("beam", [1, 2, 4, 8])
def test_screened_search_equals_enumeration_on_near_ties(beam, monkeypatch):
    """Near-ties at large magnitudes (1 grid step in errors of ~1e9 steps) and exact ties, 512 codes (the
    two-level selection): the screened search gives the enumeration's answer, each row decided by the float
    screen, by re-ranking a few pairs exactly, or by the exact search, all three happening."""
    x, books = _near_tie_data(beam, 48, 6, 512, 3, 3000)
    calls = {"rerank": 0, "exact": 0}
    rerank, exact = es._rerank, es._stage_exact

    def counted_rerank(rows, *args):
        calls["rerank"] += rows.shape[0]
        return rerank(rows, *args)

    def counted_exact(residual, *args):
        calls["exact"] += residual.shape[0]
        return exact(residual, *args)

    monkeypatch.setattr(es, "_rerank", counted_rerank)
    monkeypatch.setattr(es, "_stage_exact", counted_exact)
    paths, errors = es.prefix_search_exact(x, books, beam, rows=20)
    ref_paths, ref_errors = _brute_force(x, books, beam)
    assert torch.equal(paths, ref_paths) and torch.equal(errors, ref_errors)
    assert 0 < calls["exact"] < calls["rerank"] < 3 * len(x)


@pytest.mark.parametrize("scale", [3, 300, 60000])
def test_screened_search_equals_exact_search_at_every_scale(scale, monkeypatch):
    x, books = _near_tie_data(scale, 1500, 8, 512, 4, scale)
    for beam in (1, 4, 8):
        screened = es.prefix_search_exact(x, books, beam)
        with monkeypatch.context() as m:
            m.setattr(es, "_screen_fits", lambda *shape: False)
            exact = es.prefix_search_exact(x, books, beam)
        assert torch.equal(screened[0], exact[0]) and torch.equal(screened[1], exact[1]), beam


def test_two_level_selection_finds_the_least_scores():
    """`_least` against topk on scores with many equal values: the same values, columns holding them."""
    g = torch.Generator().manual_seed(0)
    for m, t in ((2048, 5), (4096, 9), (512, 5), (1280, 3)):
        scores = torch.randint(0, 40, (300, m), generator=g).float()
        scores[:100] = torch.randn(100, m, generator=g)
        values, cols = es._least(scores, t)
        assert torch.equal(values, scores.topk(t, dim=1, largest=False).values)
        assert torch.equal(scores.gather(1, cols), values)
        assert bool((cols.sort(1).values.diff(dim=1) > 0).all())  # distinct columns


def test_screen_error_stays_within_its_bound():
    """The float32 screen's error against exact errors, on residuals and codes of the largest magnitudes the
    search allows, stays below `_slack` (the bound `_stage_screened` derives)."""
    g = torch.Generator().manual_seed(1)
    d, k = 64, 512
    for scale in (es.LIMIT, 9 * es.LIMIT, 1000):
        r = torch.randint(-scale, scale + 1, (256, 1, d), generator=g).double()
        book = es._book(torch.randint(-es.LIMIT, es.LIMIT + 1, (k, d), generator=g).double())
        r_sq = (r * r).sum(2)
        approx = torch.mm(es._extend(r.float(), r_sq).view(256, d + 2), book.screen).double()
        exact = r_sq + (book.codes * book.codes).sum(1) - 2.0 * r[:, 0] @ book.codes.T
        assert bool(((approx - exact).abs().amax(1) <= es._slack(r_sq, book, d)).all())


def test_exact_search_refuses_sizes_it_cannot_keep_exact():
    es.check_exact(64, 512, 8, 8)  # the shipped model at effort 3
    with pytest.raises(ValueError, match="too large for the exact search"):
        es.check_exact(64, 1 << 14, 8, 4)


def test_exact_prefixes_agree_with_encode_prefixes_layout():
    from vqcodec.quantization.residual_vq import ResidualVQ

    torch.manual_seed(0)
    rvq = ResidualVQ(3, 16, 6).eval()
    x = torch.randn(100, 6)
    paths, errors = rvq.encode_prefixes(x, beam=2, exact=True)
    assert paths.shape == (100, 3, 3) and errors.dtype == torch.float32
    for d in range(1, 4):
        assert bool((paths[:, d - 1, d:] == -1).all())
        torch.testing.assert_close(((x - rvq.decode(paths[:, d - 1, :d])) ** 2).sum(-1), errors[:, d - 1],
                                   rtol=1e-2, atol=1e-3)  # snapped distances: within the grid's rounding


# ------------------------------------------------------------------------------------------ whole codec
def test_analysis_is_the_same_on_one_and_two_threads():
    """kodim23 at the default effort: on 0.4.1 four positions' paths differed between 1 and 2 threads."""
    from vqcodec.image.codec import ImageCodec

    codec = ImageCodec()
    rgb = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out.append(codec.analyse(rgb))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[0].paths, out[1].paths) and torch.equal(out[0].errors, out[1].errors)


def test_effort_3_is_the_same_on_one_and_two_threads(tiny_codec, make_image):
    rgb = make_image(150, 203)
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out.append(tiny_codec.encode(rgb, 60, effort=3))
    finally:
        torch.set_num_threads(before)
    assert out[0] == out[1]


def _cli_encode(args: list[str], threads: int | None, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    subprocess.run([sys.executable, "-m", "vqcodec.cli.main", "encode", *args], cwd=cwd, env=env, check=True,
                   capture_output=True, timeout=600)


def _same_bytes_three_ways(names: list[str], tmp_path: Path) -> None:
    """Each image encoded by the CLI with 1 thread, with 2 threads, and in batch mode (-j 2, one torch thread
    per worker) must give the same file."""
    srcs = [str(KODAK / f"{n}.png") for n in names]
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        out.mkdir()
        for src, n in zip(srcs, names):
            _cli_encode([src, "-o", str(out / f"{n}.vq")], threads, tmp_path)
    _cli_encode([*srcs, "-o", str(tmp_path / "batch") + "/", "-j", "2"], None, tmp_path)
    for n in names:
        one, two, batch = ((tmp_path / d / f"{n}.vq").read_bytes() for d in ("t1", "t2", "batch"))
        assert one == two, f"{n}: 1 and 2 threads give different files ({len(one)} vs {len(two)} bytes)"
        assert one == batch, f"{n}: batch mode gives a different file ({len(batch)} vs {len(one)} bytes)"


def test_cli_encode_same_bytes_on_1_and_2_threads_and_in_batch(tmp_path):
    """kodim23 wrote 37,521 bytes on 2 threads and 37,517 on one in 0.4.1."""
    _same_bytes_three_ways(["kodim23", "kodim04"], tmp_path)


@pytest.mark.slow
def test_cli_encode_same_bytes_more_images(tmp_path):
    _same_bytes_three_ways([f"kodim{i:02d}" for i in (1, 3, 7, 12, 15, 19, 21, 24)], tmp_path)


def test_one_search_over_the_strips_equals_a_search_per_strip(tiny_codec, make_image, monkeypatch):
    """Strips go through the net one thread each, then one exact search runs over the whole grid; searching
    each strip on its own (what tiled images do) gives the same candidates."""
    from vqcodec.image import analysis

    rgb = make_image(400, 96)  # 50 latent rows: two strips
    whole = tiny_codec.analyse(rgb)
    monkeypatch.setattr(analysis, "needs_tiles", lambda height, width: True)
    per_strip = tiny_codec.analyse(rgb)
    assert len(analysis.analysis_tiles(400, 96, analysis.encoder_halo(tiny_codec.model))) == 2
    assert torch.equal(whole.paths, per_strip.paths) and torch.equal(whole.errors, per_strip.errors)
