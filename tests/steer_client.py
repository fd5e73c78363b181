"""A stand-in simulation loop for steering tests: polls the reverse stream, prints JSON.

Run as a separate process: ``python tests/steer_client.py STREAM SECONDS``.  Prints
``connected`` once attached, then, at the end, one JSON line with what happened.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from intransit.adapters.steering import SteeringClient


def main() -> int:
    stream, seconds = sys.argv[1], float(sys.argv[2])
    ready_file = sys.argv[3] if len(sys.argv) > 3 else None  # touched once past step 20
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    params = {"dt": 0.01, "nsub": 2}
    stopped = []
    client = SteeringClient(stream, poll_timeout_s=0.01)
    client.on("stop", lambda cmd: stopped.append(cmd.answers_step))
    client.declare_parameter("dt", float, lambda n, v: params.__setitem__(n, v), low=0.001, high=0.1)
    client.declare_parameter("nsub", int, lambda n, v: params.__setitem__(n, v), low=1, high=10)
    t0 = time.monotonic()
    step = 0
    announced = False
    max_poll = 0.0
    while time.monotonic() - t0 < seconds and not stopped:
        t = time.monotonic()
        client.poll(step)
        max_poll = max(max_poll, time.monotonic() - t)
        if client.stats.connected and not announced:
            print("connected", flush=True)
            announced = True
        step += 1
        if ready_file and step == 20:
            open(ready_file, "w").close()
        time.sleep(0.01)
    client.close()
    print(json.dumps({
        "params": params,
        "stopped": stopped,
        "steps": step,
        "max_poll_s": max_poll,
        "stats": vars(client.stats),
        "history": [[c.seq, c.command, outcome] for c, outcome in client.history],
    }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
