"""The halo read: each piece with its neighbours' cells, on MemoryStepReader and on a real BP5 file.

``Block.padded`` must equal the slice of the whole field around the piece
(``np.take(..., mode="wrap")`` on periodic axes, clipped at the edge on open
ones) for uneven writer blocks, 2D and 3D, any number of reader ranks; no halo
keeps the plain read.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from intransit.adapters.blocks import wrap_segments
from intransit.adapters.reader import AdiosStepReader, MemoryStepReader, StepStatus

CASES = [
    # shape, uneven cuts per axis, halo, periodic
    ((23, 31), ([0, 5, 14, 23], [0, 9, 31]), (3, 4), (True, False)),
    ((23, 31), ([0, 5, 14, 23], [0, 9, 31]), (6, 2), (False, True)),
    ((23, 31), ([0, 23], [0, 2, 31]), (5, 5), (True, True)),       # halo wider than a block
    ((9, 12, 10), ([0, 4, 9], [0, 7, 12], [0, 3, 10]), (2, 3, 4), (True, False, True)),
    ((9, 12, 10), ([0, 9], [0, 5, 12], [0, 10]), (11, 1, 2), (True, True, False)),  # halo > axis: wraps twice
]


def grid(shape, cuts):
    """Uneven writer blocks: (start, count) of every cell of the grid of cuts."""
    out = []
    for idx in itertools.product(*[range(len(c) - 1) for c in cuts]):
        start = tuple(int(cuts[k][i]) for k, i in enumerate(idx))
        count = tuple(int(cuts[k][i + 1] - cuts[k][i]) for k, i in enumerate(idx))
        out.append((start, count))
    return out


def expected_padded(field, block, halo, periodic):
    """The whole field's cells around a block: wrapped on periodic axes, clipped on open ones."""
    out = field
    lo_hi = []
    for k, (s, c, h, p) in enumerate(zip(block.start, block.count, halo, periodic)):
        n = field.shape[k]
        a = h if p else min(h, s)
        b = h if p else min(h, n - s - c)
        out = np.take(out, np.arange(s - a, s + c + b), axis=k, mode="wrap")
        lo_hi.append((a, b))
    return out, tuple(x[0] for x in lo_hi), tuple(x[1] for x in lo_hi)


def check_blocks(field, blocks, halo, periodic):
    covered = np.zeros(field.shape, int)
    for b in blocks:
        want, h_lo, h_hi = expected_padded(field, b, halo, periodic)
        assert b.halo_lo == h_lo and b.halo_hi == h_hi
        np.testing.assert_array_equal(b.padded, want)
        box = tuple(slice(s, s + c) for s, c in zip(b.start, b.count))
        np.testing.assert_array_equal(b.data, field[box])
        assert np.shares_memory(b.data, b.padded), "data must be a view into padded"
        covered[box] += 1
    return covered


def test_wrap_segments_cover_the_range():
    assert wrap_segments(-3, 10, 8) == [(5, 3, 0), (0, 7, 3)]
    assert wrap_segments(2, 4, 8) == [(2, 4, 0)]
    assert wrap_segments(-2, 12, 8) == [(6, 2, 0), (0, 8, 2), (0, 2, 10)]
    for lo, n, length in [(-11, 5, 27), (3, 4, 9)]:
        idx = np.concatenate([np.arange(s, s + r) for s, r, _ in wrap_segments(lo, length, n)])
        np.testing.assert_array_equal(idx, np.arange(lo, lo + length) % n)


@pytest.mark.parametrize("shape,cuts,halo,periodic", CASES)
@pytest.mark.parametrize("n_ranks", [1, 2, 3])
def test_memory_reader_halo_matches_the_whole_field(shape, cuts, halo, periodic, n_ranks):
    field = np.random.default_rng(1).standard_normal(shape)
    raw = [(s, field[tuple(slice(a, a + c) for a, c in zip(s, cnt))].copy()) for s, cnt in grid(shape, cuts)]
    covered = np.zeros(shape, int)
    for rank in range(n_ranks):
        r = MemoryStepReader([(0, {"f": (shape, raw)})], rank=rank, n_ranks=n_ranks)
        assert r.begin_step(1.0) == StepStatus.OK
        got_shape, blocks = r.read("f", halo=halo, periodic=periodic)
        assert got_shape == shape
        covered += check_blocks(field, blocks, halo, periodic)
        r.begin_step(1.0)
    assert (covered == 1).all()


def test_memory_reader_without_halo_is_unchanged():
    field = np.arange(60.0).reshape(6, 10)
    raw = [((0, 0), field[:, :4].copy()), ((0, 4), field[:, 4:].copy())]
    for halo in (None, (0, 0)):
        r = MemoryStepReader([(0, {"f": ((6, 10), raw)})])
        r.begin_step(1.0)
        _, blocks = r.read("f", halo=halo, periodic=(True, True))
        assert [b.padded for b in blocks] == [None, None]
        assert [b.halo_lo for b in blocks] == [(), ()]
        np.testing.assert_array_equal(blocks[0].data, field[:, :4])


def test_bad_halo_is_refused_by_name():
    r = MemoryStepReader([(0, {"f": ((4, 4), [((0, 0), np.zeros((4, 4)))])})])
    r.begin_step(1.0)
    with pytest.raises(ValueError, match="halo must be 2 non-negative"):
        r.read("f", halo=(1,))
    with pytest.raises(ValueError, match="periodic must be 2 booleans"):
        r.read("f", halo=(1, 1), periodic=(True,))


def write_bp5(path, fields, shape, blocks):
    import adios2
    from adios2 import bindings

    adios = adios2.Adios()
    io = adios.declare_io("w")
    io.set_engine("BP5")
    var = io.define_variable("f", fields[0], list(shape), [0] * len(shape), list(blocks[0][1]))
    engine = io.open(path, bindings.Mode.Write)
    for field in fields:
        engine.begin_step()
        for start, count in blocks:
            var.set_selection([list(start), list(count)])
            box = tuple(slice(s, s + c) for s, c in zip(start, count))
            engine.put(var, np.ascontiguousarray(field[box]), bindings.Mode.Sync)
        engine.end_step()
    engine.close()


@pytest.mark.parametrize("shape,cuts,halo,periodic", CASES)
def test_bp5_halo_read_matches_the_whole_field(tmp_path, shape, cuts, halo, periodic):
    rng = np.random.default_rng(7)
    fields = [rng.standard_normal(shape) for _ in range(3)]
    path = os.path.join(tmp_path, "halo.bp")
    write_bp5(path, fields, shape, grid(shape, cuts))
    for n_ranks in (1, 2, 3):
        readers = [AdiosStepReader(stream=path, xml=None, io_name=f"r{r}", rank=r, n_ranks=n_ranks, engine="BP5")
                   for r in range(n_ranks)]
        for field in fields:
            covered = np.zeros(shape, int)
            for r in readers:
                assert r.begin_step(5.0) == StepStatus.OK
                got_shape, blocks = r.read("f", halo=halo, periodic=periodic)
                assert got_shape == shape
                covered += check_blocks(field, blocks, halo, periodic)
                # the plain read in the same step: no halo, same own cells
                _, plain = r.read("f")
                assert all(b.padded is None for b in plain)
                for b in plain:
                    np.testing.assert_array_equal(b.data, field[tuple(slice(s, s + c) for s, c in zip(b.start, b.count))])
                r.end_step()
            assert (covered == 1).all()
        for r in readers:
            r.close()
