"""The one place that decides how analytics ranks attach to a stream.

With an MPI-enabled ADIOS2, all analytics ranks open the stream together as
one reader cohort (the communicator goes to ADIOS2, the writer sees one
reader).  With the serial PyPI wheel, every rank is its own SST reader, and
the writer sees M readers: its ``RendezvousReaderCount`` should then be M for
a lossless start (see xml_configs/README.md).  Either way each rank reads only
its share of the writer's blocks, and the catalog is the same.

It also knows the SST data-plane pitfalls that otherwise end in a hang or an
MPI abort (docs/hpc.md):

* SST's ``DataTransport=MPI`` exists only in an MPI-enabled ADIOS2: the serial
  wheel fails to load it.  Use ``WAN`` (sockets) on both sides, or an MPI build.
* The MPI data plane opens MPI ports; the PyPI MPICH's default CH4 network
  module cannot (``MPI_Open_port ... no space for port_name tag``), its ``ofi``
  module can: every process of both jobs needs ``MPIR_CVAR_CH4_NETMOD=ofi`` in
  its environment *before* MPI starts.
* Not pitfalls for this code, but for anything built on it: a reader that joins
  late never gets the attributes written with step 0, and string-array
  attributes arrive empty over SST.  The readers here use variables only.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from typing import Any

#: Environment that lets the PyPI MPICH open MPI ports (SST's MPI data plane).
MPI_PORTS_ENV = {"MPIR_CVAR_CH4_NETMOD": "ofi"}

#: Where to read about building or pointing at an MPI-enabled ADIOS2.
HPC_DOC = "docs/hpc.md"


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


def pypi_mpich() -> bool:
    """True when MPI here is the PyPI ``mpich`` package (whose default netmod cannot open ports)."""
    try:
        importlib.metadata.version("mpich")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def transport_problem(transport: str | None, *, has_mpi: bool | None = None, environ: Any = None) -> str | None:
    """Why this process cannot use SST data plane ``transport``, with the fix; None when it can.

    Checked before ``Open``: both failures otherwise show up as a hang, an MPI
    abort, or ADIOS2's bare "failed to load this transport".
    """
    if not transport or transport.strip().lower() != "mpi":
        return None
    has_mpi = adios_has_mpi() if has_mpi is None else has_mpi
    if not has_mpi:
        return (
            "the SST data plane DataTransport=MPI exists only in an MPI-enabled ADIOS2, and this one is the "
            "serial build (it fails to load this transport). Set DataTransport=WAN in both the simulation's "
            f"and the analytics' XML, or use an MPI-enabled ADIOS2 (`make adios2-mpi`; see {HPC_DOC})"
        )
    environ = os.environ if environ is None else environ
    wanted = MPI_PORTS_ENV["MPIR_CVAR_CH4_NETMOD"]
    if pypi_mpich() and environ.get("MPIR_CVAR_CH4_NETMOD", "").lower() != wanted:
        return (
            "DataTransport=MPI opens MPI ports, which the PyPI MPICH's default network module cannot "
            "(MPI_Open_port: no space for port_name tag). Start every process of the simulation and of the "
            f"analytics with MPIR_CVAR_CH4_NETMOD={wanted} in the environment (e.g. "
            f"`MPIR_CVAR_CH4_NETMOD={wanted} mpiexec -n M intransit run job.toml`), or use DataTransport=WAN"
        )
    return None


def open_failure_hint(message: str) -> str | None:
    """A fix for an ADIOS2 ``Open`` error that names a data-plane problem, else None."""
    text = message.lower()
    if "failed to load this transport" in text or ("dataplane" in text and "not found" in text):
        if adios_has_mpi():
            return (
                "the writer's SST data plane is not available in this ADIOS2; use DataTransport=WAN "
                f"on both sides (see {HPC_DOC})"
            )
        return (
            "the writer uses an SST data plane this serial ADIOS2 cannot load (DataTransport=MPI needs an "
            "MPI-enabled ADIOS2): set DataTransport=WAN in the simulation's XML, or read with an MPI-enabled "
            f"ADIOS2 (`make adios2-mpi`; see {HPC_DOC})"
        )
    if "port_name" in text or "open_port" in text:
        return transport_problem("MPI", has_mpi=True, environ={}) or None
    return None


#: The watchdog process: exits when its stdin closes (the call returned, or this process died); at the
#: deadline it writes the message and SIGKILLs the process it watches.
_WATCHDOG = (
    "import os, select, signal, sys\n"
    "pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]\n"
    "ready, _, _ = select.select([0], [], [], seconds)\n"
    "if not ready:\n"
    "    os.write(2, message.encode() + b'\\n')\n"
    "    os.kill(pid, signal.SIGKILL)\n"
)


class OpenWatchdog:
    """Bound one blocking ADIOS2 call (an SST ``Open``) from outside the process.

    The Python bindings hold the GIL inside ``Open`` (docs/adios2_notes.md),
    so no thread or signal handler of ours runs while it waits; an MPI reader
    cohort's ``Open`` is collective and waited past ``open_timeout_s`` without
    end when the writer stopped answering or exited during it (issue 13 item
    6).  A small separate process gets the deadline; if the call has not
    returned by then it prints ``message`` (why, and what to do) on stderr and
    SIGKILLs this rank, which under ``mpiexec`` ends the job's other ranks too.
    Leaving the context (normally or by an exception) disarms it.  Where the
    watchdog cannot start, the call runs unguarded (with a log line).
    """

    def __init__(self, seconds: float, message: str) -> None:
        self.seconds = max(1.0, float(seconds))
        self.message = message
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "OpenWatchdog":
        try:
            self._proc = subprocess.Popen([sys.executable, "-S", "-c", _WATCHDOG, str(os.getpid()),
                                           f"{self.seconds:.3f}", self.message], stdin=subprocess.PIPE,
                                          close_fds=True)
        except OSError as exc:
            import logging

            logging.getLogger(__name__).warning("cannot start the open watchdog (%s): the open is unguarded", exc)
            self._proc = None
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # the call returned: the watchdog exits
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
