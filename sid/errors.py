"""Exception types of the sid package."""

__all__ = [
    "CatalogError",
    "ConfigError",
    "MappingError",
    "PipelineError",
    "QualityGateError",
    "QuantizerError",
    "SidError",
]


class SidError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SidError, ValueError):
    """An invalid, unknown or mistyped configuration value."""


class CatalogError(SidError, ValueError):
    """A catalog that cannot be read or holds no usable item."""


class QuantizerError(SidError, ValueError):
    """Training data or a saved codebook that a quantizer cannot use."""


class PipelineError(SidError, RuntimeError):
    """A broken invariant of a pipeline run, such as items lost between stages."""


class MappingError(SidError, ValueError):
    """An item-to-SID mapping that cannot be evaluated, such as one with mixed SID lengths."""


class QualityGateError(SidError, RuntimeError):
    """A codebook version whose metrics fail the quality gate, so it was not activated.

    ``failures`` contains one :class:`sid.metrics.GateFailure` per failed bound.
    """

    def __init__(self, message: str, failures: list) -> None:
        super().__init__(message)
        self.failures = failures


class BusyError(PipelineError):
    """Error for a busy warehouse: another job has locked it, or concurrent commits kept
    conflicting. The run changed nothing and can be retried later with the same run id;
    jobs exit with code 4."""
