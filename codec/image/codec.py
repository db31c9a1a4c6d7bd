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

import copy
import logging
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from vqcodec.bitstream import (
    ChannelLayout,
    Chunk,
    ImageGeometry,
    Modality,
    ModelComponent,
    StageSyntax,
    VQFile,
    VQFormatError,
    hash_weights,
    read_file,
    refinement_chunk,
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
from vqcodec.image.decoder_stage import load_image_decoder
from vqcodec.image.model import load_image_model
from vqcodec.image.rate_control import (EFFORTS, QUALITY_MAX, BlockCandidates, RefinedPlan, RefinementScale,
                                        check_effort, check_quality, choose_depths, depth_maps, lagrange_multiplier,
                                        refined_plan)
from vqcodec.image.refinement import (DecodedLayers, RefinementModel, decode_layers, encode_layers, layer_symbols,
                                      load_refinement_model)
from vqcodec.quantization.scalar_refinement import residual_units
from vqcodec.image.prior_integer import load_integer_prior
from vqcodec.image.tiling import decode_latents_tiled, decode_tiled, needs_tiles
from vqcodec.limits import MAX_PIXELS, MAX_SIDE, check_decode_size
from vqcodec.version import __version__
from vqcodec.weights.io import WEIGHTS_DIR

__all__ = ["ImageCodec", "DEFAULT_MODEL_PATH", "DEFAULT_PRIOR_PATH", "DEFAULT_REFINEMENT_PATH", "DEFAULT_DECODER_PATH"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = WEIGHTS_DIR / "image_vqvae_v4.safetensors"
DEFAULT_PRIOR_PATH = WEIGHTS_DIR / "image_prior_v5.safetensors"
DEFAULT_REFINEMENT_PATH = WEIGHTS_DIR / "image_refinement_v1.safetensors"
DEFAULT_DECODER_PATH = WEIGHTS_DIR / "image_decoder_v4_c2.safetensors"
"""The shipped image model (the registry's defaults for new files; MANIFEST.json also lists the earlier ones)."""
RESIDUAL_CHUNK = 1 << 15
"""Latent positions per chunk of the encoder's refinement residual (`ImageCodec._residual`): 32 MB of int64 at
128 dimensions."""
_SHIPPED: Any = object()  # ImageCodec's refinement_path / decoder_path default: the shipped one for the shipped model


class _Coded(NamedTuple):
    """What an encode codes: index maps (s, h, w) (ABSENT past each depth), the SHA-256 of the refinement
    symbols (None without refinement layers), and one stream per layer (the VQ layers', then the refinement
    layers')."""

    indices: torch.Tensor
    refinement_digest: bytes | None
    streams: list[bytes]


class ImageCodec:
    """A loaded image model + integer prior, with encode/decode of .vq bytes.

    Args:
        model_path: safetensors weights of the ImageVQVAE (role "vqvae").
        prior_path: safetensors weights of the integer image prior (role "prior").
        prior_id: the prior's model id as the registry knows it (default: the file's metadata, else
            derived from its hash).
        refinement_path: a refinement model of the image model (role "refinement", `vqcodec train refinement`):
            the quality scale then runs over VQ depths and scalar refinement layers (`RefinementScale`), and
            files with refinement layers name it. None: VQ stages only (every file of 0.4.x). Left out: the
            shipped refinement model (DEFAULT_REFINEMENT_PATH) when `model_path` is the shipped model, else None.
        decoder_path: a decoder-stage file of the image model (role "decoder", `vqcodec.image.decoder_stage`,
            `vqcodec train image-decoder`): it renders in place of the model's own decoder net, and the files
            this codec writes name it. None: the model's own decoder (every file of 0.6.0 and earlier). Left
            out: the shipped decoder (DEFAULT_DECODER_PATH) when `model_path` is the shipped model, else None.
            At a given quality the indices and streams do not depend on it (the header names it: 56 bytes).
    """

    modality = "image"

    def __init__(self, model_path: str | Path = DEFAULT_MODEL_PATH, prior_path: str | Path = DEFAULT_PRIOR_PATH,
                 *, prior_id: str | None = None, refinement_path: str | Path | None = _SHIPPED,
                 decoder_path: str | Path | None = _SHIPPED) -> None:
        model_path, prior_path = Path(model_path), Path(prior_path)
        if refinement_path is _SHIPPED:
            refinement_path = DEFAULT_REFINEMENT_PATH if model_path == DEFAULT_MODEL_PATH else None
        if decoder_path is _SHIPPED:
            decoder_path = DEFAULT_DECODER_PATH if model_path == DEFAULT_MODEL_PATH else None
        check_weight_files((model_path, prior_path), "`vqcodec train image` and `vqcodec train prior`")
        self.model, self.model_id = load_image_model(model_path)
        self.model_path = model_path
        self._own_decoder = self.model.decoder  # the model's own decoder net, whatever renders (with_decoder)
        self.prior = load_integer_prior(prior_path)
        if self.prior.num_stages > self.model.cfg.num_stages or self.prior.codebook_size != self.model.cfg.num_codes:
            raise ValueError(f"prior {prior_path} does not match the image model {model_path} (more stages than the "
                             f"model, or other codes)")
        self.vq_stages = self.prior.num_stages  # the prior's stages are the ones files hold (a prior may have fewer)
        self.refinement: RefinementModel | None = None
        refinement = None
        if refinement_path is not None:
            refinement_path = Path(refinement_path)
            check_weight_files((refinement_path,), "`vqcodec train refinement`")
            self.refinement = load_refinement_model(refinement_path)
            if (self.refinement.latent_dim != self.model.cfg.latent_dim
                    or self.refinement.base_stages > self.vq_stages):
                raise ValueError(f"refinement model {refinement_path} does not fit the image model {model_path} "
                                 f"(latent dimensions or stages differ)")
            refinement = (refinement_path, self.refinement.model_id or f"image-refinement-{refinement_path.stem}")
        self.decoder_id: str | None = None
        decoder = None
        if decoder_path is not None:
            decoder_path = Path(decoder_path)
            check_weight_files((decoder_path,), "`vqcodec train image-decoder`")
            self.model.decoder, self.decoder_id = load_image_decoder(decoder_path, model_path, self.model.cfg)
            decoder = (decoder_path, self.decoder_id)
        self.decoder_override = False  # with_decoder: render files whatever decoder they name
        named = read_components(model_path, self.model_id, prior_path, prior_id, decoder=decoder,
                                refinement=refinement)
        self.components = named.named
        self.v1_weights_hash = named.v1_hash  # format-version-1 files named one hash of both files together

    def with_decoder(self, decoder_path: str | Path | None) -> "ImageCodec":
        """A copy of this codec (sharing its prior, encoder and codebooks) that renders with a decoder-stage
        file (`vqcodec.image.decoder_stage`) trained on this model's latents, or with the model's own decoder
        (`decoder_path` None: how every file of 0.6.0 and earlier renders), for decoding: it renders every file
        of this model, prior and refinement model, whatever decoder the file names. ValueError for a decoder of
        another base model, FileNotFoundError for a missing file."""
        other = copy.copy(self)
        other.model = copy.copy(self.model)
        other.model._modules = dict(self.model._modules)  # a decoder of its own; this codec's model is untouched
        named = tuple(c for c in self.components if c.role != "decoder")
        if decoder_path is None:
            other.model.decoder, other.decoder_id = self._own_decoder, None
        else:
            check_weight_files((Path(decoder_path),), "`vqcodec train image-decoder`")
            other.model.decoder, other.decoder_id = load_image_decoder(decoder_path, self.model_path, self.model.cfg)
            named += (ModelComponent("decoder", other.decoder_id, hash_weights(Path(decoder_path).read_bytes())),)
        other.components = named  # what the files it writes name
        other.decoder_override = True
        return other

    @property
    def max_quality(self) -> int:
        """Top of the quality scale (QUALITY_MAX: every position takes all stages)."""
        return QUALITY_MAX

    @property
    def max_layers(self) -> int:
        """Most quality layers a file can hold: the residual-VQ stages (the prior's), plus the refinement layers if
        any."""
        return self.vq_stages + (self.refinement.layers if self.refinement is not None else 0)

    @property
    def refinement_scale(self) -> RefinementScale | None:
        """The quality scale over VQ depths and refinement layers (None without a refinement model)."""
        rm = self.refinement
        return None if rm is None else RefinementScale(base=rm.base_stages, layers=rm.layers, **rm.scale)

    def plan(self, quality: int) -> RefinedPlan | None:
        """What `quality` means for a codec with a refinement model (None without one: VQ depths by
        `lagrange_multiplier`)."""
        scale = self.refinement_scale
        return None if scale is None else refined_plan(quality, scale)

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
        return analyse_image(self.model, rgb, EFFORTS[check_effort(effort)], keep_latents=self.refinement is not None,
                             stages=self.vq_stages)

    @torch.no_grad()
    def encode_indices(self, rgb: np.ndarray, quality: int | None = None, effort: int | None = None,
                       candidates: BlockCandidates | None = None) -> torch.Tensor:
        """(H, W, 3) uint8 -> (L, ceil(H/8), ceil(W/8)) int64 index maps, ABSENT (-1) past each position's
        depth, the depths chosen by rate-distortion at `quality` (image.rate_control). `candidates`: a
        previous `analyse(rgb, effort)` of the same image, to skip the encoder."""
        c = candidates if candidates is not None else self.analyse(rgb, effort)
        return depth_maps(c.paths, self._depths(c, check_quality(quality)), c.height, c.width).to(torch.int64)

    def _depths(self, candidates: BlockCandidates, quality: int) -> torch.Tensor:
        """Each position's VQ depth (N,) int64 at `quality` (rate_control; with a refinement model, its plan)."""
        plan = self.plan(quality)
        if plan is None:
            return choose_depths(candidates.errors[:, : self.vq_stages], lagrange_multiplier(quality))
        base = self.refinement.base_stages  # type: ignore[union-attr]
        if plan.vq_lambda is None:
            return torch.full((candidates.height * candidates.width,), base, dtype=torch.int64)
        return choose_depths(candidates.errors[:, :base], plan.vq_lambda)

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
            quality, coded, colour_file = self._fit(candidates, int(max_bytes), h, w, effort)
        else:
            quality = check_quality(quality)
            coded, colour_file = self._code(candidates, quality, progress), None
        side = side_chunks(image)
        if colour_file is not None and image.layout == ChannelLayout.RGB and not side:
            data = colour_file  # the file the size search measured is the whole file
        else:
            data = self._write(coded, h, w, image.layout, side, settings=(quality, effort))
        if verify:
            self._verify(data, coded, image)
        return data

    def _code(self, candidates: BlockCandidates, quality: int, progress: Progress | None = None,
              first_stream: bytes | None = None) -> "_Coded":
        """The index maps, refinement layers and streams of `quality` for an analysed image."""
        indices = depth_maps(candidates.paths, self._depths(candidates, quality), candidates.height,
                             candidates.width).to(torch.int64)
        streams = encode_depth_stages(self.prior, indices, progress, first_stream=first_stream)
        plan, rm = self.plan(quality), self.refinement
        if plan is None or plan.layers == 0 or rm is None:
            return _Coded(indices, None, streams)
        if candidates.latents is None:
            raise ValueError("refinement layers need the analysis' latents: analyse with this codec (it keeps them "
                             "when it has a refinement model)")
        residual = self._residual(candidates.latents, indices)
        layers = encode_layers(rm, residual.view(candidates.height, candidates.width, -1), plan.layers,
                               self._rdo_lambda(plan))
        return _Coded(indices, layers.digest, streams + layers.streams)

    def _rdo_lambda(self, plan: RefinedPlan) -> float:
        """The latent squared error per bit that thins a plan's last refinement layer."""
        return plan.rdo_step_lambda * self.refinement.steps(plan.layers)[-1] ** 2  # type: ignore[union-attr]

    @torch.no_grad()
    def refinement_symbols(self, candidates: BlockCandidates, quality: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What a file of an analysed image at `quality` holds, uncoded: its index maps (s, h, w) int64 (ABSENT
        past each position's depth) and its refinement symbols (L, h, w, D) int8 (None when the quality has no
        refinement layer). For training and analysis (`vqcodec.image.refinement.layer_symbols`: the whole grid
        at once)."""
        indices = depth_maps(candidates.paths, self._depths(candidates, quality), candidates.height,
                             candidates.width).to(torch.int64)
        plan, rm = self.plan(quality), self.refinement
        if plan is None or plan.layers == 0 or rm is None:
            return indices, None
        if candidates.latents is None:
            raise ValueError("refinement layers need the analysis' latents: analyse with this codec (it keeps them "
                             "when it has a refinement model)")
        residual = self._residual(candidates.latents, indices).view(candidates.height, candidates.width, -1)
        return indices, layer_symbols(rm, residual, plan.layers, self._rdo_lambda(plan))

    def _residual(self, latents: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The analysis' latents (h*w, D) float32 and the index maps (s, h, w) -> what the refinement layers code
        (h*w, D) int16 grid units (`residual_units`), RESIDUAL_CHUNK positions at a time: the VQ reconstruction
        and the exact grid arithmetic (int64) of a chunk, never of the whole grid (4 GB at 64 MP)."""
        n, s = latents.shape[0], indices.shape[0]
        flat = indices.reshape(s, -1)
        out = torch.empty(latents.shape, dtype=torch.int16)
        for i in range(0, n, RESIDUAL_CHUNK):
            j = min(n, i + RESIDUAL_CHUNK)
            out[i:j] = residual_units(latents[i:j], self._base_latents(flat[:, i:j]))
        return out

    def _base_latents(self, indices: torch.Tensor) -> torch.Tensor:
        """Index maps (s, h, w) or (s, n) int64 (ABSENT adds nothing) -> their VQ reconstruction (h*w or n, D)
        float32, raster order (what refinement layers refine)."""
        s = indices.shape[0]
        return self.model.quantizer.decode(indices.reshape(s, -1).T.contiguous())

    def _verify(self, data: bytes, coded: "_Coded", image: PreparedImage) -> None:
        """Raise RuntimeError unless `data` decodes to the coded indices and refinement symbols (their digests),
        and `image`'s alpha plane."""
        vqfile = read_file(data)
        indices, refined = self._decode_layers(vqfile)
        digest = None if refined is None else refined.digest
        if not torch.equal(indices, coded.indices) or digest != coded.refinement_digest:
            raise RuntimeError("verification failed: the decoded indices differ from the encoded ones; "
                               "please report this as a vqcodec bug")
        if image.alpha is not None and not np.array_equal(read_side_info(vqfile).alpha, image.alpha):
            raise RuntimeError("verification failed: the decoded alpha plane differs from the encoded one; "
                               "please report this as a vqcodec bug")

    def _fit(self, candidates: BlockCandidates, max_bytes: int, h: int, w: int, effort: int
             ) -> tuple[int, "_Coded", bytes]:
        """Bisection for the highest quality whose colour file (streams, header and settings, no alpha plane
        or image metadata) has <= max_bytes -> (that quality, what it codes, that colour file); quality 1 when
        none fits. File size falls with quality in practice, not by construction: the search keeps the best
        size-respecting point it has seen."""
        if max_bytes < 1:
            raise ValueError(f"a target size must be at least 1 byte, got {max_bytes}")
        tried: dict[int, tuple[_Coded, bytes]] = {}  # index maps as int16 (8 x 16 MB at 64 MP)
        first: list[bytes] = []  # stage 1's stream: the same at every quality

        def at(q: int) -> tuple[_Coded, bytes]:
            if q not in tried:
                coded = self._code(candidates, q, first_stream=first[0] if first else None)
                first[:] = coded.streams[:1]
                data = self._write(coded, h, w, settings=(q, effort))
                tried[q] = (coded._replace(indices=coded.indices.to(torch.int16)), data)
            return tried[q]

        lo, hi = 1, QUALITY_MAX
        while len(at(hi)[1]) > max_bytes and hi - lo > 1:  # at(hi) is too big; at(lo) fits or lo == 1
            mid = (lo + hi) // 2
            if len(at(mid)[1]) <= max_bytes:
                lo = mid
            else:
                hi = mid
        fitting = [q for q, (_, d) in tried.items() if len(d) <= max_bytes]
        quality = max(fitting) if fitting else 1
        coded, data = at(quality)
        return quality, coded._replace(indices=coded.indices.to(torch.int64)), data

    def write_indices(self, indices: torch.Tensor, height: int, width: int) -> bytes:
        """Index maps (S, ceil(H/8), ceil(W/8)) int64 (-1: absent past a block's depth) of a height x width
        RGB image -> its .vq bytes (what `encode` writes for these indices; for benchmarks that choose
        depths themselves)."""
        return self._write(_Coded(indices, None, encode_depth_stages(self.prior, indices)), height, width)

    def _write(self, coded: "_Coded", height: int, width: int, layout: ChannelLayout = ChannelLayout.RGB,
               side: Sequence[Chunk] = (), settings: tuple[int, int] | None = None) -> bytes:
        """The container of a height x width image's streams (STAGE_SYNTAX DEPTH; with refinement symbols a
        REFINEMENT chunk and the refinement component), with the channel `layout` decoding gives back, the
        (quality, effort) `settings` it was encoded at (a "settings" METADATA chunk, if given) and the `side`
        chunks (`layout.side_chunks`: alpha plane, metadata)."""
        recorded = [settings_chunk(quality=settings[0], effort=settings[1])] if settings is not None else []
        components = self.components
        refined: list[Chunk] = []
        if coded.refinement_digest is not None:
            refined = [refinement_chunk(coded.indices.shape[0])]
        else:
            components = tuple(c for c in components if c.role != "refinement")
        return write_file(Modality.IMAGE, components, ImageGeometry(width, height, layout),
                          [[s] for s in coded.streams],
                          extra_chunks=[stage_syntax_chunk(StageSyntax.DEPTH), *refined, *recorded, *side],
                          encoder=f"vqcodec {__version__}")

    def _check_file(self, vqfile: VQFile) -> None:
        """Raise VQFormatError unless `vqfile` is an image made with this codec's components (the refinement
        component only where the file has refinement layers), within the decode limits (vqcodec.limits)."""
        refined = vqfile.refinement_base is not None
        if refined and self.refinement is None:
            raise VQFormatError("file has refinement layers, which this codec has no refinement model for; decode "
                                "it with vqcodec.decode, which finds the installed model the file names")
        ignore = (() if refined else ("refinement",)) + (("decoder",) if self.decoder_override else ())
        try:
            check_file(vqfile, self, self.v1_weights_hash, ignore_roles=ignore)
        except VQFormatError:
            if "decoder" in ignore or vqfile.version == 1:
                raise
            check_file(vqfile, self, self.v1_weights_hash, ignore_roles=ignore + ("decoder",))  # the rest differs?
            theirs = next((c.model_id for c in vqfile.components if c.role == "decoder"), None)
            own = "the model's own decoder"
            raise VQFormatError(  # only the decoder differs: say which, and how to render it anyway
                f"file is rendered by {f'decoder {theirs}' if theirs else own + ' (it names no decoder)'}, this "
                f"codec by {f'decoder {self.decoder_id}' if self.decoder_id else own}: decode it with vqcodec.decode, "
                "which finds the decoder the file names, or with codec.with_decoder(...) to choose one (None: the "
                "model's own)") from None
        check_decode_size(vqfile.geometry)
        if refined and (vqfile.refinement_base > self.vq_stages
                        or vqfile.layers - vqfile.refinement_base > self.refinement.layers):
            raise VQFormatError(f"file has {vqfile.refinement_base} VQ layers and {vqfile.layers - vqfile.refinement_base} "
                                f"refinement layers; this model has at most {self.vq_stages} and "
                                f"{self.refinement.layers}: the file is damaged")

    def _layer_streams(self, vqfile: VQFile, first: int, last: int) -> list[bytes]:
        """The one stream of each quality layer first..last (1-based)."""
        streams = []
        for k in range(first, last + 1):
            layer_streams = vqfile.streams(k)
            if len(layer_streams) != 1:
                raise VQFormatError(f"quality layer {k} holds {len(layer_streams)} streams; an image layer holds one")
            streams.append(layer_streams[0])
        return streams

    def _decode_layers(self, vqfile: VQFile, layers: int | None = None, progress: Progress | None = None
                       ) -> tuple[torch.Tensor, DecodedLayers | None]:
        """A checked file's first min(layers, all) layers -> (index maps (s, h, w) int64, the refined latents and
        levels, or None when none of those layers is a refinement layer)."""
        self._check_file(vqfile)
        n = check_layers(layers, vqfile.layers)
        f = self.model.factor
        g = vqfile.geometry
        shape = (-(-g.height // f), -(-g.width // f))
        vq = n if vqfile.refinement_base is None else min(n, vqfile.refinement_base)
        streams = self._layer_streams(vqfile, 1, vq)
        if vqfile.stage_syntax == StageSyntax.DEPTH:
            indices = decode_depth_stages(self.prior, streams, shape, progress)
        elif vqfile.stage_syntax == StageSyntax.PLAIN:
            indices = decode_stages(self.prior, streams, shape, progress)
        else:
            raise VQFormatError(f"image files with stage syntax {vqfile.stage_syntax.name} are not supported")
        if n <= vq:
            return indices, None
        assert self.refinement is not None  # _check_file
        base = self._base_latents(indices).view(*shape, -1)
        return indices, decode_layers(self.refinement, self._layer_streams(vqfile, vq + 1, n), base)

    def decode_indices(self, data: "bytes | VQFile", layers: int | None = None,
                       progress: Progress | None = None) -> torch.Tensor:
        """.vq bytes (or a parsed file) -> (s, h, w) int64 indices of its VQ layers among the first
        min(layers, all) (a file's refinement layers are not indices: `decode` renders them)."""
        vqfile = data if isinstance(data, VQFile) else read_file(data)
        return self._decode_layers(vqfile, layers, progress)[0]

    def decode(self, data: "bytes | VQFile", layers: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """.vq bytes (or a parsed file) -> (H, W, 3) uint8 RGB of its first min(layers, all) quality layers."""
        vqfile = data if isinstance(data, VQFile) else read_file(data)
        indices, refined = self._decode_layers(vqfile, layers, progress)
        height, width = vqfile.geometry.height, vqfile.geometry.width
        if refined is None:
            return self.render(indices, height, width)
        return self.render_refined(indices, refined, height, width)

    @torch.no_grad()
    def render_refined(self, indices: torch.Tensor, refined: DecodedLayers, height: int, width: int) -> np.ndarray:
        """VQ index maps (s, h, w) int64 and the refined latents and levels of `decode_layers` -> (height, width, 3)
        uint8 pixels: the decoder net on the refined latents, told each block's VQ depth, or S + its refinement
        level where it has one (capped at the decoder's `refine_levels`). Above `tiling.TILE_ABOVE_PIXELS` pixels
        the net runs tile by tile, as `render` does."""
        cfg = self.model.cfg
        depth = None
        if cfg.depth_input:
            depth = (indices >= 0).sum(0)
            if cfg.refine_levels:
                level = refined.levels.clamp(max=cfg.refine_levels)
                depth = torch.where(level > 0, cfg.num_stages + level, depth)
        z = refined.latents.permute(2, 0, 1)  # (D, h, w)
        if needs_tiles(height, width):
            return decode_latents_tiled(self.model, z, depth, height, width)
        x_hat = self.model.decode_latents(z[None], None if depth is None else depth[None])[0, :, :height, :width]
        return (x_hat.permute(1, 2, 0) * 255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()

    @torch.no_grad()
    def sample(self, width: int, height: int, seed: int = 0, layers: int | None = None) -> np.ndarray:
        """Draw `layers` index maps (VQ stages) from the prior (seeded) and decode them -> (height, width, 3)
        uint8."""
        s = self.vq_stages if layers is None else int(layers)
        if not 1 <= s <= self.vq_stages:
            raise ValueError(f"layers must be 1..{self.vq_stages}, got {layers}")
        f = self.model.factor
        indices = self.prior.sample(s, -(-height // f), -(-width // f), seed)
        return self.render(indices, height, width)
