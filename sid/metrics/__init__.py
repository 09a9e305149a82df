"""SID quality metrics."""

from sid.metrics.distribution import bucket_stats, gini_coefficient, gini_from_histogram, perplexity

__all__ = ["bucket_stats", "gini_coefficient", "gini_from_histogram", "perplexity"]
