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
    flats = []
    local = np.zeros(3)
    for a in arrays:
        f = np.asarray(a, dtype=np.float64).ravel()
        if not np.isfinite(f).all():
            f = f[np.isfinite(f)]
        flats.append(f)
        local += (f.sum(), np.dot(f, f), f.size)
    s, ss, n = (float(v) for v in allreduce(local)[:3])
    mean = s / n if n > 0 else 0.0
    std = math.sqrt(max(ss / n - mean * mean, 0.0)) if n > 0 else 0.0
    if n <= 0 or std <= 0:  # global numbers: every rank returns here alike
        return mean, 0.0, mean, std
    median, sigma, width = _quantiles(flats, _round(mean - HIST_SPAN * std), _round(2 * HIST_SPAN * std / HIST_BINS), allreduce)
    for _ in range(MAX_ZOOMS):
        if not 0 < sigma < ZOOM_BELOW * width:
            break
        # The noise is narrow next to the objects' range: zoom (one more collective, taken
        # or not alike on every rank, since it depends on global numbers only).
        span = max(sigma, width)
        median, sigma, width = _quantiles(flats, _round(median - HIST_SPAN * span),
                                          _round(2 * HIST_SPAN * span / HIST_BINS), allreduce)
    if not sigma > 2 * width:  # a flat lower half (exact background): no spread to measure there
        sigma = std
    return median, sigma, mean, std


def _quantiles(flats: Sequence[np.ndarray], lo: float, width: float,
               allreduce: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float, float]:
    """(median, median - q(15.87 %), bin width) from one global histogram starting at ``lo``."""
    counts = np.zeros(HIST_BINS + 2)
    if width > 0:
        for f in flats:
            idx = np.clip(np.floor((f - lo) / width), -1, HIST_BINS).astype(np.int64) + 1
            counts += np.bincount(idx, minlength=HIST_BINS + 2)
    total = allreduce(counts)
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
