"""Training throughput of the image VQ-VAE on this machine's CPU: steps per second of one optimizer step
(batch of random crops, forward, backward, Adam) under each numeric/layout option torch offers.

Variants: float32; bfloat16 autocast (what `vqcodec train image` uses); bfloat16 + channels_last
memory format; bfloat16 + torch.compile. Each runs --warmup untimed steps then --steps timed ones on
--threads torch threads, with the training task's own batches and loss (`ImageTask`), and reports the
median step time. Compile time is reported apart.

    python benchmarks/train_throughput.py --data ../shared/data/photos --threads 1
    python benchmarks/train_throughput.py --quick      # a few steps on tiny generated images (CI smoke run)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqcodec.training.image_model import ImageTask, TrainImageConfig
from vqcodec.training.loop import RunContext

HERE = Path(__file__).resolve().parent
VARIANTS = ("float32", "bf16", "bf16+channels_last", "bf16+compile")


def _task(data: str, variant: str, model: dict, depth_mode: str, batch: int, crop: int) -> tuple:
    cfg = TrainImageConfig(data=data, out=tempfile.mkdtemp(), bf16=variant != "float32", model=model,
                           depth_mode=depth_mode, batch_size=batch, crop=crop)
    task = ImageTask(cfg)
    torch.manual_seed(0)
    built = task.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=Path(cfg.out)))
    model_ = built.model
    if "channels_last" in variant:
        model_ = model_.to(memory_format=torch.channels_last)
    forward = torch.compile(model_) if "compile" in variant else model_
    opt = torch.optim.Adam([p for p in model_.parameters() if p.requires_grad], lr=1e-4)
    return task, model_, forward, opt


def measure(data: str, variant: str, *, steps: int, warmup: int, model: dict, depth_mode: str, batch: int,
            crop: int) -> dict:
    """Median seconds per optimizer step of one variant (and the first step's time, compile included)."""
    task, model_, forward, opt = _task(data, variant, model, depth_mode, batch, crop)
    model_.train()
    times = []
    for i in range(warmup + steps):
        x = task.batch(i)
        if "channels_last" in variant:
            x = (x[0].contiguous(memory_format=torch.channels_last), *x[1:])
        t0 = time.perf_counter()
        loss, _ = task.loss(forward, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times[warmup:])
    return {"variant": variant, "s_per_step": med, "steps_per_s": 1 / med, "first_step_s": times[0]}


def _tiny_folder() -> str:
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (72, 80, 3), dtype=np.uint8)).save(folder / f"t{i}.png")
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "photos"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--stages", type=int, default=16)
    ap.add_argument("--depth-mode", default="rd")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_throughput.json")
    ap.add_argument("--quick", action="store_true", help="2 steps of float32 and bf16 on tiny images (smoke run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    if args.quick:
        args.data, args.steps, args.warmup, args.batch, args.crop = _tiny_folder(), 2, 1, 2, 32
        variants = ["float32", "bf16"]
    model = {"num_stages": args.stages, "depth_input": True}
    rows = []
    for v in variants:
        try:
            rows.append(measure(args.data, v, steps=args.steps, warmup=args.warmup, model=model,
                                depth_mode=args.depth_mode, batch=args.batch, crop=args.crop))
        except Exception as e:  # a variant this torch build cannot run is reported, not fatal
            rows.append({"variant": v, "error": f"{type(e).__name__}: {e}"[:300]})
        r = rows[-1]
        print(f"{v:22s} " + (f"{r['steps_per_s']:.2f} steps/s ({1000 * r['s_per_step']:.0f} ms/step; first step "
                             f"{r['first_step_s']:.1f} s)" if "error" not in r else r["error"]), flush=True)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": args.threads, "batch": args.batch, "crop": args.crop,
                                        "stages": args.stages, "depth_mode": args.depth_mode,
                                        "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
