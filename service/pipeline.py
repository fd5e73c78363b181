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

from intransit.analyzers import base as analyzer_base
from intransit.analyzers.base import Analyzer, StepContext, StepResult
from intransit.service.comm import sum_allreduce
from intransit.service.config import AnalyzerConfig
from intransit.service.errors import SetupError
from intransit.service.source import Fields

log = logging.getLogger(__name__)

#: ``(halo per axis, periodic per axis)`` for one variable, or None when no halo is needed.
Extent = tuple[tuple[int, ...], tuple[bool, ...]]


@dataclasses.dataclass
class _Failure:
    """A partial that stands for an exception on one rank."""

    rank: int
    text: str


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
                raise SetupError(f"analyzer {name!r}: halo_spec({ndim}) failed for variable {variable!r}: {exc}") from exc
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

    def process(self, step: int, index: int, fields: Fields) -> dict[str, StepResult | None]:
        """Run every analyzer on this step (collective); the combined results on rank 0."""
        rank, gather = self.rank, self.comm.gather
        results: dict[str, StepResult | None] = {}
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
            except Exception:
                partial = _Failure(rank, traceback.format_exc())
            partials = gather(partial, root=0)
            if rank != 0:
                continue
            results[ac.name] = self._combine(step, ac, analyzer, partials, ctx, results)
        return results

    def _combine(self, step: int, ac: AnalyzerConfig, analyzer: Analyzer, partials: Sequence[Any], ctx: StepContext,
                 results: Mapping[str, StepResult | None]) -> StepResult | None:
        failures = [p for p in partials if isinstance(p, _Failure)]
        result: StepResult | None = None
        if ac.input and results.get(ac.input) is None:
            log.warning("step %d: %s skipped, its input %s failed", step, ac.name, ac.input)
        elif failures:
            for f in failures:
                log.error("step %d: analyzer %s failed on rank %d (skipped this step):\n%s", step, ac.name, f.rank, f.text)
        else:
            try:
                result = analyzer.combine(partials, ctx)
            except Exception:
                log.error("step %d: analyzer %s failed in combine (skipped this step):\n%s", step, ac.name,
                          traceback.format_exc())
        if result is None:
            self.failures[ac.name] = self.failures.get(ac.name, 0) + 1
        return result

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
