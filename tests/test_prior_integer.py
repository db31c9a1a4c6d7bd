"""Exact integer inference: integer ops, layers, scheduler and file format (codec/integer/) and the image
prior built from them (codec/image/prior_integer.py)."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from vqcodec.integer import ops as iops
from vqcodec.image.prior import PREACT_CLIP, ImagePrior, PriorConfig
from vqcodec.image.prior_integer import FORMAT, IntegerImagePrior

K = 64


def small_cfg(**kw) -> PriorConfig:
    base = dict(num_stages=3, codebook_size=K, ar_channels=12, ar_layers=3, ar_kernel=3, cond_channels=12,
                cond_blocks=2, cond_kernel=3, tile_h=6, tile_w=0)
    base.update(kw)
    return PriorConfig(**base)


def lively(model: ImagePrior, seed: int = 0, std: float = 0.35) -> ImagePrior:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def make_prior(seed: int = 0, **kw) -> tuple[ImagePrior, IntegerImagePrior, list[torch.Tensor]]:
    cfg = small_cfg(**kw)
    model = lively(ImagePrior(cfg), seed)
    g = torch.Generator().manual_seed(seed + 100)
    maps = [torch.randint(0, K, (cfg.num_stages, 13, 17), generator=g) for _ in range(3)]
    return model, IntegerImagePrior.from_float(model, maps[:2]), maps


@pytest.fixture(scope="module")
def prior():
    return make_prior(0)


# ------------------------------------------------------------------------------------------ integer ops
def test_exact_matmul_backends_agree_near_the_bound():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-(2**20), 2**20, (37, 300), generator=g)
    w = torch.randint(-2047, 2048, (300, 23), generator=g)
    bound = iops.accumulator_bound(w, 2**20)
    assert 2**38 < bound < iops.FLOAT64_EXACT_LIMIT
    a = iops.exact_matmul(x.double(), w.double(), "float64")
    b = iops.exact_matmul(x, w, "int64")
    assert torch.equal(a.to(torch.int64), b)
    # python-int reference for a few entries
    for i, j in [(0, 0), (5, 7), (36, 22)]:
        assert int(b[i, j]) == sum(int(x[i, k]) * int(w[k, j]) for k in range(300))
    # row subsets (other batch compositions) give the same integers
    assert torch.equal(iops.exact_matmul(x[3:9].double(), w.double()), a[3:9])


def test_accumulator_bound_is_attained():
    w = torch.tensor([[3, -2], [-5, 1]])
    assert iops.accumulator_bound(w, torch.tensor([10, 7]), torch.tensor([1, -4])) == max(30 + 35 + 1, 20 + 7 + 4)


def test_requantize_float64_equals_integer_references():
    g = torch.Generator().manual_seed(1)
    n, c = 500, 9
    acc = torch.randint(-(2**34), 2**34, (n, c), generator=g)
    acc[:4] = torch.tensor([0, 1, -1, 2**33]).view(4, 1)  # small values and ties
    bias = torch.randint(-(2**20), 2**20, (c,), generator=g)
    ratio = torch.rand(c, generator=g, dtype=torch.float64) * 2.0 ** torch.randint(-20, 3, (c,), generator=g)
    bound = int(acc.abs().max()) + int(bias.abs().max())
    m, sh = iops.choose_multipliers(ratio, bound)
    assert torch.allclose(m.double() / 2.0 ** sh.double(), ratio, rtol=2e-4)
    ref = iops.requantize(acc + bias, m, sh, -(2**40), 2**40)
    fast = iops.requantize_(acc.double(), *iops.requant_terms(bias, m, sh), -(2**40), 2**40)
    assert torch.equal(fast.to(torch.int64), ref)
    for i, j in [(0, 0), (2, 3), (100, 8)]:
        assert int(ref[i, j]) == iops.requantize_reference(int(acc[i, j] + bias[j]), int(m[j]), int(sh[j]),
                                                           -(2**40), 2**40)
    # ties round up: 3 * 1 / 2 = 1.5 -> 2, -3 / 2 = -1.5 -> -1
    t = iops.requantize(torch.tensor([[3], [-3]]), torch.tensor([1]), torch.tensor([1]), -10, 10)
    assert t.flatten().tolist() == [2, -1]


def test_luts_within_quantization_error():
    f_in, f_out, lim = FORMAT["lut_in_frac"], FORMAT["act_frac"], FORMAT["lut_in_max"]
    tanh = iops.make_lut(np.tanh, f_in, lim, f_out)
    sig = iops.make_lut(lambda u: 1 / (1 + np.exp(-u)), f_in, lim, f_out)
    u = torch.arange(-(lim << f_in), (lim << f_in) + 1)
    xs = u.double() / 2**f_in
    assert (iops.lut_lookup(tanh, u).double() / 2**f_out - torch.tanh(xs)).abs().max() <= 0.5 / 2**f_out + 1e-12
    assert (iops.lut_lookup(sig, u).double() / 2**f_out - torch.sigmoid(xs)).abs().max() <= 0.5 / 2**f_out + 1e-12
    # through the input grid: error of a real input rounded to the grid (tanh' <= 1, sigmoid' <= 1/4)
    x = torch.linspace(-PREACT_CLIP, PREACT_CLIP, 1001, dtype=torch.float64)
    q = torch.round(x * 2**f_in).to(torch.int64)
    err = (iops.lut_lookup(tanh, q).double() / 2**f_out - torch.tanh(x)).abs().max()
    assert err <= 0.5 / 2**f_in + 0.5 / 2**f_out + 1e-12
    g = iops.gate_product(iops.lut_lookup(tanh, q).double(), iops.lut_lookup(sig, q).double(), f_out)
    gi = iops.gate_product(iops.lut_lookup(tanh, q), iops.lut_lookup(sig, q), f_out)
    assert torch.equal(g.to(torch.int64), gi)
    assert (g / 2**f_out - torch.tanh(x) * torch.sigmoid(x)).abs().max() < 3 / 2**f_in


@pytest.mark.parametrize("backend", ["float64", "int64"])
def test_unfold_conv_equals_conv2d(backend):
    g = torch.Generator().manual_seed(2)
    x = torch.randint(-30000, 30000, (2, 5, 9, 11), generator=g)
    w = torch.randint(-2047, 2048, (7, 5, 2, 3), generator=g)
    b = torch.randint(-1000, 1000, (7,), generator=g)
    pad = (1, 1, 1, 0)  # the PixelCNN vertical-stack padding
    y = iops.conv2d_int_unfold(x, iops.conv_weight_to_matrix(w), b, (2, 3), pad, backend)
    assert torch.equal(y, iops.conv2d_int_reference(x, w, b, pad))


def test_exp_lut_and_freqs():
    lut = iops.make_exp_lut(FORMAT["logit_frac"], FORMAT["exp_top_bits"])
    assert int(lut[0]) == 2 ** FORMAT["exp_top_bits"] and int(lut[-1]) == 1 and int(lut[-2]) > 1
    assert torch.all(lut[1:] <= lut[:-1])
    g = torch.Generator().manual_seed(3)
    logits = torch.randint(-(2**14), 2**14, (50, 512), generator=g)
    logits[0] = 7  # all equal
    f = iops.logits_to_freqs(logits.double(), lut)
    assert f.dtype == torch.int64 and int(f.min()) >= 1
    assert int(f.sum(1).max()) <= 2**24 and int(f[0].sum()) == 2**24
    assert torch.equal(f.argmax(1), logits.argmax(1))
    assert torch.equal(iops.logits_to_freqs(logits, lut), f)  # int64 input path
    # expected ratio between two symbols ~ exp(difference of logits)
    d = 100
    l2 = torch.tensor([[0, -d] + [-(2**20)] * 510])
    f2 = iops.logits_to_freqs(l2.double(), lut)[0]
    assert abs(float(f2[1]) / float(f2[0]) - math.exp(-d / 2 ** FORMAT["logit_frac"])) < 1e-3


# --------------------------------------------------------------------------------------- integer prior
def test_integer_logits_track_float_logits(prior):
    model, ip, maps = prior
    x = maps[2]
    with torch.no_grad():
        fl = model(x[None])[0]  # (S, K, H, W)
    step = 2.0 ** -FORMAT["logit_frac"]
    for s in range(1, 4):
        il = ip.logits(x, s).double() * step
        ref = fl[s - 1].permute(1, 2, 0).reshape(-1, K).double()
        ref = ref - ref.mean(1, keepdim=True)
        il = il - il.mean(1, keepdim=True)
        assert (il - ref).abs().mean() < 0.05 * ref.abs().mean(), s


def _decode_recording(ip, stage, x, h, w):
    """decode_stage with a decode_fn returning the true symbols; returns (decoded map, freqs (H*W, K))."""
    groups = iter(ip.coding_groups(stage, (h, w)))
    rec = np.full((h * w, ip.codebook_size), -1, dtype=np.int64)

    def fn(freqs):
        g = next(groups)
        assert freqs.shape == (g.size, ip.codebook_size) and freqs.dtype == np.int64
        rec[g] = freqs
        return x[stage - 1].reshape(-1)[torch.from_numpy(g)].numpy()

    out = ip.decode_stage(stage, x[: stage - 1] if stage > 1 else None, (h, w), fn)
    with pytest.raises(StopIteration):
        next(groups)
    return out, rec


@pytest.mark.parametrize("tiles,up_right", [((6, 0), -1), ((4, 5), -1), ((0, 0), 1), ((100, 100), 2)])
def test_decoder_freqs_equal_encoder_freqs(tiles, up_right):
    model, ip, maps = make_prior(1, tile_h=tiles[0], tile_w=tiles[1], ar_up_right_layers=up_right)
    x = maps[2]
    h, w = x.shape[1:]
    for stage in (1, 2, 3):
        enc = ip.frequencies(x, stage)
        assert enc.shape == (h * w, K) and enc.dtype == np.int64
        assert enc.min() >= 1 and enc.sum(1).max() <= 2**24
        out, rec = _decode_recording(ip, stage, x, h, w)
        assert torch.equal(out, x[stage - 1])
        assert np.array_equal(rec, enc), f"stage {stage}: decoder freqs differ from encoder freqs"


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (7, 1), (5, 6)])
def test_tiny_maps(h, w):
    """Maps smaller than a tile or a kernel: some layers have no position to compute."""
    model, ip, _ = make_prior(6, tile_h=4, tile_w=5)
    x = torch.randint(0, K, (3, h, w), generator=torch.Generator().manual_seed(h * 10 + w))
    for stage in (1, 2, 3):
        out, rec = _decode_recording(ip, stage, x, h, w)
        assert torch.equal(out, x[stage - 1])
        assert np.array_equal(rec, ip.frequencies(x, stage))
    with torch.no_grad():
        fb = model.loss(x[None]).double().numpy()
    assert np.abs(ip.bits(x) - fb).max() < 0.05


def test_coding_groups_cover_every_position_once(prior):
    _, ip, _ = prior
    for stage in (1, 2):
        gs = ip.coding_groups(stage, (13, 17))
        allpos = np.concatenate(gs)
        assert np.array_equal(np.sort(allpos), np.arange(13 * 17))
    g1 = ip.coding_groups(1, (13, 17))
    assert len(g1) == 16 + ip.wavefront_slope * 5 + 1  # tile 6 rows: (w-1) + a*(th-1) + 1 wavefronts
    assert len(ip.coding_groups(2, (13, 17))) == 1


def test_batch_composition_does_not_change_freqs():
    """A map coded alone and the same map stacked on top of another one (its tiles unchanged, but every
    matmul now has other rows and other sizes) give identical frequencies."""
    _, ip, maps = make_prior(2, tile_h=6)
    a, b = maps[0][:, :12], maps[1]
    both = torch.cat([a, b], dim=1)  # 12 rows = two whole tiles of a, then b
    fa = ip.frequencies(a, 1)
    fab = ip.frequencies(both, 1)
    assert np.array_equal(fab[: 12 * a.shape[2]], fa)
    # stages >= 2: other chunkings of the output head
    lg = torch.cat(list(ip.cond.logits(a[:1], chunk=7)))
    lg2 = torch.cat(list(ip.cond.logits(a[:1], chunk=4096)))
    assert torch.equal(lg, lg2)


def _digest(ip, x) -> str:
    h = hashlib.sha256()
    for s in range(1, x.shape[0] + 1):
        h.update(ip.frequencies(x, s).tobytes())
    return h.hexdigest()


def test_thread_count_and_backend_do_not_change_freqs(prior):
    _, ip, maps = prior
    x = torch.cat([maps[2], maps[1]], dim=2)  # wider map: larger matmuls
    old, saved_threads = torch.get_num_threads(), ip.num_threads
    try:
        ip.num_threads = None  # use the process setting
        torch.set_num_threads(1)
        d1 = _digest(ip, x)
        torch.set_num_threads(2)
        assert torch.get_num_threads() == 2
        d2 = _digest(ip, x)
        ip.num_threads = 2
        torch.set_num_threads(1)
        d3 = _digest(ip, x)
        assert torch.get_num_threads() == 1  # restored after the call
    finally:
        torch.set_num_threads(old)
        ip.num_threads = saved_threads
    assert d1 == d2 == d3
    saved = iops.MATMUL_BACKEND
    try:
        iops.MATMUL_BACKEND = "int64"
        d4 = _digest(ip, x)
    finally:
        iops.MATMUL_BACKEND = saved
    assert d4 == d1


def test_state_dict_round_trip_and_dtypes(prior, tmp_path):
    from safetensors.torch import load_file, save_file
    _, ip, maps = prior
    sd = ip.state_dict()
    assert all(v.dtype in (torch.int16, torch.int32) for v in sd.values())
    save_file(sd, str(tmp_path / "p.safetensors"))
    ip2 = IntegerImagePrior.from_state_dict(load_file(str(tmp_path / "p.safetensors")))
    assert _digest(ip2, maps[2]) == _digest(ip, maps[2])
    broken = dict(sd)
    del broken["ar.head.w"]
    with pytest.raises(KeyError, match="ar.head.w"):
        IntegerImagePrior.from_state_dict(broken)


def test_exactness_bound_is_enforced(prior):
    _, ip, _ = prior
    sd = ip.state_dict()
    sd["ar.1.v.m"] = torch.full_like(sd["ar.1.v.m"], 2**30)
    with pytest.raises(ValueError, match="2\\^53"):
        IntegerImagePrior.from_state_dict(sd)


def test_round_trip_with_range_coder():
    try:
        from vqcodec.bitstream.entropy import IndexDecoder, IndexEncoder
    except ImportError:  # pragma: no cover - fallback while the bitstream module is missing
        IndexEncoder = IndexDecoder = None
    _, ip, maps = make_prior(3, tile_h=5, tile_w=7)
    x = maps[2]
    h, w = x.shape[1:]
    if IndexEncoder is not None:
        enc = IndexEncoder()
        for s in range(1, 4):
            f = ip.frequencies(x, s)
            for g in ip.coding_groups(s, (h, w)):
                enc.encode(x[s - 1].reshape(-1)[torch.from_numpy(g)].numpy(), f[g])
        dec = IndexDecoder(enc.finish())
        decode = dec.decode
    else:
        import constriction
        model = constriction.stream.model.Categorical(perfect=False)
        coder = constriction.stream.queue.RangeEncoder()
        for s in range(1, 4):
            f = ip.frequencies(x, s)
            for g in ip.coding_groups(s, (h, w)):
                p = f[g].astype(np.float64)
                coder.encode(x[s - 1].reshape(-1)[torch.from_numpy(g)].numpy().astype(np.int32), model,
                             p / p.sum(1, keepdims=True))
        rd = constriction.stream.queue.RangeDecoder(coder.get_compressed())

        def decode(f):
            p = f.astype(np.float64)
            return rd.decode(model, p / p.sum(1, keepdims=True))
    out = []
    for s in range(1, 4):
        earlier = torch.stack(out) if out else None
        out.append(ip.decode_stage(s, earlier, (h, w), decode))
    assert torch.equal(torch.stack(out), x)
    if IndexEncoder is not None:
        dec.check_finished()


def test_sample_is_seeded(prior):
    _, ip, _ = prior
    a = ip.sample(3, 7, 9, seed=5)
    b = ip.sample(3, 7, 9, seed=5)
    c = ip.sample(3, 7, 9, seed=6)
    assert a.shape == (3, 7, 9) and a.dtype == torch.int64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.min()) >= 0 and int(a.max()) < K


def test_sample_follows_the_prior():
    """Samples from a prior are cheaper to code under it than random maps (the sampler uses the
    frequencies it claims to)."""
    _, ip, _ = make_prior(4)
    x = ip.sample(3, 10, 12, seed=0)
    rnd = torch.randint(0, K, x.shape, generator=torch.Generator().manual_seed(0))
    assert ip.bits(x).mean() < ip.bits(rnd).mean() - 0.5


def test_quantization_rate_penalty_small():
    model, ip, maps = make_prior(5, tile_h=6)
    x = maps[2]
    with torch.no_grad():
        fb = model.loss(x[None]).double().numpy()
    ib = ip.bits(x)
    assert np.all(ib < np.log2(K) + 2)
    assert abs(ib.mean() - fb.mean()) / fb.mean() < 0.02, (ib, fb)


def test_bad_arguments(prior):
    _, ip, maps = prior
    with pytest.raises(ValueError, match="1-based"):
        ip.frequencies(maps[0], 0)
    with pytest.raises(ValueError, match="earlier"):
        ip.decode_stage(2, maps[0][:2], (13, 17), lambda f: np.zeros(len(f), dtype=np.int64))
    with pytest.raises(ValueError, match="symbols"):
        ip.decode_stage(1, None, (13, 17), lambda f: np.zeros(1, dtype=np.int64))
    with pytest.raises(ValueError, match="indices"):
        ip.frequencies(maps[0] + K, 1)


def test_image_prior_is_a_stage_prior(prior):
    from vqcodec.coding import StagePrior
    _, ip, _ = prior
    assert isinstance(ip, StagePrior)
    with pytest.raises(ValueError, match="shape"):
        ip.coding_groups(1, (13, 17, 1))


# ---------------------------------------------------------------------------------------- file format
def test_prior_file_refuses_other_files(prior, tmp_path):
    from vqcodec.image.prior_integer import INTEGER_PRIOR_FORMAT, load_integer_prior
    from vqcodec.integer.prior_file import PriorFileError, load_prior_file, save_prior_file
    _, ip, maps = prior
    good = tmp_path / "good.safetensors"
    save_prior_file(good, ip.state_dict(), INTEGER_PRIOR_FORMAT)
    assert _digest(load_integer_prior(good), maps[2]) == _digest(ip, maps[2])
    other = tmp_path / "other.safetensors"
    save_prior_file(other, ip.state_dict(), "vqcodec-integer-audio-prior-v1")
    with pytest.raises(PriorFileError, match="audio-prior"):
        load_integer_prior(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(PriorFileError, match="not a safetensors file"):
        load_integer_prior(junk)
    with pytest.raises(FileNotFoundError):
        load_prior_file(tmp_path / "missing.safetensors", INTEGER_PRIOR_FORMAT)
    with pytest.raises(PriorFileError, match="float"):
        save_prior_file(tmp_path / "f.safetensors", {"w": torch.zeros(3)}, INTEGER_PRIOR_FORMAT)
    assert issubclass(PriorFileError, ValueError)


# ------------------------------------------------------------------ the generic machinery on other grids
from vqcodec.coding import StagePrior, decode_stages, encode_stages  # noqa: E402
from vqcodec.integer.layers import ExpFreqs, GateLuts  # noqa: E402
from vqcodec.integer.quantize import quantize_linear_layer  # noqa: E402
from vqcodec.integer.scheduler import CausalGraph, IncrementalScheduler, Node  # noqa: E402


def _rand_linear(g, n_out, n_in, in_scale, in_max, out_scale):
    w = torch.randn(n_out, n_in, generator=g) * 0.5
    b = torch.randn(n_out, generator=g) * 0.1
    lin = quantize_linear_layer(w, b, in_scale, in_max, out_scale, FORMAT["weight_bits"], FORMAT["mult_bits"])
    assert lin.requant_bound() < iops.FLOAT64_EXACT_LIMIT
    return lin


def tiny_wavenet(k: int = 16, c: int = 6, dilations=(1, 2, 4), seed: int = 0) -> CausalGraph:
    """A 1-D integer WaveNet from vqcodec.integer pieces: causal dilated convs (kernel 2), gated tanh x
    sigmoid units, residual and skip connections, head on the skip sum. Receptive field: the 8 previous
    steps."""
    g = torch.Generator().manual_seed(seed)
    luts = GateLuts.build(FORMAT)
    smax, u_max, act_max = FORMAT["stream_max"], float(luts.u_max), luts.act_max
    s = 1e-3  # stream scale
    lut_s, act_s, logit_s = 2.0 ** -FORMAT["lut_in_frac"], 2.0 ** -FORMAT["act_frac"], 2.0 ** -FORMAT["logit_frac"]
    embed = torch.randint(-2000, 2001, (k, c), generator=g).double()
    nodes, channels = [], {"E": c}
    for l, d in enumerate(dilations):
        first = l == 0
        conv = _rand_linear(g, 2 * c, 2 * c, s, smax, lut_s)
        res, skip = _rand_linear(g, c, c, act_s, act_max, s), _rand_linear(g, c, c, act_s, act_max, s)

        def fn(gx, gs=None, conv=conv, res=res, skip=skip, first=first):
            a = luts.gate(conv(gx, -u_max, u_max))
            r, sk = res(a), skip(a)
            if not first:
                r.add_(gx[:, -c:])  # the tap at offset (0,): offset-major gather
                sk.add_(gs)
            return r.clamp_(-smax, smax), sk.clamp_(-smax, smax)

        inputs = [("E", ((-2 * d,), (-d,)))] if first else [(f"R{l - 1}", ((-d,), (0,))), (f"S{l - 1}", ((0,),))]
        nodes.append(Node(f"layer{l}", inputs, [f"R{l}", f"S{l}"], fn))
        channels.update({f"R{l}": c, f"S{l}": c})
    head = _rand_linear(g, k, c, s, smax, logit_s)
    return CausalGraph(ndim=1, channels=channels, nodes=nodes, embed=embed, head=lambda h: head(h.clamp(min=0)),
                       input="E", output=f"S{len(dilations) - 1}")


class SequencePrior:
    """One-stage StagePrior over sequences (T,) driven by a 1-D CausalGraph: the shape an audio prior takes."""

    num_stages = 1

    def __init__(self, graph: CausalGraph, k: int, tile: int) -> None:
        self.codebook_size = k
        self.engine = IncrementalScheduler(graph, (tile,))
        self.exp = ExpFreqs(iops.make_exp_lut(FORMAT["logit_frac"], FORMAT["exp_top_bits"]), k)

    def frequencies(self, indices, stage):
        x = torch.as_tensor(indices)[0]
        return self.exp.of_chunks(self.engine.full_logits(x, chunk=5), x.numel())

    def coding_groups(self, stage, shape):
        return self.engine.groups(shape)

    def decode_stage(self, stage, earlier, shape, decode_fn):
        return self.engine.decode(shape, lambda _, lg: torch.as_tensor(decode_fn(self.exp(lg)), dtype=torch.int64))


@pytest.mark.parametrize("t,tile", [(1, 0), (2, 0), (23, 0), (23, 5), (40, 8), (300, 0), (300, 70)])
def test_scheduler_decodes_a_1d_wavenet_incrementally(t, tile):
    """The scheduler and layers are not image-specific: a causal sequence net decodes step by step with
    frequencies bit-identical to the whole-sequence pass, and round-trips through the stage coder."""
    prior = SequencePrior(tiny_wavenet(), 16, tile)
    assert isinstance(prior, StagePrior)
    assert prior.engine.wavefront == (1,)
    assert prior.engine.receptive_field() == {(-i,) for i in range(1, 9)}
    x = torch.randint(0, 16, (1, t), generator=torch.Generator().manual_seed(t))
    span = tile if 0 < tile < t else t
    groups = prior.coding_groups(1, (t,))
    assert len(groups) == span and len(groups[0]) == -(-t // span)  # one step per position, tiles in lockstep
    enc = prior.frequencies(x, 1)
    assert enc.shape == (t, 16) and enc.min() >= 1
    rec = np.full_like(enc, -1)
    it = iter(groups)

    def fn(freqs):
        g = next(it)
        rec[g] = freqs
        return x[0, torch.from_numpy(g)].numpy()
    assert torch.equal(prior.decode_stage(1, x[:0], (t,), fn), x[0])
    assert np.array_equal(rec, enc)
    if t >= 300:  # long tiles decode with a window of slots, not a cache row per step
        assert 0 < prior.engine.plan((t,)).window <= 32
    if t > 2:
        assert len(np.unique(enc, axis=0)) > 1  # the context matters
        y = x.clone()
        y[0, 0] = (y[0, 0] + 1) % 16
        ey = prior.frequencies(y, 1)
        assert np.array_equal(ey[:1], enc[:1]) and not np.array_equal(ey[1], enc[1])  # causal, and uses t-1
    if 0 < tile < t:  # tiles are independent sequences
        assert np.array_equal(prior.frequencies(x[:, tile:2 * tile], 1), enc[tile:2 * tile])
    streams = encode_stages(prior, x)
    assert torch.equal(decode_stages(prior, streams, (t,)), x)


def test_scheduler_is_generic_over_dimensions():
    """3-D grid: the wavefront coefficients follow from the receptive field, and incremental decoding
    equals the whole-grid pass."""
    g = torch.Generator().manual_seed(3)
    offs = ((-1, 0, 5), (0, -1, 2), (0, 0, -1))
    lin = _rand_linear(g, 8, 3 * 4, 1e-3, 2000, 2.0 ** -FORMAT["logit_frac"])
    embed = torch.randint(-2000, 2001, (8, 4), generator=g).double()
    graph = CausalGraph(3, {"E": 4, "Y": 8}, [Node("y", [("E", offs)], ["Y"], lambda e: (lin(e),))], embed,
                        head=lambda y: y, output="Y")
    sched = IncrementalScheduler(graph, (0, 3, 0))
    assert sched.wavefront == (6, 3, 1)
    x = torch.randint(0, 8, (3, 7, 6), generator=g)
    full = torch.cat(list(sched.full_logits(x, chunk=10)))
    rec = torch.full_like(full, float("nan"))
    groups = iter(sched.groups(x.shape))

    def step(_, logits):
        pos = torch.from_numpy(next(groups))
        rec[pos] = logits
        return x.reshape(-1)[pos]
    assert torch.equal(sched.decode(x.shape, step), x)
    assert torch.equal(rec, full)
    for bad in ((0, 1, -1), (0, 0, 0)):
        node = Node("y", [("E", offs + (bad,))], ["Y"], lambda e: (e,))
        with pytest.raises(AssertionError, match="not causal"):
            IncrementalScheduler(CausalGraph(3, {"E": 4, "Y": 16}, [node], embed, lambda y: y, output="Y"), (0, 0, 0))
