"""Online ensemble statistics (analyzers/ensemble/) against offline numpy over the stored members."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from intransit.analyzers.ensemble import EnsembleStats, Moments, Quantiles, Sobol, StepStats

THRESHOLDS = (-0.5, 0.0, 1.2)


def _members(n: int, shape=(5, 7), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # an offset far from 0 and a skewed part: the naive sum-of-powers formulas would lose digits here
    return 1e3 + rng.gamma(2.0, 1.0, size=(n,) + shape) - 2.0 + rng.normal(size=(n,) + shape)


def _offline(x: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "mean": x.mean(axis=0), "variance": x.var(axis=0, ddof=1),
        "skewness": scipy.stats.skew(x, axis=0, bias=True), "kurtosis": scipy.stats.kurtosis(x, axis=0, bias=True),
        "min": x.min(axis=0), "max": x.max(axis=0),
        "exceed": np.stack([(x > t).mean(axis=0) for t in THRESHOLDS]),
    }


def _check(m: Moments, x: np.ndarray) -> None:
    ref = _offline(x)
    assert m.n == len(x)
    np.testing.assert_allclose(m.mean, ref["mean"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.variance(), ref["variance"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.skewness(), ref["skewness"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.kurtosis(), ref["kurtosis"], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(m.min, ref["min"])
    np.testing.assert_array_equal(m.max, ref["max"])
    np.testing.assert_allclose(m.exceedance(), ref["exceed"], rtol=0, atol=1e-12)


def test_moments_equal_offline_numpy_for_members_in_any_order():
    x = _members(57, shape=(5, 7)) - 1e3
    thr = np.array(THRESHOLDS)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(x))
        m = Moments(x.shape[1:], thr)
        for i in order:
            m.add(x[i])
        _check(m, x)


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 57])
def test_moments_merge_of_any_split_equals_offline(parts):
    x = _members(57) - 1e3
    rng = np.random.default_rng(parts)
    labels = rng.integers(0, parts, size=len(x))
    states = []
    for k in range(parts):
        m = Moments(x.shape[1:], THRESHOLDS)
        for i in rng.permutation(np.flatnonzero(labels == k)):
            m.add(x[i])
        states.append(m)
    # merge pairwise in a tree, in random order
    while len(states) > 1:
        rng.shuffle(states)
        a, b = states.pop(), states.pop()
        a.merge(b)
        states.append(a)
    _check(states[0], x)


def test_moments_stable_with_a_large_offset():
    """1e3 offset, unit spread: sums of powers would cancel catastrophically; Welford/Pébay keep 1e-10."""
    x = _members(40)
    m = Moments(x.shape[1:], [1e3 + t for t in THRESHOLDS])
    for row in x:
        m.add(row)
    np.testing.assert_allclose(m.variance(), x.var(axis=0, ddof=1), rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.skewness(), scipy.stats.skew(x, axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.kurtosis(), scipy.stats.kurtosis(x, axis=0), rtol=0, atol=1e-9)


def test_state_dict_round_trip_then_continue_equals_one_pass():
    x = _members(30) - 1e3
    stats = EnsembleStats(x.shape[1:], thresholds=THRESHOLDS, levels=(0.1, 0.5, 0.9))
    for row in x[:11]:
        stats.add_member(0, row)
        stats.add_member(3, 2 * row)
    restored = EnsembleStats.from_state_dict(dict(stats.state_dict()))
    for row in x[11:]:
        restored.add_member(0, row)
        restored.add_member(3, 2 * row)
    _check(restored.steps[0].moments, x)
    _check_scaled = restored.steps[3].moments
    np.testing.assert_allclose(_check_scaled.mean, 2 * x.mean(axis=0), atol=1e-10)
    assert sorted(restored.steps) == [0, 3]


def test_quantiles_close_to_numpy_with_stated_error():
    """Averaged stochastic approximation vs the sample quantile: RMS within 1.2 se, worst point 6 se,
    se = sqrt(a(1-a)/n)/f(q) (the sample quantile's own standard error; Gaussian members)."""
    rng = np.random.default_rng(4)
    n, shape = 400, (6, 6)
    x = rng.normal(size=(n,) + shape) * 2.0 + 5.0
    levels = (0.1, 0.5, 0.9)
    s = StepStats(shape, levels=levels)
    for row in x:
        s.add_member(row)
    est = s.quantiles.estimate()
    for k, a in enumerate(levels):
        ref = np.quantile(x, a, axis=0)
        se = np.sqrt(a * (1 - a) / n) / scipy.stats.norm.pdf(scipy.stats.norm.ppf(a)) * 2.0
        err = np.abs(est[k] - ref)
        assert np.sqrt(np.mean(err**2)) < 1.2 * se, (a, np.sqrt(np.mean(err**2)) / se)
        assert err.max() < 6 * se, (a, err.max() / se)


def test_quantiles_stay_within_the_members_range_with_few_members():
    rng = np.random.default_rng(8)
    x = rng.standard_t(2, size=(12, 40, 40))  # heavy tails, few members: large early steps
    s = StepStats((40, 40), levels=(0.1, 0.5, 0.9))
    for row in x:
        s.add_member(row)
    est = s.quantiles.estimate()
    assert np.all(est >= x.min(0)[None]) and np.all(est <= x.max(0)[None])


def test_quantile_levels_validated():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        Quantiles((3,), [0.5, 1.0])


# --- Sobol (Martinez) on the Ishigami function, written as a field -----------------------------------------

def _ishigami(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Y at every point of a field whose points differ by (a, b); x: (3,) inputs -> field of a's shape."""
    return np.sin(x[0]) + a * np.sin(x[1]) ** 2 + b * x[2] ** 4 * np.sin(x[0])


def _ishigami_indices(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pi = np.pi
    v1 = 0.5 * (1 + b * pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = 8 * b**2 * pi**8 / 225
    v = v1 + v2 + v13
    first = np.stack([v1 / v, v2 / v, np.zeros_like(v)])
    total = np.stack([(v1 + v13) / v, v2 / v, v13 / v])
    return first, total


def _pick_freeze(rng: np.random.Generator, p: int) -> np.ndarray:
    a, b = rng.uniform(-np.pi, np.pi, size=(2, p))
    rows = [a, b]
    for i in range(p):
        c = a.copy()
        c[i] = b[i]
        rows.append(c)
    return np.array(rows)


def test_sobol_ishigami_field_within_confidence_intervals():
    shape = (3, 4)
    a = np.linspace(5.0, 9.0, 12).reshape(shape)
    b = np.linspace(0.05, 0.15, 12).reshape(shape)[::-1]
    rng = np.random.default_rng(11)
    stats = StepStats(shape, p=3)
    for _ in range(3000):
        design = _pick_freeze(rng, 3)
        stats.add_group(np.stack([_ishigami(row, a, b) for row in design]))
    first, total = _ishigami_indices(a, b)
    s = stats.sobol
    f_lo, f_hi = s.first_order_ci()
    t_lo, t_hi = s.total_order_ci()
    inside = np.concatenate([((f_lo <= first) & (first <= f_hi)).ravel(),
                             ((t_lo <= total) & (total <= t_hi)).ravel()])
    assert inside.mean() >= 0.85, inside.mean()
    # the estimates are close too (CI half-width ~ 0.03 at 3000 groups), and S3 = 0 is resolved
    np.testing.assert_allclose(s.first_order(), first, atol=0.06)
    np.testing.assert_allclose(s.total_order(), total, atol=0.06)
    assert np.all(f_hi - f_lo < 0.1)


def test_sobol_merge_of_split_groups_equals_one_pass():
    shape = (2, 3)
    a, b = np.full(shape, 7.0), np.full(shape, 0.1)
    rng = np.random.default_rng(2)
    groups = [np.stack([_ishigami(r, a, b) for r in _pick_freeze(rng, 3)]) for _ in range(60)]
    one = Sobol(shape, 3)
    for g in groups:
        one.add_group(g)
    parts = [Sobol(shape, 3) for _ in range(3)]
    for k, g in enumerate(groups[::-1]):
        parts[k % 3].add_group(g)
    parts[2].merge(parts[0])
    parts[2].merge(parts[1])
    np.testing.assert_allclose(parts[2].first_order(), one.first_order(), atol=1e-12)
    np.testing.assert_allclose(parts[2].total_order(), one.total_order(), atol=1e-12)
    # and the estimator is the offline Martinez formula
    y = np.array(groups)
    yb, ya, yc = y[:, 1], y[:, 0], y[:, 2:]
    for i in range(3):
        ref_s = np.array([[np.corrcoef(yb[:, j, k], yc[:, i, j, k])[0, 1] for k in range(3)] for j in range(2)])
        ref_t = 1 - np.array([[np.corrcoef(ya[:, j, k], yc[:, i, j, k])[0, 1] for k in range(3)] for j in range(2)])
        np.testing.assert_allclose(one.first_order()[i], ref_s, atol=1e-10)
        np.testing.assert_allclose(one.total_order()[i], ref_t, atol=1e-10)


def test_group_applies_its_members_to_the_moments():
    rng = np.random.default_rng(5)
    groups = rng.normal(size=(20, 4, 3, 3))
    s = StepStats((3, 3), thresholds=(0.0,), p=2)
    for g in groups:
        s.add_group(g)
    flat = groups.reshape(-1, 3, 3)
    np.testing.assert_allclose(s.moments.mean, flat.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(s.moments.variance(), flat.var(axis=0, ddof=1), atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        s.add_group(groups[0][:3])
