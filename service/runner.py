"""The step loop: read my blocks → analyzer pipeline → gather to rank 0 → catalog.

Ranks agree on the writer step before analyzing it: with the serial ADIOS2
wheel every rank is its own SST reader, and a rank that attached a moment
later (or was handed a different step) must skip ahead to the common step, or
the gathered partials would mix steps.  The writer's step number is kept
beside our loop index, so every step the writer dropped or we missed is
counted and reported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
from typing import Any, Callable, Sequence

import numpy as np

from intransit.adapters.reader import AdiosStepReader, StepReader, StepStatus, StreamError
from intransit.analyzers import base as analyzer_base
from intransit.analyzers.base import Analyzer, StepContext, StepResult
from intransit.service import checkpoint as job_checkpoint
from intransit.service.catalog import CatalogWriter
from intransit.service.comm import SerialComm, sum_allreduce
from intransit.service.config import AnalyzerConfig, JobConfig
from intransit.service.steering import RuleEngine

log = logging.getLogger(__name__)


#: Steering commands as numbers in the catalog (``steering/command``).
COMMAND_CODES = {"continue": 0, "stop": 1, "checkpoint": 2, "set": 3, "trigger": 4}


class StepTimeout(RuntimeError):
    """No step arrived within the configured timeout (not the end of the stream)."""


class SetupError(RuntimeError):
    """The job could not start; the message says why."""


@dataclasses.dataclass
class _Failure:
    """A partial that stands for an exception on one rank."""

    rank: int
    text: str


@dataclasses.dataclass
class RunSummary:
    """What a finished job reports (rank 0 holds the full picture)."""

    steps_analyzed: int = 0
    steps_dropped: int = 0
    first_step: int | None = None
    last_step: int | None = None
    end_reason: str = ""
    step_seconds_mean: float = 0.0
    step_seconds_p95: float = 0.0
    steps_per_second: float = 0.0
    #: From the end of the first analyzed step to the end of the last (excludes the
    #: open/rendezvous wait), over steps_analyzed - 1 steps: the steady rate.
    elapsed_seconds: float = 0.0
    #: (loop index, resident set size in MB) every 500 steps, on rank 0.
    rss_mb: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    catalog: str = ""
    commands: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    steps_analyzed_steady: int = 0
    #: CPU time of this process (all its threads: ours, ADIOS2's, the analyzers') from the
    #: end of the first analyzed step to the end of the loop (for a stream that ends, the
    #: wait for its end included): how much of its cores the analytics use per step.
    cpu_seconds: float = 0.0
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


ReaderFactory = Callable[[JobConfig, int, int, Any], StepReader]


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), for the flat-memory check."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 2)
    except (OSError, ValueError, IndexError):
        return float("nan")


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


def build_pipeline(configs: Sequence[AnalyzerConfig]) -> list[Analyzer]:
    """Instantiate every analyzer; any failure stops the job before a step is read."""
    pipeline = []
    for ac in configs:
        cls = analyzer_base.get(ac.type)
        try:
            pipeline.append(cls(**ac.params))
        except Exception as exc:
            raise SetupError(f"analyzer {ac.name!r} (type {ac.type!r}) failed to start: {exc}") from exc
    return pipeline


def _collective_ok(comm: Any, error: str | None) -> None:
    """Every rank learns whether any rank failed; all raise the first error."""
    errors = comm.allgather(error)
    first = next((e for e in errors if e), None)
    if first:
        raise SetupError(first)


def _begin_step(reader: StepReader, timeout_s: float, split: bool, on_idle: Callable[[], None] | None) -> StepStatus:
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


def _begin_agreed(reader: StepReader, comm: Any, timeout_s: float, *, split: bool = False,
                  on_idle: Callable[[], None] | None = None) -> tuple[StepStatus, int]:
    """Begin a step on every rank, advancing the laggards until all hold the same writer step."""
    status = _begin_step(reader, timeout_s, split, on_idle)
    step = reader.current_step() if status is StepStatus.OK else -1
    if comm.Get_size() == 1:  # nobody to agree with (saves microseconds on fast streams)
        return status, step
    while True:
        states = comm.allgather((status.value, step))
        values = [s for s, _ in states]
        if StepStatus.TIMEOUT.value in values or StepStatus.END.value in values:
            if status is StepStatus.OK:
                reader.end_step()
            worst = StepStatus.TIMEOUT if StepStatus.TIMEOUT.value in values else StepStatus.END
            return worst, -1
        target = max(s for _, s in states)
        if all(s == target for _, s in states):
            return StepStatus.OK, step
        if step < target:
            reader.end_step()
            status = reader.begin_step(timeout_s)
            step = reader.current_step() if status is StepStatus.OK else -1


def run_job(
    cfg: JobConfig,
    comm: Any,
    *,
    reader_factory: ReaderFactory = default_reader,
    on_step: Callable[[int, int, dict[str, StepResult | None]], None] | None = None,
) -> RunSummary:
    """Run the job to the end of the stream (or ``max_steps``); raises on timeout."""
    # What ADIOS2 gets: an MPI build wants the real communicator, or none at all.
    world_comm = None if isinstance(comm, SerialComm) else comm
    if comm.Get_size() == 1 and not isinstance(comm, SerialComm):
        comm = SerialComm()  # one rank: collectives are identities; skip MPI's per-call cost
    rank, size = comm.Get_rank(), comm.Get_size()
    summary = RunSummary(catalog=cfg.output.catalog)

    error: str | None = None
    pipeline: list[Analyzer] = []
    try:
        pipeline = build_pipeline(cfg.analyzers)
    except SetupError as exc:
        error = str(exc)
    _collective_ok(comm, error)

    reader: StepReader | None = None
    try:
        reader = reader_factory(cfg, rank, size, world_comm)
    except StreamError as exc:
        error = str(exc)
    _collective_ok(comm, error)
    assert reader is not None

    catalog: CatalogWriter | None = None
    steering_writer: Any = None
    rules: RuleEngine | None = None
    if rank == 0 and cfg.steering is not None:
        from intransit.adapters.steering import SteeringWriter

        try:
            steering_writer = SteeringWriter(cfg.steering.stream, xml=cfg.steering.xml, io_name=cfg.steering.io)
        except RuntimeError as exc:
            error = f"cannot open the steering stream {cfg.steering.stream!r}: {exc}"
        rules = RuleEngine(cfg.steering.rules)
    _collective_ok(comm, error)

    allreduce = sum_allreduce(comm)
    # Per variable, the axes some analyzer needs whole on each rank (union).
    whole_axes: dict[str, tuple[int, ...]] = {}
    for ac, analyzer in zip(cfg.analyzers, pipeline):
        whole_axes[ac.variable] = tuple(sorted(set(whole_axes.get(ac.variable, ())) | set(type(analyzer).whole_axes)))
    step_seconds: list[float] = []
    last_step: int | None = None
    index = 0
    ckpt_path = cfg.output.checkpoint
    state: dict[str, Any] | None = None
    if rank == 0 and ckpt_path and cfg.output.restore and os.path.exists(ckpt_path):
        try:
            state = job_checkpoint.load(ckpt_path)
            for ac, analyzer in zip(cfg.analyzers, pipeline):
                if ac.name in state["analyzers"]:
                    analyzer.load_state_dict(state["analyzers"][ac.name])
            if rules is not None and state.get("rules"):
                rules.load_state_dict(state["rules"])
            index = int(state["index"])
            summary.extras["restored_from"] = {"path": ckpt_path, "last_step": state["last_step"], "index": index}
            log.info("resumed from checkpoint %s (last writer step %s, loop index %d)", ckpt_path, state["last_step"], index)
        except Exception as exc:
            error = f"cannot restore checkpoint {ckpt_path!r}: {exc}"
    _collective_ok(comm, error)
    index = comm.bcast(index, root=0)
    locals_saved = comm.bcast(state.get("local", []) if state else [], root=0)
    if locals_saved:
        if len(locals_saved) == size:
            for ac, analyzer in zip(cfg.analyzers, pipeline):
                analyzer.load_local_state_dict(locals_saved[rank].get(ac.name, {}))
        elif rank == 0:
            log.warning("checkpoint holds per-rank state of %d ranks, this job has %d: per-rank state starts fresh",
                        len(locals_saved), size)
    first_index = index

    def save_checkpoint() -> None:
        if not ckpt_path:
            return
        if catalog is not None:
            catalog.flush()  # a resumed job appends after the checkpointed step: those before must be in the file
        local = comm.gather({ac.name: a.local_state_dict() for ac, a in zip(cfg.analyzers, pipeline)}, root=0)
        if rank == 0:
            job_checkpoint.save(
                ckpt_path,
                analyzers={ac.name: a.state_dict() for ac, a in zip(cfg.analyzers, pipeline)},
                rules=rules.state_dict() if rules is not None else None,
                last_step=last_step,
                index=index,
                local=local,
            )

    if rank == 0:
        schemas = {ac.name: type(a).event_fields for ac, a in zip(cfg.analyzers, pipeline)}
        meta = {"stream": cfg.stream.name, "ranks": str(size), "job": cfg.path}
        catalog = CatalogWriter(cfg.output.catalog, schemas, metadata=meta, append="restored_from" in summary.extras,
                                flush_interval_s=cfg.output.catalog_flush_s)

    split_waits = cfg.output.catalog_flush_s > 0 and not getattr(reader, "collective_steps", False)
    on_idle = catalog.flush_when_idle if catalog is not None else None
    debug = log.isEnabledFor(logging.DEBUG)  # once: the per-step line costs even when filtered out
    t_start = time.perf_counter()
    t_first_done: float | None = None
    cpu_first_done = cpu_end = 0.0
    t_last_done = 0.0
    try:
        while cfg.stream.max_steps == 0 or index < cfg.stream.max_steps:
            t0 = time.perf_counter()
            status, step = _begin_agreed(reader, comm, cfg.stream.step_timeout_s, split=split_waits,
                                         on_idle=on_idle)
            if status is StepStatus.END:
                summary.end_reason = "end of stream"
                break
            if status is StepStatus.TIMEOUT:
                after = f"after writer step {last_step}" if last_step is not None else "before the first step"
                raise StepTimeout(
                    f"no step from stream {cfg.stream.name!r} within {cfg.stream.step_timeout_s:g} s ({after}); "
                    "the simulation is stalled or gone. Raise [stream] step_timeout_s if its steps are slower."
                )
            t_wait = time.perf_counter()
            dropped = step - (last_step + 1 if last_step is not None else 0)
            if dropped < 0:
                raise StreamError(f"stream {cfg.stream.name!r} went back from step {last_step} to {step}")
            fields: dict[str, tuple[tuple[int, ...], list[analyzer_base.Block]]] = {}
            read_error = None
            try:
                for ac, analyzer in zip(cfg.analyzers, pipeline):
                    if ac.variable not in fields:
                        fields[ac.variable] = reader.read(ac.variable, whole_axes[ac.variable])
            except StreamError as exc:
                read_error = str(exc)
            reader.end_step()  # our copies are in our buffers: release the writer now
            if read_error is not None or size > 1:
                _collective_ok(comm, read_error)
            t_read = time.perf_counter()

            results: dict[str, StepResult | None] = {}
            for ac, analyzer in zip(cfg.analyzers, pipeline):
                shape, blocks = fields[ac.variable]
                ctx = StepContext(
                    step=step,
                    index=index,
                    variable=ac.variable,
                    global_shape=shape,
                    blocks=blocks,
                    allreduce=allreduce,
                    upstream=results if rank == 0 else {},
                    input=results.get(ac.input) if (rank == 0 and ac.input) else None,
                )
                try:
                    partial: Any = analyzer.process_blocks(ctx)
                except Exception:
                    partial = _Failure(rank, traceback.format_exc())
                partials = comm.gather(partial, root=0)
                if rank != 0:
                    continue
                failures = [p for p in partials if isinstance(p, _Failure)]
                if ac.input and results.get(ac.input) is None:
                    results[ac.name] = None
                    log.warning("step %d: %s skipped, its input %s failed", step, ac.name, ac.input)
                elif failures:
                    results[ac.name] = None
                    for f in failures:
                        log.error("step %d: analyzer %s failed on rank %d (skipped this step):\n%s", step, ac.name, f.rank, f.text)
                else:
                    try:
                        results[ac.name] = analyzer.combine(partials, ctx)
                    except Exception:
                        results[ac.name] = None
                        log.error("step %d: analyzer %s failed in combine (skipped this step):\n%s", step, ac.name, traceback.format_exc())
                if results[ac.name] is None:
                    summary.failures[ac.name] = summary.failures.get(ac.name, 0) + 1
            t_done = time.perf_counter()
            seconds = t_done - t_wait  # our cost: read + analyze (waiting for the writer is not ours)
            extra: dict[str, float] = {}
            if steering_writer is not None and rules is not None:
                decision = rules.evaluate(results)
                seq = steering_writer.write(step, decision.command, decision.args, decision.rule)
                extra = {"steering/seq": seq, "steering/command": COMMAND_CODES[decision.command]}
                if decision.command != "continue":
                    summary.commands.append({"seq": seq, "answers_step": step, "command": decision.command,
                                             "args": decision.args, "rule": decision.rule})
                    log.info("step %d: rule %r fired → %s %s (seq %d)", step, decision.rule, decision.command,
                             decision.args or "", seq)
            if catalog is not None:
                extra["wait_seconds"] = t_wait - t0
                catalog.write_step(step=step, index=index, dropped=dropped, seconds=seconds, results=results, extra=extra)
                if on_step is not None:
                    on_step(step, index, results)
            if debug:
                log.debug(
                    "step %d (index %d): wait %.4f read %.4f analyze %.4f s, dropped %d",
                    step, index, t_wait - t0, t_read - t_wait, t_done - t_read, dropped,
                )
            if rank == 0 and (index % 25 == 0 or dropped):
                log.info("step %d analyzed (index %d)%s", step, index, f", {dropped} dropped before it" if dropped else "")
            step_seconds.append(seconds)
            if t_first_done is None:
                t_first_done = t_done
                cpu_first_done = time.process_time()
            t_last_done = t_done
            if rank == 0 and index % 500 == 0:
                summary.rss_mb.append((index, _rss_mb()))
            summary.steps_dropped += dropped
            summary.first_step = step if summary.first_step is None else summary.first_step
            summary.last_step = step
            last_step = step
            index += 1
            if cfg.output.checkpoint_every and index % cfg.output.checkpoint_every == 0:
                save_checkpoint()
        else:
            summary.end_reason = f"max_steps {cfg.stream.max_steps} reached"
        cpu_end = time.process_time()
        save_checkpoint()
    finally:
        reader.close()
        for analyzer in pipeline:
            analyzer.close()
        if catalog is not None:
            catalog.close()
            summary.extras["catalog_bp5_steps"] = catalog.batches_written
        if steering_writer is not None:
            steering_writer.close()

    elapsed = time.perf_counter() - t_start
    summary.steps_analyzed = index - first_index
    if step_seconds:
        summary.step_seconds_mean = float(np.mean(step_seconds))
        summary.step_seconds_p95 = float(np.percentile(step_seconds, 95))
        summary.steps_per_second = summary.steps_analyzed / elapsed if elapsed > 0 else 0.0
    if t_first_done is not None and summary.steps_analyzed > 1:
        summary.elapsed_seconds = t_last_done - t_first_done
        summary.steps_analyzed_steady = summary.steps_analyzed - 1
        summary.cpu_seconds = cpu_end - cpu_first_done
    if rank == 0:
        summary.rss_mb.append((index, _rss_mb()))
    if rank == 0:
        for ac, analyzer in zip(cfg.analyzers, pipeline):
            describe = getattr(analyzer, "summary", None)
            if callable(describe):
                summary.extras[ac.name] = describe()
    return summary
