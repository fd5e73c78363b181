"""README promise: third-party analyzers register through the entry-point group ``intransit.analyzers``.

A tiny distribution (its own pyproject, one module, one entry point) is built and
installed with pip into a temporary folder, never into the project's venv; a
separate ``intransit run`` process with that folder on its path analyzes a BP5
file with the third party's analyzer named in the job config.  The same job
without the folder on the path fails naming the unknown type: the entry point,
and nothing else, made the analyzer known.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from intransit.service.catalog import read_catalog
from tests import procs

DIST = "intransit-thirdparty-peak"
MODULE = "thirdparty_peak"
TYPE = "thirdparty_peak_finder"

MODULE_SOURCE = '''
"""A third party's analyzer: the global maximum of each step (imports intransit, nothing of it is patched)."""
from __future__ import annotations

import numpy as np

from intransit.analyzers.base import Analyzer, StepResult


class PeakFinder(Analyzer):
    event_fields = ("value", "c0", "c1")

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = float(scale)

    def process_blocks(self, ctx):
        best = None
        for b in ctx.blocks:
            data = np.asarray(b.data)
            i = np.unravel_index(int(np.argmax(data)), data.shape)
            cand = (float(data[i]) * self.scale, b.start[0] + int(i[0]), b.start[1] + int(i[1]))
            best = cand if best is None or cand[0] > best[0] else best
        return best

    def combine(self, partials, ctx):
        v, c0, c1 = max(p for p in partials if p is not None)
        return StepResult(events=[{"value": v, "c0": c0, "c1": c1}], scores={"peak": v})
'''

PEAKS = [(1, 2), (6, 9), (12, 3), (14, 14)]

pytestmark = pytest.mark.slow  # a pip build and install, then intransit in its own process


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> str:
    """The distribution built from source and installed by pip into a folder of its own."""
    root = tmp_path_factory.mktemp("thirdparty")
    src = root / "src"
    src.mkdir()
    (src / f"{MODULE}.py").write_text(MODULE_SOURCE)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{DIST}"
        version = "0.1"
        dependencies = []

        [project.entry-points."intransit.analyzers"]
        {TYPE} = "{MODULE}:PeakFinder"

        [tool.setuptools]
        py-modules = ["{MODULE}"]
        """))
    target = root / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--no-build-isolation", "--target", str(target), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    dist_info = [p for p in os.listdir(target) if p.endswith(".dist-info")]
    assert len(dist_info) == 1, os.listdir(target)
    with open(target / dist_info[0] / "entry_points.txt") as fh:
        assert "[intransit.analyzers]" in fh.read()
    return str(target)


def _write_bp5(path: str) -> None:
    """Four 16x16 steps in two row blocks, one bright cell per step at PEAKS[step]."""
    import adios2
    from adios2 import bindings

    io = adios2.Adios().declare_io("w")
    io.set_engine("BP5")
    var = io.define_variable("density", np.zeros((8, 16)), [16, 16], [0, 0], [8, 16])
    engine = io.open(path, bindings.Mode.Write)
    for step, peak in enumerate(PEAKS):
        field = np.random.default_rng(step).normal(0.0, 0.1, (16, 16))
        field[peak] = 5.0 + step
        engine.begin_step()
        for r0 in (0, 8):
            var.set_selection([[r0, 0], [8, 16]])
            engine.put(var, np.ascontiguousarray(field[r0:r0 + 8]), bindings.Mode.Sync)
        engine.end_step()
    engine.close()


def _job(folder: str, stream: str) -> str:
    return procs.write_job(folder, stream, engine="BP5", step_timeout_s=20, open_timeout_s=20,
                           analyzers=f'[[analyzers]]\ntype = "{TYPE}"\nname = "peaks"\nparams = {{ scale = 2.0 }}\n')


def _run(folder: str, job: str, pythonpath: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([procs.INTRANSIT, "run", job], cwd=folder, capture_output=True, text=True, timeout=120,
                          env=env)


def test_an_analyzer_installed_as_a_distribution_runs_from_the_job_config(tmp_path, site):
    folder = str(tmp_path)
    bp = os.path.join(folder, "field.bp")
    _write_bp5(bp)
    job = _job(folder, bp)
    res = _run(folder, job, site)
    assert res.returncode == 0, res.stderr[-3000:]
    cat = read_catalog(os.path.join(folder, "catalog.bp"))
    assert [int(r["step"]) for r in cat.steps] == list(range(len(PEAKS)))
    assert [(int(e["c0"]), int(e["c1"])) for e in cat.events["peaks"]] == PEAKS
    assert [e["value"] for e in cat.events["peaks"]] == [2.0 * (5.0 + s) for s in range(len(PEAKS))]  # its param
    assert [r["peaks/scores/peak"] for r in cat.steps] == [2.0 * (5.0 + s) for s in range(len(PEAKS))]


def test_without_the_distribution_the_type_is_unknown(tmp_path, site):
    """Control: the same job, the distribution not on the path → a usage error naming the type."""
    folder = str(tmp_path)
    bp = os.path.join(folder, "field.bp")
    _write_bp5(bp)
    res = _run(folder, _job(folder, bp), None)
    assert res.returncode == 2, res.stderr[-3000:]
    assert TYPE in res.stderr and "unknown analyzer type" in res.stderr, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert not os.path.exists(os.path.join(folder, "catalog.bp"))
