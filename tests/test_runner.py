"""The step loop on an in-memory reader: drops counted, timeouts distinct from the end,
failing analyzers skipped without stopping the loop, catalog written and read back."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pytest

from intransit.adapters.reader import MemoryStepReader
from intransit.analyzers.base import Analyzer, StepContext, StepResult, register
from intransit.service import config
from intransit.service.catalog import read_catalog
from intransit.service.comm import SerialComm
from intransit.service.runner import StepTimeout, run_job


class _Peak(Analyzer):
    """Test analyzer: one event per step at the global maximum (events and scores)."""

    event_fields = ("value", "c0", "c1")

    def __init__(self, *, fail_on_step: int = -1) -> None:
        self.fail_on_step = fail_on_step

    def process_blocks(self, ctx: StepContext) -> Any:
        if ctx.step == self.fail_on_step:
            raise RuntimeError("deliberate failure")
        best = None
        for b in ctx.blocks:
            i = np.unravel_index(np.argmax(b.data), b.data.shape)
            cand = (float(b.data[i]), b.start[0] + int(i[0]), b.start[1] + int(i[1]))
            best = cand if best is None or cand[0] > best[0] else best
        return best

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        v, c0, c1 = max(p for p in partials if p is not None)
        return StepResult(events=[{"value": v, "c0": c0, "c1": c1}], scores={"max": v})


register("test_peak")(_Peak)


def field_step(step, peak_at, blocks=2):
    field = np.zeros((8, 8))
    field[peak_at] = 10.0 + step
    rows = np.array_split(np.arange(8), blocks)
    return (step, {"density": ((8, 8), [((int(r[0]), 0), field[r[0]:r[-1] + 1]) for r in rows])})


def make_cfg(tmp_path, params=None, max_steps=0):
    raw = {
        "stream": {"name": "mem", "variables": ["density"], "step_timeout_s": 1, "max_steps": max_steps},
        "analyzers": [{"type": "test_peak", "name": "peak", "params": params or {}}],
        "output": {"catalog": str(tmp_path / "cat.bp")},
    }
    return config.from_dict(raw)


def run(cfg, steps):
    return run_job(cfg, SerialComm(), reader_factory=lambda c, r, s, comm: MemoryStepReader(steps))


def test_steps_drops_and_catalog(tmp_path):
    steps = [field_step(0, (1, 1)), field_step(1, (5, 2)), field_step(4, (7, 7)), field_step(5, (0, 3))]
    summary = run(make_cfg(tmp_path), steps)
    assert summary.steps_analyzed == 4
    assert summary.steps_dropped == 2  # writer steps 2 and 3 never reached us
    assert summary.end_reason == "end of stream"
    cat = read_catalog(str(tmp_path / "cat.bp"))
    assert [int(r["step"]) for r in cat.steps] == [0, 1, 4, 5]
    assert [int(r["dropped"]) for r in cat.steps] == [0, 0, 2, 0]
    assert [(e["c0"], e["c1"]) for e in cat.events["peak"]] == [(1, 1), (5, 2), (7, 7), (0, 3)]
    assert [r["peak/scores/max"] for r in cat.steps] == [10.0, 11.0, 14.0, 15.0]


def test_timeout_is_not_end_of_stream(tmp_path):
    with pytest.raises(StepTimeout, match=r"no step from stream 'mem' within 1 s \(after writer step 0\)"):
        run(make_cfg(tmp_path), [field_step(0, (1, 1)), None])


def test_failing_analyzer_is_logged_and_skipped(tmp_path, caplog):
    steps = [field_step(s, (s, s)) for s in range(4)]
    with caplog.at_level(logging.ERROR):
        summary = run(make_cfg(tmp_path, {"fail_on_step": 2}), steps)
    assert summary.steps_analyzed == 4
    assert summary.failures == {"peak": 1}
    assert "deliberate failure" in caplog.text and "Traceback" in caplog.text
    cat = read_catalog(str(tmp_path / "cat.bp"))
    assert [int(r["peak/failed"]) for r in cat.steps] == [0, 0, 1, 0]
    assert [int(e["step"]) for e in cat.events["peak"]] == [0, 1, 3]


def test_max_steps(tmp_path):
    summary = run(make_cfg(tmp_path, max_steps=2), [field_step(s, (s, s)) for s in range(5)])
    assert summary.steps_analyzed == 2
    assert "max_steps" in summary.end_reason


def test_unknown_variable_is_a_clear_error(tmp_path):
    from intransit.adapters.reader import StreamError
    from intransit.service.runner import SetupError

    cfg = make_cfg(tmp_path)
    steps = [(0, {"temperature": ((8, 8), [((0, 0), np.zeros((8, 8)))])})]
    with pytest.raises((StreamError, SetupError), match="variable 'density' is not in the stream; it has: temperature"):
        run(cfg, steps)


def test_checkpoint_restores_tracks_and_appends_the_catalog(tmp_path):
    """A job stopped after 3 steps and restarted on the rest gives the tracks of one uninterrupted run."""
    def blob_steps(first, last):
        out = []
        for s in range(first, last):
            field = np.zeros((32, 32))
            field[4 + s, 3:6] = 5.0  # one blob moving down a row per step
            field[20, 2 + 2 * s: 5 + 2 * s] = 5.0  # one moving right two columns per step
            out.append((s, {"density": ((32, 32), [((0, 0), field[:16]), ((16, 0), field[16:])])}))
        return out

    def cfg_for(catalog, ckpt):
        return config.from_dict({
            "stream": {"name": "mem", "variables": ["density"], "step_timeout_s": 1},
            "analyzers": [{"type": "blob_detection", "name": "blobs", "params": {"threshold": 2.0, "min_area": 2}},
                          {"type": "tracking", "input": "blobs", "params": {"max_distance": 4.0}}],
            "output": {"catalog": str(catalog), "checkpoint": str(ckpt), "checkpoint_every": 1},
        })

    whole = run_job(cfg_for(tmp_path / "whole.bp", tmp_path / "whole.ckpt"), SerialComm(),
                    reader_factory=lambda c, r, s, comm: MemoryStepReader(blob_steps(0, 8)))
    assert whole.steps_analyzed == 8
    part_cfg = cfg_for(tmp_path / "part.bp", tmp_path / "part.ckpt")
    run_job(part_cfg, SerialComm(), reader_factory=lambda c, r, s, comm: MemoryStepReader(blob_steps(0, 3)))
    resumed = run_job(part_cfg, SerialComm(), reader_factory=lambda c, r, s, comm: MemoryStepReader(blob_steps(3, 8)))
    assert resumed.extras["restored_from"]["last_step"] == 2
    assert resumed.steps_analyzed == 5
    a, b = read_catalog(str(tmp_path / "whole.bp")), read_catalog(str(tmp_path / "part.bp"))
    assert [r["step"] for r in b.steps] == list(range(8))
    assert [(e["step"], e["track_id"], e["c0"], e["c1"]) for e in a.events["tracking"]] == \
           [(e["step"], e["track_id"], e["c0"], e["c1"]) for e in b.events["tracking"]]
    assert len(b.tracks()) == 2  # the same two tracks, not four


def test_checkpoint_config_errors(tmp_path):
    raw = {"stream": {"name": "m", "variables": ["d"]}, "analyzers": [{"type": "noop"}],
           "output": {"catalog": "c.bp", "checkpoint_every": 5}}
    with pytest.raises(config.ConfigError, match="checkpoint_every needs checkpoint"):
        config.from_dict(raw)


class _Counter(Analyzer):
    """Test analyzer with per-rank state only: counts the steps this rank saw."""

    def __init__(self) -> None:
        self.seen = 0

    def process_blocks(self, ctx: StepContext) -> Any:
        self.seen += 1
        return self.seen

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        return StepResult(scores={"seen": float(partials[0])})

    def local_state_dict(self) -> dict:
        return {"seen": self.seen}

    def load_local_state_dict(self, state) -> None:
        self.seen = state.get("seen", 0)


register("test_counter")(_Counter)


def test_per_rank_state_is_checkpointed_and_restored(tmp_path):
    from intransit.service import checkpoint

    cfg = config.from_dict({
        "stream": {"name": "mem", "variables": ["density"], "step_timeout_s": 1},
        "analyzers": [{"type": "test_counter", "name": "count"}],
        "output": {"catalog": str(tmp_path / "c.bp"), "checkpoint": str(tmp_path / "s.ckpt")},
    })
    run(cfg, [field_step(s, (s, s)) for s in range(3)])
    assert checkpoint.load(str(tmp_path / "s.ckpt"))["local"] == [{"count": {"seen": 3}}]
    run(cfg, [field_step(s, (s, s)) for s in range(3, 5)])
    cat = read_catalog(str(tmp_path / "c.bp"))
    assert [r["count/scores/seen"] for r in cat.steps] == [1.0, 2.0, 3.0, 4.0, 5.0]


# --- the end of the stream: every writer step accounted for (issue 13 item 3) ---------------------------


def _accounting_after(steps: Sequence[int]):
    from intransit.service.accounting import RunSummary, StepAccounting

    acc = StepAccounting(RunSummary(), stream="s", max_steps=0, rank=1)
    for step in steps:
        acc.done(step, acc.dropped_before(step), 0.0, 0.0)
    return acc


def test_reported_tail_is_counted_as_dropped():
    acc = _accounting_after([0, 3, 7])  # 5 dropped in the gaps
    acc.stream_ended(12)  # steps 8..11 never reached us
    s = acc.summary
    assert s.steps_dropped == 5 + 4 and s.steps_dropped_at_end == 4 and s.writer_steps == 12
    assert "4 dropped after writer step 7" in s.stream_end


def test_unreported_tail_of_a_live_stream_is_said_not_guessed():
    acc = _accounting_after([0, 1, 5])
    acc.stream_ended(None)
    s = acc.summary
    assert s.steps_dropped == 3 and s.steps_dropped_at_end is None
    assert "after writer step 5" in s.stream_end and "cannot be counted" in s.stream_end


def test_replayed_file_has_no_tail_and_a_wrong_report_adds_nothing():
    acc = _accounting_after([0, 1])
    acc.stream_ended(None, live=False)
    assert acc.summary.steps_dropped_at_end == 0 and "replay ended" in acc.summary.stream_end
    acc = _accounting_after([0, 1, 2])
    acc.stream_ended(2)
    assert acc.summary.steps_dropped == 0 and "fewer than the steps received" in acc.summary.stream_end


def test_a_replay_run_says_its_end_and_a_stall_keeps_the_summary(tmp_path):
    """End to end on the in-memory reader: a finished replay has no unknown tail; a stall raises StepTimeout
    carrying the summary (the CLI writes it) with what was analyzed."""
    from intransit.service.errors import StepTimeout

    summary = run(make_cfg(tmp_path), [field_step(i, (2, 2)) for i in range(3)])
    assert summary.steps_dropped_at_end == 0 and "replay ended after writer step 2" in summary.stream_end
    with pytest.raises(StepTimeout) as err:
        run(make_cfg(tmp_path / "b"), [field_step(0, (2, 2)), field_step(1, (2, 2)), None])
    stalled = err.value.summary
    assert stalled.steps_analyzed == 2 and stalled.last_step == 1
    assert "stalled" in stalled.stream_end and stalled.steps_dropped_at_end is None
