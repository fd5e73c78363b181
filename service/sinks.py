"""The sinks: where each analyzed step's results go (rank 0's catalog and steering, every rank's products).

* ``CatalogSink``: the step's row and the analyzers' events into the BP5
  catalog (batched; see service/catalog.py), and ``on_step`` after it.
* ``SteeringSink``: the rules over the step's scores, one steering record
  per analyzed step on the reverse stream (the simulation polls it).
* ``ProgressLog``: the log lines a person watches.
* ``ProductSink`` (service/products.py): field-sized outputs, every rank its share.

Contract (docs/stages.md): a sink is opened before the first step (failing
there stops every rank: ``collective_ok``), receives each step's results
after the pipeline, and is closed once, whatever ended the loop.  The
catalog and steering sinks exist on rank 0 only; elsewhere they are None.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from intransit.analyzers.base import StepResult
from intransit.service.catalog import CatalogWriter
from intransit.service.config import JobConfig
from intransit.service.pipeline import Pipeline
from intransit.service.steering import RuleEngine

log = logging.getLogger(__name__)

#: Steering commands as numbers in the catalog (``steering/command``).
COMMAND_CODES = {"continue": 0, "stop": 1, "checkpoint": 2, "set": 3, "trigger": 4}

OnStep = Callable[[int, int, dict[str, StepResult | None]], None]


class SteeringSink:
    """Rank 0's steering: rule engine plus writer of the reverse stream."""

    def __init__(self, writer: Any, rules: RuleEngine) -> None:
        self.writer = writer
        self.rules = rules
        #: Every command other than ``continue`` sent this run (for the summary).
        self.commands: list[dict[str, Any]] = []

    @classmethod
    def open(cls, cfg: JobConfig, rank: int) -> tuple["SteeringSink | None", str | None]:
        """The sink on rank 0 of a job with ``[steering]`` (else None), and the error that prevented it."""
        if rank != 0 or cfg.steering is None:
            return None, None
        from intransit.adapters.steering import SteeringWriter

        rules = RuleEngine(cfg.steering.rules)
        try:
            writer = SteeringWriter(cfg.steering.stream, xml=cfg.steering.xml, io_name=cfg.steering.io)
        except RuntimeError as exc:
            sink = cls(None, rules)  # the rules still take a checkpoint's state; nothing is sent
            return sink, f"cannot open the steering stream {cfg.steering.stream!r}: {exc}"
        return cls(writer, rules), None

    def answer(self, step: int, results: Mapping[str, StepResult | None]) -> dict[str, float]:
        """Evaluate the rules on this step, send the record; the catalog's steering columns."""
        if self.writer is None:
            return {}
        decision = self.rules.evaluate(results)
        seq = self.writer.write(step, decision.command, decision.args, decision.rule)
        if decision.command != "continue":
            self.commands.append({"seq": seq, "answers_step": step, "command": decision.command,
                                  "args": decision.args, "rule": decision.rule})
            log.info("step %d: rule %r fired → %s %s (seq %d)", step, decision.rule, decision.command,
                     decision.args or "", seq)
        return {"steering/seq": seq, "steering/command": COMMAND_CODES[decision.command]}

    def state_dict(self) -> dict[str, Any]:
        return self.rules.state_dict()

    @property
    def seq(self) -> int:
        """The last sequence number sent (0: none; also 0 when the stream could not be opened)."""
        return int(self.writer.seq) if self.writer is not None else 0

    def resume_after(self, seq: int | None) -> None:
        """A resumed job: number records after ``seq`` (the simulation ignores any seq it has applied)."""
        if seq and self.writer is not None:
            self.writer.resume_after(int(seq))
            log.info("steering: resumed; the next record is seq %d", self.writer.seq + 1)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            self.rules.load_state_dict(state)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class CatalogSink:
    """Rank 0's catalog of the run (appended to when the job resumed from a checkpoint)."""

    def __init__(self, cfg: JobConfig, pipeline: Pipeline, size: int, *, append: bool,
                 on_step: OnStep | None = None) -> None:
        schemas = {ac.name: type(a).event_fields for ac, a in pipeline.entries}
        meta = {"stream": cfg.stream.name, "ranks": str(size), "job": cfg.path}
        self.writer = CatalogWriter(cfg.output.catalog, schemas, metadata=meta, append=append,
                                    flush_interval_s=cfg.output.catalog_flush_s)
        #: Work for the source's idle waits (None: write every step, nothing held).
        self.on_idle = self.writer.flush_when_idle
        self.on_step = on_step

    def write(self, step: int, index: int, dropped: int, seconds: float, results: dict[str, StepResult | None],
              extra: dict[str, float]) -> None:
        self.writer.write_step(step=step, index=index, dropped=dropped, seconds=seconds, results=results, extra=extra)
        if self.on_step is not None:
            self.on_step(step, index, results)

    def flush(self) -> None:
        """Everything analyzed so far into the file (before a checkpoint: a resumed job appends after it)."""
        self.writer.flush()

    def close(self) -> int:
        """Close the catalog; the number of BP5 steps it holds from this run."""
        self.writer.close()
        return self.writer.batches_written


class ProgressLog:
    """Rank 0's info line every 25 steps (and at every drop); a per-step debug line when debug is on."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.debug = log.isEnabledFor(logging.DEBUG)  # once: the per-step line costs even when filtered out

    def step(self, step: int, index: int, dropped: int, wait: float, read: float, analyze: float) -> None:
        if self.debug:
            log.debug("step %d (index %d): wait %.4f read %.4f analyze %.4f s, dropped %d",
                      step, index, wait, read, analyze, dropped)
        if self.rank == 0 and (index % 25 == 0 or dropped):
            log.info("step %d analyzed (index %d)%s", step, index, f", {dropped} dropped before it" if dropped else "")
