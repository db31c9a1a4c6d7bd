"""Image coding at large sizes: peak memory and time of the CLI, and seconds per megapixel in process.

    python benchmarks/large_image.py                  # 768x512, 4000x3000, 8000x8000 (about an hour)
    python benchmarks/large_image.py --quick          # 128x96 and 640x480 (CI smoke run, about a minute)
    python benchmarks/large_image.py --sizes 4000x3000 --no-whole-check
    python benchmarks/large_image.py --sizes 768x512,8000x8000 --quality 30   # another quality (default: the top)

The images are photo-like but synthetic: the 24 Kodak images (data/kodak, 768x512; portrait ones turned to
landscape) laid out as a mosaic in file order, every other one mirrored left-right, repeated as needed and
cropped to the size. 768x512 is therefore kodim01 itself.

For each size, every figure comes from a fresh process:
  * CLI: `vqcodec encode X.png -o X.vq [-q Q]` and `vqcodec decode X.vq -o Y.png` (default effort):
    wall time, CPU time and peak RSS (os.wait4 of the child);
  * in process: a process loads the model (and codes a 64x64 image to warm up), then times
    `ImageCodec.encode` of the pixels, or `ImageCodec.decode` of the CLI's file: seconds and CPU seconds
    per megapixel, and the process's peak RSS (VmHWM, model included);
  * whole-image check (sizes up to 12 MP, unless --no-whole-check): the file decoded with its nets run whole
    against the tiled run the codec uses above `tiling.TILE_ABOVE_PIXELS` (images under two tiles a side:
    tiles of a third of the short side, so that there are seams): the largest pixel difference in LSB.
Writes large_image.json and large_image.md to --out (default benchmarks/results/). The machine's 2 cores
are shared with other work: the 1-minute load average is recorded beside every timing (above 2, wall
times are stretched; CPU times much less so).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent / "data" / "kodak"
FULL_SIZES = "768x512,4000x3000,8000x8000"
QUICK_SIZES = "128x96,640x480"
WHOLE_CHECK_MAX_PIXELS = 12_000_000


def mosaic(width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8: the Kodak mosaic described in the module docstring."""
    files = sorted(KODAK.glob("kodim*.png"))
    if not files:
        raise SystemExit(f"no Kodak images under {KODAK}; the benchmark needs the bundled data/kodak/")
    tiles = []
    for i, f in enumerate(files):
        im = np.asarray(Image.open(f).convert("RGB"))
        im = np.rot90(im) if im.shape[0] > im.shape[1] else im
        tiles.append(im[:512, :768, :][:, ::-1] if i % 2 else im[:512, :768])
    out = np.empty((height, width, 3), dtype=np.uint8)
    k = 0
    for r in range(0, height, 512):
        for c in range(0, width, 768):
            t = tiles[k % len(tiles)]
            k += 1
            out[r:r + 512, c:c + 768] = t[:min(512, height - r), :min(768, width - c)]
    return out


def _fresh(cmd: list[str]) -> dict:
    """Run `cmd` in a fresh process -> wall s, CPU s (user + system), peak RSS MiB, stdout, load average."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode(errors='replace').strip()[-800:]}")
        return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024,
                "load_1min": load, "stdout": out.read().decode()}


def _peak_mib() -> float:
    """This process's peak RSS (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def in_process(kind: str, path: str, quality: int | None = None) -> dict:
    """Child side of an in-process measurement: `kind` "encode" (a PNG, at `quality`; None: the top) or "decode"
    (a .vq)."""
    from vqcodec.image.codec import ImageCodec

    codec = ImageCodec()
    codec.decode(codec.encode(mosaic(64, 64), quality))  # warm-up: first-call allocations
    if kind == "encode":
        rgb = np.asarray(Image.open(path).convert("RGB"))
        t, c = time.perf_counter(), time.process_time()
        data = codec.encode(rgb, quality)
        pixels = rgb.shape[0] * rgb.shape[1]
    else:
        data = Path(path).read_bytes()
        t, c = time.perf_counter(), time.process_time()
        img = codec.decode(data)
        pixels = img.shape[0] * img.shape[1]
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    mp = pixels / 1e6
    return {"s": wall, "cpu_s": cpu, "s_per_mp": wall / mp, "cpu_s_per_mp": cpu / mp, "peak_rss_mib": _peak_mib(),
            "bytes": len(data)}


def whole_check(path: str) -> dict:
    """Child side: a .vq file decoded with the decoder net tiled against the whole-image run (VQ and refinement
    layers alike)."""
    from vqcodec.bitstream import read_file
    from vqcodec.image import tiling
    from vqcodec.image.codec import ImageCodec

    codec = ImageCodec()
    data = Path(path).read_bytes()
    vqfile = read_file(data)
    short = min(-(-vqfile.geometry.height // 8), -(-vqfile.geometry.width // 8))
    if short < 2 * tiling.TILE:  # small images: tiles of a third of the short side, so there are seams
        tiling.TILE = max(4, short // 3)
    tiling.TILE_ABOVE_PIXELS = 0
    tiled = codec.decode(data)
    tiling.TILE_ABOVE_PIXELS = 1 << 62
    whole = codec.decode(data)
    diff = np.abs(tiled.astype(np.int16) - whole.astype(np.int16))
    return {"max_lsb": int(diff.max()), "pixels_differing": float((diff.max(-1) > 0).mean()), "tile": tiling.TILE}


def _child(kind: str, path: Path, quality: int | None = None) -> dict:
    extra = ["--quality", str(quality)] if quality is not None else []
    r = _fresh([sys.executable, str(Path(__file__).resolve()), "--child", kind, str(path), *extra])
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    res["load_1min"] = r["load_1min"]
    return res


def measure(width: int, height: int, folder: Path, whole: bool, quality: int | None = None) -> dict:
    """Every figure of one size (module docstring)."""
    name = f"{width}x{height}"
    src, vq, dst = folder / f"{name}.png", folder / f"{name}.vq", folder / f"{name}.out.png"
    Image.fromarray(mosaic(width, height)).save(src, compress_level=1)
    cli = [sys.executable, "-m", "vqcodec.cli.main"]
    res: dict = {"width": width, "height": height, "megapixels": width * height / 1e6, "quality": quality}
    q = ["-q", str(quality)] if quality is not None else []
    res["cli_encode"] = _fresh(cli + ["encode", str(src), "-o", str(vq), "-f", *q])
    res["cli_decode"] = _fresh(cli + ["decode", str(vq), "-o", str(dst), "-f"])
    for k in ("cli_encode", "cli_decode"):
        del res[k]["stdout"]
    if Image.open(dst).size != (width, height):
        raise SystemExit(f"decoded {dst} has size {Image.open(dst).size}, expected {(width, height)}")
    res["vq_bytes"] = vq.stat().st_size
    res["bpp"] = 8 * res["vq_bytes"] / (width * height)
    res["in_process_encode"] = _child("encode", src, quality)
    res["in_process_decode"] = _child("decode", vq)
    if whole and width * height <= WHOLE_CHECK_MAX_PIXELS:
        res["tiled_vs_whole"] = _child("whole", vq)
    for f in (src, vq, dst):
        f.unlink()
    return res


def _markdown(result: dict) -> str:
    quality = result.get("quality")
    lines = [f"Image coding at large sizes ({result['machine']}; "
             f"{'the top quality' if quality is None else f'quality {quality}'}, default effort; command: "
             f"`{result['command']}`). Images: {result['images']}", "",
             "| size | MP | CLI encode s (CPU s) | CLI encode peak RSS MiB | CLI decode s (CPU s) | "
             "CLI decode peak RSS MiB | encode s/MP (CPU) | decode s/MP (CPU) | bpp | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["sizes"]:
        e, d, ie, id_ = r["cli_encode"], r["cli_decode"], r["in_process_encode"], r["in_process_decode"]
        loads = [e["load_1min"], d["load_1min"], ie["load_1min"], id_["load_1min"]]
        lines.append(f"| {r['width']}x{r['height']} | {r['megapixels']:.1f} | {e['wall_s']:.1f} ({e['cpu_s']:.1f}) | "
                     f"{e['peak_rss_mib']:.0f} | {d['wall_s']:.1f} ({d['cpu_s']:.1f}) | {d['peak_rss_mib']:.0f} | "
                     f"{ie['s_per_mp']:.2f} ({ie['cpu_s_per_mp']:.2f}) | "
                     f"{id_['s_per_mp']:.2f} ({id_['cpu_s_per_mp']:.2f}) | "
                     f"{r['bpp']:.3f} | {min(loads):.1f}..{max(loads):.1f} |")
    lines += ["", "s/MP: in process, model loaded (wall seconds per megapixel; CPU seconds in brackets). Load avg: "
              "the 1-minute load average at the start of each of the four measurements (2 cores)."]
    first, last = result["sizes"][0], result["sizes"][-1]
    if len(result["sizes"]) > 1:
        lines.append("")
        for kind in ("encode", "decode"):
            a, b = first[f"in_process_{kind}"], last[f"in_process_{kind}"]
            lines.append(f"- {kind}: {last['width']}x{last['height']} against {first['width']}x{first['height']}: "
                         f"{b['s_per_mp'] / a['s_per_mp']:.2f}x the wall seconds per megapixel, "
                         f"{b['cpu_s_per_mp'] / a['cpu_s_per_mp']:.2f}x the CPU seconds")
    checks = [r for r in result["sizes"] if "tiled_vs_whole" in r]
    for r in checks:
        c = r["tiled_vs_whole"]
        lines.append(f"- {r['width']}x{r['height']}: tiled decoder net ({c['tile']}-latent tiles) against the "
                     f"whole image: at most "
                     f"{c['max_lsb']} LSB apart, {100 * c['pixels_differing']:.4f} % of pixels differ")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} (CI smoke run)")
    ap.add_argument("--sizes", default=None, help=f"comma-separated WIDTHxHEIGHT (default {FULL_SIZES})")
    ap.add_argument("--no-whole-check", action="store_true", help="skip the tiled-against-whole decoder check")
    ap.add_argument("--quality", type=int, default=None, help="image quality to encode at (default: the top)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, path = args.child
        res = whole_check(path) if kind == "whole" else in_process(kind, path, args.quality)
        print(json.dumps(res))
        return 0
    spec = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    sizes = [tuple(int(v) for v in s.split("x")) for s in spec.split(",")]
    cmd = ["python", "benchmarks/large_image.py", *(argv if argv is not None else sys.argv[1:])]
    result: dict = {"command": " ".join(cmd), "machine": "2-core CPU, shared with a training run and other work",
                    "date": time.strftime("%Y-%m-%d"), "images": "Kodak mosaic (benchmarks/large_image.py `mosaic`)",
                    "quality": args.quality, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            result["sizes"].append(measure(w, h, Path(tmp), not args.no_whole_check, args.quality))
            print(f"{w}x{h} done", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "large_image.json").write_text(json.dumps(result, indent=2))
    (args.out / "large_image.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
