"""Fusion of per-modality item vectors into one embedding, and a seeded PCA.

Every modality vector is L2-normalized and scaled by its weight before fusion, so a
modality's share of the fused vector is set by config, not by its raw scale or size.
A missing modality is given by its mask; its slot is never filled with a vector that
pretends to be data. Arithmetic runs in float64 and the result is cast to float32, so
a row's fused vector does not depend on the other rows of its batch in practice.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

__all__ = ["PcaModel", "fit_pca", "fuse", "fused_dim", "l2_normalize", "projection_matrix"]

FusionMode = Literal["concat", "project"]

# Rows with a norm below this cannot be normalized; callers mask them.
MIN_NORM = 1e-12


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float64 rows of ``vectors`` (n, d) scaled to unit L2 norm; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > MIN_NORM)


def projection_matrix(in_dim: int, out_dim: int, *, seed: int, modality: str) -> np.ndarray:
    """Return a seeded Gaussian projection of shape (in_dim, out_dim), float64.

    Entries are N(0, 1/out_dim), so a unit vector keeps about unit norm
    (Johnson-Lindenstrauss). The seed mixes in the modality name, so two modalities of the
    same size get different projections.
    """
    digest = hashlib.sha256(f"{seed}:{modality}:{in_dim}:{out_dim}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return rng.standard_normal((in_dim, out_dim)) / np.sqrt(out_dim)


def fused_dim(dims: Mapping[str, int], *, mode: FusionMode, projection_dim: int) -> int:
    """Return the size of the fused vector for modality sizes ``dims`` (modalities in fusion)."""
    return sum(dims.values()) if mode == "concat" else projection_dim


def fuse(
    parts: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    *,
    mode: FusionMode = "concat",
    projections: Mapping[str, np.ndarray] | None = None,
    order: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse modality vectors; return (float32 (n, D) vectors, bool (n,) usable rows).

    ``parts[m]`` is (n, d_m) and ``masks[m]`` is bool (n,), True where item has modality m;
    rows under a False mask are ignored whatever they hold. ``order`` fixes the slot order
    of concat (default: the order of ``parts``).

    concat: slot m contains ``w_m * x_m / ||x_m||`` or zeros when the item lacks m, and the
    row is divided by ``sqrt(sum of w_m**2 over present m)`` so that every usable row has
    unit norm. project: ``sum over present m of w_m * normalize(x_m) @ P_m``, then
    L2-normalized; ``projections[m]`` is (d_m, D).

    A row is usable when at least one present modality has a positive weight; unusable
    rows come back as zeros and the caller must not publish them.
    """
    order = list(order or parts)
    n = _row_count(parts, masks, order)
    weight_sq = np.zeros(n)
    slots = []
    for modality in order:
        mask = np.asarray(masks[modality], dtype=bool)
        weight = float(weights.get(modality, 0.0))
        unit = l2_normalize(parts[modality])
        present = mask & (np.linalg.norm(unit, axis=1) > 0.5)
        scaled = np.where(present[:, None], unit * weight, 0.0)
        weight_sq += np.where(present, weight * weight, 0.0)
        if mode == "project":
            if projections is None or modality not in projections:
                raise ValueError(f"mode='project' needs a projection matrix for modality {modality!r}")
            scaled = scaled @ projections[modality]
        slots.append(scaled)

    usable = weight_sq > 0
    if mode == "concat":
        fused = np.concatenate(slots, axis=1) if slots else np.zeros((n, 0))
        fused = np.divide(fused, np.sqrt(weight_sq)[:, None], out=np.zeros_like(fused), where=usable[:, None])
    else:
        fused = l2_normalize(np.sum(slots, axis=0))
    fused[~usable] = 0.0
    return fused.astype(np.float32), usable


def _row_count(parts: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], order: Sequence[str]) -> int:
    if not order:
        raise ValueError("fuse needs at least one modality; parts is empty")
    counts = {len(parts[m]) for m in order} | {len(masks[m]) for m in order}
    if len(counts) != 1:
        raise ValueError(f"every part and mask must have the same number of rows, got {sorted(counts)}")
    return counts.pop()


@dataclasses.dataclass(frozen=True)
class PcaModel:
    """A fitted PCA: ``mean`` (d,) and ``components`` (k, d), both float64."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: float

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Return float32 (n, k) projections of ``vectors`` (n, d), L2-normalized per row."""
        centered = np.asarray(vectors, dtype=np.float64) - self.mean
        return l2_normalize(centered @ self.components.T).astype(np.float32)


def fit_pca(sample: np.ndarray, dim: int) -> PcaModel:
    """Fit PCA with ``dim`` components on ``sample`` (n, d); deterministic for a given sample.

    Each component's sign is fixed so that its largest-magnitude entry is positive, since
    SVD leaves signs free. Raises ValueError when ``dim`` exceeds min(n, d).
    """
    sample = np.asarray(sample, dtype=np.float64)
    n, d = sample.shape
    if not 1 <= dim <= min(n, d):
        raise ValueError(
            f"pca_dim={dim} must be between 1 and min(sample rows={n}, vector size={d}); "
            "lower embed.fusion.pca_dim or raise embed.fusion.pca_sample_size"
        )
    mean = sample.mean(axis=0)
    _, singular_values, vt = np.linalg.svd(sample - mean, full_matrices=False)
    components = vt[:dim]
    signs = np.sign(components[np.arange(dim), np.argmax(np.abs(components), axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    variance = singular_values**2
    ratio = float(variance[:dim].sum() / variance.sum()) if variance.sum() > 0 else 0.0
    return PcaModel(mean=mean, components=components, explained_variance_ratio=ratio)
