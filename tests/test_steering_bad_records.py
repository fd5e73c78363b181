"""Malformed steering records, written with ADIOS2 directly: rejected and logged, never applied.

Each case is a reverse stream a buggy or hostile analytics could write (wrong
types, wrong shapes, huge or non-finite values, deep JSON).  The simulation's
``SteeringClient.poll`` must return normally within its bound and apply none.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from intransit.adapters.steering import SteeringClient

GOOD = {"seq": 1, "answers_step": 0, "command": "set", "rule": "r",
        "args": json.dumps({"name": "dt", "value": 0.5}), "set_name": "dt", "set_value": 0.5}


def _put(io, engine, name, value):
    import adios2.bindings as b
    if isinstance(value, str):
        var = io.inquire_variable(name) or io.define_variable(name)
        engine.put(var, value)
        return
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    var = io.inquire_variable(name)
    if var is None:
        var = io.define_variable(name, arr, list(arr.shape) if arr.size > 1 else [], [0] * arr.ndim if arr.size > 1 else [],
                                 list(arr.shape) if arr.size > 1 else [])
    engine.put(var, arr, b.Mode.Sync)


CASES = {
    "huge_int_value": dict(GOOD, args='{"name": "dt", "value": ' + "9" * 400 + "}"),
    "nan_in_args": dict(GOOD, args='{"name": "dt", "value": NaN}'),
    "inf_in_args": dict(GOOD, args='{"name": "dt", "value": Infinity}'),
    "deep_json": dict(GOOD, args="[" * 100000 + "]" * 100000),
    "args_not_object": dict(GOOD, args="[1, 2]"),
    "args_not_json": dict(GOOD, args="{name: dt"),
    "seq_int32": dict(GOOD, seq=np.int32(1)),
    "seq_array4": dict(GOOD, seq=np.array([1, 2, 3, 4], dtype=np.int64)),
    "seq_float": dict(GOOD, seq=np.float64(1.0)),
    "answers_step_uint8": dict(GOOD, answers_step=np.uint8(0)),
    "command_double": dict(GOOD, command=np.float64(3.0)),
    "set_value_int64": dict(GOOD, set_value=np.int64(1)),
    "missing_seq": {k: v for k, v in GOOD.items() if k != "seq"},
    "missing_command": {k: v for k, v in GOOD.items() if k != "command"},
    "empty_step": {},
    "huge_string": dict(GOOD, rule="x" * 200000),
    "unknown_command": dict(GOOD, command="explode"),
    "value_string": dict(GOOD, args=json.dumps({"name": "dt", "value": "0.5"})),
    "value_out_of_range": dict(GOOD, args=json.dumps({"name": "dt", "value": 1e300})),
    "undeclared": dict(GOOD, args=json.dumps({"name": "rm -rf", "value": 0.5})),
}


def _write_stream(stream: str, engine_name: str, records: list[dict]) -> None:
    import adios2
    import adios2.bindings as b
    ad = adios2.Adios()
    io = ad.declare_io("Steering")
    io.set_engine(engine_name)
    if engine_name == "SST":
        io.set_parameters({"RendezvousReaderCount": "0", "QueueLimit": "64", "DataTransport": "WAN"})
    eng = io.open(stream, b.Mode.Write)
    for rec in records:
        eng.begin_step()
        for name, value in rec.items():
            if isinstance(value, (int, float)) and not isinstance(value, np.generic):
                value = np.int64(value) if isinstance(value, int) else np.float64(value)
            _put(io, eng, name, value)
        eng.end_step()
    return eng


def _client(stream: str, xml: str | None = None) -> tuple[SteeringClient, list]:
    applied: list = []
    c = SteeringClient(stream, xml=xml, poll_timeout_s=0.05)
    c.declare_parameter("dt", float, lambda n, v: applied.append(v), low=0.0, high=1.0)
    return c, applied


@pytest.mark.parametrize("case", sorted(CASES))
def test_bp5_bad_record_rejected(tmp_path, case):
    stream = str(tmp_path / "steer.bp")
    # the bad record first, then a good one with a later seq: the client must stay usable
    # (a variable's type and shape are fixed for a whole ADIOS2 stream, so after a mistyped one
    # the good record cannot follow in the same stream)
    retyped = any(isinstance(v, np.generic) or isinstance(v, np.ndarray) for v in CASES[case].values())
    good = dict(GOOD, seq=2, args=json.dumps({"name": "dt", "value": 0.25}), set_value=0.25)
    eng = _write_stream(stream, "BP5", [CASES[case]] + ([] if retyped else [good]))
    eng.close()
    c, applied = _client(stream)
    t0 = time.monotonic()
    for step in range(5):
        c.poll(step)
    assert time.monotonic() - t0 < 5.0
    assert 0.5 not in applied, f"{case}: malformed record applied"
    assert applied == ([] if retyped else [0.25]), f"{case}: applied {applied}"
    assert c.stats.rejected >= 1
    c.close()
