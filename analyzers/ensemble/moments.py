"""Per-point central moments, min/max and threshold exceedance over ensemble members.

Updates are Pébay's (Sandia report SAND2008-6212): one member is a partial
state of count 1, and the same pairwise formula merges any two partial
states, so a split of the members into parts (ranks, restarts, Sobol groups
applied whole) gives the offline result to rounding, whatever the order.
``m2``, ``m3``, ``m4`` are the sums of the 2nd-4th powers of deviations from
the mean (not divided by n); every member contributes to every point, so the
count is one integer per state.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_FIELDS = ("mean", "m2", "m3", "m4", "min", "max", "exceed")


class Moments:
    """Moments of a field (any shape) over the members applied so far."""

    def __init__(self, shape: Sequence[int], thresholds: Sequence[float] = ()) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.thresholds = np.asarray(list(thresholds), dtype=np.float64)
        self.n = 0
        self.mean = np.zeros(self.shape)
        self.m2 = np.zeros(self.shape)
        self.m3 = np.zeros(self.shape)
        self.m4 = np.zeros(self.shape)
        self.min = np.full(self.shape, np.inf)
        self.max = np.full(self.shape, -np.inf)
        #: per threshold, how many members exceeded it (strictly greater) at each point
        self.exceed = np.zeros((len(self.thresholds),) + self.shape, dtype=np.int64)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.shape:
            raise ValueError(f"member field of shape {x.shape} given to moments of shape {self.shape}")
        return x

    def add(self, x: np.ndarray) -> None:
        """Apply one member's field (Pébay's update with n_b = 1)."""
        x = self._check(x)
        n1 = self.n
        n = n1 + 1
        delta = x - self.mean
        dn = delta / n
        dn2 = dn * dn
        t1 = delta * dn * n1
        self.mean += dn
        self.m4 += t1 * dn2 * (n * n - 3 * n + 3) + 6 * dn2 * self.m2 - 4 * dn * self.m3
        self.m3 += t1 * dn * (n - 2) - 3 * dn * self.m2
        self.m2 += t1
        self.n = n
        np.minimum(self.min, x, out=self.min)
        np.maximum(self.max, x, out=self.max)
        for k, thr in enumerate(self.thresholds):
            self.exceed[k] += x > thr

    def merge(self, other: "Moments") -> None:
        """Fold ``other`` (a disjoint set of members, same points) into this state."""
        if other.shape != self.shape or not np.array_equal(other.thresholds, self.thresholds):
            raise ValueError("cannot merge moments of different shapes or thresholds")
        na, nb = self.n, other.n
        if nb == 0:
            return
        if na == 0:
            for f in _FIELDS:
                setattr(self, f, np.array(getattr(other, f), copy=True))
            self.n = nb
            return
        n = na + nb
        d = other.mean - self.mean
        d2 = d * d
        m2a, m3a = self.m2, self.m3
        m4 = (self.m4 + other.m4 + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / n**3
              + 6 * d2 * (na * na * other.m2 + nb * nb * m2a) / n**2 + 4 * d * (na * other.m3 - nb * m3a) / n)
        m3 = self.m3 + other.m3 + d * d2 * na * nb * (na - nb) / n**2 + 3 * d * (na * other.m2 - nb * m2a) / n
        self.m2 = m2a + other.m2 + d2 * na * nb / n
        self.m3, self.m4 = m3, m4
        self.mean = self.mean + d * nb / n
        self.n = n
        np.minimum(self.min, other.min, out=self.min)
        np.maximum(self.max, other.max, out=self.max)
        self.exceed += other.exceed

    # --- results -------------------------------------------------------------
    def variance(self, ddof: int = 1) -> np.ndarray:
        """Per-point variance (``ddof=1``: unbiased; NaN while n <= ddof)."""
        if self.n <= ddof:
            return np.full(self.shape, np.nan)
        return self.m2 / (self.n - ddof)

    def skewness(self) -> np.ndarray:
        """Per-point sample skewness g1 = sqrt(n) m3 / m2^1.5 (scipy.stats.skew, bias=True); 0 where m2 = 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.sqrt(self.n) * self.m3 / self.m2**1.5
        return np.where(self.m2 > 0, out, 0.0)

    def kurtosis(self) -> np.ndarray:
        """Per-point excess kurtosis n m4 / m2^2 - 3 (scipy.stats.kurtosis, bias=True); -3 where m2 = 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.n * self.m4 / (self.m2 * self.m2) - 3.0
        return np.where(self.m2 > 0, out, -3.0)

    def exceedance(self) -> np.ndarray:
        """Per threshold and point, the fraction of members above the threshold (shape (k, *shape))."""
        if self.n == 0:
            return np.full(self.exceed.shape, np.nan)
        return self.exceed / self.n

    # --- checkpoint ----------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        out = {f: getattr(self, f) for f in _FIELDS}
        out["n"] = np.array(self.n, dtype=np.int64)
        out["thresholds"] = self.thresholds
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> "Moments":
        m = cls(np.shape(state["mean"]), state["thresholds"])
        for f in _FIELDS:
            setattr(m, f, np.array(state[f], copy=True))
        m.n = int(state["n"])
        return m
