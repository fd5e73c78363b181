"""The catalog writes batches of fast steps as one BP5 step; what it reads back
must not depend on how the steps were batched, and nothing may stay unwritten."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from intransit.adapters.reader import MemoryStepReader, StepStatus
from intransit.analyzers.base import StepResult
from intransit.service import catalog as catalog_module
from intransit.service import config
from intransit.service.catalog import CatalogWriter, read_catalog
from intransit.service.comm import SerialComm
from intransit.service.runner import run_job

SCHEMAS = {"blobs": ("x", "y", "area"), "anomaly": ()}


def _steps(n: int, seed: int = 3):
    """Steps with 0–3 events, failures of either analyzer, and a score that appears late."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(0, 4))
        blobs = None if i in (7, 8, 30) else StepResult(
            events=[{"x": float(rng.normal()), "y": float(rng.normal()), "area": float(j + 1)} for j in range(k)],
            scores={"n": float(k)})
        scores = {"score": float(rng.normal())}
        if i >= 20:
            scores["cusum"] = float(i)  # a new score mid-run starts a new batch
        anomaly = None if i == 12 else StepResult(events=[], scores=scores)
        out.append(dict(step=100 + 2 * i, index=i, dropped=1 if i else 0, seconds=1e-3 * i,
                        results={"blobs": blobs, "anomaly": anomaly}, extra={"wait_seconds": 0.5 * i, "steering/seq": i}))
    return out


def _write(path, steps, flush_interval_s):
    writer = CatalogWriter(str(path), SCHEMAS, metadata={"stream": "s"}, flush_interval_s=flush_interval_s)
    for s in steps:
        writer.write_step(**s)
    writer.close()
    return writer


def _same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_batched_catalog_reads_back_like_one_bp5_step_per_analyzed_step(tmp_path):
    steps = _steps(50)
    every = _write(tmp_path / "every.bp", steps, 0.0)
    batched = _write(tmp_path / "batched.bp", steps, 3600.0)
    assert every.batches_written == 50
    assert batched.steps_written == 50
    # New batches at the failures (7, 9, 12, 13, 30, 31) and at the new score (20): not one per step.
    assert 2 <= batched.batches_written <= 10
    a, b = read_catalog(str(tmp_path / "every.bp")), read_catalog(str(tmp_path / "batched.bp"))
    assert len(a.steps) == len(b.steps) == 50
    for ra, rb in zip(a.steps, b.steps):
        assert ra.keys() == rb.keys()
        assert all(_same(ra[k], rb[k]) for k in ra)
    assert a.events == b.events
    assert a.metadata == b.metadata == {"stream": "s"}
    # What was written is what reads back.
    assert [r["step"] for r in b.steps] == [s["step"] for s in steps]
    assert isinstance(b.steps[0]["step"], int) and isinstance(b.steps[0]["seconds"], float)
    assert b.steps[7]["blobs/failed"] == 1 and "blobs/n_events" not in b.steps[7]
    assert "blobs/scores/n" not in b.steps[7] and "anomaly/scores/cusum" not in b.steps[12]
    assert b.steps[19].get("anomaly/scores/cusum") is None and b.steps[20]["anomaly/scores/cusum"] == 20.0
    n_rows = sum(len(s["results"]["blobs"].events) for s in steps if s["results"]["blobs"] is not None)
    assert len(b.events["blobs"]) == n_rows
    for ev in b.events["blobs"]:
        assert ev["step"] == 100 + 2 * ev["index"]


def test_catalog_holds_fast_steps_until_the_interval_or_the_batch_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "MAX_BATCH", 8)
    steps = _steps(11)[:6] + _steps(11)[9:]  # no failures and no new score among these
    writer = CatalogWriter(str(tmp_path / "c.bp"), SCHEMAS, flush_interval_s=3600.0)
    for s in steps[:5]:
        writer.write_step(**s)
    assert (writer.pending, writer.batches_written) == (5, 0)
    writer.flush()
    assert (writer.pending, writer.batches_written, writer.steps_written) == (0, 1, 5)
    writer.flush()  # nothing pending: no empty BP5 step
    assert writer.batches_written == 1
    for s in steps[:8]:
        writer.write_step(**s)
    assert (writer.pending, writer.batches_written) == (0, 2)  # the batch limit wrote it
    writer.close()
    assert len(read_catalog(str(tmp_path / "c.bp")).steps) == 13


class _StallingReader(MemoryStepReader):
    """Has no step ready once (the poll before the step at ``stall_before``), then goes on.

    Each step it hands out takes ``pace_s`` to arrive (a stream of that many
    seconds per step).
    """

    def __init__(self, steps, stall_before: int, pace_s: float = 0.0) -> None:
        super().__init__(steps)
        self.stall_before = stall_before
        self.pace_s = pace_s
        self.waits: list[float] = []

    def begin_step(self, timeout_s: float) -> StepStatus:
        self.waits.append(timeout_s)
        if self._pos + 1 == self.stall_before and len(self.waits) == self.stall_before + 1:
            return StepStatus.TIMEOUT
        time.sleep(self.pace_s)
        return super().begin_step(timeout_s)


def _run_with_flush_spy(tmp_path, monkeypatch, reader) -> list[int]:
    """Runs a no-op job on ``reader``; returns the pending count at each catalog write."""
    flushed_with: list[int] = []
    original = CatalogWriter.flush

    def spy(self):
        flushed_with.append(self.pending)
        original(self)

    monkeypatch.setattr(CatalogWriter, "flush", spy)
    cfg = config.from_dict({
        "stream": {"name": "mem", "variables": ["density"], "step_timeout_s": 5},
        "analyzers": [{"type": "noop"}],
        "output": {"catalog": str(tmp_path / "cat.bp"), "catalog_flush_s": 60},
    })
    summary = run_job(cfg, SerialComm(), reader_factory=lambda c, r, s, comm: reader)
    assert summary.steps_analyzed == 6
    assert [r["step"] for r in read_catalog(str(tmp_path / "cat.bp")).steps] == list(range(6))
    assert summary.extras["catalog_bp5_steps"] == len(flushed_with)  # one BP5 step per write here
    # CPU time is the process's, not the clock's: a stream that makes us wait costs little of it.
    assert 0 < summary.cpu_seconds <= summary.elapsed_seconds + 0.05
    if reader.pace_s:
        assert summary.cpu_seconds < 0.5 * summary.elapsed_seconds
    return flushed_with


def test_runner_writes_pending_catalog_steps_when_the_stream_pauses(tmp_path, monkeypatch):
    field = np.arange(16.0).reshape(4, 4)
    steps = [(i, {"density": ((4, 4), [((0, 0), field)])}) for i in range(6)]
    # Steps 10 ms apart: four of them (40 ms) are older than the idle-write age.
    reader = _StallingReader(steps, stall_before=4, pace_s=0.01)
    flushed_with = _run_with_flush_spy(tmp_path, monkeypatch, reader)
    # Four steps analyzed, then a pause: they were written before waiting, the rest at the end.
    assert flushed_with == [4, 2]
    assert reader.waits[:6] == [0.0] * 5 + [5.0]  # a zero-timeout poll, then the full step timeout


def test_runner_does_not_write_the_catalog_at_every_short_gap_of_a_fast_stream(tmp_path, monkeypatch):
    field = np.arange(16.0).reshape(4, 4)
    steps = [(i, {"density": ((4, 4), [((0, 0), field)])}) for i in range(6)]
    monkeypatch.setattr(catalog_module, "IDLE_FLUSH_MIN_AGE_S", 30.0)  # the run is far younger than this
    reader = _StallingReader(steps, stall_before=4)  # four fast steps, then a gap
    flushed_with = _run_with_flush_spy(tmp_path, monkeypatch, reader)
    assert flushed_with == [6]  # one write, at the end: the gap came before the idle-write age
    assert reader.waits[:6] == [0.0] * 5 + [5.0]


def test_idle_catalog_write_waits_for_the_age_then_writes_what_is_pending(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "IDLE_FLUSH_MIN_AGE_S", 0.2)
    writer = CatalogWriter(str(tmp_path / "c.bp"), SCHEMAS, flush_interval_s=3600.0)
    steps = _steps(3)
    writer.flush_when_idle()  # nothing pending
    writer.write_step(**steps[0])
    writer._last_flush = time.monotonic()  # the last write just now (a clock the test controls)
    writer.flush_when_idle()  # younger than the idle-write age: held
    assert (writer.pending, writer.batches_written) == (1, 0)
    writer.write_step(**steps[1])
    writer._last_flush = time.monotonic() - 0.3  # the last write older than the age
    writer.flush_when_idle()
    assert (writer.pending, writer.batches_written, writer.steps_written) == (0, 1, 2)
    writer.flush_when_idle()  # nothing pending again: no empty BP5 step
    assert writer.batches_written == 1
    writer.close()
    assert [r["step"] for r in read_catalog(str(tmp_path / "c.bp")).steps] == [s["step"] for s in steps[:2]]


def test_idle_catalog_write_follows_a_flush_interval_shorter_than_the_idle_age(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "IDLE_FLUSH_MIN_AGE_S", 30.0)
    writer = CatalogWriter(str(tmp_path / "c.bp"), SCHEMAS, flush_interval_s=0.1)
    writer.write_step(**_steps(1)[0])
    writer._last_flush = time.monotonic() - 0.15  # older than the interval, far younger than the idle age
    writer.flush_when_idle()
    assert (writer.pending, writer.batches_written) == (0, 1)
    writer.close()


def test_catalog_flush_interval_is_checked(tmp_path):
    raw = {"stream": {"name": "mem", "variables": ["density"]}, "analyzers": [{"type": "noop"}],
           "output": {"catalog": str(tmp_path / "c.bp"), "catalog_flush_s": -1}}
    with pytest.raises(config.ConfigError, match=r"catalog_flush_s must be between 0 \(write every step\) and 60"):
        config.from_dict(raw)
