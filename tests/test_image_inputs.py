"""Issue 13, "Every image a user has": each kind of input image either round-trips or is refused with one clear
line, through the CLI (in process with click's CliRunner, and once through the real entry point) and the Python
API, on the tiny test model. Also: the alpha plane (layout, ALPHA_PLANE chunk, lossless coding), metadata
(ICC, EXIF, XMP; --strip) and the Pillow plugin's view of them."""
import io
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import ExifTags, Image, ImageCms, ImageDraw
from PIL.PngImagePlugin import PngInfo

import vqcodec
from vqcodec.bitstream import (
    AlphaCoding,
    ChannelLayout,
    Chunk,
    ChunkType,
    ImageGeometry,
    ModelComponent,
    Modality,
    VQFormatError,
    alpha_plane_chunk,
    read_file,
    truncate,
    write_file,
)
from vqcodec.cli.main import cli
from vqcodec.image.alpha import decode_alpha, dictionary_size, encode_alpha
from vqcodec.image.input import ImageInputError, open_image, prepare_image

XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description dc:title="t" '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture()
def tiny(tiny_weights, use_weights):
    use_weights(tiny_weights)
    return vqcodec


@pytest.fixture()
def cli_run(tiny, tmp_path, monkeypatch):
    """vqcodec CLI in process, in tmp_path: -> (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def one_line(stderr: str) -> str:
    err = stderr.strip()
    assert err.startswith("vqcodec: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def rgb_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    from vqcodec.testing import smooth_image

    return smooth_image(h, w, seed)


def disc_alpha(h: int, w: int) -> np.ndarray:
    """An antialiased disc: 0 outside, 255 inside, intermediate values on the edge."""
    big = Image.new("L", (4 * w, 4 * h), 0)
    ImageDraw.Draw(big).ellipse((2, 3, 4 * w - 5, 4 * h - 2), fill=255)
    return np.asarray(big.resize((w, h), Image.LANCZOS))


def png_bytes(arr: np.ndarray, color_type: int, depth: int = 16, size: tuple[int, int] | None = None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour): color type 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA."""
    h, w = arr.shape[:2]
    raw = arr.astype(">u2" if depth == 16 else "u1").reshape(h, -1).view(np.uint8).reshape(h, -1)
    body = b"".join(b"\0" + raw[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    sw, sh = size or (w, h)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", sw, sh, depth, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def saved(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def exif_block(orientation: int | None = None, description: str = "vqcodec test") -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = description
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()  # with the "Exif\0\0" prefix, as Pillow's JPEG writer wants it


# ------------------------------------------------------------------------------------ the list, CLI
REFUSED = {
    "empty.png": (lambda: b"", "empty"),
    "text.png": (lambda: b"this is not a picture\n", "not a readable image"),
    "truncated.png": (lambda: saved(Image.fromarray(rgb_image(32, 32)), "PNG")[:300], "corrupt or truncated"),
    "corrupt.png": (lambda: (lambda d: d[:60] + bytes(x ^ 0x55 for x in d[60:200]) + d[200:])(
        saved(Image.fromarray(rgb_image(32, 32)), "PNG")), "corrupt or truncated"),
    "truncated.jpg": (lambda: (lambda d: d[: len(d) // 2])(saved(Image.fromarray(rgb_image(32, 32)), "JPEG")),
                      "corrupt or truncated"),
    "corrupt.jpg": (lambda: (lambda d: d[:20] + b"\xde\xad" * 40 + d[100:])(
        saved(Image.fromarray(rgb_image(32, 32)), "JPEG")), "corrupt or truncated"),
    "bomb.png": (lambda: png_bytes(np.zeros((2, 2), np.uint8), 0, 8, size=(100_000, 100_000)),
                 "refused before decoding"),
    "big.png": (lambda: png_bytes(np.zeros((2, 2), np.uint8), 0, 8, size=(9000, 9000)), "refused before decoding"),
    "animated.gif": (lambda: saved(Image.new("RGB", (8, 8), "red"), "GIF", save_all=True,
                                   append_images=[Image.new("RGB", (8, 8), "blue")]), "2 frames"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_one_line(cli_run, tmp_path, name):
    make, words = REFUSED[name]
    (tmp_path / name).write_bytes(make())
    t0 = time.perf_counter()
    code, _, err = cli_run("encode", name, "-o", "out.vq")
    assert code == 1 and words in one_line(err), err
    assert name in err and not (tmp_path / "out.vq").exists()
    assert time.perf_counter() - t0 < 10  # the bombs are refused from their headers


def test_refusals_through_the_real_entry_point(tiny_weights, tmp_path):
    """The console entry point itself: exit 1, one line, no traceback (a text file, a bomb)."""
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_weights), "OMP_NUM_THREADS": "1"}
    (tmp_path / "notes.png").write_bytes(b"shopping list: eggs\n")
    (tmp_path / "bomb.png").write_bytes(png_bytes(np.zeros((2, 2), np.uint8), 0, 8, size=(100_000, 100_000)))
    for name in ("notes.png", "bomb.png"):
        p = subprocess.run([sys.executable, "-m", "vqcodec.cli.main", "encode", name, "-o", "x.vq"], cwd=tmp_path,
                           env=env, capture_output=True, timeout=300)
        assert p.returncode == 1 and one_line(p.stderr.decode()), p.stderr.decode()


def _modes() -> dict:
    rng = np.random.default_rng(0)
    rgb = rgb_image(13, 7)
    gray = rgb[..., 1]
    alpha = rng.integers(0, 256, (13, 7)).astype(np.uint8)
    pal = Image.fromarray(rgb).quantize(16)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 3
    return {  # name: (file bytes, mode decoded, exact alpha or None)
        "rgb_1x1.png": (saved(Image.fromarray(rgb[:1, :1]), "PNG"), "RGB", None),
        "rgb_7x13.png": (saved(Image.fromarray(rgb), "PNG"), "RGB", None),
        "gray.png": (saved(Image.fromarray(gray), "PNG"), "L", None),
        "bilevel.png": (saved(Image.fromarray(gray).convert("1"), "PNG"), "L", None),
        "gray16.png": (png_bytes(gray.astype(np.uint16) * 257, 0), "L", None),
        "rgb16.png": (png_bytes(rgb.astype(np.uint16) * 257, 2), "RGB", None),
        "rgba16.png": (png_bytes(np.dstack([rgb, alpha]).astype(np.uint16) * 257, 6), "RGBA", alpha),
        "gray_alpha16.png": (png_bytes(np.dstack([gray, alpha]).astype(np.uint16) * 257, 4), "LA", alpha),
        "palette.png": (saved(pal, "PNG"), "RGB", None),
        "palette_transparent.png": (saved(pal_t, "PNG"), "RGBA", np.where(np.asarray(pal) == 3, 0, 255)),
        "gray_alpha.png": (saved(Image.fromarray(np.dstack([gray, alpha])), "PNG"), "LA", alpha),
        "rgba.png": (saved(Image.fromarray(np.dstack([rgb, alpha])), "PNG"), "RGBA", alpha),
        "opaque_rgba.png": (saved(Image.fromarray(rgb).convert("RGBA"), "PNG"), "RGBA", np.full((13, 7), 255)),
        "rgba.webp": (saved(Image.fromarray(np.dstack([rgb, alpha])), "WEBP", lossless=True), "RGBA", alpha),
        "rgba.tif": (saved(Image.fromarray(np.dstack([rgb, alpha])), "TIFF"), "RGBA", alpha),
        "gray.jpg": (saved(Image.fromarray(gray), "JPEG"), "L", None),
        "rgb.jpg": (saved(Image.fromarray(rgb), "JPEG"), "RGB", None),
        "cmyk.jpg": (saved(Image.fromarray(rgb).convert("CMYK"), "JPEG"), "RGB", None),
        "rgb.bmp": (saved(Image.fromarray(rgb), "BMP"), "RGB", None),
    }


@pytest.mark.parametrize("name", sorted(_modes()))
def test_round_trips_through_the_cli(cli_run, tmp_path, name):
    data, mode, alpha = _modes()[name]
    (tmp_path / name).write_bytes(data)
    size = Image.open(io.BytesIO(data)).size
    code, _, err = cli_run("encode", name, "-o", "a.vq", "--verify")
    assert code == 0, err
    assert f"{size[0]}x{size[1]} {mode}" in err
    code, _, err = cli_run("decode", "a.vq", "-o", "out.png")
    assert code == 0, err
    out = Image.open(tmp_path / "out.png")
    assert (out.mode, out.size) == (mode, size)
    if alpha is not None:
        assert np.array_equal(np.asarray(out)[..., -1], alpha)


# ------------------------------------------------------------------------------------ the same, Python API
@pytest.mark.parametrize("name", sorted(_modes()))
def test_round_trips_through_the_api(tiny, name):
    data, mode, alpha = _modes()[name]
    img = Image.open(io.BytesIO(data))
    out = tiny.decode(tiny.encode_image(img, verify=True))
    assert (out.mode, out.size) == (mode, img.size)
    if alpha is not None:
        assert np.array_equal(np.asarray(out)[..., -1], alpha)
    assert tiny.inspect(tiny.encode_image(Image.open(io.BytesIO(data)))).mode == mode


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_through_the_api(tiny, name):
    make, words = REFUSED[name]
    with pytest.raises(ValueError, match=words) as e:
        tiny.encode_image(open_image(make(), name))
    assert "\n" not in str(e.value)


def test_api_refuses_oversized_images_before_loading(tiny):
    img = Image.open(io.BytesIO(png_bytes(np.zeros((2, 2), np.uint8), 0, 8, size=(9000, 9000))))
    with pytest.raises(ImageInputError, match="refused before decoding"):
        tiny.encode_image(img)
    assert img.tile  # nothing was decoded
    with pytest.raises(ImageInputError, match="empty"):
        tiny.encode_image(np.zeros((0, 5, 3), np.uint8))


def test_arrays_of_every_layout(tiny):
    rgb = rgb_image(9, 11)
    a = disc_alpha(9, 11)
    layouts = ((rgb, "RGB"), (np.dstack([rgb, a]), "RGBA"), (rgb[..., 0], "L"), (np.dstack([rgb[..., 0], a]), "LA"))
    for arr, mode in layouts:
        out = tiny.decode(tiny.encode_image(arr))
        assert out.mode == mode and out.size == (11, 9)
        if mode.endswith("A"):
            assert np.array_equal(np.asarray(out)[..., -1], a)
    with pytest.raises(ValueError, match="uint8 array"):
        tiny.encode_image(np.zeros((4, 4, 5), np.uint8))


# ----------------------------------------------------------------------------------------- conversions
def test_16_bit_is_rounded():
    rng = np.random.default_rng(1)
    v = rng.integers(0, 65536, (5, 6, 4))
    want = ((v + 128) // 257).astype(np.uint8)
    assert np.array_equal(want, np.round(v / 257).astype(np.uint8))
    for color_type, planes in ((0, 1), (4, 2), (2, 3), (6, 4)):
        arr = v[..., :planes].squeeze(-1) if planes == 1 else v[..., :planes]
        data = png_bytes(arr, color_type)
        for img in (open_image(data), Image.open(io.BytesIO(data))):  # vqcodec reads it / an unloaded Pillow image
            p = prepare_image(img)
            assert np.array_equal(p.rgb, np.repeat(want[..., :1], 3, 2) if planes <= 2 else want[..., :3])
            assert p.layout == [None, ChannelLayout.GRAY, ChannelLayout.GRAY_ALPHA, ChannelLayout.RGB,
                                ChannelLayout.RGBA][planes]
            if planes in (2, 4):
                assert np.array_equal(p.alpha, want[..., planes - 1])


def test_cmyk_is_converted_and_its_profile_not_carried():
    cmyk = Image.fromarray(rgb_image(8, 8)).convert("CMYK")
    img = Image.open(io.BytesIO(saved(cmyk, "JPEG")))
    p = prepare_image(img)
    pillows = np.asarray(Image.open(io.BytesIO(saved(cmyk, "JPEG"))).convert("RGB"))
    assert p.layout == ChannelLayout.RGB and np.array_equal(p.rgb, pillows)
    broken = Image.open(io.BytesIO(saved(cmyk, "JPEG", icc_profile=b"not a profile" * 20)))
    p = prepare_image(broken)  # a broken profile: Pillow's conversion, nothing carried
    assert p.rgb.shape == (8, 8, 3) and p.metadata.icc is None


def test_gray_image_with_an_rgb_profile_decodes_as_rgb():
    """A gray image tagged with an RGB profile (invalid in PNG, found in the wild) keeps its profile valid."""
    gray = Image.fromarray(rgb_image(8, 8)[..., 0])
    assert prepare_image(gray).layout == ChannelLayout.GRAY
    gray.info["icc_profile"] = SRGB_ICC
    p = prepare_image(gray)
    assert p.layout == ChannelLayout.RGB and p.metadata.icc == SRGB_ICC


def test_exif_orientation_is_applied(tiny):
    rgb = rgb_image(7, 13)  # stored 13 wide, 7 high; orientation 6: shown rotated, 7 wide and 13 high
    img = Image.open(io.BytesIO(saved(Image.fromarray(rgb), "JPEG", exif=exif_block(6))))
    p = prepare_image(img)
    assert p.rgb.shape == (13, 7, 3)
    rotated = saved(Image.fromarray(rgb), "JPEG", exif=exif_block(6))
    out = tiny.decode(tiny.encode_image(Image.open(io.BytesIO(rotated))))
    assert out.size == (7, 13)
    exif = out.getexif()
    assert exif.get(ExifTags.Base.Orientation, 1) == 1 and exif[ExifTags.Base.ImageDescription] == "vqcodec test"


def test_alpha_policies(tiny):
    rgba = np.dstack([rgb_image(8, 8), disc_alpha(8, 8)])
    rgba[0, 0, 3] = 0
    assert tiny.decode(tiny.encode_image(rgba)).mode == "RGBA"
    for policy in ("drop", "white", "black"):
        assert tiny.decode(tiny.encode_image(rgba, alpha=policy)).mode == "RGB"
    white, black = prepare_image(rgba, alpha="white").rgb, prepare_image(rgba, alpha="black").rgb
    assert (white[0, 0] == 255).all() and (black[0, 0] == 0).all()  # a transparent corner
    with pytest.raises(ImageInputError, match="transparent"):
        tiny.encode_image(rgba, alpha="error")
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert tiny.decode(tiny.encode_image(opaque, alpha="error")).mode == "RGB"  # 0.2's policy: dropped, nothing lost
    assert tiny.decode(tiny.encode_image(np.dstack([rgba[..., 0], rgba[..., 3]]), alpha="white")).mode == "L"


# ------------------------------------------------------------------------------------------------ metadata
def _tagged_png() -> bytes:
    text = PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP.decode())
    return saved(Image.fromarray(rgb_image(8, 12)), "PNG", icc_profile=SRGB_ICC, exif=exif_block(), pnginfo=text)


@pytest.mark.parametrize("out_name", ["out.png", "out.jpg", "out.webp"])
def test_metadata_carried_and_restored(cli_run, tmp_path, out_name):
    (tmp_path / "in.png").write_bytes(_tagged_png())
    assert cli_run("encode", "in.png", "-o", "a.vq")[0] == 0
    meta = dict(vqcodec.inspect((tmp_path / "a.vq").read_bytes()).metadata)
    assert meta["icc"] == SRGB_ICC and meta["exif"][:4] in (b"II*\0", b"MM\0*") and meta["xmp"] == XMP
    code, out, _ = cli_run("info", "a.vq")
    assert "metadata exif" in out and "metadata icc" in out
    code, _, err = cli_run("decode", "a.vq", "-o", out_name)
    assert code == 0, err
    out = Image.open(tmp_path / out_name)
    assert out.info["icc_profile"] == SRGB_ICC
    assert out.getexif()[ExifTags.Base.ImageDescription] == "vqcodec test"
    assert XMP in (out.info["xmp"] if isinstance(out.info["xmp"], bytes) else out.info["xmp"].encode())


def test_strip_drops_exif_and_xmp_keeps_icc(cli_run, tmp_path):
    (tmp_path / "in.png").write_bytes(_tagged_png())
    assert cli_run("encode", "in.png", "-o", "s.vq", "--strip")[0] == 0
    meta = dict(vqcodec.inspect((tmp_path / "s.vq").read_bytes()).metadata)
    assert set(meta) == {"icc"}
    assert cli_run("decode", "s.vq", "-o", "s.jpg")[0] == 0
    out = Image.open(tmp_path / "s.jpg")
    assert "exif" not in out.info and "xmp" not in out.info and out.info["icc_profile"] == SRGB_ICC


def test_api_decode_gives_metadata_in_info(tiny):
    data = tiny.encode_image(Image.open(io.BytesIO(_tagged_png())))
    out = tiny.decode(data)
    assert out.info["icc_profile"] == SRGB_ICC and out.info["xmp"] == XMP
    assert out.info["exif"][:10] in (b"Exif\0\0II*\0", b"Exif\0\0MM\0*")
    assert "exif" not in tiny.decode(tiny.encode_image(Image.open(io.BytesIO(_tagged_png())), strip=True)).info


def test_pillow_plugin_exposes_mode_and_metadata(tiny, tmp_path):
    rgba = Image.fromarray(np.dstack([rgb_image(8, 12), disc_alpha(8, 12)]))
    rgba.info.update(icc_profile=SRGB_ICC, exif=exif_block(), xmp=XMP)
    rgba.save(tmp_path / "a.vq")
    with Image.open(tmp_path / "a.vq") as im:
        assert (im.format, im.mode, im.size) == ("VQ", "RGBA", (12, 8))
        assert im.info["icc_profile"] == SRGB_ICC and im.info["xmp"] == XMP
        assert im.getexif()[ExifTags.Base.ImageDescription] == "vqcodec test"
        im.load()
        assert np.array_equal(np.asarray(im)[..., 3], disc_alpha(8, 12))
    rgba.save(tmp_path / "s.vq", strip=True, exif=exif_block(description="replaced"))
    with Image.open(tmp_path / "s.vq") as im:
        assert "exif" not in im.info and "xmp" not in im.info
    rgba.save(tmp_path / "r.vq", exif=exif_block(description="replaced"))
    with Image.open(tmp_path / "r.vq") as im:
        assert im.getexif()[ExifTags.Base.ImageDescription] == "replaced"
    with pytest.raises(ValueError, match="alpha"):
        rgba.save(tmp_path / "e.vq", alpha="error")


def test_alpha_output_needs_a_format_with_alpha(cli_run, tmp_path):
    Image.fromarray(np.dstack([rgb_image(8, 8), disc_alpha(8, 8)])).save(tmp_path / "a.png")
    assert cli_run("encode", "a.png", "-o", "a.vq")[0] == 0
    for name in ("a.jpg", "a.bmp", "a.ppm"):
        code, _, err = cli_run("decode", "a.vq", "-o", name)
        assert code == 1 and "alpha" in one_line(err) and not (tmp_path / name).exists()
    for name in ("b.png", "b.webp", "b.tif"):
        assert cli_run("decode", "a.vq", "-o", name)[0] == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / name).convert("RGBA"))[..., 3], disc_alpha(8, 8))


# ------------------------------------------------------------------------------------- the alpha plane
ALPHA_PLANES = {
    "opaque": np.full((9, 10), 255, np.uint8),
    "transparent": np.zeros((9, 10), np.uint8),
    "disc": disc_alpha(40, 56),
    "random": np.random.default_rng(2).integers(0, 256, (17, 23)).astype(np.uint8),
    "gradient": np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1)),
    "one pixel": np.array([[7]], np.uint8),
}


@pytest.mark.parametrize("name", sorted(ALPHA_PLANES))
def test_alpha_coding_is_exact(name):
    a = ALPHA_PLANES[name]
    coding, data = encode_alpha(a)
    payload = bytes([coding]) + data
    assert np.array_equal(decode_alpha(payload, a.shape[1], a.shape[0]), a)
    if (a == a.flat[0]).all():
        assert coding == AlphaCoding.CONSTANT and data == bytes([a.flat[0]])
    for other in (AlphaCoding.LZMA2, AlphaCoding.LZMA2_LEFT, AlphaCoding.LZMA2_UP):  # every coding decodes
        import lzma

        from vqcodec.image.alpha import _residuals

        stream = lzma.compress(_residuals(a, other).tobytes(), format=lzma.FORMAT_RAW,
                               filters=[{"id": lzma.FILTER_LZMA2, "dict_size": dictionary_size(*a.shape[::-1])}])
        assert np.array_equal(decode_alpha(bytes([other]) + stream, a.shape[1], a.shape[0]), a)


def test_damaged_alpha_plane_is_a_format_error():
    a = ALPHA_PLANES["disc"]
    coding, data = encode_alpha(a)
    good = bytes([coding]) + data
    for bad in (good[:-1], good[:3], good + b"\0", bytes([coding]) + b"\0", bytes([9]) + data, b"\0", b"\0\1\2"):
        with pytest.raises(VQFormatError):
            decode_alpha(bad, 56, 40)
    with pytest.raises(VQFormatError, match="more than"):
        decode_alpha(good, 56, 39)
    with pytest.raises(VQFormatError, match="ends after"):
        decode_alpha(good, 56, 41)
    assert dictionary_size(1, 1) == 4096 and dictionary_size(8192, 8192) == 1 << 26


_M = ModelComponent("vqvae", "m", b"\1" * 8)


def _file(layout: int, extra: list[Chunk]) -> bytes:
    return write_file(Modality.IMAGE, [_M], ImageGeometry(4, 3, layout), [[b""]], extra)


def test_container_rules_for_alpha():
    opaque = alpha_plane_chunk(AlphaCoding.CONSTANT, b"\xff")
    data = _file(ChannelLayout.RGBA, [opaque])
    f = read_file(data)
    assert f.geometry.channel_layout is ChannelLayout.RGBA and any(c.type == ChunkType.ALPHA_PLANE for c in f.chunks)
    assert read_file(truncate(data, 1)) == f  # a layer-0 chunk: truncation keeps it
    for layout, extra in ((ChannelLayout.RGBA, []), (ChannelLayout.RGB, [opaque]), (ChannelLayout.GRAY, [opaque]),
                          (ChannelLayout.GRAY_ALPHA, [opaque, opaque])):
        with pytest.raises(ValueError, match="ALPHA_PLANE"):
            _file(layout, extra)
    with pytest.raises(ValueError):
        alpha_plane_chunk(AlphaCoding.CONSTANT, b"\xff\xff")
    assert [int(v) for v in ChannelLayout] == [0, 1, 2, 3]
    assert [ChannelLayout(v).pil_mode for v in range(4)] == ["RGB", "RGBA", "L", "LA"]


def test_alpha_in_a_real_file_is_checked_before_the_pixels(tiny):
    data = tiny.encode_image(np.dstack([rgb_image(16, 16), disc_alpha(16, 16)]))
    f = read_file(data)
    chunks = [Chunk(c.type, c.layer, c.must_understand,
                    c.payload[:-1] if c.type == ChunkType.ALPHA_PLANE else c.payload) for c in f.chunks]
    others = [c for c in chunks if c.type not in (ChunkType.MODEL, ChunkType.IMAGE_GEOMETRY, ChunkType.STAGE_STREAM,
                                                  ChunkType.ENCODER)]
    bad = write_file(Modality.IMAGE, f.components, f.geometry, [f.streams(k) for k in range(1, f.layers + 1)], others)
    with pytest.raises(VQFormatError, match="alpha"):
        tiny.decode(bad)
