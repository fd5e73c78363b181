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
s + 1 is enough: 2 crashes in 13 runs of two bare readers on one writer on the
loaded two-core machine, and every time when the two readers open 0.2 s apart
across a second boundary (docs/adios2_notes.md).

The ranks of one job cannot change EVPath's seed, but they can choose the
second they open in.  They exchange pids and clocks once and derive the same
table: for every rank a primary second and a few reserve seconds, with every
pid + second in the table different.  Ranks on one host have distinct pids and
share the primary second; ranks on different hosts may share a pid, and then
one of them waits a second longer.  A rank that wakes too late for its
primary second (descheduled, or its clock ahead of the others') opens in its first reserve
second that has not passed: because the whole table is distinct, late ranks
cannot meet each other or anyone else, and no second exchange is needed (one
would hold ranks of an early second until a later one, and an SST ``Open``
can block until every reader has registered).  The cost is usually under a
second, once, at start-up.  Readers of other jobs (a second analysis, a
viewer) are outside the table.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

#: Open this far into a planned second: EVPath's ``time(NULL)`` reads the
#: kernel's coarse clock, which can still show the previous second for a few
#: milliseconds after Python's ``time.time()`` has moved on.
OPEN_MARGIN_S = 0.05
#: A rank that is later than this into a planned second moves to its next
#: reserve second rather than risk ``Open`` crossing into the following one.
LATE_AFTER_S = 0.6
#: Seconds per rank in the table: the primary one and the reserves.
SLOTS_PER_RANK = 4


class OpenPlanError(RuntimeError):
    """Some rank could not get ready to open; every rank raises the first such message."""


@dataclasses.dataclass(frozen=True)
class OpenSlot:
    """This rank's seconds to open in: the primary one first, then the reserves."""

    seconds: tuple[int, ...]


def plan_open_seconds(pids: Sequence[int], base_second: int, slots: int = SLOTS_PER_RANK) -> list[list[int]]:
    """Per rank, ``slots`` increasing whole seconds from ``base_second`` on, every pid + second in the table unique.

    Greedy, primary seconds first (in rank order), then each reserve round:
    with distinct pids every rank's primary second is ``base_second``.
    """
    used: set[int] = set()
    table: list[list[int]] = [[] for _ in pids]
    for _ in range(slots):
        for rank, pid in enumerate(pids):
            second = table[rank][-1] + 1 if table[rank] else base_second
            while pid + second in used:
                second += 1
            used.add(pid + second)
            table[rank].append(second)
    return table


def agree_open_seconds(
    comm: Any,
    problem: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
    pid: int | None = None,
) -> OpenSlot:
    """Collective over ``comm``: agree on every rank's seconds to open in; raise if any rank has a ``problem``.

    Every rank calls it exactly once, whatever went wrong before: a rank that
    cannot open (no contact file in time, a missing XML) sends its ``problem``
    in the same exchange, and every rank raises the first one.
    """
    pid = os.getpid() if pid is None else pid
    infos = comm.allgather((problem, pid, clock()))
    first = next((p for p, _, _ in infos if p), None)
    if first:
        raise OpenPlanError(first)
    pids = [p for _, p, _ in infos]
    base = int(max(t for _, _, t in infos)) + 1
    return OpenSlot(seconds=tuple(plan_open_seconds(pids, base)[comm.Get_rank()]))


def wait_for_slot(
    slot: OpenSlot,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Sleep into the first of this rank's seconds that has not passed; return it.

    The clock is read again after every sleep: one that overslept past
    ``LATE_AFTER_S`` moves on to the next reserve second.  If all have
    passed, the last is returned (the caller warns: the id is then unplanned).
    """
    for second in slot.seconds:
        while True:
            now = clock()
            if now > second + LATE_AFTER_S:
                break  # too late for this one: next reserve second
            if now >= second + OPEN_MARGIN_S:
                return second
            sleep(second + OPEN_MARGIN_S - now)
        log.debug("SST open second %d passed (now %.3f); trying the next reserve", second, clock())
    return slot.seconds[-1]
