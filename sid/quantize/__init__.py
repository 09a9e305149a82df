"""Residual quantizers that turn embeddings into code tuples."""

from sid.quantize.residual import EncodeResult, decode_residual, encode_residual
from sid.quantize.residual_kmeans import ResidualKMeans

__all__ = ["EncodeResult", "ResidualKMeans", "decode_residual", "encode_residual"]
