"""The .vq file format: container (header, stage streams, CRC) and range coding of indices.

- `container`: `pack`, `unpack`, `truncate`, `read_header`, `check_model`, `VQHeader`.
- `entropy`: `IndexEncoder`, `IndexDecoder`, `cross_entropy_bits` (constriction range coder).
- `errors`: `VQFormatError`, the only exception raised for bad file data.

The byte-level specification is FORMAT.md in this folder.
"""
from .container import (
    FORMAT_VERSION,
    MAGIC,
    MAX_IMAGE_SIDE,
    MAX_MODEL_ID_BYTES,
    MAX_STAGES,
    MIN_FILE_BYTES,
    WEIGHTS_HASH_BYTES,
    ChannelLayout,
    Modality,
    VQHeader,
    check_model,
    hash_weights,
    pack,
    read_header,
    truncate,
    unpack,
)
from .entropy import MAX_ALPHABET, MAX_ROW_SUM, IndexDecoder, IndexEncoder, cross_entropy_bits
from .errors import VQFormatError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_IMAGE_SIDE",
    "MAX_MODEL_ID_BYTES",
    "MAX_STAGES",
    "MIN_FILE_BYTES",
    "WEIGHTS_HASH_BYTES",
    "MAX_ALPHABET",
    "MAX_ROW_SUM",
    "ChannelLayout",
    "Modality",
    "VQHeader",
    "VQFormatError",
    "check_model",
    "hash_weights",
    "pack",
    "read_header",
    "truncate",
    "unpack",
    "IndexEncoder",
    "IndexDecoder",
    "cross_entropy_bits",
]
