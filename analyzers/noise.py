"""Robust, global background statistics and the scale-space filter of blob detection.

Why these estimators:

* **Level and spread from a global histogram** (``robust_stats``).  Median and
  quantiles cannot be summed over ranks, histogram counts can (integers, so
  the allreduce is exact and the result is the same for any decomposition).
  Two collectives: raw moments fix the histogram range (mean ± 8 std, with the
  edges rounded to 10 significant digits so float rounding in the moment sum
  cannot move them between decompositions), then one histogram of
  ``HIST_BINS`` bins plus under/overflow gives the median and the 15.87 %
  quantile by linear interpolation inside their bins.
* **Spread from the lower half** (``median - q(0.1587)``, the Gaussian
  one-sigma quantile): blob detection looks for positive excursions, which
  contaminate the upper tail (and the plain standard deviation, and the MAD
  through its upper half); the lower half of the distribution is left to the
  background.  With 5 % of cells in blobs the estimate moves by a few percent,
  where the plain std moves by tens of percent.  The spread used is the
  smaller of that and IQR / 1.349: a background with a long lower tail
  (negatively skewed turbulence, blob_sim's field: lower-half 1.41 vs IQR
  ~1.0) inflates the lower half, which blobs' tails never shrink.  When the lower half is flat
  (a background of exact zeros, e.g. Gray-Scott's V) the spread falls back to
  the plain standard deviation, so thresholds stay finite and meaningful.
  When the spread covers fewer than ``ZOOM_BELOW`` bins (bright objects
  stretch the moments' range far beyond the noise), up to ``MAX_ZOOMS`` more
  collectives zoom in, each a histogram over median ± 8 spreads.
* **Spatial correlation** (``correlation_length``): for a test or a report,
  the lag-1 autocorrelation per axis gives the Gaussian correlation length
  ``l = 1 / sqrt(-4 ln rho)`` of noise smoothed with a Gaussian of ``l``
  cells.  The detector itself needs no such number: it thresholds the
  filtered field on that field's own measured spread, which already holds
  whatever correlation the noise has.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

#: Bins of the global histogram (over mean ± HIST_SPAN std): ~0.004 std per bin,
#: refined by linear interpolation inside the bin.
HIST_BINS = 4096
HIST_SPAN = 8.0
#: Zoom in (one more histogram around the median) when the spread is under this many bins.
ZOOM_BELOW = 64
MAX_ZOOMS = 3
#: The Gaussian one-sigma lower quantile, Phi(-1).
ONE_SIGMA_Q = 0.15865525393145707
#: The interquartile range of a unit Gaussian.
IQR_PER_SIGMA = 1.3489795003921634
#: Gaussian truncation of the scale-space filter, in sigmas (radius = ceil(TRUNCATE * s)).
TRUNCATE = 4.0


def _round(x: float) -> float:
    return float(f"{x:.10g}")


def robust_stats(arrays: Sequence[np.ndarray], allreduce: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float, float, float]:
    """Global ``(median, sigma, mean, std)`` of the finite cells of every rank's ``arrays``.

    Two collectives on every rank, whatever it holds (a rank without cells
    contributes zeros), up to three more when the noise is narrow next to the range.
    ``sigma`` is the lower-half spread (see the module docstring);
    ``mean``/``std`` the plain moments.
    """
    return robust_stats_groups([arrays], allreduce)[0]


def _finite(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for a in arrays:
        f = np.asarray(a, dtype=np.float64).ravel()
        if not np.isfinite(f).all():
            f = f[np.isfinite(f)]
        out.append(f)
    return out


def robust_stats_groups(groups: Sequence[Sequence[np.ndarray]],
                        allreduce: Callable[[np.ndarray], np.ndarray]) -> list[tuple[float, float, float, float]]:
    """``robust_stats`` of several groups of arrays at once, in the same number of collectives as one.

    Each collective carries every group's numbers side by side (the moments,
    then the histograms, then the zooms of the groups that need one), so
    measuring the field and its finite differences costs no extra round trip.
    Every decision (zoom or not) depends on global numbers only, so all ranks
    make the same calls.
    """
    flats = [_finite(g) for g in groups]
    local = np.zeros(3 * len(groups))
    for gi, fl in enumerate(flats):
        for f in fl:
            local[3 * gi: 3 * gi + 3] += (f.sum(), np.dot(f, f), f.size)
    total = np.asarray(allreduce(local), dtype=np.float64)
    out: list[list[float]] = []
    todo: list[tuple[int, float, float]] = []  # (group, histogram start, bin width)
    for gi in range(len(groups)):
        s, ss, n = (float(v) for v in total[3 * gi: 3 * gi + 3])
        mean = s / n if n > 0 else 0.0
        std = math.sqrt(max(ss / n - mean * mean, 0.0)) if n > 0 else 0.0
        out.append([mean, 0.0, mean, std, 0.0])  # median, sigma, mean, std, bin width
        if n > 0 and std > 0:  # global numbers: every rank decides alike
            todo.append((gi, _round(mean - HIST_SPAN * std), _round(2 * HIST_SPAN * std / HIST_BINS)))
    for zoom in range(MAX_ZOOMS + 1):
        if not todo:
            break
        res = _quantiles_groups([flats[gi] for gi, _, _ in todo], [(lo, w) for _, lo, w in todo], allreduce)
        nxt = []
        for (gi, _, _), (median, sigma, width) in zip(todo, res):
            out[gi][0], out[gi][1], out[gi][4] = median, sigma, width
            if zoom < MAX_ZOOMS and 0 < sigma < ZOOM_BELOW * width:
                # The noise is narrow next to the objects' range: zoom in around the median.
                span = max(sigma, width)
                nxt.append((gi, _round(median - HIST_SPAN * span), _round(2 * HIST_SPAN * span / HIST_BINS)))
        todo = nxt
    result = []
    for median, sigma, mean, std, width in out:
        if std > 0 and not sigma > 2 * width:  # a flat lower half (exact background): no spread to measure there
            sigma = std
        result.append((median, sigma, mean, std))
    return result


def _quantiles_groups(flats: Sequence[Sequence[np.ndarray]], ranges: Sequence[tuple[float, float]],
                      allreduce: Callable[[np.ndarray], np.ndarray]) -> list[tuple[float, float, float]]:
    """``_quantiles`` of several groups in one collective (their histograms side by side)."""
    nb = HIST_BINS + 2
    counts = np.zeros(nb * len(flats))
    for gi, (fl, (lo, width)) in enumerate(zip(flats, ranges)):
        if width > 0:
            for f in fl:
                idx = np.clip(np.floor((f - lo) / width), -1, HIST_BINS).astype(np.int64) + 1
                counts[gi * nb:(gi + 1) * nb] += np.bincount(idx, minlength=nb)
    total = np.asarray(allreduce(counts), dtype=np.float64)
    return [_from_histogram(total[gi * nb:(gi + 1) * nb], lo, width) for gi, (lo, width) in enumerate(ranges)]


def _quantiles(flats: Sequence[np.ndarray], lo: float, width: float,
               allreduce: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float, float]:
    """(median, spread, bin width) from one global histogram starting at ``lo``."""
    return _quantiles_groups([flats], [(lo, width)], allreduce)[0]


def _from_histogram(total: np.ndarray, lo: float, width: float) -> tuple[float, float, float]:
    """(median, min(median - q(15.87 %), IQR / 1.349), bin width) of a global histogram."""
    cum = np.cumsum(total)
    if width <= 0 or cum[-1] <= 0:
        return lo, 0.0, width

    def quantile(q: float) -> float:
        target = q * cum[-1]
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(max(i, 1), HIST_BINS)  # inside the binned range
        below = cum[i - 1]
        frac = (target - below) / total[i] if total[i] > 0 else 0.5
        return lo + (i - 1 + min(max(frac, 0.0), 1.0)) * width

    median = quantile(0.5)
    lower = median - quantile(ONE_SIGMA_Q)
    iqr = (quantile(0.75) - quantile(0.25)) / IQR_PER_SIGMA
    # The smaller of the two: bright objects inflate the IQR (upper quartile), a background
    # with a long lower tail (skewed turbulence) inflates the lower-half spread.
    return median, min(lower, iqr), width


def radius(scale: float) -> int:
    """Cells the Gaussian of ``scale`` reaches (scipy's own rule, made explicit)."""
    return int(TRUNCATE * float(scale) + 0.5)


def smooth(padded: np.ndarray, scale: float, periodic: Sequence[bool]) -> np.ndarray:
    """Gaussian smoothing of ``scale`` cells; open axes reflect at the array edge, periodic ones wrap.

    Run on a block padded with at least ``radius(scale)`` cells (or on the
    whole domain), the cells of the block come out exactly as if the whole
    field had been filtered: each output cell depends only on its
    neighbourhood, computed in the same order.
    """
    modes = ["wrap" if p else "reflect" for p in periodic]
    return ndimage.gaussian_filter(padded, float(scale), mode=modes, truncate=TRUNCATE)


def correlation_length(field: np.ndarray, periodic: bool = True) -> tuple[float, ...]:
    """Gaussian correlation length per axis from the lag-1 autocorrelation (see module docstring)."""
    x = np.asarray(field, dtype=np.float64)
    x = x - np.median(x)
    var = float(np.mean(x * x))
    out = []
    for k in range(x.ndim):
        if periodic:
            rho = float(np.mean(x * np.roll(x, 1, axis=k))) / var
        else:
            a = np.take(x, np.arange(1, x.shape[k]), axis=k)
            b = np.take(x, np.arange(0, x.shape[k] - 1), axis=k)
            rho = float(np.mean(a * b)) / var
        out.append(1.0 / math.sqrt(-4.0 * math.log(rho)) if 0 < rho < 1 else 0.0)
    return tuple(out)


#: False peaks per cell the adaptive seed level allows (Gaussian kinematic formula, see ``seed_level``):
#: 1e-5 puts the seed at 4 sigma for noise correlated over 2 cells in 2D.
FALSE_PEAK_RATE = 1e-5
#: The adaptive seed level stays within these bounds (sigma of the noise).
SEED_BOUNDS = (3.0, 4.0)
#: Finite differences are sampled on the cells whose global index is a multiple of this on every axis.
DIFF_STRIDE = 2


def _ec_density(d: int, u: float) -> float:
    """Euler-characteristic density of a unit-smoothness Gaussian field above ``u`` (Worsley's rho_d)."""
    if d == 0:
        return 0.5 * math.erfc(u / math.sqrt(2.0))
    hermite = (1.0, u, u * u - 1.0)[d - 1]  # He_{d-1}
    return hermite * math.exp(-0.5 * u * u) / (2.0 * math.pi) ** ((d + 1) / 2.0)


def false_peaks(u: float, smoothness: Sequence[float], shape: Sequence[int], periodic: Sequence[bool]) -> float:
    """Expected number of noise excursions above ``u`` sigma on the whole domain (Gaussian kinematic formula).

    ``smoothness[k]`` is ``Lambda_k = var(d_k x) / var(x)``, the variance of
    the finite difference along axis k over the field's (2 for white noise,
    ``1 / (2 l^2)`` for noise smoothed by a Gaussian of ``l`` cells).  The box
    has the intrinsic volumes of its sides ``n_k sqrt(Lambda_k)``; a periodic
    axis has no boundary, so only the faces that contain it count.
    """
    axes = [k for k, n in enumerate(shape) if n > 1]
    side = {k: float(shape[k]) * math.sqrt(max(float(smoothness[k]), 0.0)) for k in axes}
    closed = [k for k in axes if periodic[k]]
    open_ = [k for k in axes if not periodic[k]]
    total = 0.0
    for r in range(len(open_) + 1):
        for extra in itertools.combinations(open_, r):
            subset = closed + list(extra)
            if len(subset) > 3:
                continue
            total += _ec_density(len(subset), u) * math.prod(side[k] for k in subset)
    return total


def seed_level(smoothness: Sequence[float], shape: Sequence[int], periodic: Sequence[bool],
               rate: float = FALSE_PEAK_RATE, bounds: tuple[float, float] = SEED_BOUNDS) -> float:
    """The seed level (sigma) at which noise of this smoothness gives ``rate`` false peaks per cell.

    Why: how many noise peaks clear a level depends on how rough the noise is
    (white noise has a peak every few cells, turbulence smooth over 20 cells a
    few per domain), not on its variance alone; a fixed 4 sigma is right for
    the first and loses faint objects on the second.  Solved by bisection
    within ``bounds`` (the formula assumes Gaussian noise; the bounds keep a
    non-Gaussian background from pushing the level far).
    """
    cells = float(math.prod(int(n) for n in shape))
    lo, hi = bounds
    if cells <= 0:
        return hi

    def excess(u: float) -> float:
        return false_peaks(u, smoothness, shape, periodic) / cells - rate

    if excess(lo) <= 0:
        return lo
    if excess(hi) >= 0:
        return hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return round(hi, 6)  # a few digits: tiny float differences in the moments never move it


def difference_samples(src: np.ndarray, h_lo: Sequence[int], h_hi: Sequence[int], start: Sequence[int],
                       count: Sequence[int], shape: Sequence[int], periodic: Sequence[bool], axis: int,
                       stride: int = DIFF_STRIDE) -> np.ndarray:
    """Forward differences ``x[i + 1] - x[i]`` along ``axis`` for the block's cells on the global stride grid.

    ``src`` is the block padded with ``h_lo``/``h_hi`` cells (the halo read;
    the high side along ``axis`` needs one cell unless the block ends at an
    open domain edge, where the last cell has no forward neighbour).  Which
    cells are sampled depends on their global index only, and each difference
    is computed from the same two numbers whatever the decomposition, so the
    samples of all blocks together are the same for any M ranks and N blocks.
    """
    ndim = len(shape)
    sl_a, sl_b = [], []
    for j in range(ndim):
        first = (-int(start[j])) % stride
        stop = int(h_lo[j]) + int(count[j])
        if j == axis and not periodic[j] and int(start[j]) + int(count[j]) == int(shape[j]):
            stop -= 1  # the open edge: no forward neighbour
        a = slice(int(h_lo[j]) + first, max(stop, int(h_lo[j]) + first), stride)
        sl_a.append(a)
        sl_b.append(slice(a.start + 1, a.stop + 1, stride) if j == axis else a)
    a, b = src[tuple(sl_a)], src[tuple(sl_b)]
    if a.shape != b.shape:
        raise ValueError(f"difference_samples: block at {tuple(start)} lacks the one-cell halo on the high side "
                         f"of axis {axis}")
    return (b.astype(np.float64) - a).ravel()
