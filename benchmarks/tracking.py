#!/usr/bin/env python3
"""Blob detection and tracking against ground truth and against the field's baselines, in one run.

    python benchmarks/tracking.py --regime crossing [--size 256] [--frames 60] [--quick]

Movies come from ``examples/regimes.py`` (Gaussian blobs on known
trajectories over hw2d turbulence; sparse / crossing / merge / 3d).  Every
method sees the same frames, one after the other on one CPU thread.

Metrics (truth from the blob parameters):

* ``det_f1`` — per frame, truth centres and detected centroids paired
  one-to-one (Hungarian, minimum image on periodic axes) within a gate of one
  blob width (its e-fold radius); F1 over all frames.
* ``ap50`` — AP at 50 % IoMean (Tokam2D challenge: overlap area / mean of the
  two box areas), detections ranked by mass (ours, trackpy) / area (xblobs, overlap);
  truth box = centre +- width.
* ``mota``, ``idf1`` — motmetrics, same gate; ``hota`` — HOTA (Luiten et al.
  2021) implemented here from the paper's definition, with similarity
  ``max(0, 1 - d / gate)`` for points, averaged over alpha = 0.05..0.95.
* ``edge_recall`` (merge regime) — fraction of true parent→child edges for
  which the method's catalog holds a link between a track that matched the
  parent and one that matched the child.
* ``frames_per_s`` — frames / (detection + linking seconds), field
  generation excluded.
* Open boundaries (sparse regime, x): a hypothesis that pairs with a blob
  whose centre is just outside the domain (``Movie.ignore``: within two
  widths; its tail is visible) is dropped before scoring, for every method
  alike (MOT "ignore regions"), so methods are not penalised for blobs
  entering or leaving.

Baselines: trackpy 0.7 locate + link with settings derived from the blob
width and field statistics (``trackpy_params``); xblobs 1.0.2 itself
(``find_blobs``: space-time labelling of the whole movie, offline); and
``overlap_tracker``, a per-frame threshold-and-overlap tracker in xblobs'
spirit that also records merge/split links.  discopat (SORT) does not install
here.

The last line of output is one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from regimes import REGIMES, Movie, make_movie  # noqa: E402

from intransit.analyzers.base import Block, StepContext, StepResult  # noqa: E402
from intransit.analyzers.blobs import BlobDetector  # noqa: E402
from intransit.analyzers.tracking import BlobTracker  # noqa: E402

KEYS = ("mota", "idf1", "hota", "det_f1", "ap50", "frames_per_s")


# ----------------------------------------------------------------- methods
def ours_params(movie: Movie) -> tuple[dict, dict]:
    """Detector and tracker parameters: one rule set for every regime, from the blob width ``w`` only.

    Detection in global standard deviations: seed 2.5, grow to 1.5, split levels
    every 0.5 up to 5 (a sub-peak is its own object when it reaches the seed
    and stands 0.5 above the level where it separates); each object is
    reported at the lowest level >= 0.35 x its peak, so a blob sitting on a
    broad turbulent bump keeps its own extent.  Tracking: gate 1.2 w, occlusion
    coasting within 1.5 w of another track's detection (crossings), merges and
    splits within 1.5 / 1.6 w.
    """
    w = movie.width
    det = dict(threshold=2.5, grow_threshold=1.5, split_levels=[2.0, 3.0, 3.5, 4.0, 4.5, 5.0], min_area=3,
               connectivity=2, periodic=movie.periodic, peak_fraction=0.35, split_prominence=0.5)
    trk = dict(max_distance=1.2 * w, max_gap=3, min_length=3, periodic=movie.periodic, velocity_smoothing=0.5,
               occlusion_distance=1.5 * w, report_occluded=True,
               merge_distance=1.5 * w if movie.regime == "merge" else None,
               split_distance=1.6 * w if movie.regime == "merge" else None)
    return det, trk


def run_ours(movie: Movie, frames: list[np.ndarray], backend: str = "numpy", det_kw: dict | None = None,
             trk_kw: dict | None = None) -> dict:
    d0, t0_ = ours_params(movie)
    det_kw, trk_kw = {**d0, **(det_kw or {})}, {**t0_, **(trk_kw or {})}
    det, trk = BlobDetector(backend=backend, **det_kw), BlobTracker(**trk_kw)
    shape = frames[0].shape
    dets, rows, edges = [], [], []
    t0 = time.perf_counter()
    for step, f in enumerate(frames):
        ctx = StepContext(step=step, index=step, variable="n", global_shape=shape,
                          blocks=[Block(f, (0,) * f.ndim, f.shape)])
        res = det.combine([det.process_blocks(ctx)], ctx)
        tctx = StepContext(step=step, index=step, variable="n", global_shape=shape, blocks=[], input=res)
        tres = trk.combine([None], tctx)
        dets.append([(_pos(e, f.ndim), _box(e, f.ndim), e["mass"]) for e in res.events])
        for e in tres.events:
            rows.append((step, int(e["track_id"]), _pos(e, f.ndim)))
            for p in (e["parent0"], e["parent1"]):
                if p > 0:
                    edges.append((int(p), int(e["track_id"])))
    elapsed = time.perf_counter() - t0
    return {"dets": dets, "rows": rows, "edges": edges, "seconds": elapsed}


def _pos(e: dict, ndim: int) -> np.ndarray:
    return np.array([e[f"c{k}"] for k in range(ndim)])


def _box(e: dict, ndim: int) -> np.ndarray:
    """Our box: centroid +- the equivalent radius sqrt(in-plane area / pi) on the blob-plane axes.

    (For a Gaussian cut at 0.35 of its peak that radius is 1.02 e-fold radii;
    the thresholded bbox itself is ragged on a turbulent background.)  Along
    a 3D filament axis: the bbox.  trackpy's box is built the same way from
    its radius of gyration.
    """
    box = np.array([[e[f"lo{k}"], e[f"hi{k}"] - 1] for k in range(ndim)], dtype=float)
    plane = [ndim - 2, ndim - 1]
    depth = box[0, 1] - box[0, 0] + 1 if ndim == 3 else 1.0
    r = np.sqrt(e["area"] / depth / np.pi)
    for k in plane:
        box[k] = [e[f"c{k}"] - r + 0.5, e[f"c{k}"] + r - 0.5]
    return box


def trackpy_params(movie: Movie, frames: list[np.ndarray]) -> dict:
    """trackpy settings from the blob width, the field statistics and the speed (same rules at every size).

    Chosen by a sweep on the 128^2 crossing movie (diameter 7/9/11, minmass
    0.5/1/1.5 x std x pi w^2, separation 3/5, with and without
    ``NearestVelocityPredict``; best MOTA kept), then written as rules:

    * ``diameter`` = 2 round(1.25 w) + 1 (odd; covers the blob to ~1.25 e-fold radii);
    * ``minmass`` = 0.5 x (field std) x pi w^2: half the integrated mass of a
      Gaussian one standard deviation high, far above what noise maxima
      reach after trackpy's bandpass and below every true blob's mass;
    * ``separation`` = max(3, round(w)) so close pairs are not suppressed
      (trackpy's default, diameter + 1, merges every crossing pair);
    * ``search_range`` = 1.2 w (>= 2.5 x the fastest blob's step), ``memory`` = 4 frames;
      plain nearest-neighbour linking (the velocity predictor scored lower).
    """
    w = movie.width
    std = float(np.mean([f.std() for f in frames[:: max(1, len(frames) // 8)]]))
    return {"diameter": int(2 * round(1.25 * w) + 1), "minmass": 0.5 * std * np.pi * w * w,
            "separation": max(3, int(round(w))), "search_range": 1.2 * w, "memory": 4}


def run_trackpy(movie: Movie, frames: list[np.ndarray]) -> dict:
    """trackpy locate (per frame; the 2D slice through the middle in 3D) + link, tuned as ``trackpy_params``."""
    import pandas as pd
    import trackpy as tp

    tp.quiet()
    prm = trackpy_params(movie, frames)
    engine = "numba" if _has_numba() else "python"
    t0 = time.perf_counter()
    feats = []
    for step, f in enumerate(frames):
        img = f[f.shape[0] // 2] if f.ndim == 3 else f
        df = tp.locate(img, prm["diameter"], minmass=prm["minmass"], separation=prm["separation"], engine=engine)
        df["frame"] = step
        feats.append(df)
    all_f = pd.concat(feats, ignore_index=True)
    linked = (tp.link(all_f, search_range=prm["search_range"], memory=prm["memory"]) if len(all_f)
              else all_f.assign(particle=[]))
    elapsed = time.perf_counter() - t0
    dets: list[list] = [[] for _ in frames]
    rows = []
    mid = (frames[0].shape[0] - 1) / 2.0
    for r in linked.itertuples():
        yx = np.array([r.y, r.x])
        pos = np.r_[mid, yx] if frames[0].ndim == 3 else yx
        half = float(r.size) * np.sqrt(2.0)  # trackpy size = Gaussian sigma-like radius of gyration
        box = np.array([[p - half, p + half] for p in yx])
        if frames[0].ndim == 3:
            box = np.vstack([[0, frames[0].shape[0] - 1], box])
        dets[int(r.frame)].append((pos, box, float(r.mass)))
        rows.append((int(r.frame), int(r.particle), pos))
    return {"dets": dets, "rows": rows, "edges": [], "seconds": elapsed}


def run_xblobs(movie: Movie, frames: list[np.ndarray], threshold: float = 2.5) -> dict:
    """xblobs 1.0.2 itself: ``find_blobs`` on the whole movie (time, radial, binormal) as its docs show.

    xblobs thresholds ``n - profile > threshold * std`` and labels the 3D
    (time, y, x) array with ``scipy.ndimage.label`` (face connectivity): a
    blob is one space-time component, so its ID is whatever overlaps from
    frame to frame.  Per frame, a label's centroid is the density-weighted
    centre of its cells and its box their extent (what ``xblobs.Blob.com``
    computes; done here in one ``ndimage`` pass instead of one xarray
    ``where`` per blob).  Offline: it needs every frame at once; no periodic
    seams; in 3D the middle slice along the filament axis (xblobs is 2D+t).
    Merges/splits: none (one label per space-time component).
    """
    import xarray as xr
    from xblobs import find_blobs

    t0 = time.perf_counter()
    movie_arr = np.stack([f[f.shape[0] // 2] if f.ndim == 3 else f for f in frames])
    nt, ny, nx = movie_arr.shape
    ds = xr.Dataset({"n": (("time", "binormal", "radial"), movie_arr)},
                    coords={"time": np.arange(nt), "binormal": np.arange(ny), "radial": np.arange(nx)})
    ds = find_blobs(ds, threshold=threshold, scale_threshold="std", region=-1.0, background="profile")
    lab = np.asarray(ds["blob_labels"].values).astype(np.int64)
    dets: list[list] = [[] for _ in frames]
    rows = []
    min_area = max(4, int(0.5 * movie.width ** 2))
    mid = (frames[0].shape[0] - 1) / 2.0
    for t in range(nt):
        lt = lab[t]
        ids = np.unique(lt[lt > 0])
        if not len(ids):
            continue
        dense = np.searchsorted(ids, lt) + 1
        dense[lt == 0] = 0
        idx = np.arange(1, len(ids) + 1)
        area = ndimage.sum_labels(np.ones_like(lt), dense, idx)
        cms = ndimage.center_of_mass(movie_arr[t], dense, idx)
        objs = ndimage.find_objects(dense)
        for k, tid in enumerate(ids):
            if area[k] < min_area:
                continue
            yx = np.array(cms[k])
            box = np.array([[s.start, s.stop - 1] for s in objs[k]], dtype=float)
            pos = np.r_[mid, yx] if frames[0].ndim == 3 else yx
            if frames[0].ndim == 3:
                box = np.vstack([[0, frames[0].shape[0] - 1], box])
            dets[t].append((pos, box, float(area[k])))
            rows.append((t, int(tid), pos))
    return {"dets": dets, "rows": rows, "edges": [], "seconds": time.perf_counter() - t0}


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
        return True
    except ImportError:
        return False


def run_overlap(movie: Movie, frames: list[np.ndarray], threshold: float = 2.5) -> dict:
    """xblobs-style: per frame threshold at mean + 2.5 std, label, link objects whose masks overlap.

    A label inherits the ID of the previous frame's label it overlaps most;
    several children of one parent: the largest keeps it, others start new
    IDs (a split link); several parents: the largest wins (a merge link).
    """
    t0 = time.perf_counter()
    structure = ndimage.generate_binary_structure(frames[0].ndim, 2)
    prev_lab, prev_ids = None, {}
    next_id = 1
    dets, rows, edges = [], [], []
    min_area = max(4, int(0.5 * movie.width ** 2))
    for step, f in enumerate(frames):
        mask = f > f.mean() + threshold * f.std()
        lab, n = ndimage.label(mask, structure=structure)
        area = np.bincount(lab.ravel(), minlength=n + 1)
        ids = {}
        objs = ndimage.find_objects(lab)
        cms = ndimage.center_of_mass(f, lab, range(1, n + 1)) if n else []
        parents_of: dict[int, list[int]] = defaultdict(list)
        if prev_lab is not None and n:
            both = (lab > 0) & (prev_lab > 0)
            pairs, counts = np.unique(np.stack([lab[both], prev_lab[both]]), axis=1, return_counts=True)
            for (a, b), c in zip(pairs.T, counts):
                parents_of[int(a)].append((int(c), int(b)))
        used = set()
        for lbl in sorted(range(1, n + 1), key=lambda k: -area[k]):
            if area[lbl] < min_area:
                continue
            ps = sorted(parents_of.get(lbl, []), reverse=True)
            pid = prev_ids.get(ps[0][1]) if ps else None
            if pid is not None and pid not in used:
                ids[lbl] = pid
                used.add(pid)
            else:
                ids[lbl] = next_id
                next_id += 1
                if pid is not None:
                    edges.append((pid, ids[lbl]))
            for _, b in ps[1:]:
                if b in prev_ids and prev_ids[b] != ids[lbl]:
                    edges.append((prev_ids[b], ids[lbl]))
        frame_dets = []
        for lbl, tid in ids.items():
            sl = objs[lbl - 1]
            box = np.array([[s.start, s.stop - 1] for s in sl], dtype=float)
            pos = np.array(cms[lbl - 1])
            frame_dets.append((pos, box, float(area[lbl])))
            rows.append((step, tid, pos))
        dets.append(frame_dets)
        prev_lab, prev_ids = lab, ids
    return {"dets": dets, "rows": rows, "edges": edges, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------- metrics
def _delta(a: np.ndarray, b: np.ndarray, movie: Movie) -> np.ndarray:
    d = a[:, None, :] - b[None, :, :]
    for k, p in enumerate(movie.periodic):
        if p:
            L = movie.shape[k]
            d[..., k] -= L * np.round(d[..., k] / L)
    return d


def _dist(a: np.ndarray, b: np.ndarray, movie: Movie) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return np.sqrt((_delta(a, b, movie) ** 2).sum(-1))


def _truth_frame(movie: Movie, t: int) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    rows = movie.truth[t]
    ids = [r["id"] for r in rows]
    pos = np.array([r["c"] for r in rows], dtype=float).reshape(-1, len(movie.shape))
    gate = np.array([r["width"] for r in rows], dtype=float)
    half = np.tile(gate[:, None], (1, len(movie.shape)))
    if movie.nz:
        half[:, 0] = (movie.nz - 1) / 2.0
    return ids, pos, gate, half


def detection_scores(movie: Movie, dets: list[list]) -> tuple[float, float]:
    tp = fp = fn = 0
    scored = []  # (score, is_tp)
    n_truth = 0
    for t, frame in enumerate(dets):
        ids, pos, gate, half = _truth_frame(movie, t)
        n_truth += len(ids)
        dpos = np.array([d[0] for d in frame], dtype=float).reshape(-1, len(movie.shape))
        dist = _dist(pos, dpos, movie)
        if dist.size:
            r, c = linear_sum_assignment(np.where(dist <= gate[:, None], dist, 1e9))
            ok = dist[r, c] <= gate[r]
            n_ok = int(ok.sum())
        else:
            n_ok = 0
        tp += n_ok
        fp += len(frame) - n_ok
        fn += len(ids) - n_ok
        # AP50 IoMean: greedy by score, boxes compared through centre offsets (minimum image).
        if not frame:
            continue
        order = np.argsort([-d[2] for d in frame], kind="stable")
        taken = np.zeros(len(ids), bool)
        for j in order:
            box = frame[j][1]
            centre, dhalf = box.mean(axis=1), (box[:, 1] - box[:, 0] + 1) / 2.0
            best, bi = 0.0, -1
            if len(ids):
                off = np.abs(_delta(pos, centre[None, :], movie)[:, 0, :])
                ov = np.clip(np.minimum(off + half, dhalf) - np.maximum(off - half, -dhalf), 0, None).prod(axis=1)
                area_t, area_d = (2 * half).prod(axis=1), (2 * dhalf).prod()
                iom = ov / ((area_t + area_d) / 2.0)
                iom[taken] = -1
                bi = int(np.argmax(iom))
                best = float(iom[bi])
            if best >= 0.5:
                taken[bi] = True
                scored.append((frame[j][2], 1))
            else:
                scored.append((frame[j][2], 0))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    if not scored or n_truth == 0:
        return f1, 0.0
    s = sorted(scored, key=lambda x: -x[0])
    hits = np.cumsum([x[1] for x in s])
    prec = hits / np.arange(1, len(s) + 1)
    rec = hits / n_truth
    # all-point interpolated AP (COCO/VOC style)
    mprec = np.maximum.accumulate(prec[::-1])[::-1]
    rec_prev = np.r_[0.0, rec[:-1]]
    return f1, float(((rec - rec_prev) * mprec).sum())


def tracking_scores(movie: Movie, rows: list) -> tuple[float, float, float]:
    import motmetrics as mm

    by_frame = defaultdict(list)
    for step, tid, pos in rows:
        by_frame[step].append((tid, pos))
    acc = mm.MOTAccumulator(auto_id=True)
    frames = []  # for HOTA: (gt ids, tracker ids, similarity matrix)
    for t in range(movie.n_frames):
        ids, pos, gate, _ = _truth_frame(movie, t)
        hyp = by_frame.get(t, [])
        hid = [h[0] for h in hyp]
        hpos = np.array([h[1] for h in hyp], dtype=float).reshape(-1, len(movie.shape))
        dist = _dist(pos, hpos, movie)
        acc.update(ids, hid, np.where(dist <= gate[:, None], dist, np.nan))
        sim = np.clip(1.0 - dist / gate[:, None], 0.0, None) if dist.size else dist
        frames.append((ids, hid, sim))
    mh = mm.metrics.create()
    summary = mh.compute(acc, metrics=["mota", "idf1"], name="x")
    return float(summary["mota"].iloc[0]), float(summary["idf1"].iloc[0]), hota(frames)


def hota(frames: list[tuple[list, list, np.ndarray]]) -> float:
    """HOTA (Luiten et al., IJCV 2021), as in TrackEval: global alignment, then per-alpha DetA/AssA."""
    gt_ids = sorted({g for f in frames for g in f[0]})
    tr_ids = sorted({h for f in frames for h in f[1]})
    if not gt_ids or not tr_ids:
        return 0.0
    gi = {g: i for i, g in enumerate(gt_ids)}
    ti = {h: i for i, h in enumerate(tr_ids)}
    pot = np.zeros((len(gt_ids), len(tr_ids)))
    gt_cnt = np.zeros((len(gt_ids), 1))
    tr_cnt = np.zeros((1, len(tr_ids)))
    for g, h, sim in frames:
        gix, hix = [gi[x] for x in g], [ti[x] for x in h]
        gt_cnt[gix, 0] += 1
        tr_cnt[0, hix] += 1
        if sim.size:
            denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
            sim_iou = np.divide(sim, denom, out=np.zeros_like(sim), where=denom > np.finfo(float).eps)
            pot[np.ix_(gix, hix)] += sim_iou
    glob = pot / (gt_cnt + tr_cnt - pot)
    alphas = np.arange(0.05, 0.99, 0.05)
    tp = np.zeros(len(alphas))
    fn = np.zeros(len(alphas))
    fp = np.zeros(len(alphas))
    matches = np.zeros((len(alphas), len(gt_ids), len(tr_ids)))
    for g, h, sim in frames:
        if not g or not h:
            fn += len(g)
            fp += len(h)
            continue
        gix, hix = np.array([gi[x] for x in g]), np.array([ti[x] for x in h])
        score = glob[np.ix_(gix, hix)] * sim
        r, c = linear_sum_assignment(-score)
        for a, alpha in enumerate(alphas):
            ok = sim[r, c] >= alpha - np.finfo(float).eps
            n = int(ok.sum())
            tp[a] += n
            fn[a] += len(g) - n
            fp[a] += len(h) - n
            matches[a, gix[r[ok]], hix[c[ok]]] += 1
    out = []
    for a in range(len(alphas)):
        m = matches[a]
        ass_a = m / np.maximum(1, gt_cnt + tr_cnt - m)
        ass = float((m * ass_a).sum() / max(1.0, tp[a]))
        det = tp[a] / max(1.0, tp[a] + fn[a] + fp[a])
        out.append(np.sqrt(det * ass))
    return float(np.mean(out))


def edge_recall(movie: Movie, rows: list, edges: list) -> float | None:
    if not movie.edges:
        return None
    by_frame = defaultdict(list)
    for step, tid, pos in rows:
        by_frame[step].append((tid, pos))
    hits: dict[int, set] = defaultdict(set)
    for t in range(movie.n_frames):
        ids, pos, gate, _ = _truth_frame(movie, t)
        hyp = by_frame.get(t, [])
        hpos = np.array([h[1] for h in hyp], dtype=float).reshape(-1, len(movie.shape))
        dist = _dist(pos, hpos, movie)
        if dist.size:
            r, c = linear_sum_assignment(np.where(dist <= gate[:, None], dist, 1e9))
            for i, j in zip(r, c):
                if dist[i, j] <= gate[i]:
                    hits[ids[i]].add(hyp[j][0])
    links = {(a, b) for a, b in edges}
    ok = 0
    for p, c, _ in movie.edges:
        if any((a, b) in links for a in hits.get(p, ()) for b in hits.get(c, ())):
            ok += 1
    return ok / len(movie.edges)


def _ignored(movie: Movie, t: int, hpos: np.ndarray) -> np.ndarray:
    """Hypotheses of frame ``t`` that pair (jointly with the truth, one-to-one, within one width)
    with a blob in ``movie.ignore[t]`` (centre just outside an open boundary): neither hit nor miss."""
    ign = movie.ignore[t] if t < len(getattr(movie, "ignore", [])) else []
    out = np.zeros(len(hpos), bool)
    if not ign or not len(hpos):
        return out
    _, pos, gate, _ = _truth_frame(movie, t)
    ipos = np.array([r["c"] for r in ign], dtype=float).reshape(-1, len(movie.shape))
    allpos, allgate = np.vstack([pos, ipos]), np.r_[gate, [r["width"] for r in ign]]
    dist = _dist(allpos, hpos, movie)
    r, c = linear_sum_assignment(np.where(dist <= allgate[:, None], dist, 1e9))
    for i, j in zip(r, c):
        if i >= len(pos) and dist[i, j] <= allgate[i]:
            out[j] = True
    return out


def drop_ignored(movie: Movie, res: dict) -> dict:
    """The same result without hypotheses that pair with ignored (edge) blobs, for every method alike."""
    if not any(getattr(movie, "ignore", [])):
        return res
    dets = []
    for t, frame in enumerate(res["dets"]):
        hpos = np.array([d[0] for d in frame], dtype=float).reshape(-1, len(movie.shape))
        drop = _ignored(movie, t, hpos)
        dets.append([d for d, x in zip(frame, drop) if not x])
    by_frame = defaultdict(list)
    for row in res["rows"]:
        by_frame[row[0]].append(row)
    rows = []
    for t, rs in sorted(by_frame.items()):
        hpos = np.array([r[2] for r in rs], dtype=float).reshape(-1, len(movie.shape))
        drop = _ignored(movie, t, hpos)
        rows += [r for r, x in zip(rs, drop) if not x]
    return {**res, "dets": dets, "rows": rows}


def score(movie: Movie, res: dict) -> dict:
    res = drop_ignored(movie, res)
    det_f1, ap50 = detection_scores(movie, res["dets"])
    mota, idf1, h = tracking_scores(movie, res["rows"])
    out = {"mota": mota, "idf1": idf1, "hota": h, "det_f1": det_f1, "ap50": ap50,
           "frames_per_s": movie.n_frames / res["seconds"] if res["seconds"] > 0 else float("inf")}
    er = edge_recall(movie, res["rows"], res["edges"])
    if er is not None:
        out["edge_recall"] = er
    return {k: round(v, 4) for k, v in out.items()}


# ----------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regime", choices=REGIMES, default="crossing")
    p.add_argument("--size", type=int, default=None, help="grid side (default 256; --quick 128)")
    p.add_argument("--frames", type=int, default=None, help="frames (default 80; --quick 40)")
    p.add_argument("--nz", type=int, default=None, help="3d: cells along the filament axis (default 32; --quick 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    p.add_argument("--torch", action="store_true", help="also time the torch detection path")
    p.add_argument("--skip", default="", help="comma-separated baselines to skip (trackpy, xblobs, overlap)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    size = a.size or (128 if a.quick else 256)
    n_frames = a.frames or (40 if a.quick else 80)
    nz = a.nz or (8 if a.quick else 32)
    movie = make_movie(a.regime, size, n_frames, a.seed, nz=nz)
    t0 = time.perf_counter()
    frames = [np.ascontiguousarray(f) for _, f in movie.frames()]
    gen_s = time.perf_counter() - t0
    out = {"regime": a.regime, "size": size, "frames": n_frames, "shape": list(frames[0].shape),
           "truth_rows": sum(len(r) for r in movie.truth), "truth_tracks": len({r["id"] for f in movie.truth for r in f}),
           "generate_s": round(gen_s, 2)}
    ours = run_ours(movie, frames)
    out["ours"] = score(movie, ours)
    if a.torch:
        out["ours_torch"] = score(movie, run_ours(movie, frames, backend="torch"))
    skip = set(filter(None, a.skip.split(",")))
    baselines = {}
    if "trackpy" not in skip:
        try:
            baselines["trackpy"] = score(movie, run_trackpy(movie, frames))
        except ImportError as exc:
            baselines["trackpy"] = {"error": str(exc)}
    if "xblobs" not in skip:
        try:
            baselines["xblobs"] = score(movie, run_xblobs(movie, frames))
        except ImportError as exc:
            baselines["xblobs"] = {"error": str(exc)}
    if "overlap" not in skip:
        baselines["overlap_tracker"] = score(movie, run_overlap(movie, frames))
    out["baselines"] = baselines
    _table(out)
    print(json.dumps(out))
    return 0


def _table(out: dict) -> None:
    rows = [("ours", out["ours"])] + ([("ours (torch)", out["ours_torch"])] if "ours_torch" in out else [])
    rows += list(out["baselines"].items())
    keys = list(KEYS) + (["edge_recall"] if "edge_recall" in out["ours"] else [])
    print(f"regime {out['regime']}  shape {out['shape']}  frames {out['frames']}  truth tracks {out['truth_tracks']}")
    print(f"| method | {' | '.join(keys)} |")
    print("|---" * (len(keys) + 1) + "|")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


if __name__ == "__main__":
    sys.exit(main())
