"""RQ-VAE training loop, shared by single-process fits and Ray Train workers.

The loop only reads a :class:`BatchSource` (float32 batches per epoch) and a
:class:`Collective`, so the same code trains on an in-memory array or on a Ray Data shard
with codebooks kept in sync across workers: gradients are averaged by DistributedDataParallel,
the k-means initialization and code restarts are computed on rank 0 and broadcast, and
Sinkhorn and usage counts are all-reduced.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from sid.quantize._rqvae_net import Collective, RqvaeNet, squared_distances

__all__ = ["BatchSource", "ArrayBatchSource", "TrainOptions", "train_network"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Training settings; the fields mirror sid.config.RqvaeConfig."""

    beta: float = 0.25
    epochs: int = 100
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    min_learning_rate: float = 1e-6
    kmeans_init: bool = True
    kmeans_init_batches: int = 8
    restart_unused_steps: int = 200
    sinkhorn: bool = False
    sinkhorn_iterations: int = 5
    sinkhorn_epsilon: float = 0.1
    contrastive_weight: float = 1.0
    patience: int = 10
    precision: str = "float32"
    seed: int = 0
    show_progress: bool = True


class BatchSource(Protocol):
    """Source of training batches. Every method yields float32 NumPy arrays."""

    # Optimizer steps per epoch (item batches plus the pair batches interleaved with them),
    # used to lay out the learning-rate schedule.
    steps_per_epoch: int

    def batches(self, epoch: int) -> Iterator[np.ndarray]: ...

    def pair_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def holdout_batches(self) -> Iterator[np.ndarray]: ...


class ArrayBatchSource:
    """Batches of in-memory arrays, shuffled by a seeded permutation per epoch."""

    def __init__(self, train: np.ndarray, holdout: np.ndarray, *, batch_size: int, seed: int,
                 pairs: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.train = train
        self.holdout = holdout
        self.batch_size = batch_size
        self.seed = seed
        self.pairs = pairs
        item_batches = max(1, math.ceil(len(train) / batch_size))
        # pair_batches skips a last batch of one pair, which has no in-batch negative.
        pair_batches = 0 if pairs is None else math.ceil(len(pairs[0]) / batch_size) - int(len(pairs[0]) % batch_size == 1)
        self.steps_per_epoch = item_batches + min(item_batches, pair_batches)

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
        for start in range(0, len(order), self.batch_size):
            yield self.train[np.sort(order[start:start + self.batch_size])]

    def pair_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.pairs is None:
            return
        left, right = self.pairs
        order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(left))
        for start in range(0, len(order), self.batch_size):
            rows = np.sort(order[start:start + self.batch_size])
            # InfoNCE needs at least one negative in the batch.
            if len(rows) > 1:
                yield left[rows], right[rows]

    def holdout_batches(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.holdout), self.batch_size):
            yield self.holdout[start:start + self.batch_size]


def train_network(net: RqvaeNet, source: BatchSource, options: TrainOptions, *, device: torch.device,
                  collective: Collective | None = None, model: torch.nn.Module | None = None) -> dict[str, float]:
    """Train ``net`` in place and return its history summary (best held-out loss, epochs run).

    ``model`` is the module the optimizer steps through (a DistributedDataParallel wrapper of
    ``net`` in Ray Train); it defaults to ``net``. On return ``net`` contains the weights of
    the epoch with the lowest held-out reconstruction loss.
    """
    collective = collective or Collective()
    model = model or net
    optimizer = _optimizer(net, options)
    total_steps = options.epochs * source.steps_per_epoch
    warmup_steps = options.warmup_epochs * source.steps_per_epoch
    autocast = _autocast(device, options.precision)
    sinkhorn = (options.sinkhorn_iterations, options.sinkhorn_epsilon) if options.sinkhorn else None
    unused_steps = [torch.zeros(len(codebook), dtype=torch.int64, device=device) for codebook in net.codebooks]
    restarts = 0

    # k-means initialization of every codebook from the first batches' latent residuals.
    if options.kmeans_init:
        kmeans_init_codebooks(net, source, options, device=device, collective=collective)

    best_loss, best_state, best_epoch, stale_epochs, step = math.inf, None, -1, 0, 0
    progress = _progress_bar(options.epochs, enabled=options.show_progress and collective.rank == 0)
    for epoch in range(options.epochs):
        model.train()
        sums = {"loss": 0.0, "reconstruction": 0.0, "quantization": 0.0, "contrastive": 0.0}
        steps_in_epoch = 0
        usage = [torch.zeros(len(codebook), dtype=torch.int64, device=device) for codebook in net.codebooks]

        # One reconstruction batch, then one pair batch, while either loader has batches left.
        for kind, batch in _interleave(source, epoch, collective, device):
            _set_learning_rate(optimizer, options, step, warmup_steps, total_steps)
            with autocast:
                if kind == "items":
                    output = model(batch, sinkhorn=sinkhorn, collective=collective, beta=options.beta)
                    loss = output.reconstruction + output.quantization
                    sums["reconstruction"] += float(output.reconstruction.detach())
                    codes, residuals = output.codes, output.latent_residuals
                else:
                    # Both sides in one forward pass: DistributedDataParallel expects one per backward.
                    output = model(torch.cat(batch), sinkhorn=sinkhorn, collective=collective, beta=options.beta,
                                   pair_size=len(batch[0]))
                    contrastive = output.contrastive
                    # The quantization loss of the joint batch is the mean of FORGE's two halves.
                    loss = options.contrastive_weight * contrastive + output.quantization
                    sums["contrastive"] += float(contrastive.detach())
                    codes, residuals = output.codes, output.latent_residuals
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums["loss"] += float(loss.detach())
            sums["quantization"] += float(output.quantization.detach())
            steps_in_epoch += 1
            step += 1

            # Usage across workers; codes unused for too long restart on this batch's residuals.
            for level, level_codes in enumerate(codes.T):
                counts = collective.all_reduce_sum(torch.bincount(level_codes, minlength=len(usage[level])))
                usage[level] += counts
                unused_steps[level] = torch.where(counts > 0, 0, unused_steps[level] + 1)
            if options.restart_unused_steps:
                restarts += restart_unused_codes(net, unused_steps, residuals, options, collective=collective,
                                                 generator_seed=options.seed + step)

        holdout = holdout_reconstruction(net, source, device=device, collective=collective, autocast=autocast)
        if collective.rank == 0:
            utilization = " ".join(f"L{level}={float((counts > 0).float().mean()):.3f}"
                                   for level, counts in enumerate(usage))
            logger.info(
                "epoch=%d loss=%.5f reconstruction=%.5f quantization=%.5f contrastive=%.5f holdout_reconstruction=%.5f "
                "lr=%.2e restarts=%d utilization %s",
                epoch, sums["loss"] / max(steps_in_epoch, 1), sums["reconstruction"] / max(steps_in_epoch, 1),
                sums["quantization"] / max(steps_in_epoch, 1), sums["contrastive"] / max(steps_in_epoch, 1),
                holdout, optimizer.param_groups[0]["lr"], restarts, utilization,
            )
        progress.update(1)
        progress.set_postfix(holdout=f"{holdout:.4f}")

        # Early stopping on held-out reconstruction loss, which is all-reduced so every worker stops together.
        if holdout < best_loss:
            best_loss, best_epoch, stale_epochs = holdout, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale_epochs += 1
            if options.patience and stale_epochs >= options.patience:
                if collective.rank == 0:
                    logger.info("early_stop epoch=%d best_epoch=%d holdout_reconstruction=%.5f",
                                epoch, best_epoch, best_loss)
                break
    progress.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return {"holdout_reconstruction": best_loss, "best_epoch": float(best_epoch),
            "epochs_run": float(epoch + 1), "code_restarts": float(restarts)}


def kmeans_init_codebooks(net: RqvaeNet, source: BatchSource, options: TrainOptions, *,
                          device: torch.device, collective: Collective) -> None:
    """Set each codebook to k-means centroids of the latent residuals of the first batches.

    Every worker reads its first ``kmeans_init_batches`` batches (Ray Data shards are
    consumed in step), rank 0 clusters its own, and the codebooks are broadcast.
    """
    from sid.quantize.residual_kmeans import kmeans_plus_plus

    import faiss

    collected = []
    for index, batch in enumerate(source.batches(0)):
        if index >= options.kmeans_init_batches:
            break
        with torch.no_grad():
            collected.append(net.encoder(torch.as_tensor(batch, device=device)).float().cpu().numpy())
    if collective.rank == 0:
        residual = np.concatenate(collected).astype(np.float32)
        for level, codebook in enumerate(net.codebooks):
            size = len(codebook)
            if len(residual) >= size:
                kmeans = faiss.Kmeans(residual.shape[1], size, niter=20, seed=options.seed + level, verbose=False)
                kmeans.train(residual)
                centroids = kmeans.centroids
            else:
                # Fewer init vectors than codes: k-means++ seeds repeat points, which restarts fix later.
                centroids = kmeans_plus_plus(residual, size, seed=options.seed + level)
            codes = np.argmin(squared_distances(torch.as_tensor(residual), torch.as_tensor(centroids)).numpy(), axis=1)
            residual = residual - centroids[codes]
            with torch.no_grad():
                codebook.copy_(torch.as_tensor(centroids, device=device))
    for codebook in net.codebooks:
        with torch.no_grad():
            collective.broadcast(codebook.data)


def restart_unused_codes(net: RqvaeNet, unused_steps: list[torch.Tensor], residuals: list[torch.Tensor],
                         options: TrainOptions, *, collective: Collective, generator_seed: int) -> int:
    """Move codes unused for ``restart_unused_steps`` steps onto random residuals; return the count.

    Rank 0 draws the replacement residuals from its batch and broadcasts them, so every
    worker keeps the same codebooks.
    """
    restarted = 0
    generator = torch.Generator().manual_seed(generator_seed)
    for level, codebook in enumerate(net.codebooks):
        dead = unused_steps[level] >= options.restart_unused_steps
        count = int(dead.sum())
        if not count:
            continue
        candidates = residuals[level]
        rows = torch.randint(len(candidates), (count,), generator=generator).to(candidates.device)
        replacement = candidates[rows].float().clone()
        collective.broadcast(replacement)
        with torch.no_grad():
            codebook[dead] = replacement.to(codebook.dtype)
        unused_steps[level][dead] = 0
        restarted += count
    return restarted


def holdout_reconstruction(net: RqvaeNet, source: BatchSource, *, device: torch.device,
                           collective: Collective, autocast) -> float:
    """Return the mean squared reconstruction error per element on the held-out rows."""
    net.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad(), autocast:
        for batch in source.holdout_batches():
            inputs = torch.as_tensor(batch, device=device)
            output = net(inputs)
            totals[0] += float(((output.decoded.float() - inputs) ** 2).sum())
            totals[1] += inputs.numel()
    collective.all_reduce_sum(totals)
    return float(totals[0] / totals[1]) if totals[1] > 0 else math.inf


def _interleave(source: BatchSource, epoch: int, collective: Collective, device: torch.device):
    """Yield ("items", tensor) and ("pairs", (tensor, tensor)) batches in alternation.

    An epoch is one pass over the items: pair batches stop with them, so a large pair set
    contributes a fresh shuffled subset each epoch (FORGE instead runs every pair batch).
    A loader stops for every worker as soon as one worker runs out of its batches, so that
    all workers run the same number of steps (DistributedDataParallel needs that).
    """
    iterators = {"items": iter(source.batches(epoch)), "pairs": iter(source.pair_batches(epoch))}
    active = ["items", "pairs"]
    while active:
        for kind in list(active):
            batch = next(iterators[kind], None)
            has_batch = torch.tensor([0 if batch is None else 1], device=device)
            if collective.enabled:
                import torch.distributed as dist

                dist.all_reduce(has_batch, op=dist.ReduceOp.MIN)
            if not int(has_batch):
                if kind == "items":
                    return
                active.remove(kind)
                continue
            if kind == "items":
                yield kind, torch.as_tensor(batch, device=device)
            else:
                yield kind, (torch.as_tensor(batch[0], device=device), torch.as_tensor(batch[1], device=device))


def _optimizer(net: RqvaeNet, options: TrainOptions) -> torch.optim.Optimizer:
    """AdamW with weight decay on the MLP weight matrices only.

    FORGE decays every tensor of two or more dimensions, codebooks included, and that pulls
    unused codewords to the origin. Here codebooks, biases and logit scales get no decay.
    """
    codebook_ids = {id(codebook) for codebook in net.codebooks}
    decayed = [p for p in net.parameters() if p.ndim >= 2 and id(p) not in codebook_ids]
    plain = [p for p in net.parameters() if p.ndim < 2 or id(p) in codebook_ids]
    return torch.optim.AdamW(
        [{"params": decayed, "weight_decay": options.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=options.learning_rate, betas=(0.9, 0.999),
    )


def _set_learning_rate(optimizer: torch.optim.Optimizer, options: TrainOptions, step: int,
                       warmup_steps: int, total_steps: int) -> None:
    """Linear warm-up to learning_rate, then cosine decay to min_learning_rate at total_steps."""
    if warmup_steps and step < warmup_steps:
        rate = options.learning_rate * (step + 1) / warmup_steps
    else:
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        rate = options.min_learning_rate + 0.5 * (options.learning_rate - options.min_learning_rate) * (
            1.0 + math.cos(math.pi * progress)
        )
    for group in optimizer.param_groups:
        group["lr"] = rate


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def _progress_bar(total: int, *, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="rqvae epochs", unit="epoch", disable=not enabled, leave=False)
