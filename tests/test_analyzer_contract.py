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


def cut(field: np.ndarray, rows: list[int], cols: list[int]) -> list[base.Block]:
    blocks, bid = [], 0
    r0 = 0
    for r in rows:
        c0 = 0
        for c in cols:
            blocks.append(base.Block(field[r0:r0 + r, c0:c0 + c].copy(), (r0, c0), (r, c), bid))
            bid += 1
            c0 += c
        r0 += r
    return blocks


class Ranks:
    """Runs one step of an analyzer on simulated ranks with a real two-pass allreduce."""

    def __init__(self, analyzer: base.Analyzer) -> None:
        self.analyzer = analyzer

    def step(self, step: int, shares: list[list[base.Block]], shape, upstream=None) -> tuple[base.StepResult, list[int]]:
        calls: list[list[np.ndarray]] = [[] for _ in shares]
        # Pass 1: record what each rank contributes to each allreduce call.
        for r, blocks in enumerate(shares):
            def record(values, r=r):
                calls[r].append(np.asarray(values, dtype=np.float64).copy())
                return np.asarray(values, dtype=np.float64).copy()
            probe = pickle.loads(pickle.dumps(self.analyzer))  # the same state, thrown away
            probe.process_blocks(base.StepContext(step, step, "f", shape, blocks, allreduce=record))
        counts = [len(c) for c in calls]
        totals = [sum(c[i] for c in calls) for i in range(counts[0])] if len(set(counts)) == 1 else []
        # Pass 2: the real step, every allreduce answered with the global sum.
        partials = []
        for r, blocks in enumerate(shares):
            it = iter(totals)
            ctx = base.StepContext(step, step, "f", shape, blocks, allreduce=lambda v, it=it: next(it).copy())
            partials.append(pickle.loads(pickle.dumps(self.analyzer.process_blocks(ctx))))
        ctx = base.StepContext(step, step, "f", shape, [], input=upstream)
        return self.analyzer.combine(partials, ctx), counts


def build(name: str) -> base.Analyzer:
    cls = base.get(name)
    return cls(**cls.example_params())


def feed(name: str, step: int, field: np.ndarray, upstream_analyzer):
    if upstream_analyzer is None:
        return None
    result, _ = Ranks(upstream_analyzer).step(step, [cut(field, [64], [64])], field.shape)
    return result


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
    outcomes = []
    for (rows, cols), owner in layouts:
        analyzer = build(name)
        upstream = build(cls.example_input) if cls.example_input else None
        steps = []
        for step in range(3):
            field = moving_field(step)
            blocks = cut(field, rows, cols)
            shares = [[b for b, o in zip(blocks, owner) if o == r] for r in range(max(owner) + 2)]
            up = feed(cls.example_input, step, field, upstream) if upstream else None
            result, counts = Ranks(analyzer).step(step, shares, field.shape, upstream=up)
            assert len(set(counts)) == 1, f"allreduce called {counts} times on the ranks (must be equal)"
            assert isinstance(result, base.StepResult)
            for ev in result.events:
                assert tuple(ev) == tuple(cls.event_fields) or set(ev) == set(cls.event_fields)
            if cls.score_names:
                assert set(result.scores) <= set(cls.score_names), set(result.scores) - set(cls.score_names)
            pickle.dumps(result)
            steps.append(result)
        outcomes.append(steps)
    for other in outcomes[1:]:
        for a, b in zip(outcomes[0], other):
            assert len(a.events) == len(b.events)
            for ea, eb in zip(a.events, b.events):
                np.testing.assert_allclose([ea[k] for k in cls.event_fields], [eb[k] for k in cls.event_fields],
                                           rtol=1e-7, atol=1e-7)
            assert a.scores.keys() == b.scores.keys()
            np.testing.assert_allclose([a.scores[k] for k in sorted(a.scores)], [b.scores[k] for k in sorted(b.scores)],
                                       rtol=1e-7, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_identically(name):
    cls = base.get(name)
    a = build(name)
    upstream = build(cls.example_input) if cls.example_input else None
    fields = [moving_field(s) for s in range(5)]
    inputs = [feed(cls.example_input, s, f, upstream) if upstream else None for s, f in enumerate(fields)]
    for s in range(3):
        Ranks(a).step(s, [cut(fields[s], [64], [64])], (64, 64), upstream=inputs[s])
    b = build(name)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    for s in range(3, 5):
        ra, _ = Ranks(a).step(s, [cut(fields[s], [64], [64])], (64, 64), upstream=inputs[s])
        rb, _ = Ranks(b).step(s, [cut(fields[s], [64], [64])], (64, 64), upstream=inputs[s])
        assert ra.events == rb.events
        np.testing.assert_allclose(sorted(ra.scores.items()) and [ra.scores[k] for k in sorted(ra.scores)],
                                   [rb.scores[k] for k in sorted(rb.scores)], equal_nan=True)
