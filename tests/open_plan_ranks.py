"""Run by tests/test_sst_open.py under ``mpiexec -n 2``: two serial SST readers that reach
``AdiosStepReader`` timed so that pid + whole second would be equal on both (EVPath's seed
for its connection id), then read every step.  Prints one JSON line per rank."""

from __future__ import annotations

import json
import math
import os
import sys
import time

from mpi4py import MPI

from intransit.adapters.reader import AdiosStepReader, StepStatus, _contact_file_appears

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Largest pid gap worth forcing (the lower pid then waits this many seconds).
MAX_GAP = 10


def _sleep_until(t: float) -> None:
    """Sleep to wall-clock time ``t``: coarsely, then in short naps (a loaded machine oversleeps long naps)."""
    while True:
        left = t - time.time()
        if left <= 0:
            return
        time.sleep(left - 0.1 if left > 0.2 else min(left, 0.005))


def main() -> None:
    stream, expected_steps = sys.argv[1], int(sys.argv[2])
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if not _contact_file_appears(stream, 60):
        raise SystemExit(f"rank {rank}: no contact file {stream}.sst")
    pids = comm.allgather(os.getpid())
    hi, lo = max(pids), min(pids)
    gap = hi - lo
    # The collision: pid + second equal on both, i.e. the lower pid arrives exactly `gap`
    # seconds after the higher one.  The higher pid arrives when it likes (just after a
    # second boundary, so its Open would fall well inside that second) and tells the lower
    # one which second it measured; the lower one then aims at that second + gap, with
    # 0.95 s of that second left for a slow wake-up (a wall-clock sleep to a target second
    # is the one timing left: EVPath seeds from the wall clock).  Pids far apart (other
    # processes started in between) are not worth the wait: no forcing, reported as such.
    if 0 < gap <= MAX_GAP:
        if os.getpid() == hi:
            now = time.time()
            time.sleep(math.floor(now) + 1 + 0.05 - now)
            arrival_second = int(time.time())
            comm.send(arrival_second, dest=pids.index(lo), tag=7)
        else:
            target = comm.recv(source=pids.index(hi), tag=7) + gap
            _sleep_until(target + 0.05)
            arrival_second = int(time.time())
    else:
        arrival_second = int(time.time())
    reader = AdiosStepReader(stream=stream, xml=os.path.join(ROOT, "xml_configs", "analytics.xml"),
                             io_name="SimulationOutput", rank=rank, n_ranks=comm.Get_size(),
                             open_timeout_s=60, comm=comm)
    arrival_ids = comm.allgather(os.getpid() + arrival_second)
    steps = 0
    while True:
        status = reader.begin_step(0.0)
        if status is StepStatus.TIMEOUT:
            status = reader.begin_step(30.0)
        if status is StepStatus.END:
            break
        if status is not StepStatus.OK:
            raise SystemExit(f"rank {rank}: {status} after {steps} steps")
        shape, blocks = reader.read("density")
        assert all(b.data.size > 0 for b in blocks) and shape == (64, 64)
        reader.end_step()
        steps += 1
    reader.close()
    planned, opened = reader.open_plan or (None, None)
    print(json.dumps({"rank": rank, "pid": os.getpid(), "pid_gap": gap, "steps": steps, "planned_second": planned,
                      "opened_second": opened, "forced_same_seed": len(set(arrival_ids)) == 1}), flush=True)
    if steps != expected_steps:
        raise SystemExit(f"rank {rank} read {steps} steps, expected {expected_steps}")


if __name__ == "__main__":
    main()
