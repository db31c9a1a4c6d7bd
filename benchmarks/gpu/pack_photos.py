"""Pack a training-photo folder small enough to travel to a GPU machine (`benchmarks/gpu/train_image_on_device.sh`).

    python benchmarks/gpu/pack_photos.py --data ../shared/data/photos --out gpu_pack/photos --max-mib 40

Every image of --data (`vqcodec.image.data.list_images`) is written to --out as <its stem>.jpg: 8-bit RGB, JPEG
with 4:4:4 chroma at the highest of QUALITIES (95 first) at which the whole folder fits in --max-mib. A JPEG original
is copied byte for byte where that is no larger than its re-encoding at that quality (the photos' JPEG part already is
quality 95, 4:4:4: re-encoding it would lose detail and save nothing). The sorted names keep their order (checked), so
`--holdout N` of the trainers holds out the same photos as on the original folder. MANIFEST.csv of --data (sources and
licences) is copied along. PACK.json records the settings and each file's PSNR.

Prints the folder's total size and the mean PSNR (dB, 8-bit RGB, over the re-encoded photos; copied ones are exact)
of the packed photos against the originals. The device tool carries at most 64 MiB together with the working tree,
so --max-mib is what that leaves (see the script's header).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vqcodec.image.data import list_images

QUALITIES = (95, 93, 90, 87, 85, 82, 80, 75, 70, 65, 60, 50)
"""JPEG qualities tried, best first: the first at which the folder fits is used."""
MIB = 1 << 20
EXTRA_FILES = ("MANIFEST.csv",)
"""Files of --data copied along when present (the photos' sources and licences)."""
PACK_FILE = "PACK.json"


@dataclass
class Packed:
    """One photo's packed form: `data` the JPEG bytes, `copied` whether they are the original file's bytes."""

    source: Path
    data: bytes
    copied: bool


def load_rgb_array(source: Path | bytes) -> np.ndarray:
    """An image file (or its bytes) -> (H, W, 3) uint8 RGB, as `vqcodec.image.data.load_rgb` reads it."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        return np.asarray(img.convert("RGB")).copy()


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes at `quality` (1..100), 4:4:4 chroma, optimised Huffman tables."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality, subsampling=0, optimize=True)
    return out.getvalue()


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape (inf where they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def pack_one(source: Path, quality: int) -> Packed:
    """`source` at JPEG `quality`, or its own bytes if it is a JPEG no larger than that re-encoding."""
    data = encode_jpeg(load_rgb_array(source), quality)
    if source.suffix.lower() in (".jpg", ".jpeg") and source.stat().st_size <= len(data):
        return Packed(source, source.read_bytes(), True)
    return Packed(source, data, False)


def check_names(files: list[Path]) -> list[str]:
    """The packed names (<stem>.jpg) of `files` (sorted, as `list_images` gives them). Raises ValueError when two
    files share a stem or the packed names would sort in another order (the holdout split would change)."""
    names = [f"{f.stem}.jpg" for f in files]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"files with the same stem would overwrite each other: {dup[:3]}; rename them first")
    if sorted(names) != names:
        raise ValueError("the packed names would sort in another order than the originals (the --holdout split "
                         "would change); rename the files so that their stems sort as their names do")
    return names


def extra_files(data: Path) -> list[Path]:
    """The files of `data` copied along (EXTRA_FILES that exist)."""
    return [data / name for name in EXTRA_FILES if (data / name).is_file()]


def choose_quality(files: list[Path], budget: int) -> tuple[int, list[Packed]]:
    """The first quality of QUALITIES at which the packed photos take at most `budget` bytes, and the photos.
    Raises ValueError when even the last does not fit."""
    for quality in QUALITIES:
        packed, total = [], 0
        for f in files:
            packed.append(pack_one(f, quality))
            total += len(packed[-1].data)
            if total > budget:
                break
        else:
            return quality, packed
        print(f"quality {quality}: over {budget / MIB:.3f} MiB after {len(packed)} of {len(files)} photos",
              file=sys.stderr)
    raise ValueError(f"the photos do not fit in {max(budget, 0) / MIB:.3f} MiB even at JPEG quality {QUALITIES[-1]}; "
                     f"give a larger --max-mib or pack fewer photos")


def prepare_out(out: Path) -> None:
    """Create `out`, or empty it if it holds an earlier pack (PACK.json); refuse any other non-empty folder."""
    if out.exists() and any(out.iterdir()):
        if not (out / PACK_FILE).is_file():
            raise ValueError(f"{out} is not empty and holds no earlier pack ({PACK_FILE}); give an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def pack(data: Path, out: Path, max_mib: float) -> dict:
    """Write the pack (module docstring) and return its summary: quality, sizes, PSNR per file and mean."""
    files = list_images(data)
    names = check_names(files)
    extras = extra_files(data)
    record = 1024 + sum(2 * len(n) + 128 for n in names)  # PACK.json's size, at most
    budget = int(max_mib * MIB) - sum(f.stat().st_size for f in extras) - record
    quality, packed = choose_quality(files, budget)
    prepare_out(out)
    per_file = {}
    for p, name in zip(packed, names):
        (out / name).write_bytes(p.data)
        value = math.inf if p.copied else psnr_db(load_rgb_array(p.source), load_rgb_array(p.data))
        per_file[name] = {"source": p.source.name, "bytes": len(p.data), "copied": p.copied,
                          "psnr_db": None if math.isinf(value) else round(value, 3)}
    for f in extras:
        shutil.copy2(f, out / f.name)
    psnrs = [v["psnr_db"] for v in per_file.values() if v["psnr_db"] is not None]
    summary = {"source": str(data), "quality": quality, "subsampling": "4:4:4", "photos": len(files),
               "copied": sum(p.copied for p in packed), "reencoded": len(psnrs),
               "mean_psnr_db": round(sum(psnrs) / len(psnrs), 3) if psnrs else None,
               "min_psnr_db": min(psnrs) if psnrs else None, "max_mib": max_mib, "files": per_file}
    (out / PACK_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    summary["total_bytes"] = sum(f.stat().st_size for f in out.iterdir())
    if summary["total_bytes"] > max_mib * MIB:
        raise ValueError(f"{out} came to {summary['total_bytes']} bytes, over --max-mib (its record was larger than "
                         f"allowed for); give a slightly larger --max-mib")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="Folder of training photos.")
    parser.add_argument("--out", required=True, type=Path, help="Folder to write (e.g. gpu_pack/photos; git-ignored).")
    parser.add_argument("--max-mib", required=True, type=float, help="Size limit of --out in MiB.")
    args = parser.parse_args(argv)
    if args.max_mib <= 0:
        parser.error("--max-mib must be > 0")
    try:
        s = pack(args.data, args.out, args.max_mib)
    except (OSError, ValueError) as e:
        print(f"pack_photos: error: {e}", file=sys.stderr)
        return 1
    psnr = (f"mean PSNR {s['mean_psnr_db']:.2f} dB (min {s['min_psnr_db']:.2f}) of the {s['reencoded']} re-encoded "
            f"photos against the originals" if s["reencoded"] else "no photo re-encoded")
    print(f"packed {s['photos']} photos of {args.data} into {args.out}: {s['total_bytes'] / MIB:.2f} MiB "
          f"(limit {args.max_mib:g}), JPEG quality {s['quality']} 4:4:4; {s['copied']} JPEG originals copied "
          f"unchanged; {psnr}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
