"""Speed of the integer image prior: encoder frequencies and decoding of all stages of one image.

Measures, for an (H, W) index map with S stages (default 64 x 96 x 8, a 768 x 512 image):
  * encode: IntegerImagePrior.frequencies for every stage, one stage at a time as the encoder uses them
    (plus the ideal code length of each stage; `--coder` also range-codes them), and
  * decode: decode_stage for every stage with a decode_fn that returns the true symbols (prior cost and
    the per-group call overhead; `--coder` uses the real range coder instead),
as wall-clock and process CPU seconds (min over --repeat runs). The machine may be shared: CPU seconds
of this single process are the steadier figure. Without --weights a random prior of the configured
size is quantized (speed does not depend on the weights' values).

    python benchmarks/prior_speed.py --quick
    python benchmarks/prior_speed.py --threads 1 --tile-h 32 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vqcodec.image.prior import ImagePrior, PriorConfig
from vqcodec.image.prior_integer import IntegerImagePrior
from vqcodec.image.prior_integer import load_integer_prior
from vqcodec.training.image_prior import synthetic_index_maps


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def build_prior(args) -> IntegerImagePrior:
    if args.weights:
        return load_integer_prior(Path(args.weights))
    cfg = PriorConfig(num_stages=args.stages, ar_channels=args.ar_channels, ar_layers=args.ar_layers,
                      cond_channels=args.cond_channels, cond_blocks=args.cond_blocks,
                      cond_kernel=args.cond_kernel, tile_h=args.tile_h, tile_w=args.tile_w)
    torch.manual_seed(0)
    model = ImagePrior(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # weights of a trained model's size, so activations use the whole range
        for p in model.parameters():
            p.mul_(3.0).add_(0.02 * torch.randn(p.shape, generator=g))
    calib = synthetic_index_maps(1, stages=args.stages, h=32, w=32, seed=1)
    return IntegerImagePrior.from_float(model, calib)


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    ip = build_prior(args)
    ip.num_threads = args.prior_threads if args.prior_threads > 0 else None
    s_count = ip.num_stages
    h, w = args.height, args.width
    x = synthetic_index_maps(1, stages=s_count, h=h, w=w, seed=2)[0]
    if args.coder:
        from vqcodec.bitstream.entropy import IndexDecoder, IndexEncoder

    (_, t_plan, _) = _timed(lambda: ip.coding_groups(1, (h, w)))  # plan is cached after this

    def encode():
        """Like the codec's encoder: one stage's frequencies at a time, coded (or just made) and dropped."""
        enc = IndexEncoder() if args.coder else None
        for s in range(1, s_count + 1):
            f = ip.frequencies(x, s)
            if enc is not None:
                sym = x[s - 1].reshape(-1).numpy()
                for g in ip.coding_groups(s, (h, w)):
                    enc.encode(sym[g], f[g])
            del f
        return enc.finish() if enc is not None else None

    def decode(data):
        dec = IndexDecoder(data, verify=False) if args.coder else None
        out, per_stage = [], []
        for s in range(1, s_count + 1):
            groups = iter(ip.coding_groups(s, (h, w)))
            truth = x[s - 1].reshape(-1)

            def fn(freqs, groups=groups, truth=truth):
                if dec is not None:
                    return dec.decode(freqs)
                return truth[torch.from_numpy(next(groups))].numpy()
            t0 = time.perf_counter()
            out.append(ip.decode_stage(s, torch.stack(out) if out else None, (h, w), fn))
            per_stage.append(time.perf_counter() - t0)
        return torch.stack(out), per_stage

    enc_w, enc_c, dec_w, dec_c, dec_s1 = [], [], [], [], []
    data = None
    for _ in range(args.repeat):
        data, tw, tc = _timed(encode)
        enc_w.append(tw); enc_c.append(tc)
        (maps, per_stage), tw, tc = _timed(lambda: decode(data))
        dec_w.append(tw); dec_c.append(tc); dec_s1.append(per_stage[0])
        if not torch.equal(maps, x):
            raise AssertionError("decoded maps differ from the input")
    bits = []  # ideal code length per stage (untimed)
    for s in range(1, s_count + 1):
        f = ip.frequencies(x, s)
        bits.append(float(-np.log2(f[np.arange(h * w), x[s - 1].reshape(-1).numpy()] / f.sum(1)).mean()))
    res = {
        "map": [s_count, h, w], "threads": torch.get_num_threads(), "prior_threads": ip.num_threads, "config": ip.cfg.to_dict(),
        "params": ip.num_params(), "wavefront_slope": ip.wavefront_slope,
        "stage1_groups": len(ip.coding_groups(1, (h, w))), "plan_s": round(t_plan, 4),
        "encode_wall_s": round(min(enc_w), 4), "encode_cpu_s": round(min(enc_c), 4),
        "decode_wall_s": round(min(dec_w), 4), "decode_cpu_s": round(min(dec_c), 4),
        "decode_stage1_wall_s": round(min(dec_s1), 4),
        "coder": bool(args.coder), "bits_per_index": [round(b, 4) for b in bits],
    }
    if data is not None:
        res["stream_bytes"] = len(data)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one repeat on a 32 x 48 map (smoke test)")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--stages", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads of the process (0: leave default)")
    p.add_argument("--prior-threads", type=int, default=1,
                   help="IntegerImagePrior.num_threads for whole-map passes (0: use the process setting)")
    p.add_argument("--weights", type=str, default="", help="integer prior .safetensors (default: random)")
    p.add_argument("--coder", action="store_true", help="range-code for real instead of a dummy decode_fn")
    d = PriorConfig()
    p.add_argument("--ar-channels", type=int, default=d.ar_channels)
    p.add_argument("--ar-layers", type=int, default=d.ar_layers)
    p.add_argument("--cond-channels", type=int, default=d.cond_channels)
    p.add_argument("--cond-blocks", type=int, default=d.cond_blocks)
    p.add_argument("--cond-kernel", type=int, default=d.cond_kernel)
    p.add_argument("--tile-h", type=int, default=d.tile_h)
    p.add_argument("--tile-w", type=int, default=d.tile_w)
    p.add_argument("--json", type=str, default="", help="also write the result to this file")
    p.add_argument("--out", type=str, default="", help="also write prior_speed.json into this directory")
    args = p.parse_args(argv)
    if args.quick:
        args.height, args.width, args.repeat = 32, 48, 1
    res = run(args)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "prior_speed.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
