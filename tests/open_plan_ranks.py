"""Run by tests/test_sst_open.py under ``mpiexec -n 2``: two serial SST readers that reach
``AdiosStepReader`` timed so that pid + whole second would be equal on both (EVPath's seed
for its connection id), then read every step.  Prints one JSON line per rank."""

from __future__ import annotations

import json
import os
import sys
import time

from mpi4py import MPI

from intransit.adapters.reader import AdiosStepReader, StepStatus, _contact_file_appears

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    stream, expected_steps = sys.argv[1], int(sys.argv[2])
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if not _contact_file_appears(stream, 60):
        raise SystemExit(f"rank {rank}: no contact file {stream}.sst")
    pids = comm.allgather(os.getpid())
    gap = max(pids) - min(pids)
    base = comm.bcast(int(time.time()) + 2, root=0)
    # The higher pid arrives in second `base`, the lower one `gap` seconds later:
    # both then have pid + second == max(pids) + base (0.75 s of slack for a slow
    # wake-up).  Pids far apart (other processes started in between) are not
    # worth the wait: no forcing, reported as such, and the test runs again.
    if gap <= 3:
        arrive = base + 0.25 + (gap if os.getpid() == min(pids) else 0)
        time.sleep(max(0.0, arrive - time.time()))
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
    print(json.dumps({"rank": rank, "pid": os.getpid(), "steps": steps, "planned_second": planned,
                      "opened_second": opened, "forced_same_seed": len(set(arrival_ids)) == 1}), flush=True)
    if steps != expected_steps:
        raise SystemExit(f"rank {rank} read {steps} steps, expected {expected_steps}")


if __name__ == "__main__":
    main()
