"""`make demo`: the reference simulation and a 2-rank analytics job, live over SST.

Starts the analytics (``mpiexec -n 2 intransit run examples/demo_job.toml``)
and the simulation (``examples/blob_sim.py`` with an SST XML) as separate
processes, waits for both, prints the catalog summary and the tracks found
against the ground truth. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)


def _start(cmd: list[str], log_path: str) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--blobs", type=int, default=6)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()

    out = os.path.join(ROOT, "out", "demo")
    os.makedirs(out, exist_ok=True)
    for stale in glob.glob(os.path.join(out, "*.sst")):
        os.remove(stale)  # a contact file from a killed earlier run would mislead the readers
    stream = os.path.join(out, "blobs")
    truth = os.path.join(out, "truth.csv")
    job = os.path.join(HERE, "demo_job.toml")

    # The simulation first: its lossless writer waits at Open for the two analytics ranks, which
    # start once its contact file is there, so however long its turbulence warm-up takes on a
    # loaded machine, the analytics' open timeout is not spent waiting for it.
    sim_cmd = [sys.executable, os.path.join(HERE, "blob_sim.py"), "--xml", os.path.join(HERE, "demo_sim_sst.xml"),
               "--stream", stream, "--size", str(args.size), "--steps", str(args.steps), "--blobs", str(args.blobs),
               "--blocks", str(args.blocks), "--seed", str(args.seed), "--truth", truth]
    print(f"simulation: {args.size}x{args.size}, {args.steps} steps, {args.blobs} blobs, {args.blocks} blocks over SST"
          "   (log: out/demo/sim.log)", flush=True)
    sim = _start(sim_cmd, os.path.join(out, "sim.log"))
    analytics = None
    t0 = time.time()
    try:
        while not os.path.exists(stream + ".sst") and sim.poll() is None and time.time() - t0 < args.timeout:
            time.sleep(0.1)
        print(f"analytics: mpiexec -n 2 intransit run {os.path.relpath(job, ROOT)}   (log: out/demo/analytics.log)",
              flush=True)
        analytics = _start([os.path.join(BIN, "mpiexec"), "-n", "2", os.path.join(BIN, "intransit"), "run", job],
                           os.path.join(out, "analytics.log"))
        # Whichever ends first: analytics that fail leave the simulation waiting for them: stop it.
        while sim.poll() is None and analytics.poll() is None:
            if time.time() - t0 > args.timeout:
                raise subprocess.TimeoutExpired(sim_cmd, args.timeout)
            time.sleep(0.1)
        if analytics.poll() not in (None, 0):
            _stop(sim)
        rc_sim = sim.wait(timeout=max(10.0, args.timeout - (time.time() - t0)))
        rc_an = analytics.wait(timeout=max(10.0, args.timeout - (time.time() - t0)))
    except subprocess.TimeoutExpired:
        print(f"demo: timed out after {args.timeout} s; see out/demo/*.log", file=sys.stderr)
        return 1
    finally:
        _stop(sim)
        if analytics is not None:
            _stop(analytics)
    elapsed = time.time() - t0
    if rc_sim or rc_an:
        for name in ("sim.log", "analytics.log"):
            with open(os.path.join(out, name)) as fh:
                sys.stderr.write(f"--- {name} (tail)\n" + "".join(fh.readlines()[-15:]))
        print(f"demo: simulation exit {rc_sim}, analytics exit {rc_an}", file=sys.stderr)
        return 1

    from intransit.service.catalog import read_catalog
    from intransit.service.groundtruth import compare_tracks, read_truth
    from intransit.service.report import summary_lines

    catalog_path = os.path.join(out, "catalog.bp")
    cat = read_catalog(catalog_path)
    print()
    print("\n".join(summary_lines(cat)))
    cmp = compare_tracks(read_truth(truth), cat.events["tracking"], shape=(args.size, args.size),
                         periodic=(True, False), tolerance=2.0, steps=[int(r["step"]) for r in cat.steps])
    print()
    print("against the ground truth (out/demo/truth.csv), centroid tolerance 2 cells:")
    print(f"  true blobs (tracks): {cmp.tracks_true}   tracks found (>= 3 steps): {cmp.tracks_found}   "
          f"true tracks matched (>= 80 % of their steps by one track): {cmp.tracks_matched}")
    print(f"  per-step detection recall {cmp.detection_recall:.3f}, precision {cmp.detection_precision:.3f}, "
          f"mean centroid error {cmp.centroid_error_mean:.2f} cells")
    print(f"  {len(cat.steps)} steps analyzed in {elapsed:.1f} s wall; catalog: {os.path.relpath(catalog_path, ROOT)} "
          f"(intransit report {os.path.relpath(catalog_path, ROOT)} --csv out/demo/csv)")
    print(json.dumps({
        "tracks_true": cmp.tracks_true,
        "tracks_found": cmp.tracks_found,
        "tracks_matched": cmp.tracks_matched,
        "detection_recall": round(cmp.detection_recall, 4),
        "detection_precision": round(cmp.detection_precision, 4),
        "steps": len(cat.steps),
        "dropped": int(sum(r["dropped"] for r in cat.steps)),
        "catalog": catalog_path,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
