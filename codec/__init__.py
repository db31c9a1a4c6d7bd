"""vqcodec: a learned codec for images and audio built on a residual VQ-VAE.

Data flow, input file to .vq and back (read the folder names in this order):
  api.py                     public entry points: encode_image, encode_audio, decode, inspect, max_quality, max_layers
  registry.py                which installed model components a file names; loads the codec that decodes it
  contract.py                what the API expects of a codec (the Codec protocol) and the checks both share
  limits.py                  size limits of encoding and decoding, and the one decode-size check
  image/, audio/             one folder per modality: its model (encoder -> latents -> decoder), its codec
                             pipeline, its data loading, its float and integer prior nets
  quantization/              latents -> residual-VQ indices (kernels/ does the nearest-code search)
  integer/                   exact integer inference of the priors (layers, lookup tables, scheduler)
  coding/                    one stage-coding path: indices + prior frequencies -> one stream per stage
  bitstream/                 range coding (entropy.py) and the .vq container (container.py, FORMAT.md)
  weights/                   the shipped safetensors files and their MANIFEST.json
  training/                  the shared training loop and one task per trainable thing (never imported
                             by inference)
  cli/                       the `vqcodec` command, through the public API
"""
if __name__ != "vqcodec":  # the repository's codec/ folder imported as a top-level package
    raise ImportError(f"the repository's codec/ folder is installed as the vqcodec package; import vqcodec, not "
                      f"{__name__} (as two names it would load twice, e.g. with two VQFormatError classes)")

from vqcodec.version import __version__  # noqa: E402
from vqcodec.bitstream.errors import VQFormatError  # noqa: E402

from .pillow_plugin import register_pillow  # noqa: E402

register_pillow()  # Image.open / Image.save of .vq images (codec/pillow_plugin.py); loads no model

__all__ = ["__version__", "VQFormatError", "encode_image", "encode_audio", "decode", "decode_indices", "inspect",
           "max_layers", "max_quality", "sample_image", "register_pillow", "convert_speaker", "list_speakers"]

_FROM_API = frozenset(__all__) - {"__version__", "VQFormatError", "register_pillow"}


def __getattr__(name: str):
    """The API's functions (`vqcodec.decode`, ...) and `vqcodec.api`, imported on first use, so that
    `import vqcodec` (and the commands that need no model: `vqcodec --help`, `vqcodec info`) does not
    import torch (PEP 562)."""
    if name in _FROM_API or name == "api":
        import importlib

        api = importlib.import_module("vqcodec.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'vqcodec' has no attribute {name!r}")
