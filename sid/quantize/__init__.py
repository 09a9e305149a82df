"""Residual quantizers that turn embeddings into code tuples."""

from sid.quantize.balance import capacity_assign, sinkhorn_assign
from sid.quantize.factory import build_quantizer, load_quantizer
from sid.quantize.faiss_rq import FaissResidualQuantizer, beam_search_codes
from sid.quantize.residual import EncodeResult, decode_residual, encode_residual
from sid.quantize.residual_kmeans import ResidualKMeans, kmeans_plus_plus
from sid.quantize.rqvae import RQVAE
from sid.quantize.scoring import best_candidate, score_quantizer

__all__ = [
    "EncodeResult",
    "FaissResidualQuantizer",
    "RQVAE",
    "ResidualKMeans",
    "beam_search_codes",
    "best_candidate",
    "build_quantizer",
    "capacity_assign",
    "decode_residual",
    "encode_residual",
    "kmeans_plus_plus",
    "load_quantizer",
    "score_quantizer",
    "sinkhorn_assign",
]
