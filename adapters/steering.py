"""Steering: the reverse ADIOS2 stream from the analytics back to the simulation.

Protocol (one ADIOS2 step per analyzed simulation step, IO ``Steering``):

=============== ======= ====================================================
variable        type    meaning
=============== ======= ====================================================
``seq``         int64   sequence number, 1, 2, 3, … (applied at most once)
``answers_step`` int64  the simulation step this record answers
``command``     string  ``continue``, ``stop``, ``checkpoint``, ``set``, ``trigger``
``rule``        string  the rule that fired ("" for ``continue``)
``args``        string  JSON object with the command's arguments
``set_name``    string  for ``set``: the parameter (also in ``args``), else ""
``set_value``   float64 for ``set``: the value (also in ``args``), else NaN
=============== ======= ====================================================

``set_name``/``set_value`` repeat what ``args`` says, typed, so a C, C++ or
Fortran client needs no JSON parser (see ``intransit_steering.hpp``).

The simulation side (``SteeringClient``) is what a Python simulation imports:
it never blocks longer than the timeouts it was given, keeps the simulation
running when the analytics never connect or vanish, and applies only what the
simulation declared it accepts — anything else is rejected and logged.

Engine: by default the reverse stream is a BP5 file read as a stream (the
simulation's ``BeginStep`` with a zero timeout sees each step as the analytics
end it, within milliseconds).  SST works too, through an XML, but SST adds a
late reader only at the writer's next step boundary, so a simulation's first
attach would wait for the analytics' next analyzed step: a wait the
simulation did not agree to.  A BP5 reader's open and polls never wait on
the writer; a shared file system is needed either way (SST's contact file).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

COMMANDS = ("continue", "stop", "checkpoint", "set", "trigger")
STEERING_IO = "Steering"

#: Engine of the reverse stream when no XML is given (see the module notes).
DEFAULT_ENGINE = "BP5"
#: Parameters for an SST reverse stream chosen through XML without them:
#: never wait for the simulation to attach, never block the analytics on a
#: slow reader, sockets data plane for the serial wheel.
SST_WRITER_PARAMS = {
    "RendezvousReaderCount": "0",
    "QueueLimit": "16",
    "QueueFullPolicy": "Discard",
    "DataTransport": "WAN",
}


@dataclasses.dataclass(frozen=True)
class Command:
    """One record of the reverse stream, as the simulation sees it."""

    seq: int
    answers_step: int
    command: str
    rule: str
    args: dict[str, Any]


@dataclasses.dataclass
class _Parameter:
    name: str
    kind: type
    low: float | None
    high: float | None
    on_set: Callable[[str, Any], None]


@dataclasses.dataclass
class SteeringStats:
    received: int = 0
    applied: int = 0
    rejected: int = 0
    replayed: int = 0
    connected: bool = False
    ended: bool = False
    last_seq: int = 0
    last_answered_step: int = -1


class SteeringClient:
    """The simulation's end of the steering stream.

    Call ``poll(step)`` once per simulation step.  It opens the stream when the
    analytics' contact file appears (never waiting for it), drains the records
    that have arrived, validates each against what was declared with ``on`` and
    ``declare_parameter``, and runs the callbacks in sequence order.
    """

    def __init__(
        self,
        stream: str,
        *,
        xml: str | None = None,
        io_name: str = STEERING_IO,
        poll_timeout_s: float = 0.05,
        open_timeout_s: int = 1,
        record_receipts: bool = False,
    ) -> None:
        import adios2
        from adios2 import bindings

        self._bindings = bindings
        self.stream = stream
        self.poll_timeout_s = float(poll_timeout_s)
        self._adios = adios2.Adios(xml) if xml else adios2.Adios()
        self._io = self._adios.declare_io(io_name)
        if not xml:
            self._io.set_engine(DEFAULT_ENGINE)
        self._sst = self._io.engine_type().upper() == "SST"
        if self._sst and "DataTransport" not in self._io.parameters():
            self._io.set_parameter("DataTransport", "WAN")
        self._io.set_parameter("OpenTimeoutSecs", str(max(1, int(open_timeout_s))))
        self._engine: Any = None
        self._current_step = -1
        self._failed_contact: tuple[float, int] | None = None
        #: The writer's file we read (see _stat_identity), its size when last looked at, and that of a
        #: stream that ended: after an end the client attaches only to a new one.
        self._identity: tuple[int, int, float] | None = None
        self._size = 0
        self._ended_identity: tuple[int, int, int, int] | None = None
        self._next_replaced_check = 0.0
        self._callbacks: dict[str, Callable[[Command], None]] = {"continue": lambda c: None}
        self._parameters: dict[str, _Parameter] = {}
        self.stats = SteeringStats()
        self.history: list[tuple[Command, str]] = []  # (command, outcome) for logs and tests
        #: With ``record_receipts``: (seq, answers_step, step polled, monotonic time) per record.
        self.receipts: list[tuple[int, int, int, float]] | None = [] if record_receipts else None

    # -- what the simulation accepts -------------------------------------
    def on(self, command: str, callback: Callable[[Command], None]) -> None:
        """Accept ``command`` (``stop``, ``checkpoint``, ``trigger``) and run ``callback`` on it."""
        if command not in COMMANDS or command == "set":
            valid = [c for c in COMMANDS if c != "set"]
            raise ValueError(f"cannot register {command!r}: use declare_parameter for 'set'; commands: {valid}")
        self._callbacks[command] = callback

    def declare_parameter(
        self,
        name: str,
        kind: type,
        on_set: Callable[[str, Any], None],
        *,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        """Accept ``set`` for ``name`` with values of ``kind`` (float, int, bool) within [low, high]."""
        if kind not in (float, int, bool):
            raise ValueError(f"parameter {name!r}: kind must be float, int or bool, got {kind!r}")
        if low is not None and high is not None and low > high:
            raise ValueError(f"parameter {name!r}: low {low} > high {high}")
        self._parameters[name] = _Parameter(name, kind, low, high, on_set)

    # -- the per-step call --------------------------------------------------
    def poll(self, step: int, *, wait_s: float = 0.0) -> list[Command]:
        """Apply what arrived; with ``wait_s`` > 0 wait (at most that long) for the answer to ``step``.

        Returns the commands applied during this call.
        """
        deadline = time.monotonic() + max(self.poll_timeout_s, wait_s)
        self._current_step = max(self._current_step, int(step))
        applied: list[Command] = []
        if self._engine is None:
            self._try_open()  # first attach, or a new stream after one ended (a restarted job)
        elif time.monotonic() >= self._next_replaced_check:
            self._next_replaced_check = time.monotonic() + self.REPLACED_CHECK_S
            if self._replaced():
                log.warning("steering: the reverse stream %r was replaced (the analytics restarted); reattaching",
                            self.stream)
                self._close_engine()
                self._try_open()
        while self._engine is not None:
            status = self._engine.impl.BeginStep(self._bindings.StepMode.Read, 0.0)
            if status == self._bindings.StepStatus.OK:
                record = self._read_record()
                self._engine.end_step()
                cmd = self._apply(record)
                if cmd is not None:
                    applied.append(cmd)
                if time.monotonic() > deadline and wait_s <= 0:
                    break  # the rest waits for the next poll: the bound holds
                continue
            if status == self._bindings.StepStatus.EndOfStream:
                log.info("steering stream %r ended (analytics finished or gone); the simulation goes on", self.stream)
                self._ended_identity = self._end_key()
                self._close_engine()
                self.stats.ended = True
                break
            if status != self._bindings.StepStatus.NotReady:  # OtherError: the writer vanished (SST)
                log.warning("steering: the analytics' end of %r vanished (%s); the simulation goes on and "
                            "reattaches if they restart", self.stream, status)
                self._ended_identity = self._end_key()
                self._close_engine()
                self.stats.ended = True
                break
            # NotReady: nothing more has arrived yet
            if wait_s > 0 and self.stats.last_answered_step < step and time.monotonic() < deadline:
                time.sleep(0.001)
                continue
            break
        if wait_s > 0 and self._engine is None and not self.stats.ended and time.monotonic() < deadline:
            # Not connected yet: keep looking for the analytics until the bound.
            while self._engine is None and time.monotonic() < deadline:
                time.sleep(0.005)
                self._try_open()
            if self._engine is not None:
                applied += self.poll(step, wait_s=max(0.0, deadline - time.monotonic()))
        return applied

    def close(self) -> None:
        self._close_engine()

    def __enter__(self) -> "SteeringClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------
    #: How often (seconds) a connected client checks whether its stream was replaced.
    REPLACED_CHECK_S = 0.5

    def _contact(self) -> str:
        return self.stream + ".sst" if self._sst else os.path.join(self.stream, "md.idx")

    def _stat_identity(self) -> tuple[tuple[int, int, float] | None, int]:
        """(identity of the writer's file, its size): a new writer's file has another identity."""
        try:
            st = os.stat(self._contact())
        except OSError:
            return None, 0
        # A BP5 md.idx grows while one writer appends: its inode names it.  An SST contact file is
        # written once: its inode and mtime name the writer.
        return (st.st_dev, st.st_ino, st.st_mtime if self._sst else 0.0), st.st_size

    def _replaced(self) -> bool:
        """Whether the stream we read was removed and written anew (a restarted analytics job).

        A new file may get the old one's inode number back, so for BP5 the
        reader's own open ``md.idx`` is also looked at (Linux ``/proc/self/fd``):
        once it is deleted, the file at the path is another one.
        """
        identity, size = self._stat_identity()
        if identity is None:
            return False  # gone (the analytics finished and cleaned up, or are restarting): keep reading
        replaced = (identity != self._identity or (not self._sst and size < self._size)
                    or (not self._sst and _open_file_deleted(os.path.join(self.stream, "md.idx"))))
        self._size = size
        return replaced

    def _end_key(self) -> tuple[int, int, int, int] | None:
        """The writer's file as it is now, in full (an ended stream's file no longer changes)."""
        try:
            st = os.stat(self._contact())
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _try_open(self) -> None:
        # Open only once the writer's file exists, so opening never waits for it.
        contact = self._contact()
        try:
            st = os.stat(contact)
        except FileNotFoundError:
            return  # the analytics have not started (or have finished): go on
        key = (st.st_mtime, st.st_size)
        if self._sst and self._failed_contact == key:
            return  # the same stale contact file that failed before
        if self._ended_identity is not None and self._end_key() == self._ended_identity:
            return  # the stream that already ended: wait for a new one
        identity, size = self._stat_identity()
        try:
            self._engine = self._io.open(self.stream, self._bindings.Mode.Read)
            self._identity, self._size = identity, size
            self._next_replaced_check = time.monotonic() + self.REPLACED_CHECK_S
            self.stats.connected = True
            log.info("steering: connected to %r", self.stream)
        except RuntimeError as exc:
            self._failed_contact = key
            log.warning("steering: could not attach to %r (%s); the simulation goes on without steering",
                        self.stream, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

    def _close_engine(self) -> None:
        if self._engine is not None:
            try:
                self._engine.close()
            except Exception:
                log.debug("steering: close failed", exc_info=True)
            self._engine = None

    #: Declared type of each protocol variable; a record whose variable has another type or shape
    #: is malformed (rejected, never applied, whatever bytes the reverse stream carries).
    _PROTOCOL_TYPES = {"seq": "int64_t", "answers_step": "int64_t", "set_value": "double",
                       "command": "string", "rule": "string", "args": "string", "set_name": "string"}
    #: Longest string accepted in a record (a JSON args far longer is not a steering command).
    MAX_STRING = 65536

    def _read_record(self) -> dict[str, Any]:
        """Read every protocol variable present this step; missing ones stay absent.

        Any variable of the wrong type or shape marks the record malformed (key
        ``_malformed``) instead of being read: ADIOS2 raises on a type mismatch
        and would read a 4-element ``seq`` into a 1-element buffer.
        """
        record: dict[str, Any] = {}
        problems: list[str] = []
        try:
            available = self._io.available_variables()
        except Exception as exc:  # noqa: BLE001 - any bytes in the stream: never kill the simulation
            record["_malformed"] = f"unreadable variable list ({type(exc).__name__})"
            return record
        for name, want in self._PROTOCOL_TYPES.items():
            if name not in available:
                continue
            info = available[name]
            got = str(info.get("Type", ""))
            shape = str(info.get("Shape", "")).strip()
            if got != want:
                problems.append(f"{name} is {got or 'untyped'}, expected {want}")
                continue
            if shape not in ("", "1"):
                problems.append(f"{name} has shape {{{shape}}}, expected a single value")
                continue
            try:
                var = self._io.inquire_variable(name)
                if want == "string":
                    value = self._engine.get(var)
                    if not isinstance(value, str):
                        raise TypeError(type(value).__name__)
                    if len(value) > self.MAX_STRING:
                        problems.append(f"{name} is {len(value)} characters long (at most {self.MAX_STRING})")
                        continue
                else:
                    buf = np.zeros(1, dtype=np.int64 if want == "int64_t" else np.float64)
                    self._engine.get(var, buf, self._bindings.Mode.Sync)
                    value = buf[0].item()
                record[name] = value
            except Exception as exc:  # noqa: BLE001 - see above
                problems.append(f"{name} unreadable ({type(exc).__name__}: {str(exc).strip()[:120]})")
        if problems:
            record["_malformed"] = "; ".join(problems)
        return record

    def _reject(self, record: dict[str, Any], reason: str, cmd: Command | None = None) -> None:
        self.stats.rejected += 1
        log.warning("steering: rejected %s: %s", record, reason)
        if cmd is not None:
            self.history.append((cmd, f"rejected: {reason}"))

    def _apply(self, record: dict[str, Any]) -> Command | None:
        self.stats.received += 1
        try:
            return self._apply_checked(record)
        except Exception as exc:  # noqa: BLE001 - a record must never kill the simulation
            if isinstance(exc, _CallbackError):
                raise exc.__cause__ from None  # the simulation's own callback failed: its error, not ours
            self._reject(record, f"malformed record ({type(exc).__name__}: {str(exc)[:200]})")
            return None

    def _apply_checked(self, record: dict[str, Any]) -> Command | None:
        if "_malformed" in record:
            self._reject(record, f"malformed record: {record['_malformed']}")
            return None
        missing = [k for k in ("seq", "answers_step", "command") if k not in record]
        if missing:
            self._reject(record, f"malformed record, missing {missing}")
            return None
        try:
            args = json.loads(record.get("args") or "{}", parse_constant=_no_constant)
        except RecursionError:
            self._reject(record, "malformed args (JSON nested too deeply)")
            return None
        except (TypeError, ValueError) as exc:
            self._reject(record, f"malformed args (not JSON: {str(exc)[:120]})")
            return None
        if not isinstance(args, dict):
            self._reject(record, "malformed args (not a JSON object)")
            return None
        cmd = Command(int(record["seq"]), int(record["answers_step"]), str(record["command"]),
                      str(record.get("rule", "")), args)
        if self.receipts is not None:
            self.receipts.append((cmd.seq, cmd.answers_step, self._current_step, time.monotonic()))
        if cmd.answers_step > self._current_step:
            self._reject(record, f"answers step {cmd.answers_step}, which this simulation has not reached "
                                 f"(it is at {self._current_step}): a stale steering stream from another run?", cmd)
            return None
        if cmd.seq <= self.stats.last_seq:
            self.stats.replayed += 1
            log.warning("steering: ignored replayed sequence number %d (last applied %d)", cmd.seq, self.stats.last_seq)
            self.history.append((cmd, "ignored: replayed sequence number"))
            return None
        # Whatever happens next, this sequence number is consumed: never applied twice.
        self.stats.last_seq = cmd.seq
        self.stats.last_answered_step = max(self.stats.last_answered_step, cmd.answers_step)
        if cmd.command == "set":
            return self._apply_set(cmd, record)
        callback = self._callbacks.get(cmd.command)
        if callback is None:
            accepted = sorted(self._callbacks) + (["set"] if self._parameters else [])
            self._reject(record, f"command {cmd.command!r} is not accepted by this simulation; it accepts {accepted}", cmd)
            return None
        try:
            callback(cmd)
        except Exception as exc:
            raise _CallbackError() from exc
        if cmd.command != "continue":
            log.info("steering: applied %s (seq %d, answers step %d, rule %r)", cmd.command, cmd.seq, cmd.answers_step, cmd.rule)
        self.stats.applied += 1
        self.history.append((cmd, "applied"))
        return cmd

    def _apply_set(self, cmd: Command, record: dict[str, Any]) -> Command | None:
        name = cmd.args.get("name")
        value = cmd.args.get("value")
        param = self._parameters.get(name) if isinstance(name, str) else None
        if param is None:
            self._reject(record, f"set of undeclared parameter {name!r}; declared: {sorted(self._parameters)}", cmd)
            return None
        if param.kind is bool:
            ok = isinstance(value, bool)
        elif param.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite_float(value)
        if not ok:
            self._reject(record, f"set {name}: value {value!r} is not a {param.kind.__name__}", cmd)
            return None
        if (param.low is not None and value < param.low) or (param.high is not None and value > param.high):
            self._reject(record, f"set {name}: value {value!r} outside [{param.low}, {param.high}]", cmd)
            return None
        try:
            param.on_set(name, param.kind(value))
        except Exception as exc:
            raise _CallbackError() from exc
        log.info("steering: set %s = %r (seq %d, answers step %d, rule %r)", name, value, cmd.seq, cmd.answers_step, cmd.rule)
        self.stats.applied += 1
        self.history.append((cmd, "applied"))
        return cmd


def _open_file_deleted(path: str) -> bool:
    """Whether this process holds ``path`` open and that file was deleted (Linux; False elsewhere)."""
    target = os.path.abspath(path) + " (deleted)"
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


class _CallbackError(Exception):
    """Carries an exception raised by the simulation's own callback through the record guard."""


def _no_constant(name: str) -> Any:
    """``json.loads`` hook: NaN, Infinity and -Infinity are not JSON; refuse them in args."""
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(value: int | float) -> bool:
    """True for a value that is a finite float64 (a 400-digit int overflows: not a float)."""
    try:
        return math.isfinite(float(value))
    except (OverflowError, ValueError):
        return False


#: Suffix of the simulation's end-of-stream report beside its stream (``<stream>.end.json``).
END_REPORT_SUFFIX = ".end.json"
END_REPORT_FORMAT = "intransit-end-of-stream/1"


def end_report_path(stream: str) -> str:
    return stream + END_REPORT_SUFFIX


def clear_end_of_stream(stream: str) -> None:
    """Remove an earlier run's report (call before opening the stream; a missing one is fine)."""
    try:
        os.remove(end_report_path(stream))
    except FileNotFoundError:
        pass


def report_end_of_stream(stream: str, steps_written: int) -> str:
    """Write ``<stream>.end.json``: how many steps the simulation published (after its last EndStep).

    Why: a keep-pace (Discard) SST writer drops steps the readers cannot take,
    and steps dropped after the last one a reader received are invisible to
    it -- the stream simply ends.  With this report the analytics count them
    exactly.  Write it after the last ``EndStep`` and before ``Close`` (a reader
    sees the end of the stream only once ``Close`` starts); the file is
    replaced atomically.  ``steps_written`` is the number of ``EndStep`` calls
    (ADIOS2 steps 0 .. steps_written - 1).  Returns the path.
    """
    if int(steps_written) < 0:
        raise ValueError(f"steps_written must be >= 0, got {steps_written!r}")
    path = end_report_path(stream)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump({"format": END_REPORT_FORMAT, "stream": os.path.basename(stream),
                   "steps_written": int(steps_written), "time": time.time()}, fh)
    os.replace(tmp, path)
    return path


def read_end_of_stream(stream: str, *, not_before: float | None = None) -> int | None:
    """Steps the writer reported it published, or None (no report, an older run's, or unreadable).

    ``not_before``: the writer's start (its contact file's mtime); a report older than that
    belongs to an earlier run of the stream.
    """
    path = end_report_path(stream)
    try:
        if not_before is not None and os.stat(path).st_mtime < not_before - 1.0:
            return None
        with open(path) as fh:
            report = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("format") != END_REPORT_FORMAT:
        return None
    steps = report.get("steps_written")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        return None
    return steps


def last_seq_in(stream: str) -> int:
    """The largest ``seq`` in a BP5 reverse stream on disk (0 if none or unreadable; never raises).

    Read with random access, so a stream whose writer was killed (never
    closed) is read as far as it was indexed.
    """
    import adios2
    from adios2 import bindings

    try:
        io = adios2.Adios().declare_io(f"intransit_last_seq_{os.getpid()}_{time.monotonic_ns()}")
        io.set_engine("BP5")
        engine = io.open(stream, bindings.Mode.ReadRandomAccess)
    except Exception:  # noqa: BLE001 - a damaged old stream only means we start after 0
        return 0
    try:
        var = io.inquire_variable("seq")
        if var is None or var.type() != "int64_t":
            return 0
        n = int(var.steps())
        if n <= 0:
            return 0
        var.set_step_selection([0, n])
        buf = np.zeros(n, dtype=np.int64)
        engine.get(var, buf, bindings.Mode.Sync)
        return max(0, int(buf.max()))
    except Exception:  # noqa: BLE001
        return 0
    finally:
        try:
            engine.close()
        except Exception:  # noqa: BLE001
            pass


class SteeringWriter:
    """The analytics' end: rank 0 writes one record per analyzed step."""

    def __init__(self, stream: str, *, xml: str | None = None, io_name: str = STEERING_IO) -> None:
        import adios2
        from adios2 import bindings

        self._bindings = bindings
        self.stream = stream
        self._adios = adios2.Adios(xml) if xml else adios2.Adios()
        self._io = self._adios.declare_io(io_name)
        if not xml:
            self._io.set_engine(DEFAULT_ENGINE)
        if self._io.engine_type().upper() == "SST":
            for key, value in SST_WRITER_PARAMS.items():
                if key not in self._io.parameters():
                    self._io.set_parameter(key, value)
            if os.path.exists(stream + ".sst"):
                log.warning("steering: removing stale contact file %s.sst", stream)
                os.remove(stream + ".sst")
        #: The last sequence number of the stream this one replaces (0: none): a simulation still
        #: running ignores every seq it has applied, so a new job (a restart) must continue after it.
        self.previous_seq = 0
        if self._io.engine_type().upper() != "SST" and os.path.isdir(stream) \
                and os.path.exists(os.path.join(stream, "md.idx")):
            # Our own previous run's reverse stream: a simulation must never read its old commands.
            self.previous_seq = last_seq_in(stream)
            shutil.rmtree(stream)
        os.makedirs(os.path.dirname(os.path.abspath(stream)), exist_ok=True)
        self._engine = self._io.open(stream, bindings.Mode.Write)
        self._ints = {n: self._io.define_variable(n, np.zeros(1, dtype=np.int64)) for n in ("seq", "answers_step")}
        self._value = self._io.define_variable("set_value", np.zeros(1, dtype=np.float64))
        self._strings = {n: self._io.define_variable(n) for n in ("command", "rule", "args", "set_name")}
        self.seq = self.previous_seq
        if self.seq:
            log.info("steering: %r replaces a reverse stream whose last record was seq %d; continuing after it",
                     stream, self.seq)

    def resume_after(self, seq: int) -> None:
        """Continue numbering after ``seq`` (a checkpoint's last seq), unless already past it."""
        if int(seq) > self.seq:
            self.seq = int(seq)

    def write(self, answers_step: int, command: str, args: dict[str, Any] | None = None, rule: str = "") -> int:
        """Send one record; returns its sequence number."""
        if command not in COMMANDS:
            raise ValueError(f"unknown steering command {command!r}; valid: {COMMANDS}")
        args = dict(args or {})
        self.seq += 1
        mode = self._bindings.Mode.Sync
        self._engine.begin_step()
        self._engine.put(self._ints["seq"], np.array([self.seq], dtype=np.int64), mode)
        self._engine.put(self._ints["answers_step"], np.array([answers_step], dtype=np.int64), mode)
        self._engine.put(self._strings["command"], command)
        self._engine.put(self._strings["rule"], rule)
        self._engine.put(self._strings["args"], json.dumps(args, sort_keys=True))
        is_set = command == "set"
        self._engine.put(self._strings["set_name"], str(args.get("name", "")) if is_set else "")
        value = float(args["value"]) if is_set and isinstance(args.get("value"), (int, float)) else float("nan")
        self._engine.put(self._value, np.array([value], dtype=np.float64), mode)
        self._engine.end_step()
        return self.seq

    def write_raw(self, record: dict[str, Any]) -> None:
        """Send an arbitrary record (tests of the client's validation)."""
        mode = self._bindings.Mode.Sync
        self._engine.begin_step()
        for name, value in record.items():
            if name in self._ints:
                self._engine.put(self._ints[name], np.array([value], dtype=np.int64), mode)
            elif name == "set_value":
                self._engine.put(self._value, np.array([value], dtype=np.float64), mode)
            else:
                self._engine.put(self._strings[name], str(value))
        self._engine.end_step()

    def close(self) -> None:
        self._engine.close()
