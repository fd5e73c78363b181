"""Shared pieces of the fault matrix: jobs, processes and what a summary must account for.

Every test runs real processes over real SST streams (tests/procs.py):
the reference simulation (examples/blob_sim.py, turbulence off so it starts
at once) or ``writer.py`` (a bare SST writer with scripted faults), and the
analytics through ``slow_intransit.py`` (``intransit`` plus a ``sleepy``
analyzer).  Each test has its own folder and stream names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

from tests import procs

HERE = os.path.dirname(os.path.abspath(__file__))
SLOW_INTRANSIT = os.path.join(HERE, "slow_intransit.py")
WRITER = os.path.join(HERE, "writer.py")
PY = sys.executable

SLEEPY = """
[[analyzers]]
type = "sleepy"
name = "slow"
params = {{ seconds = {seconds} }}
"""

#: blob_sim with no turbulence: starts in about a second, fields are blobs only.
FAST_SIM = ["--size", "64", "--blobs", "2", "--turbulence", "0", "--timeout", "120"]


def job(folder: str, stream: str, *, seconds: float = 0.0, name: str = "job.toml", step_timeout_s: float = 30,
        open_timeout_s: float = 60, extra: str = "", output: str = "", analyzers: str | None = None) -> str:
    """A job over ``stream`` with the sleepy analyzer (``seconds`` per step); ``extra``: more TOML sections."""
    return procs.write_job(
        folder, stream, name=name, catalog=os.path.join(folder, name.replace(".toml", "_catalog.bp")),
        step_timeout_s=step_timeout_s, open_timeout_s=open_timeout_s,
        analyzers=analyzers if analyzers is not None else SLEEPY.format(seconds=seconds), extra=extra, output=output)


def start_analytics(folder: str, job_path: str, ranks: int = 1, *args: str, log_name: str = "analytics.log",
                    extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """``intransit run`` (with the sleepy analyzer) as ``ranks`` MPI ranks, output to ``log_name``."""
    cmd = [PY, SLOW_INTRANSIT, "run", job_path, *args]
    if ranks > 1:
        cmd = [procs.MPIEXEC, "-n", str(ranks), *cmd]
    return procs.start(cmd, folder, log_name, extra_env)


def start_writer(folder: str, stream: str, *args: str, log_name: str = "writer.log") -> subprocess.Popen:
    return procs.start([PY, WRITER, "--stream", stream, *args], folder, log_name)


def wait_for_text(folder: str, log_name: str, text: str, timeout: float, procs_alive: Sequence[subprocess.Popen] = ()
                  ) -> None:
    """Wait until ``text`` is in the log (fail with the log if it never comes or a process ends first)."""
    t0 = time.monotonic()
    path = os.path.join(folder, log_name)
    while True:
        content = open(path, errors="replace").read() if os.path.exists(path) else ""
        if text in content:
            return
        dead = [p for p in procs_alive if p.poll() is not None]
        assert not dead and time.monotonic() - t0 < timeout, (
            f"{text!r} not in {log_name} after {time.monotonic() - t0:.0f} s "
            f"(ended: {[p.args for p in dead]}):\n{content[-3000:]}")
        time.sleep(0.1)


def summary(path: str) -> dict[str, Any]:
    with open(path) as fh:
        return json.load(fh)


def analytics_log(folder: str, name: str = "analytics.log") -> str:
    return procs.strip_ansi(procs.read_log(folder, name))


def steps_accounted(s: dict[str, Any]) -> int:
    """Analyzed plus counted dropped (the tail included when the writer reported its count)."""
    return int(s["steps_analyzed"]) + int(s["steps_dropped"])


#: benchmarks/faults.py sets this: each fault test appends one JSON line of what it measured.
RECORD_ENV = "INTRANSIT_FAULTS_RECORD"


def record(test: str, *, summary_: dict[str, Any] | None = None, log: str = "", **metrics: Any) -> None:
    """Append what a fault test measured to ``$INTRANSIT_FAULTS_RECORD`` (nothing when unset).

    From a summary: ``steps_lost_uncounted`` (writer steps neither analyzed nor counted, where the writer
    reported its count) and ``tail_unknown`` (the writer did not report: the summary says so instead);
    ``traceback``: whether the analytics' log holds one.
    """
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    row: dict[str, Any] = {"test": test, "traceback": "Traceback (most recent call last)" in log, **metrics}
    if summary_ is not None:
        writer_steps = summary_.get("writer_steps")
        row["steps_lost_uncounted"] = (int(writer_steps) - steps_accounted(summary_)) if writer_steps is not None else 0
        row["tail_unknown"] = writer_steps is None and summary_.get("steps_dropped_at_end") is None
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
