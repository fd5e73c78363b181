"""The product sink: every rank writes its share of field-sized products; read back as one global array.

Layout: a folder beside the catalog (``[output] products``; by default the
catalog's path with ``.bp`` replaced by ``.products``) holding one BP5 file
per analytics rank, ``rank<r>.bp``.  One BP5 step per step at which products
were due, on every rank alike, with ``step`` (int64, the writer step) and,
per product, the variable ``<analyzer>/<product>``: a global array of the
product's global shape into which the rank put each of its blocks with its
start and count.  (With the serial ADIOS2 wheel ranks cannot share one BP5
file; one file per rank is what BP5's own subfiles are, and no field-sized
data travels between ranks.)  ``bpls`` reads each file; ``read_product``
assembles every rank's blocks into the global array and checks that they
tile it: each cell exactly once.

Contract (docs/stages.md): ``write(step, products)`` on every rank with what
``Pipeline.products`` returned (nothing due: no write, no file); ``close``
once.  Restored jobs append to their rank's file.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from typing import Any, Sequence

import numpy as np

from intransit.adapters.reader import ADIOS_DTYPES
from intransit.analyzers.product import Product
from intransit.service.config import OutputConfig

log = logging.getLogger(__name__)

_RANK_FILE = re.compile(r"rank(\d+)\.bp$")


def product_folder(output: OutputConfig) -> str:
    """Where a job's products go: ``[output] products``, else beside the catalog."""
    if output.products:
        return output.products
    base = output.catalog[:-3] if output.catalog.endswith(".bp") else output.catalog
    return base + ".products"


def rank_file(folder: str, rank: int) -> str:
    return os.path.join(folder, f"rank{rank}.bp")


class ProductSink:
    """One rank's product file, opened at the first product due."""

    def __init__(self, folder: str, rank: int, size: int, *, append: bool = False) -> None:
        self.folder = folder
        self.rank = rank
        self.path = rank_file(folder, rank)
        self.append = append and os.path.isdir(self.path)
        if not self.append:
            # A fresh run: this rank's file from an earlier run goes; rank 0 also removes the
            # files of ranks this job does not have (an earlier run with more ranks).
            if os.path.isdir(self.path):
                shutil.rmtree(self.path)
            if rank == 0:
                for other in glob.glob(os.path.join(glob.escape(folder), "rank*.bp")):
                    m = _RANK_FILE.search(other)
                    if m and int(m.group(1)) >= size:
                        shutil.rmtree(other, ignore_errors=True)
        self._engine: Any = None
        self._io: Any = None
        self._vars: dict[str, Any] = {}
        self.steps_written = 0

    def _open(self) -> None:
        import adios2
        from adios2 import bindings

        os.makedirs(self.folder, exist_ok=True)
        self._sync = bindings.Mode.Sync
        self._adios = adios2.Adios()
        self._io = self._adios.declare_io(f"intransit_products_{self.rank}")
        self._io.set_engine("BP5")
        self._engine = self._io.open(self.path, bindings.Mode.Append if self.append else bindings.Mode.Write)
        self._step_var = self._io.define_variable("step", np.zeros(1, dtype=np.int64), [1], [0], [1])

    def write(self, step: int, products: Sequence[tuple[str, Product]]) -> None:
        """One BP5 step with this rank's shares of ``products`` (``(analyzer name, Product)`` pairs)."""
        if not products:
            return
        if self._engine is None:
            self._open()
        engine = self._engine
        engine.begin_step()
        engine.put(self._step_var, np.array([step], dtype=np.int64), self._sync)
        for analyzer, product in products:
            name = f"{analyzer}/{product.name}"
            shape = [int(x) for x in product.global_shape]
            for start, data in product.blocks:
                data = np.ascontiguousarray(data)
                var = self._vars.get(name)
                if var is None:
                    var = self._io.inquire_variable(name) if self.append else None
                    if var is None:
                        var = self._io.define_variable(name, data, shape, list(start), list(data.shape))
                    self._vars[name] = var
                var.set_shape(shape)
                var.set_selection([list(start), list(data.shape)])
                engine.put(var, data, self._sync)
        engine.end_step()
        self.steps_written += 1

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def _rank_files(folder: str) -> list[str]:
    files = [(int(m.group(1)), p) for p in glob.glob(os.path.join(glob.escape(folder), "rank*.bp"))
             if (m := _RANK_FILE.search(p))]
    if not files:
        raise FileNotFoundError(f"no product files (rank<r>.bp) in {folder!r}")
    return [p for _, p in sorted(files)]


def _each_step(path: str):
    """Yield ``(writer step, io, engine)`` for every BP5 step of one rank file."""
    import adios2
    from adios2 import bindings

    adios = adios2.Adios()
    io = adios.declare_io("intransit_products_reader")
    io.set_engine("BP5")
    engine = io.open(path, bindings.Mode.Read)
    try:
        while engine.impl.BeginStep(bindings.StepMode.Read, 10.0) == bindings.StepStatus.OK:
            buf = np.zeros(1, dtype=np.int64)
            engine.get(io.inquire_variable("step"), buf, bindings.Mode.Sync)
            yield int(buf[0]), io, engine
            engine.end_step()
    finally:
        engine.close()


def product_steps(folder: str, name: str) -> list[int]:
    """The writer steps at which product ``name`` (``<analyzer>/<product>``) was written by some rank."""
    steps: set[int] = set()
    for path in _rank_files(folder):
        for step, io, _engine in _each_step(path):
            if name in io.available_variables():
                steps.add(step)
    return sorted(steps)


def read_product(folder: str, name: str, step: int | None = None) -> np.ndarray:
    """Product ``name`` (``<analyzer>/<product>``) at writer ``step`` (default: the last) as one global array.

    Every rank's blocks are put in place; a cell no rank wrote, or two ranks
    wrote, is an error (the shares must tile the array).
    """
    from adios2 import bindings

    if step is None:
        steps = product_steps(folder, name)
        if not steps:
            raise KeyError(f"no product {name!r} in {folder!r}")
        step = steps[-1]
    out: np.ndarray | None = None
    cover: np.ndarray | None = None
    for path in _rank_files(folder):
        for s, io, engine in _each_step(path):
            if s != step or name not in io.available_variables():
                continue
            var = io.inquire_variable(name)
            shape = tuple(int(x) for x in var.shape())
            if out is None:
                out = np.zeros(shape, dtype=ADIOS_DTYPES.get(var.type(), np.float64))
                cover = np.zeros(shape, dtype=np.int16)
            elif out.shape != shape:
                raise ValueError(f"product {name!r} at step {step}: {path} has global shape {shape}, "
                                 f"another rank {out.shape}")
            for info in engine.blocks_info(name, engine.current_step()):
                start = [int(x) for x in info["Start"].split(",") if x != ""]
                count = [int(x) for x in info["Count"].split(",") if x != ""]
                var.set_selection([start, count])
                buf = np.empty(count, dtype=out.dtype)
                engine.get(var, buf, bindings.Mode.Sync)
                box = tuple(slice(a, a + c) for a, c in zip(start, count))
                out[box] = buf
                cover[box] += 1
    if out is None or cover is None:
        raise KeyError(f"no product {name!r} at step {step} in {folder!r}")
    if cover.min() != 1 or cover.max() != 1:
        missing, twice = int((cover == 0).sum()), int((cover > 1).sum())
        raise ValueError(f"product {name!r} at step {step}: the ranks' blocks do not tile the global array "
                         f"{out.shape} ({missing} cells written by no rank, {twice} by more than one)")
    return out
