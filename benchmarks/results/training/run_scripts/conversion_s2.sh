#!/bin/bash
# Issue #23, session 16: the conversion model with a 2-stage content code (450 bit/s), started from the shipped
# audio-conversion-v1 (every tensor but the new stage; a copy of its file, retired in 0.8.0, kept at
# ~/vqcodec-runs/data/ or from git: git show 670d67b:codec/weights/audio_conversion_v1.safetensors). Data and split as
# conversion.sh. Resume: the same command.
. ~/venv/bin/activate
cd ~/vqcodec-runs
resume=""; [ -f conversion_s2/checkpoint.pt ] && resume="--resume"
exec vqcodec train conversion --data /work/shared/data/speech --speakers-csv ~/vqcodec-runs/data/conversion_speakers.csv \
  --exclude-speakers so762_0739,so762_0960,so762_1336,so762_1372,so762_2016,so762_2022,so762_2380,so762_2488 \
  --out ~/vqcodec-runs/conversion_s2 $resume --schedule constant --steps 200000 --threads 1 --val-every 500 \
  --log-every 50 --checkpoint-every 300 --no-progress --pitch harvest \
  --init-from ~/vqcodec-runs/data/audio_conversion_v1.safetensors --model '{"content_stages": 2}' \
  "$@" >> ~/vqcodec-runs/conversion_s2.log 2>&1
