"""Scores of a fitted quantizer on a set of vectors, used to compare sweep candidates."""

from __future__ import annotations

from collections import Counter

import numpy as np

from sid.metrics.distribution import bucket_stats

__all__ = ["METRIC_GOALS", "best_candidate", "score_quantizer"]

# Whether a lower ("min") or higher ("max") value of each sweep metric is better.
METRIC_GOALS = {"collision_rate": "min", "utilization": "max", "reconstruction_relative": "min", "gini": "min"}


def score_quantizer(quantizer, vectors: np.ndarray) -> dict[str, float]:
    """Return raw collision rate, Gini, mean and per-level utilization and reconstruction error.

    ``vectors``: float (n, dim) in the quantizer's input space. reconstruction_relative is
    the mean squared L2 error of ``decode(encode(x))`` over the mean squared norm of x.
    """
    data = np.asarray(vectors, dtype=np.float32)
    codes = quantizer.encode(data).codes
    histogram = Counter(Counter(map(tuple, codes.tolist())).values())
    buckets = bucket_stats(histogram)
    scores = {"collision_rate": buckets["collision_rate"], "gini": buckets["gini"],
              "largest_bucket": buckets["largest_bucket"]}

    utilizations = []
    for level, codebook in enumerate(quantizer.codebooks):
        used = np.unique(codes[:, level]).size / len(codebook)
        scores[f"level_{level}/utilization"] = used
        utilizations.append(used)
    scores["utilization"] = float(np.mean(utilizations))

    error = ((data.astype(np.float64) - quantizer.decode(codes).astype(np.float64)) ** 2).sum(axis=1)
    norm = (data.astype(np.float64) ** 2).sum(axis=1)
    scores["reconstruction_sse"] = float(error.mean())
    scores["reconstruction_relative"] = float(error.mean() / norm.mean()) if norm.mean() > 0 else float("nan")
    return scores


def best_candidate(scores: dict[str, dict[str, float]], metric: str) -> str:
    """Return the name whose ``metric`` is best (see METRIC_GOALS); ties go to the first name."""
    if metric not in METRIC_GOALS:
        raise ValueError(f"metric={metric!r} is invalid; choose one of {', '.join(METRIC_GOALS)}")
    sign = 1.0 if METRIC_GOALS[metric] == "min" else -1.0
    return min(scores, key=lambda name: sign * scores[name][metric])
