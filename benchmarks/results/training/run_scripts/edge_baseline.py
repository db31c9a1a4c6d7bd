"""edge_baseline.py OUT_JSON [DECODER_FILE ...]: the image-decoder task's validation (centres and edges) of v4's own
decoder and of each decoder-stage file, on the held-out photos (the shared codec-input cache)."""
import json, sys
from pathlib import Path
import torch
from vqcodec.training.image_decoder import ImageDecoderTask, TrainImageDecoderConfig
from vqcodec.training.loop import RunContext
torch.set_num_threads(1)
out = {}
for dec in [None] + sys.argv[2:]:
    run = Path("/tmp/edge_baseline_run"); run.mkdir(exist_ok=True)
    link = run / "codec_inputs"
    if not link.exists():
        link.symlink_to("/root/vqcodec-runs/decoder_cache/codec_inputs")
    cfg = TrainImageDecoderConfig(data="/work/shared/data/photos", out=str(run), holdout=12, init_decoder=dec, threads=1)
    task = ImageDecoderTask(cfg)
    model = task.build(RunContext(0, 1, False, run)).model
    out[dec or "v4"] = task.validate(model)["val"]
    print(dec or "v4", {k: round(v, 3) for k, v in out[dec or "v4"].items() if k.startswith(("edge", "q30", "level5", "q6"))})
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
