#!/usr/bin/env python3
"""Detection + tracking at scale: ADIOS2's Gray-Scott at 64^3 (~600 spots per step that split and merge).

    python benchmarks/tracking_scale.py [--quick] [--frames N] [--seed S]

The field is ``examples/gray_scott.py`` (ADIOS2's Gray-Scott example in
numpy, its default settings F = 0.01, k = 0.05, Du = 0.2, Dv = 0.1, dt = 2;
1500 model steps of warm-up, one frame every 10 model steps; white Gaussian
observation noise of 0.02 on V).  Its ground truth never touches the
analyzers: spots are the connected components of the noise-free V > 0.2,
linked by overlap (``gray_scott.py`` says how).

The pipeline is the default one, untuned: ``BlobDetector(periodic=[True]*3)``
then ``BlobTracker(periodic=[True]*3)``, every other parameter at its
default.  It runs through ``benchmarks/tracking.py``'s harness
(``run_pipeline``, the one every regime there uses), the way the service
runs it: the frame is cut into 3 x 2 uneven blocks (axis 0: 17, 25, 22
cells; axis 1: 29, 35), held by a ``MemoryStepReader`` and read by 3
simulated ranks (each its own detector instance, as on real ranks; halo
read when the detector declares one).  Each rank runs ``process_blocks`` on
its share in its own thread so its ``allreduce`` calls meet the others' (a
barrier sums them); rank 0 then runs the detector's ``combine`` and the
tracker's ``combine``.  Every track row is scored, the rows an occluded
track reports at its prediction (``object = -1``) included, as in the
regimes of ``benchmarks/tracking.py``.

Timings are CPU seconds of those calls (``time.thread_time`` per rank,
summed over ranks: what one core would spend), field generation and the
in-memory transport excluded.  ``steps_per_s = 1 / (detect + track)``.

Scores, per frame, truth centroids and detections (or track rows) paired
one-to-one by Hungarian assignment on the periodic minimum-image distance,
within a gate of ``GATE`` = 3 cells (a spot's radius is ~2 cells, spots
are ~7 cells apart): detection precision / recall / F1 over all frames;
MOTA and IDF1 (motmetrics, same gate) against the overlap identities --
in a split the largest piece keeps the truth id, the others (and a merge's
result) get new ones.  ``level_baseline_det_f1``: the detection F1 of a
plain threshold of the observed V at the truth level 0.2 (components of >= 3
cells), a reference for what the noise allows, not a rival method.

The last line of output is one JSON object: ``{"spots3d_64": {...}}``
(``scale_figures`` returns the same dict, for benchmarks/tracking.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "examples", ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from gray_scott import GrayScott, Truth  # noqa: E402


log = logging.getLogger("tracking_scale")

SHAPE = (64, 64, 64)
ROWS = (17, 25, 22)  # uneven blocks along axis 0
COLS = (29, 35)      # and axis 1 (axis 2 whole)
RANKS = 3
GATE = 3.0


# ------------------------------------------------------------------ field
def make_frames(n: int, seed: int) -> tuple[GrayScott, list[tuple[int, np.ndarray, Truth]]]:
    """``n`` Gray-Scott frames (model float32 for speed; the observed field is float64)."""
    gs = GrayScott(SHAPE, seed, dtype="float32")
    return gs, list(gs.frames(n, every=10))


def level_baseline(gs: GrayScott, frames: Sequence[tuple[int, np.ndarray, Truth]], min_size: int = 3) -> list[np.ndarray]:
    """What a user who states the level gets from a plain threshold: components of the OBSERVED V > 0.2
    (>= ``min_size`` cells), with the truth's own labeller -- a reference for the detector, not a rival."""
    out = []
    for _, v, _ in frames:
        labels, n = gs.label(v)
        cent, size = gs.spots(labels, n)
        out.append(cent[size >= min_size])
    return out


#: (start, count) of the uneven blocks: ROWS along axis 0 x COLS along axis 1, axis 2 whole.
BLOCKS = [((sum(ROWS[:a]), sum(COLS[:b]), 0), (ROWS[a], COLS[b], SHAPE[2]))
          for a in range(len(ROWS)) for b in range(len(COLS))]


# --------------------------------------------------------------- pipeline
def run_pipeline(frames: Sequence[tuple[int, np.ndarray, Truth]]) -> dict[str, Any]:
    """The default pipeline over every frame, through ``benchmarks/tracking.py``'s harness.

    The harness (``tracking.run_pipeline``) is the service's reading path that
    every regime of the benchmark goes through: a ``MemoryStepReader`` over the
    uneven blocks, ``RANKS`` simulated ranks in threads (halo read when the
    detector declares one), ``combine`` on rank 0, then the tracker; the
    registry's default analyzers with ``periodic`` on every axis.
    """
    from tracking import run_pipeline as harness

    movie = types.SimpleNamespace(periodic=[True] * 3, blocks=BLOCKS, nz=0)
    res = harness(movie, [v for _, v, _ in frames], n_ranks=RANKS)
    detections = [np.array([d[0] for d in step]).reshape(-1, 3) for step in res["dets"]]
    rows = [(i, tid, np.asarray(pos, dtype=float)) for i, tid, pos in res["rows"]]
    return {"detections": detections, "rows": rows, "t_detect": res["detect_steps"],
            "t_track": res["track_steps"], "halo": res["halo"]}


# ------------------------------------------------------------------ scores
def gated_distances(a: np.ndarray, b: np.ndarray, gate: float = GATE) -> np.ndarray:
    """Dense (len(a), len(b)) periodic minimum-image distances, NaN beyond ``gate`` (k-d tree with boxsize)."""
    out = np.full((len(a), len(b)), np.nan)
    if len(a) and len(b):
        box = np.array(SHAPE, dtype=float)
        ta, tb = cKDTree(np.mod(a, box), boxsize=box), cKDTree(np.mod(b, box), boxsize=box)
        sparse = ta.sparse_distance_matrix(tb, gate, output_type="coo_matrix")
        out[sparse.row, sparse.col] = sparse.data
        # sparse_distance_matrix drops exact zeros: recover coincident points
        same = ta.query_ball_tree(tb, 1e-12)
        for i, js in enumerate(same):
            out[i, js] = 0.0
    return out


def match(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs within the gate, Hungarian on the distances (unreachable pairs forbidden)."""
    d = gated_distances(a, b)
    if not np.isfinite(d).any():
        return []
    big = GATE * (min(d.shape) + 1) + 1.0
    r, c = linear_sum_assignment(np.where(np.isfinite(d), d, big))
    return [(int(i), int(j)) for i, j in zip(r, c) if np.isfinite(d[i, j])]


def detection_scores(frames: Sequence[tuple[int, np.ndarray, Truth]], detections: Sequence[np.ndarray]) -> dict:
    tp = n_true = n_det = 0
    for (_, _, truth), det in zip(frames, detections):
        t = np.array([s.centroid for s in truth.spots]).reshape(-1, 3)
        tp += len(match(t, det))
        n_true += len(t)
        n_det += len(det)
    p = tp / n_det if n_det else 1.0
    r = tp / n_true if n_true else 1.0
    return {"det_precision": p, "det_recall": r, "det_f1": 2 * p * r / (p + r) if p + r else 0.0}


def tracking_scores(frames: Sequence[tuple[int, np.ndarray, Truth]], rows: Sequence[tuple[int, int, np.ndarray]]) -> dict:
    import motmetrics as mm

    by_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, tid, pos in rows:
        by_frame.setdefault(i, []).append((tid, pos))
    acc = mm.MOTAccumulator(auto_id=True)
    for i, (_, _, truth) in enumerate(frames):
        t_ids = [s.id for s in truth.spots]
        t_pos = np.array([s.centroid for s in truth.spots]).reshape(-1, 3)
        h = by_frame.get(i, [])
        h_ids = [tid for tid, _ in h]
        h_pos = np.array([p for _, p in h]).reshape(-1, 3)
        acc.update(t_ids, h_ids, gated_distances(t_pos, h_pos))
    mh = mm.metrics.create()
    s = mh.compute(acc, metrics=["mota", "idf1", "num_switches"], name="ours")
    return {"mota": float(s["mota"].iloc[0]), "idf1": float(s["idf1"].iloc[0]),
            "id_switches": int(s["num_switches"].iloc[0])}


# ------------------------------------------------------------------ figures
def scale_figures(quick: bool = False, *, frames: int | None = None, seed: int = 0) -> dict:
    """``{"spots3d_64": {...}}``: speed and accuracy of the default pipeline on Gray-Scott at 64^3.

    ``quick``: 30 frames (else 200).  Takes ~15 s of field generation plus the pipeline.
    """
    n = frames if frames is not None else (30 if quick else 200)
    t0 = time.perf_counter()
    gs, movie = make_frames(n, seed)
    t_field = time.perf_counter() - t0
    out = run_pipeline(movie)
    det = np.array(out["t_detect"])
    trk = np.array(out["t_track"])
    step_s = float(np.mean(det + trk))
    fig: dict[str, Any] = {
        "steps_per_s": 1.0 / step_s if step_s > 0 else float("inf"),
        "detect_s_per_step": float(np.mean(det)),
        "track_s_per_step": float(np.mean(trk)),
        "track_share": float(trk.sum() / (det.sum() + trk.sum())) if det.sum() + trk.sum() > 0 else 0.0,
        "objects_per_step": float(np.mean([len(t.spots) for _, _, t in movie])),
        "detections_per_step": float(np.mean([len(d) for d in out["detections"]])),
        "splits_merges_per_step": float(np.mean([len(t.edges) for _, _, t in movie])),
    }
    fig.update(detection_scores(movie, out["detections"]))
    fig.update(tracking_scores(movie, out["rows"]))
    fig["level_baseline_det_f1"] = detection_scores(movie, level_baseline(gs, movie))["det_f1"]
    fig.update({"frames": n, "seed": seed, "shape": list(SHAPE), "blocks": [list(ROWS), list(COLS), [SHAPE[2]]],
                "ranks": RANKS, "halo_read": out["halo"], "gate_cells": GATE, "field_s": round(t_field, 1),
                "timing": "CPU seconds per step (ranks summed), field generation excluded",
                "pipeline": "BlobDetector(periodic=[True]*3) + BlobTracker(periodic=[True]*3), defaults"})
    return {"spots3d_64": fig}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="30 frames instead of 200")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="tracking_scale: %(message)s")
    print(json.dumps(scale_figures(a.quick, frames=a.frames, seed=a.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
