"""Step accounting in one place: analyzed, dropped, failed, the restart offset, timings, the run summary.

The writer's step numbers are the simulation's; the loop index is ours.  A
gap between consecutive analyzed writer steps is steps the writer dropped
(keep-pace preset) or we missed: counted per step (the catalog's
``dropped``) and in total (the summary).  After a restore, the index and the
last analyzed writer step come from the checkpoint, so the first step after
a restart counts only the steps missed since the checkpointed one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Mapping

import numpy as np

from intransit.adapters.reader import StreamError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunSummary:
    """What a finished job reports (rank 0 holds the full picture)."""

    steps_analyzed: int = 0
    steps_dropped: int = 0
    first_step: int | None = None
    last_step: int | None = None
    end_reason: str = ""
    step_seconds_mean: float = 0.0
    step_seconds_p95: float = 0.0
    steps_per_second: float = 0.0
    #: From the end of the first analyzed step to the end of the last (excludes the
    #: open/rendezvous wait), over steps_analyzed - 1 steps: the steady rate.
    elapsed_seconds: float = 0.0
    #: (loop index, resident set size in MB) every 500 steps, on rank 0.
    rss_mb: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    catalog: str = ""
    commands: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    steps_analyzed_steady: int = 0
    #: CPU time of this process (all its threads: ours, ADIOS2's, the analyzers') from the
    #: end of the first analyzed step to the end of the loop (for a stream that ends, the
    #: wait for its end included): how much of its cores the analytics use per step.
    cpu_seconds: float = 0.0
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Steps the writer reported it published (``<stream>.end.json``; None: it did not report).
    writer_steps: int | None = None
    #: Writer steps after the last one this job received, never seen: counted in ``steps_dropped``
    #: when the writer reported its count; None when nobody can tell (see ``stream_end``).
    steps_dropped_at_end: int | None = None
    #: One sentence on how the stream ended and whether every writer step is accounted for.
    stream_end: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def rss_mb() -> float:
    """Current resident set size (Linux /proc), for the flat-memory check."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 2)
    except (OSError, ValueError, IndexError):
        return float("nan")


class StepAccounting:
    """The loop's counters and clocks; ``finish`` turns them into the ``RunSummary``.

    Contract (docs/stages.md): per analyzed step, ``dropped_before(step)``
    once (before the step is analyzed), then ``done(step, dropped, seconds,
    t_done)``; ``index`` is the loop index of the next step.
    """

    def __init__(self, summary: RunSummary, *, stream: str, max_steps: int, rank: int) -> None:
        self.summary = summary
        self.stream = stream
        self.max_steps = max_steps
        self.rank = rank
        self.index = 0
        self.first_index = 0
        self.last_step: int | None = None
        self.step_seconds: list[float] = []
        self.t_start = time.perf_counter()
        self.t_first_done: float | None = None
        self.t_last_done = 0.0
        self.cpu_first_done = 0.0
        self.cpu_end = 0.0

    def more(self) -> bool:
        """Whether the loop may take another step (``max_steps`` counts this run's and earlier runs' steps)."""
        return self.max_steps == 0 or self.index < self.max_steps

    def dropped_before(self, step: int) -> int:
        """Writer steps missed between the last analyzed step and ``step``; a step back is a StreamError."""
        dropped = step - (self.last_step + 1 if self.last_step is not None else 0)
        if dropped < 0:
            raise StreamError(f"stream {self.stream!r} went back from step {self.last_step} to {step}")
        return dropped

    def done(self, step: int, dropped: int, seconds: float, t_done: float) -> None:
        """Count an analyzed step (``seconds``: read + analyze, not the wait for the writer)."""
        self.step_seconds.append(seconds)
        if self.t_first_done is None:
            self.t_first_done = t_done
            self.cpu_first_done = time.process_time()
        self.t_last_done = t_done
        s = self.summary
        if self.rank == 0 and self.index % 500 == 0:
            s.rss_mb.append((self.index, rss_mb()))
        s.steps_dropped += dropped
        if s.first_step is None:
            s.first_step = step
        s.last_step = step
        self.last_step = step
        self.index += 1

    def stream_ended(self, writer_steps: int | None, *, live: bool = True) -> None:
        """The stream ended: account for the writer steps after the last one received (keep-pace tail).

        A Discard writer drops steps the readers cannot take; those after the
        last step we received leave no gap for ``dropped_before`` to see.  With
        the writer's own count they are counted as dropped; without it the
        summary says the tail is unknown and after which writer step.  A
        replayed file (``live`` False) holds every step it has: nothing after
        its last one was dropped.
        """
        s = self.summary
        s.writer_steps = writer_steps
        last = self.last_step
        seen = f"writer step {last}" if last is not None else "the start of the stream"
        if writer_steps is None and not live:
            s.steps_dropped_at_end = 0
            s.stream_end = f"replay ended after {seen}: a file holds every step written to it, none dropped after it"
            return
        if writer_steps is None:
            s.steps_dropped_at_end = None
            s.stream_end = (f"stream ended after {seen}; the writer did not report how many steps it published, "
                            f"so steps it may have discarded after {seen} cannot be counted (the transport does not "
                            "show them; a simulation reports its count with intransit.adapters.steering."
                            "report_end_of_stream or intransit::report_end_of_stream)")
            return
        tail = writer_steps - (last + 1 if last is not None else 0)
        if tail < 0:
            s.steps_dropped_at_end = 0
            s.stream_end = (f"the writer reported {writer_steps} steps, fewer than the steps received (last writer "
                            f"step {last}): its report is wrong or from another run; nothing added")
            return
        s.steps_dropped_at_end = tail
        s.steps_dropped += tail
        s.stream_end = (f"the writer reported {writer_steps} steps; every one is accounted for: "
                        f"{tail} dropped after {seen} (counted as dropped)" if tail else
                        f"the writer reported {writer_steps} steps; none was dropped after {seen}")
        if tail and self.rank == 0:
            log.warning("%d writer step(s) after %s were dropped by the writer (it reported %d steps): counted",
                        tail, seen, writer_steps)

    def writer_lost(self, *, stalled: bool = False) -> None:
        """The writer vanished (or, ``stalled``, sent nothing within the timeout): what came after is unknown."""
        seen = f"writer step {self.last_step}" if self.last_step is not None else "the start of the stream"
        what = "stalled (no step within the step timeout)" if stalled else "vanished"
        self.summary.steps_dropped_at_end = None
        self.summary.stream_end = (f"the writer {what} after {seen}: the steps it published after that, if any, "
                                   "are unknown and not counted")

    def loop_ended(self, reason: str) -> None:
        self.summary.end_reason = reason
        self.cpu_end = time.process_time()

    def finish(self, failures: Mapping[str, int]) -> RunSummary:
        """Fill the summary's totals, rates and percentiles."""
        s = self.summary
        elapsed = time.perf_counter() - self.t_start
        s.steps_analyzed = self.index - self.first_index
        s.failures = dict(failures)
        if self.step_seconds:
            s.step_seconds_mean = float(np.mean(self.step_seconds))
            s.step_seconds_p95 = float(np.percentile(self.step_seconds, 95))
            s.steps_per_second = s.steps_analyzed / elapsed if elapsed > 0 else 0.0
        if self.t_first_done is not None and s.steps_analyzed > 1:
            s.elapsed_seconds = self.t_last_done - self.t_first_done
            s.steps_analyzed_steady = s.steps_analyzed - 1
            s.cpu_seconds = self.cpu_end - self.cpu_first_done
        if self.rank == 0:
            s.rss_mb.append((self.index, rss_mb()))
        return s

    # -- checkpoint interface (service/state.py) --------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.index = self.first_index = int(state["index"])
        self.last_step = None if state.get("last_step") is None else int(state["last_step"])
