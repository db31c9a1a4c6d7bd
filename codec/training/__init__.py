"""Training: one loop (`loop.TrainingLoop`) and one `loop.Task` per model.

loop.py         the loop, its config (`LoopConfig`) and the task interface
schedule.py     learning-rate schedule; checkpoint.py: checkpoint files, RNG states, run-defining settings
runlog.py       the JSONL log; signals.py: SIGTERM/SIGINT as a clean stop; distributed.py: torchrun / DDP
image_model.py  the image VQ-VAE task (`train_image`); image_prior.py: the image prior task (`train_prior`)
"""
