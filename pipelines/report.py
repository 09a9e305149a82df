"""Plots and the one-page Markdown report of an evaluation, written to a folder.

Files (the MLflow artifacts under ``evaluation/``): code_usage_per_level.png,
lorenz_curve.png, bucket_size_distribution.png, hit_rate_vs_k.png (only when a hit rate
was computed) and report.md.
"""

from __future__ import annotations

import datetime
import math
import pathlib
from collections.abc import Sequence

import numpy as np

from pipelines.evaluate import Evaluation
from sid.metrics import GateFailure, lorenz_curve

__all__ = ["write_report"]

PLOT_DPI = 110


def write_report(
    evaluation: Evaluation,
    folder: pathlib.Path,
    *,
    title: str,
    metrics: dict[str, float],
    thresholds: dict[str, dict[str, float]],
    failures: Sequence[GateFailure],
) -> list[pathlib.Path]:
    """Write the plots and report.md of ``evaluation`` into ``folder``; return their paths.

    ``metrics`` is every metric of the run (the evaluation's and the build's), which the
    report lists; ``thresholds`` and ``failures`` describe the quality gate.
    """
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    plots = [
        _plot_code_usage(evaluation.code_counts, folder / "code_usage_per_level.png"),
        _plot_lorenz(evaluation.histograms, folder / "lorenz_curve.png"),
        _plot_bucket_sizes(evaluation.histograms, folder / "bucket_size_distribution.png"),
    ]
    if evaluation.retrieval is not None and evaluation.retrieval.curves:
        plots.append(_plot_hit_rate(evaluation.retrieval.curves, folder / "hit_rate_vs_k.png"))
    report = folder / "report.md"
    report.write_text(_markdown(title, metrics, thresholds, failures, evaluation.notes, plots), encoding="utf-8")
    return [*plots, report]


def _plot_code_usage(code_counts: list[np.ndarray], path: pathlib.Path) -> pathlib.Path:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(code_counts), figsize=(4 * len(code_counts), 3.2), squeeze=False)
    for level, (axis, counts) in enumerate(zip(axes[0], code_counts)):
        ordered = np.sort(counts)[::-1]
        axis.bar(np.arange(len(ordered)), ordered, width=1.0)
        axis.set_title(f"level {level}: {int((counts > 0).sum())} of {len(counts)} codes used")
        axis.set_xlabel("code (sorted by items)")
        axis.set_ylabel("items")
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def _plot_lorenz(histograms: dict[str, dict[int, int]], path: pathlib.Path) -> pathlib.Path:
    import matplotlib.pyplot as plt

    from sid.metrics import gini_from_histogram

    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="equal sizes")
    for name, histogram in histograms.items():
        sid_share, item_share = lorenz_curve(histogram)
        axis.plot(sid_share, item_share, marker=".", label=f"{name} SIDs (Gini {gini_from_histogram(histogram):.3f})")
    axis.set_xlabel("share of occupied SIDs (smallest first)")
    axis.set_ylabel("share of items")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def _plot_bucket_sizes(histograms: dict[str, dict[int, int]], path: pathlib.Path) -> pathlib.Path:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    width = 0.8 / max(len(histograms), 1)
    for index, (name, histogram) in enumerate(histograms.items()):
        sizes = np.array(sorted(histogram))
        axis.bar(sizes + index * width, [histogram[size] for size in sizes], width=width, label=f"{name} SIDs")
    axis.set_yscale("log")
    axis.set_xlabel("items per SID")
    axis.set_ylabel("SIDs")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def _plot_hit_rate(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: pathlib.Path) -> pathlib.Path:
    import matplotlib.pyplot as plt

    labels = {"sid": "SID reconstructions", "raw": "raw embeddings (ceiling)"}
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for name, (cutoffs, rates) in curves.items():
        axis.plot(cutoffs, rates, label=labels.get(name, name))
    axis.set_xscale("log")
    axis.set_xlabel("K")
    axis.set_ylabel("embedding hit rate@K")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def _markdown(
    title: str,
    metrics: dict[str, float],
    thresholds: dict[str, dict[str, float]],
    failures: Sequence[GateFailure],
    notes: Sequence[str],
    plots: Sequence[pathlib.Path],
) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    verdict = "passed" if not failures else f"failed ({len(failures)} bound(s))"
    lines = [f"# SID quality report: {title}", "", f"Computed at {now:%Y-%m-%d %H:%M:%S} UTC. Quality gate: {verdict}.", ""]

    lines += ["## Quality gate", ""]
    if thresholds:
        lines += ["| metric | value | min | max | result |", "| --- | --- | --- | --- | --- |"]
        failed = {failure.metric for failure in failures}
        for metric, bounds in thresholds.items():
            value = _format(metrics.get(metric))
            result = "fail" if metric in failed else "pass"
            lines.append(f"| {metric} | {value} | {bounds.get('min', '')} | {bounds.get('max', '')} | {result} |")
    else:
        lines.append("No thresholds are configured, so every version passes.")
    lines.append("")

    lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {metric} | {_format(metrics[metric])} |" for metric in sorted(metrics)]
    lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    lines += ["## Plots", ""] + [f"![{plot.stem}]({plot.name})" for plot in plots] + [""]
    return "\n".join(lines)


def _format(value: float | None) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
        return f"{value:.4f}"
    return str(int(value))
