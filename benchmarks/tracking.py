#!/usr/bin/env python3
"""Blob detection and tracking, untuned, against ground truth and the field's baselines, regime by regime.

    python benchmarks/tracking.py [--quick] [--regime all|NAME[,NAME...]] [--seeds 100,101,102]

Regimes (``examples/regimes.py``; every generator's truth comes from its own
parameters, never from the detector):

* ``sparse`` / ``crossing`` / ``merge`` / ``3d`` — Gaussian blobs on known
  trajectories over hw2d turbulence (the regimes the pipeline grew up on);
* ``curving`` — ``examples/scenario_sim.py``: anisotropic, rotating blobs
  2-8 cells across on curved paths over spatially correlated noise, 3 uneven
  column blocks;
* ``amplitudes`` — ``examples/scenarios2d.py``: peaks spread over a factor
  16 (the faint ones near the noise), 2 x 3 uneven blocks;
* ``gray_scott`` — ``examples/gray_scott.py``: ADIOS2's Gray-Scott (3D,
  periodic, spots that split and merge), 3 x 2 uneven blocks.

Methods, each on the same frames:

* ``ours_default`` — the registry's ``blob_detection`` and ``tracking``
  analyzers constructed as a user with no parameters would: only
  ``periodic`` is stated (a property of the grid, not a tuning knob), every
  other parameter at its default.  The frames go through the service's
  reading path: a ``MemoryStepReader`` over the movie's blocks, up to 3
  simulated ranks (threads, each its own detector; the halo read when the
  detector declares one), ``combine`` on rank 0, then the tracker.
* ``ours_tuned`` — legacy regimes only: ``ours_params`` (rules from the blob
  width, with merge/split links in the merge regime).  Labelled tuned.
* ``trackpy_tuned`` — trackpy 0.7 locate + link tuned on the truth.  Legacy
  regimes: the rule set ``trackpy_params`` (from the blob width; found by a
  sweep on the 128^2 crossing movie).  Generated regimes: a sweep on a
  separate tuning seed (``TUNING_SEED``) over diameter, minmass and search
  range, best MOTA + IDF1 kept, then applied to the held-out seeds.
  Periodic axes: the frame is padded by wrap before ``locate`` (features
  kept in the domain) and ``link`` runs on a periodic embedding
  (``to_eucl``: each periodic coordinate on a circle, chord ~= arc).
  Filament movies (3d): the middle slice; Gray-Scott: 3D ``locate``.
* ``xblobs`` — xblobs 1.0.2's ``find_blobs`` itself (2D + time, offline,
  no periodic seams; not run on Gray-Scott, which is 3D).
* ``robust_z_link`` — per frame: z = (f - median) / (1.4826 MAD), cells with
  z > 4, ``scipy.ndimage.label`` (full connectivity, joined across periodic
  faces), components of >= 4 cells, z-weighted centroids (periodic-aware);
  ``trackpy.link`` (search range 5 cells, memory 2, periodic embedding) and
  ``trackpy.filter_stubs`` (tracks of >= 3 points).  Fixed settings for every
  regime: a plain, untuned baseline.
* ``overlap`` — per frame mean + 2.5 std threshold, label, link by mask overlap.

Metrics (per frame, truth centres and hypotheses paired one-to-one by
Hungarian assignment on the minimum-image distance, within a gate: one blob
e-fold width in the legacy regimes, ``GATE`` = 3 cells in the generated
ones):

* ``det_f1`` — over all frames, of the method's per-frame detections;
* ``mota``, ``idf1``, ``id_switches`` — motmetrics on the track rows;
* ``hota`` — HOTA (Luiten et al. 2021) from the paper's definition, point
  similarity ``max(0, 1 - d / gate)``, averaged over alpha = 0.05..0.95;
* ``ap50`` — AP at 50 % IoMean (Tokam2D challenge), legacy figure;
* ``edge_recall`` — where the truth has split/merge edges and the method
  links parents: the fraction of true edges it holds;
* ``frames_per_s`` — frames / CPU seconds of detection + linking (ours:
  per-rank thread CPU summed, as one core would spend; baselines: process
  CPU), field generation and the in-memory transport excluded.

Figures are means over the held-out seeds (>= 100; ``--quick``: seed 100
only, small sizes).  ``speed``: ``ours_default`` frames/s at 256^2 and
1024^2, one rank, one block, one core (the ``amplitudes`` field at 24 blobs
per 256^2).  ``scale``: ``benchmarks/tracking_scale.py``'s Gray-Scott 64^3
figures (``scale.spots3d_64.steps_per_s``).

A human table (regimes x methods) goes to stderr; the last line of stdout is
one JSON object: ``regimes.<name>.<method>.{mota,idf1,hota,det_f1,id_switches,...}``,
``speed.{frames_per_s_256,frames_per_s_1024}``, ``scale``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import inspect  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "examples", ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from regimes import LEGACY_REGIMES, NEW_REGIMES, REGIMES, Movie, SceneMovie, blobs_for, make_movie  # noqa: E402
from scenarios2d import Amplitudes, cut  # noqa: E402
from gray_scott import periodic_label  # noqa: E402,F401  (the robust-z baseline's seams; one join for truth and baseline)

from intransit.adapters.reader import MemoryStepReader, StepStatus  # noqa: E402
from intransit.analyzers.base import Block, StepContext, StepResult, get  # noqa: E402

log = logging.getLogger("tracking_bench")

KEYS = ("mota", "idf1", "hota", "det_f1", "id_switches")
METHODS = ("ours_default", "ours_tuned", "trackpy_tuned", "xblobs", "robust_z_link", "overlap")
HELD_OUT_SEEDS = (100, 101, 102)
TUNING_SEED = 1
VARIABLE = "field"
AnyMovie = Movie | SceneMovie


# ------------------------------------------------------------ ours, defaults
class _ThreadAllreduce:
    """Sum over simulated ranks in threads: each rank's call meets the others' at a barrier."""

    def __init__(self, n: int) -> None:
        self.barrier = threading.Barrier(n)
        self.slots: list[np.ndarray | None] = [None] * n

    def for_rank(self, r: int) -> Callable[[np.ndarray], np.ndarray]:
        def allreduce(values: np.ndarray) -> np.ndarray:
            self.slots[r] = np.asarray(values, dtype=np.float64).copy()
            self.barrier.wait()
            total = np.sum(self.slots, axis=0)
            self.barrier.wait()  # nobody overwrites a slot before all have summed
            return total
        return allreduce


def _read(reader: MemoryStepReader, det: Any, ndim: int) -> tuple[tuple[int, ...], list[Block]]:
    """This rank's blocks, with the halo the detector declares (the service's rule: ask only when nonzero)."""
    whole = tuple(getattr(det, "whole_axes", ()))
    spec = getattr(det, "halo_spec", None)
    if spec is not None:
        halo, periodic = spec(ndim)
        if any(halo):
            if "halo" not in inspect.signature(reader.read).parameters:
                raise RuntimeError("the detector declares a halo but MemoryStepReader.read takes none")
            return reader.read(VARIABLE, whole, halo=tuple(halo), periodic=tuple(periodic))
    return reader.read(VARIABLE, whole)


def _wants_halo(det: Any, ndim: int) -> bool:
    """Whether ``_read`` asks this detector's blocks with a halo."""
    spec = getattr(det, "halo_spec", None)
    return spec is not None and any(spec(ndim)[0])


def default_analyzers(periodic: Sequence[bool]) -> tuple[Any, Any]:
    """What a user with no parameters gets: the registry's classes, only ``periodic`` stated."""
    return get("blob_detection")(periodic=list(periodic)), get("tracking")(periodic=list(periodic))


def run_pipeline(movie: AnyMovie, frames: Sequence[np.ndarray], *,
                 blocks: Sequence[tuple[Sequence[int], Sequence[int]]] | None = None, n_ranks: int | None = None,
                 make: Callable[[Sequence[bool]], tuple[Any, Any]] = default_analyzers) -> dict:
    """Detection + tracking the way the service runs them, over ``blocks`` (default: the movie's) on simulated ranks.

    Returns per-frame detections, track rows, parent links, the CPU seconds
    of detection (ranks summed) and tracking, in total and per step
    (``detect_steps``, ``track_steps``), and whether the halo read was used.
    ``benchmarks/tracking_scale.py`` runs its 64^3 Gray-Scott through this too.
    """
    shape = tuple(frames[0].shape)
    blocks = list(blocks if blocks is not None else movie.blocks)
    n_ranks = n_ranks or min(3, len(blocks))
    steps = [(t, {VARIABLE: (shape, cut(f, blocks))}) for t, f in enumerate(frames)]
    readers = [MemoryStepReader(steps, rank=r, n_ranks=n_ranks) for r in range(n_ranks)]
    pairs = [make(movie.periodic) for _ in range(n_ranks)]
    dets = [p[0] for p in pairs]
    tracker = pairs[0][1]
    ndim = len(shape)
    out_dets, rows, edges = [], [], []
    det_steps: list[float] = []
    trk_steps: list[float] = []
    halo_used = False
    for index in range(len(steps)):
        shares = []
        for r in readers:
            if r.begin_step(0.0) is not StepStatus.OK:
                raise RuntimeError(f"MemoryStepReader gave no step {index}")
            shares.append(_read(r, dets[0], ndim))
        halo_used = halo_used or _wants_halo(dets[0], ndim)
        step = readers[0].current_step()
        partials: list[Any] = [None] * n_ranks
        cpu = [0.0] * n_ranks
        errors: list[BaseException] = []
        comm = _ThreadAllreduce(n_ranks) if n_ranks > 1 else None

        def rank_body(r: int) -> None:
            gshape, blks = shares[r]
            kw = {"allreduce": comm.for_rank(r)} if comm is not None else {}
            ctx = StepContext(step=step, index=index, variable=VARIABLE, global_shape=tuple(gshape), blocks=blks, **kw)
            t0 = time.thread_time()
            try:
                partials[r] = dets[r].process_blocks(ctx)
            except BaseException as exc:  # noqa: BLE001  (re-raised below, after every thread ended)
                errors.append(exc)
                if comm is not None:
                    comm.barrier.abort()
            cpu[r] = time.thread_time() - t0

        if n_ranks == 1:
            rank_body(0)
        else:
            threads = [threading.Thread(target=rank_body, args=(r,)) for r in range(n_ranks)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        if errors:
            raise errors[0]
        t0 = time.thread_time()
        ctx = StepContext(step=step, index=index, variable=VARIABLE, global_shape=shape, blocks=[])
        res: StepResult = dets[0].combine(partials, ctx)
        t1 = time.thread_time()
        tctx = StepContext(step=step, index=index, variable=VARIABLE, global_shape=shape, blocks=[],
                           input=res, upstream={"blobs": res})
        tres = tracker.combine([None] * n_ranks, tctx)
        t2 = time.thread_time()
        for r in readers:
            r.end_step()
        det_steps.append(sum(cpu) + (t1 - t0))
        trk_steps.append(t2 - t1)
        out_dets.append([(_pos(e, ndim), _box(e, ndim, movie), float(e.get("mass", e.get("area", 1.0))))
                         for e in res.events])
        for e in tres.events:
            rows.append((index, int(e["track_id"]), _pos(e, ndim)))
            for key in ("parent0", "parent1"):
                p = e.get(key, 0)
                if p and p > 0:
                    edges.append((int(p), int(e["track_id"])))
    t_det, t_trk = float(sum(det_steps)), float(sum(trk_steps))
    return {"dets": out_dets, "rows": rows, "edges": edges, "seconds": t_det + t_trk,
            "detect_s": t_det, "track_s": t_trk, "detect_steps": det_steps, "track_steps": trk_steps,
            "halo": halo_used}


def run_ours_default(movie: AnyMovie, frames: Sequence[np.ndarray]) -> dict:
    return run_pipeline(movie, frames)


# ------------------------------------------------------------- ours, tuned
def ours_params(movie: Movie) -> tuple[dict, dict]:
    """Detector and tracker parameters TUNED per regime (``ours_tuned``): rules from the blob width ``w``.

    Detection in global standard deviations: seed 2.5, grow to 1.5, split levels
    every 0.5 up to 5 (a sub-peak is its own object when it reaches the seed
    and stands 0.5 above the level where it separates); each object is
    reported at the lowest level >= 0.35 x its peak, so a blob sitting on a
    broad turbulent bump keeps its own extent.  Tracking: gate 1.2 w, occlusion
    coasting within 1.5 w of another track's detection (crossings), merges and
    splits within 1.5 / 1.6 w (merge regime).  The detector is pinned to the
    pointwise path on plain moments (``LEGACY_DETECTION``), the units these
    thresholds were chosen in, and the tracker to reporting every track from
    its first row (``LEGACY_TRACKING``: no confirmation, no spacing cap);
    tracker options not named here keep their defaults.  Not the defaults: the benchmark's headline is ``ours_default``.
    """
    w = movie.width
    det = dict(**_pin(get("blob_detection"), LEGACY_DETECTION), threshold=2.5, grow_threshold=1.5, split_levels=[2.0, 3.0, 3.5, 4.0, 4.5, 5.0], min_area=3,
               connectivity=2, periodic=movie.periodic, peak_fraction=0.35, split_prominence=0.5)
    trk = dict(**_pin(get("tracking"), LEGACY_TRACKING), max_gap=3, periodic=movie.periodic, velocity_smoothing=0.5,
               max_distance=1.2 * w,
               occlusion_distance=1.5 * w, report_occluded=True,
               merge_distance=1.5 * w if movie.regime == "merge" else None,
               split_distance=1.6 * w if movie.regime == "merge" else None)
    return det, trk


#: The pointwise detector on the plain moments (mean, std), which ``ours_params``' thresholds were tuned in.
LEGACY_DETECTION = {"noise": "moments", "scales": []}
#: The tracker as ``ours_params`` was tuned on: every track reported from its first row, no spacing cap.
LEGACY_TRACKING = {"confirm_hits": 1, "confirm_window": 1, "min_length": 1, "spacing_gate": None}


def _pin(cls: type, params: dict) -> dict:
    """The entries of ``params`` that ``cls`` accepts (so the tuned set survives renamed or new options)."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in params.items() if k in accepted}


def run_ours(movie: Movie, frames: list[np.ndarray], backend: str = "numpy", det_kw: dict | None = None,
             trk_kw: dict | None = None) -> dict:
    """``ours_tuned``: ``ours_params`` (overridden by ``det_kw`` / ``trk_kw``) through the same reading path."""
    d0, t0_ = ours_params(movie)
    det_kw, trk_kw = {**d0, **(det_kw or {})}, {**t0_, **(trk_kw or {})}

    def make(_periodic):
        return get("blob_detection")(backend=backend, **det_kw), get("tracking")(**trk_kw)

    return run_pipeline(movie, frames, make=make)


def _pos(e: dict, ndim: int) -> np.ndarray:
    return np.array([e[f"c{k}"] for k in range(ndim)], dtype=float)


def _box(e: dict, ndim: int, movie: AnyMovie | None = None) -> np.ndarray:
    """Our box: centroid +- the equivalent radius sqrt(in-plane area / pi) on the blob-plane axes.

    (For a Gaussian cut at 0.35 of its peak that radius is 1.02 e-fold radii;
    the thresholded bbox itself is ragged on a turbulent background.)  Along
    a 3D filament axis: the bbox.  Without box fields in the event, the
    centroid +- one radius of an equal-area disc (or +- 2 cells).
    """
    c = _pos(e, ndim)
    filaments = ndim == 3 and bool(getattr(movie, "nz", 0))
    if all(f"lo{k}" in e and f"hi{k}" in e for k in range(ndim)):
        box = np.array([[e[f"lo{k}"], e[f"hi{k}"] - 1] for k in range(ndim)], dtype=float)
    else:
        box = np.stack([c - 2.0, c + 2.0], axis=1)
    plane = [ndim - 2, ndim - 1] if filaments or ndim == 2 else list(range(ndim))
    depth = box[0, 1] - box[0, 0] + 1 if filaments else 1.0
    area = float(e.get("area", 0.0))
    if area > 0:
        r = np.sqrt(area / depth / np.pi) if len(plane) == 2 else (3 * area / (4 * np.pi)) ** (1 / 3)
        for k in plane:
            box[k] = [c[k] - r + 0.5, c[k] + r - 0.5]
    return box


# ----------------------------------------------------------------- trackpy
def _is_volume(movie: AnyMovie) -> bool:
    """True 3D objects (Gray-Scott), as opposed to 2D images or filaments along axis 0."""
    return len(movie.shape) == 3 and not movie.nz


def _image(movie: AnyMovie, f: np.ndarray) -> np.ndarray:
    """What a 2D method sees: the frame, or the middle slice of a filament movie."""
    return f[f.shape[0] // 2] if (f.ndim == 3 and movie.nz) else f


def _image_periodic(movie: AnyMovie) -> list[bool]:
    return list(movie.periodic[1:]) if movie.nz else list(movie.periodic)


def _embed(periodic: Sequence[bool], shape: Sequence[int]) -> Callable[[np.ndarray], np.ndarray] | None:
    """``to_eucl`` for trackpy.link: each periodic coordinate on a circle of circumference L (chord ~= arc)."""
    if not any(periodic):
        return None
    per = [k for k, p in enumerate(periodic) if p]
    opn = [k for k, p in enumerate(periodic) if not p]
    rad = np.array([shape[k] / (2 * np.pi) for k in per])

    def to_eucl(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        ang = x[:, per] / rad
        return np.hstack([x[:, opn], rad * np.cos(ang), rad * np.sin(ang)])
    return to_eucl


def _wrap_pad(img: np.ndarray, periodic: Sequence[bool], pad: int) -> np.ndarray:
    width = [(pad, pad) if p else (0, 0) for p in periodic]
    return np.pad(img, width, mode="wrap") if any(periodic) else img


def trackpy_params(movie: Movie, frames: list[np.ndarray]) -> dict:
    """trackpy settings (legacy regimes) from the blob width, the field statistics and the speed.

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


def _trackpy_locate(movie: AnyMovie, frames: Sequence[np.ndarray], diameter: int, separation: int,
                    minmass: float):
    """Features of every frame (pandas), positions in the movie's coordinates, periodic seams handled."""
    import pandas as pd
    import trackpy as tp

    tp.quiet()
    engine = "numba" if _has_numba() else "python"
    periodic = _image_periodic(movie)
    feats = []
    for step, f in enumerate(frames):
        img = _image(movie, f)
        pad = diameter
        df = tp.locate(_wrap_pad(img, periodic, pad), diameter, minmass=minmass, separation=separation, engine=engine)
        cols = ["z", "y", "x"][-img.ndim:]
        keep = np.ones(len(df), bool)
        for k, (col, p) in enumerate(zip(cols, periodic)):
            if p:
                df[col] = df[col] - pad
                keep &= (df[col].to_numpy() >= -0.5) & (df[col].to_numpy() < img.shape[k] - 0.5)
        df = df[keep].copy()
        for col, p, n in zip(cols, periodic, img.shape):
            if p:
                df[col] = np.mod(df[col], n)
        df["frame"] = step
        feats.append(df)
    return pd.concat(feats, ignore_index=True)


def _trackpy_link(movie: AnyMovie, feats, search_range: float, memory: int, min_length: int = 1):
    import trackpy as tp

    if not len(feats):
        return feats.assign(particle=[])
    img_shape = movie.shape[1:] if movie.nz else movie.shape
    cols = ["z", "y", "x"][-len(img_shape):]
    linked = tp.link(feats, search_range=search_range, pos_columns=cols, memory=memory,
                     to_eucl=_embed(_image_periodic(movie), img_shape))
    if min_length > 1:
        linked = tp.filter_stubs(linked, min_length).reset_index(drop=True)
    return linked


def _trackpy_result(movie: AnyMovie, frames: Sequence[np.ndarray], feats, linked, seconds: float) -> dict:
    """Our result format from trackpy's features (detections) and linked table (rows)."""
    ndim_img = len(movie.shape) - (1 if movie.nz else 0)
    cols = ["z", "y", "x"][-ndim_img:]
    mid = (frames[0].shape[0] - 1) / 2.0

    def pos_box(r) -> tuple[np.ndarray, np.ndarray]:
        p = np.array([getattr(r, c) for c in cols], dtype=float)
        half = float(r.size) * np.sqrt(2.0)  # trackpy size = Gaussian sigma-like radius of gyration
        box = np.array([[v - half, v + half] for v in p])
        if movie.nz:
            p = np.r_[mid, p]
            box = np.vstack([[0, frames[0].shape[0] - 1], box])
        return p, box

    dets: list[list] = [[] for _ in frames]
    for r in feats.itertuples():
        p, box = pos_box(r)
        dets[int(r.frame)].append((p, box, float(r.mass)))
    rows = [(int(r.frame), int(r.particle), pos_box(r)[0]) for r in linked.itertuples()]
    return {"dets": dets, "rows": rows, "edges": [], "seconds": seconds}


def run_trackpy(movie: AnyMovie, frames: list[np.ndarray], prm: dict | None = None) -> dict:
    """trackpy locate + link with ``prm`` (default: ``trackpy_params``, the legacy rule set)."""
    prm = prm or trackpy_params(movie, frames)
    t0 = time.process_time()
    feats = _trackpy_locate(movie, frames, prm["diameter"], prm["separation"], prm["minmass"])
    linked = _trackpy_link(movie, feats, prm["search_range"], prm["memory"])
    return _trackpy_result(movie, frames, feats, linked, time.process_time() - t0)


def trackpy_sweep(movie: AnyMovie, frames: list[np.ndarray]) -> tuple[dict, dict]:
    """trackpy settings tuned on ``movie``'s truth: best MOTA + IDF1 over a grid (the tuning seed, not a held-out one).

    Grid from the truth's typical e-fold radius ``R`` and the field's std:
    diameter 2 round(f R) + 1 for f in (1.0, 1.5); minmass m x std x pi R^2
    for m in (0.25, 0.5, 1, 2); search range (1.2 R, 2 R) (>= 3 cells);
    separation max(3, round(R)); memory 3.  ``locate`` runs once per
    diameter at the smallest minmass; the larger ones filter its features.
    Returns (best settings, their scores on the tuning movie).
    """
    R = float(movie.radius)
    std = float(np.mean([_image(movie, f).std() for f in frames[:: max(1, len(frames) // 8)]]))
    best: tuple[float, dict, dict] | None = None
    masses = [m * std * np.pi * R * R for m in (0.25, 0.5, 1.0, 2.0)]
    ranges = sorted({max(3.0, 1.2 * R), max(3.0, 2.0 * R)})
    for f in (1.0, 1.5):
        diameter = int(2 * round(f * R) + 1)
        diameter = max(diameter, 3)
        sep = max(3, int(round(R)))
        feats_all = _trackpy_locate(movie, frames, diameter, sep, masses[0])
        for mm_, sr in itertools.product(masses, ranges):
            feats = feats_all[feats_all["mass"] >= mm_].reset_index(drop=True)
            linked = _trackpy_link(movie, feats, sr, 3)
            s = score(movie, _trackpy_result(movie, frames, feats, linked, 1.0))
            prm = {"diameter": diameter, "minmass": float(mm_), "separation": sep, "search_range": float(sr), "memory": 3}
            key = s["mota"] + s["idf1"]
            if best is None or key > best[0]:
                best = (key, prm, s)
    assert best is not None
    return best[1], best[2]


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------ xblobs
def run_xblobs(movie: AnyMovie, frames: list[np.ndarray], threshold: float = 2.5) -> dict:
    """xblobs 1.0.2 itself: ``find_blobs`` on the whole movie (time, radial, binormal) as its docs show.

    xblobs thresholds ``n - profile > threshold * std`` and labels the 3D
    (time, y, x) array with ``scipy.ndimage.label`` (face connectivity): a
    blob is one space-time component, so its ID is whatever overlaps from
    frame to frame.  Per frame, a label's centroid is the density-weighted
    centre of its cells and its box their extent (what ``xblobs.Blob.com``
    computes; done here in one ``ndimage`` pass instead of one xarray
    ``where`` per blob).  Offline: it needs every frame at once; no periodic
    seams; in 3D filament movies the middle slice (xblobs is 2D+t).
    Merges/splits: none (one label per space-time component).
    """
    if _is_volume(movie):
        raise NotImplementedError("xblobs is 2D + time only; this movie is a 3D volume")
    import xarray as xr
    from xblobs import find_blobs

    t0 = time.process_time()
    movie_arr = np.stack([_image(movie, f) for f in frames])
    nt, ny, nx = movie_arr.shape
    ds = xr.Dataset({"n": (("time", "binormal", "radial"), movie_arr)},
                    coords={"time": np.arange(nt), "binormal": np.arange(ny), "radial": np.arange(nx)})
    ds = find_blobs(ds, threshold=threshold, scale_threshold="std", region=-1.0, background="profile")
    lab = np.asarray(ds["blob_labels"].values).astype(np.int64)
    dets: list[list] = [[] for _ in frames]
    rows = []
    min_area = max(4, int(0.5 * movie.radius ** 2))
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
            pos = np.r_[mid, yx] if movie.nz else yx
            if movie.nz:
                box = np.vstack([[0, frames[0].shape[0] - 1], box])
            dets[t].append((pos, box, float(area[k])))
            rows.append((t, int(tid), pos))
    return {"dets": dets, "rows": rows, "edges": [], "seconds": time.process_time() - t0}


# ------------------------------------------------------------ robust z link
def weighted_centroids(labels: np.ndarray, n: int, weight: np.ndarray, periodic: Sequence[bool]) -> np.ndarray:
    """(n, ndim) weighted centroids of labels 1..n; on periodic axes about the circular mean (minimum image), in [0, L)."""
    flat = labels.ravel()
    sel = flat > 0
    lab = flat[sel] - 1
    w = np.clip(weight.ravel()[sel], 1e-12, None)
    wsum = np.bincount(lab, w, n)
    coords = np.unravel_index(np.flatnonzero(sel), labels.shape)
    out = np.empty((n, labels.ndim))
    for axis, L in enumerate(labels.shape):
        x = coords[axis].astype(float)
        if periodic[axis]:
            ang = 2 * np.pi * x / L
            ref = np.arctan2(np.bincount(lab, w * np.sin(ang), n), np.bincount(lab, w * np.cos(ang), n)) * L / (2 * np.pi)
            d = (x - ref[lab] + L / 2) % L - L / 2
            c = (ref + np.bincount(lab, w * d, n) / wsum) % L
            out[:, axis] = np.where(c >= L, c - L, c)
        else:
            out[:, axis] = np.bincount(lab, w * x, n) / wsum
    return out


def robust_z_detect(f: np.ndarray, periodic: Sequence[bool], z: float = 4.0, min_area: int = 4
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroids, areas, summed z) of components of z = (f - median) / (1.4826 MAD) > ``z``, >= ``min_area`` cells."""
    med = float(np.median(f))
    mad = 1.4826 * float(np.median(np.abs(f - med)))
    zf = (f - med) / (mad if mad > 0 else (float(f.std()) or 1.0))
    labels, n = periodic_label(zf > z, periodic, ndimage.generate_binary_structure(f.ndim, f.ndim))
    if n == 0:
        return np.zeros((0, f.ndim)), np.zeros(0), np.zeros(0)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    mass = ndimage.sum_labels(zf, labels, np.arange(1, n + 1))
    cent = weighted_centroids(labels, n, zf, periodic)
    keep = area >= min_area
    return cent[keep], area[keep].astype(float), np.asarray(mass)[keep]


def run_robust_z(movie: AnyMovie, frames: list[np.ndarray], z: float = 4.0, min_area: int = 4,
                 search_range: float = 5.0, memory: int = 2, min_length: int = 3) -> dict:
    """``robust_z_link``: robust z threshold + label + trackpy.link (+ filter_stubs); fixed settings, untuned."""
    import pandas as pd

    t0 = time.process_time()
    ndim = frames[0].ndim
    periodic = list(movie.periodic)
    cols = ["z", "y", "x"][-ndim:]
    dets: list[list] = []
    tables = []
    for t, f in enumerate(frames):
        cent, area, mass = robust_z_detect(f, periodic, z, min_area)
        frame = []
        for c, a, m in zip(cent, area, mass):
            r = (3 * a / (4 * np.pi)) ** (1 / 3) if ndim == 3 and not movie.nz else np.sqrt(a / np.pi)
            frame.append((c, np.stack([c - r + 0.5, c + r - 0.5], axis=1), float(m)))
        dets.append(frame)
        df = pd.DataFrame(cent, columns=cols)
        df["frame"] = t
        df["size"] = 1.0
        df["mass"] = mass
        tables.append(df)
    feats = pd.concat(tables, ignore_index=True)
    rows = []
    if len(feats):
        import trackpy as tp

        tp.quiet()
        linked = tp.link(feats, search_range=search_range, pos_columns=cols, memory=memory,
                         to_eucl=_embed(periodic, movie.shape))
        if min_length > 1:
            linked = tp.filter_stubs(linked, min_length).reset_index(drop=True)
        rows = [(int(r.frame), int(r.particle), np.array([getattr(r, c) for c in cols], dtype=float))
                for r in linked.itertuples()]
    return {"dets": dets, "rows": rows, "edges": [], "seconds": time.process_time() - t0}


# ----------------------------------------------------------------- overlap
def run_overlap(movie: AnyMovie, frames: list[np.ndarray], threshold: float = 2.5) -> dict:
    """xblobs-style: per frame threshold at mean + 2.5 std, label, link objects whose masks overlap.

    A label inherits the ID of the previous frame's label it overlaps most;
    several children of one parent: the largest keeps it, others start new
    IDs (a split link); several parents: the largest wins (a merge link).
    """
    t0 = time.process_time()
    structure = ndimage.generate_binary_structure(frames[0].ndim, 2)
    prev_lab, prev_ids = None, {}
    next_id = 1
    dets, rows, edges = [], [], []
    min_area = max(4, int(0.5 * movie.radius ** 2))
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
    return {"dets": dets, "rows": rows, "edges": edges, "seconds": time.process_time() - t0}


# ----------------------------------------------------------------- metrics
def _delta(a: np.ndarray, b: np.ndarray, movie: AnyMovie) -> np.ndarray:
    d = a[:, None, :] - b[None, :, :]
    for k, p in enumerate(movie.periodic):
        if p:
            L = movie.shape[k]
            d[..., k] -= L * np.round(d[..., k] / L)
    return d


def _dist(a: np.ndarray, b: np.ndarray, movie: AnyMovie) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return np.sqrt((_delta(a, b, movie) ** 2).sum(-1))


def _truth_frame(movie: AnyMovie, t: int) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    rows = movie.truth[t]
    ids = [r["id"] for r in rows]
    pos = np.array([r["c"] for r in rows], dtype=float).reshape(-1, len(movie.shape))
    gate = np.array([r["width"] for r in rows], dtype=float)
    half = np.tile(gate[:, None], (1, len(movie.shape)))
    if movie.nz:
        half[:, 0] = (movie.nz - 1) / 2.0
    return ids, pos, gate, half


def detection_scores(movie: AnyMovie, dets: list[list]) -> tuple[float, float]:
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


def tracking_scores(movie: AnyMovie, rows: list) -> tuple[float, float, float, int]:
    """(MOTA, IDF1, HOTA, identity switches) of the track rows ``(frame, track id, position)``."""
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
    summary = mh.compute(acc, metrics=["mota", "idf1", "num_switches"], name="x")
    return (float(summary["mota"].iloc[0]), float(summary["idf1"].iloc[0]), hota(frames),
            int(summary["num_switches"].iloc[0]))


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


def edge_recall(movie: AnyMovie, rows: list, edges: list) -> float | None:
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


def _ignored(movie: AnyMovie, t: int, hpos: np.ndarray) -> np.ndarray:
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


def drop_ignored(movie: AnyMovie, res: dict) -> dict:
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




def score(movie: AnyMovie, res: dict) -> dict:
    """Every metric of one method's result on one movie (hypotheses on ignored edge blobs dropped first)."""
    res = drop_ignored(movie, res)
    det_f1, ap50 = detection_scores(movie, res["dets"])
    mota, idf1, h, switches = tracking_scores(movie, res["rows"])
    out: dict[str, float] = {"mota": mota, "idf1": idf1, "hota": h, "det_f1": det_f1, "id_switches": switches}
    if isinstance(movie, Movie):  # AP50 needs truth extents: the legacy regimes' blob widths
        out["ap50"] = ap50
    out["frames_per_s"] = movie.n_frames / res["seconds"] if res["seconds"] > 0 else float("inf")
    er = edge_recall(movie, res["rows"], res["edges"]) if res["edges"] else None
    if er is not None:
        out["edge_recall"] = er
    return {k: (int(v) if k == "id_switches" else round(float(v), 4)) for k, v in out.items()}


# ----------------------------------------------------------------- driver
def _sizes(quick: bool, a: argparse.Namespace) -> dict:
    return {"size": a.size or (128 if quick else 256), "frames": a.frames or (30 if quick else 60),
            "nz": a.nz or (8 if quick else 32), "gs_size": a.gs_size or (32 if quick else 64),
            "gs_frames": a.frames or (20 if quick else 40)}


def _movie(regime: str, seed: int, sz: dict) -> tuple[AnyMovie, list[np.ndarray], float]:
    n = sz["gs_frames"] if regime == "gray_scott" else sz["frames"]
    movie = make_movie(regime, sz["size"], n, seed, nz=sz["nz"], gs_size=sz["gs_size"])
    t0 = time.perf_counter()
    frames = [np.ascontiguousarray(f) for _, f in movie.frames()]
    return movie, frames, time.perf_counter() - t0


def _mean(results: list[dict]) -> dict:
    ok = [r for r in results if "error" not in r and "skipped" not in r]
    if not ok:
        return results[0]
    keys = [k for k in ok[0] if all(k in r for r in ok)]
    out: dict[str, Any] = {k: round(float(np.mean([r[k] for r in ok])), 4) for k in keys}
    if len(ok) > 1:
        out["per_seed"] = [{k: r[k] for k in KEYS} for r in ok]
    if len(ok) < len(results):
        out["failed_seeds"] = len(results) - len(ok)
    return out


def _guard(fn: Callable[[], dict]) -> dict:
    """A method's scores, or why it could not run (a broken baseline does not end the benchmark)."""
    try:
        return fn()
    except (ImportError, NotImplementedError) as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # noqa: BLE001  (reported in the JSON, the run goes on)
        log.exception("method failed")
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_regime(regime: str, seeds: Sequence[int], sz: dict, skip: set[str]) -> dict:
    """Every method on every seed of ``regime``: means (and per-seed figures when several seeds)."""
    per: dict[str, list[dict]] = defaultdict(list)
    info: dict[str, Any] = {"seeds": list(seeds)}
    tp_prm = None
    if regime in NEW_REGIMES and "trackpy_tuned" not in skip:
        t0 = time.perf_counter()
        tune_movie, tune_frames, _ = _movie(regime, TUNING_SEED, sz)
        try:
            tp_prm, tune_scores = trackpy_sweep(tune_movie, tune_frames)
            info["trackpy_tuned_on"] = {"seed": TUNING_SEED, "params": {k: round(v, 3) for k, v in tp_prm.items()},
                                        "mota": tune_scores["mota"], "idf1": tune_scores["idf1"],
                                        "sweep_s": round(time.perf_counter() - t0, 1)}
        except ImportError as exc:
            info["trackpy_tuned_on"] = {"skipped": str(exc)}
    gen = 0.0
    for seed in seeds:
        movie, frames, g = _movie(regime, seed, sz)
        gen += g
        info.update(shape=list(frames[0].shape), frames=len(frames), blocks=len(movie.blocks),
                    truth_tracks=len({r["id"] for f in movie.truth for r in f}),
                    truth_per_frame=round(float(np.mean([len(r) for r in movie.truth])), 1))
        runs: dict[str, Callable[[], dict]] = {
            "ours_default": lambda: score(movie, run_ours_default(movie, frames)),
            "trackpy_tuned": lambda: score(movie, run_trackpy(movie, frames, tp_prm)),
            "xblobs": lambda: score(movie, run_xblobs(movie, frames)),
            "robust_z_link": lambda: score(movie, run_robust_z(movie, frames)),
            "overlap": lambda: score(movie, run_overlap(movie, frames)),
        }
        if regime in LEGACY_REGIMES:
            runs["ours_tuned"] = lambda: score(movie, run_ours(movie, frames))
        for name in METHODS:
            if name in runs and name not in skip:
                per[name].append(_guard(runs[name]))
    info["generate_s"] = round(gen, 1)
    out = {name: _mean(per[name]) for name in METHODS if per.get(name)}
    out["info"] = info
    return out


def speed_figures(quick: bool, sides: Sequence[int] = (256, 1024)) -> dict:
    """``ours_default`` frames/s (one rank, one block, one core) on the ``amplitudes`` field at each side.

    24 blobs per 256^2 (384 at 1024^2); frames/s = frames / CPU seconds of
    detection + tracking.  ``--quick``: 15 frames at 256^2, 6 at 1024^2.
    """
    out: dict[str, Any] = {}
    for side in sides:
        n = (15 if side <= 256 else 6) if quick else (60 if side <= 256 else 20)
        gen = Amplitudes(side, side, blobs_for(side), 100)
        frames = []
        for t in range(n):
            if t:
                gen.advance()
            frames.append(gen.render()[0])
        movie = make_movie("amplitudes", side, n, 100)  # the movie's shape and periodicity; frames from gen
        whole = [((0, 0), (side, side))]
        res = run_pipeline(movie, frames, blocks=whole, n_ranks=1)
        out[f"frames_per_s_{side}"] = round(n / res["seconds"], 1) if res["seconds"] > 0 else float("inf")
        out[f"detect_ms_{side}"] = round(1e3 * res["detect_s"] / n, 2)
        out[f"track_ms_{side}"] = round(1e3 * res["track_s"] / n, 2)
        out[f"objects_per_frame_{side}"] = blobs_for(side)
        out[f"detections_per_frame_{side}"] = round(float(np.mean([len(d) for d in res["dets"]])), 1)
        out[f"frames_{side}"] = n
    out["timing"] = "CPU seconds of process_blocks + combine + tracking, one rank, one block; field generation excluded"
    return out


def _table(out: dict) -> str:
    methods = [m for m in METHODS if any(m in r for r in out["regimes"].values())]
    lines = ["defaults-only table: MOTA / IDF1 / HOTA / det F1 (id switches); "
             f"seeds {out['seeds']}, {'quick' if out['quick'] else 'full'} sizes",
             "| regime | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for regime, r in out["regimes"].items():
        cells = []
        for m in methods:
            v = r.get(m)
            if v is None:
                cells.append("")
            elif "error" in v or "skipped" in v:
                cells.append("n/a")
            else:
                cells.append(f"{v['mota']:.2f} / {v['idf1']:.2f} / {v['hota']:.2f} / {v['det_f1']:.2f} "
                             f"({v['id_switches']:.0f})")
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    sp = out.get("speed", {})
    if sp:
        lines.append(f"ours_default frames/s (one core): 256^2 {sp.get('frames_per_s_256')}, "
                     f"1024^2 {sp.get('frames_per_s_1024')}")
    sc = out.get("scale", {}).get("spots3d_64")
    if sc:
        lines.append(f"Gray-Scott 64^3: {sc['steps_per_s']:.1f} steps/s, tracking {100 * sc['track_share']:.0f} % "
                     f"of the step, det F1 {sc['det_f1']:.3f}, MOTA {sc['mota']:.3f}, IDF1 {sc['idf1']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regime", default="all", help=f"all, none (speed and scale only), or comma-separated among: {', '.join(REGIMES)}")
    p.add_argument("--seeds", default=None, help="comma-separated held-out seeds (default 100,101,102; --quick: 100)")
    p.add_argument("--size", type=int, default=None, help="2D grid side (default 256; --quick 128)")
    p.add_argument("--frames", type=int, default=None, help="frames per movie (default 60, Gray-Scott 40; --quick 30 / 20)")
    p.add_argument("--nz", type=int, default=None, help="3d regime: cells along the filament axis (default 32; --quick 8)")
    p.add_argument("--gs-size", type=int, default=None, help="Gray-Scott cube side (default 64; --quick 32)")
    p.add_argument("--quick", action="store_true", help="one seed, small sizes: ~3 minutes on 2 cores")
    p.add_argument("--skip", default="", help="comma-separated methods or sections to skip "
                   f"({', '.join(METHODS)}, speed, scale)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="tracking_bench: %(message)s")
    warnings.filterwarnings("ignore")
    regimes = (list(REGIMES) if a.regime == "all" else [] if a.regime == "none"
               else [r.strip() for r in a.regime.split(",") if r.strip()])
    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        p.error(f"unknown regime(s) {bad}; known: {', '.join(REGIMES)}")
    try:
        seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else ([100] if a.quick else list(HELD_OUT_SEEDS))
    except ValueError:
        p.error(f"--seeds must be comma-separated integers such as 100,101,102; got {a.seeds!r}")
    if any(s < 100 for s in seeds):
        log.warning("seeds below 100 are not held out (the tuning seed is %d)", TUNING_SEED)
    skip = set(filter(None, (s.strip() for s in a.skip.split(","))))
    sz = _sizes(a.quick, a)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"quick": a.quick, "seeds": seeds, "sizes": sz, "regimes": {}}
    for regime in regimes:
        t1 = time.perf_counter()
        out["regimes"][regime] = run_regime(regime, seeds, sz, skip)
        out["regimes"][regime]["info"]["wall_s"] = round(time.perf_counter() - t1, 1)
        print(f"[{time.perf_counter() - t0:6.1f} s] {regime} done", file=sys.stderr, flush=True)
    if "speed" not in skip:
        out["speed"] = _guard(lambda: speed_figures(a.quick))
    if "scale" not in skip:
        try:
            from tracking_scale import scale_figures

            out["scale"] = scale_figures(a.quick)
        except Exception as exc:  # noqa: BLE001  (reported, the run goes on)
            out["scale"] = {"error": f"{type(exc).__name__}: {exc}"}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(_table(out), file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
