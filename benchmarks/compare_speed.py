"""Compare two trees' speed figures: medians over repeated runs of codec_speed.py and audio_speed.py.

Each run of either script writes a JSON file into its own --out folder; give the old tree's folders and the
new tree's (any number of each, e.g. 3 alternating rounds on an idle machine) and this prints the median of
every figure per tree and the change in percent.

    python benchmarks/compare_speed.py --old /tmp/ab/old_img_{1,2,3} --new /tmp/ab/new_img_{1,2,3}
    python benchmarks/compare_speed.py --old /tmp/ab/old_aud_{1,2,3} --new /tmp/ab/new_aud_{1,2,3}
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def figures(folder: Path) -> dict[str, float]:
    """The timing and memory figures of one codec_speed.json or audio_speed.json run."""
    if (folder / "codec_speed.json").is_file():
        d = json.loads((folder / "codec_speed.json").read_text())
        return {f"q{lv['quality']} {k.replace('_s_median', '')} s": lv[k] for lv in d["levels"]
                for k in ("encode_s_median", "decode_s_median")}
    d = json.loads((folder / "audio_speed.json").read_text())
    out = {"clip encode x real time": d["clip"]["encode_x_realtime"], "clip decode x real time": d["clip"]["decode_x_realtime"]}
    for length, cli in d["cli"].items():
        for k in ("encode_s", "decode_s", "encode_peak_rss_mib", "decode_peak_rss_mib"):
            out[f"CLI {length} {k}"] = cli[k]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, nargs="+", required=True)
    ap.add_argument("--new", type=Path, nargs="+", required=True)
    args = ap.parse_args(argv)
    old = [figures(f) for f in args.old]
    new = [figures(f) for f in args.new]
    print(f"| figure | old (median of {len(old)}) | new (median of {len(new)}) | change |\n|---|---:|---:|---:|")
    for key in old[0]:
        a = statistics.median(r[key] for r in old)
        b = statistics.median(r[key] for r in new)
        print(f"| {key} | {a:.3f} | {b:.3f} | {100 * (b / a - 1):+.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
