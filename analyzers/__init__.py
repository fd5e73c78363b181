"""Built-in analyzers; importing this package registers them."""

from __future__ import annotations

from intransit.analyzers.base import Analyzer, Block, StepContext, StepResult, available, get, register

__all__ = ["Analyzer", "Block", "StepContext", "StepResult", "available", "get", "register"]

# Built-ins register at the bottom of their own modules; the light ones are
# imported here, the ones that need torch at import time only when a job asks
# for them (see base.LAZY_BUILTINS), so a blob-tracking job starts in a second.
from intransit.analyzers import anomaly, blobs, changepoint, noop, running_mean, tracking  # noqa: E402,F401
