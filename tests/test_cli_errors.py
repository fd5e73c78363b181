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


def test_overrides_stream_engine_catalog_and_summary_json(tmp_path):
    """--stream/--engine replay a BP5 file the job does not name; --catalog and
    --summary-json write where told, not where the job says (a README promise)."""
    import json

    import numpy as np
    import adios2
    from adios2 import bindings

    from intransit.service.catalog import read_catalog

    io = adios2.Adios().declare_io("w")
    io.set_engine("BP5")
    engine = io.open(str(tmp_path / "field.bp"), bindings.Mode.Write)
    var = io.define_variable("density", np.zeros((16, 16)), [16, 16], [0, 0], [16, 16])
    for s in range(7):
        engine.begin_step()
        engine.put(var, np.full((16, 16), float(s)))
        engine.end_step()
    engine.close()
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    out = _run(str(job), "--stream", str(tmp_path / "field.bp"), "--engine", "BP5",
               "--catalog", str(tmp_path / "other.bp"), "--summary-json", str(tmp_path / "s.json"), cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "catalog.bp").exists()
    assert [int(r["step"]) for r in read_catalog(str(tmp_path / "other.bp")).steps] == list(range(7))
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["first_step"], summary["last_step"], summary["end_reason"]) == (0, 6, "end of stream")
    assert summary["catalog"] == str(tmp_path / "other.bp")
