"""The library's own error types.

Every user-facing check raises one of these. Each subclasses the matching
builtin (``ValueError`` or ``TypeError``) so that ordinary ``except`` clauses
keep working.
"""

from __future__ import annotations


class HyperDNNError(Exception):
    """Base class of every error hyperdnn raises on purpose."""


class ConfigError(HyperDNNError, ValueError):
    """A part was configured with a bad value (sizes, names, options)."""


class ShapeError(HyperDNNError, ValueError):
    """A tensor or condition has the wrong shape, size or batch."""


class CheckpointError(HyperDNNError, ValueError):
    """A checkpoint is missing, truncated, tampered with or for another target."""


class DataError(HyperDNNError, ValueError):
    """A data file is missing, corrupt or of the wrong format."""


class NonFiniteWeightsError(HyperDNNError, ValueError):
    """Generated weights hold NaN or Inf (raised only when checking is on)."""


class HDTypeError(HyperDNNError, TypeError):
    """An argument has the wrong type."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HDTypeError",
    "HyperDNNError",
    "NonFiniteWeightsError",
    "ShapeError",
]
