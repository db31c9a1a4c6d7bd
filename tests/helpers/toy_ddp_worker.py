"""Run by tests/test_training_loop.py under `torchrun --nproc_per_node 2`: the toy task with DDP; each
rank writes OUT/rank{r}.json with a digest of its model, its step and its stop reason.

Usage: toy_ddp_worker.py OUT [straight|sigterm1]: all 8 steps, or rank 1 alone gets SIGTERM at step 2."""
import hashlib
import json
import os
import sys

from toy_task import ToyConfig, ToyTask

from vqcodec.training.loop import TrainingLoop

if __name__ == "__main__":
    out = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "straight"
    cfg = ToyConfig(out=out, threads=1, log_every=1,
                    signal_at_step=2 if mode == "sigterm1" else None, signal_rank=1)
    result = TrainingLoop(ToyTask(cfg)).run()
    h = hashlib.sha256()
    for k, v in sorted(result.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump({"digest": h.hexdigest(), "step": result.step, "reason": result.stop_reason}, f)
