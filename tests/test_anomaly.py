"""Anomaly and change-point analyzers: exact features, extreme-value calibration, named scores, restore."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats

from intransit.analyzers.anomaly import (STOP_SCORES, AnomalyDetector, auto_stride, follow_probability, gpd_pwm,
                                         local_features, persistence_for, tail_level)
from intransit.analyzers.base import Block, StepContext
from intransit.analyzers.changepoint import CusumChangePoint


def _field(t: int, rate: float = 1.0, n: int = 64, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] * (2 * np.pi / n)
    noise = np.random.default_rng(seed * 100003 + t).standard_normal((n, n))
    return (np.sin(x + 0.05 * rate * t) + 0.5 * np.cos(2 * y - 0.03 * rate * t)
            + 0.1 * np.sin(3 * x + 2 * y + 0.02 * t) + 2.0 + 0.01 * noise)


def _cut(f: np.ndarray, rows: list[int], cols: list[int]) -> list[Block]:
    out, r0 = [], 0
    for r in rows:
        c0 = 0
        for c in cols:
            out.append(Block(f[r0:r0 + r, c0:c0 + c].copy(), (r0, c0), (r, c), len(out)))
            c0 += c
        r0 += r
    return out


def _step(det: AnomalyDetector, t: int, f: np.ndarray, cp: CusumChangePoint | None = None,
          rows=(32, 32), cols=(32, 32)):
    ctx = StepContext(step=t, index=t, variable="density", global_shape=f.shape, blocks=_cut(f, list(rows), list(cols)))
    res = det.combine([det.process_blocks(ctx)], ctx)
    if cp is not None:
        ctx.input = res
        return res, cp.combine([None], ctx)
    return res


# ------------------------------------------------------------------ features
@pytest.mark.parametrize("period", [2, 4, 6])
def test_features_are_exactly_the_same_for_any_decomposition(period):
    f = _field(3)
    f[50, 13] = 9.0
    whole, m_whole = local_features(_cut(f, [64], [64]), f.shape, 8, period)
    for rows, cols in (([32, 32], [32, 32]), ([7, 40, 17], [13, 51]), ([1, 62, 1], [64]), ([33, 31], [3, 61])):
        blocks = _cut(f, rows, cols)
        v, m = local_features(blocks, f.shape, 8, period)
        np.testing.assert_allclose(v, whole, rtol=1e-12, atol=1e-12)
        assert m == m_whole
        # over two "ranks": the allreduce sums the vectors
        v1, _ = local_features(blocks[:3], f.shape, 8, period)
        v2, _ = local_features(blocks[3:], f.shape, 8, period)
        np.testing.assert_allclose(v1 + v2, whole, rtol=1e-12, atol=1e-12)


def test_period_2_samples_every_cell_in_its_parity_class():
    f = _field(5, n=48)
    v, vmax = local_features([Block(f, (0, 0), f.shape, 0)], f.shape, 4, 2)
    c2 = 16
    for cls, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        sub = f[a::2, b::2]  # 24 x 24 cells; tile = the anchor's row/col (2I) * 4 // 48
        np.testing.assert_allclose(v[cls * c2:(cls + 1) * c2], sub.reshape(4, 6, 4, 6).sum(axis=(1, 3)).ravel())
    np.testing.assert_allclose(v[4 * c2:], [f.size, (f ** 2).sum(), f.size, f.sum(), 0])
    assert vmax == np.abs(f).max()


def test_auto_period_keeps_at_most_64_squared_clusters():
    assert [auto_stride((n, n)) for n in (32, 64, 128, 256, 512, 1024)] == [2, 2, 2, 4, 8, 16]
    assert AnomalyDetector(warmup=10, stride=4)._stride((512, 512)) == 4
    with pytest.raises(ValueError):
        AnomalyDetector(stride=3)


def test_nonfinite_cells_are_counted_exactly_and_alarm_at_once():
    det = AnomalyDetector(warmup=10)  # 64^2: period 2, every cell sampled
    f = _field(0)
    f[3, 5] = np.nan  # odd row and column, in one block of four
    f[40, 41] = np.inf
    res = _step(det, 0, f)
    assert res.scores["nonfinite"] == 2 and res.scores["alarm"] == 1 and res.scores["score"] >= 1e6
    assert len(res.events) == 1
    # with a coarser period only the clusters' cells are checked: (8, 9) is one, (3, 5) is not
    g = _field(0)
    g[3, 5] = np.nan
    v, _ = local_features(_cut(g, [32, 32], [32, 32]), g.shape, 8, 8)
    assert v[-1] == 0
    g[8, 9] = np.nan
    v, _ = local_features(_cut(g, [32, 32], [32, 32]), g.shape, 8, 8)
    assert v[-1] == 1


# ------------------------------------------------------------------ calibration
def test_gpd_fit_recovers_a_known_tail():
    rng = np.random.default_rng(1)
    xi, sigma = gpd_pwm(stats.genpareto.rvs(0.2, scale=2.0, size=20000, random_state=rng))
    assert abs(xi - 0.2) < 0.05 and abs(sigma - 2.0) < 0.15


@pytest.mark.parametrize("shape", [0.0, 0.15, 0.3])
def test_tail_level_gives_the_stated_exceedance_rate(shape):
    rng = np.random.default_rng(2)
    # scores: a bulk (half-normal) and a GPD tail above its 90 % point, as peaks over threshold assume
    sample = np.abs(rng.standard_normal(3000)) + np.where(rng.random(3000) < 0.1,
                                                         stats.genpareto.rvs(shape, size=3000, random_state=rng), 0)
    q = 1e-3
    level = tail_level(sample, q)
    fresh = np.abs(rng.standard_normal(400000)) + np.where(rng.random(400000) < 0.1,
                                                           stats.genpareto.rvs(shape, size=400000, random_state=rng), 0)
    rate = float(np.mean(fresh > level))
    assert 0.4 * q <= rate <= 2.0 * q, (level, rate)


def test_persistence_and_threshold_follow_the_stated_rate():
    assert persistence_for(1e-4) == 2 and persistence_for(1e-3) == 2 and persistence_for(1e-2) == 1
    assert persistence_for(1e-5) == 3
    assert AnomalyDetector(warmup=10, false_alarms_per_1000=0.1).persist == 2
    ratios = []
    for seed in range(8):  # independent GPD scores: the fitted threshold is exceeded at the rate asked
        rng = np.random.default_rng(seed)
        det = AnomalyDetector(warmup=10, false_alarms_per_1000=0.1)
        for k in det.calib:
            det.calib[k].extend(stats.genpareto.rvs(0.1, scale=1.0, size=2000, random_state=rng).tolist())
        det._recalibrate()
        vals = np.array(det.calib["growth"])
        c = follow_probability(vals, float(np.quantile(vals, 0.9)))
        assert 0.05 < c < 0.2  # about 10 % for independent steps
        q = 1e-4 / max(c, 1e-2) / len(STOP_SCORES)  # split over the stop scores
        rate = float(stats.genpareto.sf(det.thr["growth"], 0.1))
        ratios.append(rate / q)
        assert rate ** 2 <= 1e-4  # two steps in a row over it, independent steps: at most the stated 0.1 per 1000
    # a tail quantile near 1/n from n = 2000 samples: one fit is off by up to ~x2.5, the fits agree on average
    assert all(0.25 < r < 4 for r in ratios), ratios
    assert 0.6 < float(np.exp(np.mean(np.log(ratios)))) < 1.6, ratios


# ------------------------------------------------------------------ named scores
def _run(det, fields, cp=None):
    out = []
    for t, f in enumerate(fields):
        out.append(_step(det, t, f, cp))
    return out


def test_a_growing_checkerboard_raises_the_grid_scale_score_first():
    n, onset = 64, 140
    cb = (-1.0) ** np.add.outer(np.arange(n), np.arange(n))
    fields = [_field(t) + (1e-4 * 1.35 ** (t - onset) * cb if t >= onset else 0) for t in range(200)]
    det = AnomalyDetector(warmup=100)
    res = _run(det, fields)
    assert max(r.scores["score"] for r in res[:onset]) < 1
    first_grid = next(t for t, r in enumerate(res) if r.scores["grid_score"] > 1)
    first_growth = next((t for t, r in enumerate(res) if r.scores["growth_score"] > 1), 10 ** 6)
    alarm = next(t for t, r in enumerate(res) if r.scores["alarm"])
    assert onset < first_grid < first_growth and alarm <= first_grid + det.persist
    amplitude_at_alarm = 1e-4 * 1.35 ** (alarm - onset)
    assert amplitude_at_alarm < 0.2  # 5 % of the field, long before it shows in max|n| (~3.6)


def test_slow_sustained_growth_raises_the_growth_score_before_the_field_doubles():
    onset = 150
    fields = [_field(t) * (1.015 ** max(0, t - onset)) for t in range(230)]  # energy +3 % a step, on and on
    det = AnomalyDetector(warmup=100)
    res = _run(det, fields)
    assert not any(r.scores["alarm"] for r in res[:onset])
    alarm = next(t for t, r in enumerate(res) if r.scores["alarm"])
    assert res[alarm].scores["growth_score"] > 1 and res[alarm].scores["grid_score"] < 1
    assert 1.015 ** (alarm - onset) < 1.4, alarm  # amplitude up by less than 40 %


def test_a_slow_mass_leak_raises_the_conservation_score_not_the_stop_score():
    n, onset = 64, 150
    base = _field(0, n=n)
    fields = []
    for t in range(260):  # advected (rolled): the mean is conserved to rounding
        f = np.roll(base, (t // 3, t), axis=(0, 1)) + 0.0
        if t >= onset:
            f = f * (1 - 2e-5) ** (t - onset)
        fields.append(f)
    det = AnomalyDetector(warmup=100)
    res = _run(det, fields)
    assert max(r.scores["conservation_score"] for r in res[:onset]) < 1
    flagged = [t for t, r in enumerate(res) if r.scores["conservation_score"] > 1]
    assert flagged and onset < flagged[0] <= onset + 20, flagged[:5]
    assert not any(r.scores["alarm"] for r in res)  # a leak is not a blow-up


def test_faster_change_is_a_change_point_not_an_anomaly():
    det = AnomalyDetector(warmup=60)
    cp = CusumChangePoint(window=20)
    alarms, changes = [], []
    for t in range(220):
        res, c = _step(det, t, _field(t, rate=1.0 if t < 160 else 4.0), cp)
        if res.scores["alarm"]:
            alarms.append(t)
        if c.scores["change"]:
            changes.append(t)
    assert not alarms, alarms
    assert changes and 160 <= changes[0] <= 165, changes
    assert all(c >= 160 for c in changes), changes


def test_restore_from_state_dict_gives_the_same_scores():
    a = AnomalyDetector(warmup=20)
    ca = CusumChangePoint(window=10)
    for t in range(50):
        _step(a, t, _field(t), ca)
    state = pickle.loads(pickle.dumps((a.state_dict(), ca.state_dict())))  # as the checkpoint file
    b = AnomalyDetector(warmup=20)
    cb = CusumChangePoint(window=10)
    b.load_state_dict(state[0])
    cb.load_state_dict(state[1])
    for t in range(50, 130):
        f = _field(t, rate=1.0 if t < 100 else 3.0)
        ra, pa = _step(a, t, f, ca)
        rb, pb = _step(b, t, f, cb)
        assert ra.scores == rb.scores
        assert pa.scores == pb.scores and pa.events == pb.events


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        AnomalyDetector(warmup=3)
    with pytest.raises(ValueError):
        CusumChangePoint(signals=["log_rate"], min_sigma=[0.1, 0.2])
    with pytest.raises(ValueError):
        AnomalyDetector(stride=-2)
    with pytest.raises(ValueError):
        AnomalyDetector(false_alarms_per_1000=0)
    with pytest.raises(ValueError):
        AnomalyDetector(recalibrate_every=0)
