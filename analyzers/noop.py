"""An analyzer that touches every block and returns nothing.

It measures the transport and the step loop alone (benchmarks), and is the
smallest example of the contract for third-party authors.
"""

from __future__ import annotations

from typing import Any, Sequence

from intransit.analyzers.base import Analyzer, StepContext, StepResult, register


class NoOp(Analyzer):
    """Counts the cells it was handed, so a test can see the blocks arrived."""

    score_names = ("cells",)

    def __init__(self) -> None:
        pass

    def process_blocks(self, ctx: StepContext) -> int:
        return int(sum(b.data.size for b in ctx.blocks))

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        return StepResult(scores={"cells": float(sum(partials))})


register("noop")(NoOp)
