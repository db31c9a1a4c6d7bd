#!/bin/bash
# Issue #23, session 17: a cooldown branch of an adversary run (constant lr -> linear to the floor over N steps), on a
# copy of its folder. Usage: ./conversion_adv_cooldown.sh SRC DST W N. Resume: the same command.
. ~/venv/bin/activate
cd ~/vqcodec-runs
src=$1; dst=$2; w=$3; n=$4; shift 4
if [ ! -d $dst ]; then
  cp -a $src $dst.tmp && mv $dst.tmp $dst
  python3 -c "import torch; print(torch.load('$dst/checkpoint.pt', map_location='cpu', weights_only=False)['step'])" > $dst/branch_step
fi
step=$(cat $dst/branch_step)
exec vqcodec train conversion --data /work/shared/data/speech --speakers-csv ~/vqcodec-runs/data/conversion_speakers.csv \
  --exclude-speakers so762_0739,so762_0960,so762_1336,so762_1372,so762_2016,so762_2022,so762_2380,so762_2488 \
  --out ~/vqcodec-runs/$dst --resume --schedule constant --steps $((step + n)) --cooldown-steps $n --threads 1 \
  --val-every 500 --log-every 50 --checkpoint-every 300 --no-progress --pitch harvest --adversary $w \
  --init-from ~/vqcodec-runs/data/audio_conversion_s2c2.safetensors --model '{"content_stages": 2}' \
  "$@" >> ~/vqcodec-runs/$dst.log 2>&1
