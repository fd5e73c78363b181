"""The background estimate of blob detection (analyzers/noise.py).

On correlated Gaussian noise of known level, spread and correlation length the
estimates recover them within stated tolerances; 5 % of cells in bright blobs
barely move the robust spread (where the plain std moves by tens of percent);
the global histogram gives the same answer however the cells are spread over
ranks; smoothing a padded block equals smoothing the whole field, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from intransit.adapters.reader import MemoryStepReader
from intransit.analyzers import noise
from intransit.analyzers.base import identity_allreduce


def correlated(shape, corr, sigma, level, seed):
    white = np.random.default_rng(seed).standard_normal(shape)
    f = ndimage.gaussian_filter(white, corr, mode="wrap")
    return level + sigma * f / f.std()


def with_blobs(field, fraction, amp, seed):
    """Add bright Gaussian blobs (sigma 2 cells) until ``fraction`` of the cells lie above amp/4."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: field.shape[0], : field.shape[1]]
    bump = np.zeros(field.shape)
    while (bump > amp / 4).mean() < fraction:
        cy, cx = rng.uniform(0, field.shape[0]), rng.uniform(0, field.shape[1])
        bump = np.maximum(bump, amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0))
    return field + bump


def multi_pass(pieces_per_rank):
    """robust_stats over simulated ranks: each collective answered with the global sum."""
    totals = []
    while True:
        calls = [[] for _ in pieces_per_rank]
        results = []
        for r, pieces in enumerate(pieces_per_rank):
            def reduce(v, r=r):
                calls[r].append(np.asarray(v, float).copy())
                i = len(calls[r]) - 1
                return (totals[i] if i < len(totals) else np.asarray(v, float)).copy()
            results.append(noise.robust_stats(pieces, reduce))
        counts = [len(c) for c in calls]
        if min(counts) <= len(totals):  # every answer so far was the true one: these are the real counts
            assert len(set(counts)) == 1, counts
            return results
        totals.append(sum(c[len(totals)] for c in calls))


@pytest.mark.parametrize("corr", [0.0, 1.5, 3.0])
def test_level_and_spread_of_correlated_noise(corr):
    field = correlated((256, 256), corr, sigma=0.7, level=5.0, seed=4) if corr else \
        5.0 + 0.7 * np.random.default_rng(4).standard_normal((256, 256))
    median, sigma, mean, std = noise.robust_stats([field], identity_allreduce)
    assert abs(median - 5.0) < 0.05 * 0.7   # within 5 % of sigma
    assert abs(sigma / 0.7 - 1) < 0.06      # within 6 % (fewer independent cells when correlated)
    assert abs(mean - field.mean()) < 1e-9 and abs(std - field.std()) < 1e-9


def test_spread_is_robust_to_five_percent_blobs():
    clean = correlated((256, 256), 2.0, sigma=1.0, level=0.0, seed=9)
    dirty = with_blobs(clean, 0.05, amp=10.0, seed=2)
    _, s_clean, _, _ = noise.robust_stats([clean], identity_allreduce)
    median, s_dirty, _, std = noise.robust_stats([dirty], identity_allreduce)
    assert abs(s_dirty / s_clean - 1) < 0.08, (s_clean, s_dirty)
    assert abs(median) < 0.25  # the blobs' tails lift more than 5 % of cells: the level moves < 1/4 sigma
    assert std > 1.3 * s_dirty  # the plain std is what the old detector used: far off


def test_narrow_noise_under_bright_objects_is_resolved_by_the_zoom():
    """Noise 1e-3 under flat-topped objects of 100 on 5 % of cells: the first histogram's bins are wider
    than the noise."""
    field = correlated((128, 128), 1.0, sigma=1e-3, level=3.0, seed=5)
    for k in range(33):
        y, x = divmod(k, 6)
        field[y * 20 + 3:y * 20 + 8, x * 20 + 3:x * 20 + 8] += 100.0
    assert 0.04 < (field > 50).mean() < 0.06
    median, sigma, _, std = noise.robust_stats([field], identity_allreduce)
    assert std > 1000 * sigma
    assert abs(sigma / 1e-3 - 1) < 0.1 and abs(median - 3.0) < 5e-4
    split = multi_pass([[field[:50]], [field[50:]]])
    np.testing.assert_allclose(split[0], (median, sigma, *split[0][2:]), rtol=1e-12, atol=0)


def test_flat_lower_half_falls_back_to_the_std():
    field = np.zeros((64, 64))
    field[10:14, 10:14] = 1.0
    median, sigma, _, std = noise.robust_stats([field], identity_allreduce)
    assert median == pytest.approx(0.0, abs=1e-3) and sigma == std > 0


def test_global_histogram_is_independent_of_ranks():
    field = with_blobs(correlated((90, 70), 2.0, 1.3, -2.0, seed=1), 0.05, 8.0, seed=3)
    field[3, 4] = np.nan  # non-finite cells are left out everywhere
    whole = multi_pass([[field]])[0]
    split = multi_pass([[field[:7], field[7:40, :31]], [field[7:40, 31:]], [], [field[40:]]])
    for r in split:
        np.testing.assert_allclose(r, whole, rtol=1e-12, atol=1e-12)


def test_correlation_length_is_recovered():
    for corr in (1.5, 2.0, 3.0):
        field = correlated((512, 512), corr, 1.0, 0.0, seed=int(corr * 10))
        got = noise.correlation_length(field)
        assert all(abs(g / corr - 1) < 0.1 for g in got), (corr, got)


@pytest.mark.parametrize("periodic", [(True, True), (False, True), (False, False)])
def test_smoothing_a_padded_block_equals_smoothing_the_field(periodic):
    field = np.random.default_rng(0).standard_normal((40, 33))
    scale = 1.7
    whole = noise.smooth(field, scale, periodic)
    r = noise.radius(scale)
    raw = [((0, 0), field[:11, :20].copy()), ((0, 20), field[:11, 20:].copy()),
           ((11, 0), field[11:, :5].copy()), ((11, 5), field[11:, 5:].copy())]
    for n_ranks in (1, 2, 4):
        for rank in range(n_ranks):
            reader = MemoryStepReader([(0, {"f": (field.shape, raw)})], rank=rank, n_ranks=n_ranks)
            reader.begin_step(1.0)
            for b in reader.read("f", halo=(r, r), periodic=periodic)[1]:
                own = tuple(slice(a, a + c) for a, c in zip(b.halo_lo, b.count))
                got = noise.smooth(b.padded, scale, periodic)[own]
                box = tuple(slice(s, s + c) for s, c in zip(b.start, b.count))
                np.testing.assert_array_equal(got, whole[box])


# ---------------------------------------------------------------- several groups, seed level
def test_groups_match_single_group_stats_in_the_same_collectives():
    a = correlated((64, 64), 2.0, sigma=0.5, level=1.0, seed=3)
    b = with_blobs(correlated((64, 64), 1.0, sigma=2.0, level=-3.0, seed=5), 0.03, amp=30.0, seed=6)
    calls = []

    def reduce(v):
        calls.append(len(v))
        return np.asarray(v, float)

    both = noise.robust_stats_groups([[a], [b[:30], b[30:]]], reduce)
    n_joint = len(calls)
    single, n_single = [], []
    for g in ([a], [b]):
        calls.clear()
        single.append(noise.robust_stats(g, reduce))
        n_single.append(len(calls))
    for x, y in zip(both, single):
        assert x == pytest.approx(y, rel=1e-12)
    assert n_joint == max(n_single) and min(n_single) >= 2  # one set of collectives for both groups


def test_seed_level_follows_the_noise_roughness():
    shape, per = (128, 128), (True, True)
    # Noise smoothed over 2 cells (Lambda = 1 / (2 l^2) = 1/8): 4 sigma; white (Lambda = 2): capped at 4.
    assert noise.seed_level([0.125, 0.125], shape, per) == pytest.approx(4.0, abs=0.03)
    assert noise.seed_level([2.0, 2.0], shape, per) == 4.0
    # Turbulence smooth over tens of cells: the lower bound, 3 sigma.
    assert noise.seed_level([0.004, 0.004], shape, per) == pytest.approx(3.0, abs=0.1)
    # Monotone in the roughness, within the bounds.
    levels = [noise.seed_level([lam, lam], shape, per) for lam in (0.01, 0.03, 0.06, 0.1)]
    assert all(3.0 <= x <= 4.0 for x in levels) and levels == sorted(levels) and levels[0] < levels[-1]


def test_false_peaks_formula_against_simulated_noise():
    """The Gaussian kinematic formula's count of excursions vs connected regions of simulated noise."""
    rng = np.random.default_rng(11)
    counts = []
    for _ in range(6):
        f = ndimage.gaussian_filter(rng.standard_normal((256, 256)), 2.0, mode="wrap")
        f /= f.std()
        counts.append(ndimage.label(f > 2.5)[1])
    lam = [float(np.var(np.diff(f, axis=k)) / np.var(f)) for k in range(2)]
    expected = noise.false_peaks(2.5, lam, f.shape, (True, True))
    assert np.mean(counts) == pytest.approx(expected, rel=0.25)


def test_difference_samples_are_the_same_for_any_blocks():
    from intransit.adapters.reader import MemoryStepReader  # noqa: PLC0415

    field = correlated((30, 41), 1.5, 1.0, 0.0, seed=2)
    shape = field.shape
    for periodic in [(True, True), (False, True), (False, False)]:
        ref = None
        for cuts in ([[0, 30], [0, 41]], [[0, 7, 19, 30], [0, 20, 41]], [[0, 1, 30], [0, 3, 4, 41]]):
            raw = []
            for i in range(len(cuts[0]) - 1):
                for j in range(len(cuts[1]) - 1):
                    lo = (cuts[0][i], cuts[1][j])
                    raw.append((lo, field[cuts[0][i]:cuts[0][i + 1], cuts[1][j]:cuts[1][j + 1]].copy()))
            reader = MemoryStepReader([(0, {"n": (shape, raw)})], rank=0, n_ranks=1)
            reader.begin_step(1.0)
            blocks = reader.read("n", halo=(1, 1), periodic=periodic)[1]
            got = [np.sort(np.concatenate([noise.difference_samples(b.padded, b.halo_lo, b.halo_hi, b.start, b.count,
                                                                    shape, periodic, k) for b in blocks]))
                   for k in range(2)]
            if ref is None:
                ref = got
                whole = [np.diff(np.concatenate([field, field[:1]]) if periodic[0] else field, axis=0)[::2, ::2],
                         np.diff(np.concatenate([field, field[:, :1]], axis=1) if periodic[1] else field, axis=1)[::2, ::2]]
                for k in range(2):
                    assert np.array_equal(np.sort(whole[k].ravel()), ref[k])
            for k in range(2):
                assert np.array_equal(got[k], ref[k]), (periodic, cuts, k)
