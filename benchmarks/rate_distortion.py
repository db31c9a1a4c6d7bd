#!/usr/bin/env python
"""Rate-distortion benchmark: vqcodec against JPEG, WebP and AVIF, and JPEG XL and HEIC (HEVC intra) where
their Pillow plugins (pillow-jxl-plugin, pillow-heif) are installed.

    python benchmarks/rate_distortion.py                       # every codec, bundled Kodak, benchmarks/results/
    python benchmarks/rate_distortion.py --codecs jpeg,webp,avif
    python benchmarks/rate_distortion.py --quick               # 3 images, 2 qualities: smoke run (temp dir)
    python benchmarks/rate_distortion.py --dataset DIR --out DIR
    python benchmarks/rate_distortion.py --codecs jpegxl,heic --reuse benchmarks/results   # add two anchors
    python benchmarks/rate_distortion.py --report-only --reuse DIR --out DIR   # tables and plot from records

For each codec and quality setting, every image is encoded to a complete file and decoded; bpp is
len(file) * 8 / (H * W), headers included. PSNR (RGB, 8-bit) and MS-SSIM (pytorch_msssim, data_range=255)
are computed per image and averaged over the images, as CompressAI does; MS-SSIM in dB is
-10 log10(1 - mean MS-SSIM). Encode and decode wall times (time.perf_counter) are averaged per image.

Outputs in --out: rd/<dataset>/<codec>.json (CompressAI results format, a folder of their own so that
`python -m compressai.utils.plot -m psnr-rgb -f OUT/rd/<dataset>/*.json` reads them; each also keeps the
per-image bpp/PSNR/MS-SSIM under "per_image"), bd_rate.json (BD-rates over the curves' overlap, over the
fixed PSNR window 26..31.5 dB and over the high-quality PSNR window 30..36 dB, and per-image BD-rates against
WebP over the fixed window), rd_curves.png (both windows marked), results.md (a table per window).
vqcodec is used only through its installed public API (`import vqcodec`), not through this checkout.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # sibling helper modules, also when imported rather than run
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from image_codecs import BASELINE_KEYS, PLUGIN_PACKAGES, Codec, baseline_codecs, load_vqcodec  # noqa: E402
from metrics import FIXED_PSNR_WINDOW, MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_db, psnr  # noqa: E402
from rd_report import (  # noqa: E402
    BD_WINDOWS,
    bd_rate_document,
    bd_rate_entries,
    per_image_bd_rates,
    curve_from_record,
    curve_from_reference,
    plot_rd,
    write_json,
    write_markdown,
)
from reference_curves import REFERENCE_CURVES  # noqa: E402

log = logging.getLogger("rate_distortion")

DEFAULT_DATASET = HERE.parent / "data" / "kodak"
DEFAULT_OUT = HERE / "results"
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
QUICK_IMAGES = 3
# The order of codecs in the outputs: vqcodec, then the baselines, then anything else.
CODEC_ORDER = ("vqcodec", *BASELINE_KEYS)


def records_folder(out: Path, dataset: str) -> Path:
    """Where the per-codec CompressAI-format records of `dataset` go in an output folder: nothing else is there."""
    return out / "rd" / dataset


@dataclass(frozen=True)
class TestImage:
    """One dataset image: pil is RGB, pixels is the same as (H, W, 3) uint8."""

    name: str
    pil: Image.Image
    pixels: np.ndarray


def load_images(folder: Path, limit: int | None = None) -> list[TestImage]:
    """The images of `folder` (sorted by file name, converted to RGB), at most `limit` of them."""
    if not folder.is_dir():
        raise SystemExit(f"rate_distortion.py: error: dataset folder {folder} does not exist; pass --dataset DIR")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SystemExit(
            f"rate_distortion.py: error: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}"
        )
    images = []
    for p in files[:limit]:
        with Image.open(p) as im:
            rgb = im.convert("RGB")
        if min(rgb.size) < MS_SSIM_MIN_SIDE:
            raise SystemExit(
                f"rate_distortion.py: error: {p.name} is {rgb.width}x{rgb.height}; MS-SSIM needs at least "
                f"{MS_SSIM_MIN_SIDE} px on each side"
            )
        images.append(TestImage(p.name, rgb, np.asarray(rgb)))
    return images


def measure(codec: Codec, images: Sequence[TestImage], qualities: Sequence[int], bar: tqdm) -> dict[str, Any]:
    """Encode/decode every image at every quality; returns the codec's record in CompressAI's format, with
    the per-image bpp, PSNR and MS-SSIM under "per_image" (one list per quality, one value per image)."""
    keys = ("bpp", "psnr-rgb", "ms-ssim", "encoding_time", "decoding_time")
    means: dict[str, list[float]] = {k: [] for k in keys}
    per_image: dict[str, Any] = {"images": [img.name for img in images], "bpp": [], "psnr-rgb": [], "ms-ssim": []}
    qualities = sorted(qualities)
    for q in qualities:
        bar.set_description(f"{codec.key} q={q}")
        sums = dict.fromkeys(keys, 0.0)
        rows: dict[str, list[float]] = {"bpp": [], "psnr-rgb": [], "ms-ssim": []}
        for img in images:
            t0 = time.perf_counter()
            data = codec.encode(img.pil, q)
            t1 = time.perf_counter()
            decoded = codec.decode(data)
            t2 = time.perf_counter()
            rec = np.asarray(decoded.convert("RGB"))
            if rec.shape != img.pixels.shape:
                raise RuntimeError(
                    f"{codec.key} q={q} decoded {img.name} to shape {rec.shape}, expected {img.pixels.shape}"
                )
            h, w = img.pixels.shape[:2]
            rows["bpp"].append(len(data) * 8.0 / (h * w))
            rows["psnr-rgb"].append(psnr(img.pixels, rec))
            rows["ms-ssim"].append(ms_ssim(img.pixels, rec))
            for k, v in rows.items():
                sums[k] += v[-1]
            sums["encoding_time"] += t1 - t0
            sums["decoding_time"] += t2 - t1
            bar.update(1)
        for k in keys:
            means[k].append(sums[k] / len(images))
        for k, v in rows.items():
            per_image[k].append(v)
    results = {
        "quality": list(qualities),
        "bpp": means["bpp"],
        "psnr-rgb": means["psnr-rgb"],
        "ms-ssim": means["ms-ssim"],
        "ms-ssim-db": [ms_ssim_db(v) for v in means["ms-ssim"]],
        "encoding_time": means["encoding_time"],
        "decoding_time": means["decoding_time"],
    }
    return {"name": codec.name, "description": codec.description, "results": results, "per_image": per_image}


def select_codecs(spec: str | None, parser: argparse.ArgumentParser) -> list[Codec]:
    """Codecs named in `spec` (comma list), or by default vqcodec (if its API is there) and every baseline."""
    baselines = baseline_codecs()
    if spec is None:
        vq, reason = load_vqcodec()
        if vq is None:
            log.warning("skipping vqcodec: %s", reason)
        return ([vq] if vq else []) + list(baselines.values())
    chosen: list[Codec] = []
    for key in dict.fromkeys(k.strip().lower() for k in spec.split(",") if k.strip()):
        if key == "vqcodec":
            vq, reason = load_vqcodec()
            if vq is None:
                parser.error(f"cannot measure vqcodec: {reason}")
            chosen.append(vq)
        elif key in baselines:
            chosen.append(baselines[key])
        elif key in PLUGIN_PACKAGES:
            parser.error(f"{key} needs a Pillow plugin that is not installed: pip install {PLUGIN_PACKAGES[key]} "
                         "(or pip install -e '.[bench]')")
        elif key in BASELINE_KEYS:
            parser.error(f"this Pillow {PIL.__version__} build cannot write {key}; use a Pillow wheel that includes it")
        else:
            parser.error(f"unknown codec {key!r}; choose from vqcodec, {', '.join(BASELINE_KEYS)}")
    if not chosen:
        parser.error("--codecs names no codec")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rate_distortion.py",
        description="Rate-distortion curves of vqcodec and of JPEG/WebP/AVIF (Pillow), JPEG XL and HEIC "
        "(Pillow plugins) on an image folder.",
    )
    p.add_argument(
        "--codecs",
        help=f"comma list from vqcodec,{','.join(BASELINE_KEYS)} (default: all available; vqcodec is skipped "
        "with a warning if its API is missing; jpegxl and heic need pillow-jxl-plugin and pillow-heif)",
    )
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="folder of images (default: bundled Kodak)")
    p.add_argument("--reuse", type=Path, default=None,
                   help="folder of an earlier run on the same images: the curves of codecs not in --codecs are read "
                        "from its JSON files instead of re-measured (e.g. re-measure vqcodec alone against AVIF)")
    p.add_argument(
        "--out",
        type=Path,
        help=f"output folder (default: {DEFAULT_OUT.relative_to(HERE.parent)}; with --quick a new temporary folder)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for vqcodec and MS-SSIM (default: 1; single-thread times are reproducible, "
        "and OpenMP threads slow down badly on cores shared with other jobs)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite bd_rate.json, rd_curves.png and results.md in --out from the records of "
        "--reuse DIR (all of its codecs)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: first {QUICK_IMAGES} images, two qualities per codec",
    )
    return p


def reuse_records(folder: Path, measured: set[str], dataset: str, images: int) -> dict[str, dict[str, Any]]:
    """Records (CompressAI-format JSON) of codecs not measured now, from an earlier run's output folder on the
    same dataset and image count; a record of another dataset is refused."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        key = path.stem
        if key in measured or key == "bd_rate":
            continue
        record = json.loads(path.read_text())
        if "results" not in record:
            continue
        ds = record.get("dataset", {})
        if ds.get("name") != dataset or ds.get("images") != images:
            raise SystemExit(f"{path}: measured on {ds.get('name')} ({ds.get('images')} images), not on {dataset} "
                             f"({images} images); --reuse needs a run on the same images")
        found[key] = record
    return found


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    if args.report_only:
        if args.reuse is None:
            parser.error("--report-only needs --reuse DIR, the run whose records to report")
        if args.codecs:
            parser.error("--report-only measures nothing; leave out --codecs")
        codecs: list[Codec] = []
    else:
        codecs = select_codecs(args.codecs, parser)
    dataset = args.dataset.resolve()
    images = load_images(dataset, QUICK_IMAGES if args.quick else None)
    if args.out is not None:
        out = args.out.resolve()
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="vqcodec-rd-quick-"))
    else:
        out = DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)

    plan = [(c, c.quick_qualities if args.quick else c.qualities) for c in codecs]
    log.info(
        "%d images from %s; codecs: %s; writing to %s",
        len(images), dataset, ", ".join(f"{c.key} {list(q)}" for c, q in plan), out,
    )

    records: dict[str, dict[str, Any]] = {}
    reused = {}
    if args.reuse:  # an earlier run's records folder, or (older layout) the output folder itself
        reuse_from = records_folder(args.reuse, dataset.name)
        reuse_from = reuse_from if reuse_from.is_dir() else args.reuse.resolve()
        reused = reuse_records(reuse_from, {c.key for c in codecs}, dataset.name, len(images))
        if args.report_only and not reused:
            parser.error(f"--reuse {args.reuse}: no records of {dataset.name} ({len(images)} images) there")
    with tqdm(total=sum(len(q) for _, q in plan) * len(images), file=sys.stderr, unit="img", disable=not plan) as bar:
        for codec, qualities in plan:
            records[codec.key] = measure(codec, images, qualities, bar)

    written = []
    rd_dir = records_folder(out, dataset.name)
    rd_dir.mkdir(parents=True, exist_ok=True)
    measured_at = f"{_dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    for key, record in records.items():
        record["dataset"] = {"name": dataset.name, "images": len(images)}
        record["measured"] = measured_at
        written.append(write_json(rd_dir / f"{key}.json", record))
    for key, record in reused.items():  # copied as they were measured, beside the new curves
        records[key] = record
        path = rd_dir / f"{key}.json"
        if args.report_only and path.resolve() == (reuse_from / f"{key}.json").resolve():
            continue  # reporting in place: the record is already there
        written.append(write_json(path, record))
    rank = {k: i for i, k in enumerate(CODEC_ORDER)}
    records = dict(sorted(records.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))

    on_kodak = dataset == DEFAULT_DATASET.resolve()
    references = REFERENCE_CURVES if on_kodak else ()
    curves = [curve_from_record(k, r) for k, r in records.items()] + [curve_from_reference(r) for r in references]
    bd = bd_rate_entries(curves, BD_WINDOWS)
    # two points per curve in a quick run: only the pchip variant can be computed
    per_image = per_image_bd_rates(records, window=FIXED_PSNR_WINDOW, method="pchip" if args.quick else "cubic")
    written.append(write_json(out / "bd_rate.json", bd_rate_document(bd, per_image, BD_WINDOWS)))

    title = f"{dataset.name}: {len(images)} images" + (" (quick smoke run)" if args.quick else "")
    written.append(plot_rd(out / "rd_curves.png", curves, title, BD_WINDOWS))

    command = " ".join(["python benchmarks/rate_distortion.py", *(sys.argv[1:] if argv is None else argv)])
    header = [
        f"# Rate-distortion on {dataset.name} ({len(images)} images)",
        "",
        f"{'Report written' if args.report_only else 'Measured'} {_dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} "
        f"with `{command}` "
        f"(Python {platform.python_version()}, Pillow {PIL.__version__}, torch {torch.__version__} with "
        f"{args.threads} thread(s), {os.cpu_count()} CPU cores).",
        "",
        "- bpp: bytes of the complete encoded file (headers included) x 8 / pixels, averaged over images.",
        "- PSNR: RGB PSNR of the 8-bit decoded image, mean of the per-image PSNRs (CompressAI's convention).",
        "- MS-SSIM: pytorch_msssim, data_range=255, mean over images; MS-SSIM (dB) = -10 log10(1 - mean MS-SSIM).",
        "- encode/decode: wall time per image (time.perf_counter), including Pillow's file (de)serialisation.",
    ]
    if reused:
        header += ["", f"Curves of {', '.join(sorted(reused))} were not re-measured by this command: they are the records "
                       f"of earlier runs on the same images, read from `{args.reuse}` (measured: "
                       + ", ".join(f"{k} {r.get('measured', 'date not recorded')}" for k, r in sorted(reused.items()))
                       + ")."]
        missing = sorted(k for k, r in reused.items() if "per_image" not in r)
        if missing:
            header += ["", f"Records without per-image data (measured before it was kept): {', '.join(missing)}; "
                           "they get no per-image BD-rate."]
    header += ["", "Codecs: " + "; ".join(f"{r.get('name', k)}: {r.get('description', '?')}" for k, r in records.items())
               + "."]
    if args.quick:
        header += ["", f"**Quick smoke run** ({QUICK_IMAGES} images, two qualities per codec): not a benchmark result."]
    written.append(write_markdown(out / "results.md", header, records, bd, references, per_image, BD_WINDOWS))

    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
