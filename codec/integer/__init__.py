"""Exact integer inference for priors of any modality (nothing here knows about images or audio).

- `ops`: exact integer matmul, requantization, lookup tables, logits -> frequencies (integer primitives).
- `layers`: IntLinear, IntDepthwiseConv2d, GateLuts (tanh x sigmoid), ExpFreqs; the fixed-point format
  and the argument that float64-held integer arithmetic is exact.
- `scheduler`: IncrementalScheduler, the coding order and incremental decoding of a causal network
  described as a CausalGraph over an N-d grid (2-D images, 1-D sequences).
- `quantize`: post-training quantization of float layers into integer layers.
- `prior_file`: the integer-prior file format (safetensors integers + a format tag).

Priors built from these: vqcodec.image.prior_integer.IntegerImagePrior.
"""
