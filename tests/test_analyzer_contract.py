"""One suite over every registered analyzer (like river's ``checks.yield_checks``).

Each analyzer must: take keyword-only parameters; call ``allreduce`` the same
number of times on every rank, including a rank with no blocks; return
picklable partials; return a ``StepResult`` whose events carry exactly its
``event_fields`` and whose scores are among ``score_names``; give the same
result however the field is cut into blocks and ranks; and restore its state.
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

from intransit.analyzers import base

NAMES = sorted(base.available())


def moving_field(step: int, shape=(64, 64)) -> np.ndarray:
    rng = np.random.default_rng(step)
    field = rng.standard_normal(shape) * 0.3
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cy, cx in ((16 + step, 20), (40, 10 + 2 * step), (50 - step, 50)):
        field += 6.0 * np.exp(-((yy - cy % shape[0]) ** 2 + (xx - cx % shape[1]) ** 2) / 8.0)
    return field


def cut(field: np.ndarray, rows: list[int], cols: list[int], name: str | None = None) -> list[base.Block]:
    """Blocks of an uneven grid; with ``name``, each padded with the halo that analyzer's ``halo_spec`` asks."""
    halo, periodic = build(name).halo_spec(field.ndim) if name else ((0,) * field.ndim, (False,) * field.ndim)
    blocks, bid = [], 0
    r0 = 0
    for r in rows:
        c0 = 0
        for c in cols:
            block = base.Block(field[r0:r0 + r, c0:c0 + c].copy(), (r0, c0), (r, c), bid)
            if any(halo):
                lo, hi, index = [], [], []
                for s, n, h, p, size in zip((r0, c0), (r, c), halo, periodic, field.shape):
                    a, b = (h, h) if p else (min(h, s), min(h, size - s - n))
                    lo.append(a)
                    hi.append(b)
                    index.append(np.arange(s - a, s + n + b) % size)
                padded = field[np.ix_(*index)].copy()
                own = padded[lo[0]:lo[0] + r, lo[1]:lo[1] + c]
                block = base.Block(own, (r0, c0), (r, c), bid, padded=padded, halo_lo=tuple(lo), halo_hi=tuple(hi))
            blocks.append(block)
            bid += 1
            c0 += c
        r0 += r
    return blocks


class Ranks:
    """Simulated ranks, one analyzer instance each (as on real ranks), with a multi-pass allreduce.

    Rank 0's instance also runs ``combine``. Probe passes run on throw-away
    copies: pass k answers the first k collectives with their global sums and
    records what every rank contributes to collective k (so a collective may
    depend on the answer of an earlier one, as a histogram's range on the
    moments); the last pass runs the real step with every collective answered
    by the global sum.
    """

    def __init__(self, name: str, n_ranks: int) -> None:
        self.name = name
        self.instances = [build(name) for _ in range(n_ranks)]

    def step(self, step: int, shares: list[list[base.Block]], shape, upstream=None) -> tuple[base.StepResult, list[int]]:
        assert len(shares) == len(self.instances)
        totals: list[np.ndarray] = []
        while True:
            calls: list[list[np.ndarray]] = [[] for _ in shares]
            for r, blocks in enumerate(shares):
                def record(values, r=r):
                    calls[r].append(np.asarray(values, dtype=np.float64).copy())
                    i = len(calls[r]) - 1
                    return (totals[i] if i < len(totals) else np.asarray(values, dtype=np.float64)).copy()
                probe = pickle.loads(pickle.dumps(self.instances[r]))
                probe.process_blocks(base.StepContext(step, step, "f", shape, blocks, allreduce=record))
            counts = [len(c) for c in calls]
            if min(counts) <= len(totals):  # a rank that saw every answer so far made no more calls
                break
            totals.append(sum(c[len(totals)] for c in calls))
        partials = []
        for r, blocks in enumerate(shares):
            it = iter(totals)
            ctx = base.StepContext(step, step, "f", shape, blocks, allreduce=lambda v, it=it: next(it).copy())
            partials.append(pickle.loads(pickle.dumps(self.instances[r].process_blocks(ctx))))
        ctx = base.StepContext(step, step, "f", shape, [], input=upstream)
        return self.instances[0].combine(partials, ctx), counts

    def state(self) -> dict:
        """What the runner checkpoints: rank 0's state and every rank's local state."""
        return {"global": self.instances[0].state_dict(), "local": [a.local_state_dict() for a in self.instances]}

    def restore(self, state: dict) -> None:
        self.instances[0].load_state_dict(state["global"])
        for a, local in zip(self.instances, state["local"]):
            a.load_local_state_dict(local)


def build(name: str) -> base.Analyzer:
    cls = base.get(name)
    return cls(**cls.example_params())


def feed(step: int, field: np.ndarray, upstream: "Ranks | None"):
    if upstream is None:
        return None
    result, _ = upstream.step(step, [cut(field, [64], [64], upstream.name)], field.shape)
    return result


def n_steps(cls: type[base.Analyzer], default: int = 3) -> int:
    """Steps the shared tests run: an analyzer with a warm-up states how many cover it (``example_steps``)."""
    return int(getattr(cls, "example_steps", default))


def score_tolerances(cls: type[base.Analyzer], rtol: float) -> dict[str, float]:
    """Per-score relative tolerance under another decomposition: ``score_rtol`` where the analyzer states one
    (its docstring says why), else the analyzer-wide ``decomposition_rtol`` (1e-7 for exact analyzers)."""
    return {k: float(v) for k, v in getattr(cls, "score_rtol", {}).items()}


def test_anomaly_and_changepoint_run_past_their_warm_up_on_real_input():
    """The suite must exercise the calibrated path, not the warm-up's constant scores (issue 24)."""
    for name in ("anomaly", "changepoint"):
        cls = base.get(name)
        steps = n_steps(cls)
        upstream = Ranks(cls.example_input, 1) if cls.example_input else None
        ranks = Ranks(name, 1)
        last = None
        for step in range(steps):
            field = moving_field(step)
            last, _ = ranks.step(step, [cut(field, [64], [64], name)], field.shape, upstream=feed(step, field, upstream))
        if name == "anomaly":
            assert last.scores["warmup"] == 0.0 and np.isfinite(last.scores["threshold_growth"])
            assert last.scores["threshold_growth"] >= ranks.instances[0].min_threshold
        else:
            assert cls.example_input == "anomaly"
            assert len(ranks.instances[0].hist) == ranks.instances[0].hist.maxlen  # the CUSUM is armed


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_keyword_only(name):
    cls = base.get(name)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), params


@pytest.mark.parametrize("name", NAMES)
def test_results_follow_the_schema_and_ignore_the_decomposition(name):
    cls = base.get(name)
    layouts = [
        ([[64], [64]], [0]),                      # one rank, one block
        ([[32, 32], [32, 32]], [0, 0, 1, 1]),     # 2×2 blocks on two ranks
        ([[7, 40, 17], [64]], [0, 2, 2]),         # uneven, a rank with none
    ]
    if cls.whole_axes:  # the service hands such analyzers whole bands only
        assert cls.whole_axes == (1,), "extend this suite for other whole axes"
        layouts[1] = ([[32, 32], [64]], [0, 1])
    outcomes = []
    for (rows, cols), owner in layouts:
        n_ranks = max(owner) + 2  # the last rank holds no block
        ranks = Ranks(name, n_ranks)
        upstream = Ranks(cls.example_input, 1) if cls.example_input else None
        steps = []
        for step in range(n_steps(cls)):
            field = moving_field(step)
            blocks = cut(field, rows, cols, name)
            shares = [[b for b, o in zip(blocks, owner) if o == r] for r in range(n_ranks)]
            result, counts = ranks.step(step, shares, field.shape, upstream=feed(step, field, upstream))
            assert len(set(counts)) == 1, f"allreduce called {counts} times on the ranks (must be equal)"
            assert isinstance(result, base.StepResult)
            for ev in result.events:
                assert tuple(ev) == tuple(cls.event_fields) or set(ev) == set(cls.event_fields)
            if cls.score_names:
                assert set(result.scores) <= set(cls.score_names), set(result.scores) - set(cls.score_names)
            pickle.dumps(result)
            steps.append(result)
        outcomes.append(steps)
    rtol = cls.decomposition_rtol or 1e-7
    per_score = score_tolerances(cls, rtol)
    for other in outcomes[1:]:
        for a, b in zip(outcomes[0], other):
            assert len(a.events) == len(b.events)
            for ea, eb in zip(a.events, b.events):
                np.testing.assert_allclose([ea[k] for k in cls.event_fields], [eb[k] for k in cls.event_fields],
                                           rtol=rtol, atol=1e-7)
            assert a.scores.keys() == b.scores.keys()
            for k in sorted(a.scores):  # each score within what the analyzer's docstring promises for it
                tol = per_score.get(k, rtol)
                np.testing.assert_allclose(a.scores[k], b.scores[k], rtol=tol, atol=1e-7 + tol * 0.05,
                                           equal_nan=True, err_msg=f"{name}: score {k!r}")


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_identically(name):
    cls = base.get(name)
    total = max(6, n_steps(cls))
    half = total // 2
    fields = [moving_field(s) for s in range(total)]
    upstream = Ranks(cls.example_input, 1) if cls.example_input else None
    inputs = [feed(s, f, upstream) for s, f in enumerate(fields)]

    def shares(field):
        blocks = cut(field, [32, 32], [64], name)
        return [[blocks[0]], [blocks[1]]]

    a = Ranks(name, 2)
    for s in range(half):
        a.step(s, shares(fields[s]), (64, 64), upstream=inputs[s])
    b = Ranks(name, 2)
    b.restore(pickle.loads(pickle.dumps(a.state())))
    for s in range(half, total):
        ra, _ = a.step(s, shares(fields[s]), (64, 64), upstream=inputs[s])
        rb, _ = b.step(s, shares(fields[s]), (64, 64), upstream=inputs[s])
        assert ra.events == rb.events
        assert ra.scores.keys() == rb.scores.keys()
        np.testing.assert_allclose([ra.scores[k] for k in sorted(ra.scores)],
                                   [rb.scores[k] for k in sorted(rb.scores)], equal_nan=True)
