"""Small versions of the benchmark regimes with asserted floors; CPU/torch parity; merge/split links."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))

import tracking as bench  # noqa: E402
from regimes import make_movie  # noqa: E402

from intransit.analyzers.blobs import BlobDetector  # noqa: E402
from tests.test_blob_detection import assert_same, cut, run  # noqa: E402

FLOORS = {  # small movies (128^2, 24 frames, seed 1); the full benchmark's figures are in docs/tracking.md
    "sparse": dict(det_f1=0.95, mota=0.95, idf1=0.95),
    "crossing": dict(det_f1=0.85, mota=0.9, idf1=0.9),  # det 0.90: pairs closer than 1.4 w are one maximum
    "merge": dict(det_f1=0.9, mota=0.85, idf1=0.75),
    "3d": dict(det_f1=0.95, mota=0.95, idf1=0.95),
}


@pytest.fixture(scope="module")
def movies():
    out = {}
    for regime in FLOORS:
        m = make_movie(regime, 128, 24, seed=1, nz=6)
        out[regime] = (m, [f for _, f in m.frames()])
    return out


@pytest.mark.parametrize("regime", list(FLOORS))
def test_regime_floors(movies, regime):
    movie, frames = movies[regime]
    res = bench.score(movie, bench.run_ours(movie, frames))
    for key, floor in FLOORS[regime].items():
        assert res[key] >= floor, (regime, key, res)


def test_merge_regime_records_parent_links(movies):
    movie, frames = movies["merge"]
    res = bench.run_ours(movie, frames)
    assert res["edges"], "merge/split links expected in the merge regime"
    assert bench.edge_recall(movie, res["rows"], res["edges"]) > 0.2


@pytest.mark.parametrize("regime", ["crossing", "3d"])
def test_torch_parity_on_regime_frames(movies, regime):
    movie, frames = movies[regime]
    det_kw, _ = bench.ours_params(movie)
    f = frames[len(frames) // 2]
    widths = (2,) * f.ndim
    ref = run(BlobDetector(**det_kw), f, cut(f, widths))
    got = run(BlobDetector(backend="torch", **det_kw), f, cut(f, widths))
    assert_same(got, ref, f.shape, movie.periodic)


@pytest.mark.parametrize("widths", [(2, 2), (4, 1), (3, [5, 100, 23])])
def test_multilevel_decomposition_invariance(movies, widths):
    movie, frames = movies["crossing"]
    det = BlobDetector(**bench.ours_params(movie)[0])
    f = frames[5]
    assert_same(run(det, f, cut(f, widths)), run(det, f), f.shape, movie.periodic)


def test_splitting_separates_touching_blobs():
    yy, xx = np.mgrid[:64, :64]
    f = sum(6 * np.exp(-((yy - 32) ** 2 + (xx - x) ** 2) / 3.0**2) for x in (28.0, 35.0))
    f = f + 0.05 * np.random.default_rng(0).normal(size=f.shape)
    plain = run(BlobDetector(threshold=1.0), f)
    split = run(BlobDetector(threshold=1.0, split_levels=[float(v) for v in np.arange(1.5, 30.0, 0.5)]), f)
    assert plain.scores["n_objects"] == 1 and split.scores["n_objects"] == 2
    xs = sorted(e["c1"] for e in split.events)
    assert xs[0] < 31.5 < xs[1]


def test_hysteresis_drops_low_bumps_and_keeps_extent():
    yy, xx = np.mgrid[:64, :64]
    f = 6 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 4.0**2) + 1.5 * np.exp(-((yy - 45) ** 2 + (xx - 45) ** 2) / 4.0**2)
    hi = run(BlobDetector(threshold=3.0), f)
    hyst = run(BlobDetector(threshold=3.0, grow_threshold=1.0), f)
    low = run(BlobDetector(threshold=1.0), f)
    assert hi.scores["n_objects"] == 1 and hyst.scores["n_objects"] == 1 and low.scores["n_objects"] == 2
    assert hyst.events[0]["area"] > hi.events[0]["area"]


def test_peak_fraction_reports_the_blob_not_the_bump_under_it():
    yy, xx = np.mgrid[:96, :96]
    bump = 2.0 * np.exp(-((yy - 40) ** 2 + (xx - 40) ** 2) / 25.0**2)  # broad background plateau
    f = bump + 8.0 * np.exp(-((yy - 52) ** 2 + (xx - 55) ** 2) / 3.0**2)
    f = f + 0.05 * np.random.default_rng(0).normal(size=f.shape)
    kw = dict(threshold=5.0, grow_threshold=0.5, split_levels=[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0])
    wide = run(BlobDetector(**kw), f)
    tight = run(BlobDetector(peak_fraction=0.35, **kw), f)
    assert wide.scores["n_objects"] == tight.scores["n_objects"] == 1
    t, w = tight.events[0], wide.events[0]
    assert t["area"] < 0.3 * w["area"]
    assert abs(t["c0"] - 52) < 0.5 and abs(t["c1"] - 55) < 0.5
    assert abs(w["c0"] - 52) > 1.0  # the plateau drags the untightened centroid
    with pytest.raises(ValueError):
        BlobDetector(peak_fraction=1.5)
    with pytest.raises(ValueError):
        BlobDetector(split_prominence=-1.0)
