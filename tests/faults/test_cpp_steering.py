"""The C++ steering header refuses the malformed records the Python client refuses (issue 13 item 1).

A small program (tests/faults/cpp/bad_records.cpp) polls a reverse stream
through ``intransit_steering.hpp`` as a simulation would; each case of
tests/test_steering_bad_records.py is written as a BP5 stream with ADIOS2
directly, followed by a good record where the variable types allow one.  The
header must reject the bad record (never apply its dt = 0.5), apply the good
one (dt = 0.25), and not crash.  Also: ``intransit::report_end_of_stream``
writes the report the analytics read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from intransit.adapters.steering import read_end_of_stream
from tests.test_steering_bad_records import CASES, GOOD, _write_stream

pytestmark = pytest.mark.slow

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpp", "bad_records.cpp")
ADAPTERS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "adapters")


@pytest.fixture(scope="module")
def bad_records(tmp_path_factory) -> str:
    """Compile the program against the ADIOS2 wheel (the flags examples/cpp/CMakeLists.txt derives)."""
    import adios2

    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        pytest.fail("no C++ compiler (c++, g++, clang++ or $CXX): the header test needs one")
    pkg = os.path.dirname(adios2.__file__)
    libs = os.path.join(os.path.dirname(pkg), "adios2.libs")
    cxx_lib = sorted(f for f in os.listdir(pkg) if f.startswith("libadios2_cxx") and ".so" in f)
    assert cxx_lib, f"no libadios2_cxx in {pkg}"
    out = str(tmp_path_factory.mktemp("cpp") / "bad_records")
    cmd = [cxx, "-O1", "-Wall", "-Wextra", "-std=c++17", f"-I{ADAPTERS}", "-isystem", os.path.join(pkg, "include"),
           SOURCE, "-o", out, f"-Wl,-rpath-link,{libs}", f"-Wl,-rpath,{pkg}:{libs}",
           os.path.join(pkg, cxx_lib[-1]), f"-Wl,-rpath-link,{pkg}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "warning" not in res.stderr, res.stderr[-4000:]
    return out


def _run(binary: str, stream: str) -> dict[str, object]:
    res = subprocess.run([binary, stream], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, HOME=os.environ.get("HOME", "/tmp")))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr[-3000:])
    line = res.stdout.strip().splitlines()[-1]
    fields = dict(kv.split("=", 1) for kv in line.split())
    values = [float(v) for v in fields.pop("values").split(",") if v]
    return {**{k: int(v) for k, v in fields.items()}, "values": values, "log": res.stderr}


def test_well_formed_record_is_applied(bad_records, tmp_path):
    """The control: the header applies a good record (so a rejection below is the check, not a broken client)."""
    stream = str(tmp_path / "good.bp")
    _write_stream(stream, "BP5", [GOOD]).close()
    out = _run(bad_records, stream)
    assert out["values"] == [0.5] and out["rejected"] == 0, out


@pytest.mark.parametrize("case", sorted(CASES))
def test_header_rejects_bad_record(bad_records, tmp_path, case):
    stream = str(tmp_path / "steer.bp")
    retyped = any(isinstance(v, (np.generic, np.ndarray)) for v in CASES[case].values())
    good = dict(GOOD, seq=2, args=json.dumps({"name": "dt", "value": 0.25}), set_value=0.25)
    _write_stream(stream, "BP5", [CASES[case]] + ([] if retyped else [good])).close()
    out = _run(bad_records, stream)
    assert 0.5 not in out["values"], f"{case}: the malformed record was applied\n{out['log']}"
    assert out["values"] == ([] if retyped else [0.25]), (case, out)
    assert out["rejected"] >= 1, (case, out)
    assert "rejected" in out["log"]


def test_report_end_of_stream_from_cpp(bad_records, tmp_path):
    stream = str(tmp_path / "sim")
    res = subprocess.run([bad_records, "unused", "report", stream, "123"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert read_end_of_stream(stream) == 123


#: Analytics job A: writes dt = 0.1, 0.2, 0.3 (seq 1-3) on a BP5 reverse stream, then dies without closing it.
_KILLED_WRITER = """
import os, signal, sys, time
from intransit.adapters.steering import SteeringWriter
w = SteeringWriter(sys.argv[1])
for v in (0.1, 0.2, 0.3):
    w.write(0, "set", {"name": "dt", "value": v}); time.sleep(0.3)
print("written", flush=True)
time.sleep(1.5)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("first_job", ["closed", "killed"])
def test_header_follows_a_restarted_reverse_stream(bad_records, tmp_path, first_job):
    """Item 2 for C++ simulations: job B re-creates the reverse stream after job A ended (closed) or died
    (killed, never closed); the header attaches to B's stream, whose seq continues after A's, and applies
    every record of both: dt 0.1 .. 0.6, none replayed."""
    import sys
    import time

    from intransit.adapters.steering import SteeringWriter

    stream = str(tmp_path / "steer.bp")
    follower = subprocess.Popen([bad_records, stream, "follow", "120", "6"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        if first_job == "closed":
            a = SteeringWriter(stream)
            for v in (0.1, 0.2, 0.3):
                a.write(0, "set", {"name": "dt", "value": v})
                time.sleep(0.3)
            time.sleep(1.0)
            a.close()
        else:
            res = subprocess.run([sys.executable, "-c", _KILLED_WRITER, stream], capture_output=True, text=True,
                                 timeout=60)
            assert "written" in res.stdout, res.stderr[-2000:]
        time.sleep(1.0)
        b = SteeringWriter(stream)
        assert b.previous_seq == 3
        for v in (0.4, 0.5, 0.6):
            b.write(0, "set", {"name": "dt", "value": v})
            time.sleep(0.3)
        out, err = follower.communicate(timeout=150)
        b.close()
    finally:
        if follower.poll() is None:
            follower.kill()
    line = out.strip().splitlines()[-1]
    fields = dict(kv.split("=", 1) for kv in line.split())
    values = [float(v) for v in fields["values"].split(",") if v]
    assert values == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], (line, err[-3000:])
    assert fields["replayed"] == "0" and fields["rejected"] == "0", line
