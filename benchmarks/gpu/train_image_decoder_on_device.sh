#!/usr/bin/env bash
# Fine-tune the image decoder on the codec's inputs (vqcodec train image-decoder) on a CUDA GPU in one command: what
# the device machine (the `run` tool) runs, from the repository root. Tested on the CPU only.
#
#   bash benchmarks/gpu/train_image_decoder_on_device.sh [OPTIONS of vqcodec train image-decoder...]
#
# runs
#   vqcodec -v train image-decoder --data gpu_pack/photos --device cuda --holdout 12 --out "$OUT/run" --threads 16
#       --batch-size 64 --steps 200000 --schedule constant --max-minutes 4 --checkpoint-every 60 --log-every 50
#       --val-every 500 --no-progress [OPTIONS...]
# with the installed (default) image model, prior and refinement; --model/--prior/--refinement name others. The
# codec-input cache (every photo through the codec's encoder policy) is built first on the machine's CPU cores, in
# VQ_KEEP_DIR/codec_inputs (OUT/run/codec_inputs links there, so the cache does not count against what comes back);
# --max-minutes counts from the end of that build, so keep it small enough for build + training + the final
# checkpoint to end before VQ_TIME_LIMIT_S (540 s; SIGTERM then).
#
# Machine, preparation, call and what comes back: as benchmarks/gpu/train_image_on_device.sh says, with this script:
#   bash benchmarks/gpu/slim_tree.sh on     # the working tree must fit beside gpu_pack/ (64 MiB together)
#   run(command="bash benchmarks/gpu/train_image_decoder_on_device.sh", carry=["gpu_pack"], timeout_s=600)
#   bash benchmarks/gpu/slim_tree.sh off
# Environment: as there (VQ_THREADS default 16, VQ_MAX_MINUTES default 4). Smoke test here:
#   VQ_DEVICE=cpu VQ_DATA=DIR OUT=/tmp/x bash benchmarks/gpu/train_image_decoder_on_device.sh --holdout 1 --steps 2 \
#       --batch-size 2 --crop 32 --vq-qualities 6 --refined-qualities 26
source "$(dirname "$0")/device_env.sh"

mkdir -p "${OUT:?set OUT to the folder whose files come back (the device tool sets it)}/run" "$VQ_KEEP_DIR/codec_inputs"
[ -e "$OUT/run/codec_inputs" ] || ln -s "$VQ_KEEP_DIR/codec_inputs" "$OUT/run/codec_inputs"

vq_main image-decoder --data "$VQ_DATA" --device "$VQ_DEVICE" --holdout 12 --out "$OUT/run" \
    --threads "${VQ_THREADS:-16}" --batch-size 64 --steps 200000 --schedule constant \
    --max-minutes "${VQ_MAX_MINUTES:-4}" --checkpoint-every 60 --log-every 50 --val-every 500 --no-progress "$@"
