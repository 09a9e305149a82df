"""Residual k-means quantizer fitted level by level with faiss k-means."""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sid.errors import QuantizerError
from sid.quantize._storage import read_quantizer_folder, write_quantizer_folder
from sid.quantize.balance import capacity_assign, sinkhorn_assign
from sid.quantize.residual import EncodeResult, _unit_rows, check_vectors, decode_residual, encode_residual

__all__ = ["ResidualKMeans"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
METHOD = "residual_kmeans"
# faiss subsamples to this many points per centroid; 256 is faiss's own default. k-means++
# seeding and balanced refinement use the same subsample size.
MAX_POINTS_PER_CENTROID = 256
# Lloyd iterations with balanced assignment that follow plain k-means on a balanced level.
BALANCE_ITERATIONS = 10

Init = Literal["faiss", "kmeans++"]
Balance = Literal["none", "sinkhorn", "capacity"]


class ResidualKMeans:
    """Residual quantizer with one k-means codebook per level (RQ-KMeans).

    Level l clusters the residuals left by levels 0..l-1 into ``codebook_sizes[l]``
    centroids. Options:

    - ``init``: faiss's random-sample initialization, or k-means++ seeding (drawn on the
      subsample that faiss trains on) passed to faiss as the initial centroids.
    - ``normalize_residuals``: clusters the directions of the residuals (spherical k-means)
      and assigns codes by cosine; each codeword is the mean of the raw residuals of its code,
      so decoding stays the sum of codewords.
    - ``balance``: refines the levels in ``balance_levels`` (all when None) with Lloyd
      iterations whose assignment is Sinkhorn-balanced or capacity-constrained. Encoding
      always assigns the nearest code, so balance only moves the centroids.

    Training and encoding are deterministic for a fixed ``seed``, input order and thread
    count. Learned state: ``codebooks_`` (list of float32 (K_l, dim)) and ``fit_stats_``.
    """

    def __init__(
        self,
        *,
        codebook_sizes: Sequence[int],
        kmeans_iterations: int = 25,
        init: Init = "faiss",
        normalize_residuals: bool = False,
        balance: Balance = "none",
        balance_levels: Sequence[int] | None = None,
        seed: int = 0,
        num_threads: int | None = None,
        use_gpu: bool = False,
    ) -> None:
        if not codebook_sizes:
            raise QuantizerError("codebook_sizes is empty; give one size per level, e.g. [256, 256, 256]")
        if min(codebook_sizes) < 2:
            raise QuantizerError(f"codebook_sizes={list(codebook_sizes)} must all be >= 2")
        if init not in ("faiss", "kmeans++"):
            raise QuantizerError(f"init={init!r} is invalid; choose faiss or kmeans++")
        if balance not in ("none", "sinkhorn", "capacity"):
            raise QuantizerError(f"balance={balance!r} is invalid; choose none, sinkhorn or capacity")
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
        self.kmeans_iterations = kmeans_iterations
        self.init = init
        self.normalize_residuals = normalize_residuals
        self.balance = balance
        self.balance_levels = None if balance_levels is None else tuple(int(level) for level in balance_levels)
        self.seed = seed
        self.num_threads = num_threads
        self.use_gpu = use_gpu
        self.codebooks_: list[np.ndarray] | None = None
        self.fit_stats_: dict[str, float] = {}

    @property
    def codebooks(self) -> list[np.ndarray]:
        if self.codebooks_ is None:
            raise QuantizerError("the quantizer is not fitted; call fit(vectors) or load(path) first")
        return self.codebooks_

    @property
    def dim(self) -> int:
        return int(self.codebooks[0].shape[1])

    def fit(self, vectors: np.ndarray) -> ResidualKMeans:
        """Fit every level on float (n, dim) ``vectors``; returns self."""
        import faiss

        started = time.perf_counter()
        data = check_training_vectors(vectors, self.codebook_sizes)
        if self.num_threads:
            faiss.omp_set_num_threads(self.num_threads)

        residual = data.astype(np.float64, copy=True)
        codebooks = []
        stats: dict[str, float] = {}
        for level, size in enumerate(self.codebook_sizes):
            centroids = self._fit_level(residual, level, size)
            codes = encode_residual(residual, [centroids], normalize_residuals=self.normalize_residuals).codes[:, 0]
            residual -= centroids.astype(np.float64)[codes]
            codebooks.append(centroids)
            stats.update(level_usage_stats(codes, size, level))
            stats[f"level_{level}/residual_mse"] = float(np.mean(residual**2))

        self.codebooks_ = codebooks
        stats["reconstruction_mse"] = float(np.mean(residual**2))
        stats["fit_seconds"] = time.perf_counter() - started
        self.fit_stats_ = stats
        return self

    def _fit_level(self, residual: np.ndarray, level: int, size: int) -> np.ndarray:
        """Return float32 (size, dim) centroids of one level's float64 (n, dim) residuals."""
        import faiss

        # Each level gets its own seed so that levels are not clustered identically.
        seed = self.seed + level
        points = _unit_rows(residual) if self.normalize_residuals else residual
        points32 = np.ascontiguousarray(points, dtype=np.float32)
        kmeans = faiss.Kmeans(
            points32.shape[1], size, niter=self.kmeans_iterations, seed=seed,
            max_points_per_centroid=MAX_POINTS_PER_CENTROID, spherical=self.normalize_residuals,
            gpu=self.use_gpu and _faiss_gpus() > 0, verbose=False,
        )
        if self.init == "kmeans++":
            subsample = _subsample(points32, size * MAX_POINTS_PER_CENTROID, seed)
            kmeans.train(points32, init_centroids=kmeans_plus_plus(subsample, size, seed=seed))
        else:
            kmeans.train(points32)
        centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float64)

        # Balanced Lloyd refinement on the faiss-sized subsample (the full (n, K) matrix
        # would not fit in memory for large catalogs).
        if self.balance != "none" and (self.balance_levels is None or level in self.balance_levels):
            subsample = _subsample(points, size * MAX_POINTS_PER_CENTROID, seed)
            centroids = _balanced_lloyd(subsample, centroids, self.balance, self.normalize_residuals)

        # With cosine assignment the codeword is the mean raw residual of its code.
        if self.normalize_residuals:
            codes = encode_residual(residual, [centroids], normalize_residuals=True).codes[:, 0]
            centroids = _code_means(residual, codes, centroids)
        return np.ascontiguousarray(centroids, dtype=np.float32)

    def to_latent(self, vectors: np.ndarray) -> np.ndarray:
        """Return the vectors that the codebooks quantize: the embeddings themselves here."""
        return check_vectors(vectors, dim=self.dim)

    def encode(self, vectors: np.ndarray, top_k: int = 1) -> EncodeResult:
        """Return codes and top-k candidates per level for float (n, dim) ``vectors``."""
        data = check_vectors(vectors, dim=self.dim)
        return encode_residual(data, self.codebooks, top_k=top_k, normalize_residuals=self.normalize_residuals)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Return float32 (n, dim) reconstructions of int (n, L) ``codes``."""
        return decode_residual(codes, self.codebooks)

    def save(self, path: str | pathlib.Path) -> None:
        """Write ``arrays.npz`` and ``quantizer.json`` into folder ``path`` (no pickle)."""
        meta = {
            "codebook_sizes": list(self.codebook_sizes),
            "dim": self.dim,
            "kmeans_iterations": self.kmeans_iterations,
            "init": self.init,
            "normalize_residuals": self.normalize_residuals,
            "balance": self.balance,
            "balance_levels": None if self.balance_levels is None else list(self.balance_levels),
            "seed": self.seed,
            "fit_stats": self.fit_stats_,
        }
        arrays = {f"codebook_{level}": codebook for level, codebook in enumerate(self.codebooks)}
        write_quantizer_folder(path, method=METHOD, format_version=FORMAT_VERSION, meta=meta, arrays=arrays)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> ResidualKMeans:
        """Read a quantizer written by :meth:`save`."""
        meta, arrays = read_quantizer_folder(path, method=METHOD, format_versions=(FORMAT_VERSION,))
        quantizer = cls(
            codebook_sizes=meta["codebook_sizes"], kmeans_iterations=meta["kmeans_iterations"],
            init=meta["init"], normalize_residuals=meta["normalize_residuals"], balance=meta["balance"],
            balance_levels=meta["balance_levels"], seed=meta["seed"],
        )
        quantizer.codebooks_ = [
            np.ascontiguousarray(arrays[f"codebook_{level}"], dtype=np.float32)
            for level in range(len(meta["codebook_sizes"]))
        ]
        quantizer.fit_stats_ = dict(meta.get("fit_stats", {}))
        return quantizer

    @classmethod
    def from_codebooks(cls, codebooks: Sequence[np.ndarray], *, seed: int = 0) -> ResidualKMeans:
        """Wrap already trained float (K_l, dim) ``codebooks``, e.g. read from the codebooks table."""
        quantizer = cls(codebook_sizes=[len(codebook) for codebook in codebooks], seed=seed)
        quantizer.codebooks_ = [np.ascontiguousarray(codebook, dtype=np.float32) for codebook in codebooks]
        return quantizer


def check_training_vectors(vectors: np.ndarray, codebook_sizes: Sequence[int]) -> np.ndarray:
    """Return float32 (n, dim) training vectors, or raise QuantizerError for unusable ones.

    Rejects NaN or infinite values, fewer vectors than the largest level has codes, and
    an all-zero set; warns when some rows are zero vectors.
    """
    data = check_vectors(vectors, name="training vectors")
    largest = max(codebook_sizes)
    if data.shape[0] < largest:
        raise QuantizerError(
            f"{data.shape[0]} training vectors are fewer than the {largest} codes of the largest "
            "level; lower quantize.codebook_size or train on more items"
        )
    zero_rows = int((~data.any(axis=1)).sum())
    if zero_rows == data.shape[0]:
        raise QuantizerError(
            f"all {zero_rows} training vectors are zero vectors; check that the embedding stage produced vectors"
        )
    if zero_rows:
        logger.warning("zero_vectors=%d of %d training vectors are all zeros; they all share one code",
                       zero_rows, data.shape[0])
    return data


def level_usage_stats(codes: np.ndarray, size: int, level: int) -> dict[str, float]:
    """Return utilization and dead codes of one level's int (n,) codes; warn on dead codes."""
    used = int(np.unique(codes).size)
    if used < size:
        logger.warning("level=%d dead_codes=%d of %d codes left unused by the training vectors",
                       level, size - used, size)
    return {f"level_{level}/utilization": used / size, f"level_{level}/dead_codes": float(size - used)}


def kmeans_plus_plus(points: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """Return float32 (k, dim) k-means++ seeds drawn from float (n, dim) ``points``.

    Arthur and Vassilvitskii, "k-means++: The Advantages of Careful Seeding" (2007): each
    seed is drawn with probability proportional to the squared distance to the nearest seed
    so far. Deterministic for a fixed ``seed``.
    """
    rng = np.random.default_rng(seed)
    data = np.asarray(points, dtype=np.float64)
    seeds = np.empty((k, data.shape[1]), dtype=np.float64)
    seeds[0] = data[rng.integers(len(data))]
    nearest = ((data - seeds[0]) ** 2).sum(axis=1)
    for index in range(1, k):
        total = nearest.sum()
        # Fewer distinct points than seeds: repeat a random point rather than divide by 0.
        choice = rng.choice(len(data), p=nearest / total) if total > 0 else int(rng.integers(len(data)))
        seeds[index] = data[choice]
        nearest = np.minimum(nearest, ((data - seeds[index]) ** 2).sum(axis=1))
    return seeds.astype(np.float32)


def _balanced_lloyd(points: np.ndarray, centroids: np.ndarray, balance: Balance, cosine: bool) -> np.ndarray:
    """Return centroids after Lloyd iterations with balanced assignment of ``points``."""
    for _ in range(BALANCE_ITERATIONS):
        targets = _unit_rows(centroids) if cosine else centroids
        distances = ((points**2).sum(axis=1, keepdims=True) - 2.0 * points @ targets.T + (targets**2).sum(axis=1))
        codes = sinkhorn_assign(distances) if balance == "sinkhorn" else capacity_assign(distances)
        centroids = _code_means(points, codes, centroids)
    return centroids


def _code_means(points: np.ndarray, codes: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Return the mean of ``points`` per code; a code with no point keeps its ``fallback`` row."""
    sums = np.zeros_like(fallback, dtype=np.float64)
    np.add.at(sums, codes, points)
    counts = np.bincount(codes, minlength=len(fallback)).astype(np.float64)[:, None]
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), fallback)


def _subsample(points: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Return at most ``limit`` rows of ``points``, chosen by a seeded permutation."""
    if len(points) <= limit:
        return points
    rows = np.sort(np.random.default_rng(seed).permutation(len(points))[:limit])
    return points[rows]


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
