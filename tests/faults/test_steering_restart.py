"""The simulation's Python steering client across a restart of the analytics (issue 13 item 2), in one
process and fast: job B re-creates the BP5 reverse stream after job A ended (closed it) or while A's file is
still open (a killed job never closes it); the client reattaches and applies B's records, whose seq continues
after A's.  (tests/faults/test_restart.py does the same with real processes and a checkpoint.)"""

from __future__ import annotations

import time

import pytest

from intransit.adapters.steering import SteeringClient, SteeringWriter


def _client(stream: str) -> tuple[SteeringClient, list[float]]:
    values: list[float] = []
    client = SteeringClient(stream, poll_timeout_s=0.02)
    client.declare_parameter("dt", float, lambda _n, v: values.append(v), low=0.0, high=1.0)
    return client, values


def _poll_until(client: SteeringClient, values: list[float], n: int, timeout: float = 20.0) -> None:
    t0, step = time.monotonic(), 0
    while len(values) < n and time.monotonic() - t0 < timeout:
        client.poll(step)
        step += 1
        time.sleep(0.01)


@pytest.mark.parametrize("first_job", ["closed", "left_open"])
def test_client_follows_a_recreated_reverse_stream(tmp_path, first_job):
    stream = str(tmp_path / "steer.bp")
    a = SteeringWriter(stream)
    for v in (0.1, 0.2):
        a.write(0, "set", {"name": "dt", "value": v})
    client, values = _client(stream)
    _poll_until(client, values, 2)
    assert values == [0.1, 0.2]
    if first_job == "closed":
        a.close()
        _poll_until(client, values, 3, timeout=1.0)  # sees the end of A's stream
        assert client.stats.ended
    b = SteeringWriter(stream)  # removes A's stream and creates a new one at the same path
    assert b.previous_seq == 2 and b.seq == 2
    for v in (0.3, 0.4):
        b.write(0, "set", {"name": "dt", "value": v})
    _poll_until(client, values, 4)
    assert values == [0.1, 0.2, 0.3, 0.4]
    assert client.stats.replayed == 0 and client.stats.last_seq == 4
    client.close()
    b.close()
    if first_job == "left_open":
        a.close()


def test_checkpointed_seq_wins_when_the_old_stream_is_gone(tmp_path):
    stream = str(tmp_path / "steer.bp")
    w = SteeringWriter(stream)
    assert w.previous_seq == 0
    w.resume_after(41)
    assert w.write(0, "continue") == 42
    w.resume_after(7)  # never back
    assert w.write(0, "continue") == 43
    w.close()
