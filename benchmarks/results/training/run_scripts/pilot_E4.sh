#!/bin/bash
# Issue #20 pilot E4 (session 15): E1 with a commitment weight of 0.03 and the encoder at 0.1x. E1 (session 15): the low end through the transform without changing the code alphabet: encoder and
# decoder of v4 + c1's decoder trained through v4's FROZEN codebooks (--freeze-codebooks), refinement levels drawn
# 3:2:1:1:1 (the 26..31.5 dB window is VQ depth 1..2 + refinement levels 1..2). The prior and refinement tables stay
# usable; their fit to the new indices is measured on Kodak. Resume: the same command.
. ~/venv/bin/activate
cd ~/vqcodec-runs
resume=""; [ -f pilot_E4/checkpoint.pt ] && resume="--resume"
exec vqcodec train image --data /work/shared/data/photos --out ~/vqcodec-runs/pilot_E4 $resume --holdout 12 \
  --stages 2 --latent-dim 128 --refine-levels 5 --init-from ~/vqcodec-runs/decoder_D6c1/image_model.safetensors \
  --freeze-codebooks --commitment active --commitment-weight 0.03 --encoder-lr-scale 0.1 --schedule constant --lr 5e-5 --warmup-steps 100 --weight-ema 0.999 \
  --tournament 2 --channels-last --depth-mode crop --refine-prob 0.5 --refine-level-weights 3,2,1,1,1 \
  --steps 400000 --threads 1 --val-every 500 --log-every 100 --model-id image-f8-s2-k512-d128-pilotE4 \
  --no-progress "$@" >> ~/vqcodec-runs/pilot_E4.log 2>&1
