"""The event catalog: ADIOS2 BP5, written by rank 0.

Layout (readable by ``bpls`` and by ``read_catalog``).  One BP5 step holds a
*batch* of k ≥ 1 consecutive analyzed steps; every per-step variable is a 1-D
array with one entry per analyzed step in the batch:

* ``step`` (int64): the simulation's step number (ADIOS2 writer step);
  ``index`` (int64): our loop index; ``dropped`` (int64): writer steps we
  missed since the previous analyzed one; ``seconds`` (float64): step time;
  runner extras such as ``wait_seconds`` and ``steering/seq``.
* per analyzer ``<name>/failed`` (int64, 1 on a step where it raised) and
  ``<name>/n_events`` (int64); ``<name>/scores/<score>`` (float64).
* per analyzer ``<name>/events``: float64 (Σ n_events, n_fields), the batch's
  rows stacked in step order (``n_events`` says how many belong to each step),
  its column names in the attribute ``<name>/fields``; absent from a BP5 step
  with no events.

Every step in one BP5 step has the same columns: a step where an analyzer
failed (it has no scores that step) or whose scores differ goes to a
BP5 step of its own within the same write.

Why batches: a BP5 step of a small pipeline's columns (eight variables) costs
70–120 µs of the analytics' time on our development machine (~0.9 ms for the
first, which defines the variables), a third of a step when a stream delivers
3000 steps/s (docs/performance.md).  A batch is written as soon as
``flush_interval_s`` has passed since the previous write, so a stream slower
than that gets one BP5 step per analyzed step, as live as before; the runner
also flushes when no step is ready (at most every 20 ms, ``flush_when_idle``),
before a checkpoint and at the end.
Catalogs written one scalar per step (before batching) read back the same.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from typing import Any, Mapping, Sequence

import numpy as np

from intransit.analyzers.base import StepResult
from intransit.service.errors import OutputPathError

log = logging.getLogger(__name__)

#: Most analyzed steps in one BP5 step (bounds the memory a batch holds).
MAX_BATCH = 1024

#: While the analytics waits for a step, pending steps are written only if the
#: previous write is at least this old (see ``CatalogWriter.flush_when_idle``).
IDLE_FLUSH_MIN_AGE_S = 0.02


class CatalogWriter:
    """Appends analyzed steps to a BP5 catalog, a batch of steps per BP5 step."""

    def __init__(self, path: str, schemas: Mapping[str, Sequence[str]], *, metadata: Mapping[str, str] | None = None,
                 append: bool = False, flush_interval_s: float = 0.25) -> None:
        import adios2
        from adios2 import bindings

        self._sync = bindings.Mode.Sync
        self.path = path
        self.flush_interval_s = float(flush_interval_s)
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        append = append and os.path.isdir(path)
        if os.path.isdir(path) and not append:
            shutil.rmtree(path)  # a catalog is per run, unless a resumed run continues it
        self._adios = adios2.Adios()
        self._io = self._adios.declare_io("intransit_catalog")
        self._io.set_engine("BP5")
        self._schemas = {name: tuple(fields) for name, fields in schemas.items()}
        self._vars: dict[str, Any] = {}
        if not append:  # an appended catalog has its attributes already
            for name, fields in self._schemas.items():
                if fields:
                    self._io.define_attribute(f"{name}/fields", list(fields))
            for key, value in (metadata or {}).items():
                self._io.define_attribute(f"meta/{key}", str(value))
        self._engine = self._io.open(path, bindings.Mode.Append if append else bindings.Mode.Write)
        self.steps_written = 0  # analyzed steps in the file
        self.batches_written = 0  # BP5 steps in the file
        self._last_flush = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        # Per pending step: its layout (which columns) and its values in that order.
        # Columns are built at flush time, one transposition per run of steps with
        # one layout: per step only tuples are made (the hot path at 3000 steps/s).
        self._layouts: list[tuple[Any, ...]] = []
        self._values: list[tuple[Any, ...]] = []
        self._rows: dict[str, list[np.ndarray]] = {}

    @property
    def pending(self) -> int:
        """Analyzed steps held in memory, not yet in the file."""
        return len(self._values)

    def write_step(
        self,
        *,
        step: int,
        index: int,
        dropped: int,
        seconds: float,
        results: Mapping[str, StepResult | None],
        extra: Mapping[str, float] | None = None,
    ) -> None:
        """Add one analyzed step; ``None`` for an analyzer that failed this step."""
        extra = extra or {}
        layout: list[Any] = [tuple(extra)]
        values: list[Any] = [step, index, dropped, float(seconds), *extra.values()]
        for name, fields in self._schemas.items():
            result = results.get(name)
            if result is None:
                layout.append(None)
                values += (1, 0)
                continue
            scores = result.scores
            layout.append(tuple(scores))
            values += (0, len(result.events), *map(float, scores.values()))
            if result.events and fields:
                rows = np.array([[float(ev.get(f, np.nan)) for f in fields] for ev in result.events], dtype=np.float64)
                self._rows.setdefault(name, []).append(rows)
        self._layouts.append(tuple(layout))
        self._values.append(tuple(values))
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval_s or len(self._values) >= MAX_BATCH:
            self.flush()

    def flush_when_idle(self) -> None:
        """Write the pending steps while the analytics waits for a step, at most every 20 ms (or ``flush_interval_s``, if shorter).

        A stream about as fast as the analytics leaves it without a step ready
        every few steps, for microseconds: writing at every such gap made one
        BP5 step per 2–3 analyzed steps at 256² (1,400–2,000 for 4,000 steps)
        and put the write (70–120 µs) between the analytics and its next step.
        With the age rule a fast stream gets at most one idle write per
        ``IDLE_FLUSH_MIN_AGE_S``; a slow one still gets each step written
        before the wait.  If the simulation pauses, only the steps analyzed in
        the last 20 ms before the pause wait for its end (or the job's end).
        """
        if self._values and time.monotonic() - self._last_flush >= min(IDLE_FLUSH_MIN_AGE_S, self.flush_interval_s):
            self.flush()

    def _columns(self, layout: tuple[Any, ...]) -> list[str]:
        names = ["step", "index", "dropped", "seconds", *layout[0]]
        for (name, _fields), scores in zip(self._schemas.items(), layout[1:]):
            names += (f"{name}/failed", f"{name}/n_events")
            names += (f"{name}/scores/{key}" for key in scores or ())
        return names

    def flush(self) -> None:
        """Write the pending steps: one BP5 step per run of steps with the same columns."""
        self._last_flush = time.monotonic()
        if not self._values:
            return
        rows = {name: iter(blocks) for name, blocks in self._rows.items()}
        start = 0
        n = len(self._values)
        while start < n:
            layout = self._layouts[start]
            end = start + 1
            while end < n and self._layouts[end] == layout:
                end += 1
            self._write_batch(layout, self._values[start:end], rows)
            start = end
        self._reset()

    def _write_batch(self, layout: tuple[Any, ...], values: list[tuple[Any, ...]],
                     rows: Mapping[str, Any]) -> None:
        """One BP5 step from steps that share ``layout``; their event rows come next from ``rows``."""
        self._engine.begin_step()
        for name, column in zip(self._columns(layout), zip(*values)):
            # Columns of Python ints become int64 (step, index, counts, steering codes), others float64.
            integral = all(type(x) is int for x in column)
            self._put(name, np.asarray(column, dtype=np.int64 if integral else np.float64))
        position = 4 + len(layout[0])
        for (name, fields), scores in zip(self._schemas.items(), layout[1:]):
            counts = [v[position + 1] for v in values]
            position += 2 + len(scores or ())
            if fields and any(counts):  # one block of rows was kept per step with events
                blocks = [next(rows[name]) for count in counts if count]
                self._put(f"{name}/events", np.concatenate(blocks) if len(blocks) > 1 else blocks[0])
        self._engine.end_step()
        self.steps_written += len(values)
        self.batches_written += 1

    def _put(self, name: str, data: np.ndarray) -> None:
        shape = [int(x) for x in data.shape]
        var = self._vars.get(name)
        if var is None:
            var = self._io.define_variable(name, data, shape, [0] * len(shape), shape)
            self._vars[name] = var
        else:
            var.set_shape(shape)
            var.set_selection([[0] * len(shape), shape])
        self._engine.put(var, data, self._sync)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._engine.close()


@dataclasses.dataclass
class Catalog:
    """A catalog read back: per-step scalars and per-analyzer event tables."""

    steps: list[dict[str, float]]
    events: dict[str, list[dict[str, float]]]
    fields: dict[str, list[str]]
    metadata: dict[str, str]

    def tracks(self, analyzer: str = "tracking") -> dict[int, list[dict[str, float]]]:
        """Rows of a tracking analyzer grouped by track id, in step order."""
        out: dict[int, list[dict[str, float]]] = {}
        for row in self.events.get(analyzer, []):
            out.setdefault(int(row["track_id"]), []).append(row)
        return out


class CatalogError(ValueError):
    """A path that is not a readable catalog, with what is wrong and what would be right."""


#: The files every BP5 catalog directory holds once its first step is written.
_BP5_FILES = ("md.idx", "md.0", "data.0")
#: A BP5 md.0 without steps holds only its header (72 bytes with ADIOS2 2.12); each
#: catalog step adds ~200.  More than this with no step indexed = md.idx cut short.
_EMPTY_MD0_BYTES = 128


def check_catalog_path(path: str) -> None:
    """Refuse what cannot be a catalog before ADIOS2 sees it.

    BP5's reader waits for files it expects to appear (a writer may still be
    creating them), so an empty directory, a missing ``md.idx`` or a plain
    file would otherwise make ``intransit report`` wait instead of answer.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no catalog at {path!r}: give the [output] catalog path of a job that ran")
    if not os.path.isdir(path):
        raise CatalogError(f"{path!r} is a plain file, not a catalog: a catalog is the BP5 directory "
                           f"(holding {', '.join(_BP5_FILES)}) named by a job's [output] catalog")
    missing = [name for name in _BP5_FILES if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise CatalogError(f"{path!r} is not a complete BP5 catalog: {', '.join(missing)} missing "
                           f"(a catalog directory holds {', '.join(_BP5_FILES)}; was it copied in part?)")
    empty = [name for name in ("md.idx", "md.0") if os.path.getsize(os.path.join(path, name)) == 0]
    if (not empty and os.path.getsize(os.path.join(path, "data.0")) == 0
            and os.path.getsize(os.path.join(path, "md.0")) > _EMPTY_MD0_BYTES):
        empty = ["data.0"]  # BP5 would wait for the data its metadata promises
    if empty:
        raise CatalogError(f"catalog {path!r} is truncated: {', '.join(empty)} is empty "
                           f"(the job was killed before its first catalog step, or the copy is incomplete)")


#: Names a BP5 directory may hold (so a folder of anything else is not replaced as if it were a catalog).
_BP5_NAME = re.compile(r"^(md\.idx|md\.\d+|mmd\.\d+|data\.\d+|profiling\.json|\.bpversion)$")


def check_writable(path: str, what: str, *, folder: bool = False) -> None:
    """Refuse, before anything runs, an output path whose folder cannot be created or written.

    ``folder``: ``path`` is itself the folder the files go into (``report --csv``, products).

    The test is a real one (a temporary file made and removed in the
    folder): permission bits say nothing for root, and a read-only file
    system or a plain file where a folder should be only shows on writing.
    """
    parent = os.path.abspath(path) if folder else os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) and what != "catalog" and not folder:
        raise OutputPathError(f"{what} {path!r} is a directory; give a file path (e.g. "
                              f"{os.path.join(path, 'summary.json')!r})")
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise OutputPathError(f"{what} {path!r} cannot be written: {probe!r} is a plain file, not a directory; "
                              f"give a path in a folder (or a new folder name)")
    try:
        os.makedirs(parent, exist_ok=True)
        fd, probe_file = tempfile.mkstemp(dir=parent, prefix=".intransit-write-test-")
        os.close(fd)
        os.unlink(probe_file)
    except OSError as exc:
        raise OutputPathError(f"{what} {path!r} cannot be written: folder {parent!r} is not writable "
                              f"({exc.strerror or exc}); give a path in a folder this job can write") from None


def check_catalog_target(path: str) -> None:
    """Refuse a catalog path that a job must not replace: a plain file, or a folder that is not a catalog.

    A job replaces the folder at its catalog path (``shutil.rmtree``) unless
    it resumes it, so a path naming the user's own folder would delete it.
    """
    check_writable(path, "catalog")
    if os.path.isfile(path):
        raise OutputPathError(f"catalog {path!r} is a plain file: a catalog is a BP5 folder that the job creates; "
                              f"give a new path (e.g. {path + '.bp'!r})")
    if os.path.isdir(path):
        foreign = sorted(name for name in os.listdir(path) if not _BP5_NAME.match(name))
        if foreign:
            raise OutputPathError(
                f"catalog {path!r} is an existing folder that is not a catalog (it holds "
                f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}): a job replaces its catalog folder, "
                f"which would delete them; give a new path (e.g. {os.path.join(path, 'catalog.bp')!r})")


class CatalogLock:
    """An exclusive ``flock`` on ``<catalog>.lock`` while a job writes the catalog; the file names the holder.

    Two jobs writing one catalog would each replace or interleave the other's
    steps; the second one to start is refused with the first one's pid.  The
    lock goes with the process (a killed job leaves no stale lock, only the
    file, which the next job reuses).
    """

    def __init__(self, catalog: str) -> None:
        self.path = os.path.abspath(catalog) + ".lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").split()
            os.close(fd)
            who = f"pid {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "") if holder else "a process"
            raise OutputPathError(
                f"catalog {catalog!r} is being written by another job ({who}, per {self.path}): two jobs on one "
                f"catalog would overwrite each other's steps. Give this job another catalog path ([output] "
                f"catalog or --catalog), or wait for that job to end") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def claim_catalog(path: str, comm: Any) -> CatalogLock | None:
    """Rank 0 locks the catalog before the stream opens; every rank raises SetupError if it could not (collective)."""
    from intransit.service.errors import collective_ok

    lock, error = None, None
    if comm.Get_rank() == 0:
        try:
            check_catalog_target(path)
            lock = CatalogLock(path)
        except OutputPathError as exc:
            error = str(exc)
    collective_ok(comm, error)
    return lock


def replay_problem(path: str, engine: str) -> str | None:
    """What is wrong with a BP file a job would replay (None when it looks whole), told before ADIOS2 opens it.

    BP5's reader waits for files a writer may still be creating, so an empty
    folder or a missing ``md.idx`` would make the job wait instead of answer.
    A missing path is left to the reader, which says so.
    """
    if not os.path.exists(path):
        return None
    if not os.path.isdir(path):
        return (f"stream {path!r} is a plain file, not a {engine} file: {engine} output is a folder holding "
                f"{', '.join(_BP5_FILES)}; give the folder the simulation wrote")
    missing = [name for name in _BP5_FILES if not os.path.isfile(os.path.join(path, name))]
    if missing:
        return (f"stream {path!r} is not a complete {engine} file: {', '.join(missing)} missing (a {engine} file is "
                f"a folder holding {', '.join(_BP5_FILES)}; did the simulation fail before its first step, or "
                f"was it copied in part?)")
    empty = [name for name in ("md.idx", "md.0") if os.path.getsize(os.path.join(path, name)) == 0]
    if (not empty and os.path.getsize(os.path.join(path, "data.0")) == 0
            and os.path.getsize(os.path.join(path, "md.0")) > _EMPTY_MD0_BYTES and _first_step_has_cells(path)):
        empty = ["data.0"]  # BP5 would wait for the data its metadata promises
    if empty:
        return (f"stream {path!r} is truncated: {', '.join(empty)} is empty (the simulation was killed before "
                f"its first step was written, or the copy is incomplete)")
    return None


def _first_step_has_cells(path: str) -> bool:
    """Whether the first step's metadata promises data (an array with cells): then an empty data.0 is a truncation.

    Metadata only (md.idx, md.0), bounded waits: arrays with no cells
    legitimately leave data.0 empty, and the job then says so itself.
    """
    import adios2
    from adios2 import bindings

    try:
        io = adios2.Adios().declare_io("intransit_replay_probe")
        io.set_engine("BP5")
        io.set_parameter("OpenTimeoutSecs", "2")
        engine = io.open(path, bindings.Mode.Read)
    except Exception:  # the reader says what is wrong when the job opens it
        return True
    try:
        if engine.impl.BeginStep(bindings.StepMode.Read, 2.0) != bindings.StepStatus.OK:
            return True
        for info in io.available_variables().values():
            if info.get("SingleValue") == "true" or info.get("Type") == "string":
                continue  # single values and strings live in the metadata
            dims = [int(x) for x in info.get("Shape", "").replace(" ", "").split(",") if x]
            if not dims or all(d > 0 for d in dims):  # (no shape: a local array, whose blocks are data)
                return True
        return False
    except Exception:
        return True
    finally:
        engine.close()


def read_catalog(path: str, *, open_timeout_s: float = 5.0, step_timeout_s: float = 10.0) -> Catalog:
    """Read a catalog written by ``CatalogWriter``.

    Every wait is bounded: a truncated or damaged catalog raises
    ``CatalogError`` naming the damaged part instead of waiting for a writer
    that is gone.  ``step_timeout_s`` is how long to wait for a step a live
    job has not written yet (the catalog of a running job can be read).
    """
    import adios2
    from adios2 import bindings

    check_catalog_path(path)
    adios = adios2.Adios()
    io = adios.declare_io("intransit_catalog_reader")
    io.set_engine("BP5")
    io.set_parameter("OpenTimeoutSecs", str(open_timeout_s))
    try:
        engine = io.open(path, bindings.Mode.Read)
    except RuntimeError as exc:
        raise CatalogError(f"catalog {path!r} cannot be opened: {_adios_reason(exc)} "
                           f"(md.idx and md.0 must be complete: is the catalog truncated?)") from None
    try:
        return _read_steps(path, io, engine, bindings, step_timeout_s)
    except RuntimeError as exc:
        raise CatalogError(f"catalog {path!r} is damaged: {_adios_reason(exc)} "
                           f"(a step's data in data.0 is missing or truncated)") from None
    finally:
        engine.close()


def read_catalog_bounded(path: str, timeout_s: float = 120.0) -> Catalog:
    """``read_catalog`` in a child process that must answer within ``timeout_s``.

    BP5 reads of a data file cut short wait for bytes that will never come
    (it expects a writer may still be appending), and an ADIOS2 call cannot
    be interrupted from Python: only a separate process bounds that wait.
    """
    import multiprocessing

    check_catalog_path(path)  # the common mistakes answered at once, without a process
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_read_into_pipe, args=(path, send), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise CatalogError(f"catalog {path!r}: reading did not finish within {timeout_s:g} s "
                               f"(a step's data in data.0 is probably truncated: BP5 waits for it)")
        try:
            ok, value = receive.recv()
        except EOFError:
            raise CatalogError(f"catalog {path!r}: the reader process died (exit status "
                               f"{child.join(5) or child.exitcode}) reading it: the catalog is damaged") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
    if not ok:
        raise value
    return value


def _read_into_pipe(path: str, send: Any) -> None:
    try:
        send.send((True, read_catalog(path)))
    except Exception as exc:  # sent to the parent, which raises it
        send.send((False, exc if isinstance(exc, CatalogError) else CatalogError(f"catalog {path!r}: {exc}")))


def _adios_reason(exc: BaseException) -> str:
    """ADIOS2's exception text without its colour codes and timestamp prefix."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    text = re.sub(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} +\d+ [\d:]+ \d{4}\]\s*", "", text)
    return " ".join(text.replace("[ADIOS2 EXCEPTION]", "").split())[:400]


def _read_steps(path: str, io: Any, engine: Any, bindings: Any, step_timeout_s: float) -> Catalog:
    steps: list[dict[str, float]] = []
    events: dict[str, list[dict[str, float]]] = {}
    fields: dict[str, list[str]] = {}
    metadata: dict[str, str] = {}
    while engine.impl.BeginStep(bindings.StepMode.Read, step_timeout_s) == bindings.StepStatus.OK:
        if not fields:
            for name, _info in io.available_attributes().items():
                attr = io.inquire_attribute(name)
                if name.endswith("/fields"):
                    fields[name[: -len("/fields")]] = list(attr.data_string())
                elif name.startswith("meta/"):
                    data = attr.data_string()
                    metadata[name[5:]] = data[0] if data else ""
        available = io.available_variables()
        if not available:  # a job that analyzed nothing still closes one empty step
            engine.end_step()
            continue
        if "step" not in available:  # checked before reading: a simulation's output may be large
            raise CatalogError(f"{path!r} is a BP5 file but not an intransit catalog: it has no 'step' "
                               f"variable (its variables: {', '.join(sorted(available)[:8]) or 'none'}); "
                               f"give the [output] catalog path of a job, not the simulation's output")
        columns: dict[str, np.ndarray] = {}
        for var_name in sorted(available):
            if var_name.endswith("/events"):
                continue
            columns[var_name] = _get(engine, io, var_name, bindings)
        # A batch of k analyzed steps (k = 1 and scalars in catalogs written before batching).
        k = len(columns["step"])
        rows = [{name: col[i].item() for name, col in columns.items()} for i in range(k)]
        analyzers = [key[: -len("/failed")] for key in columns if key.endswith("/failed")]
        for row in rows:
            for name in analyzers:
                if row.get(f"{name}/failed") == 1:  # a failed step has no events and no scores
                    for key in [key for key in row if key.startswith(f"{name}/scores/") or key == f"{name}/n_events"]:
                        del row[key]
        for name, cols in fields.items():
            key = f"{name}/events"
            if key not in available:
                continue
            table_rows = _get(engine, io, key, bindings)
            counts = [int(row.get(f"{name}/n_events", 0)) for row in rows]
            if sum(counts) != len(table_rows):
                raise ValueError(f"catalog {path!r}: {key} has {len(table_rows)} rows at writer steps "
                                 f"{rows[0]['step']}–{rows[-1]['step']}, n_events says {sum(counts)}")
            table = events.setdefault(name, [])
            start = 0
            for row, count in zip(rows, counts):
                for r in table_rows[start:start + count]:
                    ev = {"step": row["step"], "index": row["index"]}
                    ev.update(zip(cols, (float(x) for x in r)))
                    table.append(ev)
                start += count
        steps.extend(rows)
        engine.end_step()
    if not steps and os.path.getsize(os.path.join(path, "md.0")) > _EMPTY_MD0_BYTES:
        raise CatalogError(f"catalog {path!r} is truncated: md.idx indexes no step while md.0 holds "
                           f"{os.path.getsize(os.path.join(path, 'md.0'))} bytes of step metadata "
                           f"(md.idx was cut short: restore it from the original)")
    for name in fields:
        events.setdefault(name, [])
    return Catalog(steps=steps, events=events, fields=fields, metadata=metadata)


def _get(engine: Any, io: Any, name: str, bindings: Any) -> np.ndarray:
    """One variable of the current step as a 1-D (or 2-D for events) array; a scalar reads as length 1."""
    var = io.inquire_variable(name)
    dtype = np.int64 if var.type() == "int64_t" else np.float64
    shape = [int(x) for x in var.shape()]
    if shape:
        var.set_selection([[0] * len(shape), shape])
    buf = np.empty(shape or [1], dtype=dtype)
    engine.get(var, buf, bindings.Mode.Sync)
    return buf
