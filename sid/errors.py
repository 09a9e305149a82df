"""Exception types of the sid package."""

__all__ = ["CatalogError", "ConfigError", "PipelineError", "QuantizerError", "SidError"]


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
