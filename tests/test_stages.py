"""The job's stages on their own, with in-memory sources and sinks: read plan (whole axes, halos and
their conflicts), source, pipeline, accounting (drops, restart offset), steering sink, checkpoint."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pytest

from intransit.adapters.reader import MemoryStepReader, StreamError
from intransit.analyzers.base import Analyzer, StepContext, StepResult
from intransit.service import config
from intransit.service.accounting import RunSummary, StepAccounting
from intransit.service.catalog import read_catalog
from intransit.service.comm import SerialComm
from intransit.service.errors import SetupError, StepTimeout
from intransit.service.pipeline import Pipeline, ReadPlan
from intransit.service.runner import run_job
from intransit.service.sinks import SteeringSink
from intransit.service.source import StreamSource
from intransit.service.state import Checkpointer
from intransit.service.steering import Rule, RuleEngine


class _Sum(Analyzer):
    """Sums its blocks' own cells; with ``halo``, also the halo cells it was handed (padded - own)."""

    def __init__(self, *, halo: Sequence[int] = (), periodic: Sequence[bool] = (), fail_on: int = -1,
                 whole: bool = False) -> None:
        self.halo, self.periodic, self.fail_on = tuple(halo), tuple(periodic), fail_on
        self.seen_padded: list[tuple[int, ...]] = []
        self.steps = 0

    def process_blocks(self, ctx: StepContext) -> Any:
        if ctx.step == self.fail_on:
            raise RuntimeError("deliberate")
        self.steps += 1
        self.seen_padded = [b.padded.shape if b.padded is not None else None for b in ctx.blocks]
        return float(sum(b.data.sum() for b in ctx.blocks))

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        return StepResult(scores={"sum": float(sum(partials)), "upstream": float(len(ctx.upstream))})

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state) -> None:
        self.steps = state["steps"]

    def local_state_dict(self) -> dict:
        return {"local_steps": self.steps}

    def load_local_state_dict(self, state) -> None:
        self.loaded_local = dict(state)


class _Halo(_Sum):
    def halo_spec(self, ndim: int):
        return tuple(self.halo) or (0,) * ndim, tuple(self.periodic) or (False,) * ndim


class _Whole(_Sum):
    whole_axes = (1,)


def _cfgs(*entries: tuple[str, str, str | None]) -> list[config.AnalyzerConfig]:
    return [config.AnalyzerConfig("test", name, variable, inp, {}) for name, variable, inp in entries]


def _field(step: int, shape=(8, 6), blocks=((0, 3), (3, 8))) -> tuple[int, dict]:
    f = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + step
    return step, {"density": (shape, [((a, 0), f[a:b]) for a, b in blocks]),
                  "temperature": (shape, [((0, 0), -f)])}


def _job(tmp_path, max_steps: int = 0, **output) -> config.JobConfig:
    return config.from_dict({
        "stream": {"name": "mem", "variables": ["density", "temperature"], "step_timeout_s": 1, "max_steps": max_steps},
        "analyzers": [{"type": "noop"}],
        "output": {"catalog": str(tmp_path / "cat.bp"), **output},
    })


# -- read plan ------------------------------------------------------------------
def test_plan_unions_whole_axes_and_takes_the_largest_halo_per_axis():
    analyzers = [_Halo(halo=(1, 0), periodic=(True, False)), _Whole(), _Halo(halo=(3, 2), periodic=(True, False)), _Sum()]
    plan = ReadPlan(_cfgs(("a", "density", None), ("b", "density", None), ("c", "density", None),
                          ("d", "temperature", None)), analyzers)
    assert plan.variables == ("density", "temperature")
    assert plan.whole_axes == {"density": (1,), "temperature": ()}
    assert plan.has_halo
    assert plan.halo("density", 2) == ((3, 2), (True, False))
    assert plan.halo("temperature", 2) is None  # nobody there asks for one


def test_plan_without_halos_is_the_plain_path():
    plan = ReadPlan(_cfgs(("a", "density", None)), [_Sum()])
    assert not plan.has_halo and plan.halo("density", 2) is None
    zero = ReadPlan(_cfgs(("a", "density", None)), [_Halo()])  # declares the hook, asks nothing
    assert zero.halo("density", 3) is None


def test_plan_conflicting_periodic_flags_name_both_analyzers():
    plan = ReadPlan(_cfgs(("blobs", "density", None), ("atoms", "density", None)),
                    [_Halo(halo=(2, 2), periodic=(True, False)), _Halo(halo=(1, 0), periodic=(False, False))])
    with pytest.raises(SetupError, match=r"analyzers 'blobs' and 'atoms' .* axis 0 .* periodic"):
        plan.halo("density", 2)
    # different flags on an axis only one of them pads are no conflict
    ok = ReadPlan(_cfgs(("blobs", "density", None), ("atoms", "density", None)),
                  [_Halo(halo=(2, 0), periodic=(True, True)), _Halo(halo=(1, 0), periodic=(True, False))])
    assert ok.halo("density", 2) == ((2, 0), (True, False))  # an axis nobody pads reads as open


def test_plan_rejects_a_halo_spec_of_the_wrong_rank():
    plan = ReadPlan(_cfgs(("a", "density", None)), [_Halo(halo=(1, 1, 1), periodic=(False,) * 3)])
    with pytest.raises(SetupError, match=r"analyzer 'a': halo_spec\(2\) must give 2 cell counts"):
        plan.halo("density", 2)


# -- source ---------------------------------------------------------------------
class _PlainReader(MemoryStepReader):
    """A reader whose ``read`` has no halo keywords (as third-party readers may)."""

    def read(self, variable, whole_axes=()):  # type: ignore[override]
        self.calls = getattr(self, "calls", 0) + 1
        return super().read(variable, whole_axes)


def test_source_yields_agreed_steps_and_reads_without_halo_keywords(tmp_path):
    reader = _PlainReader([_field(0), _field(2)])
    source = StreamSource(_job(tmp_path), SerialComm(), None, lambda *a: reader)
    plan = ReadPlan(_cfgs(("a", "density", None), ("b", "temperature", None)), [_Sum(), _Sum()])
    assert source.next_step(None) == 0
    fields = source.read(plan)
    assert set(fields) == {"density", "temperature"} and reader.calls == 2
    shape, blocks = fields["density"]
    assert shape == (8, 6) and [b.start for b in blocks] == [(0, 0), (3, 0)]
    assert source.next_step(0) == 2
    source.read(plan)
    assert source.next_step(2) is None  # the end of the stream is not a timeout


def test_source_timeout_names_the_last_step(tmp_path):
    source = StreamSource(_job(tmp_path), SerialComm(), None, lambda *a: MemoryStepReader([_field(0), None]))
    assert source.next_step(None) == 0
    source.read(ReadPlan(_cfgs(("a", "density", None)), [_Sum()]))
    with pytest.raises(StepTimeout, match=r"within 1 s \(after writer step 0\)"):
        source.next_step(0)


def test_source_reads_the_halo_the_plan_asks():
    cfg = config.from_dict({"stream": {"name": "mem", "variables": ["density"]}, "analyzers": [{"type": "noop"}],
                            "output": {"catalog": "c.bp"}})
    reader = MemoryStepReader([_field(0), _field(1)])
    source = StreamSource(cfg, SerialComm(), None, lambda *a: reader)
    plan = ReadPlan(_cfgs(("a", "density", None)), [_Halo(halo=(1, 0), periodic=(True, False))])
    for step in (0, 1):  # the first step learns the array's rank, the second reads with the halo at once
        assert source.next_step(None) == step
        _, blocks = source.read(plan)["density"]
        assert [b.padded.shape for b in blocks] == [(5, 6), (7, 6)]  # 3 + 2 and 5 + 2 rows (periodic wrap)
        assert [b.halo_lo for b in blocks] == [(1, 0), (1, 0)]


def test_source_read_error_is_a_clear_error(tmp_path):
    source = StreamSource(_job(tmp_path), SerialComm(), None,
                          lambda *a: MemoryStepReader([(0, {"pressure": ((2, 2), [((0, 0), np.zeros((2, 2)))])})]))
    source.next_step(None)
    with pytest.raises(SetupError, match="variable 'density' is not in the stream; it has: pressure"):
        source.read(ReadPlan(_cfgs(("a", "density", None)), [_Sum()]))


def test_source_open_failure_is_collective(tmp_path):
    def refuse(*a):
        raise StreamError("no such stream")

    with pytest.raises(SetupError, match="no such stream"):
        StreamSource(_job(tmp_path), SerialComm(), None, refuse)


# -- pipeline -------------------------------------------------------------------
def test_pipeline_combines_skips_failures_and_their_dependents(caplog):
    analyzers = [_Sum(fail_on=1), _Sum(), _Sum()]
    pipe = Pipeline(_cfgs(("a", "density", None), ("b", "density", "a"), ("c", "temperature", None)), analyzers,
                    SerialComm())
    reader = MemoryStepReader([_field(0), _field(1)])
    fields = {}
    for step in (0, 1):
        reader.begin_step(1)
        fields = {v: reader.read(v) for v in ("density", "temperature")}
        results = pipe.process(step, step, fields)
        if step == 0:
            total = float(np.arange(48).sum())
            assert results["a"].scores == {"sum": total, "upstream": 0.0}
            assert results["b"].scores["upstream"] == 1.0  # it sees a's result
            assert results["c"].scores["sum"] == -total
    with caplog.at_level(logging.WARNING):
        assert results["a"] is None and results["b"] is None and results["c"] is not None
    assert pipe.failures == {"a": 1, "b": 1}
    assert pipe.products(final=True) == []  # no analyzer here makes products


# -- accounting -------------------------------------------------------------------
def test_accounting_counts_drops_and_refuses_a_step_back():
    acc = StepAccounting(RunSummary(), stream="s", max_steps=3, rank=0)
    for step, want in ((0, 0), (1, 0), (4, 2)):
        dropped = acc.dropped_before(step)
        assert dropped == want
        acc.done(step, dropped, 0.01, float(step))
    assert not acc.more()  # max_steps 3
    with pytest.raises(StreamError, match="went back from step 4 to 3"):
        acc.dropped_before(3)
    acc.loop_ended("test")
    s = acc.finish({"x": 1})
    assert (s.steps_analyzed, s.steps_dropped, s.first_step, s.last_step) == (3, 2, 0, 4)
    assert s.failures == {"x": 1} and s.elapsed_seconds == 4.0 and s.steps_analyzed_steady == 2


def test_accounting_resumes_at_the_checkpointed_step():
    acc = StepAccounting(RunSummary(), stream="s", max_steps=0, rank=0)
    acc.load_state_dict({"index": 3, "last_step": 2})
    assert acc.dropped_before(3) == 0 and acc.dropped_before(5) == 2
    acc.done(5, 2, 0.0, 0.0)
    assert acc.finish({}).steps_analyzed == 1 and acc.index == 4


# -- steering sink -----------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.records: list[tuple] = []
        self.closed = False

    def write(self, step, command, args, rule) -> int:
        self.records.append((step, command, args, rule))
        return len(self.records)

    def close(self) -> None:
        self.closed = True


def test_steering_sink_answers_every_step_and_keeps_the_commands():
    rules = RuleEngine([Rule(name="hot", analyzer="a", score="sum", op=">", threshold=5.0, command="stop",
                             args={}, for_steps=2, once=True)])
    sink = SteeringSink(_Writer(), rules)
    extras = [sink.answer(s, {"a": StepResult(scores={"sum": v})}) for s, v in enumerate((9.0, 1.0, 9.0, 9.0))]
    assert [e["steering/command"] for e in extras] == [0, 0, 0, 1]
    assert [e["steering/seq"] for e in extras] == [1, 2, 3, 4]
    assert sink.commands == [{"seq": 4, "answers_step": 3, "command": "stop", "args": {}, "rule": "hot"}]
    state = sink.state_dict()
    again = SteeringSink(_Writer(), RuleEngine(rules.rules))
    again.load_state_dict(state)
    assert again.state_dict() == state
    sink.close()
    assert sink.writer.closed


# -- checkpoint ---------------------------------------------------------------------
class _Comm2(SerialComm):
    """Rank 0 of two ranks whose other rank says what this one says (enough for the checkpoint's collectives)."""

    def Get_size(self) -> int:  # noqa: N802
        return 2

    def gather(self, obj, root=0):
        return [obj, obj]

    def allgather(self, obj):
        return [obj, obj]


def test_checkpointer_saves_and_restores_every_stage(tmp_path, caplog):
    out = config.OutputConfig(catalog=str(tmp_path / "c.bp"), checkpoint=str(tmp_path / "job.ckpt"), checkpoint_every=2)
    cfgs = _cfgs(("a", "density", None))
    first = Pipeline(cfgs, [_Sum()], SerialComm())
    first.analyzers[0].steps = 7
    acc = StepAccounting(RunSummary(), stream="s", max_steps=0, rank=0)
    acc.index, acc.last_step = 4, 9
    flushed = []
    saver = Checkpointer(out, SerialComm(), pipeline=first, accounting=acc, before_save=lambda: flushed.append(1))
    assert saver.due(4) and not saver.due(3)
    saver.save()
    assert flushed == [1]

    second = Pipeline(cfgs, [_Sum()], SerialComm())
    acc2 = StepAccounting(RunSummary(), stream="s", max_steps=0, rank=0)
    restored = Checkpointer(out, SerialComm(), pipeline=second, accounting=acc2).restore()
    assert restored == {"path": out.checkpoint, "last_step": 9, "index": 4}
    assert second.analyzers[0].steps == 7 and second.analyzers[0].loaded_local == {"local_steps": 7}
    assert (acc2.index, acc2.first_index, acc2.last_step) == (4, 4, 9)

    third = Pipeline(cfgs, [_Sum()], _Comm2())
    with caplog.at_level(logging.WARNING):
        Checkpointer(out, _Comm2(), pipeline=third, accounting=StepAccounting(RunSummary(), stream="s", max_steps=0,
                                                                             rank=0)).restore()
    assert "per-rank state of 1 ranks, this job has 2" in caplog.text
    assert not hasattr(third.analyzers[0], "loaded_local")  # fresh per-rank state
    assert third.analyzers[0].steps == 7  # rank 0's state still restored


def test_checkpointer_restore_failure_is_a_setup_error(tmp_path):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"not a pickle")
    out = config.OutputConfig(catalog=str(tmp_path / "c.bp"), checkpoint=str(path))
    with pytest.raises(SetupError, match="cannot restore checkpoint"):
        Checkpointer(out, SerialComm(), pipeline=Pipeline([], [], SerialComm()),
                     accounting=StepAccounting(RunSummary(), stream="s", max_steps=0, rank=0)).restore()


# -- composed -------------------------------------------------------------------------
def test_a_resumed_job_counts_no_drop_at_the_restart(tmp_path):
    cfg = _job(tmp_path, checkpoint=str(tmp_path / "s.ckpt"))
    run_job(cfg, SerialComm(), reader_factory=lambda *a: MemoryStepReader([_field(s) for s in range(3)]))
    resumed = run_job(cfg, SerialComm(), reader_factory=lambda *a: MemoryStepReader([_field(s) for s in (3, 4, 6)]))
    assert resumed.extras["restored_from"]["last_step"] == 2
    assert (resumed.steps_analyzed, resumed.steps_dropped, resumed.first_step) == (3, 1, 3)
    cat = read_catalog(str(tmp_path / "cat.bp"))
    assert [int(r["step"]) for r in cat.steps] == [0, 1, 2, 3, 4, 6]
    assert [int(r["dropped"]) for r in cat.steps] == [0, 0, 0, 0, 0, 1]
    assert [int(r["index"]) for r in cat.steps] == list(range(6))
