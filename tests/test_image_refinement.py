"""Scalar refinement layers in the image codec: the component, the file, the quality scale, truncation, errors."""
import numpy as np
import pytest
import torch

from vqcodec.bitstream import VQFormatError, read_file, refinement_chunk, truncate
from vqcodec.bitstream.chunks import decode_refinement_base
from vqcodec.image.codec import ImageCodec
from vqcodec.image.model import load_image_model
from vqcodec.image.rate_control import QUALITY_MAX, RefinementScale, refined_plan
from vqcodec.image.refinement import decode_layers, encode_layers, load_refinement_model, save_refinement_model
from vqcodec.quantization.scalar_refinement import refine_symbols, residual_units
from vqcodec.training.refinement_tables import fit_refinement_model


@pytest.fixture(scope="module")
def refined_weights(tiny_weights, tmp_path_factory):
    from vqcodec.testing import smooth_image

    model, _ = load_image_model(tiny_weights / "image_vqvae.safetensors")
    crops = [torch.from_numpy(smooth_image(64, 64, s)).permute(2, 0, 1).contiguous() for s in range(4)]
    fitted = fit_refinement_model(model, crops, base_stages=2, layers=3, first_shift=1, model_id="tiny-refinement")
    path = tmp_path_factory.mktemp("refinement") / "image_refinement.safetensors"
    save_refinement_model(fitted, path)
    return path


@pytest.fixture()
def refined_codec(tiny_weights, refined_weights):
    return ImageCodec(tiny_weights / "image_vqvae.safetensors", tiny_weights / "image_prior.safetensors",
                      refinement_path=refined_weights)


def test_component_file_round_trip(refined_weights):
    rm = load_refinement_model(refined_weights)
    save_refinement_model(rm, refined_weights.with_name("again.safetensors"))
    again = load_refinement_model(refined_weights.with_name("again.safetensors"))
    assert (again.base_stages, again.first_shift, again.max_first, again.layers) == (2, 1, 7, 3)
    assert all(torch.equal(a, b) for a, b in zip(rm.tables, again.tables))
    assert rm.steps() == [0.5, 0.25, 0.125]


def test_quality_scale_spreads_over_depths_then_layers():
    scale = RefinementScale(base=2, layers=3, vq_top=10)
    plans = [refined_plan(q, scale) for q in range(1, QUALITY_MAX + 1)]
    assert all(p.layers == 0 and p.vq_lambda is not None for p in plans[:10])
    vq = [p.vq_lambda for p in plans[:10]]
    assert vq == sorted(vq, reverse=True)
    layers = [p.layers for p in plans[10:]]
    assert layers == sorted(layers) and layers[0] == 1 and layers[-1] == 3
    assert plans[-1].rdo_step_lambda == 0 and plans[-1].vq_lambda is None
    for n in (1, 2):  # inside one layer count, the RDO lambda falls as quality rises
        lam = [p.rdo_step_lambda for p in plans[10:] if p.layers == n and p.rdo_step_lambda > 0]
        assert len(lam) > 3 and lam == sorted(lam, reverse=True)


def test_round_trip_across_the_scale(refined_codec, make_image):
    rgb = make_image(48, 40, 7)
    sizes = []
    for q in (1, 20, 21, 50, 80, 100):
        data = refined_codec.encode(rgb, q, verify=True)
        f = read_file(data)
        plan = refined_codec.plan(q)
        roles = [c.role for c in f.components]
        if plan.layers:
            assert f.refinement_base == 2 and f.layers == 2 + plan.layers and "refinement" in roles
        else:
            assert f.refinement_base is None and "refinement" not in roles  # decodes without the component
        out = refined_codec.decode(data)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        sizes.append(len(data))
    assert sizes == sorted(sizes)


def test_refinement_lowers_latent_error_and_truncates(refined_codec, make_image):
    """Each refinement layer halves the bound of what is left of the latent; a file cut after any layer decodes."""
    rgb = make_image(40, 56, 3)
    data = refined_codec.encode(rgb, QUALITY_MAX)
    f = read_file(data)
    c = refined_codec.analyse(rgb)
    steps = refined_codec.refinement.steps()
    errs = []
    for n in range(2, f.layers + 1):  # 2 VQ layers, then the refinement layers
        indices, refined = refined_codec._decode_layers(f, n)
        z = refined_codec._base_latents(indices) if refined is None else refined.latents.reshape(c.latents.shape)
        errs.append(float((z - c.latents).abs().max()))
        if n > 2:
            assert errs[-1] <= steps[n - 3] / 2 + 1e-3 or n == 3
        assert refined_codec.decode(read_file(truncate(data, n))).shape == rgb.shape
        assert read_file(truncate(data, n)).refinement_base == 2  # the layer-0 chunk stays
    assert errs == sorted(errs, reverse=True) and errs[-1] < errs[0]


def _grid(rm, seed=0, h=6, w=5):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(h * w, rm.latent_dim, generator=gen)
    base = latents + 0.3 * torch.randn(latents.shape, generator=gen)
    return latents, base, residual_units(latents, base).view(h, w, -1)


def _peaked(rm):
    """`rm` with every table putting most of its mass on 0 (so moving a symbol towards zero saves bits)."""
    from vqcodec.image.refinement import RefinementModel

    tables = []
    for t in rm.tables:
        k = t.shape[-1]
        row = torch.ones(k, dtype=torch.int64)
        row[k // 2] = 65536 - (k - 1)
        tables.append(row.expand(t.shape).clone())
    return RefinementModel(tuple(tables), rm.base_stages, rm.first_shift, rm.max_first, "peaked")


def test_rdo_moves_symbols_towards_zero_and_saves_bits(refined_weights):
    rm = _peaked(load_refinement_model(refined_weights))
    latents, base, residual = _grid(rm, 1, 8, 9)
    plain = encode_layers(rm, residual, 2)
    strong = encode_layers(rm, residual, 2, lam=1e3)
    assert plain.streams[0] == strong.streams[0]  # earlier layers as rounded
    assert len(strong.streams[1]) < len(plain.streams[1])
    d_plain = decode_layers(rm, plain.streams, base.view(8, 9, -1))
    d_strong = decode_layers(rm, strong.streams, base.view(8, 9, -1))
    err = lambda d: float(((d.latents.reshape(latents.shape) - latents) ** 2).sum())  # noqa: E731
    assert err(d_strong) > err(d_plain)
    assert encode_layers(rm, residual, 2, lam=0.0).streams == plain.streams


def test_layers_decode_exactly_row_by_row(refined_weights):
    """The streams hold the symbols of `refine_symbols` (rounded, no RDO), decode to base + symbols x steps in
    layer order, and the digests of both sides agree."""
    rm = load_refinement_model(refined_weights)
    latents, base, residual = _grid(rm)
    enc = encode_layers(rm, residual, 3)
    dec = decode_layers(rm, enc.streams, base.view(6, 5, -1))
    sym = refine_symbols(latents, base, rm.first_shift, 3, rm.max_first)  # (3, N, D)
    want = base.clone()
    for j, step in enumerate(rm.steps(3)):
        want += sym[j].float() * step
    assert torch.equal(dec.latents.reshape(want.shape), want) and dec.digest == enc.digest
    nonzero = sym.ne(0).any(-1)  # (3, N)
    levels = (nonzero * torch.arange(1, 4)[:, None]).amax(0).view(6, 5)
    assert torch.equal(dec.levels, levels)
    with pytest.raises(VQFormatError):
        decode_layers(rm, enc.streams + [b""], base.view(6, 5, -1))


def test_refinement_chunk_rules():
    assert decode_refinement_base(refinement_chunk(2).payload) == 2
    for bad in (0, 256):
        with pytest.raises(ValueError):
            refinement_chunk(bad)


def test_refined_file_needs_the_component(tiny_codec, refined_codec, make_image):
    data = refined_codec.encode(make_image(32, 32, 1), QUALITY_MAX)
    with pytest.raises(VQFormatError, match="refinement"):
        tiny_codec.decode(data)
    vq_only = refined_codec.encode(make_image(32, 32, 1), 5)
    assert tiny_codec.decode(vq_only).shape == (32, 32, 3)  # a VQ-only file names no refinement component


def test_damaged_refined_files_raise_format_errors(refined_codec, make_image):
    """Flipped bits in refinement streams are refused with VQFormatError or decode to some image; nothing
    else escapes."""
    from vqcodec.bitstream import ChunkType, write_file

    rng = np.random.default_rng(0)
    f = read_file(refined_codec.encode(make_image(32, 40, 2), QUALITY_MAX))
    streams = [list(f.streams(k)) for k in range(1, f.layers + 1)]
    for trial in range(20):
        k = int(rng.integers(2, f.layers))  # a refinement layer's stream
        s = bytearray(streams[k][0])
        if not s:
            continue
        s[int(rng.integers(0, len(s)))] ^= 1 << int(rng.integers(0, 8))
        damaged = [list(x) for x in streams]
        damaged[k] = [bytes(s)]
        extra = [c for c in f.chunks if c.type not in (ChunkType.MODEL, ChunkType.IMAGE_GEOMETRY, ChunkType.STAGE_STREAM,
                                                     ChunkType.ENCODER)]
        blob = write_file(f.modality, f.components, f.geometry, damaged, extra_chunks=extra, encoder="vqcodec t")
        try:
            assert refined_codec.decode(blob).shape == (32, 40, 3)
        except VQFormatError:
            pass  # refused; decoding to other pixels is also allowed (a range-coded stream has no redundancy)


def test_refined_decode_in_tiles_matches_whole(refined_codec, make_image, monkeypatch):
    """Above the tiling threshold the decoder net runs over the refined latents tile by tile: within 1 LSB."""
    from vqcodec.image import tiling

    rgb = make_image(150, 203, 4)
    data = refined_codec.encode(rgb, QUALITY_MAX)
    whole = refined_codec.decode(data)
    monkeypatch.setattr(tiling, "TILE", 8)
    monkeypatch.setattr("vqcodec.image.codec.needs_tiles", lambda h, w: True)
    tiled = refined_codec.decode(data)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_refined_encode_of_a_tiled_image(refined_codec, make_image, monkeypatch):
    """Above the tiling threshold the analysis keeps the tiles' latents, so refinement layers are coded there
    too: the file verifies, and decodes close to the whole-image file (the tiles' latents differ from the whole
    image's by float rounding, which can move a symbol)."""
    from vqcodec.image import tiling

    rgb = make_image(150, 203, 6)
    whole = refined_codec.decode(refined_codec.encode(rgb, QUALITY_MAX))
    monkeypatch.setattr(tiling, "TILE", 8)
    monkeypatch.setattr("vqcodec.image.analysis.needs_tiles", lambda h, w: True)
    monkeypatch.setattr("vqcodec.image.codec.needs_tiles", lambda h, w: True)
    data = refined_codec.encode(rgb, QUALITY_MAX, verify=True)
    assert read_file(data).refinement_base == 2
    tiled = refined_codec.decode(data)
    assert np.abs(whole.astype(int) - tiled.astype(int)).mean() < 0.5


def test_inspect_and_info_tell_the_refinement_layers(tiny_codec, refined_codec, make_image, tmp_path):
    import vqcodec
    from vqcodec.cli.info import _details, describe

    rgb = make_image(48, 40, 7)
    fi = vqcodec.inspect(refined_codec.encode(rgb, 100))
    assert (fi.vq_layers, fi.layers) == (2, 5)
    plain = vqcodec.inspect(tiny_codec.encode(rgb, 100))
    assert plain.vq_layers == plain.layers == 3
    path = tmp_path / "r.vq"
    path.write_bytes(refined_codec.encode(rgb, 100))
    lines = [line for line in _details(describe(str(path))) if line.startswith("  layer ")]
    assert [line.endswith(f"(refinement layer {i - 2})") for i, line in enumerate(lines, 1)] == [False] * 2 + [True] * 3
