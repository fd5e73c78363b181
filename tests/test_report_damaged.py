"""``intransit report`` answers every damaged or wrong path with one clear error and
a non-zero exit, never a traceback, never a wait: each case once made it hang
(200-400 s) or dump ``KeyError``.  Catalogs are real BP5 written by CatalogWriter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from intransit.analyzers.base import StepResult
from intransit.service.catalog import CatalogWriter

INTRANSIT = os.path.join(os.path.dirname(sys.executable), "intransit")


def _catalog(path: str, n: int = 6) -> str:
    writer = CatalogWriter(path, {"blobs": ("x", "y")}, flush_interval_s=0.0)
    for i in range(n):
        events = [{"x": float(j), "y": float(i)} for j in range(i % 3)]
        writer.write_step(step=i, index=i, dropped=0, seconds=1e-3,
                          results={"blobs": StepResult(events=events, scores={"n": float(len(events))})})
    writer.close()
    return path


def _sim_output(path: str) -> str:
    import adios2
    from adios2 import bindings

    io = adios2.Adios().declare_io("sim")
    io.set_engine("BP5")
    engine = io.open(path, bindings.Mode.Write)
    var = io.define_variable("density", np.zeros((8, 8)), [8, 8], [0, 0], [8, 8])
    for _ in range(2):
        engine.begin_step()
        engine.put(var, np.ones((8, 8)))
        engine.end_step()
    engine.close()
    return path


def _report(path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([INTRANSIT, "report", path, *args], capture_output=True, text=True, timeout=90)


def test_a_whole_catalog_reports(tmp_path):
    out = _report(_catalog(str(tmp_path / "c.bp")))
    assert out.returncode == 0, out.stderr
    assert "steps analyzed: 6" in out.stdout


def _damage(folder: str, how: str) -> str:
    """A copy of a good catalog with one part damaged; returns the path to report."""
    good = _catalog(os.path.join(folder, "good.bp"))
    bad = os.path.join(folder, f"{how}.bp")
    shutil.copytree(good, bad)
    if how == "empty_dir":
        shutil.rmtree(bad)
        os.mkdir(bad)
    elif how == "no_md_idx":
        os.remove(os.path.join(bad, "md.idx"))
    elif how == "empty_md0":
        open(os.path.join(bad, "md.0"), "w").close()
    elif how == "truncated_md0":
        os.truncate(os.path.join(bad, "md.0"), 20)
    elif how == "truncated_md_idx":
        os.truncate(os.path.join(bad, "md.idx"), 100)
    elif how == "empty_data":
        open(os.path.join(bad, "data.0"), "w").close()
    elif how == "half_data":
        os.truncate(os.path.join(bad, "data.0"), os.path.getsize(os.path.join(bad, "data.0")) // 2)
    elif how == "plain_file":
        bad = os.path.join(folder, "notes.txt")
        with open(bad, "w") as fh:
            fh.write("not a catalog\n")
    elif how == "simulation_output":
        bad = _sim_output(os.path.join(folder, "sim.bp"))
    elif how == "missing":
        bad = os.path.join(folder, "nothing.bp")
    return bad


@pytest.mark.parametrize("how, says", [
    ("missing", "no catalog at"),
    ("empty_dir", "md.idx, md.0, data.0 missing"),
    ("no_md_idx", "md.idx missing"),
    ("empty_md0", "md.0 is empty"),
    ("truncated_md0", "cannot be opened"),
    ("truncated_md_idx", "md.idx indexes no step"),
    ("empty_data", "data.0 is empty"),
    ("plain_file", "is a plain file, not a catalog"),
    ("simulation_output", "not an intransit catalog: it has no 'step' variable (its variables: density)"),
])
def test_a_damaged_or_wrong_path_gets_one_clear_error(tmp_path, how, says):
    out = _report(_damage(str(tmp_path), how), "--timeout", "30")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_truncated_data_file_gives_an_error_within_the_timeout(tmp_path):
    """Half of data.0 gone: BP5 waits for the missing bytes; the report's reader process is bounded."""
    out = _report(_damage(str(tmp_path), "half_data"), "--timeout", "8")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "data.0" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "soon"])
def test_a_timeout_that_bounds_nothing_is_refused(tmp_path, value):
    out = _report(_catalog(str(tmp_path / "c.bp")), "--timeout", value)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "--timeout" in out.stderr and "Traceback" not in out.stderr, out.stderr
