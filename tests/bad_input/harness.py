"""How a bad-input case is laid out on disk, run as a real ``intransit`` process, and judged.

A case (``tests/bad_input/cases.py``) is data: the command line, the files
it needs (text, bytes, a BP5 field written here with ADIOS2, a catalog
written by ``CatalogWriter`` and then damaged), and the key words its error
must contain.  ``run_case`` lays it out in a folder, runs the CLI with a
timeout (a hang is an outcome, not a stuck test), and ``judge`` says what
happened: ``clear`` (non-zero exit, every key word, no traceback),
``traceback``, ``hang``, ``accepted`` (exit 0: the input was not refused) or
``unclear`` (refused without a traceback, but a key word is missing).
benchmarks/faults.py imports ``CASES``, ``run_case`` and ``judge`` to count.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Mapping, Union

import numpy as np

INTRANSIT = os.path.join(os.path.dirname(sys.executable), "intransit")


@dataclasses.dataclass(frozen=True)
class Field:
    """A BP5 file holding one variable for a few steps, written by one writer in the given blocks.

    ``shape`` None writes a local array (no global shape); ``blocks`` are
    (start, count) pairs, None for one block covering the shape; ``later``
    is the shape from step 1 on (a shape change mid-run, one block);
    ``kind`` ``"value"`` writes a global single value, ``"string"`` a string.
    """

    shape: tuple[int, ...] | None = (16, 16)
    blocks: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] | None = None
    dtype: str = "float64"
    steps: int = 3
    variable: str = "density"
    later: tuple[int, ...] | None = None
    #: Blocks from step 1 on (with ``later`` or the first shape): holes that appear mid-run.
    later_blocks: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] | None = None
    kind: str = "array"
    #: Damage done to the written file (see ``damage``), None for none.
    damage: str | None = None

    def write(self, path: str) -> None:
        import adios2
        from adios2 import bindings

        rng = np.random.default_rng(7)
        io = adios2.Adios().declare_io("bad_input_writer")
        io.set_engine("BP5")
        engine = io.open(path, bindings.Mode.Write)
        if self.kind == "string":
            var = io.define_variable(self.variable)
            for _ in range(self.steps):
                engine.begin_step()
                engine.put(var, "not a field")
                engine.end_step()
            engine.close()
            return
        if self.kind == "value":
            var = io.define_variable(self.variable, np.zeros(1), [], [], [])
            for s in range(self.steps):
                engine.begin_step()
                engine.put(var, np.array([float(s)]), bindings.Mode.Sync)
                engine.end_step()
            engine.close()
            return
        dtype = np.dtype(self.dtype)

        def data(count: tuple[int, ...]) -> np.ndarray:
            values = rng.normal(100.0, 10.0, size=count)
            if dtype.kind == "c":
                return (values + 1j * values).astype(dtype)
            return values.astype(dtype)

        if self.shape is None:  # a local array: blocks with a count and no global shape
            count = (16, 16)
            var = io.define_variable(self.variable, data(count), [], [], list(count))
            for _ in range(self.steps):
                engine.begin_step()
                engine.put(var, data(count), bindings.Mode.Sync)
                engine.end_step()
            engine.close()
            return
        blocks = self.blocks or ((tuple(0 for _ in self.shape), tuple(self.shape)),)
        first = blocks[0]
        var = io.define_variable(self.variable, data(first[1]), list(self.shape), list(first[0]), list(first[1]))
        for s in range(self.steps):
            engine.begin_step()
            step_blocks = blocks
            if s >= 1 and (self.later is not None or self.later_blocks is not None):
                shape = self.later or self.shape
                var.set_shape(list(shape))
                step_blocks = self.later_blocks or (((0,) * len(shape), tuple(shape)),)
            for start, count in step_blocks:
                var.set_selection([list(start), list(count)])
                engine.put(var, data(count), bindings.Mode.Sync)
            engine.end_step()
        engine.close()
        damage(path, self.damage)


def damage(path: str, how: str | None) -> None:
    """Damage a BP5 folder as a crash or a partial copy would: ``md.idx removed``, ``md.0 truncated``, ``data.0 emptied``."""
    if how == "md.idx removed":
        os.remove(os.path.join(path, "md.idx"))
    elif how == "md.0 truncated":
        with open(os.path.join(path, "md.0"), "r+b") as fh:
            fh.truncate(0)
    elif how == "data.0 emptied":
        with open(os.path.join(path, "data.0"), "r+b") as fh:
            fh.truncate(0)
    elif how is not None:
        raise ValueError(f"unknown damage {how!r}")


@dataclasses.dataclass(frozen=True)
class Catalog:
    """A catalog written by ``CatalogWriter`` (4 steps), then damaged as ``damage`` says (None: intact)."""

    damage: str | None = None

    def write(self, path: str) -> None:
        from intransit.analyzers.base import StepResult
        from intransit.service.catalog import CatalogWriter

        writer = CatalogWriter(path, {"blobs": ("x", "y")}, flush_interval_s=0.0)
        for i in range(4):
            writer.write_step(step=i, index=i, dropped=0, seconds=1e-3,
                              results={"blobs": StepResult(events=[{"x": 1.0, "y": float(i)}], scores={"n": 1.0})})
        writer.close()
        damage(path, self.damage)


Content = Union[str, bytes, Field, Catalog, None]


@dataclasses.dataclass(frozen=True)
class Case:
    """One malformed input: what to run, what to lay out first, and what its error must say.

    ``argv`` follows ``intransit``; in ``argv`` and in text files ``{dir}``
    is the case's folder and ``{ro}`` a folder this process cannot write.
    ``files`` maps a relative path to its content (None: an empty folder).
    ``words`` must each appear in stderr (case-insensitive).  ``code`` is
    the exit status wanted (None: any non-zero).  ``holder``: a job file
    of the case started first as a real ``intransit run``, which holds the
    catalog lock while the case runs (two jobs on one catalog).
    """

    name: str
    category: str
    argv: tuple[str, ...]
    files: Mapping[str, Content] = dataclasses.field(default_factory=dict)
    words: tuple[str, ...] = ()
    code: int | None = None
    timeout_s: float = 60.0
    holder: str | None = None


@dataclasses.dataclass
class Outcome:
    returncode: int | None  # None: killed at the timeout (a hang)
    stdout: str
    stderr: str
    seconds: float
    holder_pid: int | None = None


def readonly_folder(root: str) -> str:
    """A folder nobody here can create files in: mode 0500 for a user; under /sys for root (root ignores modes)."""
    if os.geteuid() == 0:
        return "/sys/intransit-readonly"
    path = os.path.join(root, "readonly")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o500)
    return path


def _expand(text: str, folder: str, ro: str) -> str:
    return text.replace("{dir}", folder).replace("{ro}", ro)


def lay_out(case: Case, folder: str) -> str:
    """Write the case's files under ``folder``; returns the read-only folder's path."""
    ro = readonly_folder(folder)
    for rel, content in case.files.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if content is None:
            os.makedirs(path, exist_ok=True)
        elif isinstance(content, bytes):
            with open(path, "wb") as fh:
                fh.write(content)
        elif isinstance(content, str):
            with open(path, "w") as fh:
                fh.write(_expand(content, folder, ro))
        else:
            content.write(path)
    return ro


def _lock_holder(path: str) -> int | None:
    """The pid written in a lock file that some process holds locked now, else None."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 64, 0).decode(errors="replace").split()
            return int(text[0]) if text and text[0].isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _communicate(proc: subprocess.Popen, timeout_s: float) -> tuple[int | None, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err


def run_case(case: Case, folder: str, *, debug: bool = False) -> Outcome:
    """Lay the case out in ``folder`` and run it (with ``--debug`` after the subcommand if asked)."""
    os.makedirs(folder, exist_ok=True)
    ro = lay_out(case, folder)
    argv = [_expand(a, folder, ro) for a in case.argv]
    if debug and argv and argv[0] in ("run", "report"):
        argv.insert(1, "--debug")
    holder = None
    holder_pid = None
    env = dict(os.environ, PYTHONFAULTHANDLER="")
    try:
        if case.holder is not None:
            holder = subprocess.Popen([INTRANSIT, "run", os.path.join(folder, case.holder)], cwd=folder,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            lock = os.path.join(folder, "catalog.bp.lock")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and holder.poll() is None:
                holder_pid = _lock_holder(lock)
                if holder_pid is not None:
                    break
                time.sleep(0.05)
        t0 = time.monotonic()
        proc = subprocess.Popen([INTRANSIT, *argv], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, env=env)
        code, out, err = _communicate(proc, case.timeout_s)
        return Outcome(code, out, err, time.monotonic() - t0, holder_pid)
    finally:
        if holder is not None and holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(10)
        for leftover in ("readonly",):
            path = os.path.join(folder, leftover)
            if os.path.isdir(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)


def missing_words(case: Case, outcome: Outcome) -> list[str]:
    text = outcome.stderr.lower()
    words = list(case.words)
    if case.holder is not None:
        words.append(f"pid {outcome.holder_pid}")
    return [w for w in words if w.lower() not in text]


def judge(case: Case, outcome: Outcome) -> str:
    """``clear``, ``traceback``, ``hang``, ``accepted`` or ``unclear`` (see the module docstring)."""
    if outcome.returncode is None:
        return "hang"
    if "Traceback (most recent call last)" in outcome.stderr:
        return "traceback"
    if outcome.returncode == 0:
        return "accepted"
    if case.code is not None and outcome.returncode != case.code:
        return "unclear"
    return "clear" if not missing_words(case, outcome) else "unclear"
