"""SID quality metrics."""

from sid.metrics.distribution import (
    bucket_stats,
    entropy_ratio_from_histogram,
    gini_coefficient,
    gini_from_histogram,
    lorenz_curve,
    perplexity,
)
from sid.metrics.gate import GateFailure, check_quality_gate
from sid.metrics.hit_rate import DEFAULT_HIT_RATE_KS, embedding_hit_rate, sample_consecutive_pairs, target_ranks
from sid.metrics.quality import (
    entropy_ratio,
    neighbour_recall,
    prefix_purity,
    reconstruction_error,
    unique_item_share,
)

__all__ = [
    "DEFAULT_HIT_RATE_KS",
    "GateFailure",
    "bucket_stats",
    "check_quality_gate",
    "embedding_hit_rate",
    "entropy_ratio",
    "entropy_ratio_from_histogram",
    "gini_coefficient",
    "gini_from_histogram",
    "lorenz_curve",
    "neighbour_recall",
    "perplexity",
    "prefix_purity",
    "reconstruction_error",
    "sample_consecutive_pairs",
    "target_ranks",
    "unique_item_share",
]
