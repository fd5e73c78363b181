"""Per-point quantiles over ensemble members by averaged stochastic approximation.

Melissa's iterative quantile is the Robbins-Monro recursion
``q <- q - gamma_n (1[x <= q] - alpha)``; its accuracy depends on the step
``gamma_n`` through the unknown density f(q) at the quantile.  Here the step
is scaled by each point's running standard deviation, ``gamma_n = c sigma_n
/ n^0.75`` (c = 2), and the estimate returned is an average of the iterates
(polynomial-decay averaging, eta = 3, which forgets the start at the first
member), which reaches the asymptotically best error of this kind whatever c
is: standard error se = sqrt(alpha (1 - alpha) / n) / f(q), that of the
sample quantile (for a Gaussian field 1.25 sigma / sqrt(n) at the median,
1.71 sigma / sqrt(n) at 10 % and 90 %, 2.11 sigma / sqrt(n) at 5 %).

Error measured here (Gaussian members, 900 points, levels 0.05/0.1/0.5/0.9):
the RMS difference from ``np.quantile`` of the same members is 0.6-0.9 se at
n = 100 and 0.5-0.75 se at n = 400; the worst of 900 points 2-4 se (largest
at the 5 % level), with the iterate clipped to the running min/max.  tests/test_ensemble_stats.py checks 400 members.

The estimate depends on the order in which members arrive (only moments,
min/max and exceedance are order-free), and ``merge`` of two partial states
is approximate: the count-weighted mean of the two averaged estimates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Step-size constant c (in units of the running standard deviation).
STEP_SCALE = 2.0
#: Step-size decay exponent; in (0.5, 1) so that averaging gives the optimal rate.
STEP_DECAY = 0.75
#: Polynomial-decay averaging (Shamir & Zhang 2013): weight (eta + 1) / (n + eta) on the newest iterate,
#: so the early transient from the first member is forgotten; eta = 0 is the plain running average.
AVG_ETA = 3.0


class Quantiles:
    """Quantile estimates at ``levels`` (each in (0, 1)) per point."""

    def __init__(self, shape: Sequence[int], levels: Sequence[float]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.levels = np.asarray(list(levels), dtype=np.float64)
        if np.any((self.levels <= 0) | (self.levels >= 1)):
            raise ValueError(f"quantile levels must lie strictly between 0 and 1, got {list(levels)}")
        k = len(self.levels)
        self.n = 0
        self.q = np.zeros((k,) + self.shape)     # the Robbins-Monro iterate
        self.qbar = np.zeros((k,) + self.shape)  # its running average: the estimate

    def add(self, x: np.ndarray, sigma: np.ndarray | None = None, lo: np.ndarray | None = None,
            hi: np.ndarray | None = None) -> None:
        """Apply one member's field; ``sigma``: the running standard deviation per point (step scale);
        ``lo``/``hi``: the running min/max per point, to which the iterate is clipped (a step of a few sigma
        from few members could leave the range of the data, where no sample quantile lies)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.shape:
            raise ValueError(f"member field of shape {x.shape} given to quantiles of shape {self.shape}")
        self.n += 1
        n = self.n
        if n == 1:
            self.q[:] = x
            self.qbar[:] = x
            return
        scale = np.ones(self.shape) if sigma is None else np.where(np.isfinite(sigma) & (sigma > 0), sigma, 0.0)
        gamma = STEP_SCALE * scale / n**STEP_DECAY
        below = (x[None] <= self.q).astype(np.float64)
        self.q -= gamma[None] * (below - self.levels.reshape((-1,) + (1,) * len(self.shape)))
        if lo is not None and hi is not None:
            np.clip(self.q, lo[None], hi[None], out=self.q)
        self.qbar += (self.q - self.qbar) * ((AVG_ETA + 1) / (n + AVG_ETA))

    def estimate(self) -> np.ndarray:
        """The quantile estimates, shape (len(levels), *shape); NaN before the first member."""
        return self.qbar.copy() if self.n else np.full(self.qbar.shape, np.nan)

    def merge(self, other: "Quantiles") -> None:
        """Approximate: count-weighted mean of both estimates (iterates likewise)."""
        if other.shape != self.shape or not np.array_equal(other.levels, self.levels):
            raise ValueError("cannot merge quantiles of different shapes or levels")
        n = self.n + other.n
        if other.n == 0:
            return
        wa, wb = self.n / n, other.n / n
        self.q = wa * self.q + wb * other.q
        self.qbar = wa * self.qbar + wb * other.qbar
        self.n = n

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"n": np.array(self.n, dtype=np.int64), "q": self.q, "qbar": self.qbar, "levels": self.levels}

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> "Quantiles":
        out = cls(np.shape(state["q"])[1:], state["levels"])
        out.n = int(state["n"])
        out.q = np.array(state["q"], copy=True)
        out.qbar = np.array(state["qbar"], copy=True)
        return out
