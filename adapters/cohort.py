"""The one place that decides how analytics ranks attach to a stream.

With an MPI-enabled ADIOS2, all analytics ranks open the stream together as
one reader cohort (the communicator goes to ADIOS2, the writer sees one
reader).  With the serial PyPI wheel, every rank is its own SST reader, and
the writer sees M readers: its ``RendezvousReaderCount`` should then be M for
a lossless start (see xml_configs/README.md).
"""

from __future__ import annotations

from typing import Any


def adios_has_mpi() -> bool:
    """True when the installed ADIOS2 was built with MPI."""
    from adios2 import bindings

    return bool(bindings.is_built_with_mpi)


def reader_communicator(comm: Any) -> Any:
    """The communicator to hand ADIOS2, or None where each rank reads alone."""
    if comm is None or not adios_has_mpi():
        return None
    return comm


def readers_seen_by_writer(n_ranks: int) -> int:
    """How many readers the writer counts for ``n_ranks`` analytics ranks."""
    return 1 if adios_has_mpi() else n_ranks
