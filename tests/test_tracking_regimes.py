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

from intransit.analyzers.blobs import BlobDetector as _BlobDetector  # noqa: E402
from tests.test_blob_detection import assert_same, cut, run  # noqa: E402


def BlobDetector(**params) -> _BlobDetector:  # noqa: N802 (stands for the class)
    """The detector pinned to the pointwise path on plain moments (what these legacy tests pin), ``params`` on top."""
    return _BlobDetector(**{**bench._pin(_BlobDetector, {**bench.LEGACY_DETECTION, "split_levels": [],
                                                          "split_prominence": 0.0, "peak_fraction": None}),
                            **params})

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


# ------------------------------------------------- generated regimes (issue 20)
from regimes import GATE, SceneMovie, make_scene  # noqa: E402
from scenario_sim import Scenario  # noqa: E402
from scenarios2d import Amplitudes, cut as cut_blocks, uneven_blocks  # noqa: E402


def _coverage(shape, blocks):
    cover = np.zeros(shape, int)
    for start, count in blocks:
        cover[tuple(slice(s, s + c) for s, c in zip(start, count))] += 1
    return cover


@pytest.mark.parametrize("shape,parts", [((128, 128), [[0.3, 0.7], [0.2, 0.45, 0.35]]),
                                         ((64, 64, 64), [[17, 25, 22], [29, 35], [1]]),
                                         ((37, 50), [[1, 2, 3], [5]])])
def test_uneven_blocks_tile_the_domain_exactly(shape, parts):
    blocks = uneven_blocks(shape, parts)
    assert len(blocks) == int(np.prod([len(p) for p in parts]))
    assert (_coverage(shape, blocks) == 1).all()
    counts = {c for _, c in blocks}
    assert len(counts) > 1, "blocks should be uneven"
    field = np.arange(np.prod(shape), dtype=float).reshape(shape)
    back = np.full(shape, np.nan)
    for start, arr in cut_blocks(field, blocks):
        back[tuple(slice(s, s + n) for s, n in zip(start, arr.shape))] = arr
    assert np.array_equal(back, field)
    with pytest.raises(ValueError, match="empty block along axis 1"):
        uneven_blocks((16, 4), [[1], [1, 1, 1, 1, 100]])
    with pytest.raises(ValueError, match="one list of relative sizes per axis"):
        uneven_blocks((16, 16), [[1]])


@pytest.mark.parametrize("regime", ["curving", "amplitudes", "gray_scott"])
def test_generated_movies_blocks_cover_and_seeds_matter(regime):
    kw = dict(size=64, n_frames=3, gs_size=24)
    a, b = make_scene(regime, seed=100, **kw), make_scene(regime, seed=101, **kw)
    assert (_coverage(a.shape, a.blocks) == 1).all() and len(a.blocks) >= 3
    fa = [f for _, f in a.frames()]
    fa2 = [f for _, f in a.frames()]
    fb = [f for _, f in b.frames()]
    assert all(np.array_equal(x, y) for x, y in zip(fa, fa2)), "a seed must repeat its frames exactly"
    assert not np.allclose(fa[0], fb[0]), "another seed must give another field"
    assert len(a.truth) == 3 and all(len(rows) > 0 for rows in a.truth)
    for rows in a.truth:
        c = np.array([r["c"] for r in rows])
        assert ((c >= 0) & (c < np.array(a.shape))).all()
        assert all(r["width"] == GATE for r in rows)


def _value_at(field, c):
    return field[tuple(int(round(x)) % n for x, n in zip(c, field.shape))]


def test_amplitudes_truth_peaks_are_where_the_field_is_high():
    gen = Amplitudes(128, 128, 8, seed=3)
    assert gen.peak.max() / gen.peak.min() > 4, "peaks should spread widely"
    for _ in range(5):
        gen.advance()
    clean, centres = gen.render(with_noise=False)
    for (k, c0, c1), pk in zip(centres, gen.peak):
        assert _value_at(clean, (c0, c1)) >= 0.75 * pk  # within half a cell of the centre
        iy, ix = int(round(c0)) % 128, int(round(c1)) % 128
        win = np.roll(np.roll(clean, 64 - iy, 0), 64 - ix, 1)[62:67, 62:67]
        assert win.max() == pytest.approx(clean.max() if pk == gen.peak.max() else win.max())
        assert np.unravel_index(np.argmax(win), win.shape) in {(i, j) for i in (1, 2, 3) for j in (1, 2, 3)}
    noisy, _ = Amplitudes(128, 128, 8, seed=3).render()
    assert 0.5 < float(np.std(noisy - Amplitudes(128, 128, 8, seed=3).render(with_noise=False)[0])) < 1.5
    bright = [(c0, c1, pk) for (_, c0, c1), pk in zip(Amplitudes(128, 128, 8, seed=3).render()[1], gen.peak)
              if pk > 12]
    assert bright, "seed 3 should draw some bright blobs"


def test_curving_truth_peaks_are_where_the_field_is_high():
    sc = Scenario(96, 96, 6, seed=5)
    sc.noise = lambda: np.zeros((96, 96))  # blobs alone
    for _ in range(4):
        sc.advance()
    field, centres = sc.render()
    for k, c0, c1 in centres:
        assert _value_at(field, (c0, c1)) >= 0.7 * sc.peak[k]


def test_gray_scott_truth_spots_sit_on_high_v():
    movie = make_scene("gray_scott", n_frames=2, seed=100, gs_size=32)
    frames = [f for _, f in movie.frames()]
    for f, rows in zip(frames, movie.truth):
        vals = np.array([_value_at(f, r["c"]) for r in rows])
        assert len(rows) > 30
        assert np.mean(vals > 0.15) > 0.9, "spot centroids should sit where V is high"
        assert np.median(vals) > 3 * np.median(f)
    assert movie.edges == [] or all(t == 1 for _, _, t in movie.edges)


def _clean_movie(n_frames: int = 12, noise: float = 0.01) -> SceneMovie:
    """Three bright blobs on straight paths over faint white noise, one crossing the periodic seam."""
    starts = np.array([[20.0, 10.0], [40.0, 60.0], [5.0, 62.0]])
    vel = np.array([[0.5, 1.0], [-1.0, 0.3], [0.0, 0.8]])
    yy, xx = np.mgrid[:64, :64]

    def source():
        rng = np.random.default_rng(0)
        for t in range(n_frames):
            f = noise * rng.standard_normal((64, 64))
            rows = []
            for k, (p, v) in enumerate(zip(starts, vel)):
                c = (p + v * t) % 64
                dy = (yy - c[0] + 32) % 64 - 32
                dx = (xx - c[1] + 32) % 64 - 32
                f += 10.0 * np.exp(-(dy ** 2 + dx ** 2) / (2 * 2.0 ** 2))
                rows.append({"id": k, "c": (float(c[0]), float(c[1])), "width": GATE})
            yield f, rows, []
    return SceneMovie("clean", (64, 64), [True, True], n_frames, GATE, 0, 2.8,
                      uneven_blocks((64, 64), [[1, 2], [3, 1]]), source)


def test_scoring_is_perfect_on_the_truth_and_drops_with_errors():
    movie = _clean_movie()
    frames = [f for _, f in movie.frames()]
    rows = [(t, r["id"] + 7, np.array(r["c"])) for t, rs in enumerate(movie.truth) for r in rs]
    dets = [[(np.array(r["c"]), np.stack([np.array(r["c"]) - 3, np.array(r["c"]) + 3], axis=1), 1.0) for r in rs]
            for rs in movie.truth]
    res = {"dets": dets, "rows": rows, "edges": [], "seconds": 1.0}
    s = bench.score(movie, res)
    assert s["mota"] == 1.0 and s["idf1"] == 1.0 and s["det_f1"] == 1.0 and s["id_switches"] == 0
    assert s["hota"] > 0.99
    swapped = [(t, (tid if t < 6 else {7: 8, 8: 7}.get(tid, tid)), p) for t, tid, p in rows]
    s2 = bench.score(movie, {**res, "rows": swapped})
    assert s2["id_switches"] == 2 and s2["idf1"] < 0.9 and s2["mota"] < 1.0
    assert len(frames) == movie.n_frames


def test_robust_z_link_scores_one_on_a_clean_movie():
    movie = _clean_movie()
    frames = [f for _, f in movie.frames()]
    res = bench.run_robust_z(movie, frames)
    s = bench.score(movie, res)
    assert s["mota"] == 1.0 and s["idf1"] == 1.0 and s["det_f1"] == 1.0 and s["id_switches"] == 0, s
    # the blob on the periodic seam is one object with its centroid across the seam
    cent, area, _ = bench.robust_z_detect(frames[0], [True, True])
    assert len(cent) == 3
    seam = cent[np.argmin(np.abs((cent[:, 1] - 62.0 + 32) % 64 - 32))]
    assert abs((seam[1] - 62.0 + 32) % 64 - 32) < 0.3 and abs(seam[0] - 5.0) < 0.3


def test_periodic_label_joins_across_faces():
    m = np.zeros((10, 10), bool)
    m[0, 3] = m[9, 3] = True   # across axis 0
    m[5, 0] = m[5, 9] = True   # across axis 1
    m[5, 5] = True
    lab, n = bench.periodic_label(m, [True, True])
    assert n == 3 and lab[0, 3] == lab[9, 3] and lab[5, 0] == lab[5, 9]
    assert len({lab[0, 3], lab[5, 0], lab[5, 5]}) == 3 and set(np.unique(lab)) == {0, 1, 2, 3}
    lab_open, n_open = bench.periodic_label(m, [False, True])
    assert n_open == 4



def test_one_periodic_label_join_for_truth_and_baseline():
    """The Gray-Scott truth and the robust-z baseline join seams with the same function (3D, every axis)."""
    import gray_scott

    assert bench.periodic_label is gray_scott.periodic_label
    rng = np.random.default_rng(3)
    field = rng.random((13, 14, 15))
    field[:, :, 0] = field[:, :, -1] = 0.9  # a sheet across the axis-2 seam
    gs = gray_scott.GrayScott.__new__(gray_scott.GrayScott)
    gs.level = 0.6
    lab, n = gs.label(field)
    ref, n_ref = gray_scott.periodic_label(field > 0.6, [True, True, True])
    assert n == n_ref and (lab == ref).all()
    assert lab[0, 0, 0] == lab[0, 0, -1] and 0 < n < bench.ndimage.label(field > 0.6)[1]
    assert set(np.unique(lab)) == set(range(n + 1))  # dense 1..n
    with pytest.raises(ValueError, match="one flag per axis"):
        gray_scott.periodic_label(field > 0.6, [True, True])


def test_scale_benchmark_uses_the_regime_harness_and_blocks():
    """tracking_scale cuts 64^3 as the gray_scott regime does and runs through tracking.run_pipeline."""
    import inspect

    import tracking_scale
    from regimes import make_scene

    assert sorted(tracking_scale.BLOCKS) == sorted(make_scene("gray_scott", gs_size=64).blocks)
    src = inspect.getsource(tracking_scale)
    assert "from tracking import run_pipeline as harness" in src
    assert "threading" not in src and "def _read" not in src  # no second copy of the reading path

def test_default_pipeline_harness_is_independent_of_blocks_and_ranks():
    """The benchmark's reading path (MemoryStepReader, threads as ranks, halo when declared) gives one
    result for one whole block on one rank and for uneven blocks on three ranks."""
    movie = _clean_movie(n_frames=4)
    frames = [f for _, f in movie.frames()]
    one = bench.run_pipeline(movie, frames, blocks=[((0, 0), (64, 64))], n_ranks=1)
    three = bench.run_pipeline(movie, frames, n_ranks=3)
    assert sum(len(d) for d in one["dets"]) >= 3 * 4 - 2
    for a, b in zip(one["dets"], three["dets"]):
        pa = np.array(sorted(tuple(d[0]) for d in a))
        pb = np.array(sorted(tuple(d[0]) for d in b))
        assert pa.shape == pb.shape and np.allclose(pa, pb, atol=1e-9)
    assert [(t, i) for t, i, _ in one["rows"]] == [(t, i) for t, i, _ in three["rows"]]


def test_benchmark_json_has_the_issue_keys(capsys):
    rc = bench.main(["--regime", "amplitudes", "--size", "64", "--frames", "5", "--seeds", "100",
                     "--skip", "speed,scale,trackpy_tuned,xblobs"])
    assert rc == 0
    captured = capsys.readouterr()
    out = __import__("json").loads(captured.out.strip().splitlines()[-1])
    r = out["regimes"]["amplitudes"]
    for method in ("ours_default", "robust_z_link"):
        assert set(bench.KEYS) <= set(r[method]), (method, r[method])
        assert -10 < r[method]["mota"] <= 1 and 0 <= r[method]["idf1"] <= 1
    assert "trackpy_tuned" not in r and r["info"]["blocks"] == 6
    assert "| amplitudes |" in captured.err
