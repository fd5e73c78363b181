"""Per-cell running mean of a field: a product (each rank's share of a global array), not events.

The smallest user of the product sink (analyzers/product.py): each rank
keeps, per block it holds, the float64 sum of the field over the steps seen
and how many steps; the mean of a cell is its sum ÷ its count.  Every cell's
sum is accumulated in step order on whichever rank holds it, so the product
is bit for bit the same for any number of ranks and blocks.  Its catalog
part is one score (``steps``); the field-sized part goes to the products
folder, every ``every`` steps and at the end.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from intransit.analyzers.base import Analyzer, StepContext, StepResult, register
from intransit.analyzers.product import Product

log = logging.getLogger(__name__)

Box = tuple[tuple[int, ...], tuple[int, ...]]


class RunningMean(Analyzer):
    """Running mean of the field per cell; product ``mean`` (float64, the field's global shape)."""

    score_names = ("steps",)

    def __init__(self, *, every: int = 0) -> None:
        """``every``: also write the product every this many steps (0: only after the last step)."""
        if every < 0:
            raise ValueError(f"every must be >= 0 steps (0 = only at the end), got {every}")
        self.every = int(every)
        self._sums: dict[Box, np.ndarray] = {}
        self._counts: dict[Box, int] = {}
        self._held: list[Box] = []  # the boxes of the latest step, in block order
        self._shape: tuple[int, ...] = ()
        self._steps = 0
        self._written_at = -1  # self._steps when the product was last returned

    def process_blocks(self, ctx: StepContext) -> int:
        held = []
        for b in ctx.blocks:
            box = (tuple(int(s) for s in b.start), tuple(int(c) for c in b.count))
            acc = self._sums.get(box)
            if acc is None:
                acc = self._sums[box] = np.zeros(box[1], dtype=np.float64)
                self._counts[box] = 0
            acc += b.data
            self._counts[box] += 1
            held.append(box)
        if held != self._held and self._held:
            # The writer (or the rank count) changed the decomposition: boxes no longer held go.
            for box in set(self._held) - set(held):
                self._sums.pop(box, None)
                self._counts.pop(box, None)
            log.info("running_mean: this rank's blocks changed; cells that moved start their mean afresh")
        self._held = held
        self._shape = tuple(ctx.global_shape)
        self._steps += 1
        return self._steps

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        return StepResult(scores={"steps": float(max(partials))})

    def products(self, final: bool) -> list[Product]:
        """The mean so far: every ``every`` steps, and after the last step unless just written."""
        due = (self.every and self._steps % self.every == 0) or final
        if not due or self._steps == 0 or self._written_at == self._steps:
            return []
        self._written_at = self._steps
        blocks = [(box[0], self._sums[box] / self._counts[box]) for box in self._held]
        return [Product("mean", self._shape, blocks)]

    def local_state_dict(self) -> dict[str, Any]:
        return {"sums": {k: v.copy() for k, v in self._sums.items()}, "counts": dict(self._counts),
                "held": list(self._held), "shape": self._shape, "steps": self._steps, "written_at": self._written_at}

    def load_local_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self._sums = {k: np.array(v, dtype=np.float64) for k, v in state["sums"].items()}
        self._counts = dict(state["counts"])
        self._held = list(state["held"])
        self._shape = tuple(state["shape"])
        self._steps = int(state["steps"])
        self._written_at = int(state["written_at"])


register("running_mean")(RunningMean)
