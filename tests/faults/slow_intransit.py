"""``intransit`` with one more analyzer, ``sleepy``: sleeps ``seconds`` per step (a slow analyzer).

Fault tests start this instead of the ``intransit`` script, so a real
analytics process over a real SST stream can be made as slow as a test
needs without adding a sleeping analyzer to the package.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence

from intransit.analyzers.base import Analyzer, StepContext, StepResult, register


class Sleepy(Analyzer):
    """Sleeps ``seconds`` on every rank per step; scores the cells it was handed."""

    score_names = ("cells",)

    def __init__(self, *, seconds: float = 0.0) -> None:
        self.seconds = float(seconds)

    def process_blocks(self, ctx: StepContext) -> int:
        if self.seconds:
            time.sleep(self.seconds)
        return int(sum(b.data.size for b in ctx.blocks))

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        return StepResult(scores={"cells": float(sum(partials))})


register("sleepy")(Sleepy)

if __name__ == "__main__":
    from intransit.service.cli import main

    sys.exit(main())
