"""faiss ResidualQuantizer (trained and encoded with beam search) behind the quantizer contract."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Sequence

import numpy as np

from sid.errors import QuantizerError
from sid.quantize._storage import read_quantizer_folder, write_quantizer_folder
from sid.quantize.residual import EncodeResult, _nearest_sorted, _squared_distances, check_vectors, decode_residual
from sid.quantize.residual_kmeans import check_training_vectors, level_usage_stats

__all__ = ["FaissResidualQuantizer", "beam_search_codes"]

FORMAT_VERSION = 1
METHOD = "faiss_rq"
# Rows encoded per block by beam_search_codes, to bound the (rows, beam, K) distance tensor.
ENCODE_BLOCK_ROWS = 4096


class FaissResidualQuantizer:
    """faiss ``ResidualQuantizer`` with a beam of ``beam_size`` paths (faiss's RQ training).

    faiss trains the codebooks; ``encode`` runs its own float64 beam search over them (the
    same search faiss runs), so that an item's codes do not depend on its batch. Codebook
    sizes must be powers of two because faiss stores codes as bit fields.

    ``encode`` returns the beam's codes; the candidates at each level are the nearest codes
    to the residual along the beam's path, with the beam's code moved to the front, so
    ``candidate_codes[:, :, 0] == codes`` although its distance need not be the smallest.

    Learned state: ``codebooks_`` (list of float32 (K_l, dim)) and ``fit_stats_``.
    """

    def __init__(
        self,
        *,
        codebook_sizes: Sequence[int],
        beam_size: int = 5,
        kmeans_iterations: int = 25,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        sizes = tuple(int(size) for size in codebook_sizes)
        if not sizes or any(size < 2 or size & (size - 1) for size in sizes):
            raise QuantizerError(
                f"codebook_sizes={list(sizes)} must be powers of two for faiss_rq, e.g. [256, 256, 256]; "
                "use method residual_kmeans for other sizes"
            )
        if beam_size < 1:
            raise QuantizerError(f"beam_size={beam_size} must be >= 1")
        self.codebook_sizes = sizes
        self.beam_size = beam_size
        self.kmeans_iterations = kmeans_iterations
        self.seed = seed
        self.num_threads = num_threads
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

    def fit(self, vectors: np.ndarray) -> FaissResidualQuantizer:
        """Train the faiss ResidualQuantizer on float (n, dim) ``vectors``; returns self."""
        import faiss

        started = time.perf_counter()
        data = check_training_vectors(vectors, self.codebook_sizes)
        if self.num_threads:
            faiss.omp_set_num_threads(self.num_threads)

        nbits = faiss.UInt64Vector()
        for size in self.codebook_sizes:
            nbits.push_back(int(size).bit_length() - 1)
        quantizer = faiss.ResidualQuantizer(data.shape[1], nbits)
        quantizer.max_beam_size = self.beam_size
        quantizer.cp.niter = self.kmeans_iterations
        quantizer.cp.seed = self.seed
        quantizer.train(data)

        # faiss stores every level's codebook in one flat array with per-level offsets.
        flat = faiss.vector_to_array(quantizer.codebooks).reshape(-1, data.shape[1])
        offsets = faiss.vector_to_array(quantizer.codebook_offsets)
        self.codebooks_ = [
            np.ascontiguousarray(flat[offsets[level]:offsets[level + 1]], dtype=np.float32)
            for level in range(len(self.codebook_sizes))
        ]

        codes = self.encode(data).codes
        stats: dict[str, float] = {}
        for level, size in enumerate(self.codebook_sizes):
            stats.update(level_usage_stats(codes[:, level], size, level))
        residual = data.astype(np.float64) - self.decode(codes)
        stats["reconstruction_mse"] = float(np.mean(residual**2))
        stats["fit_seconds"] = time.perf_counter() - started
        self.fit_stats_ = stats
        return self

    def to_latent(self, vectors: np.ndarray) -> np.ndarray:
        """Return the vectors that the codebooks quantize: the embeddings themselves here."""
        return check_vectors(vectors, dim=self.dim)

    def encode(self, vectors: np.ndarray, top_k: int = 1) -> EncodeResult:
        """Return beam-search codes and top-k candidates per level for float (n, dim) ``vectors``."""
        data = check_vectors(vectors, dim=self.dim)
        codes = beam_search_codes(data, self.codebooks, beam_size=self.beam_size)
        return _candidates_along_path(data, self.codebooks, codes, top_k)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Return float32 (n, dim) reconstructions of int (n, L) ``codes``."""
        return decode_residual(codes, self.codebooks)

    def save(self, path: str | pathlib.Path) -> None:
        """Write ``arrays.npz`` and ``quantizer.json`` into folder ``path`` (no pickle)."""
        meta = {
            "codebook_sizes": list(self.codebook_sizes), "dim": self.dim, "beam_size": self.beam_size,
            "kmeans_iterations": self.kmeans_iterations, "seed": self.seed, "fit_stats": self.fit_stats_,
        }
        arrays = {f"codebook_{level}": codebook for level, codebook in enumerate(self.codebooks)}
        write_quantizer_folder(path, method=METHOD, format_version=FORMAT_VERSION, meta=meta, arrays=arrays)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> FaissResidualQuantizer:
        """Read a quantizer written by :meth:`save`."""
        meta, arrays = read_quantizer_folder(path, method=METHOD, format_versions=(FORMAT_VERSION,))
        quantizer = cls(codebook_sizes=meta["codebook_sizes"], beam_size=meta["beam_size"],
                        kmeans_iterations=meta["kmeans_iterations"], seed=meta["seed"])
        quantizer.codebooks_ = [
            np.ascontiguousarray(arrays[f"codebook_{level}"], dtype=np.float32)
            for level in range(len(meta["codebook_sizes"]))
        ]
        quantizer.fit_stats_ = dict(meta.get("fit_stats", {}))
        return quantizer


def beam_search_codes(vectors: np.ndarray, codebooks: Sequence[np.ndarray], *, beam_size: int) -> np.ndarray:
    """Return int64 (n, L) codes minimizing ||x - sum_l C_l[c_l]||^2 over a beam of paths.

    At every level each of the ``beam_size`` partial paths is extended by every code, and
    the ``beam_size`` extensions with the smallest squared error survive (ties by path
    order, then code). Works in float64, row by row in blocks, so the result does not
    depend on the batch. ``beam_size=1`` is the greedy residual encoder.
    """
    data = np.asarray(vectors, dtype=np.float64)
    blocks = [
        _beam_search_block(data[start:start + ENCODE_BLOCK_ROWS], codebooks, beam_size)
        for start in range(0, len(data), ENCODE_BLOCK_ROWS)
    ]
    if not blocks:
        return np.zeros((0, len(codebooks)), dtype=np.int64)
    return np.concatenate(blocks)


def _beam_search_block(data: np.ndarray, codebooks: Sequence[np.ndarray], beam_size: int) -> np.ndarray:
    n = len(data)
    # Per row: the surviving paths' residuals (n, B, d), codes so far (n, B, l) and errors (n, B).
    residuals = data[:, None, :]
    paths = np.zeros((n, 1, 0), dtype=np.int64)
    for codebook in codebooks:
        centroids = np.asarray(codebook, dtype=np.float64)
        beams = residuals.shape[1]
        flat = residuals.reshape(n * beams, -1)
        errors = _squared_distances(flat, centroids).reshape(n, beams * len(centroids))
        keep = min(beam_size, errors.shape[1])
        # Stable sort: equal errors keep the order (path, code).
        best = np.argsort(errors, axis=1, kind="stable")[:, :keep]
        parent, code = np.divmod(best, len(centroids))
        residuals = np.take_along_axis(residuals, parent[:, :, None], axis=1) - centroids[code]
        paths = np.concatenate([np.take_along_axis(paths, parent[:, :, None], axis=1), code[:, :, None]], axis=2)
    return paths[:, 0, :]


def _candidates_along_path(data: np.ndarray, codebooks: Sequence[np.ndarray], codes: np.ndarray,
                           top_k: int) -> EncodeResult:
    """Return the nearest codes per level to the residual along ``codes``, the chosen code first."""
    residual = data.astype(np.float64)
    n, levels = codes.shape
    k_max = max(1, min(top_k, min(len(codebook) for codebook in codebooks)))
    candidate_codes = np.zeros((n, levels, k_max), dtype=np.int64)
    candidate_distances = np.zeros((n, levels, k_max), dtype=np.float32)
    for level, codebook in enumerate(codebooks):
        centroids = np.asarray(codebook, dtype=np.float64)
        distances = _squared_distances(residual, centroids)
        chosen = codes[:, level]
        # Push the chosen code to the front, then the others by distance.
        ranking = distances.copy()
        ranking[np.arange(n), chosen] = -1.0
        nearest = _nearest_sorted(ranking, k_max)
        candidate_codes[:, level] = nearest
        candidate_distances[:, level] = np.take_along_axis(distances, nearest, axis=1)
        residual -= centroids[chosen]
    return EncodeResult(codes.astype(np.int64), candidate_codes, candidate_distances)
