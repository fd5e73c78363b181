"""All the statistics of one time step, and of every time step of an ensemble, with checkpoints and merges.

``EnsembleStats`` holds one ``StepStats`` per output step of the members;
its memory is (steps × points × statistics), whatever the number of members.
``add_member`` applies one member's field at one step; ``add_group`` applies a
whole pick-freeze group (its p + 2 members to the moments and quantiles, and
the group to the Sobol estimators).  ``state_dict`` is a flat mapping of
numpy arrays (``np.savez``-ready); ``merge`` folds a disjoint partial state in.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from intransit.analyzers.ensemble.moments import Moments
from intransit.analyzers.ensemble.quantiles import Quantiles
from intransit.analyzers.ensemble.sobol import Sobol


class StepStats:
    """Moments, quantiles and (with ``p`` > 0) Sobol indices of one time step."""

    def __init__(self, shape: Sequence[int], *, thresholds: Sequence[float] = (), levels: Sequence[float] = (),
                 p: int = 0) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.moments = Moments(self.shape, thresholds)
        self.quantiles = Quantiles(self.shape, levels) if len(levels) else None
        self.sobol = Sobol(self.shape, p) if p > 0 else None

    def add_member(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        sigma = np.sqrt(self.moments.variance()) if self.moments.n > 1 else None
        self.moments.add(x)
        if self.quantiles is not None:
            self.quantiles.add(x, sigma, self.moments.min, self.moments.max)

    def add_group(self, group: np.ndarray) -> None:
        """A pick-freeze group, shape (p + 2, *shape): every row is a member, the group one Sobol sample."""
        if self.sobol is None:
            raise ValueError("add_group needs Sobol statistics (p > 0)")
        group = np.asarray(group, dtype=np.float64)
        self.sobol.add_group(group)
        for row in group:
            self.add_member(row)

    def merge(self, other: "StepStats") -> None:
        self.moments.merge(other.moments)
        if self.quantiles is not None and other.quantiles is not None:
            self.quantiles.merge(other.quantiles)
        if self.sobol is not None and other.sobol is not None:
            self.sobol.merge(other.sobol)

    def fields(self, names: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Every statistic as a field of ``shape`` (names as in the products; ``names``: parameter names)."""
        m = self.moments
        out: dict[str, np.ndarray] = {
            "mean": m.mean.copy(), "variance": m.variance(), "skewness": m.skewness(), "kurtosis": m.kurtosis(),
            "min": m.min.copy(), "max": m.max.copy(),
        }
        for k, thr in enumerate(m.thresholds):
            out[f"p_exceed_{thr:g}"] = m.exceedance()[k]
        if self.quantiles is not None:
            est = self.quantiles.estimate()
            for k, lev in enumerate(self.quantiles.levels):
                out[f"quantile_{lev:g}"] = est[k]
        if self.sobol is not None:
            s = self.sobol
            pn = list(names) or [f"x{i}" for i in range(s.p)]
            first, total = s.first_order(), s.total_order()
            (f_lo, f_hi), (t_lo, t_hi) = s.first_order_ci(), s.total_order_ci()
            for i, name in enumerate(pn):
                out[f"sobol_first_{name}"] = first[i]
                out[f"sobol_first_{name}_lo"] = f_lo[i]
                out[f"sobol_first_{name}_hi"] = f_hi[i]
                out[f"sobol_total_{name}"] = total[i]
                out[f"sobol_total_{name}_lo"] = t_lo[i]
                out[f"sobol_total_{name}_hi"] = t_hi[i]
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {f"moments/{k}": v for k, v in self.moments.state_dict().items()}
        if self.quantiles is not None:
            out.update({f"quantiles/{k}": v for k, v in self.quantiles.state_dict().items()})
        if self.sobol is not None:
            out.update({f"sobol/{k}": v for k, v in self.sobol.state_dict().items()})
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> "StepStats":
        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + "/")}

        mom = Moments.from_state_dict(part("moments"))
        out = cls(mom.shape)
        out.moments = mom
        q = part("quantiles")
        out.quantiles = Quantiles.from_state_dict(q) if q else None
        s = part("sobol")
        out.sobol = Sobol.from_state_dict(s) if s else None
        return out


class EnsembleStats:
    """``StepStats`` per output step, created at a step's first member."""

    def __init__(self, shape: Sequence[int], *, thresholds: Sequence[float] = (), levels: Sequence[float] = (),
                 p: int = 0) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.levels = tuple(float(v) for v in levels)
        self.p = int(p)
        self.steps: dict[int, StepStats] = {}

    def step(self, t: int) -> StepStats:
        s = self.steps.get(t)
        if s is None:
            s = self.steps[t] = StepStats(self.shape, thresholds=self.thresholds, levels=self.levels, p=self.p)
        return s

    def add_member(self, t: int, x: np.ndarray) -> None:
        self.step(t).add_member(x)

    def add_group(self, t: int, group: np.ndarray) -> None:
        self.step(t).add_group(group)

    def merge(self, other: "EnsembleStats") -> None:
        for t, s in other.steps.items():
            self.step(t).merge(s)

    def state_dict(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "meta/shape": np.array(self.shape, dtype=np.int64),
            "meta/thresholds": np.array(self.thresholds, dtype=np.float64),
            "meta/levels": np.array(self.levels, dtype=np.float64),
            "meta/p": np.array(self.p, dtype=np.int64),
        }
        for t, s in self.steps.items():
            out.update({f"step{t}/{k}": v for k, v in s.state_dict().items()})
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> "EnsembleStats":
        out = cls(tuple(int(v) for v in state["meta/shape"]), thresholds=state["meta/thresholds"],
                  levels=state["meta/levels"], p=int(state["meta/p"]))
        per: dict[int, dict[str, np.ndarray]] = {}
        for k, v in state.items():
            if k.startswith("step"):
                head, rest = k.split("/", 1)
                per.setdefault(int(head[4:]), {})[rest] = v
        for t, part in sorted(per.items()):
            out.steps[t] = StepStats.from_state_dict(part)
        return out
