"""RQ-VAE quantizer: PyTorch training, NumPy inference.

The encoder maps an embedding to a latent vector, L residual codebooks quantize the latent
(TIGER, arXiv 2305.05065; FORGE, arXiv 2509.20904), and the decoder maps the codeword sum
back to the embedding space. After ``fit`` the object holds only NumPy arrays and plain
Python values, so Spark can broadcast it and executors need no torch to encode.
"""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sid.errors import QuantizerError
from sid.quantize._storage import read_quantizer_folder, write_quantizer_folder
from sid.quantize.residual import EncodeResult, check_vectors, encode_residual
from sid.quantize.residual_kmeans import check_training_vectors, level_usage_stats

__all__ = ["RQVAE"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METHOD = "rqvae"
# Rows per block of the NumPy forward passes, to bound memory on large batches.
INFERENCE_BLOCK_ROWS = 8192


class RQVAE:
    """Residual-quantized variational autoencoder with MLP encoder and decoder.

    Options (keyword-only) mirror ``sid.config.RqvaeConfig``. ``fit`` trains with AdamW,
    linear warm-up and cosine decay, k-means initialization of the codebooks, restarts of
    unused codes, optional Sinkhorn-balanced training assignment, optional InfoNCE on
    co-occurring pairs and early stopping on held-out reconstruction loss. Encoding is the
    greedy argmin in latent space, whatever the training assignment.

    Deterministic for a fixed ``seed``, input order and thread count on CPU; CUDA kernels
    may differ in the last bits. Learned state: the arrays of ``state_``, ``fit_stats_``.
    """

    def __init__(
        self,
        *,
        codebook_sizes: Sequence[int],
        hidden_dims: Sequence[int] = (256, 256),
        latent_dim: int = 64,
        beta: float = 0.25,
        epochs: int = 100,
        batch_size: int = 1024,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: int = 5,
        min_learning_rate: float = 1e-6,
        kmeans_init: bool = True,
        kmeans_init_batches: int = 8,
        restart_unused_steps: int = 200,
        sinkhorn: bool = False,
        sinkhorn_iterations: int = 5,
        sinkhorn_epsilon: float = 0.1,
        contrastive_weight: float = 1.0,
        holdout_fraction: float = 0.05,
        patience: int = 10,
        precision: Literal["float32", "bf16"] = "float32",
        seed: int = 0,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        num_threads: int | None = None,
        show_progress: bool = True,
    ) -> None:
        if not codebook_sizes or min(codebook_sizes) < 2:
            raise QuantizerError(f"codebook_sizes={list(codebook_sizes)} must list one size >= 2 per level")
        if batch_size < 2:
            raise QuantizerError(f"batch_size={batch_size} must be >= 2")
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
        self.hidden_dims = tuple(int(width) for width in hidden_dims)
        self.latent_dim = int(latent_dim)
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.min_learning_rate = min_learning_rate
        self.kmeans_init = kmeans_init
        self.kmeans_init_batches = kmeans_init_batches
        self.restart_unused_steps = restart_unused_steps
        self.sinkhorn = sinkhorn
        self.sinkhorn_iterations = sinkhorn_iterations
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.contrastive_weight = contrastive_weight
        self.holdout_fraction = holdout_fraction
        self.patience = patience
        self.precision = precision
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.state_: dict[str, np.ndarray] | None = None
        self.fit_stats_: dict[str, float] = {}

    # ----- learned state -------------------------------------------------------------

    @property
    def codebooks(self) -> list[np.ndarray]:
        state = self._state()
        return [state[f"codebook_{level}"] for level in range(len(self.codebook_sizes))]

    @property
    def dim(self) -> int:
        return int(self._state()["encoder_weight_0"].shape[0])

    def _state(self) -> dict[str, np.ndarray]:
        if self.state_ is None:
            raise QuantizerError("the quantizer is not fitted; call fit(vectors) or load(path) first")
        return self.state_

    # ----- training ------------------------------------------------------------------

    def training_options(self, *, show_progress: bool | None = None):
        """Return the loop settings of this quantizer as ``_rqvae_training.TrainOptions``."""
        from sid.quantize._rqvae_training import TrainOptions

        return TrainOptions(
            beta=self.beta, epochs=self.epochs, learning_rate=self.learning_rate, weight_decay=self.weight_decay,
            warmup_epochs=self.warmup_epochs, min_learning_rate=self.min_learning_rate,
            kmeans_init=self.kmeans_init, kmeans_init_batches=self.kmeans_init_batches,
            restart_unused_steps=self.restart_unused_steps, sinkhorn=self.sinkhorn,
            sinkhorn_iterations=self.sinkhorn_iterations, sinkhorn_epsilon=self.sinkhorn_epsilon,
            contrastive_weight=self.contrastive_weight, patience=self.patience, precision=self.precision,
            seed=self.seed, show_progress=self.show_progress if show_progress is None else show_progress,
        )

    def build_network(self, dim: int):
        """Return a freshly seeded torch ``RqvaeNet`` for ``dim``-dimensional inputs."""
        import torch

        from sid.quantize._rqvae_net import RqvaeNet

        torch.manual_seed(self.seed)
        return RqvaeNet(dim, self.hidden_dims, self.latent_dim, self.codebook_sizes)

    def resolve_device(self):
        """Return the torch device: CUDA when requested or when ``device="auto"`` finds one."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise QuantizerError("device='cuda' but torch finds no CUDA device; use device='auto' or 'cpu'")
        if self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available()):
            return torch.device("cuda")
        return torch.device("cpu")

    def fit(self, vectors: np.ndarray, *, pairs: tuple[np.ndarray, np.ndarray] | None = None,
            holdout: np.ndarray | None = None) -> RQVAE:
        """Train on float (n, dim) ``vectors``; returns self.

        ``pairs``: two int (p,) arrays of row indices of co-occurring items; when given, the
        InfoNCE step trains on them. ``holdout``: bool (n,) mask of rows kept out of training
        for early stopping; by default a seeded ``holdout_fraction`` of the rows.
        """
        import torch

        from sid.quantize._rqvae_training import ArrayBatchSource, train_network

        started = time.perf_counter()
        data = check_training_vectors(vectors, self.codebook_sizes)
        mask = self._holdout_mask(len(data)) if holdout is None else np.asarray(holdout, dtype=bool)
        if mask.shape != (len(data),):
            raise QuantizerError(f"holdout must be a bool mask of shape ({len(data)},), got {mask.shape}")
        pair_vectors = None if pairs is None else _pair_vectors(data, pairs)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)

        device = self.resolve_device()
        net = self.build_network(data.shape[1]).to(device)
        source = ArrayBatchSource(data[~mask], data[mask], batch_size=self.batch_size, seed=self.seed,
                                  pairs=pair_vectors)
        history = train_network(net, source, self.training_options(), device=device)
        self.set_state(net.export_arrays())
        self.fit_stats_ = {**self.training_stats(data), **history, "fit_seconds": time.perf_counter() - started}
        return self

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Install trained float32 arrays (names as ``RqvaeNet.export_arrays`` gives them)."""
        self.state_ = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}

    def training_stats(self, data: np.ndarray) -> dict[str, float]:
        """Return utilization, dead codes and reconstruction MSE of the inference codes of ``data``."""
        codes = self.encode(data).codes
        stats: dict[str, float] = {}
        for level, size in enumerate(self.codebook_sizes):
            stats.update(level_usage_stats(codes[:, level], size, level))
        error = data.astype(np.float64) - self.decode(codes).astype(np.float64)
        stats["reconstruction_mse"] = float(np.mean(error**2))
        return stats

    def _holdout_mask(self, rows: int) -> np.ndarray:
        held = int(round(self.holdout_fraction * rows))
        mask = np.zeros(rows, dtype=bool)
        if held:
            mask[np.random.default_rng([self.seed, 7]).permutation(rows)[:held]] = True
        return mask

    # ----- inference (NumPy only) ----------------------------------------------------

    def to_latent(self, vectors: np.ndarray) -> np.ndarray:
        """Return float32 (n, latent_dim) encoder outputs of float (n, dim) ``vectors``."""
        data = check_vectors(vectors, dim=self.dim)
        return self._forward("encoder", data)

    def encode(self, vectors: np.ndarray, top_k: int = 1) -> EncodeResult:
        """Return greedy codes and top-k candidates per level, in latent space."""
        return encode_residual(self.to_latent(vectors), self.codebooks, top_k=top_k)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Return float32 (n, dim) decoder outputs for int (n, L) ``codes``."""
        from sid.quantize.residual import decode_residual

        return self._forward("decoder", decode_residual(codes, self.codebooks))

    def _forward(self, part: str, inputs: np.ndarray) -> np.ndarray:
        """Run the encoder or decoder MLP in float64 block by block; return float32."""
        state = self._state()
        layers = sum(1 for name in state if name.startswith(f"{part}_weight_"))
        outputs = []
        for start in range(0, max(len(inputs), 1), INFERENCE_BLOCK_ROWS):
            hidden = inputs[start:start + INFERENCE_BLOCK_ROWS].astype(np.float64)
            for index in range(layers):
                hidden = hidden @ state[f"{part}_weight_{index}"].astype(np.float64) + state[f"{part}_bias_{index}"]
                if index < layers - 1:
                    hidden = np.maximum(hidden, 0.0)
            outputs.append(hidden.astype(np.float32))
        return np.concatenate(outputs)[:len(inputs)]

    # ----- persistence ---------------------------------------------------------------

    def settings(self) -> dict:
        """Return the constructor options as plain JSON values."""
        return {
            "codebook_sizes": list(self.codebook_sizes), "hidden_dims": list(self.hidden_dims),
            "latent_dim": self.latent_dim, "beta": self.beta, "epochs": self.epochs, "batch_size": self.batch_size,
            "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
            "warmup_epochs": self.warmup_epochs, "min_learning_rate": self.min_learning_rate,
            "kmeans_init": self.kmeans_init, "kmeans_init_batches": self.kmeans_init_batches,
            "restart_unused_steps": self.restart_unused_steps, "sinkhorn": self.sinkhorn,
            "sinkhorn_iterations": self.sinkhorn_iterations, "sinkhorn_epsilon": self.sinkhorn_epsilon,
            "contrastive_weight": self.contrastive_weight, "holdout_fraction": self.holdout_fraction,
            "patience": self.patience, "precision": self.precision, "seed": self.seed,
        }

    def save(self, path: str | pathlib.Path) -> None:
        """Write ``arrays.npz`` (weights, codebooks) and ``quantizer.json`` into folder ``path``."""
        meta = {**self.settings(), "dim": self.dim, "fit_stats": self.fit_stats_}
        write_quantizer_folder(path, method=METHOD, format_version=FORMAT_VERSION, meta=meta, arrays=self._state())

    @classmethod
    def load(cls, path: str | pathlib.Path) -> RQVAE:
        """Read a quantizer written by :meth:`save`."""
        meta, arrays = read_quantizer_folder(path, method=METHOD, format_versions=(FORMAT_VERSION,))
        settings = {key: meta[key] for key in cls(codebook_sizes=[2]).settings()}
        quantizer = cls(**settings)
        quantizer.set_state(arrays)
        quantizer.fit_stats_ = dict(meta.get("fit_stats", {}))
        return quantizer


def _pair_vectors(data: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return the float32 vectors of both sides of int (p,) index arrays ``pairs``."""
    left, right = (np.asarray(side, dtype=np.int64) for side in pairs)
    if left.shape != right.shape or left.ndim != 1:
        raise QuantizerError(f"pairs must be two int arrays of equal shape (p,), got {left.shape} and {right.shape}")
    for side in (left, right):
        if side.size and (side.min() < 0 or side.max() >= len(data)):
            raise QuantizerError(
                f"pair indices must lie in [0, {len(data)}), got values from {side.min()} to {side.max()}"
            )
    if len(left) < 2:
        raise QuantizerError(f"pairs contains {len(left)} pairs; the InfoNCE term needs at least 2")
    return data[left], data[right]
