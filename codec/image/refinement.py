"""Scalar refinement layers of an image file: their entropy model (a model component) and their coding.

A file with a REFINEMENT chunk (B, `vqcodec.bitstream.refinement_chunk`) holds after its B residual-VQ layers
refinement layers 1..L (file layers B+1..B+L). Layer j rounds what is left of every latent to a step of
2^-(first_shift + j - 1) latent units (`vqcodec.quantization.scalar_refinement`: exact integer symbols on the
exact search's 2^-10 grid; layer 1 in -max_first..max_first, later layers in -1..1) and is one range-coded
stream over the latent grid (the layout of `vqcodec.coding.refinement.encode_refinement_grid`: rows top to
bottom, in each position its D dimensions, every symbol under a static table chosen by the layers before it and
the row above, and how many non-zero symbols the block has in the layer before, or for the first layer the block
above in the same layer: `block_context`). Encoding and decoding go row by row through all layers at once (`encode_layers`,
`decode_layers`), so their memory grows with a row of the grid, whatever the image size.
The tables belong to the image model they were fitted for: the component of role "refinement"
(`RefinementModel`, a safetensors file of int32 tables, `vqcodec train refinement`).

What the decoder does with the layers: latent = the VQ reconstruction of layers 1..B (each position's depth) +
sum_j symbol_j * step_j (float32, dyadic values); each position's refinement level is the last layer in which
it has a non-zero symbol (0: none), which a decoder with refinement levels (`ImageModelConfig.refine_levels`) is
told (depth S + level; level 0 keeps the VQ depth).

Encoder policy (not part of the format): the last layer may be rate-distortion optimised (`encode_layers`'s
lam): each symbol moves one step towards zero when that lowers squared latent error + lambda * its bits, so a
quality between two layer counts costs what it buys.

Shapes: residuals (h, w, D) int16 grid units (`vqcodec.quantization.scalar_refinement.residual_units`); bases
and refined latents (h, w, D) float32; one row's symbols (L, w, D) int64.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from vqcodec.bitstream import IndexDecoder, IndexEncoder, VQFormatError
from vqcodec.coding.refinement import BLOCK_BUCKETS, ROW_BUCKETS, block_activity, grid_contexts, row_frequencies
from vqcodec.quantization.exact_search import GRID_BITS
from vqcodec.quantization.scalar_refinement import (CONTEXTS, RESIDUAL_LIMIT, layer_alphabet, layer_contexts,
                                                     refinement_steps, symbols_from_units)
from vqcodec.weights.io import load_weights, save_weights

__all__ = ["RefinementModel", "load_refinement_model", "save_refinement_model", "EncodedLayers", "DecodedLayers",
           "encode_layers", "decode_layers", "layer_symbols", "symbol_levels", "CONTEXT_COUNT", "block_context",
           "grid_symbol_contexts"]


CONTEXT_COUNT = CONTEXTS * ROW_BUCKETS * BLOCK_BUCKETS
"""Contexts of a refinement symbol (`layer_row_contexts`)."""


def block_context(j: int, row: torch.Tensor, above: torch.Tensor | None) -> torch.Tensor:
    """The block activity (w,) int64 the symbols of layer j (0-based) in a latent row are coded with: for the
    first layer, the count of non-zero symbols of the block above in that layer (0 on the first row); for a later
    layer, of the same block in the layer before. row: this row's symbols of layers 0..j-1 at least (L', w, D);
    above: the row above's symbols of all layers (L, w, D) or None."""
    if j > 0:
        return block_activity(row[j - 1])
    if above is None:
        return torch.zeros(row.shape[1], dtype=torch.int64)
    return block_activity(above[0])


def grid_symbol_contexts(grid: torch.Tensor, j: int) -> torch.Tensor:
    """The contexts (h, w, D) of layer j's (0-based) symbols of a whole grid (L, h, w, D), as the row coder
    computes them (`row_frequencies` with `block_context`): for fitting tables."""
    if j > 0:
        block = block_activity(grid[j - 1])
    else:
        block = torch.zeros(grid.shape[1:3], dtype=torch.int64)
        block[1:] = block_activity(grid[0, :-1])
    return grid_contexts(grid[j], layer_contexts(grid[:j]), block)


@dataclass(frozen=True)
class RefinementModel:
    """The entropy model of an image model's refinement layers.

    tables: per layer j = 1..L, (CONTEXT_COUNT, D, K_j) int64 frequency tables (row sums
        `vqcodec.coding.refinement.TABLE_TOTAL`), K_1 = 2 * max_first + 1, K_j = 3 after.
    base_stages: the residual-VQ depth the tables were fitted over (what a file's REFINEMENT chunk names).
    first_shift: layer 1's step is 2^-first_shift latent units.
    scale: the quality scale's settings calibrated for this model (`rate_control.RefinementScale` fields other
        than base and layers; empty: its defaults).
    """

    tables: tuple[torch.Tensor, ...]
    base_stages: int
    first_shift: int
    max_first: int
    model_id: str = ""
    scale: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tables:
            raise ValueError("a refinement model needs at least one layer's table")
        steps = refinement_steps(self.first_shift, len(self.tables))  # the steps fit the grid
        if (self.max_first + 0.5) * steps[0] * (1 << GRID_BITS) >= RESIDUAL_LIMIT:
            raise ValueError(f"max_first {self.max_first} x step {steps[0]} reaches the residual's clamp "
                             f"(`residual_units`)")
        d = self.tables[0].shape[1]
        for j, t in enumerate(self.tables, 1):
            lo, hi = layer_alphabet(j, self.max_first)
            want = (CONTEXT_COUNT, d, hi - lo + 1)
            if tuple(t.shape) != want or t.dtype != torch.int64 or int(t.min()) < 1:
                raise ValueError(f"refinement table of layer {j} must be {want} int64 with entries >= 1, got "
                                 f"{tuple(t.shape)} {t.dtype}")

    @property
    def layers(self) -> int:
        """Most refinement layers a file can hold."""
        return len(self.tables)

    @property
    def latent_dim(self) -> int:
        return int(self.tables[0].shape[1])

    def steps(self, layers: int | None = None) -> list[float]:
        """Step of each of the first `layers` layers (default all) in latent units."""
        return refinement_steps(self.first_shift, self.layers if layers is None else layers)


def save_refinement_model(model: RefinementModel, path: str | Path) -> None:
    """Write `model` as safetensors: tensors layer1..layerL (int32), its settings in the config metadata."""
    tensors = {f"layer{j}": t.to(torch.int32).contiguous() for j, t in enumerate(model.tables, 1)}
    save_weights(path, tensors, model.model_id, {"base_stages": model.base_stages, "first_shift": model.first_shift,
                                                 "max_first": model.max_first, "layers": model.layers,
                                                 "scale": dict(model.scale)})


def load_refinement_model(path: str | Path) -> RefinementModel:
    """A refinement component file (`save_refinement_model`) -> RefinementModel; ValueError if malformed."""
    tensors, model_id, config = load_weights(path)
    try:
        layers = int(config["layers"])
        tables = tuple(tensors[f"layer{j}"].to(torch.int64) for j in range(1, layers + 1))
        return RefinementModel(tables, int(config["base_stages"]), int(config["first_shift"]),
                               int(config["max_first"]), model_id, dict(config.get("scale", {})))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a refinement model file ({e})") from None


class EncodedLayers(NamedTuple):
    """What `encode_layers` made: one stream per layer, and the SHA-256 of the symbols (`decode_layers` gives
    the same digest for the same symbols: what `ImageCodec.encode(verify=True)` compares)."""

    streams: list[bytes]
    digest: bytes


class DecodedLayers(NamedTuple):
    """What `decode_layers` rebuilt: the refined latents (h, w, D) float32, each position's refinement level
    (h, w) int64 (the last layer with a non-zero symbol there, 0: none), and the symbols' SHA-256."""

    latents: torch.Tensor
    levels: torch.Tensor
    digest: bytes


def _units(model: RefinementModel, layers: int) -> list[int]:
    """Grid units per step of the first `layers` layers."""
    return [int(round(step * (1 << GRID_BITS))) for step in model.steps(layers)]


def _rdo_row(model: RefinementModel, symbols: torch.Tensor, residual: torch.Tensor, above: torch.Tensor | None,
             lam: float) -> torch.Tensor:
    """One latent row's symbols (L, w, D) with the last layer's non-zero symbols moved one step towards zero where
    (latent error)^2 + lam * bits falls. residual (w, D) int64 grid units (what the layers code); above: the
    row above's final symbols (L, w, D), None on the first row; lam: latent squared error per bit. Bits under
    the layer's table in the contexts the decoder will see (the row above as coded; the block activity of the
    symbols before moving)."""
    L = symbols.shape[0]
    units = _units(model, L)
    left = residual.clone()
    for j in range(L - 1):
        left -= symbols[j] * units[j]
    last = symbols[-1]
    toward = last - torch.sign(last)
    scale = 1.0 / (1 << GRID_BITS)
    err_keep = ((left - last * units[-1]).double() * scale) ** 2
    err_move = ((left - toward * units[-1]).double() * scale) ** 2
    table = model.tables[L - 1]
    lo, _ = layer_alphabet(L, model.max_first)
    rows = row_frequencies(table, layer_contexts(symbols[:-1]), None if above is None else above[L - 1],
                           block_context(L - 1, symbols, above))
    rows = torch.from_numpy(rows).view(*last.shape, -1)
    total = float(table[0, 0].sum())
    bits_keep = -torch.log2(rows.gather(-1, (last - lo)[..., None]).double()[..., 0] / total)
    bits_move = -torch.log2(rows.gather(-1, (toward - lo)[..., None]).double()[..., 0] / total)
    move = (last != 0) & (err_move + lam * bits_move < err_keep + lam * bits_keep)
    out = symbols.clone()
    out[-1] = torch.where(move, toward, last)
    return out


def _check_residual(model: RefinementModel, residual: torch.Tensor, layers: int) -> None:
    if not 0 <= layers <= model.layers:
        raise ValueError(f"the refinement model has {model.layers} layers, asked for {layers}")
    if residual.shape[-1] != model.latent_dim:
        raise ValueError(f"residual has {residual.shape[-1]} dimensions, the refinement model {model.latent_dim}")


def _row_symbols(model: RefinementModel, residual: torch.Tensor, layers: int, lam: float):
    """Yield each latent row's final symbols (L, w, D) int64 and the row above's (None on the first row): the
    rounded residual, the last layer rate-distortion optimised with `lam` (`_rdo_row`)."""
    above: torch.Tensor | None = None
    for y in range(residual.shape[0]):
        r = residual[y].to(torch.int64)
        sym = symbols_from_units(r, model.first_shift, layers, model.max_first)  # (L, w, D)
        if lam > 0 and layers:
            sym = _rdo_row(model, sym, r, above, lam)
        yield sym, above
        above = sym


def symbol_levels(symbols: torch.Tensor) -> torch.Tensor:
    """Refinement symbols (L, ..., D) of layers 1..L -> each position's refinement level (...) int64: the last
    layer with a non-zero symbol there, 0 where none (what the decoder is told)."""
    layer_ids = torch.arange(1, symbols.shape[0] + 1).view(-1, *([1] * (symbols.dim() - 2)))
    return (symbols.ne(0).any(-1) * layer_ids).amax(0)


def layer_symbols(model: RefinementModel, residual: torch.Tensor, layers: int, lam: float = 0.0) -> torch.Tensor:
    """The symbols `encode_layers` codes for the same arguments, without coding them: (layers, h, w, D) int8 for
    a residual grid (h, w, D) in grid units (the whole grid at once: for training and analysis, not for images
    of any size)."""
    _check_residual(model, residual, layers)
    h, w, d = residual.shape
    out = torch.empty((layers, h, w, d), dtype=torch.int8)
    for y, (sym, _) in enumerate(_row_symbols(model, residual, layers, lam)):
        out[:, y] = sym.to(torch.int8)
    return out


def encode_layers(model: RefinementModel, residual: torch.Tensor, layers: int, lam: float = 0.0) -> EncodedLayers:
    """The first `layers` refinement layers of a residual grid (h, w, D) in grid units (`residual_units`), the
    last one rate-distortion optimised with `lam` (latent squared error per bit; 0: as rounded) -> one stream per
    layer. Row by row, all layers at once: memory grows with a row, not the grid."""
    _check_residual(model, residual, layers)
    encoders = [IndexEncoder() for _ in range(layers)]
    digest = hashlib.sha256()
    for sym, above in _row_symbols(model, residual, layers, lam):
        for j in range(layers):
            lo, _ = layer_alphabet(j + 1, model.max_first)
            rows = row_frequencies(model.tables[j], layer_contexts(sym[:j]), None if above is None else above[j],
                                   block_context(j, sym, above))
            encoders[j].encode((sym[j] - lo).reshape(-1).numpy(), rows)
        digest.update(sym.to(torch.int8).numpy().tobytes())
    return EncodedLayers([e.finish() for e in encoders], digest.digest())


def decode_layers(model: RefinementModel, streams: list[bytes], base: torch.Tensor) -> DecodedLayers:
    """One stream per layer and the base reconstruction (h, w, D) float32 -> the refined latents (base plus each
    layer's symbols x its step, added in layer order in float32), the levels and the symbols' digest.
    VQFormatError for a damaged stream or more layers than the model has."""
    if len(streams) > model.layers:
        raise VQFormatError(f"file holds {len(streams)} refinement layers; its refinement model {model.model_id!r} "
                            f"defines {model.layers}: the file is damaged")
    h, w, d = base.shape
    L = len(streams)
    steps = model.steps(L)
    decoders = [IndexDecoder(data) for data in streams]
    out = base.float().clone()
    levels = torch.zeros((h, w), dtype=torch.int64)
    digest = hashlib.sha256()
    above: torch.Tensor | None = None
    for y in range(h):
        sym = torch.empty((L, w, d), dtype=torch.int64)
        for j in range(L):
            lo, _ = layer_alphabet(j + 1, model.max_first)
            rows = row_frequencies(model.tables[j], layer_contexts(sym[:j]), None if above is None else above[j],
                                   block_context(j, sym, above))
            sym[j] = torch.from_numpy(decoders[j].decode(rows)).view(w, d) + lo
            out[y] += sym[j].float() * steps[j]
        if L:
            levels[y] = symbol_levels(sym)
        digest.update(sym.to(torch.int8).numpy().tobytes())
        above = sym
    for dec in decoders:
        dec.check_finished()
    return DecodedLayers(out, levels, digest.digest())
