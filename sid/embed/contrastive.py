"""FORGE's contrastive alignment of item embeddings (Fu et al., arXiv 2509.20904).

FORGE pulls an item's fused representation toward the representation of an item that
co-occurs with it, with an InfoNCE loss and in-batch negatives. Here that loss trains a
linear head on top of the fused vectors. The head's weights are plain NumPy arrays, so
Spark can broadcast them and apply the head to every item.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ContrastiveHead", "similarity_gap", "train_contrastive_head"]


@dataclasses.dataclass(frozen=True)
class ContrastiveHead:
    """A trained head: ``weight`` (d_in, d_out) and ``bias`` (d_out,), float64."""

    weight: np.ndarray
    bias: np.ndarray

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Return float32 (n, d_out) rows of ``vectors @ weight + bias``, L2-normalized."""
        from sid.embed.fusion import l2_normalize

        projected = np.asarray(vectors, dtype=np.float64) @ self.weight + self.bias
        return l2_normalize(projected).astype(np.float32)


def similarity_gap(left: np.ndarray, right: np.ndarray, *, seed: int) -> float:
    """Return mean cosine of the pairs (left[i], right[i]) minus that of shuffled pairs.

    ``left`` and ``right`` are (n, d) with n >= 2. The shuffled pairs come from a cyclic
    shift of ``right`` by a seeded offset of at least one row, so no row meets its partner.
    """
    from sid.embed.fusion import l2_normalize

    if len(left) < 2 or len(left) != len(right):
        raise ValueError(f"similarity_gap needs two equal sets of >= 2 rows, got {len(left)} and {len(right)}")
    left = l2_normalize(left)
    right = l2_normalize(right)
    offset = 1 + int(np.random.default_rng(seed).integers(len(left) - 1))
    positive = np.sum(left * right, axis=1).mean()
    negative = np.sum(left * np.roll(right, offset, axis=0), axis=1).mean()
    return float(positive - negative)


def train_contrastive_head(
    left: np.ndarray,
    right: np.ndarray,
    *,
    output_dim: int | None = None,
    temperature: float = 0.2,
    epochs: int = 10,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> tuple[ContrastiveHead, dict[str, float]]:
    """Train the head on co-occurring pairs (left[i], right[i]), float (n, d) each.

    Loss: symmetric InfoNCE on L2-normalized head outputs, logits = cosine / temperature,
    the other pairs of the batch as negatives (FORGE, arXiv 2509.20904). The head starts
    as the identity (a seeded orthogonal map when ``output_dim`` differs), so training
    begins from the fused vectors, and ``weight_decay`` pulls it back there. Deterministic for a seed on one machine: one torch
    thread and a seeded batch order.

    Returns the head and stats: loss_first_epoch, loss_last_epoch, pairs, epochs.
    """
    import torch

    left_t = torch.as_tensor(np.asarray(left, dtype=np.float32))
    right_t = torch.as_tensor(np.asarray(right, dtype=np.float32))
    n, d_in = left_t.shape
    if n < 2:
        raise ValueError(f"train_contrastive_head needs at least 2 pairs, got {n}")
    d_out = output_dim or d_in

    # The head is base + delta. The base is the identity (a seeded orthogonal map when the size
    # changes) and stays fixed. Weight decay pulls delta toward zero, so the head stays close
    # to the fused vectors instead of fitting the training pairs alone.
    torch.manual_seed(seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = torch.eye(d_in) if d_in == d_out else torch.nn.init.orthogonal_(torch.empty(d_in, d_out))
    delta = torch.nn.Parameter(torch.zeros(d_in, d_out))
    bias = torch.nn.Parameter(torch.zeros(d_out))
    optimizer = torch.optim.AdamW([delta, bias], lr=learning_rate, weight_decay=weight_decay)

    # Epochs over a seeded permutation; a last batch of one pair has no negative and is skipped.
    order_rng = np.random.default_rng(seed)
    batch_size = min(batch_size, n)
    epoch_losses = []
    try:
        for _ in range(epochs):
            permutation = torch.as_tensor(order_rng.permutation(n))
            losses = []
            for start in range(0, n, batch_size):
                rows = permutation[start:start + batch_size]
                if len(rows) < 2:
                    continue
                weight = base + delta
                loss = _info_nce(left_t[rows] @ weight + bias, right_t[rows] @ weight + bias, temperature)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            epoch_losses.append(float(np.mean(losses)))
    finally:
        torch.set_num_threads(previous_threads)

    head = ContrastiveHead(weight=(base + delta).detach().double().numpy(), bias=bias.detach().double().numpy())
    stats = {"loss_first_epoch": epoch_losses[0], "loss_last_epoch": epoch_losses[-1],
             "pairs": float(n), "epochs": float(epochs)}
    return head, stats


def _info_nce(left, right, temperature: float):
    """Symmetric InfoNCE over a batch: row i of ``left`` matches row i of ``right``."""
    import torch
    import torch.nn.functional as F

    left = F.normalize(left, dim=1)
    right = F.normalize(right, dim=1)
    logits = left @ right.T / temperature
    targets = torch.arange(len(left))
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
