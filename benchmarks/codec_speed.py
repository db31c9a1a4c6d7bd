"""Entropy coding figures of the image codec on Kodak: speed, rate per stage, exactness.

For every image and the quality levels 1, 25, 50, 75 and 100 it encodes, decodes and checks:
  * a re-encode with verify=True gives the same bytes and decodes to the encoder's indices and refinement
    symbols (exact), and the pixels are within 1 LSB of a decode on one thread;
  * encode and decode wall time (in process, torch threads as given; the model is loaded once; decode:
    parsing, every layer, the pixels);
  * the coded stream bits per index of each VQ stage, against 9 bits (uncoded), against the empirical
    unigram entropy of that stage's indices over the dataset, and against the prior's cross-entropy; and the
    bits per pixel of each refinement layer;
  * with --float-prior, the float prior's cross-entropy, giving the rate penalty of the integer prior.

    python benchmarks/codec_speed.py                    # all 24 Kodak images, 5 qualities
    python benchmarks/codec_speed.py --quick            # 2 images, qualities 1 and max
    python benchmarks/codec_speed.py --effort 3         # the slow encoder
    python benchmarks/codec_speed.py --qualities 30,100 # other qualities
    python benchmarks/codec_speed.py --float-prior runs/prior/prior_float.safetensors

Writes codec_speed.json and codec_speed.md to --out (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
DEFAULT_DATASET = HERE.parent / "data" / "kodak"


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts / max(counts.sum(), 1)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--quick", action="store_true", help="2 images, lowest and highest quality")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    ap.add_argument("--float-prior", type=Path, default=None, help="float prior weights, for the integer-prior penalty")
    ap.add_argument("--effort", type=int, default=None, help="image encoder effort 1..3 (default: the codec's, 2)")
    ap.add_argument("--qualities", default=None, help="comma list of qualities (default: 1,25,50,75 and the top)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from PIL import Image

    from vqcodec.image.input import prepare_image
    from vqcodec.bitstream import cross_entropy_bits, read_file
    from vqcodec.registry import default_codec
    from vqcodec.coding.depth import MODE_RAW, stream_mode

    codec = default_codec("image")
    S, K, top = codec.vq_stages, codec.model.cfg.num_codes, codec.max_quality
    R = codec.max_layers - S  # refinement layers
    files = sorted(p for p in args.dataset.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp", ".tif", ".tiff", ".webp"))
    qualities = sorted({int(q) for q in args.qualities.split(",")}) if args.qualities else [1, 25, 50, 75, top]
    if args.quick:
        files, qualities = files[:2], [1, top]
    float_prior = None
    if args.float_prior:
        from vqcodec.image.prior import load_float_prior

        float_prior = load_float_prior(args.float_prior)

    per_q = {q: {"enc_s": [], "dec_s": [], "bytes": [], "pixels": [], "exact": True, "max_lsb": 0, "depth": [],
                 "vq_bytes": 0, "refinement_bytes": 0} for q in qualities}
    stage_bits = np.zeros(S)  # coded payload bits per stage (at max quality)
    stage_xent = np.zeros(S)  # integer-prior cross-entropy bits per stage (present positions)
    stage_present = np.zeros(S)  # positions that have the stage (per-block depth)
    raw_streams = np.zeros(S)  # streams of each stage (every quality) the encoder wrote in raw mode
    all_streams = np.zeros(S)
    kodak_maps = []  # (S, h, w) index maps at max quality, for the float-vs-integer prior report
    stage_counts = np.zeros((S, K))
    refine_bits = np.zeros(R)  # coded bits of each refinement layer (at max quality)
    n_pixels_top = 0
    n_indices = 0
    # warm-up (first-call allocations, lazy imports) so that timings are steady state
    with Image.open(files[0]) as im:
        codec.decode(codec.encode(prepare_image(im, alpha="error").rgb[:64, :64], 1))
    for p in tqdm(files, desc="codec speed", unit="img", file=sys.stderr):
        with Image.open(p) as im:
            rgb = prepare_image(im, alpha="error").rgb
        for q in qualities:
            t0 = time.perf_counter()
            data = codec.encode(rgb, q, effort=args.effort)
            t1 = time.perf_counter()
            vqfile = read_file(data)
            decoded = codec.decode(vqfile)
            t2 = time.perf_counter()
            # outside both timings: a verifying encode (raises unless decoding gives the encoder's indices and
            # refinement symbols; the same bytes, as encoding is reproducible), and a decode on one thread
            indices = codec.decode_indices(vqfile)
            exact = codec.encode(rgb, q, effort=args.effort, verify=True) == data
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            recon = codec.decode(vqfile)
            torch.set_num_threads(threads)
            r = per_q[q]
            r["enc_s"].append(t1 - t0)
            r["dec_s"].append(t2 - t1)
            r["bytes"].append(len(data))
            r["pixels"].append(rgb.shape[0] * rgb.shape[1])
            r["exact"] &= exact
            r["depth"].append(float((indices >= 0).sum(0).float().mean()))
            r["max_lsb"] = max(r["max_lsb"], int(np.abs(decoded.astype(int) - recon.astype(int)).max()))
            layer_bytes = [sum(len(x) for x in vqfile.streams(k)) for k in range(1, vqfile.layers + 1)]
            r["vq_bytes"] += sum(layer_bytes[:S])
            r["refinement_bytes"] += sum(layer_bytes[S:])
            for k in range(1, min(vqfile.layers, S) + 1):
                all_streams[k - 1] += 1
                raw_streams[k - 1] += stream_mode(vqfile.streams(k)[0]) == MODE_RAW
            if q == qualities[-1]:  # the stage and layer figures: at the highest quality measured
                s_, h, w = indices.shape
                n_indices += h * w
                n_pixels_top += rgb.shape[0] * rgb.shape[1]
                for j, size in enumerate(layer_bytes[S:]):
                    refine_bits[j] += 8 * size
                for s in range(s_):
                    sym = indices[s].reshape(-1).numpy()
                    present = sym >= 0
                    stage_bits[s] += 8 * layer_bytes[s]
                    stage_present[s] += present.sum()
                    freqs = (codec.prior.frequencies(indices[:1], 1) if s == 0
                             else codec.prior.conditional_frequencies(indices[:s], s + 1))
                    stage_xent[s] += cross_entropy_bits(sym[present], freqs[present])
                    stage_counts[s] += np.bincount(sym[present], minlength=K)
                if s_ == S and bool((indices >= 0).all()):
                    kodak_maps.append(indices)

    levels = []
    for q in qualities:
        r = per_q[q]
        levels.append({
            "quality": q,
            "bpp": float(np.sum(np.array(r["bytes"]) * 8) / np.sum(r["pixels"])),
            "bpp_mean_of_images": float(np.mean(np.array(r["bytes"]) * 8 / np.array(r["pixels"]))),
            "bpp_vq_layers": float(r["vq_bytes"] * 8 / np.sum(r["pixels"])),  # the VQ stages' streams
            "bpp_refinement_layers": float(r["refinement_bytes"] * 8 / np.sum(r["pixels"])),  # the rest: headers
            "mean_depth": float(np.mean(r["depth"])),
            "encode_s_median": float(np.median(r["enc_s"])),
            "decode_s_median": float(np.median(r["dec_s"])),
            "encode_s_max": float(np.max(r["enc_s"])),
            "decode_s_max": float(np.max(r["dec_s"])),
            "indices_exact": r["exact"],
            "max_pixel_diff_lsb": r["max_lsb"],
        })
    report = None
    if float_prior is not None:
        from vqcodec.training.image_prior import rate_report

        report = rate_report(float_prior, kodak_maps, codec.prior)  # maps where every block took all stages
    stages = []
    for s in range(S):
        row = {
            "stage": s + 1,
            "present_fraction": stage_present[s] / n_indices,
            "coded_bits_per_index": stage_bits[s] / max(stage_present[s], 1),
            "prior_xent_bits_per_index": stage_xent[s] / max(stage_present[s], 1),
            "unigram_entropy_bits": _entropy_bits(stage_counts[s]),
            "coding_overhead_pct": 100 * (stage_bits[s] / stage_xent[s] - 1) if stage_xent[s] else 0.0,
            "raw_mode_streams": int(raw_streams[s]),
            "streams": int(all_streams[s]),
        }
        if report is not None:
            row["float_prior_bits_per_index"] = report["float_tiled"][s]
            row["float_prior_untiled_bits_per_index"] = report["float_untiled"][s]
            row["integer_penalty_pct"] = 100 * report["quantization_penalty_per_stage"][s]
        stages.append(row)
    refinement = [{"layer": j + 1, "bpp": refine_bits[j] / max(n_pixels_top, 1)} for j in range(R)]
    result = {"dataset": str(args.dataset), "images": len(files), "threads": args.threads, "effort": args.effort or 2,
              "model_id": codec.model_id, "levels": levels, "stages": stages, "refinement_layers": refinement}
    if report is not None:
        result["integer_penalty_total_pct"] = 100 * report["quantization_penalty"]
        result["tile_cost_stage1_pct"] = 100 * report["tile_cost_stage1"]
        result["tile_cost_all_pct"] = 100 * report["tile_cost_all"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codec_speed.json").write_text(json.dumps(result, indent=2))

    cmd = ("python benchmarks/codec_speed.py" + (" --quick" if args.quick else "")
           + (f" --effort {args.effort}" if args.effort else "")
           + (f" --qualities {args.qualities}" if args.qualities else "")
           + (f" --float-prior {args.float_prior}" if args.float_prior else ""))
    lines = [f"{len(files)} images of `{args.dataset.name}`, {args.threads} torch threads, in process (command: `{cmd}`).", "",
             "| quality | bpp (coded) | of it: VQ stages / refinement layers | mean depth (stages per block) | encode s (median / max) | decode s (median / max) | indices exact | max pixel diff (1 thread) |",
             "|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        lines.append(f"| {lv['quality']} | {lv['bpp']:.4f} | {lv['bpp_vq_layers']:.3f} / {lv['bpp_refinement_layers']:.3f} | "
                     f"{lv['mean_depth']:.2f} | {lv['encode_s_median']:.2f} / {lv['encode_s_max']:.2f} | "
                     f"{lv['decode_s_median']:.2f} / {lv['decode_s_max']:.2f} | {lv['indices_exact']} | {lv['max_pixel_diff_lsb']} LSB |")
    lines += ["", f"At quality {qualities[-1]}; bits per index over the blocks that have the stage, STOP symbols and mode bits "
                  "included in the coded bits.", "",
              "| stage | blocks with it | coded bits/index | integer prior xent | unigram entropy | uncoded | coder overhead "
              "| raw-mode streams (all qualities) |"
              + (" float prior xent | integer penalty |" if float_prior is not None else ""),
"|---|---|---|---|---|---|---|---|" + ("---|---|" if float_prior is not None else "")]
    for st in stages:
        line = (f"| {st['stage']} | {100 * st['present_fraction']:.1f}% | {st['coded_bits_per_index']:.3f} | {st['prior_xent_bits_per_index']:.3f} | "
                f"{st['unigram_entropy_bits']:.3f} | 9 | {st['coding_overhead_pct']:.3f}% | "
                f"{st['raw_mode_streams']} of {st['streams']} |")
        if float_prior is not None:
            line += f" {st['float_prior_bits_per_index']:.3f} | {st['integer_penalty_pct']:.2f}% |"
        lines.append(line)
    if refinement:
        lines += ["", f"Refinement layers at quality {qualities[-1]} (bits per pixel of each layer's stream): "
                  + ", ".join(f"layer {r['layer']} {r['bpp']:.3f}" for r in refinement)]
    if report is not None:
        lines += ["", f"Integer prior rate penalty over all stages (integer vs float, both tiled): "
                      f"{result['integer_penalty_total_pct']:.3f}%",
                  f"Rate cost of the stage-1 decoding tiles (float prior, tiled vs whole map): stage 1 "
                  f"{result['tile_cost_stage1_pct']:.2f}%, all stages {result['tile_cost_all_pct']:.3f}%"]
    table = "\n".join(lines) + "\n"
    (args.out / "codec_speed.md").write_text(table)
    print(table)
    ok = all(lv["indices_exact"] and lv["max_pixel_diff_lsb"] <= 1 for lv in levels)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
