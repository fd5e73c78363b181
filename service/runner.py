"""The job as stages: source → pipeline → sinks, with step accounting and the checkpoint beside them.

``run_job`` reads as the sentence it is: open the source and the sinks,
restore, then for each step read, analyze (gathers and combines included),
write, steer and checkpoint, then the summary.  Each stage is a module with
a small interface (docs/stages.md):

* source (service/source.py): the stream; steps every rank agreed on, read per variable;
* pipeline (service/pipeline.py): the analyzers, what they need read (whole axes, halos), gathers to rank 0;
* sinks (service/sinks.py, service/products.py): catalog, steering, products, progress;
* accounting (service/accounting.py): analyzed, dropped, failed, the restart offset, the summary;
* checkpoint (service/state.py): every stage's state through one interface.

The names other modules import from here (``run_job``, ``RunSummary``,
``SetupError``, ``StepTimeout``, ...) stay importable from here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from intransit.adapters.reader import WriterLost
from intransit.analyzers.base import StepResult
from intransit.service.accounting import RunSummary, StepAccounting, rss_mb as _rss_mb
from intransit.service.catalog import claim_catalog
from intransit.service.comm import SerialComm
from intransit.service.config import JobConfig
from intransit.service.errors import SetupError, StepTimeout, collective_ok as _collective_ok
from intransit.service.pipeline import Pipeline, build_analyzers as build_pipeline
from intransit.service.products import ProductSink, product_folder
from intransit.service.sinks import COMMAND_CODES, CatalogSink, ProgressLog, SteeringSink
from intransit.service.source import (ReaderFactory, StreamSource, begin_agreed as _begin_agreed,
                                      begin_step as _begin_step, default_reader)
from intransit.service.state import Checkpointer

__all__ = ["COMMAND_CODES", "ReaderFactory", "RunSummary", "SetupError", "StepTimeout", "build_pipeline",
           "default_reader", "run_job", "_begin_agreed", "_begin_step", "_collective_ok", "_rss_mb"]

log = logging.getLogger(__name__)


def _open_pipeline(cfg: JobConfig, comm: Any) -> Pipeline:
    """Every analyzer started on every rank, or a SetupError on all of them."""
    error, analyzers = None, []
    try:
        analyzers = build_pipeline(cfg.analyzers)
    except SetupError as exc:
        error = str(exc)
    _collective_ok(comm, error)
    return Pipeline(cfg.analyzers, analyzers, comm)


def _close(summary: RunSummary, source: StreamSource, pipeline: Pipeline, catalog: CatalogSink | None,
           products: ProductSink | None, steering: SteeringSink | None) -> None:
    """Close every stage, the reader first (it releases the writer); each close runs even if one before failed."""
    try:
        source.close()
    finally:
        try:
            pipeline.close()
        finally:
            try:
                if catalog is not None:
                    summary.extras["catalog_bp5_steps"] = catalog.close()
            finally:
                try:
                    if products is not None:
                        products.close()
                finally:
                    if steering is not None:
                        steering.close()


def run_job(
    cfg: JobConfig,
    comm: Any,
    *,
    reader_factory: ReaderFactory = default_reader,
    on_step: Callable[[int, int, dict[str, StepResult | None]], None] | None = None,
) -> RunSummary:
    """Run the job to the end of the stream (or ``max_steps``); raises on timeout.

    The catalog is locked first, before the stream opens (service/catalog.py
    ``claim_catalog``): a second job on the same catalog stops there.
    """
    lock = claim_catalog(cfg.output.catalog, comm)
    try:
        return _run_job(cfg, comm, reader_factory=reader_factory, on_step=on_step)
    finally:
        if lock is not None:
            lock.release()


def _run_job(
    cfg: JobConfig,
    comm: Any,
    *,
    reader_factory: ReaderFactory,
    on_step: Callable[[int, int, dict[str, StepResult | None]], None] | None,
) -> RunSummary:
    # What ADIOS2 gets: an MPI build wants the real communicator, or none at all.
    world_comm = None if isinstance(comm, SerialComm) else comm
    if comm.Get_size() == 1 and not isinstance(comm, SerialComm):
        comm = SerialComm()  # one rank: collectives are identities; skip MPI's per-call cost
    rank, size = comm.Get_rank(), comm.Get_size()
    summary = RunSummary(catalog=cfg.output.catalog)
    pipeline = _open_pipeline(cfg, comm)
    source = StreamSource(cfg, comm, world_comm, reader_factory)
    steering, error = SteeringSink.open(cfg, rank)
    _collective_ok(comm, error)
    acc = StepAccounting(summary, stream=cfg.stream.name, max_steps=cfg.stream.max_steps, rank=rank)
    checkpoint = Checkpointer(cfg.output, comm, pipeline=pipeline, accounting=acc, steering=steering)
    restored = checkpoint.restore()
    catalog = CatalogSink(cfg, pipeline, size, append=restored is not None, on_step=on_step) if rank == 0 else None
    products = (ProductSink(product_folder(cfg.output), rank, size, append=restored is not None)
                if pipeline.producers else None)
    checkpoint.before_save = catalog.flush if catalog is not None else None
    source.idle_work(catalog.on_idle if catalog is not None else None)
    progress = ProgressLog(rank)
    stopped: WriterLost | StepTimeout | None = None  # the writer vanished or stalled: summary, then raise
    try:
        while acc.more():
            t0 = time.perf_counter()
            step = source.next_step(acc.last_step)
            if step is None:
                acc.loop_ended("end of stream")
                acc.stream_ended(source.writer_steps() if rank == 0 else None, live=source.live)
                break
            t_wait = time.perf_counter()
            dropped = acc.dropped_before(step)
            fields = source.read(pipeline.plan)
            t_read = time.perf_counter()
            results = pipeline.process(step, acc.index, fields)
            if products is not None:
                products.write(step, pipeline.products(final=False))
            t_done = time.perf_counter()
            extra = steering.answer(step, results) if steering is not None else {}
            if catalog is not None:
                extra["wait_seconds"] = t_wait - t0
                catalog.write(step, acc.index, dropped, t_done - t_wait, results, extra)
            progress.step(step, acc.index, dropped, t_wait - t0, t_read - t_wait, t_done - t_read)
            acc.done(step, dropped, t_done - t_wait, t_done)
            if checkpoint.due(acc.index):
                checkpoint.save()
        else:
            acc.loop_ended(f"max_steps {cfg.stream.max_steps} reached")
        if products is not None and acc.last_step is not None:
            products.write(acc.last_step, pipeline.products(final=True))
        checkpoint.save()
    except (WriterLost, StepTimeout) as exc:
        stopped = exc
        acc.writer_lost(stalled=isinstance(exc, StepTimeout))
        acc.loop_ended(str(exc))
        checkpoint.save()  # what was analyzed stays resumable
    finally:
        _close(summary, source, pipeline, catalog, products, steering)
    if restored is not None:
        summary.extras["restored_from"] = restored
    if rank == 0:
        summary.commands = steering.commands if steering is not None else []
        summary.extras.update(pipeline.summaries())
    summary = acc.finish(pipeline.failures)
    if stopped is not None:
        stopped.summary = summary  # type: ignore[union-attr]  (the CLI still writes summary.json)
        raise stopped
    return summary
