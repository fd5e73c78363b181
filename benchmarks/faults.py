#!/usr/bin/env python3
"""Reliability benchmark (issue 13): the fault matrix, the bad-input table, and the analytics' memory.

Runs

* ``tests/bad_input`` (``tests/bad_input/cases.py``: one malformed input per
  case, each run as a real ``intransit`` command and judged clear /
  traceback / hang / accepted / unclear by ``tests/bad_input/harness.py``);
* ``tests/faults`` under pytest with ``INTRANSIT_FAULTS_RECORD`` set, so every
  fault test records what it measured (writer steps neither analyzed nor
  counted, tracebacks in the analytics' log); a fault is *survived* when its
  test passes; a failure whose message says a process did not finish is a
  *hang*;
* a 10,000-step run of one analytics rank on a fast SST writer (lossless,
  64^2 float64, the no-op analyzer): ``rss_growth_mb`` is the analytics'
  resident set size at the end minus at loop index 1,000 (from the summary's
  samples every 500 steps; the first steps allocate the buffers), and
  ``rss_growth_to_exit_mb`` to the sample taken after the catalog's close.

and prints a table to stderr and JSON on the last line of stdout: ``cases``,
``clear_errors``, ``tracebacks``, ``hangs``, ``silent_losses`` (bad inputs
accepted + fault runs that lost writer steps uncounted), ``faults_survived``
(of ``fault_cases``), ``steps_lost_uncounted``, ``rss_growth_mb``, and the
details.  ``--quick`` (under 10 minutes on 2 cores): every bad-input case; of
the faults, the writer's (killed, stale contact file, IO missing from the
XML, slow analyzer under keep-pace and lossless), the restart, every
analytics rank killed, and the C++ header's record checks.  The full run
adds the link cut (root), one rank of several killed, two jobs on one
stream, the MPI cohort's open (.venv-mpi) and malformed records over SST.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PY = sys.executable

#: Fault tests of the quick run (node ids under tests/faults).
QUICK_FAULTS = [
    "tests/faults/test_writer_faults.py",
    "tests/faults/test_restart.py",
    "tests/faults/test_analytics_faults.py::test_simulation_survives_analytics_ranks_killed[all]",
    "tests/faults/test_cpp_steering.py",
]


def bad_input(work: str, workers: int) -> dict[str, Any]:
    """Every case of the bad-input table, judged; the counts and the names of those not clear."""
    from tests.bad_input.cases import CASES
    from tests.bad_input.harness import judge, run_case

    def one(case: Any) -> tuple[str, str]:
        outcome = run_case(case, os.path.join(work, "bad_input", case.name))
        return case.name, judge(case, outcome)

    verdicts: dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for name, verdict in pool.map(one, CASES):
            verdicts[name] = verdict
    counts = {v: sum(1 for x in verdicts.values() if x == v) for v in ("clear", "traceback", "hang", "accepted",
                                                                        "unclear")}
    return {"cases": len(verdicts), **counts,
            "not_clear": {n: v for n, v in sorted(verdicts.items()) if v != "clear"}}


def faults(work: str, quick: bool) -> dict[str, Any]:
    """Run tests/faults under pytest; survived = passed, hangs = failures naming a process that did not finish."""
    record = os.path.join(work, "faults_record.jsonl")
    junit = os.path.join(work, "faults_junit.xml")
    targets = QUICK_FAULTS if quick else ["tests/faults"]
    env = dict(os.environ, INTRANSIT_FAULTS_RECORD=record)
    cmd = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
           f"--basetemp={os.path.join(work, 'faults_tmp')}", *targets]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    tests: dict[str, str] = {}
    hangs: list[str] = []
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name", "?")
            failed = case.find("failure") if case.find("failure") is not None else case.find("error")
            if failed is not None:
                tests[name] = "failed"
                if "did not finish within" in (failed.get("message", "") + (failed.text or "")):
                    hangs.append(name)
            elif case.find("skipped") is not None:
                tests[name] = "skipped"
            else:
                tests[name] = "passed"
    rows = []
    if os.path.exists(record):
        with open(record) as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    return {
        "fault_cases": len(tests),
        "survived": sum(1 for v in tests.values() if v == "passed"),
        "skipped": [n for n, v in tests.items() if v == "skipped"],
        "failed": [n for n, v in tests.items() if v == "failed"],
        "hangs": hangs,
        "tracebacks": sum(1 for r in rows if r.get("traceback")),
        "steps_lost_uncounted": sum(int(r.get("steps_lost_uncounted", 0)) for r in rows),
        "runs_with_lost_steps": [r["test"] for r in rows if r.get("steps_lost_uncounted")],
        "tail_unknown_said": [r["test"] for r in rows if r.get("tail_unknown")],
        "records": rows,
        "pytest_tail": proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else [],
    }


def rss_run(work: str, steps: int) -> dict[str, Any]:
    """One analytics rank over ``steps`` fast lossless SST steps; RSS growth from loop index 1,000 to the end."""
    from tests import procs
    from tests.faults import helpers

    folder = os.path.join(work, "rss")
    os.makedirs(folder, exist_ok=True)
    stream = os.path.join(folder, "fast")
    job = helpers.job(folder, stream, analyzers='[[analyzers]]\ntype = "noop"\n', step_timeout_s=60)
    out = os.path.join(folder, "s.json")
    an = helpers.start_analytics(folder, job, 1, "--summary-json", out)
    writer = helpers.start_writer(folder, stream, "--steps", str(steps), "--size", "64", "--policy", "Block",
                                  "--queue", "4", "--readers", "1")
    try:
        rc_w = procs.wait(writer, 900)
        rc_a = procs.wait(an, 120)
    finally:
        procs.stop(writer)
        procs.stop(an)
        procs.remove_contact_files(folder)
    if rc_a != 0 or rc_w != 0 or not os.path.exists(out):
        return {"error": f"writer exit {rc_w}, analytics exit {rc_a}", "rss_growth_mb": None}
    s = helpers.summary(out)
    samples = [(int(i), float(mb)) for i, mb in s["rss_mb"]]
    base = next((mb for i, mb in samples if i >= 1000), samples[0][1])
    # The last sample is taken after the catalog's close (its final batch): the loop's growth is up to the
    # last in-loop sample; both are reported.
    loop = [mb for i, mb in samples[:-1]] or [samples[-1][1]]
    return {"steps_analyzed": s["steps_analyzed"], "steps_dropped": s["steps_dropped"],
            "rss_growth_mb": round(loop[-1] - base, 2), "rss_growth_to_exit_mb": round(samples[-1][1] - base, 2),
            "rss_samples_mb": samples, "steps_per_second": round(s["steps_per_second"], 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the quick selection (under 10 minutes)")
    p.add_argument("--rss-steps", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="bad-input cases run at once")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="intransit_faults_") as work:
        bad = bad_input(work, a.workers)
        t_bad = time.monotonic() - t0
        flt = faults(work, a.quick)
        t_flt = time.monotonic() - t0 - t_bad
        rss = rss_run(work, a.rss_steps)
    result = {
        "cases": bad["cases"] + flt["fault_cases"],
        "clear_errors": bad["clear"],
        "tracebacks": bad["traceback"] + flt["tracebacks"],
        "hangs": bad["hang"] + len(flt["hangs"]),
        "silent_losses": bad["accepted"] + len(flt["runs_with_lost_steps"]),
        "faults_survived": flt["survived"],
        "fault_cases": flt["fault_cases"],
        "steps_lost_uncounted": flt["steps_lost_uncounted"],
        "rss_growth_mb": rss.get("rss_growth_mb"),
        "rss_growth_to_exit_mb": rss.get("rss_growth_to_exit_mb"),
        "quick": a.quick,
        "seconds": round(time.monotonic() - t0, 1),
        "bad_input": {k: v for k, v in bad.items()},
        "faults": {k: v for k, v in flt.items() if k != "records"},
        "fault_records": flt["records"],
        "rss": rss,
        "phase_seconds": {"bad_input": round(t_bad, 1), "faults": round(t_flt, 1)},
    }
    width = max(len(k) for k in result)
    for key in ("cases", "clear_errors", "tracebacks", "hangs", "silent_losses", "faults_survived", "fault_cases",
                "steps_lost_uncounted", "rss_growth_mb", "seconds"):
        sys.stderr.write(f"{key:<{width}} {result[key]}\n")
    for name, verdict in bad["not_clear"].items():
        sys.stderr.write(f"  bad input {name}: {verdict}\n")
    for name in flt["failed"] + flt["skipped"]:
        sys.stderr.write(f"  fault test {name}: {'failed' if name in flt['failed'] else 'skipped'}\n")
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
