"""Blob detection: threshold, label, and stitch objects cut by block boundaries.

Each rank thresholds its own blocks against the *global* background level
and spread (and, by default, a seed level from the noise's roughness: a few
collectives per step, see ``BlobDetector.noise_and_seed``), labels them with
``scipy.ndimage.label`` and reduces every label to a handful of additive
features.  Only those features and the one-cell layer of labels on each block
face travel to rank 0, never the field.  There ``combine`` pairs labels that
touch across block faces (and across periodic seams), joins them with a
union-find and merges the features exactly, so the catalog does not depend on
how the simulation decomposed its domain or how blocks were spread over ranks.

Partial format (``process_blocks`` → ``combine``), plain numpy in dicts::

    {"mean": float, "std": float, "ndim": int,
     "blocks": [{"start": (..), "count": (..),
                 "levels": [{                                # one per threshold level, ascending
                     "area": int64[n], "mass": float64[n],       # Σ weight
                     "wcoord": float64[n, ndim],                 # Σ weight·coord
                     "peak": float64[n], "peak_value": float64[n],
                     "lo": int64[n, ndim], "hi": int64[n, ndim], # global, hi exclusive
                     "anchor": int64[n, ndim],                   # first cell in C order
                     "parent": int64[n],                         # row of the enclosing label one level down (-1 at level 0)
                     "faces": [(lo_face | None, hi_face | None) per axis]}]}]}

where ``n`` is the block's number of labels at that level, label ``i``
(1-based in the face arrays) is row ``i - 1`` of the feature arrays, and a
face is the int32 label layer of the block at its low/high end along that
axis (``None`` when empty).  Weights are the normalised fluctuation
``(x - mean) / std`` of cells above the level.  Each level is stitched on its
own; since a cell above a higher level is above every lower one, each stitched
object has exactly one parent object one level down, whatever the
decomposition, and ``combine`` picks objects from that tree (hysteresis and
splitting, see ``BlobDetector``).
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from intransit.analyzers import noise
from intransit.analyzers.base import Analyzer, Block, StepContext, StepResult, register
from intransit.analyzers.unionfind import ShiftUnionFind

logger = logging.getLogger(__name__)

MAX_NDIM = 3
#: Seed level, in sigma of the (filtered) background noise, where the adaptive one does not apply
#: (``scales`` given): the adaptive level's upper bound.
DEFAULT_THRESHOLD = 4.0
#: Default scale-space filter: Gaussian sigmas in cells (none: see BlobDetector).
DEFAULT_SCALES: tuple[float, ...] = ()
#: Default hysteresis grow level and split levels, in sigma of the noise.
DEFAULT_GROW = 2.5
DEFAULT_SPLIT_LEVELS = (5.0, 7.0, 10.0, 14.0)
DEFAULT_SPLIT_PROMINENCE = 1.5
DEFAULT_SPLIT_PROMINENCE_FRACTION = 0.35
#: Default ``peak_fraction``: each object reported at the lowest level >= 0.35 x its
#: peak (a blob on a broad bump keeps its own extent; ~1 e-fold radius of a Gaussian).

EVENT_FIELDS: tuple[str, ...] = (
    "object", "c0", "c1", "c2", "area", "peak", "peak_value", "mass",
    "lo0", "lo1", "lo2", "hi0", "hi1", "hi2",
)


def validate_periodic(periodic: Any, name: str = "periodic") -> list[bool] | None:
    """Check a per-axis periodicity list; shared with the tracker so configs agree."""
    if periodic is None:
        return None
    if isinstance(periodic, (str, bytes)) or not hasattr(periodic, "__iter__"):
        raise ValueError(f"{name} must be a list of booleans, one per array axis, or None; got {periodic!r}")
    flags = list(periodic)
    if not 1 <= len(flags) <= MAX_NDIM or not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise ValueError(
            f"{name} must be a list of 1 to {MAX_NDIM} booleans (one per array axis) or None; got {periodic!r}"
        )
    return [bool(f) for f in flags]


def periodic_for(periodic: list[bool] | None, ndim: int, name: str = "periodic") -> tuple[bool, ...]:
    """Periodic flags for an ``ndim``-dimensional field; a length mismatch is an error."""
    if periodic is None:
        return (False,) * ndim
    if len(periodic) != ndim:
        raise ValueError(f"{name} has {len(periodic)} entries but the field has {ndim} axes")
    return tuple(periodic)


def is_real(value: Any) -> bool:
    """A real number from a config (TOML gives int or float; bool is not a number here)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def as_numpy(data: Any) -> np.ndarray:
    """Blocks may be numpy arrays or torch tensors (possibly on GPU): bring them to host memory."""
    if hasattr(data, "detach"):  # torch, without importing it
        data = data.detach().cpu().numpy()
    return np.asarray(data)


def moments_to_stats(total: Any) -> tuple[float, float]:
    """Global mean and standard deviation from allreduced ``(sum, sum of squares, count)``."""
    s, ss, n = (float(v) for v in np.asarray(total, dtype=np.float64)[:3])
    mean = s / n if n > 0 else 0.0
    std = math.sqrt(max(ss / n - mean * mean, 0.0)) if n > 0 else 0.0
    return mean, std


def level_features(
    labels: np.ndarray, n: int, mask: np.ndarray, z: np.ndarray, data: np.ndarray, start: tuple[int, ...]
) -> dict[str, Any]:
    """Additive features of every label of one block at one level, and its face layers."""
    idx = np.flatnonzero(mask)  # C order, so the first cell of a label is its lexicographic minimum
    coords = np.stack(np.unravel_index(idx, labels.shape), axis=1).astype(np.int64) + np.asarray(start, np.int64) \
        if idx.size else np.zeros((0, labels.ndim), np.int64)
    return cell_features(labels, n, labels.ravel()[idx], z.ravel()[idx], data.ravel()[idx], coords)


def cell_features(labels: np.ndarray, n: int, lab: np.ndarray, w: np.ndarray, values: np.ndarray,
                  coords: np.ndarray) -> dict[str, Any]:
    """``level_features`` from the level's cells in C order: their labels, weights, raw values, global coords."""
    ndim = labels.ndim
    count = labels.shape
    area = np.bincount(lab, minlength=n + 1)[1:].astype(np.int64)
    mass = np.bincount(lab, weights=w, minlength=n + 1)[1:]
    axes = range(ndim)
    if n:
        wcoord = np.stack([np.bincount(lab, weights=w * coords[:, k], minlength=n + 1)[1:] for k in axes], axis=1)
        # One stable sort by label, then segment reductions (every label 1..n has cells, so the
        # segments are the labels in order, and the first cell of each is its first in C order).
        order = np.argsort(lab, kind="stable")
        sl = lab[order]
        starts = np.r_[0, np.flatnonzero(sl[1:] != sl[:-1]) + 1]
        peak = np.maximum.reduceat(w[order], starts).astype(np.float64)
        peak_value = np.maximum.reduceat(values[order].astype(np.float64), starts)
        oc = coords[order]
        lo = np.minimum.reduceat(oc, starts, axis=0).astype(np.int64)
        hi = np.maximum.reduceat(oc, starts, axis=0).astype(np.int64) + 1
        anchor = oc[starts].astype(np.int64)
    else:
        wcoord = np.zeros((0, ndim))
        peak = peak_value = np.zeros(0)
        lo = hi = anchor = np.zeros((0, ndim), np.int64)
    faces = []
    for k in range(ndim):
        pair = []
        for end in (0, count[k] - 1):
            face = np.take(labels, end, axis=k).astype(np.int32)
            pair.append(face if face.any() else None)
        faces.append(tuple(pair))
    return {"area": area, "mass": mass, "wcoord": wcoord, "peak": peak, "peak_value": peak_value,
            "lo": lo, "hi": hi, "anchor": anchor, "faces": faces}


def parents(prev_labels: np.ndarray | None, anchor: np.ndarray, start: tuple[int, ...]) -> np.ndarray:
    """Row (0-based) of each label's enclosing label one level down, in the same block (-1 at level 0)."""
    if prev_labels is None:
        return np.full(len(anchor), -1, np.int64)
    if len(anchor) == 0:
        return np.zeros(0, np.int64)
    local = anchor - np.asarray(start, np.int64)
    return prev_labels[tuple(local.T)].astype(np.int64) - 1


class BlobDetector(Analyzer):
    """Connected regions significantly above the background noise, stitched across blocks and ranks.

    Units: ``threshold``, ``grow_threshold`` (2.5), ``split_levels``
    ([5, 7, 10, 14]) and ``split_prominence`` (1.5) are in sigma of the background
    noise, estimated each step over all ranks.  ``threshold`` (the seed level)
    left unset adapts each step to the noise's roughness (``noise.seed_level``:
    the level where Gaussian noise as rough as the measured one makes 1e-5
    false peaks per cell, within [3, 4] sigma; reported as the score
    ``threshold``; needs a one-cell halo, see ``halo_spec``); with ``scales``
    it is 4.  Noise statistics (``noise="robust"``: global
    histogram median and lower-half spread, see ``analyzers/noise.py``;
    ``"moments"``: the plain global mean and std).  ``level`` instead is an
    absolute level in the field's units (cells above it, weights ``x - level``),
    exclusive with ``threshold``.  ``scales`` (Gaussian sigmas in cells, default
    none) smooths the field first and takes, per cell, the largest z over
    scales, each on the filtered field's own measured noise; the filter reads
    each block with a halo (``halo_spec``), so the result stays independent of
    the decomposition; without a halo a multi-block field is an error.  The
    ``peak_fraction`` defaults to 0.35 (None = the largest single-branch region).  The
    defaults were chosen on dev seeds of examples/scenario_sim.py and
    examples/gray_scott.py and measured on held-out seeds (docs/tracking.md):
    smoothing did not help there, so it is off.

    ``connectivity`` follows scipy/scikit-image: the number of orthogonal
    hops allowed between neighbours, so 1 = faces only, 2 = faces and
    in-plane diagonals (the full 8-neighbourhood in 2D; faces+edges in 3D),
    3 = the full 26-neighbourhood in 3D (same as 2 on a 2D field).
    ``periodic`` flags, per array axis, a periodic domain: objects across the
    seam are joined and their centroid lies in ``[0, L)``; their bounding box
    starts in ``[0, L)`` and ``hi`` may exceed ``L``.  An object that closes
    on itself around a periodic axis (a zonal band) has no unwrapped frame:
    along that axis its centroid is the plain weighted mean and its bbox
    ``[0, L)``.

    Robustness to a turbulent background (all pointwise, so the result stays
    identical under any decomposition; see ``docs/tracking.md``):

    * ``grow_threshold`` (hysteresis): objects are the connected regions
      above ``grow_threshold`` that contain a cell above ``threshold`` (the
      seed).  Background bumps that never reach the seed level are dropped,
      while a blob keeps its full extent down to the lower level.
      ``None`` = same as ``threshold`` (plain thresholding).
    * ``split_levels`` (multi-threshold component tree): extra levels above
      ``grow_threshold``.  A region that holds two or more significant
      sub-regions (area >= ``min_area`` and reaching the seed) at a higher
      level is split into them, recursively, so blobs that touch or cross
      stay separate objects as long as their peaks are resolved at some level.
      Each reported object is the largest region that holds exactly one.
      A sub-region is significant when its peak stands max(``split_prominence``,
      ``split_prominence_fraction`` x the level) above the separating level:
      the relative part keeps bright objects with a noisy top in one piece.
      Defaults 1.5 and 0.35; a ``split_prominence`` given alone means exactly
      that many sigma (fraction 0), as before the fraction existed.

    ``backend`` ``"numpy"`` (scipy.ndimage) or ``"torch"`` (labelling and
    features as torch tensor ops on ``device``: ``"auto"`` = CUDA when
    available, else CPU); both give the same objects.
    """

    event_fields = EVENT_FIELDS
    score_names = ("n_objects", "mean", "std", "threshold")

    def __init__(
        self,
        *,
        threshold: float | None = None,
        level: float | None = None,
        scales: list[float] | None = None,
        noise: str = "robust",
        min_area: int = 4,
        connectivity: int = 1,
        periodic: list[bool] | None = None,
        grow_threshold: float | None = None,
        split_levels: list[float] | None = None,
        split_prominence: float | None = None,
        split_prominence_fraction: float | None = None,
        peak_fraction: float | None = 0.35,
        backend: str = "numpy",
        device: str = "auto",
    ) -> None:
        if threshold is not None and level is not None:
            raise ValueError(
                f"threshold={threshold!r} and level={level!r} are exclusive: give threshold (in sigma of the "
                f"background noise) or level (absolute, in the field's units), not both"
            )
        if level is not None:
            if not is_real(level) or not math.isfinite(level):
                raise ValueError(f"level must be a finite number (absolute, in the field's units); got {level!r}")
            if grow_threshold is not None or split_levels:
                raise ValueError("grow_threshold and split_levels are in sigma of the noise and go with threshold, "
                                 "not with level; drop them or give threshold instead of level")
        sc0 = list(DEFAULT_SCALES) if scales is None else scales
        # No threshold, no level, no filter: the seed level adapts to the noise's roughness each step.
        self.auto_threshold = threshold is None and level is None and not sc0
        if threshold is None:
            threshold = DEFAULT_THRESHOLD
        if not is_real(threshold) or not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"threshold must be a finite number > 0 (in sigma of the background noise); got {threshold!r}")
        sc = list(DEFAULT_SCALES) if scales is None else scales
        if (isinstance(sc, (str, bytes)) or not hasattr(sc, "__iter__")
                or not all(is_real(v) and math.isfinite(v) and v > 0 for v in sc)):
            raise ValueError(f"scales must be a list of Gaussian sigmas > 0 in cells ([] = no filter) or None; got {scales!r}")
        if noise not in ("robust", "moments"):
            raise ValueError(f"noise must be 'robust' (global median and lower-half spread) or 'moments' (mean and std); got {noise!r}")
        if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
            raise ValueError(f"min_area must be an integer >= 1 (cells); got {min_area!r}")
        if isinstance(connectivity, bool) or connectivity not in (1, 2, 3):
            raise ValueError(
                f"connectivity must be 1 (faces), 2 (faces+diagonals) or 3 (3D corners too); got {connectivity!r}"
            )
        if grow_threshold is None:
            grow_threshold = min(DEFAULT_GROW, threshold)
        if not is_real(grow_threshold) or not math.isfinite(grow_threshold) or not 0 < grow_threshold <= threshold:
            raise ValueError(
                f"grow_threshold must be a finite number in (0, threshold={threshold}] or None; got {grow_threshold!r}"
            )
        split = [v for v in DEFAULT_SPLIT_LEVELS if v > grow_threshold] if split_levels is None else split_levels
        if split_prominence_fraction is None:
            # The relative part belongs to the default rule: a split_prominence given explicitly
            # (a tuned set) means exactly that many sigma, as it always did.
            split_prominence_fraction = DEFAULT_SPLIT_PROMINENCE_FRACTION if split_prominence is None else 0.0
        if split_prominence is None:
            split_prominence = DEFAULT_SPLIT_PROMINENCE
        if (isinstance(split, (str, bytes)) or not hasattr(split, "__iter__")
                or not all(is_real(v) and math.isfinite(v) and v > grow_threshold for v in split)):
            raise ValueError(
                f"split_levels must be a list of finite numbers > grow_threshold={grow_threshold} or None; got {split_levels!r}"
            )
        if not is_real(split_prominence) or not math.isfinite(split_prominence) or split_prominence < 0:
            raise ValueError(f"split_prominence must be a finite number >= 0 (in sigma of the noise); got {split_prominence!r}")
        if not is_real(split_prominence_fraction) or not 0.0 <= split_prominence_fraction < 1.0:
            raise ValueError(f"split_prominence_fraction must be a number in [0, 1) (of the separating level); "
                             f"got {split_prominence_fraction!r}")
        if peak_fraction is not None and (not is_real(peak_fraction) or not 0.0 < peak_fraction < 1.0):
            raise ValueError(f"peak_fraction must be a number in (0, 1) or None; got {peak_fraction!r}")
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {backend!r}")
        if not isinstance(device, str) or not device:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
        self.level = None if level is None else float(level)
        self.scales = sorted(float(v) for v in sc) if self.level is None else []
        self.noise = noise
        if backend == "torch" and (self.scales or self.level is not None):
            raise ValueError("backend='torch' supports the pointwise detector only (threshold in sigma, "
                             "scales = []): for scales or level use backend = 'numpy'")
        self.threshold = float(threshold) if self.level is None else 0.0
        self.min_area = int(min_area)
        self.connectivity = int(connectivity)
        self.periodic = validate_periodic(periodic)
        self.grow_threshold = float(grow_threshold)
        self.split_levels = sorted(float(v) for v in split)
        if self.level is not None:
            self.grow_threshold, self.split_levels = 0.0, []
        self.levels: list[float] = self.levels_for(self.threshold)
        self.split_prominence = float(split_prominence)
        self.split_prominence_fraction = float(split_prominence_fraction)
        self.peak_fraction = None if peak_fraction is None else float(peak_fraction)
        self.backend = backend
        self.device = device

    def levels_for(self, seed: float) -> list[float]:
        """The labelled levels for a step whose seed level is ``seed``: grow, seed and split levels."""
        return sorted({self.grow_threshold, max(float(seed), self.grow_threshold), *self.split_levels})

    # ------------------------------------------------------------------ ranks
    def process_blocks(self, ctx: StepContext) -> dict[str, Any]:
        """Global stats (one collective), then label and reduce each local block.

        Checks that depend only on the step's metadata run before the
        ``allreduce`` so every rank fails alike instead of leaving the others
        waiting in the collective.
        """
        ndim = len(ctx.global_shape)
        if not 1 <= ndim <= MAX_NDIM:
            raise ValueError(f"blob_detection handles 1D to 3D fields; {ctx.variable!r} has shape {ctx.global_shape}")
        periodic_for(self.periodic, ndim)

        if self.backend == "torch":
            from intransit.analyzers import blobs_torch  # noqa: PLC0415 (optional dependency)

            return blobs_torch.process_blocks(self, ctx)
        arrays = [as_numpy(b.data) for b in ctx.blocks]
        structure = ndimage.generate_binary_structure(ndim, min(self.connectivity, ndim))
        if self.level is not None:
            # Absolute level: cells above it, weighted by how far (field units); no statistics needed.
            blocks = [self._reduce_block(b, a, a.astype(np.float64) - self.level, structure, self.levels)
                      for b, a in zip(ctx.blocks, arrays)]
            return {"mean": float("nan"), "std": float("nan"), "ndim": ndim, "blocks": blocks}
        if not self.scales:
            centre, spread, seed = self.noise_and_seed(arrays, ctx)
            zs = [(a.astype(np.float64, copy=False) - centre) / spread for a in arrays] if spread > 0 else []
            levels = self.levels_for(seed)
            blocks = [self._reduce_block(b, a, z, structure, levels) for b, a, z in zip(ctx.blocks, arrays, zs)]
            return {"mean": centre, "std": spread, "ndim": ndim, "blocks": blocks, "threshold": max(seed, self.grow_threshold),
                    "levels": levels}
        fields = [self._filtered(b, a, ctx) for b, a in zip(ctx.blocks, arrays)]
        n_scales = max(1, len(self.scales))
        zs: list[np.ndarray | None] = [None] * len(arrays)
        first = (0.0, 0.0)
        for si in range(n_scales):
            # Every rank runs the same collectives per scale, with or without blocks.
            layer = [f[si] for f in fields]
            if self.noise == "robust":
                centre, spread, _, _ = noise.robust_stats(layer, ctx.allreduce)
            else:
                local = np.zeros(3)
                for a in layer:
                    f = a.astype(np.float64, copy=False).ravel()
                    if not np.isfinite(f).all():
                        f = f[np.isfinite(f)]
                    local += (f.sum(), np.dot(f, f), f.size)
                centre, spread = moments_to_stats(ctx.allreduce(local))
            if si == 0:
                first = (centre, spread)
            if spread <= 0:
                continue
            for i, a in enumerate(layer):
                z = (a.astype(np.float64, copy=False) - centre) / spread
                zs[i] = z if zs[i] is None else np.fmax(zs[i], z)
        blocks = [self._reduce_block(b, a, z, structure, self.levels)
                  for b, a, z in zip(ctx.blocks, arrays, zs) if z is not None]
        return {"mean": first[0], "std": first[1], "ndim": ndim, "blocks": blocks}

    def noise_and_seed(self, arrays: Sequence[np.ndarray], ctx: StepContext) -> tuple[float, float, float]:
        """Global background ``(centre, spread)`` and this step's seed level, the same on every rank.

        With the adaptive seed (no ``threshold`` given) the finite differences
        along every axis are measured in the same collectives as the field
        (``noise.robust_stats_groups``): their spread over the field's gives
        the noise's roughness ``Lambda_k``, and ``noise.seed_level`` the level
        at which such noise makes ``noise.FALSE_PEAK_RATE`` false peaks per
        cell (4 sigma for noise correlated over 2 cells, 3 for turbulence
        smooth over tens of cells).
        """
        shape = tuple(int(v) for v in ctx.global_shape)
        groups: list[list[np.ndarray]] = [list(arrays)]
        axes = [k for k, n in enumerate(shape) if n > 1] if self.auto_threshold else []
        if axes:
            periodic = periodic_for(self.periodic, len(shape))
            sources = [self._diff_source(b, a, shape, periodic) for b, a in zip(ctx.blocks, arrays)]
            for k in axes:
                groups.append([noise.difference_samples(src, lo, hi, b.start, b.count, shape, periodic, k)
                               for b, (src, lo, hi) in zip(ctx.blocks, sources)])
        if self.noise == "robust":
            stats = [(m, s) for m, s, _, _ in noise.robust_stats_groups(groups, ctx.allreduce)]
        else:
            local = np.zeros(3 * len(groups))
            for gi, g in enumerate(groups):
                for a in g:
                    f = a.astype(np.float64, copy=False).ravel()
                    if not np.isfinite(f).all():
                        f = f[np.isfinite(f)]
                    local[3 * gi: 3 * gi + 3] += (f.sum(), np.dot(f, f), f.size)
            total = np.asarray(ctx.allreduce(local), dtype=np.float64)
            stats = [moments_to_stats(total[3 * gi: 3 * gi + 3]) for gi in range(len(groups))]
        centre, spread = stats[0]
        if not axes or spread <= 0:
            return centre, spread, self.threshold
        smooth = [0.0] * len(shape)
        for k, (_, s_k) in zip(axes, stats[1:]):
            smooth[k] = (s_k / spread) ** 2
        return centre, spread, noise.seed_level(smooth, shape, periodic)

    def _diff_source(self, block: Block, data: np.ndarray, shape: tuple[int, ...],
                     periodic: tuple[bool, ...]) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
        """The block with (at least) one neighbour cell on each high side, for the finite differences."""
        ndim = len(shape)
        if block.padded is not None:
            h_lo, h_hi = tuple(int(v) for v in block.halo_lo), tuple(int(v) for v in block.halo_hi)
            for k in range(ndim):
                end = int(block.start[k]) + int(block.count[k])
                if shape[k] > 1 and h_hi[k] < 1 and (periodic[k] or end < shape[k]):
                    raise ValueError(
                        f"blob_detection: block at {tuple(block.start)} has no halo on the high side of axis {k}; the "
                        f"adaptive seed level needs one cell there: the reader must honour halo_spec()")
            return as_numpy(block.padded), h_lo, h_hi
        if tuple(int(v) for v in block.count) == shape:
            wrap = [(0, 1 if periodic[k] and shape[k] > 1 else 0) for k in range(ndim)]
            return (np.pad(data, wrap, mode="wrap") if any(w for _, w in wrap) else data), (0,) * ndim, \
                tuple(w for _, w in wrap)
        raise ValueError(
            f"blob_detection's default (adaptive) seed level measures the noise's roughness from neighbouring cells "
            f"and needs each block's one-cell halo (Block.padded: a reader that supports read(..., halo=...)); this "
            f"block at {tuple(block.start)}+{tuple(block.count)} came without one. Use a halo-aware reader, one "
            f"block covering the domain, or give threshold (e.g. threshold = 4, in sigma of the noise) for a fixed "
            f"seed level")

    def halo_spec(self, ndim: int) -> tuple[tuple[int, ...], tuple[bool, ...]]:
        """The filter's reach (4 sigma of the largest scale) on every axis; periodic flags from ``periodic``."""
        periodic = periodic_for(self.periodic, ndim)
        if not self.scales:
            # The adaptive seed level differences each cell with its neighbour: one cell.
            return ((1 if self.auto_threshold else 0),) * ndim, periodic
        return (noise.radius(max(self.scales)),) * ndim, periodic

    def _filtered(self, block: Block, data: np.ndarray, ctx: StepContext) -> list[np.ndarray]:
        """The block's cells of the field smoothed at every scale, exactly as the whole field would be.

        Uses ``block.padded`` (the halo read); without one, only a block that
        covers the whole domain can be filtered exactly -- anything else is an
        error, never a silently decomposition-dependent result.  Non-finite
        cells are filtered as 0 and excluded from objects afterwards.
        """
        ndim = data.ndim
        periodic = periodic_for(self.periodic, ndim)
        need = noise.radius(max(self.scales))
        shape = tuple(int(v) for v in ctx.global_shape)
        if block.padded is not None:
            src = as_numpy(block.padded).astype(np.float64)
            h_lo, h_hi = tuple(block.halo_lo), tuple(block.halo_hi)
            for k in range(ndim):
                for side, h in (("low", h_lo[k]), ("high", h_hi[k])):
                    edge = block.start[k] if side == "low" else shape[k] - block.start[k] - block.count[k]
                    if h < need and (periodic[k] or h < edge):
                        raise ValueError(
                            f"blob_detection: block at {tuple(block.start)} has a halo of {h} cells on the {side} "
                            f"side of axis {k}, the filter (scales {self.scales}) needs {need}: the reader must "
                            f"honour halo_spec()")
        elif tuple(block.count) == shape:
            src, h_lo = data.astype(np.float64), (0,) * ndim
        else:
            raise ValueError(
                f"blob_detection with scales {self.scales} filters across block faces and needs each block's halo "
                f"(Block.padded, {need} cells: a reader that supports read(..., halo=...)); this block at "
                f"{tuple(block.start)}+{tuple(block.count)} came without one. Use a halo-aware reader, one block "
                f"covering the domain, or scales = [] for pointwise detection")
        bad = ~np.isfinite(src)
        if bad.any():
            src = np.where(bad, 0.0, src)
        own = tuple(slice(a, a + c) for a, c in zip(h_lo, block.count))
        out = []
        for sc in self.scales:
            f = noise.smooth(src, sc, periodic)[own]
            if bad.any():
                f = np.where(bad[own], np.nan, f)
            out.append(f)
        return out

    def _reduce_block(self, block: Block, data: np.ndarray, z: np.ndarray, structure: np.ndarray,
                      thresholds: Sequence[float]) -> dict[str, Any]:
        """Label one block at every level of ``z`` and reduce each label to additive features (vectorised)."""
        start = tuple(int(v) for v in block.start)
        count = tuple(int(v) for v in data.shape)
        # The cells above the lowest level, once: every higher level's cells are a subset of
        # them (in the same C order), so each level only labels and gathers, never rescans.
        with np.errstate(invalid="ignore"):
            mask0 = z > thresholds[0]  # NaN compares False
        if np.isinf(z).any():
            mask0 &= np.isfinite(z)
        idx0 = np.flatnonzero(mask0)
        w0 = z.ravel()[idx0]
        v0 = np.ascontiguousarray(data).ravel()[idx0]
        c0 = (np.stack(np.unravel_index(idx0, count), axis=1).astype(np.int64) + np.asarray(start, np.int64)
              if idx0.size else np.zeros((0, len(count)), np.int64))
        size = int(np.prod(count))
        levels = []
        prev = None
        for li, level in enumerate(thresholds):
            if li == 0:
                mask, idx, w, v, c = mask0, idx0, w0, v0, c0
            else:
                sel = w0 > level
                idx, w, v, c = idx0[sel], w0[sel], v0[sel], c0[sel]
                if idx.size == 0:
                    # Nothing above this level here (nor higher): the empty labelling, without the scans.
                    labels = np.zeros(count, np.int32)
                    feat = cell_features(labels, 0, idx, w, v, c)
                    feat["parent"] = parents(prev, feat["anchor"], start)
                    levels.append(feat)
                    prev = labels
                    continue
                flat = np.zeros(size, bool)
                flat[idx] = True
                mask = flat.reshape(count)
            labels, n = ndimage.label(mask, structure=structure)
            feat = cell_features(labels, n, labels.ravel()[idx], w, v, c)
            feat["parent"] = parents(prev, feat["anchor"], start)
            levels.append(feat)
            prev = labels
        return {"start": start, "count": count, "levels": levels}

    # ------------------------------------------------------------------ rank 0
    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        """Stitch each level across block faces and seams, build the level tree, pick objects, sort."""
        shape = tuple(int(v) for v in ctx.global_shape)
        ndim = len(shape)
        periodic = periodic_for(self.periodic, ndim)
        parts = [p for p in partials if p is not None]
        if not parts:
            return StepResult(scores={"n_objects": 0.0, "mean": float("nan"), "std": float("nan"),
                                      "threshold": float("nan")})
        mean, std = float(parts[0]["mean"]), float(parts[0]["std"])
        levels = list(parts[0].get("levels", self.levels))
        seed = float(parts[0].get("threshold", self.threshold))
        blocks = [b for p in parts for b in p["blocks"]]
        scores = {"mean": mean, "std": std, "threshold": seed if self.level is None else float("nan")}
        if not blocks or sum(len(b["levels"][0]["area"]) for b in blocks) == 0:
            return StepResult(events=[], scores={"n_objects": 0.0, **scores})

        stitched = []
        for li in range(len(levels)):
            lv = [{**b["levels"][li], "start": b["start"], "count": b["count"]} for b in blocks]
            stitched.append(self._stitch(lv, shape, periodic))
        # Object-level parent (level li-1 object) of every level-li object.
        for li in range(1, len(stitched)):
            s, up = stitched[li], stitched[li - 1]
            if s["m"] == 0:
                s["parent"] = np.zeros(0, np.int64)
                continue
            piece_parent = np.concatenate([
                up["bases"][j] + b["levels"][li]["parent"] for j, b in enumerate(blocks)
            ]).astype(np.int64)
            s["parent"] = np.empty(s["m"], np.int64)
            s["parent"][s["inv"]] = up["inv"][piece_parent]
        chosen = self._select(stitched, levels, seed)

        # One table of the chosen objects (rows in any order), then sorted by anchor (first cell in C order).
        n_ev = len(chosen)
        table = np.zeros((n_ev, len(EVENT_FIELDS)))
        col = {f: i for i, f in enumerate(EVENT_FIELDS)}
        anchors = np.zeros((n_ev, ndim), np.int64)
        by_level: dict[int, list[int]] = {}
        for r, (li, o) in enumerate(chosen):
            by_level.setdefault(li, []).append(r)
        for li, rows in by_level.items():
            g = stitched[li]
            objs = np.array([chosen[r][1] for r in rows], dtype=np.int64)
            rows_a = np.array(rows, dtype=np.int64)
            anchors[rows_a] = g["anchor"][objs]
            for k in range(ndim):
                table[rows_a, col[f"c{k}"]] = g["centroid"][objs, k]
                table[rows_a, col[f"lo{k}"]] = g["lo"][objs, k]
                table[rows_a, col[f"hi{k}"]] = g["hi"][objs, k]
            table[rows_a, col["area"]] = g["area"][objs]
            table[rows_a, col["peak"]] = g["peak"][objs]
            table[rows_a, col["peak_value"]] = g["value"][objs]
            table[rows_a, col["mass"]] = g["mass"][objs]
        for k in range(ndim, MAX_NDIM):
            table[:, col[f"hi{k}"]] = 1.0
        order = np.lexsort(tuple(anchors[:, k] for k in reversed(range(ndim)))) if n_ev else np.zeros(0, np.int64)
        table = table[order]
        table[:, col["object"]] = np.arange(n_ev)
        events = [dict(zip(EVENT_FIELDS, row)) for row in table.tolist()]
        logger.debug("step %s: %d blocks, %d levels -> %d objects", ctx.step, len(blocks), len(levels), len(events))
        return StepResult(events=events, scores={"n_objects": float(len(events)), **scores})

    def _select(self, stitched: list[dict[str, Any]], levels: Sequence[float], seed: float) -> list[tuple[int, int]]:
        """Objects as (level, index): per level-0 region, the largest regions holding exactly one seed branch."""
        n_lev = len(stitched)
        # A sub-region is its own branch when it is big enough, reaches the seed, and (prominence)
        # its peak stands split_prominence above the level where it separates from its siblings.
        frac = self.split_prominence_fraction
        sig = [(s["area"] >= self.min_area) & (s["peak"] > seed)
               & (s["peak"] >= levels[li] + (max(self.split_prominence, frac * levels[li]) if li else 0.0))
               for li, s in enumerate(stitched)]
        children: list[dict[int, list[int]]] = [{} for _ in range(n_lev)]
        for li in range(1, n_lev):
            for c in np.flatnonzero(sig[li]):
                children[li - 1].setdefault(int(stitched[li]["parent"][c]), []).append(int(c))

        def pick(li: int, o: int) -> list[tuple[int, int]]:
            kids = children[li].get(o, [])
            if not kids:
                return [(li, o)]
            if len(kids) >= 2:
                return [x for c in kids for x in pick(li + 1, c)]
            below = pick(li + 1, kids[0])
            return below if len(below) >= 2 else [(li, o)]

        def tighten(li: int, o: int) -> tuple[int, int]:
            # Up the single-branch chain to the lowest level >= peak_fraction x peak, so a blob
            # sitting on a broad background bump is reported by its own extent, not the bump's.
            want = self.peak_fraction * float(stitched[li]["peak"][o])
            while levels[li] < want and len(children[li].get(o, [])) == 1:
                li, o = li + 1, children[li][o][0]
            return li, o

        chosen = [x for o in np.flatnonzero(sig[0]) for x in pick(0, int(o))]
        return chosen if self.peak_fraction is None else [tighten(li, o) for li, o in chosen]

    def _stitch(
        self, blocks: list[dict[str, Any]], shape: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> dict[str, Any]:
        """Join one level's pieces across faces and seams; exact merged features per object."""
        ndim = len(shape)
        bases = np.cumsum([0] + [len(b["area"]) for b in blocks])
        total = int(bases[-1])
        if total == 0:
            return {"m": 0, "bases": bases, "inv": np.zeros(0, np.int64), "area": np.zeros(0), "peak": np.zeros(0)}
        roots = np.arange(total, dtype=np.int64)
        shifts = np.zeros((total, ndim), dtype=np.int64)
        winds = np.zeros((total, ndim), dtype=bool)
        pairs = self._face_pairs(blocks, bases, shape, periodic)
        if pairs:
            # Only pieces that touch another one need the union-find; the rest are their own objects.
            uf = ShiftUnionFind(total, ndim)
            for a, b, delta in pairs:
                uf.union(a, b, delta)
            touched = np.unique(np.array([(a, b) for a, b, _ in pairs], dtype=np.int64).ravel())
            for i in touched.tolist():
                r, sh = uf.find(i)
                roots[i] = r
                shifts[i] = sh
                winds[i] = uf.winds[r]

        def cat(key: str) -> np.ndarray:
            return np.concatenate([b[key] for b in blocks])

        area, mass, wcoord = cat("area"), cat("mass"), cat("wcoord")
        peak, peak_value, lo, hi, anchor = cat("peak"), cat("peak_value"), cat("lo"), cat("hi"), cat("anchor")
        L = np.array(shape, dtype=np.int64)
        offs = shifts * L  # cells to add to each piece to bring it into its root's frame

        _, inv = np.unique(roots, return_inverse=True)
        m = int(inv.max()) + 1
        g_area = np.bincount(inv, weights=area, minlength=m).astype(np.int64)
        g_mass = np.bincount(inv, weights=mass, minlength=m)
        g_peak = np.full(m, -np.inf)
        np.maximum.at(g_peak, inv, peak)
        g_value = np.full(m, -np.inf)
        np.maximum.at(g_value, inv, peak_value)
        g_lo = np.full((m, ndim), np.iinfo(np.int64).max)
        np.minimum.at(g_lo, inv, lo + offs)
        g_hi = np.full((m, ndim), np.iinfo(np.int64).min)
        np.maximum.at(g_hi, inv, hi + offs)
        g_winds = np.zeros((m, ndim), dtype=bool)
        g_winds[inv] = winds
        centroid = np.empty((m, ndim))
        for k in range(ndim):
            unwrapped = np.bincount(inv, weights=wcoord[:, k] + offs[:, k] * mass, minlength=m) / g_mass
            if periodic[k]:
                # Unwrapped frame: shifting by whole periods keeps the centroid exact
                # for objects across the seam; report it and the bbox start in [0, L).
                plain = np.bincount(inv, weights=wcoord[:, k], minlength=m) / g_mass
                centroid[:, k] = np.where(g_winds[:, k], plain, np.mod(unwrapped, L[k]))
                start = np.where(g_winds[:, k], 0, np.mod(g_lo[:, k], L[k]))
                g_hi[:, k] = np.where(g_winds[:, k], L[k], start + g_hi[:, k] - g_lo[:, k])
                g_lo[:, k] = start
            else:
                centroid[:, k] = unwrapped
        # Each object's first cell in C order: unique (objects are disjoint) and
        # independent of the decomposition, so it orders objects exactly.
        order = np.lexsort(tuple(anchor[:, k] for k in reversed(range(ndim))) + (inv,))
        first = order[np.r_[True, inv[order][1:] != inv[order][:-1]]]
        g_anchor = np.empty((m, ndim), np.int64)
        g_anchor[inv[first]] = anchor[first]
        return {"m": m, "bases": bases, "inv": inv, "area": g_area, "mass": g_mass, "peak": g_peak,
                "value": g_value, "lo": g_lo, "hi": g_hi, "centroid": centroid, "anchor": g_anchor}

    def _face_pairs(
        self, blocks: list[dict[str, Any]], bases: np.ndarray, shape: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> list[tuple[int, int, tuple[int, ...]]]:
        """Global piece pairs ``(a, b, shift of b)`` that touch across block faces.

        Two disjoint boxes whose cells touch are separated along some axis k
        with ``A.hi[k] == B.lo[k]``; so scanning every block's high face
        against the low faces that start where it ends finds every touching
        pair, including diagonal ones across block edges and corners (found
        by letting the transverse offset ``d`` be ±1 when the connectivity
        allows).  B may be an image shifted by a whole period on periodic
        axes (the seam), and may be A itself.
        """
        ndim = len(shape)
        conn = min(self.connectivity, ndim)
        lo_index: dict[tuple[int, int], list[int]] = {}
        for j, b in enumerate(blocks):
            for k in range(ndim):
                if b["faces"][k][0] is not None:
                    lo_index.setdefault((k, b["start"][k]), []).append(j)

        pairs: set[tuple[int, int, tuple[int, ...]]] = set()
        for i, a in enumerate(blocks):
            for k in range(ndim):
                face_a = a["faces"][k][1]
                if face_a is None:
                    continue
                end = a["start"][k] + a["count"][k]
                s_k = 0
                if periodic[k] and end == shape[k]:
                    end, s_k = 0, 1
                trans = [j for j in range(ndim) if j != k]
                # Transverse offsets the connectivity allows (a face neighbour plus up to conn - 1 diagonal hops).
                offsets = [d for d in itertools.product((-1, 0, 1), repeat=len(trans))
                           if 1 + sum(x != 0 for x in d) <= conn]
                for j in lo_index.get((k, end), ()):
                    b = blocks[j]
                    face_b = b["faces"][k][0]
                    shift_choices = [(-1, 0, 1) if periodic[t] else (0,) for t in trans]
                    for s_trans in itertools.product(*shift_choices):
                        b_lo = [b["start"][t] + s * shape[t] for t, s in zip(trans, s_trans)]
                        b_hi = [lo_t + b["count"][t] for lo_t, t in zip(b_lo, trans)]
                        a_lo = [a["start"][t] for t in trans]
                        a_hi = [a["start"][t] + a["count"][t] for t in trans]
                        if any(bl > ah or bh < al for bl, bh, al, ah in zip(b_lo, b_hi, a_lo, a_hi)):
                            continue  # not within one cell on some transverse axis
                        shift = [0] * ndim
                        shift[k] = s_k
                        for t, s in zip(trans, s_trans):
                            shift[t] = s
                        for d in offsets:
                            sa, sb = [], []
                            for al, ah, bl, bh, dt in zip(a_lo, a_hi, b_lo, b_hi, d):
                                t0, t1 = max(al, bl - dt), min(ah, bh - dt)
                                if t0 >= t1:
                                    break
                                sa.append(slice(t0 - al, t1 - al))
                                sb.append(slice(t0 + dt - bl, t1 + dt - bl))
                            else:
                                la = face_a[tuple(sa)]
                                lb = face_b[tuple(sb)]
                                both = (la > 0) & (lb > 0)
                                if not both.any():
                                    continue
                                # Distinct (label a, label b) pairs through one 1D unique of packed keys
                                # (much cheaper than np.unique(..., axis=0)).
                                span = int(lb.max()) + 1
                                keys = np.unique(la[both].astype(np.int64) * span + lb[both])
                                sh = tuple(shift)
                                for x, y in zip((keys // span).tolist(), (keys % span).tolist()):
                                    pairs.add((int(bases[i] + x - 1), int(bases[j] + y - 1), sh))
        return sorted(pairs)


register("blob_detection")(BlobDetector)
