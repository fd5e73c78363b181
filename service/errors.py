"""The job's own failures, and how every rank learns of one.

``SetupError`` stops a job before (or at) its first step with a message
that says what to fix; ``StepTimeout`` is a stalled writer, never confused
with the end of the stream.  ``collective_ok`` is how a rank's problem
reaches every rank, so no rank waits in a collective the others skipped.
"""

from __future__ import annotations

from typing import Any


class StepTimeout(RuntimeError):
    """No step arrived within the configured timeout (not the end of the stream)."""


class SetupError(RuntimeError):
    """The job could not start; the message says why."""


class OutputPathError(ValueError):
    """An output path (catalog, summary, metrics, checkpoint, CSV folder) cannot be written; the message says why."""


def collective_ok(comm: Any, error: str | None) -> None:
    """Every rank learns whether any rank failed; all raise the first error (collective)."""
    errors = comm.allgather(error)
    first = next((e for e in errors if e), None)
    if first:
        raise SetupError(first)
