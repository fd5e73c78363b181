"""Steering: rules from config, and the simulation-side client over the default (BP5) reverse stream
(not SST: the client over a real SST reverse stream is tests/test_promises_steering_sst.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from intransit.analyzers.base import StepResult
from intransit.service import config
from intransit.service.steering import Rule, RuleEngine

HERE = os.path.dirname(os.path.abspath(__file__))


def results(n):
    return {"blobs": StepResult(events=[{}] * n, scores={"n_objects": float(n)})}


def test_rule_fires_once_after_for_steps():
    engine = RuleEngine([Rule("many", "blobs", "n_objects", ">=", 3, "stop", for_steps=2)])
    seq = [engine.evaluate(results(n)).command for n in (1, 3, 2, 3, 4, 5, 6)]
    assert seq == ["continue", "continue", "continue", "continue", "stop", "continue", "continue"]


def test_first_rule_in_order_wins_and_failed_analyzer_never_fires():
    engine = RuleEngine([
        Rule("ck", "blobs", "n_events", ">", 1, "checkpoint", once=False),
        Rule("halt", "blobs", "n_objects", ">", 1, "stop"),
    ])
    d = engine.evaluate(results(2))
    assert (d.command, d.rule) == ("checkpoint", "ck")
    assert engine.evaluate({"blobs": None}).command == "continue"
    # 'halt' held on the first step but lost to 'ck'; once=False keeps 'ck' firing
    assert engine.evaluate(results(5)).command == "checkpoint"


def test_state_round_trip():
    a = RuleEngine([Rule("r", "blobs", "n_objects", ">", 0, "stop", for_steps=3)])
    a.evaluate(results(1)); a.evaluate(results(1))
    b = RuleEngine([Rule("r", "blobs", "n_objects", ">", 0, "stop", for_steps=3)])
    b.load_state_dict(a.state_dict())
    assert b.evaluate(results(1)).command == "stop"


BASE = {
    "stream": {"name": "s", "variables": ["density"]},
    "analyzers": [{"type": "blob_detection", "name": "blobs"}],
    "output": {"catalog": "c.bp"},
}


def with_rule(**rule):
    raw = json.loads(json.dumps(BASE))
    full = {"analyzer": "blobs", "score": "n_objects", "op": ">", "threshold": 3, "command": "stop"}
    full.update(rule)
    raw["steering"] = {"stream": "steer", "rules": [{k: v for k, v in full.items() if v is not None}]}
    return raw


@pytest.mark.parametrize("rule,message", [
    ({"when": "x > 3"}, "unknown key 'when'; valid keys: name, analyzer, score, op"),
    ({"op": "=~"}, "op '=~' is not valid; valid: > >= < <= == !="),
    ({"command": "explode"}, "command 'explode' is not valid; valid: stop, checkpoint, set, trigger"),
    ({"analyzer": "tracks"}, "analyzer 'tracks' is not in the pipeline; analyzers: blobs"),
    ({"score": "n_blobs"}, "has no score 'n_blobs'; its scores: n_objects, mean, std, threshold, n_events"),
    ({"command": "set", "args": {"name": "dt"}}, "command 'set' needs args = { name = \"<parameter>\", value = <number> }"),
    ({"threshold": "3"}, "threshold must be an integer or a number, got str"),
    ({"op": None}, "missing required key 'op'"),
])
def test_bad_rules_are_named(rule, message):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(with_rule(**rule))
    assert message in str(err.value)


def test_good_rule_loads():
    cfg = config.from_dict(with_rule(command="set", args={"name": "dt", "value": 0.01}, name="slow_down"))
    assert cfg.steering is not None and cfg.steering.rules[0].name == "slow_down"
    assert cfg.steering.rules[0].args == {"name": "dt", "value": 0.01}


def test_client_validates_every_command_over_sst(tmp_path):
    from intransit.adapters.steering import SteeringWriter

    stream = str(tmp_path / "steer.bp")
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "steer_client.py"), stream, "60", str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    writer = SteeringWriter(stream)
    try:
        t0 = time.monotonic()
        while not ready.exists():  # the client is past step 20: records for steps 0..10 are not "future"
            assert time.monotonic() - t0 < 60 and proc.poll() is None, "the client never got going"
            time.sleep(0.05)
        writer.write(0, "continue")                                    # seq 1
        writer.write(1, "set", {"name": "dt", "value": 0.05}, "r")      # seq 2 applied
        writer.write(2, "set", {"name": "dt", "value": 5.0}, "r")       # seq 3 out of bounds
        writer.write(3, "set", {"name": "nsub", "value": 2.5}, "r")     # seq 4 wrong type
        writer.write(4, "set", {"name": "viscosity", "value": 1}, "r")  # seq 5 undeclared
        writer.write(5, "checkpoint", {}, "r")                          # seq 6 not accepted here
        writer.write_raw({"seq": 7, "answers_step": 6, "command": "explode", "args": "{}"})
        writer.write_raw({"seq": 8, "command": "stop", "args": "{}"})   # malformed: no answers_step
        writer.write_raw({"seq": 9, "answers_step": 7, "command": "set", "args": "{not json"})
        writer.write_raw({"seq": 2, "answers_step": 8, "command": "set",  # replay of seq 2
                          "args": json.dumps({"name": "dt", "value": 0.07})})
        writer.seq = 9
        writer.write(9, "set", {"name": "nsub", "value": 4}, "r")      # seq 10 applied
        writer.write(10, "stop", {}, "halt")                           # seq 11 applied
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        writer.close()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["params"] == {"dt": 0.05, "nsub": 4}
    assert report["stopped"] == [10]
    outcomes: dict[int, str] = {}
    for seq, _, outcome in report["history"]:
        outcomes.setdefault(seq, outcome)
    assert [o for _, _, o in report["history"]].count("ignored: replayed sequence number") == 1
    assert outcomes[1] == "applied" and outcomes[2] == "applied"
    assert "outside [0.001, 0.1]" in outcomes[3]
    assert "is not a int" in outcomes[4]
    assert "undeclared parameter 'viscosity'" in outcomes[5]
    assert "command 'checkpoint' is not accepted" in outcomes[6]
    assert "command 'explode' is not accepted" in outcomes[7]
    assert report["stats"]["replayed"] == 1
    assert report["stats"]["rejected"] == 7  # seq 3,4,5,6,7 + malformed 8 and 9
    assert "missing ['answers_step']" in err and "not JSON" in err
    assert report["stats"]["last_seq"] == 11
    assert report["max_poll_s"] < 0.5


def test_client_rejects_commands_for_steps_it_has_not_reached(tmp_path):
    """A reverse stream left over from another run must not steer this one."""
    from intransit.adapters.steering import SteeringWriter

    stream = str(tmp_path / "old.bp")
    writer = SteeringWriter(stream)
    writer.write(5000, "stop", {}, "old_run")
    writer.close()
    out = subprocess.run([sys.executable, os.path.join(HERE, "steer_client.py"), stream, "1"],
                         capture_output=True, text=True, timeout=60).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stopped"] == []
    assert report["stats"]["rejected"] == 1
    assert "which this simulation has not reached" in report["history"][0][2]


def test_client_goes_on_without_analytics(tmp_path):
    stream = str(tmp_path / "nobody.bp")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, os.path.join(HERE, "steer_client.py"), stream, "3"],
                         capture_output=True, text=True, timeout=60).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert time.monotonic() - t0 < 20
    assert report["stats"]["connected"] is False
    assert report["steps"] > 50  # it kept stepping (10 ms per step for 3 s)
    assert report["max_poll_s"] < 0.1
