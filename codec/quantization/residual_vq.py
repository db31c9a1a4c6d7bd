"""Vector quantizers: one codebook (`VectorQuantizer`) and a residual stack of them (`ResidualVQ`).

Follows van den Oord et al. 2017 ("Neural Discrete Representation Learning"):
  * straight-through gradient from decoder input to encoder output;
  * commitment loss beta * ||z_e - sg[e]||^2 with beta = 0.25;
  * codebook learning either by the codebook loss ||sg[z_e] - e||^2 or by exponential moving averages
    (the paper's appendix; decay 0.99). EMA is the default: on the image model it reached a lower
    reconstruction loss for the same steps and no codebook gradient is needed.

Two additions that a short CPU training budget needs:
  * data-dependent initialisation: the first training batch seeds each codebook by a few k-means iterations;
  * dead-code restart: a code that has not been assigned for `restart_after` training steps is re-seeded
    from a random recent input vector, so trained models use (nearly) all their codes.

`ResidualVQ` quantizes the residual left by the previous stages (SoundStream / EnCodec style). With
quantizer dropout during training, any prefix of stages 1..s decodes to a valid reconstruction, which is
the codec's quality knob.

All tensors here are flat: (N, D) float32 vectors, (N,) or (N, S) int64 indices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.kernels import nearest_code
from vqcodec.quantization.exact_search import UNIT as EXACT_UNIT
from vqcodec.quantization.exact_search import prefix_search_exact

__all__ = ["VectorQuantizer", "ResidualVQ", "VQOutput", "RVQOutput", "TRAINING_ONLY_BUFFERS"]

# Buffers that only training needs (EMA statistics, restart counters); released weights leave them out.
TRAINING_ONLY_BUFFERS = ("ema_count", "ema_sum", "steps_unused", "initialized")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


@dataclass
class VQOutput:
    """Result of one VectorQuantizer call.

    quantized: (N, D) float, codebook vectors with the straight-through gradient to the input.
    indices: (N,) int64 code indices.
    loss: scalar, codebook loss (0 with EMA updates) + beta * commitment loss.
    codebook_loss: scalar, ||sg[x] - e||^2 (0 with EMA updates).
    perplexity: scalar, exp(entropy) of the code histogram of this batch.
    usage: scalar, fraction of the K codes used at least once in this batch.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    codebook_loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


def _histogram_stats(indices: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts (K,) float, perplexity and used fraction of a flat index tensor."""
    counts = torch.bincount(indices.reshape(-1), minlength=num_codes).float()
    total = counts.sum().clamp_min(1.0)
    p = counts / total
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return counts, torch.exp(entropy), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantizer with K codes of dimension D.

    Args:
        num_codes: K, the codebook size (512 gives 9-bit indices).
        dim: D, the vector dimension.
        beta: commitment-loss weight (0.25, as in the paper).
        ema: learn the codebook by exponential moving averages (True) or by the codebook loss (False).
        decay: EMA decay per training step.
        restart_after: re-seed a code that was not assigned for this many training steps (0 disables).
        kmeans_iters: Lloyd iterations of the data-dependent initialisation on the first training batch.
    """

    def __init__(
        self,
        num_codes: int = 512,
        dim: int = 64,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        restart_after: int = 50,
        kmeans_iters: int = 10,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes and dim must be positive, got K={num_codes}, D={dim}")
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.ema, self.decay, self.eps = ema, decay, eps
        self.restart_after, self.kmeans_iters = restart_after, kmeans_iters
        self.restarts = 0  # codes re-seeded since construction (a training diagnostic, not saved)
        init = torch.randn(num_codes, dim) / math.sqrt(dim)
        if ema:
            self.register_buffer("codebook", init)
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", init.clone())
        self.register_buffer("steps_unused", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(False))

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _kmeans_init(self, x: torch.Tensor) -> None:
        """Seed the codebook from data: k-means (Lloyd) on `x` (N, D); rank 0's result is broadcast."""
        k = self.num_codes
        if x.shape[0] >= k:
            centers = x[torch.randperm(x.shape[0], device=x.device)[:k]].clone()
        else:
            pick = torch.randint(0, x.shape[0], (k,), device=x.device)
            centers = x[pick] + 0.01 * x.std() * torch.randn(k, self.dim, device=x.device)
        for _ in range(self.kmeans_iters):
            idx, _ = nearest_code(x, centers)
            sums = torch.zeros_like(centers).index_add_(0, idx, x)
            counts = torch.bincount(idx, minlength=k).float()
            moved = counts > 0
            centers[moved] = sums[moved] / counts[moved, None]
        _broadcast(centers)
        self.codebook.data.copy_(centers)
        self.ema_sum.copy_(centers)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.num_codes).float()
        sums = torch.zeros(self.num_codes, self.dim, device=x.device).index_add_(0, indices, x)
        _all_reduce_sum(counts)
        _all_reduce_sum(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace smoothing
        self.codebook.data.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    @torch.no_grad()
    def reset_training_state(self) -> None:
        """Restart the EMA statistics from the current codebook (e.g. after loading released weights)."""
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)
        self.steps_unused.zero_()
        self.initialized.fill_(True)

    def _restart_dead_codes(self, x: torch.Tensor, indices: torch.Tensor) -> int:
        """Re-seed codes unused for `restart_after` steps from random rows of `x`. Returns how many."""
        used = torch.bincount(indices, minlength=self.num_codes)
        _all_reduce_sum(used)
        self.steps_unused.add_(1).masked_fill_(used > 0, 0)
        dead = self.steps_unused >= self.restart_after
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        pick = torch.randint(0, x.shape[0], (n_dead,), device=x.device)
        fresh = x[pick] + 1e-3 * x.std() * torch.randn(n_dead, self.dim, device=x.device)
        _broadcast(fresh)  # every replica takes rank 0's choice
        self.codebook.data[dead] = fresh
        self.ema_sum[dead] = fresh
        self.ema_count[dead] = 1.0
        self.steps_unused[dead] = 0
        self.restarts += n_dead
        return n_dead

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) float -> (N,) int64 nearest-code indices."""
        return nearest_code(x.detach().float(), self.codebook.detach().float())[0]

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(...,) int64 -> (..., D) float codebook vectors."""
        return F.embedding(indices, self.codebook)

    def forward(self, x: torch.Tensor) -> VQOutput:
        """Quantize x: (N, D) float. Updates the codebook (EMA, restarts) when training."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected input of shape (N, {self.dim}), got {tuple(x.shape)}")
        x_d = x.detach().float()
        if self.training and not bool(self.initialized):
            self._kmeans_init(x_d)
        indices = self.encode(x_d)
        codes = self.lookup(indices)
        commitment = F.mse_loss(x, codes.detach())
        codebook_loss = codes.new_zeros(()) if self.ema else F.mse_loss(codes, x_d)
        loss = codebook_loss + self.beta * commitment
        if self.training:
            if self.ema:
                self._ema_update(x_d, indices)
            if self.restart_after > 0:
                self._restart_dead_codes(x_d, indices)
        _, perplexity, usage = _histogram_stats(indices, self.num_codes)
        quantized = x + (codes - x).detach()
        return VQOutput(quantized, indices, loss, codebook_loss, perplexity, usage)


@dataclass
class RVQOutput:
    """Result of one ResidualVQ call.

    quantized: (N, D) float, sum of the active stages' codes, straight-through gradient to the input.
    indices: (N, S) int64, indices of every stage (also the inactive ones).
    loss: scalar, beta * ||x - sg[sum of all S stages' codes]||^2 (commitment to the full residual
        quantization), plus the mean codebook loss of the stages when not using EMA.
    perplexity, usage: (S,) per-stage statistics of this batch.
    active: (N,) int64, the number of stages each row was reconstructed from (1..S).
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor
    stage_losses: list[torch.Tensor] = field(default_factory=list)
    active: torch.Tensor | None = None


class ResidualVQ(nn.Module):
    """S stages of VectorQuantizer; stage s quantizes the residual the stages before it left.

    forward(x, active_stages) takes per-row stage counts (quantizer dropout): row n is reconstructed from
    its first active_stages[n] stages only. All stages are still fitted on every row's residual, so every
    codebook sees all the data.

    The commitment loss binds the encoder output to the sum of all S stages, not to each partial sum:
    committing to every stage (as a per-stage loss does) pulls the latents onto the stage-1 codes, and
    the later stages are left almost nothing to code. Measured on the image model after 2.6k steps with
    per-stage commitment: stage 1 left 4.9% of the latent energy and stages 2..8 added only 1 dB.
    """

    def __init__(self, num_stages: int = 8, num_codes: int = 512, dim: int = 64, **vq_kwargs) -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        self.num_stages, self.num_codes, self.dim = num_stages, num_codes, dim
        self.stages = nn.ModuleList(VectorQuantizer(num_codes, dim, **vq_kwargs) for _ in range(num_stages))
        self.commit_to_active = False  # commitment to each row's active stages instead of all S (a training setting)

    def forward(self, x: torch.Tensor, active_stages: torch.Tensor | int | None = None,
                depth_rule: Callable[[torch.Tensor], torch.Tensor] | None = None) -> RVQOutput:
        """x: (N, D) float; active_stages: None (all), an int, or (N,) int64 in [1, S].

        depth_rule: instead of active_stages, a function of the squared errors (N, S) float32 (column
        d-1: ||x - sum of the first d greedy codes||^2) that returns each row's depth (N,) int64 in 1..S,
        e.g. a rate-distortion choice as the image encoder makes per block.
        """
        n = x.shape[0]
        if active_stages is None:
            active_stages = self.num_stages
        if isinstance(active_stages, int):
            active_stages = torch.full((n,), active_stages, dtype=torch.long, device=x.device)
        residual = x.detach()
        stage_codes, errors = [], []
        indices, losses, perplexities, usages = [], [], [], []
        for vq in self.stages:
            out = vq(residual)
            codes = out.quantized.detach()
            stage_codes.append(codes)
            residual = residual - codes
            errors.append((residual.float() ** 2).sum(-1))
            indices.append(out.indices)
            losses.append(out.codebook_loss)
            perplexities.append(out.perplexity)
            usages.append(out.usage)
        if depth_rule is not None:
            active_stages = depth_rule(torch.stack(errors, dim=1)).to(torch.long)
        total = torch.zeros_like(x)
        full = torch.zeros_like(x)
        for s, codes in enumerate(stage_codes):
            total = total + (active_stages > s).to(x.dtype)[:, None] * codes
            full = full + codes
        quantized = x + (total - x).detach()  # straight-through: decoder gradient reaches x unchanged
        commitment = F.mse_loss(x, total if self.commit_to_active else full)
        beta = self.stages[0].beta
        return RVQOutput(
            quantized=quantized,
            indices=torch.stack(indices, dim=1),
            loss=torch.stack(losses).mean() + beta * commitment,
            perplexity=torch.stack(perplexities),
            usage=torch.stack(usages),
            stage_losses=losses,
            active=active_stages,
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor, num_stages: int | None = None, beam: int = 1) -> torch.Tensor:
        """(N, D) float -> (N, s) int64 indices of the first s stages (default all).

        beam = 1: greedy, each stage takes the code nearest to the residual the stages before it left.
        beam > 1: stage 1 stays greedy, then a beam search over stages 2..s keeps the `beam` best partial
        sums per vector and returns the path with the least squared error after s stages (`beam_search`).
        """
        s = self.num_stages if num_stages is None else num_stages
        if beam > 1 and s > 1:
            return torch.cat([self.beam_search(chunk, s, beam) for chunk in x.detach().float().split(8192)])
        residual = x.detach().float()
        indices = []
        for vq in self.stages[:s]:
            idx = vq.encode(residual)
            residual = residual - vq.lookup(idx)
            indices.append(idx)
        return torch.stack(indices, dim=1)

    @torch.no_grad()
    def beam_search(self, x: torch.Tensor, num_stages: int, beam: int) -> torch.Tensor:
        """Beam-search residual quantization: (N, D) float32 -> (N, num_stages) int64.

        Greedy residual VQ commits to each stage's nearest code; the best sum of s codes is often made of
        a second- or third-nearest code at some stage. Keeping `beam` candidates per vector finds it:
        measured on the image model's Kodak latents, beam 4 gains 0.2 dB at 2 stages, 0.4 at 4 and 0.5
        at 8 over greedy, for about 4x the (small) nearest-code time. Stage 1 stays greedy, so the stage-1
        index map keeps the statistics its autoregressive prior was trained on. Only the encoder runs
        this; the decoder reads the indices, so exact decoding does not depend on it.
        Memory: N * beam * K floats per stage (callers chunk N).
        """
        paths, _ = self._prefix_search(x, num_stages, beam)
        return paths[:, num_stages - 1, :num_stages]  # the best path of all num_stages stages

    @torch.no_grad()
    def encode_prefixes(self, x: torch.Tensor, num_stages: int | None = None,
                        beam: int = 1, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The best path at every depth, for encoders that choose a depth per vector.

        x: (N, D) float -> (paths, errors): paths (N, s, s) int64, row d-1 the best d-stage path found
        (entries past d are -1, "absent"); errors (N, s) float32, the squared error ||x - sum||^2 of that
        path. beam = 1: the prefixes of the greedy path; beam > 1: the beam search of `beam_search`, whose
        best candidate after stage d is the d-stage path (so a vector that stops at d gets the best path
        the search found for d stages, not a prefix of the s-stage one).
        exact: decide on latents and codebooks snapped to a 2^-10 grid in exact integer arithmetic
        (vqcodec.quantization.exact_search), so the paths do not depend on thread count or machine; errors
        are then the snapped distances, rounded to float32.
        """
        s = self.num_stages if num_stages is None else num_stages
        if exact:
            paths, grid_errors = prefix_search_exact(x, [vq.codebook for vq in self.stages[:s]], max(beam, 1))
            return paths, (grid_errors.double() * EXACT_UNIT).float()
        out_paths, out_errors = [], []
        for chunk in x.detach().float().split(8192):
            paths, errors = self._prefix_search(chunk, s, max(beam, 1))
            out_paths.append(paths)
            out_errors.append(errors)
        return torch.cat(out_paths), torch.cat(out_errors)

    def _prefix_search(self, x: torch.Tensor, num_stages: int, beam: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The beam search of `beam_search`, recording its best candidate after every stage: (N, s, s) paths
        (ABSENT-padded) and (N, s) squared errors. beam = 1 is greedy."""
        n, d = x.shape
        paths_out = torch.full((n, num_stages, num_stages), -1, dtype=torch.int64, device=x.device)
        errors_out = torch.empty(n, num_stages, device=x.device)
        first = self.stages[0].encode(x)
        sums = self.stages[0].lookup(first)[:, None, :]
        paths = first[:, None, None]
        paths_out[:, 0, 0] = first
        errors_out[:, 0] = ((x - sums[:, 0]) ** 2).sum(-1)
        for stage, vq in enumerate(self.stages[1:num_stages], start=1):
            codebook = vq.codebook.float()
            k = codebook.shape[0]
            residual = x[:, None, :] - sums
            b = residual.shape[1]
            # squared distance of every candidate residual to every code, ||r||^2 - 2 r.c + ||c||^2, as one
            # matmul: [r, 1] @ [-2 C, ||c||^2]^T; ||r||^2 is added after the per-candidate top-k
            scaled = torch.cat([codebook * -2.0, (codebook * codebook).sum(1, keepdim=True)], dim=1)
            ones = residual.new_ones(n * b, 1)
            partial = (torch.cat([residual.reshape(-1, d), ones], dim=1) @ scaled.T).reshape(n, b, k)
            best, codes = partial.topk(min(beam, k), dim=-1, largest=False)  # (N, b, beam) per candidate
            best = best + (residual * residual).sum(-1, keepdim=True)
            # topk sorts ascending: candidate 0 has the least error
            err, pick = best.reshape(n, -1).topk(min(beam, best[0].numel()), dim=-1, largest=False)
            parent = pick // best.shape[-1]
            code = torch.gather(codes.reshape(n, -1), 1, pick)
            sums = torch.gather(sums, 1, parent[..., None].expand(-1, -1, d)) + vq.lookup(code)
            paths = torch.cat([torch.gather(paths, 1, parent[..., None].expand(-1, -1, paths.shape[2])),
                               code[..., None]], dim=2)
            paths_out[:, stage, : stage + 1] = paths[:, 0]
            errors_out[:, stage] = err[:, 0].clamp_min(0.0)
        return paths_out, errors_out

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """(N, s) int64 indices of the first s stages -> (N, D) float, the sum of their codes.

        An index of -1 means "absent" (the vector stopped before that stage, see `encode_prefixes`) and
        adds nothing."""
        if indices.shape[-1] > self.num_stages:
            raise ValueError(f"got {indices.shape[-1]} stages of indices, the quantizer has {self.num_stages}")
        out = torch.zeros(*indices.shape[:-1], self.dim, device=indices.device)
        for s in range(indices.shape[-1]):
            idx = indices[..., s]
            present = idx >= 0
            if bool(present.all()):
                out = out + self.stages[s].lookup(idx)
            else:
                out = out + self.stages[s].lookup(idx.clamp(min=0)) * present[..., None].to(out.dtype)
        return out
