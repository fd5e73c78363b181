"""MPI reader cohort (issue 13 item 6): a writer that stops answering, or exits, while the cohort is inside
its collective SST ``Open`` must not hold any rank past ``open_timeout_s``.

Needs the MPI-enabled ADIOS2 in ``.venv-mpi`` (tests/test_mpi_adios2.py);
without it the test skips saying why, unless CI requires it
(``INTRANSIT_REQUIRE_MPI_ADIOS2=1``).  The writer is frozen with SIGSTOP once
its contact file exists, so the cohort's Open is certain to be waiting on it;
in ``exits`` it is then SIGKILLed a few seconds into that Open.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests import procs
from tests.faults import helpers
from tests.test_mpi_adios2 import MPI_MPIEXEC, MPI_PY, mpi_venv  # noqa: F401 (fixture)

pytestmark = [pytest.mark.mpi, pytest.mark.sst, pytest.mark.slow]

OPEN_TIMEOUT_S = 15


@pytest.mark.parametrize("writer_fate", ["frozen", "exits"])
def test_cohort_open_is_bounded_when_the_writer_stops_during_it(tmp_path, mpi_venv, writer_fate):  # noqa: F811
    folder = str(tmp_path)
    stream = os.path.join(folder, "frozen")
    writer = procs.start([MPI_PY, helpers.WRITER, "--stream", stream, "--steps", "50", "--readers", "1"], folder,
                         "writer.log")
    an = None
    try:
        t0 = time.monotonic()
        while not os.path.exists(stream + ".sst"):
            assert time.monotonic() - t0 < 120 and writer.poll() is None, procs.read_log(folder, "writer.log")
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGSTOP)
        job = helpers.job(folder, stream, open_timeout_s=OPEN_TIMEOUT_S, analyzers='[[analyzers]]\ntype = "noop"\n')
        t_start = time.monotonic()
        an = procs.start([MPI_MPIEXEC, "-n", "2", os.path.join(os.path.dirname(MPI_PY), "intransit"), "run", job],
                         folder, "analytics.log")
        if writer_fate == "exits":
            time.sleep(8)  # the ranks are started and inside Open (start-up takes a few seconds here)
            os.kill(writer.pid, signal.SIGKILL)
        rc = procs.wait(an, OPEN_TIMEOUT_S + 90, log=os.path.join(folder, "analytics.log"))
        took = time.monotonic() - t_start
    finally:
        for proc in (writer, an):
            if proc is not None and proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                procs.stop(proc)
        procs.remove_contact_files(folder)
    log = helpers.analytics_log(folder)
    assert rc != 0, log[-3000:]
    assert took < OPEN_TIMEOUT_S + 45, (took, log[-3000:])  # start-up of 2 ranks + the bounded Open
    assert (f"the SST Open of stream {stream!r} did not complete within {OPEN_TIMEOUT_S} s" in log
            or "intransit: error:" in log), log[-3000:]
    assert "Traceback" not in log
    helpers.record(f"cohort_open_writer_{writer_fate}", log=log, seconds=round(took, 1))
