"""The .vq file format: container (header, chunks, CRC) and range coding of indices.

- `container`: format version 2 — `read_file` (reads versions 1 and 2), `write_file`, `truncate`,
  `inspect`, `VQFile`, `Chunk`, `ChunkType`, `ModelComponent`, `ImageGeometry`, `AudioGeometry`,
  `metadata_chunk`, `segment_table_chunk`. Nothing writes version 1 any more; `read_file` and `truncate`
  still read it (through `v1`, the legacy layout, which is not part of this package's interface).
- `chunks`: chunk types and payload layouts of version 2; the "settings" METADATA value (`settings_chunk`,
  `decode_settings`, `SETTINGS_KEY`: the quality and effort a file was made at).
- `entropy`: `IndexEncoder`, `IndexDecoder`, `cross_entropy_bits` (constriction range coder).
- `errors`: `VQFormatError`, the only exception raised for bad file data.

The byte-level specification is FORMAT.md in this folder.
"""
if __name__ != "vqcodec.bitstream":  # the repository's bitstream/ folder imported as a top-level package
    raise ImportError(f"the repository's bitstream/ folder is installed as vqcodec.bitstream; import vqcodec.bitstream, not "
                      f"{__name__} (as two names it would load twice, e.g. with two VQFormatError classes)")

from .container import (
    FIRST_FUTURE_TYPE,
    FIRST_PRIVATE_TYPE,
    FORMAT_VERSION,
    MAGIC,
    MAX_CHUNKS,
    MAX_IMAGE_SIDE,
    MAX_LAYER,
    MAX_MODEL_ID_BYTES,
    MAX_STAGES,
    MAX_VARINT_BYTES,
    MIN_CHUNK_HEADER_BYTES,
    MIN_FILE_BYTES,
    MIN_HEADER_BYTES,
    MIN_V2_FILE_BYTES,
    V1_FORMAT_VERSION,
    V2_WEIGHTS_HASH_BYTES,
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
    hash_matches,
    hash_weights,
    inspect,
    metadata_chunk,
    read_file,
    segment_table_chunk,
    alpha_plane_chunk,
    AlphaCoding,
    stage_syntax_chunk,
    StageSyntax,
    refinement_chunk,
    truncate,
    write_file,
)
from .chunks import SETTINGS_KEY, decode_settings, settings_chunk
from .entropy import MAX_ALPHABET, MAX_ROW_SUM, IndexDecoder, IndexEncoder, cross_entropy_bits
from .errors import VQFormatError
from .partial import LayersPrefix, complete_layers_prefix

__all__ = [
    # progressive reading of a cut file (partial.py)
    "LayersPrefix",
    "complete_layers_prefix",
    # format version 2 (read_file / truncate / inspect also read version 1)
    "FORMAT_VERSION",
    "V1_FORMAT_VERSION",
    "MAGIC",
    "MIN_HEADER_BYTES",
    "MIN_CHUNK_HEADER_BYTES",
    "MAX_VARINT_BYTES",
    "MAX_CHUNKS",
    "MAX_LAYER",
    "MIN_V2_FILE_BYTES",
    "V2_WEIGHTS_HASH_BYTES",
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
    "SETTINGS_KEY",
    "settings_chunk",
    "decode_settings",
    "segment_table_chunk",
    "alpha_plane_chunk",
    "AlphaCoding",
    "stage_syntax_chunk",
    "StageSyntax",
    "refinement_chunk",
    "hash_weights",
    "hash_matches",
    "ChannelLayout",
    "Modality",
    # limits of format version 1 (read only)
    "MAX_IMAGE_SIDE",
    "MAX_MODEL_ID_BYTES",
    "MAX_STAGES",
    "MIN_FILE_BYTES",
    "WEIGHTS_HASH_BYTES",
    # range coding and errors
    "MAX_ALPHABET",
    "MAX_ROW_SUM",
    "IndexEncoder",
    "IndexDecoder",
    "cross_entropy_bits",
    "VQFormatError",
]
