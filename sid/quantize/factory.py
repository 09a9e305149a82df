"""Quantizers built from configuration and loaded from saved folders, whatever the method."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

from sid.errors import QuantizerError
from sid.quantize._storage import read_quantizer_meta

if TYPE_CHECKING:
    from sid.config import QuantizeConfig

__all__ = ["build_quantizer", "load_quantizer"]


def build_quantizer(config: QuantizeConfig, *, seed: int, num_threads: int | None = None,
                    use_gpu: bool = False, show_progress: bool = True):
    """Return an unfitted quantizer of ``config.method`` with the options of ``config``."""
    from sid.quantize.faiss_rq import FaissResidualQuantizer
    from sid.quantize.residual_kmeans import ResidualKMeans
    from sid.quantize.rqvae import RQVAE

    sizes = config.codebook_sizes()
    if config.method == "residual_kmeans":
        return ResidualKMeans(
            codebook_sizes=sizes, kmeans_iterations=config.kmeans_iterations, init=config.init,
            normalize_residuals=config.normalize_residuals, balance=config.balance,
            balance_levels=config.balance_levels, seed=seed, num_threads=num_threads, use_gpu=use_gpu,
        )
    if config.method == "faiss_rq":
        return FaissResidualQuantizer(codebook_sizes=sizes, beam_size=config.beam_size,
                                      kmeans_iterations=config.kmeans_iterations, seed=seed, num_threads=num_threads)
    if config.method == "rqvae":
        options = config.rqvae
        return RQVAE(
            codebook_sizes=sizes, hidden_dims=options.hidden_dims, latent_dim=options.latent_dim, beta=options.beta,
            epochs=options.epochs, batch_size=options.batch_size, learning_rate=options.learning_rate,
            weight_decay=options.weight_decay, warmup_epochs=options.warmup_epochs,
            min_learning_rate=options.min_learning_rate, kmeans_init=options.kmeans_init,
            kmeans_init_batches=options.kmeans_init_batches, restart_unused_steps=options.restart_unused_steps,
            sinkhorn=options.sinkhorn, sinkhorn_iterations=options.sinkhorn_iterations,
            sinkhorn_epsilon=options.sinkhorn_epsilon, contrastive_weight=options.contrastive_weight,
            holdout_fraction=options.holdout_fraction, patience=options.patience, precision=options.precision,
            seed=seed, device="auto" if use_gpu else "cpu", num_threads=num_threads, show_progress=show_progress,
        )
    raise QuantizerError(f"quantize.method={config.method!r} is invalid; choose residual_kmeans, faiss_rq or rqvae")


def load_quantizer(path: str | pathlib.Path):
    """Load the quantizer saved in folder ``path`` with the class of its stored method."""
    from sid.quantize.faiss_rq import FaissResidualQuantizer
    from sid.quantize.residual_kmeans import ResidualKMeans
    from sid.quantize.rqvae import RQVAE

    classes = {"residual_kmeans": ResidualKMeans, "faiss_rq": FaissResidualQuantizer, "rqvae": RQVAE}
    method = read_quantizer_meta(path).get("method")
    if method not in classes:
        raise QuantizerError(
            f"{path} contains a quantizer of method={method!r}; this version reads {', '.join(sorted(classes))}"
        )
    return classes[method].load(path)
