"""``intransit run`` on inputs that once dumped a traceback: one clear line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

INTRANSIT = os.path.join(os.path.dirname(sys.executable), "intransit")

JOB = """
[stream]
name = "nowhere"
variables = ["density"]

[[analyzers]]
type = "noop"

[output]
catalog = "catalog.bp"
"""


def _run(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([INTRANSIT, "run", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("case, says", [
    ("binary", "is not text"),
    ("directory", "is a directory: give the job's TOML file"),
    ("engine", "--engine 'WARP9' is not an engine intransit reads; give one of SST, BP5"),
])
def test_run_refuses_with_one_line_and_exit_2(tmp_path, case, says):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    args = {"binary": [str(tmp_path / "job.bin")], "directory": [str(tmp_path)],
            "engine": [str(job), "--engine", "WARP9"]}[case]
    (tmp_path / "job.bin").write_bytes(bytes(range(128, 256)))
    out = _run(*args, cwd=str(tmp_path))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "catalog.bp").exists()  # refused before anything was opened or written
