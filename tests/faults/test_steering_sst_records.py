"""Malformed steering records over a real SST reverse stream (issue 13 item 1): the simulation's client
rejects and logs each, never applies it, stays within its poll bound and applies the good record after it.

The writer is a separate process (tests/faults/sst_bad_writer.py) using the
cases of tests/test_steering_bad_records.py (which covers them over BP5).
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from intransit.adapters.steering import SteeringClient
from tests import procs

pytestmark = [pytest.mark.sst, pytest.mark.slow]

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sst_bad_writer.py")
SST_XML = ('<?xml version="1.0"?><adios-config><io name="Steering"><engine type="SST">'
           '<parameter key="DataTransport" value="WAN"/></engine></io></adios-config>')
CASES = ["seq_int32", "seq_array4", "command_double", "set_value_int64", "deep_json", "huge_int_value",
         "nan_in_args", "missing_seq", "huge_string", "undeclared"]


@pytest.mark.parametrize("case", CASES)
def test_sst_bad_record_rejected(tmp_path, case):
    folder = str(tmp_path)
    stream = os.path.join(folder, "steer")
    xml = os.path.join(folder, "steer.xml")
    with open(xml, "w") as fh:
        fh.write(SST_XML)
    writer = procs.start([sys.executable, WRITER, stream, case], folder, "writer.log",
                         {"PYTHONPATH": procs.ROOT})
    applied: list[float] = []
    client = SteeringClient(stream, xml=xml, poll_timeout_s=0.05)
    client.declare_parameter("dt", float, lambda n, v: applied.append(v), low=0.0, high=1.0)
    longest, step = 0.0, 0
    try:
        t0 = time.monotonic()
        while writer.poll() is None or client._engine is not None:
            assert time.monotonic() - t0 < 90, procs.read_log(folder, "writer.log")
            t = time.monotonic()
            client.poll(step)
            if client.stats.connected:
                longest = max(longest, time.monotonic() - t)
            step += 1
            time.sleep(0.01)
            if client.stats.ended:
                break
        assert procs.wait(writer, 30) == 0, procs.read_log(folder, "writer.log")
    finally:
        client.close()
        procs.stop(writer)
        procs.remove_contact_files(folder)
    retyped = "retyped" in procs.read_log(folder, "writer.log")
    assert client.stats.connected
    assert 0.5 not in applied, f"{case}: the malformed record was applied"
    assert applied == ([] if retyped else [0.25]), applied
    assert client.stats.rejected >= 1
    assert longest < 1.0, longest  # never held longer than its bound (plus the first attach)
