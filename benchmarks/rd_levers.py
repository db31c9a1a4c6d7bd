"""What each rate-distortion lever of the image encoder is worth, measured on Kodak.

    python benchmarks/rd_levers.py                 # all 24 Kodak images, every configuration (long)
    python benchmarks/rd_levers.py --images 6      # the first 6 images
    python benchmarks/rd_levers.py --quick         # smoke run (CI): 2 small crops, 2 configurations

Levers (issue 12): D = per-block depth chosen by rate-distortion (vqcodec.image.rate_control), R = a raw
mode per stage (vqcodec.coding.depth), B = beam search of width 4 in the residual VQ (vs greedy), W =
effort 3 (beam 8 + pixel-space weights of each block's latent error). Each configuration is measured
twice over: today's encoder (0.2.0: every block takes q stages, beam 4, plain streams) plus one lever, and
the full default encoder (D+R+B) minus one lever, so the next step can be chosen by measurement.

Rates are the real file bytes (container included). PSNR is computed on the reconstruction of the coded
indices (the decoder is exact, tests check it, so decoding the bytes would give the same pixels).
BD-rates use the benchmark's cubic fit over the fixed PSNR window of `metrics.FIXED_PSNR_WINDOW`
(clipped, and said so, where a curve does not cover it), against today's encoder and against the stored
JPEG / WebP records of `rate_distortion.py` (benchmarks/results/rd/kodak/). One setting per curve point
for all images (the quality scale's lambdas, set on the training photos).

Writes JSON and markdown to --out (default benchmarks/results/rd_levers.{json,md}; --quick: a temp dir).
Timings are not reported here (the machine's 2 cores are shared); see codec_speed.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from metrics import FIXED_PSNR_WINDOW, bd_rate_window, psnr  # noqa: E402

KODAK = HERE.parent / "data" / "kodak"
RECORDS = HERE / "results" / "rd" / "kodak"
QUALITIES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


@dataclass(frozen=True)
class Config:
    """One encoder configuration. depth: per-block depth (else every block takes the point's stage count);
    raw: allow the raw mode; effort: 1 greedy, 2 beam 4, 3 beam 8 + pixel weights; plain: write 0.2.0's
    plain streams (no STAGE_SYNTAX)."""

    name: str
    depth: bool
    raw: bool
    effort: int
    plain: bool = False


CONFIGS = (
    Config("today (0.2.0: fixed depth, beam 4, plain)", depth=False, raw=False, effort=2, plain=True),
    Config("today + D", depth=True, raw=False, effort=2),
    Config("today + R", depth=False, raw=True, effort=2),
    Config("default (D+R+B)", depth=True, raw=True, effort=2),
    Config("default - R", depth=True, raw=False, effort=2),
    Config("default - B (greedy)", depth=True, raw=True, effort=1),
    Config("effort 3 (default + W, beam 8)", depth=True, raw=True, effort=3),
)


def _points(codec, cfg: Config) -> list:
    return list(range(1, codec.max_layers + 1)) if not cfg.depth else list(QUALITIES)


def measure(codec, cfg: Config, rgb: np.ndarray) -> list[tuple[float, float]]:
    """(bpp, PSNR) of one image at every point of the configuration's curve."""
    from vqcodec.bitstream import ImageGeometry, Modality, StageSyntax, stage_syntax_chunk, write_file
    from vqcodec.coding.depth import ABSENT, encode_depth_stages
    from vqcodec.coding.stages import encode_stages
    import vqcodec

    h, w = rgb.shape[:2]
    cand = codec.analyse(rgb, cfg.effort)
    first: list[bytes] = []  # stage 1's stream is the same at every point
    out = []
    for point in _points(codec, cfg):
        if cfg.depth:
            idx = codec.encode_indices(rgb, point, candidates=cand)
        else:  # every block takes `point` stages: the best point-stage path of each
            n = cand.paths.shape[0]
            idx = cand.paths[torch.arange(n), point - 1, :point].reshape(cand.height, cand.width, point)
            idx = idx.permute(2, 0, 1).contiguous()
            assert int(idx.min()) != ABSENT
        if cfg.plain:
            streams = encode_stages(codec.prior, idx)
            extra = []
        else:
            streams = encode_depth_stages(codec.prior, idx, allow_raw=cfg.raw, first_stream=first[0] if first else None)
            first[:] = streams[:1]
            extra = [stage_syntax_chunk(StageSyntax.DEPTH)]
        data = write_file(Modality.IMAGE, codec.components, ImageGeometry(w, h), [[s] for s in streams],
                          extra_chunks=extra, encoder=f"vqcodec {vqcodec.__version__}")
        out.append((len(data) * 8 / (h * w), psnr(codec.render(idx, h, w), rgb)))
    return out


def _unique(curve: tuple[list, list]) -> tuple[list, list]:
    """Drop points whose PSNR repeats an earlier one (the top qualities can coincide on small images)."""
    seen, bpp, q = set(), [], []
    for b, p in zip(*curve):
        if p not in seen:
            seen.add(p)
            bpp.append(b)
            q.append(p)
    return bpp, q


def _bd(anchor: tuple[list, list], test: tuple[list, list]) -> dict:
    anchor, test = _unique(anchor), _unique(test)
    try:
        r = bd_rate_window(anchor[0], anchor[1], test[0], test[1], FIXED_PSNR_WINDOW)
    except ValueError as e:
        return {"bd_rate": None, "note": str(e)}
    return {"bd_rate": round(r.value, 2), "range": [round(v, 2) for v in r.range], "note": r.note}


def _stored(name: str, images: list[str]) -> tuple[list, list] | None:
    """The stored curve of `name` (rate_distortion.py's record) over the same images, or None: from its
    per-image data (bpp and PSNR per quality x image), or its dataset means when all images are used."""
    path = RECORDS / f"{name}.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    per = doc.get("per_image")
    if per and set(images) <= set(per["images"]):
        cols = [per["images"].index(n) for n in images]
        return ([float(np.mean([row[c] for c in cols])) for row in per["bpp"]],
                [float(np.mean([row[c] for c in cols])) for row in per["psnr-rgb"]])
    if len(images) == int(doc.get("dataset", {}).get("images", -1)):  # the whole dataset: its means
        return doc["results"]["bpp"], doc["results"]["psnr-rgb"]
    return None


def write_report(doc: dict, out_dir: Path) -> None:
    """BD-rates of every curve of `doc` against today's encoder and the stored anchors (on the same images)
    -> out_dir/rd_levers.json and rd_levers.md."""
    curves = doc["curves"]
    anchors = {"today": curves.get(CONFIGS[0].name)}
    for name in ("jpeg", "webp", "avif", "jpegxl", "heic"):
        stored = _stored(name, doc["images"]) if doc["images"] else None
        if stored:
            anchors[name] = {"bpp": stored[0], "psnr": stored[1]}
    anchors = {a: v for a, v in anchors.items() if v is not None}
    table = {name: {a: _bd((v["bpp"], v["psnr"]), (c["bpp"], c["psnr"]))
                    for a, v in anchors.items() if not (a == "today" and name == CONFIGS[0].name)}
             for name, c in curves.items()}
    doc = {**doc, "bd_rate_percent": table}
    (out_dir / "rd_levers.json").write_text(json.dumps(doc, indent=1))
    lines = [f"# Rate-distortion levers ({doc['dataset']})", "",
             f"`{doc['command']}`. BD-rate (cubic, PSNR window {FIXED_PSNR_WINDOW[0]:g}..{FIXED_PSNR_WINDOW[1]:g} dB) "
             "of each configuration against today's encoder and the stored anchors of `rate_distortion.py` on "
             "the same images; negative = fewer bits.", "",
             "| configuration | " + " | ".join(f"vs {a}" for a in anchors) + " | bpp range | PSNR range |",
             "|---|" + "---|" * (len(anchors) + 2)]
    for name, row in table.items():
        c = curves[name]
        cells = []
        for a in anchors:
            e = row.get(a)
            cells.append("—" if e is None or e["bd_rate"] is None else
                         f"{e['bd_rate']:+.1f} %" + (" *" if e.get("note") else ""))
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {min(c['bpp']):.3f}..{max(c['bpp']):.3f} | {min(c['psnr']):.2f}..{max(c['psnr']):.2f} |")
    lines += ["", "\\* the window was clipped to what both curves cover (see the JSON's notes)."]
    (out_dir / "rd_levers.md").write_text("\n".join(lines) + "\n")
    print(out_dir / "rd_levers.json")
    print(out_dir / "rd_levers.md")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24, help="use the first N Kodak images (default 24)")
    ap.add_argument("--configs", default="", help="comma list of configuration numbers (1-based) to run")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 crops of 128x192, configurations 1 and 4")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report-only", type=Path, default=None, metavar="JSON",
                    help="measure nothing: rewrite the report of an earlier run's rd_levers.json into --out")
    args = ap.parse_args(argv)
    if args.report_only:
        doc = json.loads(args.report_only.read_text())
        doc.setdefault("images", [f.name for f in sorted(KODAK.glob("*.png"))][: int(doc["dataset"].split("(")[1].split()[0])])
        out_dir = args.out or args.report_only.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        write_report(doc, out_dir)
        return 0
    torch.set_num_threads(args.threads)
    from vqcodec.registry import default_codec

    codec = default_codec("image")
    files = sorted(KODAK.glob("*.png"))[: (2 if args.quick else args.images)]
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    if args.quick:
        images = [np.ascontiguousarray(im[:128, :192]) for im in images]
    chosen = [int(v) - 1 for v in args.configs.split(",") if v] or ([0, 3] if args.quick else range(len(CONFIGS)))
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="rd_levers_")) if args.quick else HERE / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    curves: dict[str, dict] = {}
    for i in chosen:
        cfg = CONFIGS[i]
        t0 = time.perf_counter()
        per_image = [measure(codec, cfg, rgb) for rgb in images]
        arr = np.array(per_image)  # (images, points, 2)
        curves[cfg.name] = {"points": _points(codec, cfg), "bpp": arr[:, :, 0].mean(0).round(5).tolist(),
                            "psnr": arr[:, :, 1].mean(0).round(4).tolist(),
                            "per_image_bpp": arr[:, :, 0].round(5).tolist(),
                            "per_image_psnr": arr[:, :, 1].round(4).tolist(), "config": cfg.__dict__}
        print(f"{cfg.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    names = [f.name for f in files] if not args.quick else []
    command = "python benchmarks/rd_levers.py" + (" --quick" if args.quick else
                                                  f" --images {args.images}" if args.images != 24 else "")
    if args.configs:
        command += f" --configs {args.configs}"
    doc = {"dataset": f"kodak ({len(images)} images{', 128x192 crops' if args.quick else ''})", "images": names,
           "window_db": list(FIXED_PSNR_WINDOW), "curves": curves, "command": command}
    write_report(doc, out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
