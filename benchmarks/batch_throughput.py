"""Batch coding throughput: `vqcodec encode *.png -o DIR/ -j N` against one CLI call per file (a shell loop).

Both run the installed command line in subprocesses on the same images with the shipped model, so each
loop call pays the start-up (imports, model loading) that a batch pays once per worker. Reports images per
second for encoding and for decoding, and whether the batch outputs equal the per-file outputs (the
batch's workers run one torch thread each, a single call the default threads).

    python benchmarks/batch_throughput.py                 # 24 Kodak images, -j 2, top quality
    python benchmarks/batch_throughput.py --jobs 4 -q 4 --limit 8

Writes batch_throughput.json to --out (default benchmarks/results/). Wall-clock figures depend on what else
runs on the machine: the JSON records the core count and the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _cli() -> list[str]:
    exe = shutil.which("vqcodec")
    return [exe] if exe else [sys.executable, "-m", "vqcodec.cli.main"]


def _timed(commands: list[list[str]]) -> float:
    """Run the commands one after another (failing loudly); -> wall seconds."""
    t0 = time.perf_counter()
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return time.perf_counter() - t0


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def _figures(n: int, batch_s: float, loop_s: float) -> dict:
    return {"batch_s": round(batch_s, 2), "loop_s": round(loop_s, 2),
            "batch_images_per_s": round(n / batch_s, 3), "loop_images_per_s": round(n / loop_s, 3),
            "speedup": round(loop_s / batch_s, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=HERE.parent / "data" / "kodak")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="batch worker processes")
    ap.add_argument("-q", "--quality", type=int, default=None, help="image quality (default: the top)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = ap.parse_args(argv)

    images = sorted(p for p in args.dataset.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit]
    cli, q = _cli(), ([] if args.quality is None else ["-q", str(args.quality)])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vq_batch_") as tmp:
        d = {k: Path(tmp) / k for k in ("enc_batch", "enc_loop", "dec_batch", "dec_loop")}
        for p in d.values():
            p.mkdir()
        enc_batch = _timed([[*cli, "encode", *map(str, images), "-o", f"{d['enc_batch']}/", "-j", str(args.jobs), *q]])
        enc_loop = _timed([[*cli, "encode", str(p), "-o", str(d["enc_loop"] / f"{p.stem}.vq"), *q] for p in images])
        coded = sorted(d["enc_batch"].iterdir())
        dec_batch = _timed([[*cli, "decode", *map(str, coded), "-o", f"{d['dec_batch']}/", "-j", str(args.jobs)]])
        dec_loop = _timed([[*cli, "decode", str(p), "-o", str(d["dec_loop"] / f"{p.stem}.png")] for p in coded])
        same_enc, same_dec = _same_files(d["enc_batch"], d["enc_loop"]), _same_files(d["dec_batch"], d["dec_loop"])
    result = {
        "command": "python benchmarks/batch_throughput.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
        "dataset": args.dataset.name, "images": len(images), "jobs": args.jobs,
        "quality": args.quality or "top", "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "encode": _figures(len(images), enc_batch, enc_loop),
        "decode": _figures(len(images), dec_batch, dec_loop),
        "batch_equals_loop": {"vq_files": same_enc, "decoded_png": same_dec},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
