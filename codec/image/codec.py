"""The image codec: pixels -> indices -> range-coded stage streams -> .vq bytes, and back.

    encode: a PreparedImage (vqcodec.image.input: RGB uint8 (H, W, 3), alpha plane, layout, metadata)
            -> its RGB padded to a multiple of 8 (edge replication) -> ImageVQVAE encoder
            -> latents (H/8, W/8) -> the best residual-VQ path at every depth (beam search) -> a depth
            per position by rate-distortion (image.rate_control: quality -> lambda) -> index maps
            (L, H/8, W/8) with ABSENT past each depth -> one range-coded stream per stage under the
            integer prior, with STOP symbols and a raw mode (vqcodec.coding.depth) -> the container,
            written once: format version 2 with the model components, the geometry and channel layout,
            STAGE_SYNTAX = DEPTH, the alpha plane and metadata (vqcodec.image.layout) and one stream
            chunk per quality layer (vqcodec.bitstream)
    decode: container -> for each stage, the integer prior rebuilds the same frequencies from what is
            already decoded and range-decodes the indices (plain files of 0.2.0: vqcodec.coding.stages)
            -> codebook lookup (ABSENT adds nothing) -> decoder net -> crop

Quality: `quality` q in 1..QUALITY_MAX (100) sets the Lagrange multiplier (image.rate_control); the file
holds as many quality layers as its deepest position has stages (<= S = 8). Decoding `layers` n gives
the reconstruction of each position's first min(depth, n) stages.

What is exact: the indices (integer prior, deterministic frequencies, lossless range coding). The
pixels come from a float decoder network and so may differ across machines by float rounding.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vqcodec.bitstream import (
    ChannelLayout,
    Chunk,
    ImageGeometry,
    Modality,
    StageSyntax,
    VQFile,
    VQFormatError,
    read_file,
    settings_chunk,
    stage_syntax_chunk,
    write_file,
)
from vqcodec.coding.depth import decode_depth_stages, encode_depth_stages
from vqcodec.coding.stages import decode_stages
from vqcodec.contract import Progress, check_file, check_layers, check_weight_files, read_components
from vqcodec.image.input import PreparedImage, plain_rgb
from vqcodec.image.layout import read_side_info, side_chunks
from vqcodec.image.analysis import analyse_image
from vqcodec.image.model import load_image_model
from vqcodec.image.rate_control import (EFFORTS, QUALITY_MAX, BlockCandidates, check_effort, check_quality,
                                        choose_depths, depth_maps, lagrange_multiplier)
from vqcodec.image.prior_integer import load_integer_prior
from vqcodec.image.tiling import decode_tiled, needs_tiles
from vqcodec.limits import MAX_PIXELS, MAX_SIDE, check_decode_size
from vqcodec.version import __version__
from vqcodec.weights.io import WEIGHTS_DIR

__all__ = ["ImageCodec", "DEFAULT_MODEL_PATH", "DEFAULT_PRIOR_PATH"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = WEIGHTS_DIR / "image_vqvae.safetensors"
DEFAULT_PRIOR_PATH = WEIGHTS_DIR / "image_prior.safetensors"

class ImageCodec:
    """A loaded image model + integer prior, with encode/decode of .vq bytes.

    Args:
        model_path: safetensors weights of the ImageVQVAE (role "vqvae").
        prior_path: safetensors weights of the integer image prior (role "prior").
        prior_id: the prior's model id as the registry knows it (default: the file's metadata, else
            derived from its hash).
    """

    modality = "image"

    def __init__(self, model_path: str | Path = DEFAULT_MODEL_PATH, prior_path: str | Path = DEFAULT_PRIOR_PATH,
                 *, prior_id: str | None = None) -> None:
        model_path, prior_path = Path(model_path), Path(prior_path)
        check_weight_files((model_path, prior_path), "`vqcodec train image` and `vqcodec train prior`")
        self.model, self.model_id = load_image_model(model_path)
        self.prior = load_integer_prior(prior_path)
        if self.prior.num_stages != self.model.cfg.num_stages or self.prior.codebook_size != self.model.cfg.num_codes:
            raise ValueError(f"prior {prior_path} does not match the image model {model_path} (stages/codes differ)")
        named = read_components(model_path, self.model_id, prior_path, prior_id)
        self.components = named.named
        self.v1_weights_hash = named.v1_hash  # format-version-1 files named one hash of both files together

    @property
    def max_quality(self) -> int:
        """Top of the quality scale (QUALITY_MAX: every position takes all stages)."""
        return QUALITY_MAX

    @property
    def max_layers(self) -> int:
        """Most quality layers a file can hold (= number of residual-VQ stages)."""
        return self.model.cfg.num_stages

    @staticmethod
    def _check_rgb(rgb: np.ndarray) -> None:
        """Raise ValueError unless `rgb` is an (H, W, 3) uint8 array of a size vqcodec codes."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
        h, w = rgb.shape[:2]
        if h < 1 or w < 1 or h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
            raise ValueError(f"image size {w}x{h} is outside what vqcodec supports (sides 1..{MAX_SIDE}, "
                             f"<= {MAX_PIXELS} pixels)")

    @classmethod
    def _to_tensor(cls, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
        cls._check_rgb(rgb)
        return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)

    @torch.no_grad()
    def analyse(self, rgb: np.ndarray, effort: int | None = None) -> BlockCandidates:
        """(H, W, 3) uint8 -> the candidate paths of every latent position at every depth, with their
        distortions (what the quality-dependent depth choice needs; computed once per image).

        Paths are kept as int16 (N, S, S) (codes < 2^15, ABSENT -1): 128 MB at the largest image. The
        encoder net runs in a fixed partition of tiles, each on one torch thread, and the code search is
        exact (vqcodec.image.analysis), so the candidates, and the file, do not depend on the thread count;
        memory grows with a tile's activations, not the whole image's."""
        self._check_rgb(rgb)
        return analyse_image(self.model, rgb, EFFORTS[check_effort(effort)])

    @torch.no_grad()
    def encode_indices(self, rgb: np.ndarray, quality: int | None = None, effort: int | None = None,
                       candidates: BlockCandidates | None = None) -> torch.Tensor:
        """(H, W, 3) uint8 -> (L, ceil(H/8), ceil(W/8)) int64 index maps, ABSENT (-1) past each position's
        depth, the depths chosen by rate-distortion at `quality` (image.rate_control). `candidates`: a
        previous `analyse(rgb, effort)` of the same image, to skip the encoder."""
        lam = lagrange_multiplier(check_quality(quality))
        c = candidates if candidates is not None else self.analyse(rgb, effort)
        return depth_maps(c.paths, choose_depths(c.errors, lam), c.height, c.width).to(torch.int64)

    @torch.no_grad()
    def render(self, indices: torch.Tensor, height: int, width: int) -> np.ndarray:
        """(s, h, w) int64 indices (ABSENT adds nothing) -> (height, width, 3) uint8 pixels (decoder net,
        cropped). Above `tiling.TILE_ABOVE_PIXELS` pixels the decoder net runs tile by tile
        (vqcodec.image.tiling: within 1 LSB of a whole-image run)."""
        indices = indices.to(torch.int64)  # int16 paths of `analyse` may come here too
        if needs_tiles(height, width):
            return decode_tiled(self.model, indices, height, width)
        x_hat = self.model.decode_indices(indices[None])[0, :, :height, :width]
        return (x_hat.permute(1, 2, 0) * 255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()

    def encode(self, source: "PreparedImage | np.ndarray", quality: int | None = None, *,
               progress: Progress | None = None, verify: bool = False, effort: int | None = None,
               max_bytes: int | None = None) -> bytes:
        """An image -> .vq bytes at `quality` 1..100 (default: the top), written once.

        source: a PreparedImage (vqcodec.image.input.prepare_image: RGB to code, alpha plane, the layout
            decoding gives back, metadata), or an (H, W, 3) uint8 RGB array (coded as a plain RGB image).
        effort: encoder effort 1..3 (image.rate_control.EFFORTS; default 2); decoding time does not depend
            on it. max_bytes: instead of `quality`, the highest quality whose colour streams and header fit
            in this many bytes (bisection over the quality scale, as `cwebp -size`; quality 1 if even that is
            larger); the alpha plane and metadata come on top.
        The file records the quality (the one the size search chose, with max_bytes) and the effort in a
        "settings" METADATA chunk (vqcodec.bitstream.settings_chunk), which decoding ignores.
        verify: decode the bytes again and raise RuntimeError unless they give the encoder's indices (and
            alpha plane).
        """
        image = source if isinstance(source, PreparedImage) else plain_rgb(source)
        rgb = image.rgb
        effort = check_effort(effort)
        candidates = self.analyse(rgb, effort)
        h, w = rgb.shape[:2]
        if max_bytes is not None:
            if quality is not None:
                raise ValueError("give either quality or max_bytes (a target size), not both")
            quality, indices, streams, colour_file = self._fit(candidates, int(max_bytes), h, w, effort)
        else:
            quality = check_quality(quality)
            indices = self.encode_indices(rgb, quality, candidates=candidates)
            streams, colour_file = encode_depth_stages(self.prior, indices, progress), None
        side = side_chunks(image)
        if colour_file is not None and image.layout == ChannelLayout.RGB and not side:
            data = colour_file  # the file the size search measured is the whole file
        else:
            data = self._write(streams, h, w, image.layout, side, settings=(quality, effort))
        if verify:
            self._verify(data, indices, image)
        return data

    def _verify(self, data: bytes, indices: torch.Tensor, image: PreparedImage) -> None:
        """Raise RuntimeError unless `data` decodes to `indices` and `image`'s alpha plane."""
        vqfile = read_file(data)
        if not torch.equal(self.decode_indices(vqfile), indices):
            raise RuntimeError("verification failed: the decoded indices differ from the encoded ones; "
                               "please report this as a vqcodec bug")
        if image.alpha is not None and not np.array_equal(read_side_info(vqfile).alpha, image.alpha):
            raise RuntimeError("verification failed: the decoded alpha plane differs from the encoded one; "
                               "please report this as a vqcodec bug")

    def _fit(self, candidates: BlockCandidates, max_bytes: int, h: int, w: int, effort: int
             ) -> tuple[int, torch.Tensor, list[bytes], bytes]:
        """Bisection for the highest quality whose colour file (streams, header and settings, no alpha plane
        or image metadata) has <= max_bytes -> (that quality, its indices, its stage streams, that colour
        file); quality 1 when none fits. File size falls with quality in
        practice, not by construction: the search keeps the best size-respecting point it has seen."""
        if max_bytes < 1:
            raise ValueError(f"a target size must be at least 1 byte, got {max_bytes}")
        tried: dict[int, tuple[torch.Tensor, list[bytes], bytes]] = {}  # index maps as int16 (8 x 16 MB at 64 MP)
        first: list[bytes] = []  # stage 1's stream: the same at every quality

        def at(q: int) -> tuple[torch.Tensor, list[bytes], bytes]:
            if q not in tried:
                idx = self.encode_indices(None, q, candidates=candidates)  # type: ignore[arg-type]
                streams = encode_depth_stages(self.prior, idx, first_stream=first[0] if first else None)
                first[:] = streams[:1]
                tried[q] = (idx.to(torch.int16), streams, self._write(streams, h, w, settings=(q, effort)))
            return tried[q]

        lo, hi = 1, QUALITY_MAX
        while len(at(hi)[2]) > max_bytes and hi - lo > 1:  # at(hi) is too big; at(lo) fits or lo == 1
            mid = (lo + hi) // 2
            if len(at(mid)[2]) <= max_bytes:
                lo = mid
            else:
                hi = mid
        fitting = [q for q, (_, _, d) in tried.items() if len(d) <= max_bytes]
        quality = max(fitting) if fitting else 1
        idx, streams, data = at(quality)
        return quality, idx.to(torch.int64), streams, data

    def write_indices(self, indices: torch.Tensor, height: int, width: int) -> bytes:
        """Index maps (S, ceil(H/8), ceil(W/8)) int64 (-1: absent past a block's depth) of a height x width
        RGB image -> its .vq bytes (what `encode` writes for these indices; for benchmarks that choose
        depths themselves)."""
        return self._write(encode_depth_stages(self.prior, indices), height, width)

    def _write(self, streams: list[bytes], height: int, width: int, layout: ChannelLayout = ChannelLayout.RGB,
               side: Sequence[Chunk] = (), settings: tuple[int, int] | None = None) -> bytes:
        """The container of a height x width image's stage streams (STAGE_SYNTAX DEPTH), with the channel
        `layout` decoding gives back, the (quality, effort) `settings` it was encoded at (a "settings"
        METADATA chunk, if given) and the `side` chunks (`layout.side_chunks`: alpha plane, metadata)."""
        recorded = [settings_chunk(quality=settings[0], effort=settings[1])] if settings is not None else []
        return write_file(Modality.IMAGE, self.components, ImageGeometry(width, height, layout),
                          [[s] for s in streams],
                          extra_chunks=[stage_syntax_chunk(StageSyntax.DEPTH), *recorded, *side],
                          encoder=f"vqcodec {__version__}")

    def _check_file(self, vqfile: VQFile) -> None:
        """Raise VQFormatError unless `vqfile` is an image made with this codec's components, within the
        decode limits (vqcodec.limits)."""
        check_file(vqfile, self, self.v1_weights_hash)
        check_decode_size(vqfile.geometry)

    def decode_indices(self, data: "bytes | VQFile", layers: int | None = None,
                       progress: Progress | None = None) -> torch.Tensor:
        """.vq bytes (or a parsed file) -> (s, h, w) int64 indices; s = min(layers, layers in the file)."""
        vqfile = data if isinstance(data, VQFile) else read_file(data)
        self._check_file(vqfile)
        s = check_layers(layers, vqfile.layers)
        streams = []
        for k in range(1, s + 1):
            layer_streams = vqfile.streams(k)
            if len(layer_streams) != 1:
                raise VQFormatError(f"quality layer {k} holds {len(layer_streams)} streams; an image layer holds one")
            streams.append(layer_streams[0])
        f = self.model.factor
        g = vqfile.geometry
        shape = (-(-g.height // f), -(-g.width // f))
        if vqfile.stage_syntax == StageSyntax.DEPTH:
            return decode_depth_stages(self.prior, streams, shape, progress)
        if vqfile.stage_syntax != StageSyntax.PLAIN:
            raise VQFormatError(f"image files with stage syntax {vqfile.stage_syntax.name} are not supported")
        return decode_stages(self.prior, streams, shape, progress)

    def decode(self, data: "bytes | VQFile", layers: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """.vq bytes (or a parsed file) -> (H, W, 3) uint8 RGB of its first min(layers, all) quality layers."""
        vqfile = data if isinstance(data, VQFile) else read_file(data)
        indices = self.decode_indices(vqfile, layers, progress)
        return self.render(indices, vqfile.geometry.height, vqfile.geometry.width)

    @torch.no_grad()
    def sample(self, width: int, height: int, seed: int = 0, layers: int | None = None) -> np.ndarray:
        """Draw `layers` index maps from the prior (seeded) and decode them -> (height, width, 3) uint8."""
        s = self.max_layers if layers is None else int(layers)
        if not 1 <= s <= self.max_layers:
            raise ValueError(f"layers must be 1..{self.max_layers}, got {layers}")
        f = self.model.factor
        indices = self.prior.sample(s, -(-height // f), -(-width // f), seed)
        return self.render(indices, height, width)
