"""Reproducible encoding (issue 24, item 3): do 1 thread, 2 threads and batch mode give identical files?

    python benchmarks/reproducible_encode.py            # the 24 Kodak images
    python benchmarks/reproducible_encode.py --quick    # 3 of them

Each image is encoded by the CLI's own code path (`vqcodec encode IMG -o OUT.vq`, default options) three
ways: in this process with torch on 1 thread, with torch on 2 threads, and by `vqcodec encode ... -o DIR/
-j 2` (batch mode: worker processes with one torch thread each). Prints one line per image (sizes, and
whether the three files are byte-identical), the encode times of the two in-process runs, and the verdict;
exit status 1 if any image differs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT / "data" / "kodak"


def _encode_in_process(srcs: list[Path], out: Path, threads: int) -> list[float]:
    """Encode each of `srcs` into out/STEM.vq as `vqcodec encode` does, torch on `threads` threads."""
    import torch

    from vqcodec.cli.jobs import encode_file

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    try:
        for src in srcs:
            t0 = time.perf_counter()
            encode_file(str(src), str(out / f"{src.stem}.vq"), None, "keep", False, True)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 images instead of 24")
    ap.add_argument("--dataset", type=Path, default=KODAK)
    args = ap.parse_args(argv)
    srcs = sorted(args.dataset.glob("*.png"))
    if args.quick:
        srcs = srcs[:3]
    if not srcs:
        print(f"no .png images in {args.dataset}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vq_repro_") as tmp:
        dirs = {name: Path(tmp) / name for name in ("t1", "t2", "batch")}
        for d in dirs.values():
            d.mkdir()
        times = {t: _encode_in_process(srcs, dirs[f"t{t}"], t) for t in (1, 2)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vqcodec.cli.main", "encode", *map(str, srcs), "-o",
                        str(dirs["batch"]) + "/", "-j", "2", "-f"], check=True, capture_output=True)
        batch_s = time.perf_counter() - t0
        differ = 0
        for src in srcs:
            files = {name: (d / f"{src.stem}.vq").read_bytes() for name, d in dirs.items()}
            same = files["t1"] == files["t2"] == files["batch"]
            differ += not same
            sizes = ", ".join(f"{name} {len(b)}" for name, b in files.items())
            print(f"{src.stem}: {'identical' if same else 'DIFFERENT'} ({sizes} bytes)")
    for t in (1, 2):
        v = sorted(times[t])
        print(f"encode, {t} torch thread{'s' if t > 1 else ''}: median {v[len(v) // 2]:.2f} s per image, "
              f"total {sum(v):.1f} s")
    print(f"batch -j 2: {batch_s:.1f} s for {len(srcs)} images (with start-up)")
    print(f"{len(srcs) - differ} of {len(srcs)} images identical across 1 thread, 2 threads and batch mode")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
