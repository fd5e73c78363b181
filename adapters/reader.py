"""Step readers: whatever engine the XML selects (SST live, BP5 replay).

We drive ``BeginStep`` ourselves with an explicit timeout: the high-level
``Stream.steps()`` ends its loop on the first timeout as if the stream had
ended, which would turn a slow simulation into a silently truncated catalog.
Here a timeout is its own outcome (``StepStatus.TIMEOUT``), distinct from the
end of the stream.

Each rank reads only its pieces of the writer's blocks, into buffers that are
allocated once per block layout and refilled every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import itertools
import logging
import os
import time
from typing import Any, Protocol, Sequence

import numpy as np

from intransit.adapters.blocks import (BlockInfo, Piece, assign_pieces, halo_box, merged_box, parse_blocks_info,
                                       wrap_segments)
from intransit.adapters.cohort import OpenWatchdog, open_failure_hint, reader_communicator, transport_problem
from intransit.adapters.sst_open import OpenPlanError, agree_open_seconds, wait_for_slot
from intransit.analyzers.base import Block

log = logging.getLogger(__name__)

#: ADIOS2 type names → numpy dtypes for the arrays we analyze.
ADIOS_DTYPES = {
    "double": np.float64,
    "float": np.float32,
    "long double": np.longdouble,
    "int8_t": np.int8,
    "int16_t": np.int16,
    "int32_t": np.int32,
    "int64_t": np.int64,
    "uint8_t": np.uint8,
    "uint16_t": np.uint16,
    "uint32_t": np.uint32,
    "uint64_t": np.uint64,
}


#: Longest pause between two polls of an SST stream for its next step (seconds).
POLL_MAX_PAUSE_S = 0.002

#: How many reads of a global array reuse its block layout before the writer's
#: block list is looked at again (see ``AdiosStepReader._layout``).
LAYOUT_RECHECK_STEPS = 64


class StepStatus(enum.Enum):
    OK = "ok"
    END = "end of stream"
    TIMEOUT = "timeout"
    #: The writer went away without closing its stream (killed, crashed, link lost): ADIOS2's OtherError.
    LOST = "writer lost"


class StreamError(RuntimeError):
    """A stream could not be opened or read; the message says which and why."""


class WriterLost(StreamError):
    """The writer vanished mid-stream (no orderly end); ``summary`` is the job's summary when the job ended on it."""

    summary: Any = None


class StepReader(Protocol):
    """What the service needs from any reader (SST, BP5, in-memory)."""

    def begin_step(self, timeout_s: float) -> StepStatus: ...
    def current_step(self) -> int: ...
    def variable_names(self) -> list[str]: ...
    def read(self, variable: str, whole_axes: tuple[int, ...] = (), halo: tuple[int, ...] | None = None,
             periodic: tuple[bool, ...] | None = None) -> tuple[tuple[int, ...], list[Block]]: ...
    def end_step(self) -> None: ...
    def close(self) -> None: ...


@dataclasses.dataclass
class _Layout:
    key: tuple[Any, ...]
    global_shape: tuple[int, ...]
    pieces: list[Piece]
    buffers: list[np.ndarray]
    #: Each piece's ADIOS2 selection ([start, count]), derived once from ``pieces``.
    selections: list[list[list[int]]] = dataclasses.field(init=False)
    #: This rank reads the whole global array in one selection: how the writer
    #: splits it into blocks cannot change what we read, so it is not rechecked.
    #: (A writer that later leaves holes in the array is not noticed either; a
    #: global array with holes is outside what intransit analyzes.)
    whole: bool = dataclasses.field(init=False)

    #: With a halo: per piece, its (halo_lo, halo_hi) and the reads that fill its
    #: padded buffer, each (selection, target view of the buffer, staging array
    #: or None when the view is the whole buffer and is read into directly).
    halos: list[tuple[tuple[int, ...], tuple[int, ...]]] | None = None
    halo_reads: list[list[tuple[list[list[int]], np.ndarray, np.ndarray | None]]] | None = None

    def __post_init__(self) -> None:
        self.selections = [[list(p.start), list(p.count)] for p in self.pieces]
        self.whole = (len(self.pieces) == 1 and tuple(self.pieces[0].start) == (0,) * len(self.global_shape)
                      and tuple(self.pieces[0].count) == self.global_shape)


def _halo_key(ndim: int, halo: Sequence[int] | None, periodic: Sequence[bool] | None
              ) -> tuple[tuple[int, ...], tuple[bool, ...]] | None:
    """Normalised (halo, periodic), or None for no halo (today's read); bad input is a ValueError."""
    if halo is None:
        return None
    h = tuple(int(v) for v in halo)
    if len(h) != ndim or any(v < 0 for v in h):
        raise ValueError(f"halo must be {ndim} non-negative cell counts (one per axis of the array); got {halo!r}")
    p = (False,) * ndim if periodic is None else tuple(bool(v) for v in periodic)
    if len(p) != ndim:
        raise ValueError(f"periodic must be {ndim} booleans (one per axis of the array); got {periodic!r}")
    return None if not any(h) else (h, p)


def _padded_plan(piece: Piece, shape: tuple[int, ...], halo_key: tuple[tuple[int, ...], tuple[bool, ...]],
                 buf: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[list[list[int]], np.ndarray, np.ndarray | None]]]:
    """How to fill one piece's padded buffer: one box selection per combination of wrapped runs."""
    halo, periodic = halo_key
    lo, h_lo, h_hi = halo_box(piece.start, piece.count, shape, halo, periodic)
    runs = [wrap_segments(l, c + a + b, n) for l, c, a, b, n in zip(lo, piece.count, h_lo, h_hi, shape)]
    reads = []
    for combo in itertools.product(*runs):
        sel = [[r[0] for r in combo], [r[1] for r in combo]]
        view = buf[tuple(slice(r[2], r[2] + r[1]) for r in combo)]
        direct = view.shape == buf.shape
        reads.append((sel, view, None if direct else np.empty(view.shape, dtype=buf.dtype)))
    return h_lo, h_hi, reads


def _halo_blocks(layout: "_Layout") -> list[Block]:
    assert layout.halos is not None
    out = []
    for p, buf, (h_lo, h_hi) in zip(layout.pieces, layout.buffers, layout.halos):
        own = buf[tuple(slice(a, a + c) for a, c in zip(h_lo, p.count))]
        out.append(Block(own, p.start, p.count, p.block_id, padded=buf, halo_lo=h_lo, halo_hi=h_hi))
    return out


def _contact_file_appears(stream: str, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the SST writer's ``<stream>.sst``; whether it is there."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(stream + ".sst") and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.path.exists(stream + ".sst")


def xml_io_names(xml: str) -> list[str] | None:
    """The IO names an ADIOS2 XML defines, or None when it cannot be parsed (ADIOS2 then says why)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError, ValueError):
        return None
    return [io.get("name", "") for io in root.iter("io")]


def stale_contact_message(stream: str) -> str:
    """What to say when ``<stream>.sst`` exists but no writer answers at the address it names."""
    contact = stream + ".sst"
    try:
        age = f", written {max(0.0, time.time() - os.stat(contact).st_mtime):.0f} s ago"
    except OSError:
        age = ""
    return (
        f"the SST contact file {contact} is stale{age}: no writer answered at the address it names, so the "
        f"writer that left it is gone (killed or crashed before it could remove it). Remove {contact} and start "
        f"the simulation again. (If a writer is really running there, the analytics cannot reach it: check "
        f"the network between the two and that both use DataTransport=WAN.)"
    )


class _CStderr:
    """Capture what C code writes to file descriptor 2 during a call (SST prints its reasons only there).

    The text is written back to stderr afterwards, so nothing is hidden; ``text`` keeps it for the
    error message.  Falls back to no capture when fd 2 cannot be redirected.
    """

    def __init__(self) -> None:
        self.text = ""
        self._saved: int | None = None
        self._tmp: Any = None
        self._faulthandler = False

    def __enter__(self) -> "_CStderr":
        import sys
        import tempfile

        try:
            sys.stderr.flush()
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except (OSError, ValueError):
            self._saved = None
            return self
        import faulthandler

        self._faulthandler = faulthandler.is_enabled()
        if self._faulthandler:  # a crash inside the call still prints its stack where a person sees it
            faulthandler.enable(file=self._saved, all_threads=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        os.dup2(self._saved, 2)
        if self._faulthandler:
            import faulthandler
            import sys

            faulthandler.enable(file=sys.stderr, all_threads=True)
        os.close(self._saved)
        self._tmp.seek(0)
        raw = self._tmp.read()
        self._tmp.close()
        if raw:
            os.write(2, raw)
        self.text = raw.decode(errors="replace")


def _open_stuck_message(stream: str, timeout_s: float, rank: int, cohort: bool) -> str:
    return (
        f"intransit[{rank}]: error: the SST Open of stream {stream!r} did not complete within {timeout_s:g} s "
        f"([stream] open_timeout_s): its writer stopped answering or exited during the open"
        + (" (in a reader cohort, another rank's failure stops the collective Open too)" if cohort else "")
        + "; ending this rank. Check that the simulation is running, then start the analytics again."
    )


def _no_writer_message(stream: str, timeout_s: float) -> str:
    return (
        f"no live SST writer for stream {stream!r} within {timeout_s:g} s "
        f"(looked for the contact file {stream}.sst; is the simulation running with an SST engine, "
        f"from a directory where that path resolves?)"
    )


class AdiosStepReader:
    """One rank's reader of an ADIOS2 stream or file, configured by XML.

    ``rank``/``n_ranks`` select this rank's share of every variable's blocks.
    ``comm`` is passed to ADIOS2 only when it was built with MPI (one reader
    cohort); with the serial wheel every rank is its own reader.
    """

    def __init__(
        self,
        *,
        stream: str,
        xml: str | None,
        io_name: str,
        rank: int = 0,
        n_ranks: int = 1,
        engine: str | None = None,
        open_timeout_s: float = 30.0,
        comm: Any = None,
    ) -> None:
        import adios2
        from adios2 import bindings

        self._bindings = bindings
        self.stream = stream
        self.rank = rank
        self.n_ranks = n_ranks
        self._layouts: dict[str, _Layout] = {}
        self._reads_since_check: dict[str, int] = {}
        #: mtime of the SST writer's contact file when we opened (its end-of-stream report must be newer).
        self.contact_mtime: float | None = None
        # With several ranks the constructor makes one exchange on every rank,
        # whatever failed before it, so no rank waits in a collective the
        # others skipped: a rank's problem travels in it and all ranks raise it.
        multi = comm is not None and comm.Get_size() > 1
        problem: str | None = None
        try:
            cohort = self._prepare(adios2, stream=stream, xml=xml, io_name=io_name, engine=engine,
                                   open_timeout_s=open_timeout_s, comm=comm)
        except StreamError as exc:
            if not multi:
                raise
            problem = str(exc)
        planned_second: int | None = None
        if multi:
            try:
                slot = agree_open_seconds(comm, problem)
            except OpenPlanError as exc:
                raise StreamError(str(exc)) from None
            if self.engine_type.upper() == "SST":
                # Several readers of one writer: open so that no two share an
                # EVPath connection id (adapters/sst_open.py: a shared id sent one
                # rank's data to another, which died with SIGSEGV).
                planned_second = wait_for_slot(slot)
        opened_at = time.time()
        c_stderr = ""
        guard = (OpenWatchdog(open_timeout_s, _open_stuck_message(stream, open_timeout_s, rank, cohort is not None))
                 if self.engine_type.upper() == "SST" else contextlib.nullcontext())
        try:
            with guard, _CStderr() as captured:
                self._engine = self._io.open(stream, bindings.Mode.Read)
        except RuntimeError as exc:
            c_stderr = captured.text
            if cohort is not None:  # the other ranks may still be inside the collective Open: say it now
                log.error("rank %d: SST Open of %r failed: %s", rank, stream, _first_line(exc))
            hint = open_failure_hint(str(exc)) or open_failure_hint(c_stderr)
            if hint:
                raise StreamError(f"cannot read {self.engine_type} stream {stream!r}: {hint}") from exc
            if self.engine_type.upper() == "SST" and os.path.exists(stream + ".sst"):
                # A contact file is there, yet attaching failed and SST named no data-plane
                # problem on the C stderr: no writer answered at the address the file names.
                raise StreamError(stale_contact_message(stream)) from exc
            if self.engine_type.upper() == "SST":
                raise StreamError(_no_writer_message(stream, open_timeout_s)) from exc
            raise StreamError(f"cannot open {self.engine_type} stream {stream!r}: {_first_line(exc)}") from exc
        #: (planned second, second ``Open`` was called in) when ranks agreed an SST open plan.
        self.open_plan = (planned_second, int(opened_at)) if planned_second is not None else None
        if self.open_plan is not None and self.open_plan[0] != self.open_plan[1]:
            log.warning("rank %d opened SST stream %r in second %d, not in its planned second %d: its EVPath "
                        "connection id may equal another rank's (docs/adios2_notes.md)",
                        rank, stream, self.open_plan[1], self.open_plan[0])
        log.debug("rank %d opened %s stream %r%s", rank, self.engine_type, stream,
                  f" as one reader cohort of {n_ranks} ranks" if cohort is not None else "")

    def _prepare(self, adios2: Any, *, stream: str, xml: str | None, io_name: str, engine: str | None,
                 open_timeout_s: float, comm: Any) -> Any:
        """Everything before ``Open`` that can refuse the stream (StreamError); returns the reader cohort, if any."""
        if xml is not None and not os.path.isfile(xml):
            raise StreamError(f"ADIOS2 XML file {xml!r} does not exist")
        cohort = reader_communicator(comm)
        #: An MPI reader cohort's BeginStep is collective, and one that timed out
        #: must not be retried (SIGSEGV in ADIOS2 2.12, docs/adios2_notes.md).
        self.collective_steps = cohort is not None
        if cohort is not None:
            self._adios = adios2.Adios(xml, comm=cohort) if xml else adios2.Adios(comm=cohort)
        else:
            self._adios = adios2.Adios(xml) if xml else adios2.Adios()
        self._io = self._adios.declare_io(io_name)
        if engine:
            self._io.set_engine(engine)
        self.engine_type = self._io.engine_type() or "BP5"
        # SST's wait for the first step polls (see _poll_for_step); a cohort's BeginStep
        # is collective, so its ranks cannot poll independently and keep SST's own wait.
        self._poll_waits = cohort is None and self.engine_type.upper() == "SST"
        if xml is not None:
            names = xml_io_names(xml)
            if names is not None and io_name not in names:
                raise StreamError(
                    f"IO {io_name!r} is not in the ADIOS2 XML {xml!r} (it defines: {', '.join(names) or 'no IO'}); "
                    f"without it ADIOS2 would fall back to a BP5 file. Set [stream] io to the IO name the "
                    f"simulation opens, or add <io name=\"{io_name}\"> to the XML"
                )
        if self.engine_type.upper() == "SST":
            self._io.set_parameter("OpenTimeoutSecs", str(max(1, int(round(open_timeout_s)))))
            problem = transport_problem(_parameter(self._io, "DataTransport"))
            if problem:
                raise StreamError(f"cannot read SST stream {stream!r}: {problem}")
            # Wait for the writer's contact file ourselves, then Open: the timeout
            # and its message stay ours.
            if not _contact_file_appears(stream, open_timeout_s):
                raise StreamError(_no_writer_message(stream, open_timeout_s))
            try:  # when this writer started: its end-of-stream report must be newer (read_end_report)
                self.contact_mtime = os.stat(stream + ".sst").st_mtime
            except OSError:
                self.contact_mtime = None
        elif not os.path.exists(stream):
            raise StreamError(
                f"no {self.engine_type} file or directory {stream!r} to replay; give the path the simulation wrote"
            )
        return cohort

    def begin_step(self, timeout_s: float) -> StepStatus:
        if self._poll_waits:
            status = self._poll_for_step(float(timeout_s))
        else:
            status = self._engine.impl.BeginStep(self._bindings.StepMode.Read, float(timeout_s))
        if status == self._bindings.StepStatus.OK:
            self._poll_waits = False  # from the second step on, SST's own wait (see _poll_for_step)
            return StepStatus.OK
        if status == self._bindings.StepStatus.EndOfStream:
            return StepStatus.END
        if status == self._bindings.StepStatus.NotReady:
            return StepStatus.TIMEOUT
        # OtherError: over SST, the writer's connection closed without an end of stream (it was
        # killed or crashed); the caller says after how many steps (service/source.py).
        return StepStatus.LOST

    def _poll_for_step(self, timeout_s: float) -> Any:
        """Wait for the first step by polling ``BeginStep`` with a zero timeout.

        The first wait can be long (the writer may still be starting), and
        SST's timed wait schedules a timer task that it frees on timeout
        without removing it (ADIOS2 issue #1862); a zero timeout schedules no
        timer.  (Multi-rank readers that crashed here were first blamed on
        that timer; the cause was two readers sharing an EVPath id, which
        ``sst_open`` now prevents.)  Pauses grow from 50 µs to
        POLL_MAX_PAUSE_S.  Later steps use SST's blocking wait: polling there
        added a pause to every step a reader waits for (E at 256² fell to
        0.78; steering lag p99 1 → 2 steps).
        """
        begin, mode, not_ready = self._engine.impl.BeginStep, self._bindings.StepMode.Read, self._bindings.StepStatus.NotReady
        status = begin(mode, 0.0)
        if status != not_ready or timeout_s == 0:
            return status
        deadline = time.monotonic() + timeout_s if timeout_s > 0 else float("inf")
        pause = 50e-6
        while True:
            time.sleep(pause)
            status = begin(mode, 0.0)
            if status != not_ready or time.monotonic() >= deadline:
                return status
            pause = min(2 * pause, POLL_MAX_PAUSE_S)

    def current_step(self) -> int:
        return int(self._engine.current_step())

    def variable_names(self) -> list[str]:
        return sorted(self._io.available_variables())

    def _layout(self, variable: str, var: Any, whole_axes: tuple[int, ...] = (), halo: Sequence[int] | None = None,
                periodic: Sequence[bool] | None = None) -> _Layout:
        # ``BlocksInfo`` is not free over SST: called every step it halved the
        # read rate at 1024² (173 → 82 steps/s; see docs/performance.md).  For a
        # global array every piece is read by box selection, so a changed writer
        # decomposition cannot corrupt a read, only unbalance it: the block list
        # is consulted when the shape or type changes and every
        # LAYOUT_RECHECK_STEPS reads (the same steps on every rank, so a cohort
        # re-derives its assignment together) -- unless this rank reads the whole
        # array in one selection, which no decomposition changes (one call costs
        # ~0.4 ms at 256²: every 64 steps it was 2 % of a fast stream's step).
        shape = tuple(int(x) for x in var.shape())
        type_name = var.type()
        if type_name == "string" or (not shape and var.single_value()):
            what = "a string" if type_name == "string" else f"a single value ({type_name})"
            raise StreamError(f"variable {variable!r} is {what}, not an array: intransit analyzes global arrays "
                              f"(analyzable types: {', '.join(ADIOS_DTYPES)}); list only arrays in [stream] variables")
        if not shape:
            raise StreamError(
                f"variable {variable!r} is a local array (no global shape); intransit analyzes global arrays: "
                f"define it in the writer with a shape and a start (e.g. io.define_variable(name, data, shape, "
                f"start, count))"
            )
        hkey = _halo_key(len(shape), halo, periodic)
        layout = self._layouts.get(variable)
        reads = self._reads_since_check.get(variable, 0)
        if (layout is not None and layout.global_shape == shape and layout.key[1] == type_name
                and layout.key[2] == whole_axes and layout.key[3] == hkey
                and (layout.whole or reads < LAYOUT_RECHECK_STEPS)):
            self._reads_since_check[variable] = reads + 1
            return layout
        self._reads_since_check[variable] = 1
        try:
            raw = self._engine.blocks_info(variable, self.current_step())
        except UnicodeDecodeError:
            # ADIOS2's Python BlocksInfo decodes an 8-bit array's min/max as text and fails (int8/uint8):
            # read the global shape as one box (box selections do not depend on the writer's blocks).
            raw = [{"BlockID": "0", "Start": ",".join("0" for _ in shape), "Count": ",".join(map(str, shape))}]
            if layout is None:
                log.warning("variable %r is %s: its writer blocks cannot be listed (ADIOS2 Python bindings), so it "
                            "is read as one box and unwritten holes in it cannot be detected", variable, type_name)
        raw_key = tuple((b["BlockID"], b["Start"], b["Count"]) for b in raw)
        if layout is not None and layout.key == (raw_key, type_name, whole_axes, hkey) and layout.global_shape == shape:
            return layout  # (same blocks in a new global shape: a new layout, else the shape change goes unseen)
        blocks = parse_blocks_info(raw)
        dtype = ADIOS_DTYPES.get(type_name)
        if dtype is None:
            raise StreamError(f"variable {variable!r} has type {type_name!r}; analyzable types: {', '.join(ADIOS_DTYPES)}")
        try:
            pieces = assign_pieces(blocks, self.n_ranks, whole_axes)[self.rank]
        except ValueError as exc:
            raise StreamError(f"variable {variable!r}: {exc}") from None
        box = merged_box(pieces)
        if box is not None:
            # One read of the box my pieces tile: faster than one read per block.
            pieces = [Piece(pieces[0].block_id, box[0], box[1], False)]
        if hkey is None:
            buffers = [np.empty(p.count, dtype=dtype) for p in pieces]
            layout = _Layout((raw_key, type_name, whole_axes, hkey), shape, pieces, buffers)
        else:
            buffers, halos, plans = [], [], []
            for p in pieces:
                _lo, h_lo, h_hi = halo_box(p.start, p.count, shape, *hkey)
                buf = np.empty(tuple(c + a + b for c, a, b in zip(p.count, h_lo, h_hi)), dtype=dtype)
                h_lo, h_hi, plan = _padded_plan(p, shape, hkey, buf)
                buffers.append(buf)
                halos.append((h_lo, h_hi))
                plans.append(plan)
            layout = _Layout((raw_key, type_name, whole_axes, hkey), shape, pieces, buffers, halos, plans)
        self._layouts[variable] = layout
        log.debug("rank %d: %s layout %s, my pieces %s", self.rank, variable, shape, describe_pieces(pieces))
        return layout

    def read(self, variable: str, whole_axes: tuple[int, ...] = (), halo: tuple[int, ...] | None = None,
             periodic: tuple[bool, ...] | None = None) -> tuple[tuple[int, ...], list[Block]]:
        """This rank's pieces of ``variable`` at the current step, in reused buffers.

        With a nonzero ``halo`` (cells per axis) each piece comes with its
        neighbours' cells in ``Block.padded`` (box selections overlapping other
        writers' blocks; a periodic axis wraps with up to 3 selections, staged
        and copied into one buffer).  ``halo`` None or all zero is the plain
        read, unchanged.
        """
        var = self._io.inquire_variable(variable)
        if var is None:
            raise StreamError(
                f"variable {variable!r} is not in stream {self.stream!r} at step {self.current_step()}; "
                f"it has: {', '.join(self.variable_names()) or '(no variables)'}"
            )
        layout = self._layout(variable, var, tuple(whole_axes), halo, periodic)
        if layout.halo_reads is not None:
            for plan in layout.halo_reads:
                for selection, view, stage in plan:
                    var.set_selection(selection)
                    self._engine.get(var, view if stage is None else stage, self._bindings.Mode.Deferred)
            self._engine.perform_gets()
            for plan in layout.halo_reads:
                for _selection, view, stage in plan:
                    if stage is not None:
                        view[...] = stage
            return layout.global_shape, _halo_blocks(layout)
        for selection, buf in zip(layout.selections, layout.buffers):
            var.set_selection(selection)
            self._engine.get(var, buf, self._bindings.Mode.Deferred)
        self._engine.perform_gets()
        blocks = [Block(buf, p.start, p.count, p.block_id) for p, buf in zip(layout.pieces, layout.buffers)]
        return layout.global_shape, blocks

    def end_step(self) -> None:
        self._engine.end_step()

    def close(self) -> None:
        try:
            self._engine.close()
        except Exception:  # closing after a writer vanished must not mask the real error
            log.debug("closing %r failed", self.stream, exc_info=True)

    def abandon(self) -> None:
        """Leave the stream without closing it: for a writer that is gone or unreachable.

        With the network to the writer cut, SST's ``Close`` (and the engine's
        destructor) blocked for minutes in EVPath's connection shutdown, a
        ``close()`` of a socket lingering on a peer that never answers
        (measured: over 5 minutes; docs/adios2_notes.md) -- after the job had
        already decided to stop.  The engine and its ADIOS2 objects are kept
        alive (never destroyed, not even at interpreter exit); the kernel
        closes the sockets when the process exits, without lingering.
        """
        import ctypes

        for obj in (self._engine, getattr(self, "_io", None), getattr(self, "_adios", None)):
            if obj is not None:
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
        log.debug("left stream %r without closing it (its writer is gone)", self.stream)


class MemoryStepReader:
    """Steps held in memory, for unit tests of the service logic.

    ``steps`` is a list of (writer step number, {variable: list of BlockInfo-
    shaped arrays}) where each variable maps to ``(global_shape, blocks)`` with
    blocks as (start, array) pairs.  ``None`` in place of a step stands for a
    stalled writer: every ``begin_step`` from there on times out.
    """

    def __init__(
        self,
        steps: Sequence[tuple[int, dict[str, tuple[tuple[int, ...], list[tuple[tuple[int, ...], np.ndarray]]]]] | None],
        *,
        rank: int = 0,
        n_ranks: int = 1,
    ) -> None:
        self._steps = list(steps)
        self._pos = -1
        self.rank = rank
        self.n_ranks = n_ranks

    def begin_step(self, timeout_s: float) -> StepStatus:
        if self._pos + 1 < len(self._steps) and self._steps[self._pos + 1] is None:
            return StepStatus.TIMEOUT  # a stall lasts: waiting again does not skip it
        self._pos += 1
        if self._pos >= len(self._steps):
            return StepStatus.END
        return StepStatus.OK

    def current_step(self) -> int:
        entry = self._steps[self._pos]
        assert entry is not None
        return entry[0]

    def variable_names(self) -> list[str]:
        entry = self._steps[self._pos]
        return sorted(entry[1]) if entry else []

    def read(self, variable: str, whole_axes: tuple[int, ...] = (), halo: tuple[int, ...] | None = None,
             periodic: tuple[bool, ...] | None = None) -> tuple[tuple[int, ...], list[Block]]:
        """This rank's pieces, with ``halo`` cells around each in ``Block.padded`` (as AdiosStepReader)."""
        entry = self._steps[self._pos]
        assert entry is not None
        if variable not in entry[1]:
            raise StreamError(f"variable {variable!r} is not in the stream; it has: {', '.join(sorted(entry[1]))}")
        shape, raw_blocks = entry[1][variable]
        infos = [BlockInfo(i, tuple(start), tuple(arr.shape)) for i, (start, arr) in enumerate(raw_blocks)]
        mine = assign_pieces(infos, self.n_ranks, whole_axes)[self.rank]
        full = np.zeros(shape, dtype=raw_blocks[0][1].dtype) if raw_blocks else np.zeros(shape)
        for start, arr in raw_blocks:
            full[tuple(slice(s, s + c) for s, c in zip(start, arr.shape))] = arr
        hkey = _halo_key(len(shape), halo, periodic)
        out = []
        for p in mine:
            if hkey is None:
                box = tuple(slice(s, s + c) for s, c in zip(p.start, p.count))
                out.append(Block(np.array(full[box]), p.start, p.count, p.block_id))
                continue
            lo, h_lo, h_hi = halo_box(p.start, p.count, shape, *hkey)
            index = [np.arange(l, l + c + a + b) % n for l, c, a, b, n in zip(lo, p.count, h_lo, h_hi, shape)]
            padded = np.ascontiguousarray(full[np.ix_(*index)])
            own = padded[tuple(slice(a, a + c) for a, c in zip(h_lo, p.count))]
            out.append(Block(own, p.start, p.count, p.block_id, padded=padded, halo_lo=h_lo, halo_hi=h_hi))
        return tuple(shape), out

    def end_step(self) -> None:
        pass

    def close(self) -> None:
        pass


def _parameter(io: Any, key: str) -> str | None:
    """An engine parameter set on ``io`` (XML or code), matched case-insensitively; None if unset."""
    try:
        params = dict(io.parameters())
    except Exception:  # an ADIOS2 without parameters(): nothing to check
        return None
    for name, value in params.items():
        if name.lower() == key.lower():
            return str(value)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # ADIOS2 colours its exception text with ANSI escapes; strip them for logs.
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", line)


def describe_pieces(pieces: Sequence[Piece]) -> str:
    """Short human text for a rank's share (logs)."""
    return ", ".join(f"b{p.block_id}{'' if p.whole_block else '*'}@{p.start}+{p.count}" for p in pieces)
