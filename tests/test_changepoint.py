"""Change points on upstream scores: a regime change is found, its onset estimated, nothing before it."""

from __future__ import annotations

import numpy as np

from intransit.analyzers.base import StepContext, StepResult
from intransit.analyzers.changepoint import CusumChangePoint


def _feed(cp: CusumChangePoint, step: int, scores: dict[str, float]) -> StepResult:
    ctx = StepContext(step=step, index=step, variable="f", global_shape=(8, 8), blocks=[],
                      input=StepResult(scores={"warmup": 0.0, "nonfinite": 0.0, **scores}))
    return cp.combine([None], ctx)


def _scores(rng: np.random.Generator, level: float) -> dict[str, float]:
    return {"log_rate": level + 0.02 * rng.standard_normal(), "d_log_energy": 1e-3 * rng.standard_normal(),
            "log_grid_share": -5.0 + 0.02 * rng.standard_normal()}


def test_a_level_shift_in_the_rate_is_one_change_point_with_its_onset():
    rng = np.random.default_rng(0)
    cp = CusumChangePoint()
    found = []
    for t in range(300):
        res = _feed(cp, t, _scores(rng, -4.0 if t < 200 else -3.5))  # the pattern changes 65 % faster per step
        if res.events:
            found.append((t, res.events[0]))
    assert found, "no change point"
    t, ev = found[0]
    assert 200 <= t <= 204 and ev["signal"] == 0 and ev["direction"] == 1.0
    assert 199 <= ev["onset_step"] <= t
    assert all(s >= 200 for s, _ in found) and len(found) == 1  # none before, and one per change


def test_warm_up_and_non_finite_steps_are_skipped():
    rng = np.random.default_rng(1)
    cp = CusumChangePoint(window=10)
    for t in range(20):
        _feed(cp, t, _scores(rng, -4.0))
    armed = len(cp.hist)
    res = _feed(cp, 20, {**_scores(rng, -4.0), "log_rate": float("nan")})
    assert res.scores["change"] == 0 and len(cp.hist) == armed
    ctx = StepContext(step=21, index=21, variable="f", global_shape=(8, 8), blocks=[],
                      input=StepResult(scores={"warmup": 1.0, **_scores(rng, 0.0)}))
    assert cp.combine([None], ctx).scores["change"] == 0 and len(cp.hist) == armed
