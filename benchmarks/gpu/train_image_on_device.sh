#!/usr/bin/env bash
# Train the image model on a CUDA GPU in one command: what the device machine (the `run` tool) runs, from the
# repository root. Tested on the CPU only (VQ_DEVICE=cpu, tests/test_train_device.py).
#
#   bash benchmarks/gpu/train_image_on_device.sh [OPTIONS of vqcodec train image...]
#
# runs
#   vqcodec -v train image --data gpu_pack/photos --device cuda --holdout 12 --out "$OUT/run" --threads 8
#       --batch-size 64 --steps 100000 --schedule constant --weight-ema 0.999 --tournament 2 --channels-last
#       --max-minutes 7 --checkpoint-every 60 --log-every 50 --val-every 500 --no-progress [OPTIONS...]
# (bf16 autocast is the trainer's default; an option given again in OPTIONS wins), e.g. to continue the shipped model:
#   ... --init-from codec/weights/image_vqvae_v4.safetensors --stages 2 --latent-dim 128 --refine-levels 5 \
#       --refine-prob 0.5 --depth-input
# The run stops itself after --max-minutes of training (the clock starts after the photos are loaded) with a
# checkpoint, well inside the device's 10-minute command limit; SIGTERM at VQ_TIME_LIMIT_S=540 s after the start is
# the backstop. Not resumable across calls ($OUT is emptied, a fresh machine is bare): continue a GPU run with
# --init-from its exported weights.
#
# The device machine must have: python3 with a CUDA build of torch, numpy, pillow, click, tqdm and safetensors (the
# lent machines' image has them) and constriction (it has not: its wheel travels in gpu_pack/wheels/). vqcodec is
# installed from the carried checkout with `pip install -e . --no-deps --no-build-isolation` when `import vqcodec`
# fails or finds another copy. Prepare here (CPU), once:
#   python benchmarks/gpu/pack_photos.py --data ../shared/data/photos --out gpu_pack/photos --max-mib 40
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d gpu_pack/wheels constriction==0.5.0
# (gpu_pack/ is git-ignored; the working tree and the carried paths travel together, at most 64 MiB, and the tracked
# tree alone is 83 MiB: `bash benchmarks/gpu/slim_tree.sh on` leaves out what a training call does not need, about
# 13 MiB stay; `slim_tree.sh size` checks the total, `slim_tree.sh off` after the call.) The call:
#   bash benchmarks/gpu/slim_tree.sh on
#   run(command="bash benchmarks/gpu/train_image_on_device.sh", carry=["gpu_pack"], timeout_s=600)
#   bash benchmarks/gpu/slim_tree.sh off
# What comes back, in $OUT/run (at most 8 files of 16 MiB, 64 MiB in all): train.log (this script's output: the
# environment, nvidia-smi, the trainer's log lines), log.jsonl (the run's log: losses, samples_per_s, validation),
# image_model.safetensors (the exported weights: the weight average; a file over 15 MiB comes as .part1, .part2...),
# checkpoint.pt only if it fits (a full-size model's, about 70 MB, stays in VQ_KEEP_DIR on the device), and
# RETURNED.json (parts and sha256). Join the parts here:
#   python benchmarks/gpu/collect_run.py join <files_at>/run --to runs/gpu_image
#
# Environment: OUT (required), VQ_DEVICE (cuda; cpu for a smoke test), VQ_DATA (gpu_pack/photos), VQ_THREADS (8),
# VQ_MAX_MINUTES (7), VQ_TIME_LIMIT_S (540), VQ_KEEP_DIR (/tmp/vq_device_run), VQ_INSTALL (1; 0: never pip install),
# PYTHON (python3). Smoke test here:
#   VQ_DEVICE=cpu OUT=/tmp/x bash benchmarks/gpu/train_image_on_device.sh --steps 2 --batch-size 2 --crop 32
source "$(dirname "$0")/device_env.sh"

vq_main image --data "$VQ_DATA" --device "$VQ_DEVICE" --holdout 12 --out "$OUT/run" --threads "${VQ_THREADS:-8}" \
    --batch-size 64 --steps 100000 --schedule constant --weight-ema 0.999 --tournament 2 --channels-last \
    --max-minutes "${VQ_MAX_MINUTES:-7}" --checkpoint-every 60 --log-every 50 --val-every 500 --no-progress "$@"
