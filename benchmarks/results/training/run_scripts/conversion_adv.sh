#!/bin/bash
# Issue #23, session 17: the 2-stage conversion model with a speaker adversary on its content code (gradient reversal,
# --adversary W), started from conversion_s2c2's export (data/audio_conversion_s2c2.safetensors: the
# 2-stage model of benchmarks/results/audio/conversion_s2c2_step8896); constant lr 3e-4. The Harvest pitch cache is copied from conversion_s2c2 (the same files).
# Usage: ./conversion_adv.sh RUN W. Resume: the same command.
. ~/venv/bin/activate
cd ~/vqcodec-runs
run=$1; w=$2; shift 2
mkdir -p $run
[ -f $run/train_cache.pt ] || cp conversion_s2c2/train_cache.pt $run/train_cache.pt
resume=""; [ -f $run/checkpoint.pt ] && resume="--resume"
exec vqcodec train conversion --data /work/shared/data/speech --speakers-csv ~/vqcodec-runs/data/conversion_speakers.csv \
  --exclude-speakers so762_0739,so762_0960,so762_1336,so762_1372,so762_2016,so762_2022,so762_2380,so762_2488 \
  --out ~/vqcodec-runs/$run $resume --schedule constant --steps 200000 --threads 1 --val-every 500 \
  --log-every 50 --checkpoint-every 300 --no-progress --pitch harvest --adversary $w \
  --init-from ~/vqcodec-runs/data/audio_conversion_s2c2.safetensors --model '{"content_stages": 2}' \
  "$@" >> ~/vqcodec-runs/$run.log 2>&1
