#!/bin/bash
# Issue #20: a cooldown branch of a decoder run (constant lr -> linear to the floor over N steps), on a copy of the
# run so that the run itself can go on. Usage: ./decoder_cooldown.sh SRC DST N [the run's options...]
# Resume: the same command (the copy is made once; DST's checkpoint then resumes with the same --steps).
. ~/venv/bin/activate
cd ~/vqcodec-runs
src=$1; dst=$2; n=$3; shift 3
if [ ! -d $dst ]; then
  cp -a $src $dst.tmp && mv $dst.tmp $dst
  python3 -c "import torch; print(torch.load('$dst/checkpoint.pt', map_location='cpu', weights_only=False)['step'])" > $dst/branch_step
fi
step=$(cat $dst/branch_step)
exec ./decoder_run.sh $dst "$@" --steps $((step + n)) --cooldown-steps $n --val-every $((n / 2))
