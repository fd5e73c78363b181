"""Built-in analyzers; importing this package registers them."""

from __future__ import annotations

from intransit.analyzers.base import Analyzer, Block, StepContext, StepResult, available, get, register

__all__ = ["Analyzer", "Block", "StepContext", "StepResult", "available", "get", "register"]

# Built-ins register at the bottom of their own modules; import them here.
from intransit.analyzers import anomaly, blobs, changepoint, noop, tracking  # noqa: E402,F401
