"""When each analytics rank may open its SST reader, so that no two readers share an EVPath id.

ADIOS2's SST runs on EVPath, whose connection manager takes an id when the
process's first SST stream opens: ``lrand48()`` after ``srand48(getpid() +
time(NULL))`` (EVPath ``cm.c``, ADIOS2 2.12.1).  A writer looks up its
connection to a reader by that id *before* it compares addresses.  Two reader
processes whose pid + whole second at ``Open`` are equal therefore get the same
id, and the writer sends one reader's data (a speculative preload, or a read
reply) down the other reader's connection; that reader dereferences a pointer
from the other process and dies with SIGSEGV in its network thread, usually
while it waits for its first step.  ``mpiexec`` starts ranks with consecutive
pids, so rank 1 (pid p + 1) opening in second s and rank 0 (pid p) in second
s + 1 is enough: about one run in ten of a two-rank job on a loaded two-core
machine, and forced every time by opening the two readers 0.2 s apart across a
second boundary (docs/adios2_notes.md).

The ranks of one job cannot change EVPath's seed, but they can choose the
second they open in: they agree on a plan in which every rank's pid + second
is different, and each waits for its second.  Ranks on one host have distinct
pids and share the base second; ranks on different hosts may share a pid, and
then one of them waits a second longer.  The cost is at most about one second
at start-up, once.  Readers of other jobs (a second analysis, a viewer) are
outside the plan.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

#: Open this far into the planned second: EVPath reads ``time(NULL)`` within
#: microseconds of ``Open``, and a margin keeps a slightly slow clock call inside it.
OPEN_MARGIN_S = 0.05
#: A rank that reaches its planned second later than this into it picks
#: another free second rather than risk crossing into the next one mid-``Open``.
LATE_AFTER_S = 0.6


class OpenPlanError(RuntimeError):
    """Some rank could not get ready to open; every rank raises the first such message."""


@dataclasses.dataclass(frozen=True)
class OpenSlot:
    """This rank's agreed second, and the ids (pid + second) the other ranks use."""

    second: int
    others: frozenset[int]


def plan_open_seconds(pids: Sequence[int], base_second: int) -> list[int]:
    """Per rank, the whole second (from ``base_second`` on) in which pid + second is unique.

    Greedy in rank order: a rank whose pid + base is already taken waits one
    more second, and so on.  With distinct pids every rank gets ``base_second``.
    """
    used: set[int] = set()
    seconds = []
    for pid in pids:
        second = base_second
        while pid + second in used:
            second += 1
        used.add(pid + second)
        seconds.append(second)
    return seconds


def free_second(pid: int, now: float, taken: frozenset[int]) -> int:
    """The first whole second, from the one ``now`` is in (unless too far into it), where pid + second is free."""
    second = int(now) if now - int(now) <= LATE_AFTER_S else int(now) + 1
    while pid + second in taken:
        second += 1
    return second


def agree_open_second(
    comm: Any,
    problem: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
    pid: int | None = None,
) -> OpenSlot:
    """Collective over ``comm``: agree on every rank's opening second; raise if any rank has a ``problem``.

    Every rank must call it (the ``problem`` of a rank that cannot open, e.g.
    no contact file in time, travels in the same exchange, so no rank is left
    waiting in a collective the others skipped).
    """
    pid = os.getpid() if pid is None else pid
    infos = comm.allgather((problem, pid, clock()))
    first = next((p for p, _, _ in infos if p), None)
    if first:
        raise OpenPlanError(first)
    pids = [p for _, p, _ in infos]
    base = int(max(t for _, _, t in infos)) + 1
    seconds = plan_open_seconds(pids, base)
    rank = comm.Get_rank()
    others = frozenset(p + s for i, (p, s) in enumerate(zip(pids, seconds)) if i != rank)
    return OpenSlot(second=seconds[rank], others=others)


def wait_for_slot(
    slot: OpenSlot,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    pid: int | None = None,
) -> int:
    """Sleep until this rank's second has begun; return the second it opens in.

    A rank already too far past its planned second (descheduled, or a clock
    ahead of the others) moves to the next second no other rank's plan uses.
    """
    pid = os.getpid() if pid is None else pid
    second = slot.second
    now = clock()
    if now > second + LATE_AFTER_S:
        second = free_second(pid, now, slot.others)
        log.debug("planned SST open second %d passed; opening in %d", slot.second, second)
    delay = second + OPEN_MARGIN_S - now
    if delay > 0:
        sleep(delay)
    return second
