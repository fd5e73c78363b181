"""The pipeline stage: the analyzers of one step, what they need read, their gathers and combines.

Every rank runs ``process_blocks`` on its blocks; partials are gathered to
rank 0, where ``combine`` makes the step's result (later analyzers see
earlier ones' results there).  A failing analyzer is logged with its
traceback and skipped for that step; one whose input failed is skipped too.

What the source must read is the pipeline's to say (``ReadPlan``): per
variable, the union of the axes some analyzer needs whole, and the halo —
the elementwise max over the analyzers reading it of what their
``halo_spec(ndim)`` asks, with their periodic flags (two analyzers asking a
halo on one axis with different periodic flags cannot share one read: a
``SetupError`` naming both).

Contract (docs/stages.md): ``process(step, index, fields)`` returns
``{analyzer name: StepResult or None}`` on rank 0 and ``{}`` elsewhere;
it is collective (every rank, every step, the same analyzers in order).
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from typing import Any, Mapping, Sequence

import numpy as np

from intransit.analyzers import base as analyzer_base
from intransit.analyzers.base import Analyzer, StepContext, StepResult
from intransit.service.comm import sum_allreduce
from intransit.service.config import AnalyzerConfig
from intransit.service.errors import SetupError, collective_ok
from intransit.service.source import Fields

log = logging.getLogger(__name__)

#: ``(halo per axis, periodic per axis)`` for one variable, or None when no halo is needed.
Extent = tuple[tuple[int, ...], tuple[bool, ...]]


@dataclasses.dataclass
class _Failure:
    """A partial that stands for an exception on one rank."""

    rank: int
    text: str
    #: The exception's message, for a one-line error.
    message: str = ""
    #: A ValueError or TypeError: the analyzer refused what it was given (see ``Pipeline.process``).
    refusal: bool = False


def _failure(rank: int, exc: BaseException) -> _Failure:
    return _Failure(rank, traceback.format_exc(), str(exc), isinstance(exc, (ValueError, TypeError)))


def _floating(fields: Fields) -> Fields:
    """Integer (and bool) fields as float64, so no analyzer computes in a type that wraps (uint8: 3 - 5 = 254).

    float64 holds every integer up to 2**53 exactly; floating fields pass untouched (no copy).
    """
    out: Fields = {}
    for variable, (shape, blocks) in fields.items():
        if not blocks or blocks[0].data.dtype.kind not in "iub":
            out[variable] = (shape, blocks)
            continue
        converted = []
        for b in blocks:
            if b.padded is None:
                converted.append(dataclasses.replace(b, data=b.data.astype(np.float64)))
                continue
            padded = b.padded.astype(np.float64)
            own = padded[tuple(slice(lo, lo + c) for lo, c in zip(b.halo_lo, b.count))]
            converted.append(dataclasses.replace(b, data=own, padded=padded))
        out[variable] = (shape, converted)
    return out


def _cells(shape: Sequence[int]) -> int:
    n = 1
    for x in shape:
        n *= int(x)
    return n


def build_analyzers(configs: Sequence[AnalyzerConfig]) -> list[Analyzer]:
    """Instantiate every analyzer; any failure stops the job before a step is read."""
    pipeline = []
    for ac in configs:
        cls = analyzer_base.get(ac.type)
        try:
            pipeline.append(cls(**ac.params))
        except Exception as exc:
            raise SetupError(f"analyzer {ac.name!r} (type {ac.type!r}) failed to start: {exc}") from exc
    return pipeline


def _declares_halo(analyzer: Analyzer) -> bool:
    """Whether the analyzer's class overrides ``halo_spec`` (the base's hook, where there is one, asks none)."""
    own = getattr(type(analyzer), "halo_spec", None)
    return callable(own) and own is not getattr(Analyzer, "halo_spec", None)


class ReadPlan:
    """What the source reads each step: variables in pipeline order, whole axes and halos per variable."""

    def __init__(self, configs: Sequence[AnalyzerConfig], analyzers: Sequence[Analyzer]) -> None:
        self.variables: tuple[str, ...] = tuple(dict.fromkeys(ac.variable for ac in configs))
        whole: dict[str, set[int]] = {v: set() for v in self.variables}
        for ac, analyzer in zip(configs, analyzers):
            whole[ac.variable] |= set(type(analyzer).whole_axes)
        self.whole_axes: dict[str, tuple[int, ...]] = {v: tuple(sorted(a)) for v, a in whole.items()}
        self._halo_readers: dict[str, list[tuple[str, Analyzer]]] = {}
        for ac, analyzer in zip(configs, analyzers):
            if _declares_halo(analyzer):
                self._halo_readers.setdefault(ac.variable, []).append((ac.name, analyzer))
        #: False: no analyzer asks a halo, every read is the plain one (the fast path).
        self.has_halo = bool(self._halo_readers)
        self._extents: dict[tuple[str, int], Extent | None] = {}

    def halo(self, variable: str, ndim: int) -> Extent | None:
        """The halo and periodic flags to read ``variable`` (an ``ndim``-D array) with; None when all zero."""
        key = (variable, ndim)
        if key not in self._extents:
            self._extents[key] = self._combine(variable, ndim)
        return self._extents[key]

    def _combine(self, variable: str, ndim: int) -> Extent | None:
        halo = [0] * ndim
        periodic = [False] * ndim
        owner: list[str | None] = [None] * ndim  # the analyzer whose periodic flag an axis follows
        for name, analyzer in self._halo_readers.get(variable, []):
            try:
                h, p = analyzer.halo_spec(ndim)
                h, p = tuple(int(x) for x in h), tuple(bool(x) for x in p)
            except Exception as exc:
                raise SetupError(f"analyzer {name!r} cannot read the {ndim}-D variable {variable!r}: {exc}; fix its "
                                 f"params in the job file so they fit a {ndim}-D field (one entry per axis)") from exc
            if len(h) != ndim or len(p) != ndim or any(x < 0 for x in h):
                raise SetupError(f"analyzer {name!r}: halo_spec({ndim}) must give {ndim} cell counts >= 0 and {ndim} "
                                 f"periodic flags for the {ndim}-D variable {variable!r}; got {h!r}, {p!r}")
            for axis in range(ndim):
                if h[axis] == 0:
                    continue
                if owner[axis] is not None and periodic[axis] != p[axis]:
                    raise SetupError(
                        f"analyzers {owner[axis]!r} and {name!r} both read variable {variable!r} with a halo on axis "
                        f"{axis} but disagree on whether it is periodic ({periodic[axis]} vs {p[axis]}); one read "
                        "serves both: give them the same periodic setting")
                owner[axis] = owner[axis] or name
                periodic[axis] = p[axis]
                halo[axis] = max(halo[axis], h[axis])
        return (tuple(halo), tuple(periodic)) if any(halo) else None


class Pipeline:
    """The job's analyzers in config order, run over each step's fields."""

    def __init__(self, configs: Sequence[AnalyzerConfig], analyzers: Sequence[Analyzer], comm: Any) -> None:
        self.configs = list(configs)
        self.analyzers = list(analyzers)
        self.entries = list(zip(self.configs, self.analyzers))
        self.comm = comm
        self.rank = comm.Get_rank()
        self.allreduce = sum_allreduce(comm)
        self.plan = ReadPlan(self.configs, self.analyzers)
        #: Steps each analyzer failed on (rank 0), for the summary.
        self.failures: dict[str, int] = {}
        #: Analyzers with a ``products`` hook (field-sized outputs: service/products.py), by name.
        self.producers = [(ac.name, a.products) for ac, a in self.entries if callable(getattr(a, "products", None))]
        #: The next ``process`` is this job's first step: analyzers refusing the field there stop the job.
        self._first = True
        #: Each variable's global shape at the previous step (a change is logged).
        self._shapes: dict[str, tuple[int, ...]] = {}
        #: (analyzer, error message) -> the step whose log holds its traceback (repeats get one line).
        self._logged: dict[tuple[str, str], int] = {}

    def process(self, step: int, index: int, fields: Fields) -> dict[str, StepResult | None]:
        """Run every analyzer on this step (collective); the combined results on rank 0.

        Before the analyzers, the fields are checked (``check_fields``).  At
        the job's first step an analyzer that raises ValueError or TypeError
        (in ``process_blocks`` on any rank, or in ``combine``) refused the
        field it was given -- a ``periodic`` list of the wrong length, a 4-D
        array for a 2-D/3-D detector: it would fail every step the same way,
        so every rank raises one ``SetupError`` naming the analyzer, the
        variable and the reason, instead of a traceback per step.  The same
        holds at the first step after a variable changed shape.  Other
        failures are logged and the step is skipped for that analyzer.
        """
        changed = self.check_fields(step, fields)
        fields = _floating(fields)
        first, self._first = self._first or changed, False
        when = "the first step with this shape" if changed else "the first step of this job"
        rank, gather = self.rank, self.comm.gather
        results: dict[str, StepResult | None] = {}
        refusal: str | None = None
        for ac, analyzer in self.entries:
            shape, blocks = fields[ac.variable]
            ctx = StepContext(
                step=step,
                index=index,
                variable=ac.variable,
                global_shape=shape,
                blocks=blocks,
                allreduce=self.allreduce,
                upstream=results if rank == 0 else {},
                input=results.get(ac.input) if (rank == 0 and ac.input) else None,
            )
            try:
                partial: Any = analyzer.process_blocks(ctx)
            except Exception as exc:
                partial = _failure(rank, exc)
            partials = gather(partial, root=0)
            if rank != 0:
                continue
            result, failure = self._combine(step, ac, analyzer, partials, ctx, results, quiet=first)
            results[ac.name] = result
            if first and failure is not None and failure.refusal:
                log.debug("step %d: analyzer %s refused the field:\n%s", step, ac.name, failure.text)
                if refusal is None:
                    dtype = blocks[0].data.dtype if blocks else "unknown"
                    refusal = (f"analyzer {ac.name!r} (type {ac.type!r}) cannot analyze variable {ac.variable!r} "
                               f"(global shape {tuple(shape)}, dtype {dtype}) at writer step {step}, {when}: "
                               f"{failure.message}. It would fail every step the same way, so the job "
                               f"stopped: fix the analyzer's params in the job file, or give it a variable it can "
                               f"analyze")
            elif first and failure is not None:
                self._log_failure(step, ac.name, failure, f"on rank {failure.rank}")
        if first:
            collective_ok(self.comm, refusal if rank == 0 else None)
        return results

    def check_fields(self, step: int, fields: Fields) -> bool:
        """Refuse fields that are not data (collective: every rank raises the same ``SetupError``); True when a shape changed.

        * an empty global shape (an axis of length 0): nothing to analyze;
        * holes: the writer's blocks cover fewer cells than the global shape
          (cells no writer wrote would be analyzed as whatever the buffer
          held).  Counted over every rank's blocks (one ``allreduce`` per
          step with several ranks); pieces never overlap, so the sum is the
          covered volume.  Refused, never analyzed (docs/bad_input.md);
        * a shape change from one step to the next is logged (the reader
          re-plans its reads for the new shape; analyzers see it from that
          step on).
        """
        covered = []
        changed = False
        for variable, (shape, blocks) in fields.items():
            shape = tuple(int(x) for x in shape)
            if _cells(shape) == 0:
                raise SetupError(
                    f"variable {variable!r} has global shape {shape} at writer step {step}: no cells to analyze. "
                    f"intransit analyzes arrays with at least one cell on every axis: check the shape the "
                    f"simulation gives define_variable (or leave {variable!r} out of [stream] variables)")
            previous = self._shapes.get(variable)
            changed = changed or (previous is not None and previous != shape)
            if previous is not None and previous != shape and self.rank == 0:
                log.warning("variable %r changed global shape from %s to %s at writer step %d: reads re-planned "
                            "for the new shape; analyzers see it from this step on", variable, previous, shape, step)
            self._shapes[variable] = shape
            covered.append(float(sum(_cells(b.count) for b in blocks)))
        if not covered:
            return changed
        totals = self.allreduce(np.asarray(covered)) if self.comm.Get_size() > 1 else covered
        for (variable, (shape, _blocks)), total in zip(fields.items(), totals):
            cells = _cells(shape)
            if int(total) < cells:
                raise SetupError(
                    f"variable {variable!r} at writer step {step} has holes: the writer's blocks cover "
                    f"{int(total)} of {cells} cells of its global shape {tuple(int(x) for x in shape)}, and the "
                    f"cells no block holds are not data. intransit analyzes global arrays whose blocks cover "
                    f"the shape: have every writer rank put its block each step, or define the variable with "
                    f"the shape its blocks cover")
        return changed

    def _combine(self, step: int, ac: AnalyzerConfig, analyzer: Analyzer, partials: Sequence[Any], ctx: StepContext,
                 results: Mapping[str, StepResult | None], *, quiet: bool = False
                 ) -> tuple[StepResult | None, _Failure | None]:
        """The step's result (None when it failed) and the first failure; ``quiet``: the caller logs failures."""
        failures = [p for p in partials if isinstance(p, _Failure)]
        result: StepResult | None = None
        failure: _Failure | None = None
        if ac.input and results.get(ac.input) is None:
            log.warning("step %d: %s skipped, its input %s failed", step, ac.name, ac.input)
        elif failures:
            failure = failures[0]
            if not quiet:
                for f in failures:
                    self._log_failure(step, ac.name, f, f"on rank {f.rank}")
        else:
            try:
                result = analyzer.combine(partials, ctx)
            except Exception as exc:
                failure = _failure(0, exc)
                if not quiet:
                    self._log_failure(step, ac.name, failure, "in combine")
        if result is None:
            self.failures[ac.name] = self.failures.get(ac.name, 0) + 1
        return result, failure

    def _log_failure(self, step: int, name: str, failure: _Failure, where: str) -> None:
        """The traceback the first time an analyzer fails with a message; one line for each repeat."""
        first = self._logged.setdefault((name, failure.message), step)
        if first == step:
            log.error("step %d: analyzer %s failed %s (skipped this step):\n%s", step, name, where, failure.text)
        else:
            log.error("step %d: analyzer %s failed %s (skipped this step): %s (same error as step %d, traceback "
                      "logged there)", step, name, where, failure.message, first)

    def products(self, final: bool) -> list[tuple[str, Any]]:
        """This rank's shares of the products due now: ``(analyzer name, Product)`` pairs (every rank)."""
        out = []
        for name, hook in self.producers:
            for product in hook(final) or ():
                out.append((name, product))
        return out

    # -- checkpoint interface (service/state.py) --------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {ac.name: a.state_dict() for ac, a in self.entries}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for ac, analyzer in self.entries:
            if ac.name in state:
                analyzer.load_state_dict(state[ac.name])

    def local_state_dict(self) -> dict[str, Any]:
        return {ac.name: a.local_state_dict() for ac, a in self.entries}

    def load_local_state_dict(self, state: Mapping[str, Any]) -> None:
        for ac, analyzer in self.entries:
            analyzer.load_local_state_dict(state.get(ac.name, {}))

    def summaries(self) -> dict[str, Any]:
        """Each analyzer's ``summary()`` where it has one (rank 0's, for the run summary)."""
        out = {}
        for ac, analyzer in self.entries:
            describe = getattr(analyzer, "summary", None)
            if callable(describe):
                out[ac.name] = describe()
        return out

    def close(self) -> None:
        for analyzer in self.analyzers:
            analyzer.close()
