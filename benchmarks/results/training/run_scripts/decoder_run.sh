#!/bin/bash
# Issue #20 decoder pilots (session 14): fine-tune v4's decoder on the codec's own inputs (vqcodec train image-decoder);
# encoder, codebooks and every file's bits stay fixed. Usage: ./decoder_run.sh RUN [options...]; resume: the same command.
# Runs share one codec-input cache (decoder_cache/codec_inputs, symlinked into each run before its first start).
. ~/venv/bin/activate
cd ~/vqcodec-runs
run=$1; shift
mkdir -p $run
[ -e $run/codec_inputs ] || ln -s ~/vqcodec-runs/decoder_cache/codec_inputs $run/codec_inputs
resume=""; [ -f $run/checkpoint.pt ] && resume="--resume"
exec vqcodec train image-decoder --data /work/shared/data/photos --out ~/vqcodec-runs/$run $resume --holdout 12 \
  --schedule constant --lr 1e-4 --warmup-steps 100 --weight-ema 0.999 --steps 400000 --threads 1 --val-every 2000 \
  --log-every 200 --checkpoint-every 300 --model-id image-decoder-$run --no-progress "$@" >> ~/vqcodec-runs/$run.log 2>&1
