"""Every case of the bad-input table (cases.py) run as a real ``intransit`` process.

Each must exit non-zero, say what was wrong and what would be right (its
key words), and show no traceback unless ``--debug`` is given.  Beside the
table: the inputs that must be *accepted* and analyzed right (a uint8 field,
a shape change mid-run), ``--debug`` showing the traceback, two real jobs on
one catalog, and the exit status when an analyzer failed on every step.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from tests.bad_input.cases import CASES, FIELD, blobs, job
from tests.bad_input.harness import INTRANSIT, Case, Field, judge, missing_words, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_clearly(case: Case, tmp_path):
    outcome = run_case(case, str(tmp_path))
    verdict = judge(case, outcome)
    assert verdict == "clear", (
        f"{case.name}: {verdict} (exit {outcome.returncode}, wanted {case.code or 'non-zero'}; "
        f"missing words {missing_words(case, outcome)})\n--- stderr ---\n{outcome.stderr[-4000:]}")
    assert "error:" in outcome.stderr.strip().splitlines()[-1], outcome.stderr  # the error is the last word


def test_table_is_large_and_covers_every_category():
    from tests.bad_input.cases import by_category

    counts = by_category()
    assert sum(counts.values()) >= 60
    assert set(counts) == {"toml", "xml", "stream", "cli", "catalog"}
    assert all(n >= 5 for n in counts.values()), counts


@pytest.mark.parametrize("name", ["stream_holes", "xml_malformed", "stream_periodic_too_long"])
def test_debug_shows_the_traceback(name, tmp_path):
    case = next(c for c in CASES if c.name == name)
    outcome = run_case(case, str(tmp_path), debug=True)
    assert outcome.returncode not in (0, None), outcome.stderr
    assert "Traceback (most recent call last)" in outcome.stderr or "refused the field" in outcome.stderr, outcome.stderr
    assert not missing_words(case, outcome), outcome.stderr  # the one-paragraph error still ends the output


def _run(folder, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([INTRANSIT, "run", *args], cwd=folder, capture_output=True, text=True, timeout=120)


def _events(folder: str, catalog: str) -> list[dict[str, float]]:
    from intransit.service.catalog import read_catalog

    return read_catalog(os.path.join(folder, catalog)).events["blobs"]


def test_uint8_field_is_analyzed_as_its_values(tmp_path):
    """A uint8 field (BlocksInfo cannot list its blocks in ADIOS2's Python bindings) gives the very
    objects the same values give as float64: no wrapped arithmetic, no refusal."""
    import adios2
    from adios2 import bindings

    base = np.random.default_rng(1).integers(20, 40, size=(32, 32))
    base[5:9, 5:9] = 250
    base[20:24, 10:14] = 200
    for name, dtype in (("u8.bp", np.uint8), ("f64.bp", np.float64)):
        io = adios2.Adios().declare_io("w")
        io.set_engine("BP5")
        engine = io.open(str(tmp_path / name), bindings.Mode.Write)
        var = io.define_variable("density", base.astype(dtype), [32, 32], [0, 0], [32, 32])
        for _ in range(3):
            engine.begin_step()
            engine.put(var, base.astype(dtype), bindings.Mode.Sync)
            engine.end_step()
        engine.close()
    (tmp_path / "job.toml").write_text(job(name="u8.bp", analyzers=blobs()))
    out8 = _run(tmp_path, "job.toml")
    out64 = _run(tmp_path, "job.toml", "--stream", "f64.bp", "--catalog", "c64.bp")
    assert out8.returncode == 0 and out64.returncode == 0, out8.stderr + out64.stderr
    assert "Traceback" not in out8.stderr
    e8, e64 = _events(str(tmp_path), "catalog.bp"), _events(str(tmp_path), "c64.bp")
    assert len(e8) == 6  # two objects a step
    assert e8 == e64


def test_shape_change_mid_run_is_logged_and_read_in_full(tmp_path):
    """The field grows from 16x16 to 16x32 at step 1: a warning names both shapes, and the later
    steps are read whole (noop counts 512 cells), not in the first step's shape."""
    from intransit.service.catalog import read_catalog

    Field(later=(16, 32)).write(str(tmp_path / FIELD))
    (tmp_path / "job.toml").write_text(job())
    out = _run(tmp_path, "job.toml")
    assert out.returncode == 0, out.stderr
    assert "changed global shape from (16, 16) to (16, 32) at writer step 1" in out.stderr, out.stderr
    cells = [row["noop/scores/cells"] for row in read_catalog(str(tmp_path / "catalog.bp")).steps]
    assert cells == [256.0, 512.0, 512.0]


def test_two_real_jobs_on_one_catalog(tmp_path):
    """Job A waits for an SST writer (holding the catalog lock); job B on the same catalog is refused
    at once, naming A's pid; once A is gone the lock is free again and B runs."""
    case = next(c for c in CASES if c.name == "catalog_two_jobs")
    outcome = run_case(case, str(tmp_path))
    assert outcome.holder_pid is not None and outcome.returncode == 1
    assert f"pid {outcome.holder_pid}" in outcome.stderr, outcome.stderr
    assert outcome.seconds < 20, "refused at start, not after the stream opened"
    again = _run(tmp_path, "job.toml")  # the holder was killed by run_case: its lock went with it
    assert again.returncode == 0, again.stderr


def test_lock_released_after_each_run_in_one_process(tmp_path):
    """run_job releases the lock when it returns (tests and notebooks call it repeatedly)."""
    from intransit.adapters.reader import MemoryStepReader
    from intransit.service.comm import SerialComm
    from intransit.service.config import from_dict
    from intransit.service.runner import run_job

    cfg = from_dict({"stream": {"name": "mem", "variables": ["density"]}, "analyzers": [{"type": "noop"}],
                     "output": {"catalog": str(tmp_path / "c.bp")}})
    steps = [(s, {"density": ((4, 4), [((0, 0), np.ones((4, 4)))])}) for s in range(3)]
    for _ in range(2):
        summary = run_job(cfg, SerialComm(), reader_factory=lambda *a: MemoryStepReader(steps))
        assert summary.steps_analyzed == 3


def test_every_step_failed_exits_non_zero(tmp_path, caplog):
    """An analyzer that fails every step (not a refusal at the first: a RuntimeError) leaves nothing in
    the catalog: the run's exit status says so.  Its traceback is logged once, each repeat in one line."""
    import logging

    from intransit.adapters.reader import MemoryStepReader
    from intransit.analyzers import base
    from intransit.service import cli
    from intransit.service.comm import SerialComm
    from intransit.service.config import from_dict
    from intransit.service.runner import run_job

    @base.register("bad_input_always_fails")
    class AlwaysFails(base.Analyzer):
        def process_blocks(self, ctx):
            raise RuntimeError("disk on fire")

        def combine(self, partials, ctx):
            return base.StepResult()

    try:
        cfg = from_dict({"stream": {"name": "mem", "variables": ["density"]},
                         "analyzers": [{"type": "bad_input_always_fails", "name": "fails"}, {"type": "noop"}],
                         "output": {"catalog": str(tmp_path / "c.bp")}})
        steps = [(s, {"density": ((4, 4), [((0, 0), np.ones((4, 4)))])}) for s in range(4)]
        with caplog.at_level(logging.ERROR):
            summary = run_job(cfg, SerialComm(), reader_factory=lambda *a: MemoryStepReader(steps))
        assert summary.steps_analyzed == 4 and summary.failures == {"fails": 4}
        assert caplog.text.count("Traceback (most recent call last)") == 1, caplog.text
        assert caplog.text.count("disk on fire (same error as step 0, traceback logged there)") == 3, caplog.text
        assert cli._every_step_failed(summary, 0) == cli.EXIT_RUNTIME
        summary.failures = {"fails": 3}
        assert cli._every_step_failed(summary, 0) == 0
    finally:
        base._REGISTRY.pop("bad_input_always_fails", None)


def test_summary_json_unaffected_by_refusals(tmp_path):
    """A good replay still runs and writes its summary (the preflight refuses nothing it should not)."""
    Field().write(str(tmp_path / FIELD))
    (tmp_path / "job.toml").write_text(job())
    out = _run(tmp_path, "job.toml", "--summary-json", "out/s.json")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "out" / "s.json").read_text())["steps_analyzed"] == 3
