"""The .vq file format: container (header, chunks, CRC) and range coding of indices.

- `container`: format version 2 — `read_file` (reads versions 1 and 2), `write_file`, `truncate`,
  `inspect`, `VQFile`, `Chunk`, `ChunkType`, `ModelComponent`, `ImageGeometry`, `AudioGeometry`,
  `metadata_chunk`, `segment_table_chunk`; and the version-1 path still used by the image codec:
  `pack`, `unpack`, `read_header`, `check_model`, `VQHeader`.
- `chunks`: chunk types and payload layouts of version 2.
- `entropy`: `IndexEncoder`, `IndexDecoder`, `cross_entropy_bits` (constriction range coder).
- `errors`: `VQFormatError`, the only exception raised for bad file data.

The byte-level specification is FORMAT.md in this folder.
"""
from .container import (
    CHUNK_HEADER_BYTES,
    FIRST_FUTURE_TYPE,
    FIRST_PRIVATE_TYPE,
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    MAX_CHUNKS,
    MAX_IMAGE_SIDE,
    MAX_LAYER,
    MAX_MODEL_ID_BYTES,
    MAX_STAGES,
    MIN_FILE_BYTES,
    MIN_V2_FILE_BYTES,
    V1_FORMAT_VERSION,
    WEIGHTS_HASH_BYTES,
    AudioGeometry,
    ChannelLayout,
    Chunk,
    ChunkType,
    Geometry,
    ImageGeometry,
    ModelComponent,
    Modality,
    VQFile,
    VQHeader,
    check_model,
    hash_weights,
    inspect,
    metadata_chunk,
    pack,
    read_file,
    read_header,
    segment_table_chunk,
    truncate,
    unpack,
    write_file,
)
from .entropy import MAX_ALPHABET, MAX_ROW_SUM, IndexDecoder, IndexEncoder, cross_entropy_bits
from .errors import VQFormatError

__all__ = [
    # format version 2 (read_file / truncate / inspect also read version 1)
    "FORMAT_VERSION",
    "V1_FORMAT_VERSION",
    "MAGIC",
    "HEADER_BYTES",
    "CHUNK_HEADER_BYTES",
    "MAX_CHUNKS",
    "MAX_LAYER",
    "MIN_V2_FILE_BYTES",
    "FIRST_FUTURE_TYPE",
    "FIRST_PRIVATE_TYPE",
    "VQFile",
    "Chunk",
    "ChunkType",
    "ModelComponent",
    "ImageGeometry",
    "AudioGeometry",
    "Geometry",
    "read_file",
    "inspect",
    "write_file",
    "truncate",
    "metadata_chunk",
    "segment_table_chunk",
    "hash_weights",
    "ChannelLayout",
    "Modality",
    # format version 1 path (kept until the image codec writes version 2)
    "MAX_IMAGE_SIDE",
    "MAX_MODEL_ID_BYTES",
    "MAX_STAGES",
    "MIN_FILE_BYTES",
    "WEIGHTS_HASH_BYTES",
    "VQHeader",
    "check_model",
    "pack",
    "read_header",
    "unpack",
    # range coding and errors
    "MAX_ALPHABET",
    "MAX_ROW_SUM",
    "IndexEncoder",
    "IndexDecoder",
    "cross_entropy_bits",
    "VQFormatError",
]
