"""deploy/local.sh, the README's local launch (simulation and analytics as two MPI jobs over SST), as a smoke test.

A short run (6 steps at 64², 2 blocks, 2 analytics ranks) into the test's folder:
both jobs exit 0, the catalog and summary it names are there and agree, and the
report it prints at the end reads that catalog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from intransit.service.catalog import read_catalog
from tests import procs

SCRIPT = os.path.join(procs.ROOT, "deploy", "local.sh")
VENV = os.path.dirname(os.path.dirname(sys.executable))


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, "--venv", VENV, *args], capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def test_a_bad_option_is_a_usage_error():
    res = _run("--frobnicate", timeout=60)
    assert res.returncode == 2
    assert "unknown option --frobnicate" in res.stderr and "options:" in res.stderr


@pytest.mark.sst
@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_launch_runs_both_jobs_to_a_catalog(tmp_path):
    out = tmp_path / "local"
    res = _run("-n", "2", "-m", "2", "--steps", "6", "--size", "64", "--out", str(out), timeout=800)
    logs = "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-2000:] for p in sorted(out.glob("*.log")))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:] + logs
    assert "simulation exit 0, analytics exit 0" in res.stdout
    assert "2 independent readers" in res.stdout or "one reader cohort" in res.stdout, res.stdout
    cat = read_catalog(str(out / "catalog.bp"))
    assert [int(r["step"]) for r in cat.steps] == list(range(6))
    assert sum(int(r["dropped"]) for r in cat.steps) == 0
    assert cat.metadata.get("ranks") == "2"
    with open(out / "summary.json") as fh:
        summary = json.load(fh)
    assert summary["steps_analyzed"] == 6 and summary["steps_dropped"] == 0
    assert "tracking: " in res.stdout and " tracks" in res.stdout  # the report's last lines: the tracks table
    assert not list(out.glob("*.sst"))
