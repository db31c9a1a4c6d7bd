#!/bin/bash
# Speaker-conversion model (issue #23) on one core. Data: speechocean762 (28 training speakers x 20 utterances; the 8
# held-out speakers below are never trained on) + LibriSpeech train-clean-100 (251 speakers x 1), speakers from
# ~/vqcodec-runs/data/conversion_speakers.csv (speechocean's MANIFEST speaker column; LibriSpeech ids prefixed "ls").
# Resume: the same command (adds --resume when the checkpoint exists).
. ~/venv/bin/activate
cd ~/vqcodec-runs
resume=""; [ -f conversion/checkpoint.pt ] && resume="--resume"
exec vqcodec train conversion --data /work/shared/data/speech --speakers-csv ~/vqcodec-runs/data/conversion_speakers.csv \
  --exclude-speakers so762_0739,so762_0960,so762_1336,so762_1372,so762_2016,so762_2022,so762_2380,so762_2488 \
  --out ~/vqcodec-runs/conversion $resume --schedule constant --steps 200000 --threads 1 --val-every 500 \
  --log-every 50 --checkpoint-every 300 --no-progress "$@" >> ~/vqcodec-runs/conversion.log 2>&1
