"""Tidegate: a governed customer-event pipeline.

The compiled module ``tidegate._core`` is private; this package re-exports the public API.
"""

from __future__ import annotations


from .config import Config, load_config
from .errors import ConfigError, DeliveryError, PolicyError, RequestRejected, TidegateError

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DeliveryError",
    "PolicyError",
    "RequestRejected",
    "TidegateError",
    "load_config",
    "__version__",
]
