"""The source stage: one ADIOS2 stream, yielding steps every rank agreed on, read per variable.

Ranks agree on the writer step before analyzing it: with the serial ADIOS2
wheel every rank is its own SST reader, and a rank that attached a moment
later (or was handed a different step) must skip ahead to the common step, or
the gathered partials would mix steps.  The writer's step number is what the
source yields; the loop index and the drops are the accounting stage's.

Contract (docs/stages.md): ``next_step`` returns the agreed writer step, or
None at the end of the stream, and raises ``StepTimeout`` on a stall;
``read(plan)`` reads every variable of the plan (whole axes, halos), ends the
step (the writer is released as soon as our copies are in our buffers) and
returns ``{variable: (global_shape, blocks)}`` on every rank.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from intransit.adapters.reader import AdiosStepReader, StepReader, StepStatus, StreamError, WriterLost
from intransit.analyzers.base import Block
from intransit.service.config import JobConfig
from intransit.service.errors import SetupError, StepTimeout, collective_ok

ReaderFactory = Callable[[JobConfig, int, int, Any], StepReader]
#: What the source hands the pipeline per variable: its global shape and this rank's blocks.
Fields = dict[str, tuple[tuple[int, ...], list[Block]]]


def default_reader(cfg: JobConfig, rank: int, size: int, comm: Any) -> StepReader:
    """The job's stream reader; collective over ``comm`` (the ranks agree when to open SST), so every rank calls it."""
    s = cfg.stream
    return AdiosStepReader(
        stream=s.name,
        xml=s.xml,
        io_name=s.io,
        rank=rank,
        n_ranks=size,
        engine=s.engine,
        open_timeout_s=s.open_timeout_s,
        comm=comm,
    )


def begin_step(reader: StepReader, timeout_s: float, split: bool, on_idle: Callable[[], None] | None) -> StepStatus:
    """``reader.begin_step``; with ``split``, a poll first and, if no step is ready, ``on_idle`` before waiting.

    The catalog holds fast steps in memory between writes; this writes them
    out in time we would spend waiting anyway (``flush_when_idle``: unless the
    last write is under 20 ms old, so a fast stream's microsecond gaps do not
    each cost a write).  A simulation that pauses therefore has all its steps
    in the catalog except those analyzed in the last 20 ms before the pause,
    which follow when it resumes or the job ends.

    The poll uses a zero timeout on purpose: an SST ``BeginStep`` whose
    positive timeout expires frees its timer task while
    the task may still fire (ADIOS2 2.12 ``waitForMetadataWithTimeout``), which
    crashed the analytics now and then (docs/adios2_notes.md); a zero timeout
    sets no timer.  Not for an MPI reader cohort (``collective_steps``), whose
    collective ``BeginStep`` we do not call twice per step.
    """
    if not split:
        return reader.begin_step(timeout_s)
    status = reader.begin_step(0.0)
    if status is not StepStatus.TIMEOUT:
        return status
    if on_idle is not None:
        on_idle()
    return reader.begin_step(timeout_s)


def begin_agreed(reader: StepReader, comm: Any, timeout_s: float, *, split: bool = False,
                 on_idle: Callable[[], None] | None = None) -> tuple[StepStatus, int]:
    """Begin a step on every rank, advancing the laggards until all hold the same writer step."""
    status = begin_step(reader, timeout_s, split, on_idle)
    step = reader.current_step() if status is StepStatus.OK else -1
    if comm.Get_size() == 1:  # nobody to agree with (saves microseconds on fast streams)
        return status, step
    while True:
        states = comm.allgather((status.value, step))
        values = [s for s, _ in states]
        stops = [s for s in (StepStatus.LOST, StepStatus.TIMEOUT, StepStatus.END) if s.value in values]
        if stops:
            if status is StepStatus.OK:
                reader.end_step()
            return stops[0], -1  # the worst: a lost writer, then a stall, then the end
        target = max(s for _, s in states)
        if all(s == target for _, s in states):
            return StepStatus.OK, step
        if step < target:
            reader.end_step()
            status = reader.begin_step(timeout_s)
            step = reader.current_step() if status is StepStatus.OK else -1


class StreamSource:
    """One stream read by every rank: agreed steps, then this rank's share of each variable.

    Opening is collective (``reader_factory`` may agree an SST open plan over
    ``world_comm``); a rank that cannot open makes every rank raise.
    """

    def __init__(self, cfg: JobConfig, comm: Any, world_comm: Any, reader_factory: ReaderFactory) -> None:
        self.name = cfg.stream.name
        self.timeout_s = cfg.stream.step_timeout_s
        self.comm = comm
        self.size = comm.Get_size()
        error: str | None = None
        reader: StepReader | None = None
        try:
            reader = reader_factory(cfg, comm.Get_rank(), self.size, world_comm)
        except StreamError as exc:
            error = str(exc)
        collective_ok(comm, error)
        assert reader is not None
        self.reader = reader
        #: Split waits (poll, idle work, wait) are for readers whose BeginStep is not collective.
        self.collective_steps = bool(getattr(reader, "collective_steps", False))
        #: Wait for a step in two parts (a zero-timeout poll, idle work, the wait) when the catalog holds
        #: steps between writes (``catalog_flush_s`` > 0), on every rank alike.
        self.split = cfg.output.catalog_flush_s > 0 and not self.collective_steps
        self.on_idle: Callable[[], None] | None = None
        self._ndim: dict[str, int] = {}
        #: Steps this run received (agreed) from the writer.
        self.steps_seen = 0
        #: The writer vanished or stalled past the step timeout (``next_step`` raised).
        self.writer_gone = False
        #: A live SST stream (a writer may drop steps we never see), not a replayed file.
        self.live = str(getattr(reader, "engine_type", "")).upper() == "SST"

    def idle_work(self, on_idle: Callable[[], None] | None) -> None:
        """Run ``on_idle`` (a sink's deferred write) while no step is ready (with ``split`` waits)."""
        self.on_idle = on_idle

    def next_step(self, after: int | None) -> int | None:
        """The next writer step every rank holds; None at the end of the stream; ``StepTimeout`` on a stall.

        ``after``: the last step analyzed (for the timeout's message).
        """
        status, step = begin_agreed(self.reader, self.comm, self.timeout_s, split=self.split, on_idle=self.on_idle)
        if status is StepStatus.OK:
            self.steps_seen += 1
            return step
        if status is StepStatus.END:
            return None
        self.writer_gone = True  # lost or stalled: closing could block on it (see close)
        where = f"after writer step {after}" if after is not None else "before the first step"
        if status is StepStatus.LOST:
            seen = (f"after writer step {after} ({self.steps_seen} step(s) reached this job)" if after is not None
                    else "before any step reached this job")
            raise WriterLost(
                f"the writer of stream {self.name!r} vanished {seen}: its connection closed without an end of "
                "stream (the simulation was killed or crashed, or the network to it failed). What it wrote after "
                "that is not in the catalog; the summary counts what was seen."
            )
        raise StepTimeout(
            f"no step from stream {self.name!r} within {self.timeout_s:g} s ({where}); "
            "the simulation is stalled or gone, or the network to it is cut. Raise [stream] step_timeout_s if its "
            "steps are slower."
        )

    def read(self, plan: Any) -> Fields:
        """Every variable of ``plan`` (a ``pipeline.ReadPlan``), then ``end_step``; collective on a failure.

        A variable with a halo is read with ``halo``/``periodic`` (the halo
        depends on the array's rank, known after its first read; that read is
        repeated with the halo once); every other variable with the reader's
        plain ``read(variable, whole_axes)``, so readers without the halo
        keywords keep working.
        """
        reader = self.reader
        fields: Fields = {}
        error: str | None = None
        try:
            for variable in plan.variables:
                whole = plan.whole_axes[variable]
                if not plan.has_halo:
                    fields[variable] = reader.read(variable, whole)
                    continue
                ndim = self._ndim.get(variable)
                extent = plan.halo(variable, ndim) if ndim is not None else None
                shape, blocks = (reader.read(variable, whole, halo=extent[0], periodic=extent[1]) if extent
                                 else reader.read(variable, whole))
                if ndim != len(shape):  # first read (or the array changed rank): its halo is known now
                    self._ndim[variable] = len(shape)
                    extent = plan.halo(variable, len(shape))
                    if extent:
                        shape, blocks = reader.read(variable, whole, halo=extent[0], periodic=extent[1])
                fields[variable] = (shape, blocks)
        except (StreamError, SetupError) as exc:
            error = str(exc)
        reader.end_step()  # our copies are in our buffers: release the writer now
        if error is not None or self.size > 1:
            collective_ok(self.comm, error)
        return fields

    def writer_steps(self, wait_s: float = 0.3) -> int | None:
        """How many steps the writer reported it published (``<stream>.end.json``), or None where it did not.

        Only for an SST stream (a replayed file holds every step it has): a
        keep-pace writer may discard steps after the last one we received,
        which the transport never shows.  The report is written before the
        writer's ``Close``, so it is normally there when the stream ends; a
        short wait covers a slow shared file system.
        """
        from intransit.adapters.steering import read_end_of_stream

        mtime = getattr(self.reader, "contact_mtime", None)
        if mtime is None:
            return None
        deadline = time.monotonic() + wait_s
        while True:
            steps = read_end_of_stream(self.name, not_before=mtime)
            if steps is not None or time.monotonic() >= deadline:
                return steps
            time.sleep(0.05)

    def close(self) -> None:
        """Close the reader; after a lost or stalled writer, leave the stream instead (``abandon``).

        SST's close waits on the writer's connection, which with the network
        cut blocked for minutes after the job had stopped.
        """
        abandon = getattr(self.reader, "abandon", None)
        if self.writer_gone and abandon is not None:
            abandon()
        else:
            self.reader.close()
