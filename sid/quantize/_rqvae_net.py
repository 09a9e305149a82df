"""The RQ-VAE network in PyTorch: MLP encoder and decoder around L residual codebooks.

Losses follow TIGER ("Recommender Systems with Generative Retrieval", arXiv 2305.05065):
per level l with residual r_l and chosen codeword e_l, the codebook term
||sg(r_l) - e_l||^2 plus beta * ||r_l - sg(e_l)||^2 (commitment), a straight-through
estimator z_hat = z + sg(sum_l e_l - z), and the squared L2 reconstruction error per item.
The optional contrastive step is FORGE's (arXiv 2509.20904): three symmetric in-batch
InfoNCE terms on L2-normalized reconstructions of co-occurring pairs.

Codebook distances, Sinkhorn and code indices run in float32/float64 and int64 with autocast
disabled, so bf16 autocast only touches the encoder and decoder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Collective", "RqvaeNet", "StepOutput"]

# FORGE's InfoNCE logit scales start at 1 / 0.07 and are learned in log space; the clamp
# (absent in FORGE) keeps them from growing without bound on small catalogs.
INITIAL_LOGIT_SCALE = 1 / 0.07
MAX_LOGIT_SCALE = 100.0


class Collective:
    """All-reduce and broadcast across data-parallel workers; no-ops in a single process."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.enabled = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.enabled else 0
        self.world_size = dist.get_world_size() if self.enabled else 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.broadcast(tensor, src=0)
        return tensor


@dataclasses.dataclass
class StepOutput:
    """Losses (scalar tensors) and int64 (B, L) codes of one forward pass."""

    reconstruction: torch.Tensor
    quantization: torch.Tensor
    codes: torch.Tensor
    decoded: torch.Tensor
    latent_residuals: list[torch.Tensor]
    # FORGE's InfoNCE loss when the batch is a pair batch, else None.
    contrastive: torch.Tensor | None = None


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RqvaeNet(nn.Module):
    """Encoder (dim -> hidden_dims -> latent_dim), L codebooks (K_l, latent_dim), mirrored decoder."""

    def __init__(self, dim: int, hidden_dims: Sequence[int], latent_dim: int, codebook_sizes: Sequence[int]) -> None:
        super().__init__()
        self.encoder = _mlp([dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), dim])
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.empty(size, latent_dim).uniform_(-1.0 / size, 1.0 / size)) for size in codebook_sizes
        )
        self.log_logit_scales = nn.Parameter(torch.full((3,), math.log(INITIAL_LOGIT_SCALE)))

    def quantize(self, latent: torch.Tensor, *, sinkhorn: tuple[int, float] | None, collective: Collective,
                 beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Return (z_hat, quantization loss, int64 (B, L) codes, detached residual per level)."""
        with torch.autocast(device_type=latent.device.type, enabled=False):
            z = latent.float()
            quantized = torch.zeros_like(z)
            loss = z.new_zeros(())
            codes = []
            residuals = []
            for codebook in self.codebooks:
                # The residual keeps z's gradient (commitment); earlier codewords are detached.
                residual = z - quantized.detach()
                residuals.append(residual.detach())
                distances = squared_distances(residual.detach(), codebook.detach())
                if sinkhorn is None:
                    code = torch.argmin(distances, dim=1)
                else:
                    code = sinkhorn_codes(distances, iterations=sinkhorn[0], epsilon=sinkhorn[1], collective=collective)
                codeword = codebook[code]
                loss = loss + F.mse_loss(codeword, residual.detach()) + beta * F.mse_loss(residual, codeword.detach())
                quantized = quantized + codeword
                codes.append(code)
            z_hat = z + (quantized - z).detach()
        return z_hat, loss, torch.stack(codes, dim=1).to(torch.int64), residuals

    def forward(self, inputs: torch.Tensor, *, sinkhorn: tuple[int, float] | None = None,
                collective: Collective | None = None, beta: float = 0.25, pair_size: int = 0) -> StepOutput:
        """Run one batch; with ``pair_size`` > 0 rows [0, p) and [p, 2p) are co-occurring pairs.

        The InfoNCE term is computed here rather than by the caller, so that
        DistributedDataParallel tracks every parameter that the loss uses.
        """
        latent = self.encoder(inputs)
        z_hat, quantization, codes, residuals = self.quantize(
            latent, sinkhorn=sinkhorn, collective=collective or Collective(), beta=beta
        )
        decoded = self.decoder(z_hat.to(latent.dtype))
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            # Squared L2 error per item, not per element: on unit-norm 384-d embeddings the
            # per-element mean is so small that the codebook terms win and the latent collapses.
            reconstruction = ((decoded.float() - inputs.float()) ** 2).sum(dim=1).mean()
        contrastive = None
        if pair_size:
            decoded_a, decoded_b = decoded[:pair_size], decoded[pair_size:]
            contrastive = self.contrastive_loss(decoded_a, decoded_b, inputs[:pair_size], inputs[pair_size:])
        return StepOutput(reconstruction, quantization, codes, decoded, residuals, contrastive)

    def contrastive_loss(self, decoded_a: torch.Tensor, decoded_b: torch.Tensor,
                         raw_a: torch.Tensor, raw_b: torch.Tensor) -> torch.Tensor:
        """Return FORGE's mean of the self, ori and cl InfoNCE terms for one pair batch.

        Unlike FORGE, the raw embeddings are L2-normalized too, so that their norm cannot
        scale the logits. Negatives are the other pairs of this worker's batch.
        """
        with torch.autocast(device_type=decoded_a.device.type, enabled=False):
            scales = self.log_logit_scales.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()
            rec_a, rec_b = F.normalize(decoded_a.float(), dim=1), F.normalize(decoded_b.float(), dim=1)
            raw_a, raw_b = F.normalize(raw_a.float(), dim=1), F.normalize(raw_b.float(), dim=1)
            self_term = _symmetric_info_nce(rec_a, rec_b, scales[0])
            ori_term = 0.5 * (_symmetric_info_nce(rec_a, raw_b, scales[1]) + _symmetric_info_nce(rec_b, raw_a, scales[1]))
            cl_term = 0.5 * (_symmetric_info_nce(rec_a, raw_a, scales[2]) + _symmetric_info_nce(rec_b, raw_b, scales[2]))
        return (self_term + ori_term + cl_term) / 3.0

    def export_arrays(self) -> dict[str, np.ndarray]:
        """Return float32 NumPy copies of the weights, named for the NumPy inference path."""
        arrays: dict[str, np.ndarray] = {}
        for part in ("encoder", "decoder"):
            linears = [layer for layer in getattr(self, part) if isinstance(layer, nn.Linear)]
            for index, layer in enumerate(linears):
                arrays[f"{part}_weight_{index}"] = layer.weight.detach().float().cpu().numpy().T.copy()
                arrays[f"{part}_bias_{index}"] = layer.bias.detach().float().cpu().numpy().copy()
        for level, codebook in enumerate(self.codebooks):
            arrays[f"codebook_{level}"] = codebook.detach().float().cpu().numpy().copy()
        return arrays


def squared_distances(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Return float32 (B, K) squared L2 distances, clipped at 0 against rounding."""
    points = points.float()
    centroids = centroids.float()
    cross = points @ centroids.T
    distances = (points * points).sum(dim=1, keepdim=True) - 2.0 * cross + (centroids * centroids).sum(dim=1)
    return distances.clamp_min(0.0)


def sinkhorn_codes(distances: torch.Tensor, *, iterations: int, epsilon: float, collective: Collective) -> torch.Tensor:
    """Return int64 (B,) Sinkhorn-balanced codes of float (B, K) distances.

    FORGE's training-time assignment: standardize D by its mean and standard deviation
    over all workers, subtract the minimum, take Q = exp(-D / epsilon), then alternate
    column sums (all-reduced across workers) and row normalizations; each row takes its
    argmax. Runs in float64.
    """
    scores = distances.double()
    stats = torch.stack([scores.sum(), (scores * scores).sum(), scores.new_tensor(float(scores.numel()))])
    collective.all_reduce_sum(stats)
    mean = stats[0] / stats[2]
    spread = (stats[1] / stats[2] - mean * mean).clamp_min(0.0).sqrt().clamp_min(1e-12)
    scaled = (scores - mean) / spread
    minimum = scaled.min()
    if collective.enabled:
        # The global minimum is minus the maximum of the negated local minima.
        negated = -minimum.reshape(1)
        import torch.distributed as dist

        dist.all_reduce(negated, op=dist.ReduceOp.MAX)
        minimum = -negated[0]
    plan = torch.exp(-(scaled - minimum) / epsilon)
    tiny = torch.finfo(torch.float64).tiny
    for _ in range(iterations):
        column_sums = collective.all_reduce_sum(plan.sum(dim=0, keepdim=True))
        plan = plan / column_sums.clamp_min(tiny)
        plan = plan / plan.sum(dim=1, keepdim=True).clamp_min(tiny)
    return torch.argmax(plan, dim=1)


def _symmetric_info_nce(left: torch.Tensor, right: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * left @ right.T
    targets = torch.arange(len(left), device=left.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
