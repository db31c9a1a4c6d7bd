"""Scalar refinement layers of an image file: their entropy model (a model component) and their coding.

A file with a REFINEMENT chunk (B, `vqcodec.bitstream.refinement_chunk`) holds after its B residual-VQ layers
refinement layers 1..L (file layers B+1..B+L). Layer j rounds what is left of every latent to a step of
2^-(first_shift + j - 1) latent units (`vqcodec.quantization.scalar_refinement`: exact integer symbols on the
exact search's 2^-10 grid; layer 1 in -max_first..max_first, later layers in -1..1) and is one range-coded
stream over the latent grid (`vqcodec.coding.refinement.encode_refinement_grid`: rows top to bottom, in each
position its D dimensions, every symbol under a static table chosen by the layers before it and the row above).
The tables belong to the image model they were fitted for: the component of role "refinement"
(`RefinementModel`, a safetensors file of int32 tables, `vqcodec train refinement`).

What the decoder does with the layers: latent = the VQ reconstruction of layers 1..B (each position's depth) +
sum_j symbol_j * step_j (float32, dyadic values); each position's refinement level is the last layer in which
it has a non-zero symbol (0: none), which a decoder with refinement levels (`ImageModelConfig.refine_levels`) is
told (depth S + level; level 0 keeps the VQ depth).

Encoder policy (not part of the format): the last layer may be rate-distortion optimised (`rdo_last_layer`):
each symbol moves one step towards zero when that lowers squared latent error + lambda * its bits, so a
quality between two layer counts costs what it buys.

Shapes: latents and bases (N, D) float32 with N = h * w in raster order; symbols (L, h, w, D) int64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from vqcodec.bitstream import VQFormatError
from vqcodec.coding.refinement import ROW_BUCKETS, decode_refinement_grid, encode_refinement_grid, grid_contexts
from vqcodec.quantization.scalar_refinement import (CONTEXTS, layer_alphabet, layer_contexts, refine_symbols,
                                                     refinement_steps)
from vqcodec.weights.io import load_weights, save_weights

__all__ = ["RefinementModel", "load_refinement_model", "save_refinement_model", "refine_grid", "rdo_last_layer",
           "encode_layers", "decode_layers", "refined_latents", "refinement_levels"]


@dataclass(frozen=True)
class RefinementModel:
    """The entropy model of an image model's refinement layers.

    tables: per layer j = 1..L, (CONTEXTS * ROW_BUCKETS, D, K_j) int64 frequency tables (row sums
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
        refinement_steps(self.first_shift, len(self.tables))  # the steps fit the grid
        d = self.tables[0].shape[1]
        for j, t in enumerate(self.tables, 1):
            lo, hi = layer_alphabet(j, self.max_first)
            want = (CONTEXTS * ROW_BUCKETS, d, hi - lo + 1)
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


def refine_grid(model: RefinementModel, latents: torch.Tensor, base: torch.Tensor, layers: int, h: int, w: int
                ) -> torch.Tensor:
    """Symbols of the first `layers` refinement layers of latents (N, D) over base (N, D) -> (layers, h, w, D)."""
    if not 0 <= layers <= model.layers:
        raise ValueError(f"the refinement model has {model.layers} layers, asked for {layers}")
    sym = refine_symbols(latents, base, model.first_shift, layers, model.max_first)
    return sym.reshape(layers, h, w, -1)


def _symbol_bits(model: RefinementModel, layer: int, symbols: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """Bits (h, w, D) float64 of candidate symbols (h, w, D) of `layer` under its table, with the layer contexts of
    `before` (layer - 1, h, w, D) and the row context of `symbols` themselves."""
    table = model.tables[layer - 1]
    lo, _ = layer_alphabet(layer, model.max_first)
    ctx = grid_contexts(symbols, layer_contexts(before))
    d = symbols.shape[-1]
    freq = table[ctx, torch.arange(d).expand_as(ctx), symbols - lo].double()
    return -torch.log2(freq / float(table[0, 0].sum()))


def rdo_last_layer(model: RefinementModel, symbols: torch.Tensor, latents: torch.Tensor, base: torch.Tensor,
                   lam: float) -> torch.Tensor:
    """Rate-distortion optimisation of the last layer of symbols (L, h, w, D): each non-zero symbol moves one step
    towards zero where (latent error)^2 + lam * bits falls (bits under the layer's table in the contexts the
    unmodified symbols make; distortion against the latents, (N, D)). lam: latent squared error per bit (as the
    VQ depth choice); 0 returns the symbols unchanged. The earlier layers are kept."""
    if lam <= 0 or symbols.shape[0] == 0:
        return symbols
    L, h, w, d = symbols.shape
    steps = model.steps(L)
    last = symbols[-1]
    partial = base.reshape(h, w, d).double()
    for j in range(L - 1):
        partial = partial + symbols[j].double() * steps[j]
    target = latents.reshape(h, w, d).double()
    toward = last - torch.sign(last)
    err_keep = (target - (partial + last.double() * steps[-1])) ** 2
    err_move = (target - (partial + toward.double() * steps[-1])) ** 2
    bits_keep = _symbol_bits(model, L, last, symbols[:-1])
    bits_move = _symbol_bits(model, L, toward, symbols[:-1])
    move = (last != 0) & (err_move + lam * bits_move < err_keep + lam * bits_keep)
    out = symbols.clone()
    out[-1] = torch.where(move, toward, last)
    return out


def encode_layers(model: RefinementModel, symbols: torch.Tensor) -> list[bytes]:
    """Symbols (L, h, w, D) -> one stream per layer."""
    if symbols.shape[0] > model.layers or (symbols.shape[0] and symbols.shape[-1] != model.latent_dim):
        raise ValueError(f"symbols {tuple(symbols.shape)} do not fit the refinement model ({model.layers} layers of "
                         f"{model.latent_dim} dimensions)")
    streams = []
    for j in range(1, symbols.shape[0] + 1):
        lo, _ = layer_alphabet(j, model.max_first)
        streams.append(encode_refinement_grid(symbols[j - 1], layer_contexts(symbols[: j - 1]),
                                              model.tables[j - 1], lo))
    return streams


def decode_layers(model: RefinementModel, streams: list[bytes], h: int, w: int) -> torch.Tensor:
    """One stream per layer -> symbols (L, h, w, D) int64. VQFormatError for a damaged stream or more layers
    than the model has."""
    if len(streams) > model.layers:
        raise VQFormatError(f"file holds {len(streams)} refinement layers; its refinement model {model.model_id!r} "
                            f"defines {model.layers}: the file is damaged")
    out = torch.empty((len(streams), h, w, model.latent_dim), dtype=torch.int64)
    for j, data in enumerate(streams, 1):
        lo, _ = layer_alphabet(j, model.max_first)
        out[j - 1] = decode_refinement_grid(data, layer_contexts(out[: j - 1]), model.tables[j - 1], lo)
    return out


def refined_latents(model: RefinementModel, base: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:
    """base (N, D) float32 + the refinement values of symbols (L, h, w, D) -> latents (N, D) float32 (each layer
    added in order, elementwise: the same on any thread count)."""
    out = base.float().clone()
    for j, step in enumerate(model.steps(symbols.shape[0])):
        out += symbols[j].reshape(out.shape).float() * step
    return out


def refinement_levels(symbols: torch.Tensor) -> torch.Tensor:
    """Symbols (L, h, w, D) -> (h, w) int64: the last layer (1-based) in which each position has a non-zero
    symbol, 0 where it has none."""
    if symbols.shape[0] == 0:
        return torch.zeros(symbols.shape[1:3], dtype=torch.int64)
    nonzero = symbols.ne(0).any(-1)  # (L, h, w)
    layer = torch.arange(1, symbols.shape[0] + 1)[:, None, None]
    return (nonzero * layer).amax(0)
