"""Write this folder's files with vqcodec 0.4.1: PYTHONPATH=<a 0.4.1 checkout> python make.py OUT."""
import hashlib, json, sys
from pathlib import Path
import numpy as np
from PIL import Image
import vqcodec
assert vqcodec.__version__ == "0.4.1", vqcodec.__file__
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
im = np.asarray(Image.open(Path(__file__).resolve().parents[3] / "data/kodak/kodim23.png").convert("RGB"))
cases = {"kodim23_crop_64x48_q10": ((64, 48), 10), "kodim23_crop_96x64_q60": ((96, 64), 60),
         "kodim23_crop_256x192_q100": ((256, 192), 100)}
expected = {}
for name, ((w, h), q) in cases.items():
    crop = np.ascontiguousarray(im[160:160 + h, 280:280 + w])
    data = vqcodec.encode_image(crop, quality=q)
    (out / f"{name}.vq").write_bytes(data)
    info = vqcodec.inspect(data)
    idx = vqcodec.decode_indices(data)
    Image.fromarray(np.asarray(vqcodec.decode(data))).save(out / f"{name}.decoded.png")
    expected[name] = {"width": w, "height": h, "quality": q, "layers": info.layers, "indices_shape": list(idx.shape),
                      "indices_sha256": hashlib.sha256(idx.numpy().astype("<i8").tobytes()).hexdigest()}
(out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(expected)
