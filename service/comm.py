"""Communicators: mpi4py's COMM_WORLD for real jobs, a serial stand-in for unit tests.

The step loop only needs the lower-case, pickle-based collectives of mpi4py
(``allgather``, ``gather``, ``bcast``, ``allreduce``), which carry the small
features and partial results analyzers return — never the field.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np


class SerialComm:
    """One rank, no MPI: every collective is the identity."""

    rank = 0
    size = 1

    def Get_rank(self) -> int:  # noqa: N802 (mpi4py spelling)
        return 0

    def Get_size(self) -> int:  # noqa: N802
        return 1

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def gather(self, obj: Any, root: int = 0) -> list[Any]:
        return [obj]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allreduce(self, obj: Any, op: Any = None) -> Any:
        return obj

    def Barrier(self) -> None:  # noqa: N802
        pass


#: Environment variables that MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm) set.
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_PROCID")


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def world() -> Any:
    """MPI's world communicator, or a SerialComm for a plain single-process run.

    A run not started by mpiexec/srun does not initialise MPI at all: it
    needs no collectives, and MPICH's singleton start-up would cost time
    and a helper process for nothing.
    """
    if not launched_by_mpi():
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError:  # mpi4py is a dependency, but a bare run still works
        return SerialComm()
    return MPI.COMM_WORLD


def sum_allreduce(comm: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An ``allreduce`` for analyzers: element-wise float64 sum over ranks."""
    if isinstance(comm, SerialComm) or comm.Get_size() == 1:
        return lambda values: np.asarray(values, dtype=np.float64).copy()

    from mpi4py import MPI

    def reduce(values: np.ndarray) -> np.ndarray:
        send = np.ascontiguousarray(values, dtype=np.float64)
        recv = np.empty_like(send)
        comm.Allreduce(send, recv, op=MPI.SUM)
        return recv

    return reduce
