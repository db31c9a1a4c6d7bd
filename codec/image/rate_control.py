"""The image quality scale: quality 1..100 -> a Lagrange multiplier -> a depth for every latent position.

vqcodec spends bits unevenly: each 8x8 block (latent position) stops after its own number of residual
stages d in 1..S, the one that minimises

    D(d) + lambda * R(d)        D: squared latent error left after the best d-stage path (beam search,
                                   `ResidualVQ.encode_prefixes`); R: (d - 1) * STAGE_BITS

(stage 1 is coded everywhere, so its bits do not enter the choice). lambda comes from the quality:
quality 100 is lambda = 0 (every block takes all S stages: the top of the scale, the most bytes);
quality 1..99 are log-spaced from LAMBDA_AT_1 down to LAMBDA_AT_99. The depths are coded in the file
(vqcodec.coding.depth), so the decoder needs none of this: it is encoder policy, free to improve.

Units: latent error is the squared Euclidean distance in the model's latent space (64 dims); lambda is
latent error per bit. The constants are set on the training photos, never on Kodak, by
`benchmarks/calibrate_quality.py` (8 photos, 768x512 centre crops, a log grid of lambdas; results in
benchmarks/results/quality_calibration.md): LAMBDA_AT_1 is the smallest lambda at which >= 99 % of blocks
stop at stage 1 (a larger one changes nothing), LAMBDA_AT_99 the largest whose mean PSNR is within 0.05 dB
of lambda 0 (a smaller one buys less than that). Between them quality spreads the whole curve: 0.3.0 had
LAMBDA_AT_99 = 1e-4, which left qualities 70..100 within 0.1 dB of each other on Kodak.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["EFFORTS", "DEFAULT_EFFORT", "Effort", "BlockCandidates", "check_effort", "pixel_weights", "block_weights",
           "QUALITY_MAX", "STAGE_BITS", "LAMBDA_AT_1", "LAMBDA_AT_99", "lagrange_multiplier", "choose_depths",
           "depth_maps", "check_quality", "RefinementScale", "RefinedPlan", "refined_plan"]

QUALITY_MAX = 100
STAGE_BITS = 8.0
"""Estimated bits one more stage costs at a position (index under the stage prior, plus its share of the
STOP symbols); a constant, so lambda alone sets the trade-off."""
LAMBDA_AT_1 = 1.0
LAMBDA_AT_99 = 4.64e-4


def check_quality(quality: int | None) -> int:
    """None -> QUALITY_MAX; an int in 1..QUALITY_MAX -> itself; anything else raises ValueError."""
    if quality is None:
        return QUALITY_MAX
    if isinstance(quality, bool) or int(quality) != quality or not 1 <= int(quality) <= QUALITY_MAX:
        raise ValueError(f"image quality must be an integer 1..{QUALITY_MAX} (higher is better), got {quality!r}")
    return int(quality)


def lagrange_multiplier(quality: int) -> float:
    """Quality 1..QUALITY_MAX -> lambda (latent squared error per bit); 0.0 at QUALITY_MAX."""
    q = check_quality(quality)
    if q == QUALITY_MAX:
        return 0.0
    t = (q - 1) / (QUALITY_MAX - 2)
    return math.exp(math.log(LAMBDA_AT_1) + t * (math.log(LAMBDA_AT_99) - math.log(LAMBDA_AT_1)))


def choose_depths(errors: torch.Tensor, lam: float, stage_bits: float = STAGE_BITS) -> torch.Tensor:
    """errors (N, S) float32, the latent error after the best d-stage path (column d-1) -> depths (N,)
    int64 in 1..S minimising errors + lam * (d - 1) * stage_bits (ties: the shallower depth). Elementwise
    IEEE arithmetic and one argmin per row, no reduction across rows: given the same errors (the codec's
    come from the exact search, vqcodec.image.analysis), the same depths on any thread count."""
    s = errors.shape[1]
    rate = torch.arange(s, dtype=errors.dtype, device=errors.device) * stage_bits
    return (errors + lam * rate).argmin(dim=1) + 1


def depth_maps(paths: torch.Tensor, depths: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """paths (N = h*w, S, S) int64 (row d-1: the best d-stage path, ABSENT-padded) and depths (N,) ->
    index maps (D, h, w) int64 with ABSENT past each position's depth, D = the largest depth."""
    n = paths.shape[0]
    chosen = paths[torch.arange(n), depths - 1]  # (N, S)
    top = int(depths.max())
    return chosen[:, :top].reshape(h, w, top).permute(2, 0, 1).contiguous()



@dataclass(frozen=True)
class RefinementScale:
    """The quality scale of a codec with scalar refinement layers (`vqcodec.image.refinement`).

    Qualities 1..vq_top choose each block's VQ depth in 1..base as `choose_depths` does, lambda log-spaced
    from LAMBDA_AT_1 down to vq_lambda_top. Above vq_top every block takes `base` stages and the qualities
    spread evenly over t in (0, layers]: ceil(t) refinement layers, the last one rate-distortion optimised
    (`refinement.encode_layers`' lam) with lambda log-spaced from rdo_step_lambda_high (rdo_step_lambda_first
    for the first layer; t just above a whole number: the new layer is mostly zeros) down to
    rdo_step_lambda_low, and 0 where t is whole (the layer as rounded). VQ lambdas in latent squared error per
    bit, as LAMBDA_AT_1; RDO lambdas in the last layer's squared step per bit (a symbol's error changes by about a
    squared step, whatever the layer).

    The defaults were measured on training photos with v4 (0.5.0; image model card, "Quality scale"): above
    0.3 the first layer is all but empty; below 0.01 a layer gains under 0.1 dB more before it is whole; a later
    layer started at 0.2 costs about 0.1 bpp for its zeros (the tables are counted on whole layers), so its
    first points lie up to 0.4 dB below the line to the layer at 0.06, the price of a scale without a 1.6 dB
    jump at each layer."""

    base: int
    layers: int
    vq_top: int = 20
    vq_lambda_top: float = 4.64e-3
    rdo_step_lambda_first: float = 0.3
    rdo_step_lambda_high: float = 0.2
    rdo_step_lambda_low: float = 0.01

    def __post_init__(self) -> None:
        if not (1 <= self.base and 1 <= self.layers and 1 <= self.vq_top < QUALITY_MAX - 1
                and 0 < self.rdo_step_lambda_low <= min(self.rdo_step_lambda_high, self.rdo_step_lambda_first)
                and 0 < self.vq_lambda_top <= LAMBDA_AT_1):
            raise ValueError(f"inconsistent refinement quality scale {self}")


@dataclass(frozen=True)
class RefinedPlan:
    """What one quality means under a `RefinementScale`: vq_lambda (the VQ depth choice's lambda; None: every
    block takes all `base` stages), refinement `layers` (0..), and the last layer's RDO lambda in its squared
    step per bit (0: none)."""

    vq_lambda: float | None
    layers: int
    rdo_step_lambda: float


def refined_plan(quality: int, scale: RefinementScale) -> RefinedPlan:
    """Quality 1..QUALITY_MAX -> its `RefinedPlan` under `scale` (QUALITY_MAX: all layers, no RDO)."""
    q = check_quality(quality)
    if q <= scale.vq_top:
        t = (q - 1) / max(1, scale.vq_top - 1)
        lam = math.exp(math.log(LAMBDA_AT_1) + t * (math.log(scale.vq_lambda_top) - math.log(LAMBDA_AT_1)))
        return RefinedPlan(lam, 0, 0.0)
    t = (q - scale.vq_top) / (QUALITY_MAX - scale.vq_top) * scale.layers
    layers = math.ceil(t - 1e-9)
    frac = t - (layers - 1)  # in (0, 1]: how far into its last layer
    if frac >= 1 - 1e-9:
        return RefinedPlan(None, layers, 0.0)
    high = scale.rdo_step_lambda_first if layers == 1 else scale.rdo_step_lambda_high
    hi, lo = math.log(high), math.log(scale.rdo_step_lambda_low)
    return RefinedPlan(None, layers, math.exp(hi + frac * (lo - hi)))


@dataclass(frozen=True)
class Effort:
    """What an encoder effort level does. beam: width of the residual-VQ search (1 = greedy);
    pixel_weights: weigh each block's latent error by its measured effect on the pixels (one extra
    decoder pass, `pixel_weights`)."""

    beam: int
    pixel_weights: bool


EFFORTS: dict[int, Effort] = {1: Effort(beam=1, pixel_weights=False), 2: Effort(beam=4, pixel_weights=False),
                              3: Effort(beam=8, pixel_weights=True)}
"""Encoder effort levels (like cwebp -m, cjxl -e): more effort, more encode time, fewer bytes for the same
quality. Decoding does not depend on the effort."""
DEFAULT_EFFORT = 2


def check_effort(effort: int | None) -> int:
    """None -> DEFAULT_EFFORT; a level of EFFORTS -> itself; anything else raises ValueError."""
    if effort is None:
        return DEFAULT_EFFORT
    if isinstance(effort, bool) or effort not in EFFORTS:
        raise ValueError(f"effort must be one of {sorted(EFFORTS)} (higher: slower encoding, smaller files), "
                         f"got {effort!r}")
    return int(effort)


@dataclass
class BlockCandidates:
    """An image's encoder analysis: paths (N = h*w, S, S) int64 (row d-1: the best d-stage path of the
    position, ABSENT-padded) and errors (N, S) float32 (its distortion, latent units, possibly weighted)
    for a latent grid of height x width positions; latents (N, D) float32, raster order, when the analysis
    kept them (refinement layers code them; None otherwise)."""

    paths: torch.Tensor
    errors: torch.Tensor
    height: int
    width: int
    latents: torch.Tensor | None = None


@torch.no_grad()
def pixel_weights(model, x: torch.Tensor, paths: torch.Tensor, errors: torch.Tensor, h: int, w: int,
                  low: float = 0.1, high: float = 10.0) -> torch.Tensor:
    """Per-position weights (N,) float32: how much pixel error a unit of latent error makes at that block.

    The pixel error of the depth-1 decode summed over each 8x8 block, divided by the block's latent error
    at depth 1, normalised to mean 1 and clipped to [low, high]. The decoder mixes neighbouring blocks,
    so this is an estimate; it moves bits towards blocks whose latent error shows in the pixels.
    x: (1, 3, 8h, 8w) float32 in [0, 1] (the padded input); model: the ImageVQVAE.
    """
    n = h * w
    shallow = depth_maps(paths, torch.ones(n, dtype=torch.int64), h, w)
    rec = model.decode_indices(shallow[None])[0]
    per_block = ((rec - x[0]) ** 2).sum(0).reshape(h, 8, w, 8).sum((1, 3)).reshape(-1)
    return block_weights(per_block, errors[:, 0], low, high)


def block_weights(per_block: torch.Tensor, shallow_errors: torch.Tensor, low: float = 0.1,
                  high: float = 10.0) -> torch.Tensor:
    """`pixel_weights`' formula: per-block pixel error (N,) float32 over the depth-1 latent error (N,) ->
    gains normalised to mean 1, clipped to [low, high], (N,) float32.

    Only elementwise IEEE operations and one exactly rounded sum (math.fsum, whose result does not depend
    on the order of its terms), so the weights are a function of the inputs alone, whatever the thread
    count (a torch mean sums in an order that depends on it)."""
    gain = per_block.float() / shallow_errors.float().clamp_min(1e-6)
    mean = math.fsum(gain.double().tolist()) / max(1, gain.numel())
    return (gain / max(mean, 1e-12)).clamp(low, high)
