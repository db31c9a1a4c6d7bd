"""Write this folder's files with vqcodec 0.5.0: PYTHONPATH=<a 0.5.0 package> python make.py OUT."""
import hashlib, json, sys
from pathlib import Path
import numpy as np
import soundfile as sf
import vqcodec
assert vqcodec.__version__ == "0.5.0", vqcodec.__file__
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
clip, rate = sf.read(Path(__file__).resolve().parents[3] / "data/speech/ljspeech/LJ001-0002.wav", dtype="float32")
expected = {}
for name, q in {"LJ001-0002_q3": 3, "LJ001-0002_q16": 16}.items():
    data = vqcodec.encode_audio(clip, rate, quality=q)
    (out / f"{name}.vq").write_bytes(data)
    info = vqcodec.inspect(data)
    idx = vqcodec.decode_indices(data)
    samples, out_rate = vqcodec.decode(data)
    sf.write(out / f"{name}.decoded.wav", samples, out_rate, subtype="PCM_16")
    expected[name] = {"quality": q, "layers": info.layers, "sample_rate": out_rate, "num_samples": len(samples),
                      "indices_shape": list(idx.shape),
                      "indices_sha256": hashlib.sha256(idx.numpy().astype("<i8").tobytes()).hexdigest()}
(out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(expected)
