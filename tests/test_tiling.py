"""Tiled encoder and decoder nets (codec/image/tiling.py): the halo covers the measured receptive field,
and tiled runs give the whole-image latents to float tolerance, the same indices and pixels within 1 LSB."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vqcodec.image import tiling
from vqcodec.image.codec import ImageCodec
from vqcodec.image.model import ImageModelConfig, ImageVQVAE, pad_to_multiple
from vqcodec.testing import TINY_IMAGE_MODEL


def _moved(net: torch.nn.Module, size: int, channels: int, probe: int) -> torch.Tensor:
    """(row, col) of the outputs of `net` on a random (1, channels, size, size) input that change when the
    input at (probe, probe) does."""
    torch.manual_seed(0)
    with torch.no_grad():
        x = torch.rand(1, channels, size, size)
        x2 = x.clone()
        x2[0, :, probe, probe] += 1.0
        return ((net(x2) - net(x)).abs().amax(1)[0] > 0).nonzero()


@pytest.mark.parametrize("cfg", [ImageModelConfig(**TINY_IMAGE_MODEL), ImageModelConfig()], ids=["tiny", "shipped"])
def test_halo_covers_the_measured_receptive_field(cfg):
    model = ImageVQVAE(cfg).eval()
    for net in (model.encoder, model.decoder):  # random weights: every tap is nonzero
        for p in net.parameters():
            p.data.normal_(0, 0.2)
    for probe in (120, 127):  # the first and last pixel of latent block 15: latents as far as the halo move
        enc = int((_moved(model.encoder, 256, 3, probe) - probe // 8).abs().max())
        assert enc <= tiling.encoder_halo(model) <= enc + 1
    # one latent changed: pixels of latent blocks as far as the halo move
    dec = int((_moved(model.decoder, 32, cfg.latent_dim, 16) // 8 - 16).abs().max())
    assert dec <= tiling.decoder_halo(model) <= dec + 1


def test_reach_refuses_layers_it_cannot_bound():
    with pytest.raises(ValueError, match="receptive field"):
        tiling.reach(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.MaxPool2d(2)))


def test_spans_and_tiles_cover_the_grid_once():
    for n, t in [(1, 4), (7, 4), (8, 4), (129, 128), (1000, 128)]:
        s = tiling.spans(n, t)
        assert s[0][0] == 0 and s[-1][1] == n and all(b - a <= t for a, b in s)
        assert all(s[i][1] == s[i + 1][0] for i in range(len(s) - 1))
    cover = np.zeros((37, 50), dtype=int)
    for tl in tiling.tiles(37, 50, halo=3, tile=16):
        r0, r1, c0, c1 = tl.out
        cover[r0:r1, c0:c1] += 1
        i0, i1, j0, j1 = tl.inp
        assert i0 == max(0, r0 - 3) and i1 == min(37, r1 + 3) and j0 == max(0, c0 - 3) and j1 == min(50, c1 + 3)
    assert (cover == 1).all()


def test_image_tile_pads_like_the_whole_image(make_image):
    rgb = make_image(45, 61)
    whole = pad_to_multiple(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0, 8)
    for box in [(0, 6, 0, 8), (2, 6, 3, 8), (5, 6, 7, 8)]:
        r0, r1, c0, c1 = box
        assert torch.equal(tiling.image_tile(rgb, box), whole[..., 8 * r0:8 * r1, 8 * c0:8 * c1])


def _tiled_vs_whole(codec: ImageCodec, rgb: np.ndarray, tile: int, monkeypatch, quality: int = 60):
    """(whole, tiled) candidates, indices at `quality` and rendered pixels, with tiles of `tile` latents."""
    h, w = rgb.shape[:2]
    whole = codec.analyse(rgb)
    idx = codec.encode_indices(rgb, quality, candidates=whole)
    px_whole = codec.render(idx, h, w)
    monkeypatch.setattr(tiling, "TILE", tile)
    monkeypatch.setattr(tiling, "TILE_ABOVE_PIXELS", 0)
    tiled = codec.analyse(rgb)
    return whole, tiled, idx, codec.encode_indices(rgb, quality, candidates=tiled), px_whole, codec.render(idx, h, w)


def _assert_latents_close(model, rgb: np.ndarray, tile: int, atol: float) -> None:
    z = model.encoder(pad_to_multiple(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0, 8))[0]
    seen = torch.zeros(z.shape[1:], dtype=torch.bool)
    for t, zt in tiling.encode_tiles(model, rgb, tile=tile):
        r0, r1, c0, c1 = t.out
        torch.testing.assert_close(zt, z[:, r0:r1, c0:c1], atol=atol, rtol=0)
        seen[r0:r1, c0:c1] = True
    assert seen.all()


def test_tiled_nets_match_the_whole_image_tiny_model(tiny_codec, make_image, monkeypatch):
    rgb = make_image(150, 203)  # 19 x 26 latents: 3 x 4 tiles of <= 8, halos crossing every tile edge
    _assert_latents_close(tiny_codec.model, rgb, 8, 1e-5)
    whole, tiled, idx, idx_tiled, px, px_tiled = _tiled_vs_whole(tiny_codec, rgb, 8, monkeypatch)
    assert tiled.paths.dtype == torch.int16 and (tiled.paths == whole.paths).float().mean() > 0.999
    torch.testing.assert_close(tiled.errors, whole.errors, rtol=1e-4, atol=1e-6)
    assert (idx_tiled == idx).float().mean() > 0.999
    assert np.abs(px.astype(int) - px_tiled.astype(int)).max() <= 1


def test_tiled_nets_match_the_whole_image_shipped_model(monkeypatch):
    codec = ImageCodec()
    rgb = np.asarray(Image.open("data/kodak/kodim23.png").convert("RGB"))[:203, :301]  # 26 x 38 latents
    _assert_latents_close(codec.model, rgb, 16, 1e-4)
    whole, tiled, idx, idx_tiled, px, px_tiled = _tiled_vs_whole(codec, rgb, 16, monkeypatch)
    assert (tiled.paths == whole.paths).float().mean() > 0.999
    assert (idx_tiled == idx).float().mean() > 0.999
    assert np.abs(px.astype(int) - px_tiled.astype(int)).max() <= 1


def test_effort_3_pixel_weights_match_when_tiled(tiny_codec, make_image, monkeypatch):
    rgb = make_image(100, 131)
    whole = tiny_codec.analyse(rgb, effort=3)
    monkeypatch.setattr(tiling, "TILE", 6)
    monkeypatch.setattr(tiling, "TILE_ABOVE_PIXELS", 0)
    tiled = tiny_codec.analyse(rgb, effort=3)
    same = (tiled.paths == whole.paths).all(-1).all(-1)
    torch.testing.assert_close(tiled.errors[same], whole.errors[same], rtol=1e-3, atol=1e-6)


def test_small_images_run_whole(tiny_codec, make_image, monkeypatch):
    """Below the threshold nothing is cut in `tiles`: decoding runs the nets whole, and the encoder's
    analysis runs in full-width strips (`tiling.analysis_tiles`), not tiles."""
    assert not tiling.needs_tiles(2048, 2048) and tiling.needs_tiles(2048, 2049)
    rgb = make_image(40, 56)
    calls = []
    monkeypatch.setattr(tiling, "tiles", lambda *a, **k: calls.append(a) or [])
    data = tiny_codec.encode(rgb, 50)
    tiny_codec.decode(data)
    assert calls == []


def test_analysis_tiles_are_a_fixed_partition():
    """The encoder's analysis partition covers the latent grid once and depends on the image size alone:
    strips of at most STRIP_ROWS full rows below the threshold, TILE-square tiles above it."""
    halo = 6
    for height, width in [(512, 768), (768, 512), (1, 1), (2048, 2048), (2049, 2048)]:
        parts = tiling.analysis_tiles(height, width, halo)
        h, w = -(-height // 8), -(-width // 8)
        cover = np.zeros((h, w), dtype=int)
        for t in parts:
            r0, r1, c0, c1 = t.out
            cover[r0:r1, c0:c1] += 1
            assert t.inp == (max(0, r0 - halo), min(h, r1 + halo), max(0, c0 - halo), min(w, c1 + halo))
            if tiling.needs_tiles(height, width):
                assert r1 - r0 <= tiling.TILE and c1 - c0 <= tiling.TILE
            else:
                assert (c0, c1) == (0, w) and r1 - r0 <= tiling.STRIP_ROWS
        assert (cover == 1).all()
    assert len(tiling.analysis_tiles(512, 768, halo)) == 2 == len(tiling.analysis_tiles(768, 512, halo))
