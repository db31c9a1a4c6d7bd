#!/bin/bash
# Issue #23, session 16: a cooldown branch of conversion_s2 (constant lr -> linear to the floor over N steps), on a
# copy of the run folder. Usage: ./conversion_s2_cooldown.sh DST N. Resume: the same command.
. ~/venv/bin/activate
cd ~/vqcodec-runs
dst=$1; n=$2; shift 2
if [ ! -d $dst ]; then
  cp -a conversion_s2 $dst.tmp && mv $dst.tmp $dst
  python3 -c "import torch; print(torch.load('$dst/checkpoint.pt', map_location='cpu', weights_only=False)['step'])" > $dst/branch_step
fi
step=$(cat $dst/branch_step)
exec vqcodec train conversion --data /work/shared/data/speech --speakers-csv ~/vqcodec-runs/data/conversion_speakers.csv \
  --exclude-speakers so762_0739,so762_0960,so762_1336,so762_1372,so762_2016,so762_2022,so762_2380,so762_2488 \
  --out ~/vqcodec-runs/$dst --resume --schedule constant --steps $((step + n)) --cooldown-steps $n --threads 1 \
  --val-every 500 --log-every 50 --checkpoint-every 300 --no-progress --pitch harvest \
  --init-from ~/vqcodec-runs/data/audio_conversion_v1.safetensors --model '{"content_stages": 2}' \
  "$@" >> ~/vqcodec-runs/$dst.log 2>&1
