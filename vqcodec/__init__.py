"""vqcodec: a learned image codec built on a residual VQ-VAE.

Data flow (read the file names in this order):
  vqcodec/api.py            public entry points (encode_image, decode, max_quality)
  codec/image_model.py      encoder -> latents, decoder <- latents (float nets)
  codec/quantizer.py        latents -> residual VQ indices (kernels/ does the nearest-code search)
  codec/prior_*.py          autoregressive priors giving probabilities of the indices
  bitstream/entropy.py      indices + probabilities -> range-coded bytes (constriction)
  bitstream/container.py    the .vq file header and stream layout
"""
__version__ = "0.1.0"

from vqcodec.bitstream.errors import VQFormatError  # noqa: E402

from .api import decode, encode_image, max_quality  # noqa: E402

__all__ = ["__version__", "VQFormatError", "encode_image", "decode", "max_quality"]
