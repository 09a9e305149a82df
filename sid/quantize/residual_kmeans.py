"""Residual k-means quantizer fitted level by level with faiss k-means."""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Sequence

import numpy as np

from sid.errors import QuantizerError
from sid.quantize.residual import EncodeResult, check_vectors, decode_residual, encode_residual

__all__ = ["ResidualKMeans"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METHOD = "residual_kmeans"
# faiss subsamples to this many points per centroid; 256 is faiss's own default.
MAX_POINTS_PER_CENTROID = 256


class ResidualKMeans:
    """Residual quantizer with one k-means codebook per level (RQ-KMeans).

    Level l clusters the residuals left by levels 0..l-1 into ``codebook_sizes[l]``
    centroids. Training and encoding are deterministic for a fixed ``seed``, input order
    and thread count.

    Learned state: ``codebooks_`` (list of float32 (K_l, dim)) and ``fit_stats_``.
    """

    def __init__(
        self,
        *,
        codebook_sizes: Sequence[int],
        kmeans_iterations: int = 25,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        if not codebook_sizes:
            raise QuantizerError("codebook_sizes is empty; give one size per level, e.g. [256, 256, 256]")
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
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

    def fit(self, vectors: np.ndarray) -> ResidualKMeans:
        """Fit every level on float (n, dim) ``vectors``; returns self."""
        import faiss

        data = check_vectors(vectors, name="training vectors")
        largest = max(self.codebook_sizes)
        if data.shape[0] < largest:
            raise QuantizerError(
                f"{data.shape[0]} training vectors are fewer than the {largest} codes of the largest "
                "level; lower quantize.codebook_size or train on more items"
            )
        if self.num_threads:
            faiss.omp_set_num_threads(self.num_threads)

        residual = data.astype(np.float32, copy=True)
        codebooks = []
        stats: dict[str, float] = {}
        for level, size in enumerate(self.codebook_sizes):
            # Each level gets its own seed so that levels are not clustered identically.
            kmeans = faiss.Kmeans(
                data.shape[1],
                size,
                niter=self.kmeans_iterations,
                seed=self.seed + level,
                max_points_per_centroid=MAX_POINTS_PER_CENTROID,
                verbose=False,
            )
            kmeans.train(residual)
            centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
            codes = encode_residual(residual, [centroids]).codes[:, 0]
            residual = residual - centroids[codes]
            codebooks.append(centroids)

            used = np.unique(codes).size
            stats[f"level_{level}/utilization"] = used / size
            stats[f"level_{level}/dead_codes"] = float(size - used)
            stats[f"level_{level}/residual_mse"] = float(np.mean(residual.astype(np.float64) ** 2))
            if used < size:
                logger.warning(
                    "level=%d dead_codes=%d of %d codes left unused by the training vectors",
                    level, size - used, size,
                )
        self.codebooks_ = codebooks
        stats["reconstruction_mse"] = float(np.mean(residual.astype(np.float64) ** 2))
        self.fit_stats_ = stats
        return self

    def encode(self, vectors: np.ndarray, top_k: int = 1) -> EncodeResult:
        """Return codes and top-k candidates per level for float (n, dim) ``vectors``."""
        data = check_vectors(vectors, dim=self.dim)
        return encode_residual(data, self.codebooks, top_k=top_k)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Return float32 (n, dim) reconstructions of int (n, L) ``codes``."""
        return decode_residual(codes, self.codebooks)

    def save(self, path: str | pathlib.Path) -> None:
        """Write ``codebooks.npz`` and ``quantizer.json`` into folder ``path`` (no pickle)."""
        folder = pathlib.Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"level_{level}": codebook for level, codebook in enumerate(self.codebooks)}
        np.savez(folder / "codebooks.npz", **arrays)
        meta = {
            "format_version": FORMAT_VERSION,
            "method": METHOD,
            "codebook_sizes": list(self.codebook_sizes),
            "dim": self.dim,
            "kmeans_iterations": self.kmeans_iterations,
            "seed": self.seed,
        }
        (folder / "quantizer.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | pathlib.Path) -> ResidualKMeans:
        """Read a quantizer written by :meth:`save`."""
        folder = pathlib.Path(path)
        meta_path = folder / "quantizer.json"
        if not meta_path.is_file():
            raise QuantizerError(f"no quantizer.json in {folder}; pass a folder written by ResidualKMeans.save")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("method") != METHOD or meta.get("format_version") != FORMAT_VERSION:
            raise QuantizerError(
                f"{folder} holds method={meta.get('method')!r} format_version={meta.get('format_version')!r}; "
                f"expected method={METHOD!r} format_version={FORMAT_VERSION}"
            )
        with np.load(folder / "codebooks.npz", allow_pickle=False) as arrays:
            codebooks = [arrays[f"level_{level}"] for level in range(len(meta["codebook_sizes"]))]
        quantizer = cls(
            codebook_sizes=meta["codebook_sizes"],
            kmeans_iterations=meta["kmeans_iterations"],
            seed=meta["seed"],
        )
        quantizer.codebooks_ = [np.ascontiguousarray(codebook, dtype=np.float32) for codebook in codebooks]
        return quantizer

    @classmethod
    def from_codebooks(cls, codebooks: Sequence[np.ndarray], *, seed: int = 0) -> ResidualKMeans:
        """Wrap already trained float (K_l, dim) ``codebooks``, e.g. read from the codebooks table."""
        quantizer = cls(codebook_sizes=[len(codebook) for codebook in codebooks], seed=seed)
        quantizer.codebooks_ = [np.ascontiguousarray(codebook, dtype=np.float32) for codebook in codebooks]
        return quantizer
