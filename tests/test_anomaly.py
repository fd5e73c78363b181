"""Anomaly and change-point analyzers: features, calibration, blow-up, checkpoint restore."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from intransit.analyzers.anomaly import AnomalyDetector, local_features
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
