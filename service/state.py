"""The checkpoint stage: every stage's state saved and restored through one interface.

A stage that has state across steps offers ``state_dict``/``load_state_dict``
(rank 0's global state) and, optionally, ``local_state_dict``/
``load_local_state_dict`` (each rank's own).  The ``Checkpointer`` holds the
stages by role — ``pipeline`` (the analyzers), ``steering`` (the rules'
streaks; rank 0 only), ``accounting`` (loop index, last writer step) — and
keeps the checkpoint file's format 1 (service/checkpoint.py: ``analyzers``,
``rules``, ``index``, ``last_step``, ``local``), so checkpoints of earlier
versions restore.

Restore is collective: rank 0 reads the file and loads the global state;
the accounting state and every rank's local state are broadcast (local
state goes back to its rank when the rank count is the same, else each rank
starts its local state fresh, with a warning).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Protocol

from intransit.service import checkpoint as job_checkpoint
from intransit.service.config import OutputConfig
from intransit.service.errors import collective_ok

log = logging.getLogger(__name__)


class Stage(Protocol):
    """What a stage with state offers the checkpoint (local state: only where the stage has some)."""

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def catalog_tail(path: str) -> dict[str, int] | None:
    """The last row of a catalog on disk: its loop ``index``, writer ``step`` and ``seq`` (steering/seq, 0
    when absent); None when there is no catalog or it holds no step.

    Read with random access (last BP5 step only), so a catalog whose job was
    killed is read as far as it was indexed, without waiting for more.
    """
    if not path or not os.path.exists(os.path.join(path, "md.idx")):
        return None
    import adios2
    import numpy as np
    from adios2 import bindings

    io = adios2.Adios().declare_io(f"intransit_catalog_tail_{os.getpid()}")
    io.set_engine("BP5")
    try:
        engine = io.open(path, bindings.Mode.ReadRandomAccess)
    except RuntimeError as exc:
        log.warning("cannot read the catalog %r to continue it (%s)", path, str(exc).strip().splitlines()[:1])
        return None
    try:
        out: dict[str, int] = {}
        for key, name in (("index", "index"), ("step", "step"), ("seq", "steering/seq")):
            var = io.inquire_variable(name)
            if var is None:
                continue
            n = int(var.steps())
            if n <= 0:
                continue
            var.set_step_selection([n - 1, 1])
            shape = [int(x) for x in var.shape()]
            if shape:
                var.set_selection([[0] * len(shape), shape])
            buf = np.empty(shape or [1], dtype=np.int64 if var.type() == "int64_t" else np.float64)
            engine.get(var, buf, bindings.Mode.Sync)
            if buf.size:
                out[key] = int(buf.reshape(-1)[-1])
        if "index" not in out or "step" not in out:
            return None
        out.setdefault("seq", 0)
        return out
    finally:
        engine.close()


class Checkpointer:
    """Saves the stages' state every ``checkpoint_every`` steps and at the end; restores it at start."""

    def __init__(self, output: OutputConfig, comm: Any, *, pipeline: Any, accounting: Any, steering: Any = None,
                 before_save: Any = None) -> None:
        self.path = output.checkpoint
        self.catalog = output.catalog
        self.every = output.checkpoint_every if output.checkpoint else 0
        self.restore_enabled = output.restore
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.pipeline, self.accounting, self.steering = pipeline, accounting, steering
        #: Called before each save (the catalog's flush: the steps before a checkpoint must be in the file).
        self.before_save = before_save
        #: Where the job resumed from (path, last writer step, index), or None.
        self.restored_from: dict[str, Any] | None = None

    def restore(self) -> dict[str, Any] | None:
        """Load the checkpoint if there is one and restoring is on (collective); what was restored, or None."""
        state: dict[str, Any] | None = None
        error: str | None = None
        path = self.path
        if self.rank == 0 and path and self.restore_enabled and os.path.exists(path):
            try:
                state = job_checkpoint.load(path)
                self.pipeline.load_state_dict(state["analyzers"])
                if self.steering is not None and state.get("rules"):
                    self.steering.load_state_dict(state["rules"])
                self.restored_from = {"path": path, "last_step": state["last_step"], "index": int(state["index"])}
                log.info("resumed from checkpoint %s (last writer step %s, loop index %d)", path, state["last_step"],
                         int(state["index"]))
                self._continue_catalog(state)
            except Exception as exc:
                error = f"cannot restore checkpoint {path!r}: {exc}"
        collective_ok(self.comm, error)
        shared = self.comm.bcast((self.restored_from, state.get("local", []) if state else []), root=0)
        self.restored_from, locals_saved = shared
        if self.restored_from is not None:
            self.accounting.load_state_dict(self.restored_from)
        if locals_saved:
            if len(locals_saved) == self.size:
                self.pipeline.load_local_state_dict(locals_saved[self.rank])
            elif self.rank == 0:
                log.warning("checkpoint holds per-rank state of %d ranks, this job has %d: per-rank state starts fresh",
                            len(locals_saved), self.size)
        return self.restored_from

    def _continue_catalog(self, state: Mapping[str, Any]) -> None:
        """Rank 0: resume after the catalog's last row and the last steering record, not the checkpoint's.

        A job killed between checkpoints had analyzed (and written to the
        catalog, and answered on the reverse stream) steps after its last
        checkpoint.  Resuming at the checkpoint's loop index would repeat loop
        indices in the catalog and count its steps again as dropped; the
        steering records would reuse sequence numbers the simulation already
        applied, and it would ignore them.  So the loop index and the last
        writer step come from the catalog's last row when it is later, and the
        next seq follows the largest of the checkpoint's, the catalog's and the
        old reverse stream's (read by the steering writer).  The analyzers'
        state is the checkpoint's: the steps between it and the catalog's last
        row are not replayed into it.
        """
        assert self.restored_from is not None
        tail = catalog_tail(self.catalog)
        seq = int(state.get("steering_seq") or 0)
        if tail is not None:
            seq = max(seq, tail["seq"])
            if tail["index"] + 1 > self.restored_from["index"]:
                log.info("the catalog holds %d analyzed step(s) after the checkpoint (up to writer step %d, loop "
                         "index %d): continuing after them", tail["index"] + 1 - self.restored_from["index"],
                         tail["step"], tail["index"])
                self.restored_from.update(index=tail["index"] + 1, last_step=tail["step"],
                                          checkpoint_index=int(state["index"]))
        if self.steering is not None:
            self.steering.resume_after(seq)
            self.restored_from["steering_seq"] = self.steering.seq

    def due(self, index: int) -> bool:
        """Whether a checkpoint is due after the step that made the loop index ``index``."""
        return bool(self.every) and index % self.every == 0

    def save(self) -> None:
        """Save every stage's state (collective: every rank's local state is gathered to rank 0)."""
        if not self.path:
            return
        if self.before_save is not None:
            self.before_save()
        local = self.comm.gather(self.pipeline.local_state_dict(), root=0)
        if self.rank == 0:
            acc = self.accounting.state_dict()
            job_checkpoint.save(
                self.path,
                analyzers=self.pipeline.state_dict(),
                rules=self.steering.state_dict() if self.steering is not None else None,
                last_step=acc["last_step"],
                index=acc["index"],
                local=local,
                steering_seq=self.steering.seq if self.steering is not None else None,
            )
