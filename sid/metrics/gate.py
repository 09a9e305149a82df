"""Quality gate: compare a run's metrics against configured bounds.

Thresholds map a metric name to its bounds, for example
``{"final/collision_rate": {"max": 0.0}, "raw/gini": {"max": 0.5}}``. Bounds are inclusive,
so a value equal to its bound passes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Literal

__all__ = ["GateFailure", "check_quality_gate"]

BOUND_NAMES = ("min", "max")


@dataclasses.dataclass(frozen=True)
class GateFailure:
    """One metric that failed the gate.

    value is None when the metric is missing from the metrics, and NaN when it was not a
    number. bound is the bound that failed, and threshold is its configured value.
    """

    metric: str
    value: float | None
    bound: Literal["min", "max"]
    threshold: float

    @property
    def message(self) -> str:
        """One line naming the metric, its value and the failed bound."""
        expected = f"expected {self.bound} {self.threshold!r}"
        if self.value is None:
            return f"{self.metric} is missing from the metrics; {expected}"
        if math.isnan(self.value):
            return f"{self.metric}=nan is not a number; {expected}"
        relation = "is above" if self.bound == "max" else "is below"
        return f"{self.metric}={self.value!r} {relation} {self.bound} {self.threshold!r}"


def check_quality_gate(
    metrics: Mapping[str, float],
    thresholds: Mapping[str, Mapping[str, float]],
) -> list[GateFailure]:
    """Return the failures of ``metrics`` against ``thresholds``. An empty list means a pass.

    A metric that is missing or NaN fails each of its bounds. Failures come in the order
    of ``thresholds``, min before max. Raises ValueError for a bound other than "min" or
    "max", a non-numeric bound, or min greater than max.
    """
    failures: list[GateFailure] = []
    for metric, bounds in thresholds.items():
        checked = _check_bounds(metric, bounds)
        raw_value = metrics.get(metric)
        value = None if raw_value is None else float(raw_value)
        for bound, threshold in checked:
            if value is None or math.isnan(value):
                failed = True
            elif bound == "min":
                failed = value < threshold
            else:
                failed = value > threshold
            if failed:
                failures.append(GateFailure(metric, value, bound, threshold))
    return failures


def _check_bounds(metric: str, bounds: Mapping[str, float]) -> list[tuple[Literal["min", "max"], float]]:
    """Return [(bound, threshold), ...] in min, max order, or raise ValueError."""
    if not isinstance(bounds, Mapping) or not bounds:
        raise ValueError(f"thresholds[{metric!r}] should be a mapping like {{'max': 0.5}}, got {bounds!r}")
    unknown = sorted(set(bounds) - set(BOUND_NAMES))
    if unknown:
        raise ValueError(f"thresholds[{metric!r}] has unknown bounds {unknown}; valid bounds are 'min' and 'max'")

    checked: list[tuple[Literal["min", "max"], float]] = []
    for bound in BOUND_NAMES:
        if bound not in bounds:
            continue
        try:
            threshold = float(bounds[bound])
        except (TypeError, ValueError) as error:
            raise ValueError(f"thresholds[{metric!r}][{bound!r}]={bounds[bound]!r} should be a number") from error
        if math.isnan(threshold):
            raise ValueError(f"thresholds[{metric!r}][{bound!r}] is NaN; set a number")
        checked.append((bound, threshold))

    if len(checked) == 2 and checked[0][1] > checked[1][1]:
        raise ValueError(
            f"thresholds[{metric!r}] has min {checked[0][1]!r} greater than max {checked[1][1]!r}; no value can pass"
        )
    return checked
