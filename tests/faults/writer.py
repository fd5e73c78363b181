#!/usr/bin/env python3
"""A bare SST writer with scripted faults, for the fault matrix (no supervisor, no cleanup on death).

Writes ``--steps`` steps of a small ``density`` array and, unless
``--no-report``, the end-of-stream report (intransit.adapters.steering).
``--kill-after N`` SIGKILLs itself after N steps (a crash: the contact file
stays behind, as a real simulation's would).  ``--policy``/``--queue`` as
the SST presets.  Prints ``wrote N steps`` (and per step ``step S``), and its longest step and close in seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--stream", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--policy", default="Discard")
    p.add_argument("--queue", type=int, default=3)
    p.add_argument("--readers", type=int, default=0)
    p.add_argument("--kill-after", type=int, default=-1)
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--io", default="SimulationOutput")
    a = p.parse_args(argv)

    import adios2
    import adios2.bindings as ab

    from intransit.adapters.steering import clear_end_of_stream, report_end_of_stream

    io = adios2.Adios().declare_io(a.io)
    io.set_engine("SST")
    io.set_parameters({"RendezvousReaderCount": str(a.readers), "QueueLimit": str(a.queue),
                       "QueueFullPolicy": a.policy, "DataTransport": "WAN", "OpenTimeoutSecs": "60"})
    clear_end_of_stream(a.stream)
    engine = io.open(a.stream, ab.Mode.Write)
    n = a.size
    var = io.define_variable("density", np.zeros((n, n)), [n, n], [0, 0], [n, n])
    written, longest = 0, 0.0
    for step in range(a.steps):
        field = np.full((n, n), float(step))
        t0 = time.monotonic()
        engine.begin_step()
        engine.put(var, field, ab.Mode.Sync)
        engine.end_step()
        longest = max(longest, time.monotonic() - t0)
        written += 1
        print(f"step {step}", flush=True)
        if written == a.kill_after:
            print(f"killing myself after {written} steps", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if a.sleep:
            time.sleep(a.sleep)
    if not a.no_report:
        report_end_of_stream(a.stream, written)
    t0 = time.monotonic()
    engine.close()
    print(f"longest step {longest:.3f} s, close {time.monotonic() - t0:.3f} s", flush=True)
    print(f"wrote {written} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
