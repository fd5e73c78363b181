"""The product sink: every rank writes its share of a global array into its own BP5 file; read back as
one global array (M = 1, 2, 3 ranks, uneven blocks); the running_mean analyzer through the job, with a
restart, and under mpiexec over a real BP5 stream."""

from __future__ import annotations

import os

import numpy as np
import pytest

from intransit.adapters.blocks import BlockInfo, assign_pieces
from intransit.adapters.reader import MemoryStepReader
from intransit.analyzers.product import Product
from intransit.service import config
from intransit.service.comm import SerialComm
from intransit.service.products import ProductSink, product_folder, product_steps, read_product
from intransit.service.runner import run_job
from tests import procs

SHAPE = (16, 12)
#: Uneven row blocks, one of them also cut in columns: N = 4 blocks.
BLOCKS = [((0, 0), (5, 12)), ((5, 0), (2, 7)), ((5, 7), (2, 5)), ((7, 0), (9, 12))]


def field(step: int) -> np.ndarray:
    return np.random.default_rng(step).standard_normal(SHAPE) + step


def shares(n_ranks: int) -> list[list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    """Each rank's boxes, as the reader assigns the writer's blocks (pieces of blocks included)."""
    infos = [BlockInfo(i, s, c) for i, (s, c) in enumerate(BLOCKS)]
    return [[(p.start, p.count) for p in mine] for mine in assign_pieces(infos, n_ranks, ())]


@pytest.mark.parametrize("n_ranks", [1, 2, 3])
def test_shares_of_m_ranks_read_back_as_one_global_array(tmp_path, n_ranks):
    folder = str(tmp_path / "products")
    boxes = shares(n_ranks)
    sinks = [ProductSink(folder, r, n_ranks) for r in range(n_ranks)]
    for step in (0, 3, 4):
        f = field(step)
        for r, sink in enumerate(sinks):
            blocks = [(s, f[s[0]:s[0] + c[0], s[1]:s[1] + c[1]]) for s, c in boxes[r]]
            sink.write(step, [("stats", Product("field", SHAPE, blocks)),
                              ("stats", Product("twice", SHAPE, [(s, 2 * b) for s, b in blocks]))])
    for sink in sinks:
        sink.close()
    assert sorted(os.listdir(folder)) == [f"rank{r}.bp" for r in range(n_ranks)]
    assert product_steps(folder, "stats/field") == [0, 3, 4]
    for step in (0, 3, 4):
        np.testing.assert_array_equal(read_product(folder, "stats/field", step), field(step))
    np.testing.assert_array_equal(read_product(folder, "stats/twice"), 2 * field(4))  # default: the last step


def test_a_rank_without_blocks_writes_its_step_and_the_array_still_tiles(tmp_path):
    folder = str(tmp_path / "p")
    f = field(1)
    full, empty = ProductSink(folder, 0, 2), ProductSink(folder, 1, 2)
    full.write(7, [("a", Product("x", SHAPE, [((0, 0), f)]))])
    empty.write(7, [("a", Product("x", SHAPE, []))])
    full.close(), empty.close()
    np.testing.assert_array_equal(read_product(folder, "a/x", 7), f)


def test_blocks_that_do_not_tile_the_array_are_refused(tmp_path):
    folder = str(tmp_path / "p")
    sink = ProductSink(folder, 0, 1)
    f = field(0)
    sink.write(0, [("a", Product("x", SHAPE, [((0, 0), f[:5])]))])  # rows 5.. missing
    sink.write(1, [("a", Product("x", SHAPE, [((0, 0), f), ((0, 0), f[:2])]))])  # rows 0-1 twice
    sink.close()
    with pytest.raises(ValueError, match=r"do not tile .* \(132 cells written by no rank, 0 by more than one\)"):
        read_product(folder, "a/x", 0)
    with pytest.raises(ValueError, match=r"0 cells written by no rank, 24 by more than one"):
        read_product(folder, "a/x", 1)
    with pytest.raises(KeyError, match="no product 'a/y'"):
        read_product(folder, "a/y")


def test_product_definition_is_checked():
    with pytest.raises(ValueError, match="lies outside the global shape"):
        Product("x", (4, 4), [((2, 0), np.zeros((3, 4)))])
    with pytest.raises(ValueError, match="without '/'"):
        Product("a/b", (4, 4))


def test_a_fresh_run_removes_the_files_of_ranks_it_does_not_have(tmp_path):
    folder = str(tmp_path / "p")
    for r in range(3):
        sink = ProductSink(folder, r, 3)
        sink.write(0, [("a", Product("x", SHAPE, []))])
        sink.close()
    ProductSink(folder, 0, 2)
    assert sorted(os.listdir(folder)) == ["rank1.bp"]  # rank 0's own goes too; rank 1's is rank 1's to replace


# -- running_mean through the job ---------------------------------------------------
def mem_steps(steps) -> list:
    out = []
    for s in steps:
        f = field(s)
        out.append((s, {"density": (SHAPE, [(st, f[st[0]:st[0] + c[0], st[1]:st[1] + c[1]]) for st, c in BLOCKS])}))
    return out


def sequential_mean(steps) -> np.ndarray:
    acc = np.zeros(SHAPE)
    for s in steps:
        acc += field(s)
    return acc / len(steps)


def mean_job(tmp_path, **output) -> config.JobConfig:
    return config.from_dict({
        "stream": {"name": "mem", "variables": ["density"], "step_timeout_s": 1},
        "analyzers": [{"type": "running_mean", "name": "avg", "params": {"every": 2}}],
        "output": {"catalog": str(tmp_path / "cat.bp"), **output},
    })


def test_running_mean_job_writes_the_mean_every_k_steps_and_at_the_end(tmp_path):
    cfg = mean_job(tmp_path)
    summary = run_job(cfg, SerialComm(), reader_factory=lambda *a: MemoryStepReader(mem_steps(range(5))))
    assert summary.steps_analyzed == 5
    folder = product_folder(cfg.output)
    assert folder == str(tmp_path / "cat.products")
    assert product_steps(folder, "avg/mean") == [1, 3, 4]  # after 2 and 4 steps, and the last
    np.testing.assert_array_equal(read_product(folder, "avg/mean", 1), sequential_mean(range(2)))
    np.testing.assert_array_equal(read_product(folder, "avg/mean"), sequential_mean(range(5)))


def test_running_mean_continues_after_a_restart(tmp_path):
    cfg = mean_job(tmp_path, checkpoint=str(tmp_path / "j.ckpt"), products=str(tmp_path / "out"))
    run_job(cfg, SerialComm(), reader_factory=lambda *a: MemoryStepReader(mem_steps(range(3))))
    run_job(cfg, SerialComm(), reader_factory=lambda *a: MemoryStepReader(mem_steps(range(3, 6))))
    folder = str(tmp_path / "out")
    assert product_steps(folder, "avg/mean") == [1, 2, 3, 5]  # the first run's products kept (appended)
    np.testing.assert_array_equal(read_product(folder, "avg/mean", 2), sequential_mean(range(3)))
    np.testing.assert_array_equal(read_product(folder, "avg/mean"), sequential_mean(range(6)))


def test_products_key_must_not_be_the_catalog(tmp_path):
    with pytest.raises(config.ConfigError, match="products must be a folder other than the catalog"):
        mean_job(tmp_path, products=str(tmp_path / "cat.bp"))
    with pytest.raises(config.ConfigError, match="products must be a string"):
        mean_job(tmp_path, products=3)


# -- real ranks over a real BP5 stream -------------------------------------------------
def write_bp5(path: str, steps: int) -> None:
    import adios2
    from adios2 import bindings

    adios = adios2.Adios()
    io = adios.declare_io("SimulationOutput")
    io.set_engine("BP5")
    var = io.define_variable("density", np.zeros((1, 1)), list(SHAPE), [0, 0], [1, 1])
    engine = io.open(path, bindings.Mode.Write)
    for s in range(steps):
        f = field(s)
        engine.begin_step()
        for st, c in BLOCKS:
            var.set_selection([list(st), list(c)])
            engine.put(var, np.ascontiguousarray(f[st[0]:st[0] + c[0], st[1]:st[1] + c[1]]), bindings.Mode.Sync)
        engine.end_step()
    engine.close()


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("n_ranks", [2, 3])
def test_running_mean_of_mpi_ranks_is_the_global_mean(tmp_path, n_ranks):
    folder = str(tmp_path)
    stream = os.path.join(folder, "field.bp")
    write_bp5(stream, 6)
    job = procs.write_job(folder, stream, engine="BP5", step_timeout_s=20, open_timeout_s=20,
                          analyzers='[[analyzers]]\ntype = "running_mean"\nname = "avg"\nparams = { every = 4 }\n')
    proc = procs.start_analytics(folder, job, n_ranks)
    rc = procs.wait(proc, 240, log=os.path.join(folder, "analytics.log"))
    assert rc == 0, procs.read_log(folder, "analytics.log")[-3000:]
    products = os.path.join(folder, "catalog.products")
    assert sorted(os.listdir(products)) == [f"rank{r}.bp" for r in range(n_ranks)]
    assert product_steps(products, "avg/mean") == [3, 5]
    np.testing.assert_array_equal(read_product(products, "avg/mean", 3), sequential_mean(range(4)))
    np.testing.assert_array_equal(read_product(products, "avg/mean"), sequential_mean(range(6)))
