"""The analyzer contract and the plugin registry.

An analyzer sees the blocks this rank holds (numpy arrays with their global
offsets) and returns something small.  Analyzers never import MPI or ADIOS2:
the service hands them an ``allreduce`` callable for global statistics and
gathers their partial results to rank 0, where ``combine`` turns the partials
into the step's result.  That keeps every analyzer testable on a numpy array
in milliseconds, with a serial ``allreduce`` (the identity).

The registry follows xarray's backends: built-ins register at the bottom of
their module, third parties through the entry-point group
``intransit.analyzers``; an unknown name lists the known ones.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
from importlib.metadata import entry_points
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

ENTRY_POINT_GROUP = "intransit.analyzers"


@dataclasses.dataclass
class Block:
    """One block of a global array held by this rank.

    ``data`` may be a view into a preallocated buffer that the reader refills
    next step: copy what must outlive the step.

    Halo (see ``Analyzer.halo_spec``): when the reader was asked for one,
    ``padded`` holds global cells ``[start - halo_lo, start + count + halo_hi)``
    per axis and ``data`` is the view of its own cells inside it.  On a periodic
    axis the indices wrap (cells from the other side of the domain); on an open
    axis the halo is clipped at the domain edge, so ``halo_lo``/``halo_hi`` may
    be smaller than asked there.  Without a halo ``padded`` is None and the
    halo tuples are empty.  Filters that need neighbours across block faces
    read ``padded`` so their result does not depend on the decomposition, and
    need no exchange between ranks.
    """

    data: np.ndarray
    start: tuple[int, ...]
    count: tuple[int, ...]
    block_id: int = 0
    padded: np.ndarray | None = None
    halo_lo: tuple[int, ...] = ()
    halo_hi: tuple[int, ...] = ()


def identity_allreduce(values: np.ndarray) -> np.ndarray:
    """The serial ``allreduce`` (one rank holds everything)."""
    return np.asarray(values, dtype=np.float64).copy()


@dataclasses.dataclass
class StepContext:
    """What an analyzer sees of one step on one rank.

    ``allreduce`` sums a float64 array over all analytics ranks; every rank
    must call it the same number of times per step (collective).
    ``upstream`` holds the combined results of earlier analyzers of the
    pipeline, by name, and ``input`` the one named by this analyzer's
    ``input`` key; both are filled on rank 0 only (where ``combine`` runs).
    """

    step: int
    index: int
    variable: str
    global_shape: tuple[int, ...]
    blocks: list[Block]
    allreduce: Callable[[np.ndarray], np.ndarray] = identity_allreduce
    upstream: dict[str, "StepResult"] = dataclasses.field(default_factory=dict)
    input: "StepResult | None" = None


@dataclasses.dataclass
class StepResult:
    """The small, serialisable outcome of one analyzer for one step.

    ``events`` are catalog rows (flat dicts of numbers), ``scores`` are
    scalars that steering rules can compare against thresholds.
    """

    events: list[dict[str, float]] = dataclasses.field(default_factory=list)
    scores: dict[str, float] = dataclasses.field(default_factory=dict)


class Analyzer(abc.ABC):
    """Base class of every analyzer.

    Subclasses take keyword-only constructor parameters (the job config's
    ``params`` table maps onto them 1:1) and implement ``process_blocks`` and
    ``combine``.  ``state_dict``/``load_state_dict`` and ``close`` are optional
    hooks; their defaults do nothing.
    """

    #: Registry name; set by ``register``.
    name: ClassVar[str] = ""
    #: Names of the event columns this analyzer writes to the catalog, in
    #: order.  Fixed per analyzer so the catalog has a stable schema.
    event_fields: ClassVar[tuple[str, ...]] = ()
    #: Names of the scores ``combine`` returns (steering rules are checked
    #: against them at start; empty = not declared, not checked).
    score_names: ClassVar[tuple[str, ...]] = ()
    #: True when the analyzer consumes an upstream analyzer's result
    #: instead of (or besides) the field; the service then requires ``input``.
    needs_input: ClassVar[bool] = False

    @abc.abstractmethod
    def process_blocks(self, ctx: StepContext) -> Any:
        """Run on every rank over its local blocks; return a small, picklable partial.

        May call ``ctx.allreduce`` (collectively) for global statistics.
        """

    @abc.abstractmethod
    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        """Run on rank 0 with every rank's partial (ordered by rank)."""

    #: Array axes along which every rank must hold the whole extent (e.g. the
    #: time axis of a dynamic spectrum, so each rank sees complete channel
    #: series). The service then hands out bands cut along the other axes only.
    whole_axes: ClassVar[tuple[int, ...]] = ()
    #: 0 when results are exactly independent of how the field is cut into
    #: blocks and ranks (the default, and what the contract suite checks);
    #: otherwise the relative tolerance the analyzer guarantees, with the
    #: reason in its docstring (e.g. gradients without halos across blocks).
    decomposition_rtol: ClassVar[float] = 0.0
    #: For the shared contract tests: the type of an analyzer whose result feeds
    #: this one (analyzers with ``needs_input``).
    example_input: ClassVar[str | None] = None

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        """Parameters the shared contract tests construct this analyzer with. Default: none."""
        return {}

    def halo_spec(self, ndim: int) -> tuple[tuple[int, ...], tuple[bool, ...]]:
        """Cells this analyzer needs beyond each block, per axis and side, and which axes wrap.

        Returns ``(halo, periodic)``: ``halo[k]`` cells on both sides of every
        block along axis ``k`` (delivered in ``Block.padded``), ``periodic[k]``
        whether axis ``k`` wraps.  The default, no halo and no wrap, keeps the
        reader's fast path; an analyzer with a filter (e.g. a Gaussian of radius
        r) returns ``r`` so each rank can filter its share exactly as the whole
        field would be filtered.
        """
        return (0,) * ndim, (False,) * ndim

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a restart (tracks, model weights). Default: none."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned. Default: nothing to restore."""

    def local_state_dict(self) -> dict[str, Any]:
        """Per-rank state (e.g. an overlap buffer of this rank's blocks). Default: none.

        The service gathers it from every rank into the checkpoint and hands
        each rank its own back on restore (same number of ranks), or an empty
        dict when the rank count changed.
        """
        return {}

    def load_local_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``local_state_dict`` returned on this rank. Default: nothing."""

    def close(self) -> None:
        """Called once after the last step. Default: nothing to release."""


_REGISTRY: dict[str, type[Analyzer]] = {}
_ENTRY_POINTS_LOADED = False
#: Built-ins whose modules import torch at load time: registered on first use.
LAZY_BUILTINS = {"frb": "intransit.analyzers.frb"}


def register(name: str) -> Callable[[type[Analyzer]], type[Analyzer]]:
    """Class decorator registering an analyzer under ``name``."""

    def decorate(cls: type[Analyzer]) -> type[Analyzer]:
        if not (isinstance(cls, type) and issubclass(cls, Analyzer)):
            raise TypeError(f"{cls!r} must subclass intransit.analyzers.base.Analyzer")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"analyzer name {name!r} is already taken by {existing.__module__}.{existing.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        cls = ep.load()
        register(ep.name)(cls)


def available() -> dict[str, type[Analyzer]]:
    """Every known analyzer: built-ins plus entry points."""
    import importlib

    import intransit.analyzers  # noqa: F401  (built-ins register on import)

    for module in LAZY_BUILTINS.values():
        importlib.import_module(module)
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Analyzer]:
    """The analyzer class registered as ``name``; an unknown name lists the known ones."""
    import importlib

    import intransit.analyzers  # noqa: F401  (built-ins register on import)

    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in LAZY_BUILTINS:
        importlib.import_module(LAZY_BUILTINS[name])
        return _REGISTRY[name]
    known = available()
    try:
        return known[name]
    except KeyError:
        raise KeyError(f"unknown analyzer type {name!r}; known types: {', '.join(known) or '(none)'}") from None


def parameters(cls: type[Analyzer]) -> dict[str, inspect.Parameter]:
    """The keyword-only constructor parameters that a config may set."""
    sig = inspect.signature(cls.__init__)
    return {p.name: p for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
