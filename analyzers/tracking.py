"""Blob tracking: link detections from step to step into tracks with stable IDs.

Consumes the upstream detection result (``ctx.input``; events with ``c0``,
``c1`` and optionally ``c2``).  Each live track is predicted forward with a
constant velocity, measured *per writer step*, so that steps the writer
dropped (ADIOS2 step numbers that jump) scale the prediction instead of
breaking the track.  Predictions and detections are paired by
``scipy.optimize.linear_sum_assignment`` on the distance between them
(minimum image on periodic axes), gated at ``max_distance``: candidate
pairs come from a ``scipy.spatial.cKDTree`` (``boxsize`` on periodic axes)
and the assignment is solved per connected component of the gated pairs, so
a step costs O(n log n), not a Python call per track-detection pair (500
objects in 64^3 periodic: 421 -> 6 ms per step).  A track dies
after more than ``max_gap`` analysed steps (``ctx.index``) without a match;
steps the writer dropped are not counted as misses, since nobody looked.

All state is plain Python (lists, floats, ints), so ``state_dict`` is
picklable and a restored tracker continues with the same IDs.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from intransit.analyzers.base import Analyzer, StepContext, StepResult, register
from intransit.analyzers.blobs import MAX_NDIM, is_real, validate_periodic

logger = logging.getLogger(__name__)

EVENT_FIELDS: tuple[str, ...] = (
    "track_id", "object", "c0", "c1", "c2", "v0", "v1", "v2", "age", "born", "parent0", "parent1",
)

_TRACK_KEYS = ("track_id", "cid", "pos", "vel", "first_step", "last_step", "last_index", "n_obs", "occluder", "coast",
               "seen", "rej", "prev_pos", "prev_step", "parents", "confirm", "emitted")
_STATE_VERSION = 3

#: Cost (x max_distance) added to a pairing by the last position rather than the prediction.
FALLBACK_COST = 0.1
#: Cost (x max_distance / observations) that makes an older track win a tie for one detection.
AGE_COST = 0.05


class BlobTracker(Analyzer):
    """Tracks detected objects with constant-velocity prediction and optimal assignment.

    Confirmation: every new track is *tentative* until it has been seen in
    ``confirm_hits`` of the last ``confirm_window`` analysed steps and at least
    ``min_length`` times; only then does it get a catalog ID (``track_id``,
    dense: 1, 2, ... in order of confirmation) and rows.  A tentative track
    may miss at most ``confirm_window - confirm_hits`` steps (or ``max_gap``,
    if less); one that dies unconfirmed is counted (score
    ``tentative_dropped``, ``n_tentative_dropped()`` over the run), never
    written: a one-step false detection never reaches the catalog.  The
    children of a split or merge of a confirmed track are confirmed at birth.
    Rows start at the confirming step; the tentative steps are *not* written
    back.  Why: a catalog step's rows belong to that step (the catalog stamps
    each row with the step it is written in, and live consumers and steering
    read the newest step), so back-filled rows would land under the wrong
    step or rewrite steps already flushed.  The confirming row says what was
    held back: ``born`` = 1 and ``age`` = sightings including the tentative
    ones; ``summary()`` gives ``first_step`` = the first sighting.  The cost:
    ``max(confirm_hits, min_length) - 1`` rows per track (1 by default).
    ``confirm_hits = confirm_window = min_length = 1`` restores the old
    behaviour (every detection a catalog track from its first sighting).

    Motion model: a track starts at zero velocity.  ``velocity_smoothing``
    ``s`` blends each accepted velocity measurement ``m`` into the estimate as
    ``v = (1 - s) * m + s * v`` (the first measurement is taken whole).  A
    measurement is accepted only when the detection lies within
    ``velocity_gate`` (cells, default ``max_distance / 2``) of the
    prediction: one stray detection moves the track but not its velocity; a
    second miss of that gate in a row restarts the velocity from the
    measurement (a real turn, or a track born at rest starting to move).
    Each track is gated around its prediction and, when nothing lies there,
    around its last position (at a cost of ``FALLBACK_COST x max_distance``
    more), so a track whose prediction overshoots is picked up where it was
    seen.  When
    tracks compete for one detection the older one is preferred: a tentative
    track's cost carries ``tentative_cost x max_distance`` more, and every
    track ``AGE_COST x max_distance / observations``.  Duplicates: an
    unmatched track that was within ``duplicate_distance`` of a matched track
    at their common last sighting, and is within it of that track's detection
    now, follows the same blob; the two merge into the older (score
    ``n_duplicates``; ``None`` turns this off).

    Merges and splits (parent/child links), enabled by ``merge_distance`` /
    ``split_distance`` (cells; ``None`` = off):

    * A track that goes unseen while its last position or its prediction
      stays within ``merge_distance`` of the same other track's detection is
      *occluded* by it.  If the two separate again within ``max_gap`` steps
      (blobs crossing), both IDs simply continue.  If the occluded track dies
      occluded, the two coalesced: both tracks end and the occluder's
      detection of this step starts a new track whose ``parent0``/``parent1``
      are the two (a merge; score ``n_merges``).
    * A detection no track explains, within ``split_distance`` of a track's
      detection of this step, is a fragment of it: that track ends and its
      detection and the fragment start two new tracks, each with ``parent0``
      = the ended track (a split; score ``n_splits``).

    Event rows carry ``parent0``/``parent1`` (0 = none) on the first row of a
    track born from a merge or split, so the catalog holds the genealogy.

    Defaults (one set for every regime; chosen on the dev seeds 0-2 of the
    benchmark regimes, figures on held-out seeds in docs/tracking.md):
    ``spacing_gate`` 0.5 caps the link gate at half the median
    nearest-neighbour distance of the step's detections (Gray-Scott spots 7
    cells apart: IDF1 0.71 -> 0.79; no change where objects are sparse, where
    ``max_distance`` 10 holds), occlusion coasting within 4 cells (crossings:
    IDF1 0.69 -> 0.80) with its rows reported (``report_occluded``: crossing
    MOTA +0.11), confirmation 2 of 3 steps with ``min_length`` 2 unless the
    detection is significant (``confirm_peak`` 5 sigma: MOTA +0.03-0.05 in
    every regime), merges on (``merge_distance`` 4, ``merge_gap`` 1:
    merge-regime IDF1 0.77 -> 0.84), ``coast_speed`` 0.4 and ``relink_gate``
    0.75 (Gray-Scott).

    Significant detections (``confirm_peak``, in the detection's ``peak``
    units: the noise sigma of ``blob_detection``; ``None`` = off): a new
    track whose first detection peaks at >= ``confirm_peak`` is confirmed at
    once (catalog ID and row from its first sighting).  Confirmation is
    there to hold back noise detections, which peak near the detection
    threshold; one well above it is no noise, and holding back its first row
    cost every regime 1 row per track.  Detections without a ``peak`` key
    wait for ``confirm_hits`` as before.

    Relink (``relink_gate``, fraction of the median spacing; ``None`` = off):
    in crowded fields only (where ``relink_gate`` x spacing exceeds the first
    gate), a confirmed track left without a detection by the assignment may
    take a detection no track took within ``min(max_distance, relink_gate x
    spacing)`` of its prediction or last position, before that detection
    starts a new track: when a spot splits, its larger piece's centroid
    moves by about half the spacing, beyond the first gate.

    Passing or coalescing (``coast_speed``, cells per writer step): an
    unmatched track next to another's detection coasts (occlusion, below)
    only if it moves relative to that track at ``coast_speed`` or more: blobs
    that cross pass each other; spots that come to rest on one another have
    coalesced.  A resting one is not occluded, its misses count, and with
    ``merge_distance`` it is a merge once it has been unseen for more than
    ``merge_gap`` analysed steps (``None`` = ``max_gap``): both tracks end
    and the shared detection starts the child, without the ``max_occluded``
    steps of coasting a passing track gets.  ``coast_speed`` 0 coasts every
    occluded track (the previous behaviour).

    Occlusion coasting (``occlusion_distance``, cells; ``None`` = off): blobs
    that cross are often one detection for a few steps (two Gaussians closer
    than about 1.4 widths have a single maximum).  An unmatched track whose
    prediction lies within ``occlusion_distance`` of another track's
    detection is *occluded*: those steps do not count as misses (up to
    ``max_occluded`` of them), so it survives a crossing of any duration the
    geometry allows and re-acquires its blob by its prediction when the two
    separate; the track holding the shared detection keeps its velocity
    (a merged centroid moves with the pair's mean velocity).  With
    ``report_occluded`` an occluded track also emits a row at its predicted
    position with ``object = -1`` (no detection of its own).
    """

    event_fields = EVENT_FIELDS
    needs_input = True
    example_input = "blob_detection"
    score_names = ("n_active", "n_tentative", "n_births", "n_deaths", "tentative_dropped", "n_tracks_total",
                   "n_merges", "n_splits", "n_duplicates")

    def __init__(
        self,
        *,
        max_distance: float = 10.0,
        max_gap: int = 2,
        min_length: int = 2,
        periodic: list[bool] | None = None,
        velocity_smoothing: float = 0.5,
        merge_distance: float | None = 4.0,
        split_distance: float | None = None,
        occlusion_distance: float | None = 4.0,
        max_occluded: int = 10,
        report_occluded: bool = True,
        confirm_hits: int = 2,
        confirm_window: int = 3,
        velocity_gate: float | None = None,
        tentative_cost: float = 0.25,
        duplicate_distance: float | None = 2.0,
        spacing_gate: float | None = 0.5,
        confirm_peak: float | None = 5.0,
        relink_gate: float | None = 0.75,
        coast_speed: float = 0.4,
        merge_gap: int | None = 1,
    ) -> None:
        if not is_real(max_distance) or not math.isfinite(max_distance) or max_distance <= 0:
            raise ValueError(f"max_distance must be a finite number > 0 (cells); got {max_distance!r}")
        if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)) or max_gap < 0:
            raise ValueError(f"max_gap must be an integer >= 0 (analysed steps a track may go unseen); got {max_gap!r}")
        if isinstance(min_length, bool) or not isinstance(min_length, (int, np.integer)) or min_length < 1:
            raise ValueError(f"min_length must be an integer >= 1 (observations); got {min_length!r}")
        if not is_real(velocity_smoothing) or not 0.0 <= velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be a number in [0, 1]; got {velocity_smoothing!r}")
        if isinstance(max_occluded, bool) or not isinstance(max_occluded, (int, np.integer)) or max_occluded < 0:
            raise ValueError(f"max_occluded must be an integer >= 0 (steps); got {max_occluded!r}")
        if not isinstance(report_occluded, (bool, np.bool_)):
            raise ValueError(f"report_occluded must be true or false; got {report_occluded!r}")
        for name, v in (("confirm_hits", confirm_hits), ("confirm_window", confirm_window)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1 (analysed steps); got {v!r}")
        if confirm_hits > confirm_window:
            raise ValueError(f"confirm_hits ({confirm_hits}) must be <= confirm_window ({confirm_window}): "
                             "a track is confirmed when seen in confirm_hits of the last confirm_window steps")
        if velocity_gate is not None and (not is_real(velocity_gate) or not math.isfinite(velocity_gate)
                                          or velocity_gate <= 0):
            raise ValueError(f"velocity_gate must be a finite number > 0 (cells) or None (= max_distance / 2); "
                             f"got {velocity_gate!r}")
        if not is_real(tentative_cost) or not 0.0 <= tentative_cost <= 1.0:
            raise ValueError(f"tentative_cost must be a number in [0, 1] (fraction of max_distance); "
                             f"got {tentative_cost!r}")
        if duplicate_distance is not None and (not is_real(duplicate_distance)
                                               or not math.isfinite(duplicate_distance) or duplicate_distance <= 0):
            raise ValueError(f"duplicate_distance must be a finite number > 0 (cells) or None; got {duplicate_distance!r}")
        if spacing_gate is not None and (not is_real(spacing_gate) or not math.isfinite(spacing_gate)
                                         or spacing_gate <= 0):
            raise ValueError(f"spacing_gate must be a finite number > 0 (fraction of the median spacing of the "
                             f"step's detections) or None; got {spacing_gate!r}")
        if confirm_peak is not None and (not is_real(confirm_peak) or not math.isfinite(confirm_peak)):
            raise ValueError(f"confirm_peak must be a finite number (a detection's peak, in noise sigma) or None; "
                             f"got {confirm_peak!r}")
        if not is_real(coast_speed) or not math.isfinite(coast_speed) or coast_speed < 0:
            raise ValueError(f"coast_speed must be a finite number >= 0 (cells per writer step); got {coast_speed!r}")
        self.coast_speed = float(coast_speed)
        if merge_gap is not None and (isinstance(merge_gap, bool) or not isinstance(merge_gap, (int, np.integer))
                                      or merge_gap < 0):
            raise ValueError(f"merge_gap must be an integer >= 0 (analysed steps) or None (= max_gap); got {merge_gap!r}")
        self.merge_gap = None if merge_gap is None else int(merge_gap)
        if relink_gate is not None and (not is_real(relink_gate) or not math.isfinite(relink_gate) or relink_gate <= 0):
            raise ValueError(f"relink_gate must be a finite number > 0 (fraction of the median spacing) or None; "
                             f"got {relink_gate!r}")
        self.relink_gate = None if relink_gate is None else float(relink_gate)
        self.confirm_peak = None if confirm_peak is None else float(confirm_peak)
        self.spacing_gate = None if spacing_gate is None else float(spacing_gate)
        self.confirm_hits = int(confirm_hits)
        self.confirm_window = int(confirm_window)
        self.velocity_gate = None if velocity_gate is None else float(velocity_gate)
        self.tentative_cost = float(tentative_cost)
        self.duplicate_distance = None if duplicate_distance is None else float(duplicate_distance)
        self.occlusion_distance = None if occlusion_distance is None else float(occlusion_distance)
        self.max_occluded = int(max_occluded)
        self.report_occluded = bool(report_occluded)
        for name, v in (("merge_distance", merge_distance), ("split_distance", split_distance),
                        ("occlusion_distance", occlusion_distance)):
            if v is not None and (not is_real(v) or not math.isfinite(v) or v <= 0):
                raise ValueError(f"{name} must be a finite number > 0 (cells) or None; got {v!r}")
        self.merge_distance = None if merge_distance is None else float(merge_distance)
        self.split_distance = None if split_distance is None else float(split_distance)
        self.max_distance = float(max_distance)
        self.max_gap = int(max_gap)
        self.min_length = int(min_length)
        self.periodic = validate_periodic(periodic)
        self.velocity_smoothing = float(velocity_smoothing)
        self._reset()

    def _reset(self) -> None:
        self._next_id = 1  # internal IDs: every track, tentative or not
        self._next_cid = 1  # catalog IDs, given at confirmation (dense)
        self._dropped = 0  # tentative tracks that died unconfirmed
        self._live: list[dict[str, Any]] = []  # ordered by track_id
        self._ended: list[dict[str, Any]] = []  # summary rows of dead tracks
        self._pending: list[dict[str, Any]] = []  # born this step

    # ------------------------------------------------------------------ ranks
    def process_blocks(self, ctx: StepContext) -> None:
        """Nothing local: tracking works on the combined detections."""
        return None

    # ------------------------------------------------------------------ rank 0
    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        """Predict, assign, update; duplicates, births, merges, splits; deaths; confirmation; catalog rows."""
        if ctx.input is None:
            raise ValueError("tracking needs the detection result as its input (set the analyzer's 'input' key)")
        lengths = self._lengths(ctx.global_shape)
        dets = ctx.input.events
        det_pos = np.array([[e["c0"], e["c1"], e.get("c2", 0.0)] for e in dets], dtype=np.float64).reshape(-1, MAX_NDIM)
        period = np.where(lengths > 0, lengths, np.inf)

        n_t, n_d = len(self._live), len(dets)
        ndim = max(1, min(MAX_NDIM, len(ctx.global_shape)))
        matched: dict[int, int] = {}  # detection index -> live track index
        pred, last, vel_all = self._kinematics(ctx.step, lengths)
        spacing = self._spacing(det_pos, lengths, ndim)
        gate = self._gate_from(spacing, self.spacing_gate)
        if n_t and n_d:
            # Candidate pairs from a k-d tree (periodic boxes) around two centres per track, the
            # prediction, or the last position where the prediction gated nothing, then the optimal assignment per
            # connected component of the gated bipartite graph: O(n log n) instead of n_t x n_d.
            ti, di, dd = _pairs2(pred, last, det_pos, gate, FALLBACK_COST * gate,
                                 lengths, ndim)
            bias = gate * np.array(
                [(0.0 if t["cid"] else self.tentative_cost) + AGE_COST / t["n_obs"] for t in self._live])
            bound = gate * (1.0 + FALLBACK_COST + self.tentative_cost + AGE_COST)
            matched = _assign(n_t, n_d, ti, di, dd + bias[ti], bound)
            gate2 = self._gate_from(spacing, self.relink_gate)
            if self.relink_gate is not None and gate2 > gate and len(matched) < min(n_t, n_d):
                # Second pass, crowded fields only: a confirmed track left without a detection may take a free
                # one up to relink_gate x spacing away (a spot that split moves its centroid by about half the
                # spacing, beyond the first gate), before the free detection starts a new track.
                used = set(matched.values())
                ft = np.array([i for i, t in enumerate(self._live) if t["cid"] and i not in used], dtype=np.int64)
                fd = np.array([d for d in range(n_d) if d not in matched], dtype=np.int64)
                if len(ft) and len(fd):
                    t2, d2, c2 = _pairs2(pred[ft], last[ft], det_pos[fd], gate2, FALLBACK_COST * gate2, lengths, ndim)
                    m2 = _assign(len(ft), len(fd), t2, d2, c2 + bias[ft][t2],
                                 gate2 * (1.0 + FALLBACK_COST + AGE_COST))
                    for dj, tj in m2.items():
                        matched[int(fd[dj])] = int(ft[tj])

        # Occlusion: an unmatched track predicted next to another track's detection.
        occluded: dict[int, int] = {}  # live track index -> detection index it hides behind
        resting: dict[int, int] = {}  # like occluded, but not moving relative to it (coast_speed): coalescing
        if self.occlusion_distance is not None and matched:
            md = np.array(sorted(matched))
            seen = set(matched.values())
            free = np.array([ti for ti in range(n_t) if ti not in seen], dtype=np.int64)
            if len(free):
                dd, j = _nearest(pred[free], det_pos[md], self.occlusion_distance, lengths, ndim)
                near_ = dd <= self.occlusion_distance
                free, host_det = free[near_], md[j[near_]]
                slow = np.zeros(len(free), dtype=bool)
                if self.coast_speed > 0 and len(free):
                    # Not passing the other (relative speed < coast_speed): merged into it, or lost.
                    host = np.array([matched[d] for d in host_det.tolist()], dtype=np.int64)
                    slow = np.sqrt(((vel_all[free] - vel_all[host]) ** 2).sum(axis=1)) < self.coast_speed
                for ti, d, r in zip(free.tolist(), host_det.tolist(), slow.tolist()):
                    (resting if r else occluded)[ti] = int(d)
        shared = set(occluded.values()) | set(resting.values())  # hosts keep their velocity

        births = splits = merges = duplicates = 0
        owner: dict[int, int] = {}  # live track index -> detection index, this step
        new_dets = []
        det_wrapped = _wrap(det_pos, lengths)
        self._update_all(matched, det_wrapped, ctx, lengths, shared, pred, gate)
        for d in range(n_d):
            if d in matched:
                owner[matched[d]] = d
            else:
                new_dets.append(d)
        det_track: dict[int, dict[str, Any]] = {d: self._live[i] for d, i in matched.items()}
        ended_ids: set[int] = set()

        # Duplicates: an unmatched track that was where a matched track was at their common last
        # sighting, and is still within duplicate_distance of its detection, follows the same blob.
        # The older of the two (confirmed first, then lower ID) keeps the detection; the other ends.
        if self.duplicate_distance is not None and owner and n_t > len(owner):
            own = list(owner.items())
            free = np.array([ti for ti in range(n_t) if ti not in owner], dtype=np.int64)
            own_det = np.array([d for _, d in own], dtype=np.int64)
            dl, jl = _nearest(last[free], det_pos[own_det], self.duplicate_distance, lengths, ndim)
            for ui, du, j in zip(free.tolist(), dl.tolist(), jl.tolist()):
                if not math.isfinite(du):
                    continue
                mi, d = own[j]
                u, m = self._live[ui], self._live[mi]
                if m["track_id"] in ended_ids or u["track_id"] in ended_ids or owner.get(mi) != d:
                    continue
                if m["prev_step"] != u["last_step"]:
                    continue
                gap = float(np.sqrt((_min_image(np.asarray(u["pos"]) - np.asarray(m["prev_pos"]), period) ** 2).sum()))
                if gap > self.duplicate_distance:
                    continue
                duplicates += 1
                if _older(u, m):  # the older track takes over the detection and the update
                    for k in ("pos", "vel", "last_step", "last_index", "prev_pos", "prev_step", "rej"):
                        u[k] = copy.copy(m[k])
                    u["n_obs"] += 1
                    u["coast"] = 0
                    u["occluder"] = 0
                    u["seen"] = (u["seen"] + [int(ctx.index)])[-self.confirm_window:]
                    del owner[mi]
                    owner[ui] = d
                    det_track[d] = u
                    ended_ids.add(m["track_id"])
                else:
                    ended_ids.add(u["track_id"])
        born_with: set[int] = set()  # detections that start a track this step

        # Splits: an unexplained detection next to a detection of a live track.
        split_cand: dict[int, list[tuple[int, int]]] = {}
        if self.split_distance is not None and owner and new_dets:
            own = sorted(owner.items(), key=lambda kv: kv[1])
            own_det = np.array([d for _, d in own], dtype=np.int64)
            ni, oi, od = _pairs(det_pos[np.array(new_dets)], det_pos[own_det], self.split_distance, lengths, ndim)
            order = np.lexsort((oi, od, ni))  # per new detection, nearest owner first
            for a, b in zip(ni[order].tolist(), oi[order].tolist()):
                split_cand.setdefault(new_dets[a], []).append(own[b])
        for d in new_dets:
            parent_det = None
            for ti, pd in split_cand.get(d, ()):
                if self._live[ti]["track_id"] not in ended_ids:
                    parent_det = (ti, pd)
                    break
            if parent_det is None:
                det_track[d] = self._birth(det_wrapped[d], ctx)
                if self.confirm_peak is not None and float(dets[d].get("peak", 0.0)) >= self.confirm_peak:
                    det_track[d]["confirm"] = True  # significant enough to be its own confirmation
                born_with.add(d)
                births += 1
                continue
            ti, pd = parent_det
            parent = self._live[ti]
            ended_ids.add(parent["track_id"])
            splits += 1
            for dd in (pd, d):
                child = self._birth(det_wrapped[dd], ctx, parents=(parent,))
                if dd == pd:
                    child["vel"] = list(parent["vel"])
                det_track[dd] = child
                born_with.add(dd)
                births += 1

        # Occlusion bookkeeping and merges.
        alive = []
        occluders = {self._live[ti]["track_id"]: (ti, d) for ti, d in owner.items()}
        near: dict[int, tuple[float, int]] = {}  # unmatched track index -> (distance, nearest occluder's id)
        if self.merge_distance is not None and occluders:
            occ_items = list(occluders.items())
            occ_pos = det_pos[np.array([d for _, (_, d) in occ_items], dtype=np.int64)]
            free = np.array([ti for ti, t in enumerate(self._live)
                             if ti not in owner and t["track_id"] not in ended_ids], dtype=np.int64)
            if len(free):
                dp, jp = _nearest(pred[free], occ_pos, self.merge_distance, lengths, ndim)
                dl, jl = _nearest(last[free], occ_pos, self.merge_distance, lengths, ndim)
                use_p = dp <= dl
                dk, jk = np.where(use_p, dp, dl), np.where(use_p, jp, jl)
                ok = np.isfinite(dk)
                occ_ids = [tid for tid, _ in occ_items]
                for ti, dist, j in zip(free[ok].tolist(), dk[ok].tolist(), jk[ok].tolist()):
                    near[ti] = (dist, occ_ids[j])
        for ti, t in enumerate(list(self._live)):
            if t["track_id"] in ended_ids:
                continue
            if ti in owner:
                t["occluder"] = 0
                continue
            if self.merge_distance is not None and occluders:
                best = near.get(ti, (math.inf, 0))
                if best[0] <= self.merge_distance and t["occluder"] in (0, -1, best[1]) and t["occluder"] != -1:
                    t["occluder"] = best[1]
                else:
                    t["occluder"] = -1  # seen alone, or next to different tracks: not a clean merge
            else:
                t["occluder"] = -1
        # A tentative track may miss only as many steps as still let it reach confirm_hits in the window.
        tentative_gap = min(self.max_gap, self.confirm_window - self.confirm_hits)
        for ti, t in enumerate(self._live):
            if t["track_id"] in ended_ids:
                continue
            gap = self.max_gap if t["cid"] else tentative_gap
            if self.merge_gap is not None and t.get("occluder", -1) > 0 and ti in resting:
                gap = min(gap, self.merge_gap)  # unseen next to one track and not passing it: coalesced
            if t["track_id"] not in occluders and ctx.index - t["last_index"] - t.get("coast", 0) > gap:
                occ = t.get("occluder", -1)
                if occ > 0 and occ in occluders and occ not in ended_ids:
                    ti, d = occluders[occ]
                    host = self._live[ti]
                    ended_ids.add(host["track_id"])
                    child = self._birth(det_wrapped[d], ctx, parents=(host, t))
                    child["vel"] = list(host["vel"])
                    det_track[d] = child
                    born_with.add(d)
                    births += 1
                    merges += 1
                ended_ids.add(t["track_id"])
        coasting = []
        for ti, t in enumerate(self._live):
            if ti in occluded and ti not in owner and t["track_id"] not in ended_ids:  # owner: took a duplicate's
                if t.get("coast", 0) < self.max_occluded:
                    t["coast"] = t.get("coast", 0) + 1
                coasting.append((t, pred[ti]))
        deaths = dropped = 0
        for t in self._live:
            if t["track_id"] in ended_ids:
                if t["cid"]:
                    deaths += 1
                    self._ended.append(self._row(t))
                else:
                    dropped += 1
            else:
                alive.append(t)
        self._dropped += dropped
        self._live = alive + self._pending
        self._pending = []
        self._live.sort(key=lambda t: t["track_id"])

        # Confirmation: seen in confirm_hits of the last confirm_window analysed steps, and at least
        # min_length times; children of a confirmed track were confirmed at birth.  IDs in this order.
        confirmed_now = 0
        for t in self._live:
            if t["cid"] == 0 and (t["confirm"] or (
                    t["n_obs"] >= self.min_length and t["last_index"] == ctx.index
                    and sum(i > ctx.index - self.confirm_window for i in t["seen"]) >= self.confirm_hits)):
                t["cid"] = self._next_cid
                self._next_cid += 1
                confirmed_now += 1

        events = []
        for d in range(n_d):
            t = det_track[d]
            if not t["cid"] or t["track_id"] in ended_ids:
                continue
            first = not t["emitted"]
            p0, p1 = t["parents"] if first else (0, 0)
            t["emitted"] = True
            events.append({
                "track_id": float(t["cid"]), "object": float(dets[d].get("object", d)),
                "c0": t["pos"][0], "c1": t["pos"][1], "c2": t["pos"][2],
                "v0": t["vel"][0], "v1": t["vel"][1], "v2": t["vel"][2],
                "age": float(t["n_obs"]), "born": 1.0 if first else 0.0,
                "parent0": float(p0), "parent1": float(p1),
            })
        if self.report_occluded:
            for t, p in coasting:
                if t["track_id"] in ended_ids or not t["cid"]:
                    continue
                p = _wrap(p, lengths)
                events.append({
                    "track_id": float(t["cid"]), "object": -1.0,
                    "c0": float(p[0]), "c1": float(p[1]), "c2": float(p[2]),
                    "v0": t["vel"][0], "v1": t["vel"][1], "v2": t["vel"][2],
                    "age": float(t["n_obs"]), "born": 0.0, "parent0": 0.0, "parent1": 0.0,
                })
        logger.debug(
            "step %s: %d detections, %d links, %d new tentative, %d confirmed, %d deaths, %d dropped, "
            "%d merges, %d splits, %d duplicates",
            ctx.step, n_d, len(matched), births, confirmed_now, deaths, dropped, merges, splits, duplicates,
        )
        n_conf = sum(1 for t in self._live if t["cid"])
        return StepResult(events=events, scores={
            "n_active": float(n_conf), "n_tentative": float(len(self._live) - n_conf),
            "n_births": float(confirmed_now), "n_deaths": float(deaths), "tentative_dropped": float(dropped),
            "n_tracks_total": float(self._next_cid - 1),
            "n_merges": float(merges), "n_splits": float(splits), "n_duplicates": float(duplicates),
        })

    def _birth(self, pos: np.ndarray, ctx: StepContext, parents: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """A new (tentative) track at ``pos``; it joins the live list at the end of the step.

        The child of a split or merge is confirmed at once when any parent is (its
        parents' catalog IDs go on its first row; a tentative parent has none).
        """
        cids = [int(p["cid"]) for p in parents] + [0, 0]
        t = {
            "track_id": self._next_id, "cid": 0, "pos": pos.tolist(), "vel": [0.0] * MAX_NDIM,
            "first_step": int(ctx.step), "last_step": int(ctx.step), "last_index": int(ctx.index), "n_obs": 1,
            "occluder": 0, "coast": 0, "seen": [int(ctx.index)], "rej": 0,
            "prev_pos": pos.tolist(), "prev_step": -1, "parents": cids[:2],
            "confirm": any(cids), "emitted": False,
        }
        self._next_id += 1
        self._pending.append(t)
        return t

    def _gate(self, det_pos: np.ndarray, lengths: np.ndarray, ndim: int) -> float:
        """This step's link gate: ``max_distance``, or less where the detections are crowded.

        With ``spacing_gate`` = f the gate is ``min(max_distance, f x median
        nearest-neighbour distance of this step's detections)``: a track may not
        jump to where a neighbouring object sits, whatever the units of the grid.
        """
        return self._gate_from(self._spacing(det_pos, lengths, ndim), self.spacing_gate)

    def _gate_from(self, spacing: float, factor: float | None) -> float:
        """``min(max_distance, factor x spacing)`` (``max_distance`` when ``factor`` is None)."""
        if factor is None or not math.isfinite(spacing):
            return self.max_distance
        return min(self.max_distance, max(factor * spacing, 1e-6))

    def _spacing(self, det_pos: np.ndarray, lengths: np.ndarray, ndim: int) -> float:
        """Median nearest-neighbour distance of this step's detections (inf: fewer than 3, or no spacing gate)."""
        factors = [f for f in (self.spacing_gate, self.relink_gate) if f is not None]
        if not factors or len(det_pos) < 3:
            return math.inf
        # An open axis's box is longer than the span by 2r + 1: a wrapped neighbour is farther than
        # r = max_distance / f, so it can only stand for a spacing whose gate is max_distance anyway.
        kd, _, box = _kd_coords(det_pos, det_pos[:0], self.max_distance / min(factors), lengths, ndim)
        d, _ = cKDTree(kd, boxsize=box).query(kd, k=2)
        return float(np.median(d[:, 1]))

    def _lengths(self, shape: Sequence[int]) -> np.ndarray:
        """Domain length per coordinate on periodic axes, 0 elsewhere."""
        lengths = np.zeros(MAX_NDIM)
        for k, p in enumerate(self.periodic or []):
            if p:
                if k >= len(shape):
                    raise ValueError(f"periodic marks axis {k} but the field has shape {tuple(shape)}")
                lengths[k] = float(shape[k])
        return lengths

    def _predict(self, t: Mapping[str, Any], step: int, lengths: np.ndarray) -> np.ndarray:
        """Constant velocity per writer step, scaled by the writer steps since the last sighting."""
        return _wrap(np.asarray(t["pos"]) + np.asarray(t["vel"]) * (step - t["last_step"]), lengths)

    def _predict_all(self, step: int, lengths: np.ndarray) -> np.ndarray:
        """``_predict`` for every live track at once (n x 3)."""
        return self._kinematics(step, lengths)[0]

    def _kinematics(self, step: int, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predictions, last positions, velocities) of every live track (each n x 3), in one pass."""
        if not self._live:
            e = np.zeros((0, MAX_NDIM))
            return e, e, e
        pos = np.array([t["pos"] for t in self._live], dtype=np.float64)
        vel = np.array([t["vel"] for t in self._live], dtype=np.float64)
        dt = np.array([step - t["last_step"] for t in self._live], dtype=np.float64)
        return _wrap(pos + vel * dt[:, None], lengths), pos, vel

    def _update_all(self, matched: Mapping[int, int], det_wrapped: np.ndarray, ctx: StepContext,
                    lengths: np.ndarray, shared: set[int], pred: np.ndarray, gate: float) -> None:
        """Every matched (detection, track) pair: position, and velocity gated on the innovation.

        The velocity blends in the measured displacement only when the detection lies within
        ``velocity_gate`` (x sqrt of the writer steps since the last sighting) of the prediction:
        one stray detection (a fragment, a neighbour) moves the track but not its velocity.  A
        second miss of the gate in a row means the model is wrong (a turn, or the first motion of
        a track born at rest): the velocity restarts from that measurement.
        """
        if not matched:
            return
        ds = np.fromiter(matched.keys(), dtype=np.int64, count=len(matched))
        tis = np.array([matched[d] for d in ds.tolist()], dtype=np.int64)
        tracks = [self._live[i] for i in tis.tolist()]
        old = np.array([t["pos"] for t in tracks], dtype=np.float64)
        vel = np.array([t["vel"] for t in tracks], dtype=np.float64)
        dt = np.array([ctx.step - t["last_step"] for t in tracks], dtype=np.float64)
        s = np.array([self.velocity_smoothing if t["n_obs"] > 1 else 0.0 for t in tracks])
        rej = np.array([t["rej"] for t in tracks], dtype=np.int64)
        period = np.where(lengths > 0, lengths, np.inf)
        new = det_wrapped[ds]
        step_dt = np.where(dt > 0, dt, 1.0)
        measured = _min_image(new - old, period) / step_dt[:, None]
        innov = np.sqrt((_min_image(new - pred[tis], period) ** 2).sum(axis=1))
        vgate = (self.velocity_gate if self.velocity_gate is not None else 0.5 * gate) * np.sqrt(step_dt)
        keep = (dt <= 0) | np.isin(ds, np.fromiter(shared, dtype=np.int64, count=len(shared)))
        outlier = ~keep & (innov > vgate)
        restart = outlier & (rej >= 1)
        blend = (1.0 - s[:, None]) * measured + s[:, None] * vel
        vel = np.where((keep | (outlier & ~restart))[:, None], vel, np.where(restart[:, None], measured, blend))
        rej = np.where(keep, rej, np.where(outlier & ~restart, rej + 1, 0))
        for t, p, v, r in zip(tracks, new.tolist(), vel.tolist(), rej.tolist()):
            t["prev_pos"] = t["pos"]
            t["prev_step"] = t["last_step"]
            t["pos"] = p
            t["vel"] = v
            t["rej"] = int(r)
            t["last_step"] = int(ctx.step)
            t["last_index"] = int(ctx.index)
            t["n_obs"] += 1
            t["coast"] = 0
            t["seen"] = (t["seen"] + [int(ctx.index)])[-self.confirm_window:]

    def _row(self, t: Mapping[str, Any]) -> dict[str, Any]:
        """A confirmed track's summary row, by its catalog ID (``first_step``: its first sighting)."""
        return {"track_id": t["cid"], "first_step": t["first_step"], "last_step": t["last_step"], "n_obs": t["n_obs"]}

    # ------------------------------------------------------------------ state
    def summary(self) -> list[dict[str, Any]]:
        """Every confirmed track (dead and alive), by catalog ID: for the end-of-run track table."""
        rows = [dict(r) for r in self._ended] + [self._row(t) for t in self._live if t["cid"]]
        return sorted(rows, key=lambda r: r["track_id"])

    def n_tentative_dropped(self) -> int:
        """Tentative tracks that died before confirmation over the whole run (never in the catalog)."""
        return self._dropped

    def state_dict(self) -> dict[str, Any]:
        """Live tracks (tentative ones too), ended tracks and the next IDs, as plain Python values."""
        return {
            "version": _STATE_VERSION,
            "next_id": self._next_id,
            "next_cid": self._next_cid,
            "dropped": self._dropped,
            "live": [{k: (list(t[k]) if isinstance(t[k], list) else t[k]) for k in _TRACK_KEYS} for t in self._live],
            "ended": [dict(r) for r in self._ended],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore exactly what ``state_dict`` returned, so IDs and predictions continue.

        Versions 1 and 2 (before confirmation) had every track in the catalog: they load
        as confirmed tracks whose catalog ID is their ID.
        """
        version = state.get("version")
        if version not in (1, 2, _STATE_VERSION):  # 1: before merges/splits; 2: before confirmation
            raise ValueError(
                f"tracking state has version {version!r}; this tracker reads versions 1 to {_STATE_VERSION}"
            )
        self._reset()
        self._next_id = int(state["next_id"])
        self._next_cid = int(state.get("next_cid", self._next_id))
        self._dropped = int(state.get("dropped", 0))
        self._live = []
        for t in state["live"]:
            tid = int(t["track_id"])
            pos = [float(v) for v in t["pos"]]
            self._live.append({
                "track_id": tid, "cid": int(t.get("cid", tid)), "pos": pos, "vel": [float(v) for v in t["vel"]],
                "first_step": int(t["first_step"]), "last_step": int(t["last_step"]),
                "last_index": int(t["last_index"]), "n_obs": int(t["n_obs"]),
                "occluder": int(t.get("occluder", 0)), "coast": int(t.get("coast", 0)),
                "seen": [int(i) for i in t.get("seen", [t["last_index"]])], "rej": int(t.get("rej", 0)),
                "prev_pos": [float(v) for v in t.get("prev_pos", pos)], "prev_step": int(t.get("prev_step", -1)),
                "parents": [int(p) for p in t.get("parents", [0, 0])], "confirm": bool(t.get("confirm", False)),
                "emitted": bool(t.get("emitted", version != _STATE_VERSION)),
            })
        self._ended = [dict(r) for r in state["ended"]]


def _older(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether track ``a`` is the older of two: confirmed before ``b`` (or ``b`` tentative), else born first."""
    if a["cid"] and b["cid"]:
        return a["cid"] < b["cid"]
    if a["cid"] or b["cid"]:
        return bool(a["cid"])
    return a["track_id"] < b["track_id"]


def _pairs2(pred: np.ndarray, last: np.ndarray, b: np.ndarray, r: float, fallback_cost: float,
            lengths: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gated pairs around two centres per track: the prediction, then the last position.

    A pair within ``r`` of the prediction is a candidate at its distance; a moving track
    with no detection there gets the pairs within ``r`` of its last position, at that
    distance plus ``fallback_cost``: a track whose prediction overshot (a stop, a turn) is
    still picked up where it was seen.  One row per (track, detection).
    """
    t1, d1, c1 = _pairs(pred, b, r, lengths, ndim)
    # The last position is tried for moving tracks whose prediction gated nothing: trying it for
    # every track too doubled the candidate pairs and the assignment's components (500 objects
    # in 64^3: 30 -> 80 ms per step) for links the prediction already had.
    missed = np.ones(len(pred), dtype=bool)
    missed[t1] = False
    moving = np.flatnonzero(missed & np.any(pred[:, :ndim] != last[:, :ndim], axis=1))
    if not len(moving):
        return t1, d1, c1
    t2, d2, c2 = _pairs(last[moving], b, r, lengths, ndim)
    t2 = moving[t2]
    ti, di, cost = np.r_[t1, t2], np.r_[d1, d2], np.r_[c1, c2 + fallback_cost]
    if not len(ti):
        return ti, di, cost
    order = np.lexsort((cost, di, ti))
    ti, di, cost = ti[order], di[order], cost[order]
    first = np.r_[True, (ti[1:] != ti[:-1]) | (di[1:] != di[:-1])]
    return ti[first], di[first], cost[first]


def _kd_coords(a: np.ndarray, b: np.ndarray, r: float, lengths: np.ndarray,
               ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Both point sets in k-d tree coordinates, and the tree's ``boxsize`` (None: no periodic axis).

    ``cKDTree`` wraps every axis when given a box, so an open axis gets a box
    longer than the points' span plus twice the search radius: nothing there
    is ever nearer through the wrap than ``r``.  Periodic axes are wrapped
    into ``[0, L)`` (a float ``mod`` can return ``L`` itself; folded back).
    """
    a, b = a[:, :ndim].astype(np.float64, copy=True), b[:, :ndim].astype(np.float64, copy=True)
    lens = lengths[:ndim]
    if not (lens > 0).any():
        return a, b, None
    box = np.empty(ndim)
    for k in range(ndim):
        if lens[k] > 0:
            for x in (a, b):
                x[:, k] = np.mod(x[:, k], lens[k])
                x[x[:, k] >= lens[k], k] = 0.0
            box[k] = lens[k]
        else:
            lo = min(a[:, k].min(initial=np.inf), b[:, k].min(initial=np.inf))
            hi = max(a[:, k].max(initial=-np.inf), b[:, k].max(initial=-np.inf))
            a[:, k] -= lo
            b[:, k] -= lo
            box[k] = (hi - lo) + 2.0 * r + 1.0
    return a, b, box


def _pairs(a: np.ndarray, b: np.ndarray, r: float, lengths: np.ndarray,
           ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i in ``a``, j in ``b``) within ``r`` (minimum image on periodic axes), with its distance."""
    if not len(a) or not len(b):
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    ka, kb, box = _kd_coords(a, b, r, lengths, ndim)
    sp = cKDTree(ka, boxsize=box).sparse_distance_matrix(cKDTree(kb, boxsize=box), r, output_type="ndarray")
    return sp["i"].astype(np.int64), sp["j"].astype(np.int64), sp["v"].astype(np.float64)


def _nearest(q: np.ndarray, ref: np.ndarray, r: float, lengths: np.ndarray,
             ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query point: distance to the nearest ``ref`` point within ``r`` (inf if none) and its index."""
    kq, kr, box = _kd_coords(q, ref, r, lengths, ndim)
    d, j = cKDTree(kr, boxsize=box).query(kq, k=1, distance_upper_bound=r * (1 + 1e-12))
    return np.asarray(d, dtype=np.float64), np.minimum(np.asarray(j, dtype=np.int64), len(ref) - 1)


def _assign(n_t: int, n_d: int, ti: np.ndarray, di: np.ndarray, cost: np.ndarray, gate: float) -> dict[int, int]:
    """Optimal gated assignment from sparse candidate pairs: detection index -> track index.

    Same result as one Big-M ``linear_sum_assignment`` on the full matrix (most
    links first, then least total distance): that problem separates over the
    connected components of the bipartite graph of gated pairs, and most
    components are one track and one detection.
    """
    out: dict[int, int] = {}
    if not len(ti):
        return out
    g = coo_matrix((np.ones(len(ti)), (ti, n_t + di)), shape=(n_t + n_d, n_t + n_d))
    _, comp = connected_components(g, directed=False)
    pc = comp[ti]
    order = np.argsort(pc, kind="stable")
    pc, ti, di, cost = pc[order], ti[order], di[order], cost[order]
    starts = np.flatnonzero(np.r_[True, pc[1:] != pc[:-1]])
    ends = np.r_[starts[1:], len(pc)]
    single = ends - starts == 1
    for k in starts[single].tolist():
        out[int(di[k])] = int(ti[k])
    for a, b in zip(starts[~single].tolist(), ends[~single].tolist()):
        rows, r_inv = np.unique(ti[a:b], return_inverse=True)
        cols, c_inv = np.unique(di[a:b], return_inverse=True)
        big = gate * (min(len(rows), len(cols)) + 1) + 1.0
        m = np.full((len(rows), len(cols)), big)
        m[r_inv, c_inv] = cost[a:b]
        rr, cc = linear_sum_assignment(m)
        for x, y in zip(rr.tolist(), cc.tolist()):
            if m[x, y] < big:
                out[int(cols[y])] = int(rows[x])
    return out


def _min_image(d: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Shortest displacement on a torus (``period`` is inf on open axes)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(period), d - period * np.round(d / period), d)


def _wrap(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions into ``[0, L)`` on periodic axes (``lengths`` 0 on open ones)."""
    return np.where(lengths > 0, np.mod(x, np.where(lengths > 0, lengths, 1.0)), x)


register("tracking")(BlobTracker)
