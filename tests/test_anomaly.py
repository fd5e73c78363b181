"""Anomaly and change-point analyzers: features, calibration, blow-up, checkpoint restore."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from intransit.analyzers.anomaly import AnomalyDetector, _Predictor, auto_stride, local_features
from intransit.analyzers.base import Block, StepContext
from intransit.analyzers.changepoint import CusumChangePoint


def _field(t: int, rate: float = 1.0, n: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] * (2 * np.pi / n)
    return np.sin(x + 0.05 * rate * t) + 0.5 * np.cos(2 * y - 0.03 * rate * t) + 0.1 * np.sin(3 * x + 2 * y + 0.02 * t)


def _blocks(f: np.ndarray, split: int = 2) -> list[Block]:
    n = f.shape[0] // split
    return [Block(f[i * n:(i + 1) * n, j * n:(j + 1) * n].copy(), (i * n, j * n), (n, n), i * split + j)
            for i in range(split) for j in range(split)]


def _step(det: AnomalyDetector, t: int, f: np.ndarray, cp: CusumChangePoint | None = None):
    ctx = StepContext(step=t, index=t, variable="density", global_shape=f.shape, blocks=_blocks(f))
    res = det.combine([det.process_blocks(ctx)], ctx)
    if cp is not None:
        ctx.input = res
        return res, cp.combine([None], ctx)
    return res


def test_features_do_not_depend_on_the_decomposition():
    f = _field(3)
    one, m1 = local_features(_blocks(f, 1), f.shape, 8)
    four, m4 = local_features(_blocks(f, 4), f.shape, 8)
    np.testing.assert_allclose(one[:64], four[:64])  # coarse sums
    np.testing.assert_allclose(one[64 + 1], four[64 + 1])  # sum n^2
    assert m1 == m4
    # split over two "ranks": the allreduce sums the vectors
    b = _blocks(f, 4)
    v1, _ = local_features(b[:7], f.shape, 8)
    v2, _ = local_features(b[7:], f.shape, 8)
    np.testing.assert_allclose(v1 + v2, four)


def _cut(f: np.ndarray, rows: list[int], cols: list[int]) -> list[Block]:
    out, r0 = [], 0
    for r in rows:
        c0 = 0
        for c in cols:
            out.append(Block(f[r0:r0 + r, c0:c0 + c].copy(), (r0, c0), (r, c), len(out)))
            c0 += c
        r0 += r
    return out


def test_stride_1_sums_are_the_full_field_sums():
    f = _field(5, n=48)
    v, vmax = local_features([Block(f, (0, 0), f.shape, 0)], f.shape, 4, stride=1)
    dx, dy = np.diff(f, axis=1), np.diff(f, axis=0)
    hp = np.diff(dx, axis=0)
    np.testing.assert_allclose(v[:16], f.reshape(4, 12, 4, 12).sum(axis=(1, 3)).ravel())
    np.testing.assert_allclose(v[16:], [f.size, (f ** 2).sum(), (dx ** 2).sum(), dx.size, (dy ** 2).sum(), dy.size,
                                        (hp ** 2).sum(), hp.size, 0])
    assert vmax == np.abs(f).max()


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_strided_sums_sample_the_global_grid_whatever_the_decomposition(stride):
    f = _field(7, n=64)
    f[50, 13] = 9.0  # off the stride-4 grid: a strided max does not see it
    S = f[::stride, ::stride]
    whole, m_whole = local_features(_cut(f, [64], [64]), f.shape, 8, stride)
    for rows, cols in (([32, 32], [32, 32]), ([7, 40, 17], [13, 51]), ([1, 62, 1], [64])):
        v, m = local_features(_cut(f, rows, cols), f.shape, 8, stride)
        np.testing.assert_allclose(v[:64], whole[:64], rtol=1e-12)  # coarse sums: exact
        np.testing.assert_allclose(v[64:66], whole[64:66], rtol=1e-12)  # cells, sum n^2: exact
        assert m == m_whole == np.abs(S).max()
        # difference sums lose only the pairs cut by a block boundary
        assert v[64 + 3] <= whole[64 + 3] and v[64 + 5] <= whole[64 + 5]
    assert whole[64] == S.size and np.isclose(whole[65], (S ** 2).sum())
    idx = np.arange(0, 64, stride) * 8 // 64
    expect = np.zeros((8, 8))
    np.add.at(expect, (idx[:, None], idx[None, :]), S)
    np.testing.assert_allclose(whole[:64].reshape(8, 8), expect)


def test_auto_stride_keeps_at_most_64_squared_samples():
    assert [auto_stride((n, n)) for n in (32, 64, 65, 128, 256, 512, 1024)] == [1, 1, 2, 2, 4, 8, 16]
    det = AnomalyDetector(warmup=10, device="cpu")
    assert det._stride((512, 512)) == 8 and AnomalyDetector(warmup=10, stride=3, device="cpu")._stride((512, 512)) == 3


def test_numpy_forward_is_the_torch_forward_and_threads_are_restored():
    import torch

    p = _Predictor(dim=5, lags=2, hidden=8, lr=1e-2, device="cpu", seed=1, threads=1)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 10)), rng.standard_normal((16, 5))
    before = torch.get_num_threads()
    p.train(X, Y, 3, 1e-2)
    assert torch.get_num_threads() == before
    with torch.no_grad():
        x = torch.as_tensor(X[:1])
        ref = (x[:, -5:] + p.net(x)).numpy()[0]
    np.testing.assert_allclose(p.predict(X[0]), ref, rtol=1e-12, atol=1e-14)


def test_nonfinite_cells_are_counted_and_alarm_at_once():
    det = AnomalyDetector(warmup=10, device="cpu")
    f = _field(0)
    f[3, 4] = np.nan
    res = _step(det, 0, f)
    assert res.scores["nonfinite"] == 1 and res.scores["alarm"] == 1 and res.scores["score"] >= 1e6
    assert len(res.events) == 1


def test_quiet_run_no_alarm_then_rate_jump_alarms():
    det = AnomalyDetector(warmup=30, device="cpu")
    cp = CusumChangePoint(window=10)
    alarms, changes = [], []
    for t in range(120):
        res, c = _step(det, t, _field(t, rate=1.0 if t < 90 else 4.0), cp)
        if res.scores["alarm"]:
            alarms.append(t)
        if c.scores["change"]:
            changes.append(t)
    assert alarms and alarms[0] in (90, 91, 92), alarms
    assert changes and 90 <= changes[0] <= 95, changes
    assert det.threshold >= det.min_threshold


def test_restore_from_state_dict_gives_the_same_scores():
    a = AnomalyDetector(warmup=20, device="cpu")
    ca = CusumChangePoint(window=10)
    for t in range(40):
        _step(a, t, _field(t), ca)
    state = pickle.loads(pickle.dumps((a.state_dict(), ca.state_dict())))  # as the checkpoint file
    b = AnomalyDetector(warmup=20, device="cpu")
    cb = CusumChangePoint(window=10)
    b.load_state_dict(state[0])
    cb.load_state_dict(state[1])
    for t in range(40, 70):
        f = _field(t, rate=1.0 if t < 60 else 3.0)
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
        AnomalyDetector(stride=-1)
    with pytest.raises(ValueError):
        AnomalyDetector(update_every=0)
