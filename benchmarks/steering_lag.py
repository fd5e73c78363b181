"""Steering lag: from the simulation's EndStep of step k to it receiving the command for step k.

The reference simulation (256², SST lossless preset, paced by --sleep so the
analytics keep up) and a 1-rank analytics job (blob detection + tracking) with
a steering stream; every analyzed step is answered (``continue`` unless a
rule fires). The simulation polls once per step and logs each record's
arrival. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import procs  # noqa: E402  (process helpers shared with the integration tests)

from intransit.service.catalog import read_catalog  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--sleep", type=float, default=0.03, help="simulation pacing per step (s)")
    p.add_argument("--quick", action="store_true", help="100 steps")
    a = p.parse_args()
    steps = 100 if a.quick else a.steps
    with tempfile.TemporaryDirectory(prefix="steering_lag_") as folder:
        stream, steer = os.path.join(folder, "live"), os.path.join(folder, "steer.bp")
        job = procs.write_job(folder, stream, catalog=os.path.join(folder, "cat.bp"))
        with open(job, "a") as fh:
            fh.write(f'\n[steering]\nstream = "{steer}"\nrules = []\n')
        lag_csv = os.path.join(folder, "lag.csv")
        rc_sim, rc_an = procs.run_pair(
            folder, stream=stream, ranks=1, job=job, timeout=600,
            sim_args=["--size", str(a.size), "--steps", str(steps), "--sleep", str(a.sleep),
                      "--steering", steer, "--steering-log", lag_csv],
        )
        if rc_sim or rc_an:
            sys.stderr.write(procs.read_log(folder, "sim.log")[-2000:] + procs.read_log(folder, "analytics.log")[-2000:])
            return 1
        with open(lag_csv) as fh:
            rows = list(csv.DictReader(fh))
        cat = read_catalog(os.path.join(folder, "cat.bp"))
    lag_steps = np.array([int(r["received_at_step"]) - int(r["answers_step"]) for r in rows])
    lag_ms = np.array([float(r["lag_ms"]) for r in rows])
    secs = np.array([r["seconds"] for r in cat.steps])
    result = {
        "size": a.size,
        "steps": steps,
        "records_received": len(rows),
        "lag_steps_p50": float(np.percentile(lag_steps, 50)),
        "lag_steps_p99": float(np.percentile(lag_steps, 99)),
        "lag_steps_max": int(lag_steps.max()),
        "lag_ms_p50": round(float(np.percentile(lag_ms, 50)), 3),
        "lag_ms_p99": round(float(np.percentile(lag_ms, 99)), 3),
        "analytics_step_ms_mean": round(float(secs.mean() * 1e3), 3),
        "sim_pacing_ms": a.sleep * 1e3,
    }
    print(f"{len(rows)} steering records over {steps} steps at {a.size}²: lag p50 {result['lag_steps_p50']} steps "
          f"({result['lag_ms_p50']} ms), p99 {result['lag_steps_p99']} steps ({result['lag_ms_p99']} ms)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
