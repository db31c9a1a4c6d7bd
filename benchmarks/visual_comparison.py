#!/usr/bin/env python
"""Pictures to compare: crops of vqcodec beside JPEG, WebP, AVIF (and JPEG XL, HEIC) at matched file sizes.

    python benchmarks/visual_comparison.py                  # 5 Kodak images x 2 sizes -> benchmarks/results/visual/
    python benchmarks/visual_comparison.py --quick          # 1 image, 1 size, into a temporary folder (smoke run)
    python benchmarks/visual_comparison.py --images kodim05,kodim23:400,90 --bpp 0.3 --out DIR
    python benchmarks/visual_comparison.py --check-browser  # also load the page in headless Chromium

For every image and every target rate (bits per pixel, default 0.25 and 0.5):
  1. vqcodec codes the whole image at the quality whose file comes closest to the target (searched over
     1..vqcodec.max_quality("image") through the public API: `encode_image`, `decode`, `max_quality`;
     the search stops early at a file within 2 % of the target);
  2. every baseline binary-searches its quality setting for the largest file not above vqcodec's file
     (where even its lowest setting is larger, that setting is shown and labelled "above");
  3. the decoded images are cropped at the same place (128 x 128 by default, upscaled 2x by pixel
     repetition so that artefacts stay visible) and set side by side with the original, each crop labelled
     with codec, quality setting, bpp and PSNR; bpp and PSNR are those of the whole image (bpp from the real
     file bytes, headers included; RGB PSNR on the 8-bit decoded image, benchmarks/metrics.py).

Baselines and their fixed settings are those of the rate-distortion benchmark (benchmarks/image_codecs.py):
JPEG (libjpeg-turbo, 4:2:0), WebP (method 6), AVIF (aom, speed 4), and JPEG XL / HEIC when pillow-jxl-plugin /
pillow-heif are installed.

Outputs in --out: one PNG grid per (image, target), `index.html` (self-contained, relative links to the PNGs)
and `visual.json` (every number on the page). `--check-browser` loads the page in headless Chromium
(`chromium` or `chromium-browser` on PATH; Debian: `apt-get install -y chromium`), checks that a non-blank
screenshot comes back and that every <img> the page references exists; without Chromium it says so and
skips.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # sibling helper modules, also when imported rather than run
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from headless_page import browser_check_step, check_not_blank, find_chromium, screenshot  # noqa: E402,F401
from image_codecs import Codec, PillowCodec, baseline_codecs, load_vqcodec  # noqa: E402
from metrics import psnr  # noqa: E402

DATASET = HERE.parent / "data" / "kodak"
DEFAULT_OUT = HERE / "results" / "visual"
DEFAULT_IMAGES = ("kodim01", "kodim05", "kodim15", "kodim20", "kodim23")
DEFAULT_BPP = (0.25, 0.5)
QUICK_IMAGE = "kodim23"
QUICK_BPP = 0.5
# Crop centres (x, y) chosen by eye for the default images: fine texture next to edges and flat areas.
DEFAULT_CENTRES: dict[str, tuple[int, int]] = {
    "kodim01": (296, 106),  # window, shutter, stone wall
    "kodim05": (576, 346),  # wheel spokes and tyres
    "kodim15": (496, 136),  # eye in face paint
    "kodim20": (296, 256),  # lettering on the fuselage
    "kodim23": (496, 186),  # parrot's eye and feathers
}
# Quality search range of each baseline (Pillow's / the plugins' scales; JPEG XL's 100 means lossless, which
# the plugin refuses without lossless=True). Well above the rates compared here.
QUALITY_RANGES: dict[str, tuple[int, int]] = {
    "jpeg": (1, 95),
    "webp": (0, 100),
    "avif": (0, 100),
    "jpegxl": (0, 99),
    "heic": (0, 100),
}
BASELINE_ORDER = ("jpeg", "webp", "avif", "jpegxl", "heic")
LABEL_HEIGHT = 46
HEADER_HEIGHT = 30
GAP = 6
COLUMNS = 4


@dataclass
class Coded:
    """One codec's file for one image: the setting, size, quality and the decoded pixels.

    psnr is of the whole image, crop_psnr of the crop shown; above_target: even the codec's lowest setting
    gave a larger file than vqcodec's; encodes and seconds: what the codec's searches on this image had cost
    so far (files encoded, encoding seconds), for information.
    """

    codec: str
    name: str
    quality: int
    nbytes: int
    bpp: float
    psnr: float
    crop_psnr: float
    above_target: bool = False
    encodes: int = 0
    seconds: float = 0.0
    pixels: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("pixels")
        return d


@dataclass(frozen=True)
class Panel:
    """One comparison: an image at one target rate, and its PNG grid."""

    image: str
    target_bpp: float
    crop: tuple[int, int, int]  # x, y, side
    png: str
    coded: tuple[Coded, ...]


def parse_images(spec: str | None, quick: bool) -> list[tuple[str, tuple[int, int] | None]]:
    """`kodim05,kodim23:400,90` -> [("kodim05", None), ("kodim23", (400, 90))]: image names, each with the
    top-left corner of its crop if one is given."""
    if spec is None:
        return [(n, None) for n in ([QUICK_IMAGE] if quick else DEFAULT_IMAGES)]
    out: list[tuple[str, tuple[int, int] | None]] = []
    # split on commas that are not inside a crop: "a,b:1,2,c" -> a | b:1,2 | c
    tokens = [t.strip() for t in spec.split(",")]
    i = 0
    while i < len(tokens):
        name = tokens[i]
        if not name:
            i += 1
            continue
        if ":" in name:
            stem, x = name.split(":", 1)
            if i + 1 >= len(tokens):
                raise ValueError(f"--images: {name!r} needs a crop corner as NAME:X,Y")
            try:
                crop = (int(x), int(tokens[i + 1]))
            except ValueError as exc:
                raise ValueError(f"--images: bad crop corner in {name},{tokens[i + 1]} (use NAME:X,Y)") from exc
            out.append((Path(stem).stem, crop))
            i += 2
        else:
            out.append((Path(name).stem, None))
            i += 1
    if not out:
        raise ValueError("--images names no image")
    return out


def find_image(folder: Path, stem: str) -> Path:
    """The file of `folder` whose name without extension is `stem`."""
    for ext in (".png", ".ppm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp"):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"no image {stem}.png (or .ppm/.bmp/.tif/.jpg/.webp) in {folder}")


def detailed_crop(pixels: np.ndarray, side: int, stride: int = 32) -> tuple[int, int]:
    """The top-left corner of the `side` x `side` window (on a `stride` grid) with the most gradient energy."""
    g = pixels.astype(np.float32).mean(axis=2)
    energy = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    h, w = energy.shape
    best, corner = -1.0, (0, 0)
    for y in range(0, max(1, h - side + 1), stride):
        for x in range(0, max(1, w - side + 1), stride):
            e = float(energy[y:y + side, x:x + side].mean())
            if e > best:
                best, corner = e, (x, y)
    return corner


def _largest_not_above(size_of: Callable[[int], int], lo: int, hi: int, limit: int) -> tuple[int, bool]:
    """Binary search for the largest setting in lo..hi whose size is <= limit (size grows with the setting).

    Returns (setting, above): above is True when even `lo` gives more than `limit` (then setting is lo).
    `hi` itself is only tried when the search gets there (high settings are the slow ones to encode). About
    log2(hi - lo) + 1 encodes: 7-8 for a 0..100 scale.
    """
    if size_of(lo) > limit:
        return lo, True
    a, b = lo, hi + 1  # invariant: size(a) <= limit, and size(b) > limit or b is past the range
    while b - a > 1:
        mid = (a + b) // 2
        if size_of(mid) <= limit:
            a = mid
        else:
            b = mid
    return a, False


def _closest_quality(size_of: Callable[[int], int], lo: int, hi: int, target: int, tol: float = 0.02) -> int:
    """A setting in lo..hi whose size is closest to `target` (size grows with the setting).

    Regula falsi on the size (vqcodec's file size grows about linearly with its quality setting) inside a
    shrinking bracket, with a bisection whenever an interpolation step fails to halve it, stopping early at a
    size within `tol` of the target: about 5 encodes on a 1..100 scale, where bisection needs 7-8 (vqcodec's
    encoder is the slow one here). Otherwise the closer of the final bracket's two ends.
    """
    s_lo = size_of(lo)
    if s_lo >= target or lo == hi:
        return lo
    s_hi = size_of(hi)
    if s_hi <= target:
        return hi
    a, b, sa, sb = lo, hi, s_lo, s_hi
    bisect = False
    while b - a > 1:
        if bisect or sb <= sa:
            q = (a + b) // 2
        else:
            q = min(max(a + int(round((target - sa) / (sb - sa) * (b - a))), a + 1), b - 1)
        size = size_of(q)
        if abs(size - target) <= tol * target:
            return q
        width = b - a
        if size <= target:
            a, sa = q, size
        else:
            b, sb = q, size
        bisect = (b - a) > width // 2 and not bisect
    return min((a, b), key=lambda q: abs(size_of(q) - target))


class _Cache:
    """Encodes of one codec on one image, by quality setting (the searches revisit settings)."""

    def __init__(self, codec: Codec, img: Image.Image) -> None:
        self.codec, self.img = codec, img
        self.files: dict[int, bytes] = {}
        self.seconds = 0.0

    def data(self, q: int) -> bytes:
        if q not in self.files:
            t0 = time.perf_counter()
            self.files[q] = self.codec.encode(self.img, q)
            self.seconds += time.perf_counter() - t0
        return self.files[q]

    def size(self, q: int) -> int:
        return len(self.data(q))


def _decode(codec: Codec, data: bytes, shape: tuple[int, ...], key: str) -> np.ndarray:
    rec = np.asarray(codec.decode(data).convert("RGB"))
    if rec.shape != shape:
        raise RuntimeError(f"{key} decoded to shape {rec.shape}, expected {shape}")
    return rec


def _coded(key: str, codec: Codec, cache: _Cache, q: int, src: np.ndarray, crop: tuple[int, int, int],
           above: bool = False) -> Coded:
    data = cache.data(q)
    rec = _decode(codec, data, src.shape, key)
    x, y, s = crop
    h, w = src.shape[:2]
    return Coded(
        codec=key, name=codec.name, quality=int(q), nbytes=len(data), bpp=len(data) * 8.0 / (h * w),
        psnr=psnr(src, rec), crop_psnr=psnr(src[y:y + s, x:x + s], rec[y:y + s, x:x + s]),
        above_target=above, encodes=len(cache.files), seconds=cache.seconds, pixels=rec,
    )


# ------------------------------------------------------------------------------------------- drawing

def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable default font
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def tile_label(c: Coded | None) -> tuple[str, str]:
    """The two label lines of a tile: codec and setting; bpp and PSNR (None: the original)."""
    if c is None:
        return "original", "lossless PNG"
    q = f" q={c.quality}" if c.codec != "vqcodec" else f" quality {c.quality}"
    flag = ", over target" if c.above_target else ""
    return f"{c.name}{q}{flag}", f"{c.bpp:.3f} bpp   PSNR {c.psnr:.2f} dB"


def draw_grid(src: np.ndarray, coded: Sequence[Coded], crop: tuple[int, int, int], scale: int, title: str) -> Image.Image:
    """The original's crop and every codec's crop, upscaled `scale` x by pixel repetition, labelled, in a grid."""
    x, y, s = crop
    tiles: list[tuple[np.ndarray, Coded | None]] = [(src, None)] + [(c.pixels, c) for c in coded]  # type: ignore[misc]
    side = s * scale
    cols = min(COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    width = cols * side + (cols + 1) * GAP
    height = HEADER_HEIGHT + rows * (side + LABEL_HEIGHT + GAP) + GAP
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    draw.text((GAP, 7), title, fill=(0, 0, 0), font=_font(16))
    big, small = _font(17), _font(15)
    for i, (pixels, c) in enumerate(tiles):
        r, col = divmod(i, cols)
        px = GAP + col * (side + GAP)
        py = HEADER_HEIGHT + r * (side + LABEL_HEIGHT + GAP)
        part = Image.fromarray(np.ascontiguousarray(pixels[y:y + s, x:x + s]))
        grid.paste(part.resize((side, side), Image.Resampling.NEAREST), (px, py))
        line1, line2 = tile_label(c)
        colour = (170, 0, 0) if c is not None and c.codec == "vqcodec" else (0, 0, 0)
        draw.text((px + 2, py + side + 3), line1, fill=colour, font=big)
        draw.text((px + 2, py + side + 24), line2, fill=(40, 40, 40), font=small)
    return grid


# -------------------------------------------------------------------------------------------- output

def write_html(out: Path, panels: Sequence[Panel], meta: dict[str, Any]) -> Path:
    """index.html: every grid (relative links) with a table of its numbers; no external resources."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>vqcodec: pictures to compare at matched file sizes</title>",
        "<style>body{font-family:sans-serif;margin:16px;max-width:1700px}"
        "img{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}"
        "table{border-collapse:collapse;margin:6px 0 28px}td,th{border:1px solid #bbb;padding:2px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}tr.vq{color:#a00}</style>",
        "</head><body>",
        f"<h1>vqcodec beside {esc(meta['baselines'])} at matched file sizes</h1>",
        f"<p>{esc(meta['how'])}</p>",
        f"<p>Codecs: {esc('; '.join(meta['codecs']))}.</p>",
        f"<p>Made with <code>{esc(meta['command'])}</code> on {esc(meta['date'])}.</p>",
    ]
    for image in dict.fromkeys(p.image for p in panels):
        parts.append(f'<h2 id="{esc(image)}">{esc(image)}</h2>')
        for p in (q for q in panels if q.image == image):
            x, y, s = p.crop
            caption = f"{p.image}, target {p.target_bpp:g} bpp, crop {s}x{s} at ({x}, {y})"
            parts += [
                f'<h3>{esc(caption)}</h3>',
                f'<p><img src="{esc(p.png)}" alt="{esc(caption)}"></p>',
                "<table><tr><th>codec</th><th>setting</th><th>bytes</th><th>bpp</th><th>PSNR (dB)</th>"
                "<th>PSNR of the crop (dB)</th></tr>",
            ]
            for c in p.coded:
                above = " (over target: the codec's smallest file)" if c.above_target else ""
                parts.append(
                    f'<tr class="{"vq" if c.codec == "vqcodec" else ""}"><td>{esc(c.name)}</td><td>{c.quality}</td>'
                    f"<td>{c.nbytes}</td><td>{c.bpp:.3f}{esc(above)}</td><td>{c.psnr:.2f}</td>"
                    f"<td>{c.crop_psnr:.2f}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts) + "\n")
    return path


class _ImgSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources += [v for k, v in attrs if k == "src" and v]


def referenced_images(page: Path) -> list[str]:
    """The src of every <img> in an HTML file."""
    parser = _ImgSources()
    parser.feed(page.read_text())
    return parser.sources


def missing_images(page: Path) -> list[str]:
    """The <img> sources of `page` that do not exist as files next to it (relative links only)."""
    return [s for s in referenced_images(page) if "://" in s or not (page.parent / s).is_file()]


def check_in_browser(page: Path, chromium: str, timeout: float = 120.0) -> dict[str, Any]:
    """Loads `page` in headless Chromium and checks the screenshot: raises RuntimeError if it is missing or blank,
    or if the page references images that do not exist. Returns what was checked."""
    missing = missing_images(page)
    if missing:
        raise RuntimeError(f"{page} references images that do not exist: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="vqcodec-visual-shot-") as tmp:
        shown = check_not_blank(screenshot(page, chromium, Path(tmp), "1400,2000", timeout))
    return {"browser": chromium, **shown, "images": len(referenced_images(page))}


# ---------------------------------------------------------------------------------------------- main

def select_baselines(spec: str | None) -> dict[str, PillowCodec]:
    """The baselines to show: those named in `spec` (comma list), or every one this installation has."""
    available = baseline_codecs()
    if spec is None:
        return {k: available[k] for k in BASELINE_ORDER if k in available}
    chosen = {}
    for key in (k.strip().lower() for k in spec.split(",") if k.strip()):
        if key not in available:
            raise ValueError(f"codec {key!r} is not available here; available: {', '.join(available)}")
        chosen[key] = available[key]
    return chosen


def compare(
    stem: str,
    crop_at: tuple[int, int] | None,
    targets: Sequence[float],
    vq: Codec,
    top_quality: int,
    baselines: dict[str, PillowCodec],
    out: Path,
    side: int,
    scale: int,
    dataset: Path,
    say: Callable[[str], None],
) -> list[Panel]:
    """Every target rate of one image: the codecs' files, the grid PNGs; returns the panels."""
    with Image.open(find_image(dataset, stem)) as im:
        img = im.convert("RGB")
    src = np.asarray(img)
    h, w = src.shape[:2]
    if side > min(h, w):
        raise ValueError(f"crop side {side} is larger than {stem} ({w}x{h})")
    if crop_at is not None:
        x, y = crop_at
    elif stem in DEFAULT_CENTRES:
        x, y = DEFAULT_CENTRES[stem][0] - side // 2, DEFAULT_CENTRES[stem][1] - side // 2
    else:
        x, y = detailed_crop(src, side)
    x, y = min(max(0, x), w - side), min(max(0, y), h - side)
    crop = (x, y, side)
    vq_cache = _Cache(vq, img)
    caches = {k: _Cache(c, img) for k, c in baselines.items()}
    panels = []
    for target in targets:
        target_bytes = int(round(target * h * w / 8))
        q = _closest_quality(vq_cache.size, 1, top_quality, target_bytes)
        coded = [_coded("vqcodec", vq, vq_cache, q, src, crop)]
        limit = coded[0].nbytes
        for key, codec in baselines.items():
            lo, hi = QUALITY_RANGES.get(key, (0, 100))
            bq, above = _largest_not_above(caches[key].size, lo, hi, limit)
            coded.append(_coded(key, codec, caches[key], bq, src, crop, above))
        title = (f"{stem} ({w}x{h}): crop {side}x{side} at ({x}, {y}), shown {scale}x; files matched to vqcodec's "
                 f"{limit} bytes (target {target:g} bpp)")
        png = f"{stem}_{target:g}bpp.png"
        draw_grid(src, coded, crop, scale, title).save(out / png, optimize=True)
        say("  " + png + ": " + ", ".join(f"{c.name} q={c.quality} {c.bpp:.3f} bpp {c.psnr:.2f} dB" for c in coded))
        panels.append(Panel(stem, float(target), crop, png, tuple(coded)))
    return panels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visual_comparison.py",
        description="Crops of vqcodec beside JPEG/WebP/AVIF (and JPEG XL, HEIC) at matched file sizes: PNG grids "
        "and an HTML page.",
    )
    p.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT.relative_to(HERE.parent)}; "
                   "with --quick a new temporary folder)")
    p.add_argument("--images", help=f"comma list of image names in --dataset, each optionally NAME:X,Y for the crop's "
                   f"top-left corner (default {','.join(DEFAULT_IMAGES)}; without a corner: centred on a detail "
                   "chosen by eye for these five, else the window with the most gradient energy)")
    p.add_argument("--bpp", help="comma list of target rates in bits per pixel (default "
                   f"{','.join(map(str, DEFAULT_BPP))}); vqcodec takes the quality closest to each")
    p.add_argument("--codecs", help="comma list of baselines (default: every one available of "
                   f"{','.join(BASELINE_ORDER)})")
    p.add_argument("--crop", type=int, default=128, help="side of the square crop in source pixels (default 128: with 2x, 256 px tiles; the committed page stays near 2 MB)")
    p.add_argument("--scale", type=int, default=2, help="upscaling factor, pixel repetition (default 2)")
    p.add_argument("--dataset", type=Path, default=DATASET, help="folder of the images (default: bundled Kodak)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for vqcodec (default 1)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_IMAGE} at {QUICK_BPP} bpp only, into a temporary folder unless --out")
    p.add_argument("--check-browser", action="store_true",
                   help="load the page in headless Chromium and check the screenshot is not blank (skipped with "
                   "a note when chromium is not on PATH)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.crop < 16 or args.scale < 1 or args.threads < 1:
        parser.error("--crop must be >= 16, --scale and --threads >= 1")
    try:
        images = parse_images(args.images, args.quick)
        targets = [float(t) for t in args.bpp.split(",")] if args.bpp else ([QUICK_BPP] if args.quick else list(DEFAULT_BPP))
        baselines = select_baselines(args.codecs)
    except ValueError as exc:
        parser.error(str(exc))
    if any(not 0 < t < 24 for t in targets):
        parser.error("--bpp targets must be in (0, 24)")
    vq, reason = load_vqcodec()
    if vq is None:
        print(f"visual_comparison.py: error: {reason}", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(args.threads)
    if args.out is not None:
        out = args.out.resolve()
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="vqcodec-visual-quick-"))
    else:
        out = DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    top = int(vq.api.max_quality("image"))
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr, paths on stdout
    say(f"{len(images)} image(s) x {len(targets)} size(s); vqcodec 1..{top} against {', '.join(baselines)}; "
        f"writing to {out}")
    t0 = time.perf_counter()
    panels: list[Panel] = []
    for stem, crop_at in images:
        try:
            panels += compare(stem, crop_at, targets, vq, top, baselines, out, args.crop, args.scale,
                              args.dataset.resolve(), say)
        except (FileNotFoundError, ValueError) as exc:
            print(f"visual_comparison.py: error: {exc}", file=sys.stderr)
            return 1
    command = " ".join(["python benchmarks/visual_comparison.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "seconds": round(time.perf_counter() - t0, 1),
        "how": (
            "For each image and target rate, vqcodec codes the whole image at the quality whose file comes closest "
            "to the target; every other codec uses the largest file not above vqcodec's (binary search over its "
            "quality setting; a file marked 'over target' is that codec's smallest, still larger). bpp is the complete "
            "file's bytes x 8 / pixels of the whole image; PSNR is RGB PSNR of the whole 8-bit decoded image (the "
            "table also gives the crop's). Crops are shown at "
            f"{args.scale}x by pixel repetition; the original is on the left of the first row."
        ),
        "codecs": [vq.description] + [c.description for c in baselines.values()],
        "baselines": ", ".join(c.name for c in baselines.values()),
    }
    page = write_html(out, panels, meta)
    summary = {
        **meta,
        "panels": [
            {"image": p.image, "target_bpp": p.target_bpp, "crop": {"x": p.crop[0], "y": p.crop[1], "side": p.crop[2]},
             "scale": args.scale, "png": p.png, "codecs": [c.summary() for c in p.coded]}
            for p in panels
        ],
    }
    (out / "visual.json").write_text(json.dumps(summary, indent=2) + "\n")
    for p in panels:
        print(out / p.png)
    print(page)
    print(out / "visual.json")
    if args.check_browser and browser_check_step(page, check_in_browser, "visual_comparison.py", say):
        return 1
    say(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
