"""The writer of the release_*/ folders' files (each folder's make.py calls it under the release it names)."""
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image


def make(out: str, version: str, cases: dict[str, tuple[tuple[int, int], int]]) -> dict:
    """Encode crops of Kodak kodim23.png at (x 280, y 160), name -> ((width, height), quality), with the vqcodec
    on the path (which must be `version`) into `out`: NAME.vq, NAME.decoded.png (what it decodes) and
    expected.json (quality, layers, the decoded indices' shape and SHA-256, int64 little-endian)."""
    import vqcodec

    assert vqcodec.__version__ == version, vqcodec.__file__
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    im = np.asarray(Image.open(Path(__file__).resolve().parents[2] / "data/kodak/kodim23.png").convert("RGB"))
    expected = {}
    for name, ((w, h), q) in cases.items():
        crop = np.ascontiguousarray(im[160:160 + h, 280:280 + w])
        data = vqcodec.encode_image(crop, quality=q)
        (folder / f"{name}.vq").write_bytes(data)
        info = vqcodec.inspect(data)
        idx = vqcodec.decode_indices(data)
        Image.fromarray(np.asarray(vqcodec.decode(data))).save(folder / f"{name}.decoded.png")
        expected[name] = {"width": w, "height": h, "quality": q, "layers": info.layers,
                          "indices_shape": list(idx.shape),
                          "indices_sha256": hashlib.sha256(idx.numpy().astype("<i8").tobytes()).hexdigest()}
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    return expected
