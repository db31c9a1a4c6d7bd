"""Training: one loop (`loop.TrainingLoop`) and one `loop.Task` per model.

loop.py         the loop, its config (`LoopConfig`) and the task interface
schedule.py     learning-rate schedule; checkpoint.py: checkpoint files, RNG states, run-defining settings
runlog.py       the JSONL log; signals.py: SIGTERM/SIGINT as a clean stop; distributed.py: torchrun / DDP
image_model.py  the image VQ-VAE task (`train_image`); image_prior.py: the image prior task and its pipeline
                (`ImagePriorTrainConfig`, `train_image_prior`: index maps, run, integer export)
audio_model.py  the speech VQ-VAE task (`train_audio`); audio_prior.py: the audio prior task and its pipeline
                (`AudioPriorTrainConfig`, `train_audio_prior`: run, integer export)
speaker_decoder.py  the speaker-conditioned decoder (`train_speaker_decoder`)
"""
