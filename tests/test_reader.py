"""AdiosStepReader on real BP5 files: a writer decomposition that changes between
steps (read by box, layout re-derived); local arrays refused by name; the wait for the
first SST step (zero-timeout polls, on a stand-in engine)."""

from __future__ import annotations

import os
import time
import types

import numpy as np
import pytest

from intransit.adapters import reader as reader_mod
from intransit.adapters.reader import AdiosStepReader, StepStatus


def write_steps(path: str, fields: list[np.ndarray], splits: list[int], local: bool = False) -> None:
    """One step per field, written as ``splits[i]`` row blocks of a global (or local) array."""
    import adios2
    from adios2 import bindings

    adios = adios2.Adios()
    io = adios.declare_io("w")
    io.set_engine("BP5")
    ny, nx = fields[0].shape
    rows = np.array_split(np.arange(ny), splits[0])
    if local:
        var = io.define_variable("density", fields[0], [], [], [len(rows[0]), nx])
    else:
        var = io.define_variable("density", fields[0], [ny, nx], [0, 0], [len(rows[0]), nx])
    engine = io.open(path, bindings.Mode.Write)
    for field, n in zip(fields, splits):
        engine.begin_step()
        for r in np.array_split(np.arange(ny), n):
            if local:
                var.set_selection([[], [len(r), nx]])
            else:
                var.set_selection([[int(r[0]), 0], [len(r), nx]])
            engine.put(var, np.ascontiguousarray(field[r[0]:r[-1] + 1]), bindings.Mode.Sync)
        engine.end_step()
    engine.close()


def assemble(shape, blocks) -> np.ndarray:
    out = np.full(shape, np.nan)
    for b in blocks:
        out[tuple(slice(s, s + c) for s, c in zip(b.start, b.count))] = b.data
    return out


@pytest.mark.parametrize("recheck", [1, 3, 64])
def test_changed_decomposition_is_read_correctly(tmp_path, monkeypatch, recheck):
    monkeypatch.setattr(reader_mod, "LAYOUT_RECHECK_STEPS", recheck)
    rng = np.random.default_rng(3)
    fields = [rng.standard_normal((24, 10)) for _ in range(8)]
    splits = [2, 2, 3, 3, 5, 1, 4, 4]  # the writer changes its blocks between steps
    path = os.path.join(tmp_path, "f.bp")
    write_steps(path, fields, splits)
    got = {0: [], 1: []}
    for rank in (0, 1):
        r = AdiosStepReader(stream=path, xml=None, io_name="r", rank=rank, n_ranks=2, engine="BP5")
        while r.begin_step(5.0) == StepStatus.OK:
            shape, blocks = r.read("density")
            got[rank].append((shape, [(b.start, b.count, b.data.copy()) for b in blocks]))
            r.end_step()
        r.close()
    for i, field in enumerate(fields):
        covered = np.zeros(field.shape, dtype=int)
        for rank in (0, 1):
            shape, blocks = got[rank][i]
            assert shape == field.shape
            for start, count, data in blocks:
                sl = tuple(slice(s, s + c) for s, c in zip(start, count))
                np.testing.assert_array_equal(data, field[sl])
                covered[sl] += 1
        assert (covered == 1).all(), f"step {i}: every cell read exactly once by the two ranks"


def test_one_rank_reading_the_whole_array_does_not_recheck_the_writer_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "LAYOUT_RECHECK_STEPS", 2)
    rng = np.random.default_rng(5)
    fields = [rng.standard_normal((24, 10)) for _ in range(6)]
    path = os.path.join(tmp_path, "w.bp")
    write_steps(path, fields, [2, 3, 5, 1, 4, 4])  # the writer changes its blocks between steps
    r = AdiosStepReader(stream=path, xml=None, io_name="r", engine="BP5")
    calls = []
    blocks_info = r._engine.blocks_info
    r._engine.blocks_info = lambda *a: calls.append(a) or blocks_info(*a)
    got = []
    while r.begin_step(5.0) == StepStatus.OK:
        shape, blocks = r.read("density")
        assert [(b.start, b.count) for b in blocks] == [((0, 0), (24, 10))]  # one selection: the whole array
        got.append(blocks[0].data.copy())
        r.end_step()
    r.close()
    assert len(got) == len(fields)
    for data, field in zip(got, fields):
        np.testing.assert_array_equal(data, field)
    assert len(calls) == 1  # the block list was read once, for the first step


def test_local_arrays_are_refused_with_a_clear_message(tmp_path):
    rng = np.random.default_rng(4)
    path = os.path.join(tmp_path, "l.bp")
    write_steps(path, [rng.standard_normal((12, 6))], [2], local=True)
    r = AdiosStepReader(stream=path, xml=None, io_name="r", engine="BP5")
    assert r.begin_step(5.0) == StepStatus.OK
    with pytest.raises(reader_mod.StreamError, match="local array.*global arrays.*shape"):
        r.read("density")
    r.close()


class _FakeImpl:
    """An engine whose BeginStep is NotReady ``not_ready`` times, then OK; records each timeout."""

    def __init__(self, not_ready: int) -> None:
        self.not_ready = not_ready
        self.timeouts: list[float] = []

    def BeginStep(self, mode, timeout):  # noqa: N802 (ADIOS2's name)
        from adios2 import bindings

        self.timeouts.append(timeout)
        if len(self.timeouts) <= self.not_ready:
            return bindings.StepStatus.NotReady
        return bindings.StepStatus.OK


def _polling_reader(not_ready: int) -> AdiosStepReader:
    from adios2 import bindings

    reader = object.__new__(AdiosStepReader)  # the wait logic only: no stream behind it
    reader._bindings = bindings
    reader._engine = types.SimpleNamespace(impl=_FakeImpl(not_ready))
    reader._poll_waits = True
    reader.stream = "fake"
    return reader


def test_first_step_is_awaited_by_zero_timeout_polls_then_sst_waits_itself():
    reader = _polling_reader(not_ready=4)
    assert reader.begin_step(30.0) is StepStatus.OK
    assert reader._engine.impl.timeouts == [0.0] * 5  # never SST's timed wait for the first step
    assert reader.begin_step(30.0) is StepStatus.OK
    assert reader._engine.impl.timeouts[-1] == 30.0  # later steps: one blocking wait


def test_polling_for_the_first_step_times_out():
    reader = _polling_reader(not_ready=10**9)
    t = time.monotonic()
    assert reader.begin_step(0.05) is StepStatus.TIMEOUT
    assert 0.05 <= time.monotonic() - t < 1.0
    assert set(reader._engine.impl.timeouts) == {0.0}
