"""Compare a catalog's tracks with the ground truth a reference simulation wrote.

Truth is a CSV with ``step,blob_id,c0,c1`` (more columns allowed), one row
per blob per step it is inside the domain.  Per step, truth and detections are
paired one-to-one (Hungarian assignment, minimum-image distance on periodic
axes) within ``tolerance`` cells.  A true blob is *matched* by the track that
covers most of its steps, when that track covers at least ``coverage`` of
them and no other true blob claims the same track.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter, defaultdict
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclasses.dataclass
class TrackComparison:
    tracks_true: int
    tracks_found: int
    tracks_matched: int
    detection_recall: float
    detection_precision: float
    centroid_error_mean: float
    steps: int


def read_truth(path: str) -> dict[int, list[dict[str, float]]]:
    """Truth rows grouped by step."""
    out: dict[int, list[dict[str, float]]] = defaultdict(list)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"step", "blob_id", "c0", "c1"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"truth file {path!r} lacks column(s) {sorted(missing)}; it has {reader.fieldnames}")
        for row in reader:
            out[int(row["step"])].append({k: float(v) for k, v in row.items() if v != ""})
    return dict(out)


def _distances(a: np.ndarray, b: np.ndarray, shape: Sequence[int] | None, periodic: Sequence[bool]) -> np.ndarray:
    d = a[:, None, :] - b[None, :, :]
    for k, per in enumerate(periodic):
        if per and shape is not None:
            L = shape[k]
            d[..., k] = (d[..., k] + L / 2) % L - L / 2
    return np.sqrt((d**2).sum(-1))


def compare_tracks(
    truth: Mapping[int, Sequence[Mapping[str, float]]],
    track_rows: Sequence[Mapping[str, float]],
    *,
    shape: Sequence[int] | None = None,
    periodic: Sequence[bool] = (False, False),
    tolerance: float = 2.0,
    coverage: float = 0.8,
    min_length: int = 3,
    steps: Sequence[int] | None = None,
) -> TrackComparison:
    """Score tracking rows (``step, track_id, c0, c1``) against truth.

    ``steps`` restricts the comparison to the steps the analytics saw (so a
    dropped step is not counted against detection); default: every truth step.
    """
    by_step: dict[int, list[Mapping[str, float]]] = defaultdict(list)
    for r in track_rows:
        by_step[int(r["step"])].append(r)
    considered = sorted(steps) if steps is not None else sorted(truth)
    hits: dict[int, Counter[int]] = defaultdict(Counter)
    true_steps: Counter[int] = Counter()
    n_true = n_found = n_matched = 0
    errors: list[float] = []
    for step in considered:
        t = truth.get(step, [])
        f = by_step.get(step, [])
        n_true += len(t)
        n_found += len(f)
        for row in t:
            true_steps[int(row["blob_id"])] += 1
        if not t or not f:
            continue
        ta = np.array([[r["c0"], r["c1"]] for r in t])
        fa = np.array([[r["c0"], r["c1"]] for r in f])
        dist = _distances(ta, fa, shape, periodic)
        rows, cols = linear_sum_assignment(dist)
        for i, j in zip(rows, cols):
            if dist[i, j] <= tolerance:
                n_matched += 1
                errors.append(float(dist[i, j]))
                hits[int(t[i]["blob_id"])][int(f[j]["track_id"])] += 1
    lengths = Counter(int(r["track_id"]) for r in track_rows if steps is None or int(r["step"]) in set(considered))
    claimed: dict[int, int] = {}
    for blob_id, counter in hits.items():
        track_id, n = counter.most_common(1)[0]
        if n >= coverage * true_steps[blob_id]:
            if track_id not in claimed or n > hits[claimed[track_id]][track_id]:
                claimed[track_id] = blob_id
    return TrackComparison(
        tracks_true=len(true_steps),
        tracks_found=sum(1 for n in lengths.values() if n >= min_length),
        tracks_matched=len(claimed),
        detection_recall=n_matched / n_true if n_true else 1.0,
        detection_precision=n_matched / n_found if n_found else 1.0,
        centroid_error_mean=float(np.mean(errors)) if errors else float("nan"),
        steps=len(considered),
    )
