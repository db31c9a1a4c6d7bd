"""Progressive decode (issue 24, item 9): a .vq file cut short gives its complete quality layers, equal to
`truncate(whole, N)` / `decode(whole, layers=N)`; a file cut before its first layer is complete stays an
error (bitstream/partial.py, vqcodec.decode(partial=True), `vqcodec decode --partial`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import vqcodec
from vqcodec.bitstream import VQFormatError, complete_layers_prefix, read_file, truncate

KODAK = Path(__file__).resolve().parents[1] / "data" / "kodak"


def _expected_layers(whole: bytes, cut: int) -> int:
    """Layers whose chunks all lie in the first `cut` bytes and whose end is known: the next layer's chunk
    header (4 bytes) has begun, or only the CRC is missing. The end of layer k's chunks in `whole` is
    len(truncate(whole, k)) - 4 (same header size: fewer than 128 chunks)."""
    total = read_file(whole).layers
    ends = [len(truncate(whole, k)) - 4 for k in range(1, total + 1)]
    return max([0] + [k for k, end in enumerate(ends, 1) if cut >= end + (4 if k < total else 0)])


@pytest.fixture(scope="module")
def small_file() -> bytes:
    from vqcodec.image.codec import ImageCodec

    with Image.open(KODAK / "kodim23.png") as im:
        rgb = np.asarray(im.convert("RGB"))[200:264, 300:396].copy()  # 96x64
    return ImageCodec().encode(rgb, 100)


def test_every_cut_gives_the_truncated_file_or_an_error(small_file):
    whole = small_file
    assert read_file(whole).layers >= 3
    seen = set()
    for cut in range(len(whole) + 1):
        expected = _expected_layers(whole, cut)
        if cut == len(whole):
            assert complete_layers_prefix(whole) == (whole, read_file(whole).layers, False)
        elif expected == 0:
            with pytest.raises(VQFormatError, match="first quality layer|truncated|not a .vq file"):
                complete_layers_prefix(whole[:cut])
        else:
            got = complete_layers_prefix(whole[:cut])
            assert got.cut and got.layers == expected, cut
            assert got.data == truncate(whole, expected), cut
            seen.add(expected)
    assert seen == set(range(1, read_file(whole).layers + 1))


def test_damage_is_still_refused(small_file):
    flipped = bytearray(small_file)
    flipped[len(flipped) // 2] ^= 0x10
    with pytest.raises(VQFormatError, match="CRC"):
        complete_layers_prefix(bytes(flipped))  # a whole file: the CRC decides
    with pytest.raises(VQFormatError, match="unexpected bytes"):
        complete_layers_prefix(small_file + b"\0")
    with pytest.raises(VQFormatError, match="not a .vq file"):
        complete_layers_prefix(b"PNG" + small_file[3:100])


def test_api_partial_decode_equals_decoding_fewer_layers(small_file):
    whole = small_file
    for frac in (0.3, 0.5, 0.7, 0.9, 0.999):
        cut = int(len(whole) * frac)
        n = _expected_layers(whole, cut)
        if n == 0:
            with pytest.raises(VQFormatError):
                vqcodec.decode(whole[:cut], partial=True)
            continue
        with pytest.raises(VQFormatError, match="truncated"):
            vqcodec.decode(whole[:cut])  # without partial=True a cut file is refused, as before
        img = vqcodec.decode(whole[:cut], partial=True)
        assert img.info["vq_layers"] == n
        assert np.array_equal(np.asarray(img), np.asarray(vqcodec.decode(whole, layers=n)))
    assert vqcodec.decode(whole, partial=True).info["vq_layers"] == read_file(whole).layers
    with pytest.raises(VQFormatError, match="first quality layer"):
        vqcodec.decode(whole[: len(truncate(whole, 1)) - 10], partial=True)


def test_cli_decode_partial(small_file, tmp_path):
    from vqcodec.cli.main import cli

    whole = small_file
    cut = len(truncate(whole, 3)) + 2  # layers 1..3 and the start of layer 4's chunk
    (tmp_path / "cut.vq").write_bytes(whole[:cut])
    runner = CliRunner()
    refused = runner.invoke(cli, ["decode", str(tmp_path / "cut.vq"), "-o", str(tmp_path / "a.png")])
    assert refused.exit_code != 0 and "truncated" in refused.output
    ok = runner.invoke(cli, ["decode", "--partial", str(tmp_path / "cut.vq"), "-o", str(tmp_path / "b.png")])
    assert ok.exit_code == 0, ok.output
    assert "decoded 3 complete quality layers" in ok.output
    with Image.open(tmp_path / "b.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(vqcodec.decode(whole, layers=3)))
    (tmp_path / "head.vq").write_bytes(whole[:60])
    bad = runner.invoke(cli, ["decode", "--partial", str(tmp_path / "head.vq"), "-o", str(tmp_path / "c.png")])
    assert bad.exit_code != 0 and "first quality layer" in bad.output


@pytest.mark.slow
def test_kodak_cut_at_every_percent():
    """The issue's acceptance test: kodim23 cut at every 1 % decodes with partial=True whenever its first
    layer is complete, to exactly decode(whole, layers=N)."""
    with Image.open(KODAK / "kodim23.png") as im:
        whole = vqcodec.api.encode_image(im)
    reference: dict[int, np.ndarray] = {}
    for pct in range(1, 100):
        cut = len(whole) * pct // 100
        n = _expected_layers(whole, cut)
        if n == 0:
            with pytest.raises(VQFormatError):
                vqcodec.decode(whole[:cut], partial=True)
            continue
        if n not in reference:
            reference[n] = np.asarray(vqcodec.decode(whole, layers=n))
        img = vqcodec.decode(whole[:cut], partial=True)
        assert img.info["vq_layers"] == n and np.array_equal(np.asarray(img), reference[n]), pct
