"""make_wk_decoder.py RUN WKDIR [MODEL_ID]: a weights folder (VQCODEC_WEIGHTS_DIR, no manifest) holding the shipped v4
image model, v5 prior and refinement model, and RUN's decoder (from RUN's image_model.safetensors) as a decoder-stage
component (float16): the codec that 0.7.0 would ship with that decoder."""
import shutil, sys
from pathlib import Path
from vqcodec.image.decoder_stage import save_image_decoder
from vqcodec.image.model import load_image_model
run, wk = Path(sys.argv[1]), Path(sys.argv[2])
model_id = sys.argv[3] if len(sys.argv) > 3 else f"image-decoder-{run.name}"
wk.mkdir(parents=True, exist_ok=True)
w = Path("/work/main/codec/weights")
shutil.copy(w / "image_vqvae_v4.safetensors", wk / "image_vqvae.safetensors")
shutil.copy(w / "image_prior_v5.safetensors", wk / "image_prior.safetensors")
shutil.copy(w / "image_refinement_v1.safetensors", wk / "image_refinement.safetensors")
model, _ = load_image_model(run / "image_model.safetensors")
save_image_decoder(wk / "image_decoder.safetensors", model.decoder, model.cfg, model_id,
                   w / "image_vqvae_v4.safetensors", "image-f8-s2-k512-d128-v4")
print("wrote", wk)
