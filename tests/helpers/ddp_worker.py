"""Run by tests/test_train_image.py under `torchrun --nproc_per_node 2`: a few DDP training steps, then
each rank writes a digest of its full model state (parameters and codebook buffers) to OUT/rank{r}.txt.

Usage: ddp_worker.py DATA OUT [straight|stop|resume]: all 4 steps, stop at step 2, or resume to step 4."""
import hashlib
import os
import sys


from vqcodec.training.image_model import TrainImageConfig, train_image

SMALL = dict(latent_dim=8, num_stages=2, num_codes=16, width_low=32, width_mid=16, width_high=8,
             enc_blocks=1, dec_blocks=1)

if __name__ == "__main__":
    data, out = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "straight"
    model = train_image(TrainImageConfig(data=data, out=out, steps=4, batch_size=2, crop=32, warmup_steps=1,
                                         checkpoint_every=6000, threads=1, bf16=False, model=SMALL,
                                         log_every=1, stop_at_step=2 if mode == "stop" else None,
                                         resume=mode == "resume"))
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    with open(os.path.join(out, f"rank{os.environ['RANK']}.txt"), "w") as f:
        f.write(h.hexdigest())
