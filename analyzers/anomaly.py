"""Online anomaly detection on a 2-D field: an early warning before a numerical blow-up.

The question a user asks is "is this run going unphysical?", not "is it
changing?": a healthy run may reorganise its pattern at any time (that is a
change point, see ``changepoint``), while a run past its stability limit shows
*unphysical* change — energy growing exponentially, energy piling up at the
grid scale (checkerboards, ringing), non-finite values, lost conservation.
So this analyzer publishes one named score per kind of unphysical change,
each calibrated from the run itself to a false-alarm *rate* the user states.

Features (per rank, ``process_blocks``; one ``ctx.allreduce`` of
``4 coarse² + 5`` floats per step).  Cells are sampled in 2x2 *clusters*
anchored on the global grid every ``P`` cells (``stride``; ``0`` = auto: 2 up
to 128², i.e. every cell, 4 at 256², 8 at 512², 16 at 1024²: at most 64²
clusters).  Each of the four cells of a cluster (row offset ``a``, column
offset ``b``) is summed into its own ``coarse x coarse`` grid of tiles (the
cluster's anchor decides the tile), so every sum is a sum of per-cell terms
indexed by *global* position: the same for any cut into blocks and ranks
(``decomposition_rtol = 0``; only the summation order differs, so scores
agree to rounding).  From the four tile grids ``A, B, C, D`` ``combine`` forms
the tile means ``A+B+C+D`` and the demodulated Nyquist components
``A-B+C-D`` ((-1)^j), ``A+B-C-D`` ((-1)^i), ``A-B-C+D`` ((-1)^(i+j)): the
grid-scale energy ``E_N``, coherent over a tile.  Besides: the sampled count,
sum n, sum n² and the count of non-finite sampled cells (exact over every
cell when ``P = 2``; with a coarser period a NaN or spike off the clusters is
seen once the solver spreads it onto one: ``stride = 2`` checks every cell).
``max |n|`` over the sampled cells rides in the partial (maxima do not add;
``combine`` takes the largest).

Scores (rank 0, ``combine``).  The log increments of the energy ``E``, the
grid-scale energy ``E_N``, the rate of change ``R`` (rms of the coarse
field's step-to-step change, relative to sqrt E), its temporal roughness
``R2`` (the same for the second difference: a mode that flips sign every step
shows here first) and ``max|n|``, per step (the smallest of the last 3
increments: growth sustained over 3 steps, which a healthy one- or two-step
acceleration is not) and over 8 steps (twice the smaller of its two 4-step
halves: slow growth that does not slow down, as a healthy response to a
parameter change does), each normalised by its own recent scale: ``z = (u - median) / max(1.4826 MAD,
floor)`` over the last ``window`` nominal steps (refreshed every 10 steps),
one-sided (decay is no blow-up).  The *level* of the rate of change is not
scored, nor its growth over 8 steps: a faster but healthy pattern is a change
point (``changepoint``), not an anomaly.

* ``growth_score``: the largest z of E, max|n| (1 and 8 steps), R and R2 (per
  step) over its threshold, or the CUSUM of the per-step energy growth z
  beyond 2 (moderate growth that goes on and on) over its own threshold (the
  energy only: max|n| is local, a source or a spot piling up makes it grow
  for a while in a healthy run);
* ``grid_score``: the larger z of E_N (1 and 8 steps) over its threshold
  (checkerboards, ringing);
* ``conservation_score``: ``|mean of dM over the last 16 steps| / (rms of dM on
  nominal steps / 4)`` over its threshold, ``M`` = the mean of the sampled
  cells (a leak or source that the field's own fluctuations do not explain;
  for a field that does not conserve its mean it tracks the fluctuations and
  stays calibrated, but it does not stop the run: it is not in ``score``);
* ``nonfinite``: the count of NaN/inf sampled cells;
* ``score = max(growth_score, grid_score)`` (three calibrated raw scores: growth,
  sustained growth, grid); any NaN/inf or ``max|n| >
  blowup_abs`` gives ``1e6`` at once.

Calibration (extreme-value, peaks over threshold).  Each raw score's
threshold is the level its nominal steps exceed with probability ``q`` per
step, from a generalised Pareto fit (probability-weighted moments, shape
clamped to ``[0, 0.5]``: never a bounded tail, which a non-stationary run
would overrun) of the exceedances over the sample's 90th percentile.  The
user states ``false_alarms_per_1000``; ``alarm`` needs ``persist`` steps in a
row over 1 (``persist = 0``: the smallest m with ``r^(1/m) >= 1 %``, r the
rate per step: 2 for the default 0.1 per 1000), and ``q = r / c^(m-1)`` split
over the three stop scores, ``c`` the estimated chance that an exceedance of
the 90th percentile is followed by another (at least ``r^(1/m)``:
independence is never assumed better than it is).  The fit is made at the
end of the ``warmup`` (from its second half) and redone every
``recalibrate_every`` steps from the last ``calib_buffer`` nominal steps,
never below ``min_threshold``.  A step is nominal for a score when that score
stayed under 1 on it *and on the 12 steps after it* (the robust statistics
likewise), so the slow start of a real instability never raises its own bar.
The first ``warmup`` steps score 0 (``warmup`` = 1 says so).

Everything that changes the scores is in ``state_dict``: a restored job
scores exactly as an uninterrupted one.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import deque
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from intransit.analyzers.base import Analyzer, StepContext, StepResult, register
from intransit.analyzers.changepoint import median0

log = logging.getLogger(__name__)

#: scalar slots after the four tile grids in the allreduce vector
_SCALARS = ("samples", "sum_sq", "cells", "mass", "nonfinite")
BIG = 1e6
#: growth is measured per step (sustained over SUSTAIN steps) and over HORIZON steps (slow growth): each its own scale
HORIZON = 8
SUSTAIN = 3
#: robust-scale floors of the log increments of (E, E_N, R, max|n|) over 1 and HORIZON steps: growth below is noise
#: over 1 and HORIZON steps, of (E, E_N, R, max|n|, R2): growth below these floors is noise
MIN_SCALE = np.array([0.01, 0.05, 0.02, 0.01, 0.02, 0.03, 0.15, 0.06, 0.03, 0.06])
#: growth: energy and max|n| over 1 and HORIZON steps, the rate of change R and its time difference R2 over one
#: step only (over HORIZON steps a faster but steady pattern would count: that is a change point, not growth)
GROWTH_IDX, GRID_IDX = [0, 2, 3, 4, 5, 8], [1, 6]
#: at most this many 2x2 clusters per step (``stride = 0``)
AUTO_CLUSTERS = 64 * 64
#: after the warm-up, the robust median/MAD are refreshed every this many steps (not every step: cost)
STATS_EVERY = 10
#: the GPD tail is trusted down to this per-step exceedance probability; rarer = more persistence
Q_RELIABLE = 0.01
#: conservation: the drift is the mean of dM over this many steps
DRIFT_STEPS = 16
STOP_SCORES = ("growth", "sustained", "grid")
#: a nominal step joins the calibration and the robust statistics only after this many more nominal steps
PENDING = HORIZON + 4
ALL_SCORES = ("growth", "sustained", "grid", "conservation")
#: sustained growth: CUSUM of the per-step energy growth z beyond this reference
CUSUM_K = 2.0


def auto_stride(global_shape: Sequence[int], target: int = AUTO_CLUSTERS) -> int:
    """The cluster period ``P`` (even, >= 2) that leaves at most ``target`` 2x2 clusters."""
    return _auto_period(tuple(int(n) for n in global_shape), target)


@functools.lru_cache(maxsize=64)
def _auto_period(global_shape: tuple[int, ...], target: int) -> int:
    p = 2
    while math.prod(max(1, (n - 2) // p + 1) for n in global_shape) > target:
        p += 2
    return p


def _anchors(n: int, period: int) -> int:
    """Cluster anchors along an axis of ``n`` cells: every ``period``, with room for the partner cell."""
    return max(0, (n - 2) // period + 1) if n >= 2 else 0


@functools.lru_cache(maxsize=512)
def _class_slice(start: int, count: int, size: int, period: int, offset: int, coarse: int):
    """Local slice and ``(coarse, m)`` tile matrix of the block's cells at global ``period*I + offset``."""
    n_anchor = _anchors(size, period)
    lo = max(0, -((offset - start) // period))  # ceil((start - offset) / period)
    hi = min(n_anchor, (start + count - 1 - offset) // period + 1)
    if hi <= lo:
        return None
    first = period * lo + offset - start
    anchors = period * np.arange(lo, hi)
    m = np.zeros((coarse, hi - lo))
    m[(anchors * coarse) // size, np.arange(hi - lo)] = 1.0
    m.setflags(write=False)
    return slice(first, first + period * (hi - lo - 1) + 1, period), m


@functools.lru_cache(maxsize=16)
def _tile_counts(ny: int, nx: int, coarse: int, period: int) -> np.ndarray:
    """Clusters per tile."""
    ay = np.bincount((period * np.arange(_anchors(ny, period)) * coarse) // ny, minlength=coarse)
    ax = np.bincount((period * np.arange(_anchors(nx, period)) * coarse) // nx, minlength=coarse)
    return np.outer(ay, ax).astype(float)


def _sumsq(a: np.ndarray) -> float:
    f = a.ravel()
    return float(np.dot(f, f))


def local_features(blocks: Sequence[Any], global_shape: Sequence[int], coarse: int,
                   period: int = 2) -> tuple[np.ndarray, float]:
    """This rank's feature sums (``4 coarse**2 + 5`` floats) and its sampled max |n| (NaN/inf excluded).

    Every entry is a sum of per-cell terms over global positions, so the
    vector summed over ranks does not depend on the decomposition.
    """
    if len(global_shape) != 2:
        raise ValueError(f"the anomaly analyzer needs a 2-D field, got global shape {tuple(global_shape)}")
    if period < 2 or period % 2:
        raise ValueError(f"the cluster period must be even and >= 2, got {period}")
    ny, nx = int(global_shape[0]), int(global_shape[1])
    c2 = coarse * coarse
    out = np.zeros(4 * c2 + len(_SCALARS))
    vmax = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for b in blocks:
            d = np.asarray(b.data)
            if d.dtype.kind != "f":
                d = d.astype(np.float64)
            y0, x0 = int(b.start[0]), int(b.start[1])
            for cls, (a, bb) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                ry = _class_slice(y0, d.shape[0], ny, period, a, coarse)
                rx = _class_slice(x0, d.shape[1], nx, period, bb, coarse)
                if ry is None or rx is None:
                    continue
                A = np.ascontiguousarray(d[ry[0], rx[0]])  # strided slice + copy: far cheaper than a fancy gather
                sq = _sumsq(A)
                total = float(A.sum())
                if not (math.isfinite(sq) and math.isfinite(total)):  # slow path: count and zero the bad cells
                    bad = ~np.isfinite(A)
                    out[4 * c2 + 4] += int(bad.sum())
                    A = np.where(bad, 0.0, A)
                    sq, total = _sumsq(A), float(A.sum())
                    if not math.isfinite(sq):
                        sq = total = BIG ** 4
                out[4 * c2] += A.size
                out[4 * c2 + 1] += sq
                out[4 * c2 + 3] += total
                vmax = max(vmax, float(A.max()), -float(A.min()))
                out[cls * c2:(cls + 1) * c2] += (ry[1] @ A @ rx[1].T).ravel()
    out[4 * c2 + 2] = out[4 * c2]
    if not math.isfinite(float(out.sum())):  # overflow near a blow-up: cap, keep the sums finite
        out = np.nan_to_num(out, nan=BIG ** 4, posinf=BIG ** 4, neginf=-BIG ** 4)
    return out, vmax


# ------------------------------------------------------------------ calibration
def gpd_pwm(excess: np.ndarray) -> tuple[float, float]:
    """Generalised Pareto ``(shape xi, scale sigma)`` of excesses over a threshold, by probability-weighted
    moments (Hosking & Wallis 1987): closed form, microseconds, good for the small samples of a warm-up."""
    y = np.sort(np.asarray(excess, dtype=float))
    n = y.size
    if n < 2 or y[-1] <= 0:
        return 0.0, max(float(y.mean()) if n else 0.0, 1e-12)
    p = (np.arange(1, n + 1) - 0.35) / n
    a0 = float(y.mean())
    a1 = float(np.mean((1.0 - p) * y))
    den = a0 - 2.0 * a1
    if den <= 0:
        return 0.5, max(a0, 1e-12)
    k = a0 / den - 2.0  # Hosking's k = -xi
    sigma = 2.0 * a0 * a1 / den
    return -k, max(sigma, 1e-12)


def tail_level(values: np.ndarray, q: float, *, pot: float = 0.9, xi_range: tuple[float, float] = (0.0, 0.5)) -> float:
    """The level a sample's distribution exceeds with probability ``q``: a GPD fit of its excesses over
    its ``pot`` quantile, shape clamped to ``xi_range``."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        return math.inf
    k = int(math.floor(pot * n))
    u = float(x[min(k, n - 1)]) if n > 1 else float(x[0])
    zeta = float(np.mean(x > u))
    if zeta <= 0 or n < 10:  # too few to fit a tail: twice the largest
        return float(x[-1]) * 2.0 if x[-1] > 0 else 1.0
    xi, sigma = gpd_pwm(x[x > u] - u)
    xi = min(max(xi, xi_range[0]), xi_range[1])
    if q >= zeta:
        return float(np.quantile(x, 1.0 - q))
    if abs(xi) < 1e-9:
        return u + sigma * math.log(zeta / q)
    return u + sigma / xi * ((q / zeta) ** (-xi) - 1.0)


def persistence_for(rate_per_step: float) -> int:
    """Consecutive steps over threshold an alarm needs so each step's tail probability stays >= 1 %."""
    return max(1, math.ceil(math.log(rate_per_step) / math.log(Q_RELIABLE) - 1e-9))


def follow_probability(values: Sequence[float], level: float) -> float:
    """Estimated chance that a step over ``level`` is followed by another (add-one smoothed)."""
    v = np.asarray(values, dtype=float) > level
    n = int(v[:-1].sum())
    k = int((v[:-1] & v[1:]).sum())
    return (k + 1.0) / (n + 2.0)


# ------------------------------------------------------------------ analyzer
class AnomalyDetector(Analyzer):
    """Named unphysical-change scores per step; ``score > 1`` for ``persist`` steps = the stated false-alarm rate."""

    event_fields = ("score", "growth_score", "grid_score", "conservation_score", "max_abs", "feature")
    #: every feature is a sum of per-cell terms at global positions: only the summation order depends on the
    #: decomposition (``score_rtol`` states what that leaves, per score)
    decomposition_rtol = 0.0
    score_names = ("score", "alarm", "warmup", "persist", "growth_score", "grid_score", "conservation_score",
                   "nonfinite", "max_abs", "threshold_growth", "threshold_sustained", "threshold_grid",
                   "threshold_conservation", "z_growth", "z_sustained", "z_grid", "z_conservation", "log_energy",
                   "log_grid_energy", "log_grid_share", "log_rate", "mass", "d_log_energy", "d_log_grid_energy", "d_log_rate", "d_log_max_abs")
    #: per-score relative tolerance under another decomposition (contract suite): all exact up to rounding,
    #: except the logs of quantities that cancel to ~0 (the rate of a still field, the grid energy of a
    #: smooth one), which rounding moves in absolute terms
    score_rtol: ClassVar[dict[str, float]] = {}
    example_steps: ClassVar[int] = 40

    def __init__(self, *, coarse: int = 8, warmup: int = 100, false_alarms_per_1000: float = 0.1,
                 persist: int = 0, window: int = 64, min_threshold: float = 6.0, recalibrate_every: int = 50,
                 calib_buffer: int = 2000, blowup_abs: float = 1e6, stride: int = 0) -> None:
        if coarse < 1:
            raise ValueError(f"coarse must be >= 1, got {coarse}")
        if warmup < 10:
            raise ValueError(f"warmup must be >= 10 steps, got {warmup}")
        if not (0 < false_alarms_per_1000 < 1000):
            raise ValueError(f"false_alarms_per_1000 must be in (0, 1000), got {false_alarms_per_1000}")
        if persist < 0 or window < 8 or recalibrate_every < 1 or calib_buffer < 50 or min_threshold <= 0:
            raise ValueError("need persist >= 0 (0 = from the rate), window >= 8, recalibrate_every >= 1, "
                             f"calib_buffer >= 50, min_threshold > 0; got {persist}, {window}, {recalibrate_every}, "
                             f"{calib_buffer}, {min_threshold}")
        if stride < 0 or stride % 2:
            raise ValueError(f"stride (the cluster period) must be 0 (auto) or an even number >= 2, got {stride}")
        self.coarse, self.warmup, self.window, self.stride = coarse, warmup, window, stride
        self.rate = false_alarms_per_1000 / 1000.0
        self.persist = persist or persistence_for(self.rate)
        self.min_threshold, self.recalibrate_every, self.calib_size = min_threshold, recalibrate_every, calib_buffer
        self.blowup_abs = blowup_abs
        self.reset_stats()

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"warmup": 12, "window": 8}

    def reset_stats(self) -> None:
        self.n_seen = 0
        self.prev: dict[str, Any] | None = None  # previous step's diagnostics
        self.logs: deque[np.ndarray] = deque(maxlen=HORIZON + 1)  # last steps' log (E, E_N, R, max, R2)
        self.U: deque[np.ndarray] = deque(maxlen=self.window)  # increments of nominal steps
        self.med = np.zeros(len(MIN_SCALE))
        self.mad = np.zeros(len(MIN_SCALE))
        self.dM: deque[float] = deque(maxlen=DRIFT_STEPS)  # last mass increments
        self.dM_ref: deque[float] = deque(maxlen=self.calib_size)  # mass increments of nominal steps
        self.dM_rms = 0.0
        self.calib: dict[str, deque[float]] = {k: deque(maxlen=self.calib_size) for k in ALL_SCORES}
        self.pending: dict[str, deque[float]] = {k: deque(maxlen=PENDING) for k in ALL_SCORES}
        self.pending_u: deque[np.ndarray] = deque(maxlen=PENDING)
        self.thr = {k: math.inf for k in ALL_SCORES}
        self.alarm_on = False
        self.n_alarms = 0
        self.streak = 0
        self.cusum = 0.0

    # -- per rank -------------------------------------------------------
    def process_blocks(self, ctx: StepContext) -> tuple[np.ndarray, float]:
        if ctx.global_shape and self.coarse > min(ctx.global_shape):
            raise ValueError(f"coarse {self.coarse} larger than the field {ctx.global_shape}")
        vec, vmax = local_features(ctx.blocks, ctx.global_shape, self.coarse, self._stride(ctx.global_shape))
        return (ctx.allreduce(vec), vmax)

    def _stride(self, shape: Sequence[int]) -> int:
        return self.stride or auto_stride(shape)

    # -- rank 0 ---------------------------------------------------------
    def _diagnostics(self, total: np.ndarray, vmax: float, shape: Sequence[int]) -> dict[str, Any]:
        c2 = self.coarse * self.coarse
        A, B, C, D = (total[i * c2:(i + 1) * c2] for i in range(4))
        s = dict(zip(_SCALARS, total[4 * c2:]))
        counts = _tile_counts(int(shape[0]), int(shape[1]), self.coarse, self._stride(shape)).ravel()
        cnt = np.maximum(4.0 * counts, 1.0)
        m, hx, hy, hxy = A + B + C + D, A - B + C - D, A + B - C - D, A - B - C + D
        nyq = float(np.sum((hx * hx + hy * hy + hxy * hxy) / cnt))
        low = float(np.sum(m * m / cnt))
        tiles = max(float((counts > 0).sum()), 1.0)
        tiny = 1e-300
        E = s["sum_sq"] / max(s["samples"], 1.0)
        EN = nyq / tiles / max(float(cnt.mean()), 1.0)  # per cell: a tile-coherent checkerboard of amplitude a gives a^2
        return {"grid": m / cnt, "E": E, "EN": EN, "share": (nyq + tiny) / (nyq + low + tiny), "vmax": float(vmax),
                "mass": s["mass"] / max(s["cells"], 1.0), "nonfinite": float(s["nonfinite"]),
                "log_energy": math.log(E + tiny), "log_grid_energy": math.log(EN + tiny)}

    def _refresh_stats(self) -> None:
        """Median/MAD of the recent nominal increments (a sliding window: slow drift is tracked)."""
        if len(self.U) >= 3:
            U = np.array(self.U)
            self.med = median0(U)
            self.mad = median0(np.abs(U - self.med))
        if len(self.dM_ref) >= 3:
            r = np.array(self.dM_ref)
            self.dM_rms = math.sqrt(float(np.dot(r, r)) / r.size)

    def _recalibrate(self) -> None:
        r, m = self.rate, self.persist
        q_ind = r ** (1.0 / m)
        for k in ALL_SCORES:
            vals = np.array(self.calib[k])
            if vals.size == 0:  # a warm-up too short to score anything: the floor
                self.thr[k] = self.min_threshold
                continue
            c = follow_probability(vals, float(np.quantile(vals, 0.9))) if m > 1 else 1.0
            q = r / max(c, q_ind) ** (m - 1)
            if k in STOP_SCORES:
                q /= len(STOP_SCORES)
            self.thr[k] = max(tail_level(vals, q), self.min_threshold)

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        total = partials[0][0]
        vmax = max(float(p[1]) for p in partials)
        d = self._diagnostics(total, vmax, ctx.global_shape)
        out = {"score": 0.0, "alarm": 0.0, "warmup": 1.0, "persist": float(self.persist), "growth_score": 0.0,
               "grid_score": 0.0, "conservation_score": 0.0, "nonfinite": d["nonfinite"], "max_abs": d["vmax"],
               "threshold_growth": self.thr["growth"], "threshold_sustained": self.thr["sustained"],
               "threshold_grid": self.thr["grid"], "threshold_conservation": self.thr["conservation"],
               "z_growth": 0.0, "z_sustained": 0.0, "z_grid": 0.0, "z_conservation": 0.0,
               "log_energy": d["log_energy"], "log_grid_energy": d["log_grid_energy"], "log_grid_share": math.log(d["share"]), "log_rate": 0.0, "mass": d["mass"], "d_log_energy": 0.0,
               "d_log_grid_energy": 0.0, "d_log_rate": 0.0, "d_log_max_abs": 0.0}
        events: list[dict[str, float]] = []
        finite = math.isfinite(d["E"]) and math.isfinite(d["mass"]) and math.isfinite(d["EN"])
        if d["nonfinite"] > 0 or not finite or vmax > self.blowup_abs:
            out.update(score=BIG, growth_score=BIG, alarm=1.0, warmup=0.0)
            if not self.alarm_on:
                events.append({"score": BIG, "growth_score": BIG, "grid_score": 0.0, "conservation_score": 0.0,
                               "max_abs": vmax, "feature": -1.0})
                self.n_alarms += 1
            self.alarm_on = True
            return StepResult(events=events, scores=out)

        self.n_seen += 1
        prev, self.prev = self.prev, d
        if prev is None:
            return StepResult(scores=out)
        tiny = 1e-300
        dg = d["grid"] - prev["grid"]
        rate = math.sqrt(float(np.dot(dg, dg)) / dg.size) / math.sqrt(d["E"] + tiny)
        d["log_rate"] = math.log(rate + 1e-12)
        d["d1"] = dg
        out["log_rate"] = d["log_rate"]
        dM = d["mass"] - prev["mass"]
        self.dM.append(dM)
        # the second time difference of the coarse field: a mode that flips sign every step (a time-stepping
        # instability) grows 2x faster there than in the field, while smooth healthy evolution shrinks there.
        # (A 4th difference, tried, warns 2 steps earlier on hw2d but fires on healthy parameter changes.)
        if "d1" not in prev:
            return StepResult(scores=out)
        d2 = dg - prev["d1"]
        rough = math.sqrt(float(np.dot(d2, d2)) / d2.size) / math.sqrt(d["E"] + tiny)
        self.logs.append(np.array([d["log_energy"], d["log_grid_energy"], d["log_rate"], math.log(d["vmax"] + tiny),
                                   math.log(rough + 1e-12)]))
        if len(self.logs) <= HORIZON:
            return StepResult(scores=out)
        # one-step growth sustained over SUSTAIN steps (the smallest of the last SUSTAIN increments: a healthy
        # one- or two-step acceleration does not count, an exponential instability grows every step), and the
        # growth over HORIZON steps (slow but sustained)
        logs = list(self.logs)
        step_growth = np.min([logs[-i] - logs[-i - 1] for i in range(1, SUSTAIN + 1)], axis=0)
        half = HORIZON // 2  # over HORIZON steps: twice the smaller half, so a response that slows down (a healthy
        slow_growth = 2.0 * np.minimum(logs[-1] - logs[-1 - half], logs[-1 - half] - logs[0])  # one) counts less
        u = np.concatenate((step_growth, slow_growth))
        out.update(d_log_energy=float(u[0]), d_log_grid_energy=float(u[1]), d_log_rate=float(u[2]),
                   d_log_max_abs=float(u[3]))
        if self.n_seen <= self.warmup or (self.n_seen - self.warmup - 1) % STATS_EVERY == 0:
            self._refresh_stats()
        if len(self.U) < 3:
            self.U.append(u)
            self.dM_ref.append(dM)
            return StepResult(scores=out)
        z = np.maximum((u - self.med) / np.maximum(1.4826 * self.mad, MIN_SCALE), 0.0)
        floor = 1e-13 * (abs(d["mass"]) + math.sqrt(d["E"]))  # rounding of a conserved mean
        drift = abs(float(np.mean(self.dM))) if len(self.dM) == DRIFT_STEPS else 0.0
        # moderate growth that goes on and on (a slowly destabilised run): Page's CUSUM of the energy growth
        self.cusum = max(0.0, self.cusum + float(z[0]) - CUSUM_K)
        raw = {"growth": float(z[GROWTH_IDX].max()), "sustained": self.cusum, "grid": float(z[GRID_IDX].max()),
               "conservation": drift / (max(self.dM_rms, floor) / math.sqrt(DRIFT_STEPS))}
        feat = int(np.argmax(z))
        out.update(z_growth=raw["growth"], z_sustained=raw["sustained"], z_grid=raw["grid"],
                   z_conservation=raw["conservation"])
        if self.n_seen <= self.warmup:
            if self.n_seen > self.warmup // 2:  # the second half: the robust scales have settled
                for k in ALL_SCORES:
                    self.calib[k].append(raw[k])
            self.U.append(u)
            self.dM_ref.append(dM)
            if self.n_seen == self.warmup:
                self._recalibrate()
                log.info("anomaly: calibrated after %d steps (persist %d): thresholds %s", self.n_seen, self.persist,
                         {k: round(v, 3) for k, v in self.thr.items()})
            return StepResult(scores=out)

        if math.isinf(self.thr["growth"]):  # a warm-up too short to reach its calibration step
            self._recalibrate()
        named = {k: raw[k] / self.thr[k] for k in ALL_SCORES}
        score = max(named[k] for k in STOP_SCORES)
        self.streak = self.streak + 1 if score > 1.0 else 0
        alarm = self.streak >= self.persist
        growth = max(named["growth"], named["sustained"])
        out.update(score=float(score), alarm=float(alarm), warmup=0.0, growth_score=growth,
                   grid_score=named["grid"], conservation_score=named["conservation"])
        if alarm and not self.alarm_on:
            self.n_alarms += 1
            events.append({"score": float(score), "growth_score": growth, "grid_score": named["grid"],
                           "conservation_score": named["conservation"], "max_abs": vmax, "feature": float(feat)})
        self.alarm_on = alarm
        # continued calibration on nominal steps: a step is committed once PENDING later steps stayed under
        # threshold too, so the slow start of a real instability (under 1, then over) never raises its own bar
        for k in ALL_SCORES:
            if named[k] > 1.0:
                self.pending[k].clear()
                continue
            self.pending[k].append(raw[k])
            if len(self.pending[k]) == PENDING:
                self.calib[k].append(self.pending[k].popleft())
        if score > 1.0:
            self.pending_u.clear()
        else:
            self.pending_u.append(u)
            if len(self.pending_u) == PENDING:
                self.U.append(self.pending_u.popleft())
        if named["conservation"] <= 1.0:
            self.dM_ref.append(dM)
        if (self.n_seen - self.warmup) % self.recalibrate_every == 0:
            self._recalibrate()
        return StepResult(events=events, scores=out)

    # -- state ------------------------------------------------------------
    _STATE_KEYS = ("n_seen", "prev", "med", "mad", "dM_rms", "thr", "alarm_on", "n_alarms", "streak", "cusum")
    _DEQUES = {"U": "window", "dM": DRIFT_STEPS, "dM_ref": "calib_size", "logs": HORIZON + 1, "pending_u": PENDING}

    def state_dict(self) -> dict[str, Any]:
        st: dict[str, Any] = {k: getattr(self, k) for k in self._STATE_KEYS}
        st.update({k: list(getattr(self, k)) for k in self._DEQUES})
        st["calib"] = {k: list(v) for k, v in self.calib.items()}
        st["pending"] = {k: list(v) for k, v in self.pending.items()}
        return st

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in self._STATE_KEYS:
            setattr(self, k, state[k])
        self.thr = dict(state["thr"])
        for k, n in self._DEQUES.items():
            setattr(self, k, deque(state[k], maxlen=n if isinstance(n, int) else getattr(self, n)))
        self.calib = {k: deque(state["calib"][k], maxlen=self.calib_size) for k in ALL_SCORES}
        self.pending = {k: deque(state["pending"][k], maxlen=PENDING) for k in ALL_SCORES}

    def summary(self) -> dict[str, Any]:
        return {"steps": self.n_seen, "thresholds": dict(self.thr), "persist": self.persist, "alarms": self.n_alarms}


register("anomaly")(AnomalyDetector)
