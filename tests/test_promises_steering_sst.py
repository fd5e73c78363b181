"""README promises of the Python ``SteeringClient``, checked per poll and over a real SST reverse stream.

* Over SST (an XML choosing the SST engine on both sides; the analytics' end a
  separate process): the simulation attaches, validates every command against
  what it declared, applies the good ones once, and stops when told.
* "It never waits longer than its timeout": every single poll is timed in the
  simulation's process and the 95th percentile must stay within the timeout
  plus ``SLACK_S`` (one record's work and the scheduling noise of a loaded
  2-core machine), the slowest within ``MAX_SLACK_S`` (no hang): over SST, over a BP5
  reverse stream holding a backlog of thousands of records (the deadline, not
  the backlog, must end each poll), and with no analytics at all.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import numpy as np
import pytest

from tests import procs

#: What a poll may take beyond its timeout, at the 95th percentile: the record it was
#: reading when the deadline passed (~1 ms) and a loaded machine's scheduling delays.
SLACK_S = 0.010
#: ... and at worst: a hang, not a descheduling.  On the loaded 2-core machine one poll in
#: ~140 took 260-290 ms of wall time whatever it read (the process waiting for a core;
#: measured under a load average of 8); a blocked Open or read takes seconds to forever.
MAX_SLACK_S = 2.0

#: The simulation's side: poll once per step, time every poll, report JSON on the last line.
CLIENT = textwrap.dedent("""
    import json, logging, os, sys, time
    from intransit.adapters.steering import SteeringClient

    stream, xml, seconds, timeout, ready = sys.argv[1], sys.argv[2] or None, float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    params, stopped = {"dt": 0.01}, []
    client = SteeringClient(stream, xml=xml, poll_timeout_s=timeout)
    client.on("stop", lambda cmd: stopped.append(cmd.answers_step))
    client.declare_parameter("dt", float, lambda n, v: params.__setitem__(n, v), low=0.001, high=0.1)
    durations, per_poll = [], []
    t0, step = time.monotonic(), 0
    while time.monotonic() - t0 < seconds and not stopped:
        before = client.stats.received
        t = time.perf_counter()
        client.poll(step)
        durations.append(time.perf_counter() - t)
        per_poll.append(client.stats.received - before)
        if ready != "-" and client.stats.received and step >= 200 and not os.path.exists(ready):
            open(ready, "w").close()  # attached, records reach it, and 200 polls to time
        step += 1
        time.sleep(0.002)  # the simulation's own work
    client.close()
    print(json.dumps({"params": params, "stopped": stopped, "steps": step, "sst": client._sst,
                      "durations": durations, "received_per_poll": per_poll, "stats": vars(client.stats),
                      "history": [[c.seq, c.command, o] for c, o in client.history]}), flush=True)
    """)


def _sst_xml(folder: str) -> str:
    """The shipped steering preset with the engine switched to SST (what the README says works)."""
    with open(os.path.join(procs.ROOT, "xml_configs", "steering.xml")) as fh:
        text = fh.read()
    assert '<engine type="BP5">' in text
    text = text.replace('<engine type="BP5">', '<engine type="SST">')
    path = os.path.join(folder, "steering_sst.xml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def _start_client(folder: str, stream: str, xml: str, seconds: float, timeout: float, ready: str = "-"):
    return procs.start([sys.executable, "-c", CLIENT, stream, xml, str(seconds), str(timeout), ready], folder,
                       "client.log")


def _report(folder: str, proc, timeout: float = 120) -> dict:
    rc = procs.wait(proc, timeout, os.path.join(folder, "client.log"))
    log = procs.read_log(folder, "client.log")
    assert rc == 0, log[-3000:]
    return json.loads(procs.last_json_line(log))


def _assert_bounded(durations: list[float], timeout: float, *, skip_first: bool = False) -> None:
    """p95 and maximum of the polls (``skip_first``: the poll that opened an SST stream, bounded apart)."""
    d = np.asarray(durations[1:] if skip_first else durations)
    p95 = float(np.percentile(d, 95))
    assert len(d) >= 50, len(d)
    assert p95 <= timeout + SLACK_S, f"p95 poll {p95 * 1e3:.1f} ms > timeout {timeout * 1e3:.0f} ms + {SLACK_S * 1e3:.0f} ms"
    assert d.max() <= timeout + MAX_SLACK_S, f"slowest poll {d.max() * 1e3:.1f} ms (timeout {timeout * 1e3:.0f} ms)"


WRITER = textwrap.dedent("""
    import os, sys, time
    from intransit.adapters.steering import SteeringWriter

    stream, xml, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    w = SteeringWriter(stream, xml=xml)
    while not os.path.exists(ready):  # one record per 'analyzed step', like the service
        w.write(0, "continue")
        time.sleep(0.02)
    w.write(0, "set", {"name": "dt", "value": 0.05}, "heat")       # applied
    w.write(0, "set", {"name": "dt", "value": 5.0}, "too_big")     # out of range
    w.write(0, "set", {"name": "viscosity", "value": 1.0}, "r")    # undeclared
    w.write(0, "checkpoint", {}, "snap")                           # not accepted by this simulation
    w.write_raw({"seq": 2, "answers_step": 0, "command": "stop", "args": "{}"})  # replayed seq
    w.write(0, "stop", {}, "halt")                                 # applied: the client ends
    while True:
        w.write(0, "continue")
        time.sleep(0.02)
    """)


@pytest.mark.sst
@pytest.mark.slow
def test_python_client_over_a_real_sst_reverse_stream(tmp_path):
    folder = str(tmp_path)
    stream = os.path.join(folder, "steer")
    xml = _sst_xml(folder)
    ready = os.path.join(folder, "attached")
    writer = procs.start([sys.executable, "-c", WRITER, stream, xml, ready], folder, "writer.log")
    client = None
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(stream + ".sst"):
            assert writer.poll() is None and time.monotonic() < deadline, procs.read_log(folder, "writer.log")
            time.sleep(0.02)
        timeout = 0.05
        client = _start_client(folder, stream, xml, 60, timeout, ready)
        report = _report(folder, client)
    finally:
        if client is not None:
            procs.stop(client)
        procs.stop(writer)
        procs.remove_contact_files(folder)
    assert report["sst"] is True and report["stats"]["connected"] is True
    assert report["stopped"] == [0], report["history"]
    assert report["params"] == {"dt": 0.05}
    outcomes = {command: o for _, command, o in report["history"] if command != "continue"}  # the last of each
    history = [(c, o) for _, c, o in report["history"] if c != "continue"]
    assert ("set", "applied") in history
    rejected = [o for c, o in history if o.startswith("rejected")]
    assert len(rejected) == 3, history
    assert any("outside [0.001, 0.1]" in o for o in rejected)
    assert any("undeclared parameter 'viscosity'" in o for o in rejected)
    assert any("command 'checkpoint' is not accepted" in o for o in rejected)
    assert report["stats"]["replayed"] == 1 and outcomes["stop"] == "applied"
    # The poll that opened the stream waited for the writer's next step (SST adds a late reader
    # only at a step boundary; adapters/steering.py says so, and why BP5 is the default): here
    # a record every 20 ms, plus the connection's set-up.  Every other poll keeps the bound.
    # (The contact file was there before the client started: its first poll opened the stream.)
    assert report["durations"][0] < 1.0, report["durations"][:3]
    _assert_bounded(report["durations"], timeout, skip_first=True)


@pytest.mark.slow
def test_every_poll_is_bounded_with_a_backlog_of_records(tmp_path):
    """5,000 records wait in a BP5 reverse stream: each poll reads what fits in its timeout, no more."""
    from intransit.adapters.steering import SteeringWriter

    folder = str(tmp_path)
    stream = os.path.join(folder, "steer.bp")
    writer = SteeringWriter(stream)
    n = 5000
    for _ in range(n):
        writer.write(0, "continue")
    writer.write(0, "stop", {}, "halt")
    writer.close()
    timeout = 0.01
    report = _report(folder, _start_client(folder, stream, "", 120, timeout))
    assert report["stats"]["received"] == n + 1 and report["stopped"] == [0]
    assert report["stats"]["applied"] == n + 1 and report["stats"]["replayed"] == 0  # each once, in order
    per_poll = [k for k in report["received_per_poll"] if k]
    assert len(per_poll) >= 5 and max(per_poll) < n, per_poll[:20]  # the deadline, not the backlog, ended polls
    _assert_bounded(report["durations"], timeout)


def test_every_poll_is_bounded_without_analytics(tmp_path):
    folder = str(tmp_path)
    timeout = 0.01
    report = _report(folder, _start_client(folder, os.path.join(folder, "nobody.bp"), "", 3, timeout))
    assert report["stats"]["connected"] is False and report["steps"] > 100
    _assert_bounded(report["durations"], timeout)


@pytest.mark.sst
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="SteeringClient opens an SST reverse stream synchronously: an SST writer "
                   "answers a reader's Open only inside its own calls, so analytics that have opened the stream "
                   "but not yet written (a long first step, a hang) hold the simulation's poll for as long "
                   "(the C++ header opens aside and abandons a pending Open; the Python client does not)")
def test_python_client_never_waits_on_sst_analytics_that_do_not_answer(tmp_path):
    folder = str(tmp_path)
    stream = os.path.join(folder, "steer")
    xml = _sst_xml(folder)
    code = f"from intransit.adapters.steering import SteeringWriter; import time; " \
           f"w = SteeringWriter({stream!r}, xml={xml!r}); time.sleep(120)"
    silent = procs.start([sys.executable, "-c", code], folder, "writer.log")
    client = None
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(stream + ".sst"):
            assert silent.poll() is None and time.monotonic() < deadline, procs.read_log(folder, "writer.log")
            time.sleep(0.02)
        timeout = 0.05
        client = _start_client(folder, stream, xml, 3, timeout)
        report = _report(folder, client, timeout=20)  # a blocked Open never returns: fails here
    finally:
        if client is not None:
            procs.stop(client)
        procs.stop(silent)
        procs.remove_contact_files(folder)
    assert report["steps"] > 100
    _assert_bounded(report["durations"], timeout)
