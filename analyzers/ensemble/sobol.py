"""Sobol first-order and total indices per point by the Martinez estimators, online.

Pick-freeze design (service/ensemble_plan.py): a group of p + 2 members,
A and B drawn independently and C_i = A with its i-th parameter taken from
B.  Y_B and Y_Ci share only X_i, Y_A and Y_Ci share everything but X_i, so
(Martinez 2011; Melissa, Terraz et al. 2017)

    S_i  = Cov(Y_B, Y_Ci) / (sigma_B sigma_Ci)
    ST_i = 1 - Cov(Y_A, Y_Ci) / (sigma_A sigma_Ci)

both correlation coefficients, with the Fisher-z 95 % interval
tanh(atanh(rho) +- 1.96 / sqrt(n - 3)) over n groups (for ST on 1 - ST).
The state is the means, sums of squared deviations and the two co-moment
sums, updated per group by Welford's rule and merged pairwise like the
moments: exact to rounding for any split of the groups.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


class Sobol:
    """Martinez Sobol estimators for ``p`` parameters over a field of ``shape``."""

    def __init__(self, shape: Sequence[int], p: int) -> None:
        if p < 1:
            raise ValueError(f"Sobol indices need at least one parameter, got p = {p}")
        self.shape = tuple(int(s) for s in shape)
        self.p = int(p)
        self.n = 0
        self.mean = np.zeros((p + 2,) + self.shape)  # rows: A, B, C_1..C_p
        self.m2 = np.zeros((p + 2,) + self.shape)
        self.c_b = np.zeros((p,) + self.shape)  # sum (y_B - mean_B)(y_Ci - mean_Ci)
        self.c_a = np.zeros((p,) + self.shape)  # sum (y_A - mean_A)(y_Ci - mean_Ci)

    def add_group(self, group: np.ndarray) -> None:
        """One pick-freeze group: array of shape (p + 2, *shape), rows A, B, C_1..C_p."""
        y = np.asarray(group, dtype=np.float64)
        if y.shape != self.mean.shape:
            raise ValueError(f"a Sobol group must have shape {self.mean.shape} (A, B, C_1..C_p), got {y.shape}")
        self.n += 1
        d_old = y - self.mean
        self.mean += d_old / self.n
        d_new = y - self.mean
        self.m2 += d_old * d_new
        self.c_a += d_old[0][None] * d_new[2:]
        self.c_b += d_old[1][None] * d_new[2:]

    def merge(self, other: "Sobol") -> None:
        if other.mean.shape != self.mean.shape:
            raise ValueError("cannot merge Sobol states of different shapes or parameter counts")
        na, nb = self.n, other.n
        if nb == 0:
            return
        if na == 0:
            self.n, self.mean, self.m2 = nb, other.mean.copy(), other.m2.copy()
            self.c_a, self.c_b = other.c_a.copy(), other.c_b.copy()
            return
        n = na + nb
        d = other.mean - self.mean
        f = na * nb / n
        self.m2 = self.m2 + other.m2 + d * d * f
        self.c_a = self.c_a + other.c_a + d[0][None] * d[2:] * f
        self.c_b = self.c_b + other.c_b + d[1][None] * d[2:] * f
        self.mean = self.mean + d * nb / n
        self.n = n

    def _corr(self, c: np.ndarray, row: int) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = c / np.sqrt(self.m2[row][None] * self.m2[2:])
        return np.where(np.isfinite(r), r, np.nan)

    def first_order(self) -> np.ndarray:
        """S_i per parameter and point, shape (p, *shape); NaN where a variance is 0."""
        return self._corr(self.c_b, 1)

    def total_order(self) -> np.ndarray:
        """ST_i per parameter and point, shape (p, *shape)."""
        return 1.0 - self._corr(self.c_a, 0)

    def _interval(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.n <= 3:
            nan = np.full(rho.shape, np.nan)
            return nan, nan
        z = np.arctanh(np.clip(rho, -1 + 1e-15, 1 - 1e-15))
        h = Z95 / np.sqrt(self.n - 3)
        return np.tanh(z - h), np.tanh(z + h)

    def first_order_ci(self) -> tuple[np.ndarray, np.ndarray]:
        """95 % interval (low, high) of S_i."""
        return self._interval(self.first_order())

    def total_order_ci(self) -> tuple[np.ndarray, np.ndarray]:
        """95 % interval (low, high) of ST_i (the interval of 1 - ST turned round)."""
        lo, hi = self._interval(self._corr(self.c_a, 0))
        return 1.0 - hi, 1.0 - lo

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"n": np.array(self.n, dtype=np.int64), "mean": self.mean, "m2": self.m2,
                "c_a": self.c_a, "c_b": self.c_b}

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> "Sobol":
        mean = np.asarray(state["mean"])
        out = cls(mean.shape[1:], mean.shape[0] - 2)
        out.n = int(state["n"])
        for f in ("mean", "m2", "c_a", "c_b"):
            setattr(out, f, np.array(state[f], copy=True))
        return out
