"""Blob tracking: IDs survive crossings, gaps, dropped writer steps, seams and restarts."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from intransit.analyzers.base import Block, StepContext, StepResult, get
from intransit.analyzers.blobs import BlobDetector
from intransit.analyzers.tracking import EVENT_FIELDS, BlobTracker

SHAPE = (64, 64)


#: Confirmation off (every track in the catalog from its first sighting): for the tests of the
#: motion model, which look at IDs and velocities from step 0.  Confirmation has its own tests.
IMMEDIATE = dict(confirm_hits=1, confirm_window=1, min_length=1)


def immediate(**kw) -> BlobTracker:
    return BlobTracker(**{**IMMEDIATE, **kw})


def detections(*points: tuple[float, float]) -> StepResult:
    """A detection result as blob_detection would produce it (only the keys tracking reads matter)."""
    return StepResult(events=[{"object": float(i), "c0": float(y), "c1": float(x), "c2": 0.0} for i, (y, x) in enumerate(points)])


def feed(tracker: BlobTracker, frames: list[list[tuple[float, float]]], steps: list[int] | None = None, start_index: int = 0) -> list[StepResult]:
    steps = list(range(len(frames))) if steps is None else steps
    out = []
    for i, (step, pts) in enumerate(zip(steps, frames)):
        ctx = StepContext(step=step, index=start_index + i, variable="n", global_shape=SHAPE, blocks=[], input=detections(*pts))
        assert tracker.process_blocks(ctx) is None
        out.append(tracker.combine([None], ctx))
    return out


def ids(result: StepResult) -> list[int]:
    """Track ID per detection, in detection order."""
    by_obj = {int(e["object"]): int(e["track_id"]) for e in result.events}
    return [by_obj[k] for k in sorted(by_obj)]


def test_registered_and_schema():
    assert get("tracking") is BlobTracker and BlobTracker.needs_input
    first, res = feed(BlobTracker(), [[(10, 10)], [(10, 10)]])
    assert first.events == [] and first.scores["n_tentative"] == 1 and first.scores["n_active"] == 0
    assert [tuple(e) for e in res.events] == [EVENT_FIELDS]
    assert all(isinstance(v, float) for v in res.events[0].values())
    assert set(res.scores) == set(BlobTracker.score_names)
    assert res.scores == {"n_active": 1.0, "n_tentative": 0.0, "n_births": 1.0, "n_deaths": 0.0, "tentative_dropped": 0.0,
                          "n_tracks_total": 1.0, "n_merges": 0.0, "n_splits": 0.0, "n_duplicates": 0.0}


def test_constant_velocity_and_velocity_estimate():
    frames = [[(10 + 2.0 * t, 5 + 3.0 * t), (50 - 1.0 * t, 40.0)] for t in range(8)]
    res = feed(immediate(max_distance=5.0), frames)
    assert all(ids(r) == [1, 2] for r in res)
    last = {int(e["track_id"]): e for e in res[-1].events}
    assert np.allclose([last[1]["v0"], last[1]["v1"]], [2.0, 3.0])
    assert np.allclose([last[2]["v0"], last[2]["v1"]], [-1.0, 0.0])
    assert last[1]["age"] == 8 and last[1]["born"] == 0.0
    assert [e["born"] for e in res[0].events] == [1.0, 1.0]
    assert res[-1].scores["n_tracks_total"] == 2


def test_gap_while_moving_uses_prediction():
    # 3.5 cells per step under a 4-cell gate; unseen at step 3, so step 4 is 7 cells from the last sighting.
    frames = [[(10.0, 5 + 3.5 * t)] for t in range(7)]
    frames[3] = []
    res = feed(immediate(max_distance=4.0), frames)
    assert [ids(r) for r in res] == [[1], [1], [1], [], [1], [1], [1]]
    assert np.isclose(res[-1].events[0]["v1"], 3.5)


def test_crossing_blobs_keep_ids():
    # Opposite motion one row apart: right after they pass, each previous position is nearer the
    # other blob (sqrt(5) < 3), so matching without the velocity prediction would swap the IDs.
    frames = [[(30.0, 5 + 3.0 * t), (31.0, 50 - 3.0 * t)] for t in range(16)]
    res = feed(immediate(max_distance=5.0), frames)
    assert all(ids(r) == [1, 2] for r in res)
    assert res[-1].scores["n_tracks_total"] == 2
    last = {int(e["track_id"]): e for e in res[-1].events}
    assert last[1]["v1"] > 0 > last[2]["v1"]


def test_gap_of_one_step_keeps_id():
    frames = [[(10.0 + t, 20.0)] for t in range(6)]
    frames[3] = []  # not detected at step 3
    res = feed(immediate(max_distance=3.0, max_gap=2), frames)
    assert [ids(r) for r in res] == [[1], [1], [1], [], [1], [1]]
    assert res[3].scores["n_active"] == 1 and res[3].scores["n_deaths"] == 0
    assert res[4].events[0]["age"] == 4


def test_gap_longer_than_max_gap_kills_track():
    frames = [[(10.0, 20.0)], [(10.0, 20.0)], [], [], [(10.0, 20.0)]]
    res = feed(immediate(max_gap=1), frames)
    assert [r.scores["n_deaths"] for r in res] == [0, 0, 0, 1, 0]
    assert ids(res[-1]) == [2] and res[-1].scores["n_births"] == 1


def test_dropped_writer_steps_still_link():
    # The writer dropped steps: ADIOS2 steps 0, 1, 2, 5, 8, 11 while the loop index counts 0..5.
    # 1.5 cells per writer step under a 2-cell gate: after a jump of 3 writer steps the blob is
    # 4.5 cells away, and a prediction per analysed step would miss it by 3 cells.
    steps = [0, 1, 2, 5, 8, 11]
    frames = [[(20.0, 4.0 + 1.5 * s)] for s in steps]
    tracker = immediate(max_distance=2.0)
    res = feed(tracker, frames, steps=steps)
    assert all(ids(r) == [1] for r in res)
    assert np.isclose(res[-1].events[0]["v1"], 1.5)  # velocity per writer step
    assert res[-1].scores["n_tracks_total"] == 1


def test_periodic_wraparound_keeps_id():
    frames = [[(20.0, (55.0 + 3.0 * t) % 64)] for t in range(8)]
    res = feed(immediate(max_distance=4.0, periodic=[False, True]), frames)
    assert all(ids(r) == [1] for r in res)
    assert all(0 <= r.events[0]["c1"] < 64 for r in res)
    assert np.isclose(res[-1].events[0]["v1"], 3.0)
    open_ = feed(immediate(max_distance=4.0), frames)
    assert max(ids(open_[-1])) == 2  # without periodicity the seam breaks the track


def test_births_deaths_and_summary():
    frames = [
        [(10.0, 10.0)],
        [(10.0, 10.0), (40.0, 40.0)],
        [(10.0, 10.0), (40.0, 40.0)],
        [(40.0, 40.0)],
        [(40.0, 40.0)],
        [(40.0, 40.0)],
        [],
    ]
    # min_length 3 holds each track back until its third sighting (it used to count short tracks only).
    tracker = BlobTracker(max_gap=1, min_length=3)
    res = feed(tracker, frames)
    assert [r.scores["n_births"] for r in res] == [0, 0, 1, 1, 0, 0, 0]  # confirmations
    assert [r.scores["n_deaths"] for r in res] == [0, 0, 0, 0, 1, 0, 0]
    assert [r.scores["n_active"] for r in res] == [0, 0, 1, 2, 1, 1, 1]
    assert tracker.summary() == [
        {"track_id": 1, "first_step": 0, "last_step": 2, "n_obs": 3},
        {"track_id": 2, "first_step": 1, "last_step": 5, "n_obs": 5},
    ]
    short = feed(BlobTracker(max_gap=0, min_length=3), [[(5.0, 5.0)], [(5.0, 5.0)], []])
    assert all(r.events == [] for r in short)  # never reached 3 sightings: never in the catalog
    assert short[-1].scores["tentative_dropped"] == 1 and short[-1].scores["n_deaths"] == 0


def test_state_dict_round_trip_gives_identical_output():
    rng = np.random.default_rng(0)
    frames = []
    for t in range(20):
        pts = [(10 + 1.5 * t, (5 + 2.0 * t) % 64), (40 - 1.0 * t, 30 + 0.5 * t)]
        if t >= 5:
            pts.append((50.0, 10 + t))
        frames.append([(y + 0.1 * rng.normal(), x + 0.1 * rng.normal()) for y, x in pts if rng.random() > 0.15])
    a = immediate(max_distance=5.0, periodic=[False, True], velocity_smoothing=0.3)
    feed(a, frames[:10])
    state = pickle.loads(pickle.dumps(a.state_dict()))
    b = immediate(max_distance=5.0, periodic=[False, True], velocity_smoothing=0.3)
    b.load_state_dict(copy.deepcopy(state))
    ra = feed(a, frames[10:], steps=list(range(10, 20)), start_index=10)
    rb = feed(b, frames[10:], steps=list(range(10, 20)), start_index=10)
    assert [r.events for r in ra] == [r.events for r in rb]
    assert [r.scores for r in ra] == [r.scores for r in rb]
    assert a.summary() == b.summary()
    assert max(e["track_id"] for r in rb for e in r.events) >= 3  # it continued the old IDs, not from 1
    with pytest.raises(ValueError, match="version"):
        b.load_state_dict({**state, "version": 99})


def test_tracks_real_detections():
    """The two analyzers chained as the service does: detection events feed the tracker."""
    det, tracker = BlobDetector(periodic=[False, True]), immediate(max_distance=5.0, periodic=[False, True])
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for t in range(6):
        cx = (58.0 + 3.0 * t) % 64
        dx = (xx - cx + 32) % 64 - 32
        field = 5 * np.exp(-((yy - 20.0) ** 2 + dx**2) / 8.0)
        # One block over the domain: detection across block faces is blob_detection's own test (halo reads).
        blocks = [Block(field.copy(), (0, 0), SHAPE, 0)]
        ctx = StepContext(step=t, index=t, variable="n", global_shape=SHAPE, blocks=blocks)
        found = det.combine([det.process_blocks(ctx)], ctx)
        assert found.scores["n_objects"] == 1
        res = tracker.combine([None], StepContext(step=t, index=t, variable="n", global_shape=SHAPE, blocks=[], input=found))
        assert ids(res) == [1]
        assert abs(res.events[0]["c1"] - cx) < 0.2 or abs(abs(res.events[0]["c1"] - cx) - 64) < 0.2


def test_missing_input_and_bad_params():
    with pytest.raises(ValueError, match="input"):
        BlobTracker().combine([None], StepContext(step=0, index=0, variable="n", global_shape=SHAPE, blocks=[]))
    for params, name in [
        ({"max_distance": 0}, "max_distance"),
        ({"max_distance": float("inf")}, "max_distance"),
        ({"max_gap": -1}, "max_gap"),
        ({"max_gap": 1.5}, "max_gap"),
        ({"min_length": 0}, "min_length"),
        ({"velocity_smoothing": 1.5}, "velocity_smoothing"),
        ({"periodic": [0, 1]}, "periodic"),
    ]:
        with pytest.raises(ValueError, match=name):
            BlobTracker(**params)
    with pytest.raises(ValueError, match="periodic"):
        feed(BlobTracker(periodic=[False, False, True]), [[(1.0, 1.0)]])


def test_merge_and_split_record_parents():
    # Two blobs converge and coalesce (one detection from step 4 on), then break up at step 12.
    frames = [[(20.0, 10.0 + 2 * t), (20.0, 30.0 - 2 * t)] for t in range(4)]
    frames += [[(20.0, 20.0)] for _ in range(4, 12)]
    frames += [[(20.0 - 3 - (t - 12), 20.0), (20.0 + 3 + (t - 12), 20.0)] for t in range(12, 16)]
    trk = immediate(max_distance=5.0, max_gap=2, merge_distance=6.0, split_distance=8.0, occlusion_distance=None)
    res = feed(trk, frames)
    links = [(int(e["parent0"]), int(e["parent1"]), int(e["track_id"])) for r in res for e in r.events if e["parent0"]]
    merges = [l for l in links if l[1]]
    splits = [l for l in links if not l[1]]
    assert len(merges) == 1 and sorted(merges[0][:2]) == [1, 2]
    child = merges[0][2]
    assert len(splits) == 2 and all(p == child for p, _, _ in splits)
    assert sum(r.scores["n_merges"] for r in res) == 1 and sum(r.scores["n_splits"] for r in res) == 1


def test_crossing_is_not_a_merge():
    # Head-on pass: one detection for two steps, then apart again: both IDs continue, no links.
    frames = [[(20.0, 10.0 + 2 * t), (20.0, 30.0 - 2 * t)] for t in range(4)]
    frames += [[(20.0, 20.0)], [(20.0, 20.0)]]
    frames += [[(20.0, 10.0 + 2 * t), (20.0, 30.0 - 2 * t)] for t in range(6, 10)]
    res = feed(immediate(max_distance=5.0, max_gap=2, merge_distance=6.0, split_distance=8.0), frames)
    assert ids(res[-1]) == [1, 2]
    assert not any(e["parent0"] for r in res for e in r.events)


def test_occlusion_coasting_keeps_ids_through_a_merged_detection():
    # Two blobs cross; for 5 steps they are one detection (at their midpoint).
    frames = []
    for t in range(20):
        a, b = (30.0, 5 + 2.0 * t), (34.0, 45 - 2.0 * t)
        if 8 <= t <= 12:
            frames.append([((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)])
        else:
            frames.append([a, b])
    plain = feed(immediate(max_distance=5.0, max_gap=2, occlusion_distance=None), frames)
    assert plain[-1].scores["n_tracks_total"] > 2  # one track died in the 5-step occlusion
    trk = immediate(max_distance=5.0, max_gap=2, occlusion_distance=6.0, report_occluded=True)
    res = feed(trk, frames)
    assert res[-1].scores["n_tracks_total"] == 2
    assert ids(res[0]) == ids(res[-1]) == [1, 2]
    coasted = [e for r in res[8:13] for e in r.events if e["object"] == -1.0]
    assert len(coasted) == 5 and all(e["track_id"] in (1.0, 2.0) for e in coasted)
    assert all(tuple(e) == EVENT_FIELDS for e in coasted)
    state = pickle.loads(pickle.dumps(trk.state_dict()))
    again = immediate(max_distance=5.0, max_gap=2, occlusion_distance=6.0)
    again.load_state_dict(state)
    assert again.state_dict() == trk.state_dict()


def test_occlusion_parameters_validated():
    for bad in (dict(occlusion_distance=0.0), dict(max_occluded=-1), dict(report_occluded="yes")):
        with pytest.raises(ValueError):
            BlobTracker(**bad)


@pytest.mark.parametrize("periodic", [[True, True, True], [True, False, True], [False, False, False]])
def test_sparse_gate_equals_brute_force_assignment(periodic):
    """k-d tree candidates + per-component assignment give the dense Big-M Hungarian's links."""
    from scipy.optimize import linear_sum_assignment

    from intransit.analyzers.tracking import _assign, _min_image, _pairs

    rng = np.random.default_rng(7)
    shape = np.array([24.0, 20.0, 28.0])
    lengths = np.where(periodic, shape, 0.0)
    period = np.where(lengths > 0, lengths, np.inf)
    for trial in range(40):
        n_t, n_d, gate = int(rng.integers(0, 60)), int(rng.integers(0, 60)), float(rng.uniform(1.0, 5.0))
        tracks = rng.uniform(0, 1, (n_t, 3)) * shape
        dets = rng.uniform(-0.1, 1.1, (n_d, 3)) * shape  # some beyond the box: the tree wraps them
        ti, di, dd = _pairs(tracks, dets, gate, lengths, 3)
        got = _assign(n_t, n_d, ti, di, dd, gate)
        cost = np.sqrt((_min_image(dets[None, :, :] - tracks[:, None, :], period) ** 2).sum(-1))
        want = {}
        if n_t and n_d:
            big = gate * (min(n_t, n_d) + 1) + 1.0
            r, c = linear_sum_assignment(np.where(cost <= gate, cost, big))
            want = {int(j): int(i) for i, j in zip(r, c) if cost[i, j] <= gate}
        assert got == want, (trial, periodic)
        assert len(ti) == int((cost <= gate).sum())  # the tree found every gated pair, no more
        assert np.allclose(dd, cost[ti, di])


def test_one_step_false_detection_never_reaches_the_catalog():
    """A detection seen once is a tentative track: it dies uncatalogued and is counted."""
    frames = [[(10.0 + t, 20.0)] for t in range(8)]
    frames[3] = frames[3] + [(50.0, 50.0)]  # a one-step false detection
    trk = BlobTracker(max_distance=3.0)
    res = feed(trk, frames)
    rows = [e for r in res for e in r.events]
    assert {int(e["track_id"]) for e in rows} == {1}
    assert all(abs(e["c0"] - 50.0) > 5 for e in rows)
    assert sum(r.scores["tentative_dropped"] for r in res) == 1 == trk.n_tentative_dropped()
    assert trk.summary() == [{"track_id": 1, "first_step": 0, "last_step": 7, "n_obs": 8}]


def test_confirmed_track_has_dense_ids_and_rows_from_confirmation():
    """k of n: seen at steps 0 and 2 (missed 1) confirms at 2; IDs count confirmed tracks only."""
    frames = [[(10.0, 10.0), (40.0, 40.0)], [(10.0, 10.0), (30.0, 5.0)], [(10.0, 10.0), (40.0, 40.0)],
              [(10.0, 10.0), (40.0, 40.0), (55.0, 20.0)], [(10.0, 10.0), (40.0, 40.0)], [(10.0, 10.0), (40.0, 40.0)]]
    res = feed(BlobTracker(max_distance=3.0, confirm_hits=2, confirm_window=3, min_length=2), frames)
    assert [sorted(int(e["track_id"]) for e in r.events) for r in res] == [[], [1], [1, 2], [1, 2], [1, 2], [1, 2]]
    first = {int(e["track_id"]): e for r in res for e in r.events if e["born"]}
    assert first[1]["age"] == 2 and first[2]["age"] == 2  # the confirming row counts the tentative sightings
    assert sum(r.scores["tentative_dropped"] for r in res) == 2  # the two one-step detections
    assert res[-1].scores["n_tracks_total"] == 2


def test_children_of_a_confirmed_track_are_confirmed_at_once():
    frames = [[(20.0, 20.0)] for _ in range(4)] + [[(17.0, 20.0), (23.0, 20.0)], [(16.0, 20.0), (24.0, 20.0)]]
    res = feed(BlobTracker(max_distance=5.0, split_distance=8.0), frames)
    kids = [e for e in res[4].events if e["parent0"]]
    assert len(kids) == 2 and all(e["parent0"] == 1.0 and e["born"] == 1.0 for e in kids)
    assert sorted(int(e["track_id"]) for e in kids) == [2, 3]


def test_one_outlier_detection_does_not_change_the_velocity():
    frames = [[(10.0, 5.0 + 1.0 * t)] for t in range(8)]
    frames[5] = [(12.0, 10.0)]  # 2 cells off the prediction (11 on axis 1 -> 10, axis 0 10 -> 12)
    res = feed(immediate(max_distance=4.0, velocity_gate=1.5, velocity_smoothing=0.0), frames)
    assert all(ids(r) == [1] for r in res)
    v5 = (res[5].events[0]["v0"], res[5].events[0]["v1"])
    assert np.allclose(v5, (0.0, 1.0))  # the outlier moved the track, not its velocity
    ungated = feed(immediate(max_distance=4.0, velocity_gate=3.9, velocity_smoothing=0.0), frames)
    assert not np.allclose((ungated[5].events[0]["v0"], ungated[5].events[0]["v1"]), (0.0, 1.0))


def test_track_that_misses_its_prediction_is_picked_up_at_its_last_position():
    # Moves 3 cells per step, is missed once and stops where it was last seen: the prediction
    # (2 steps x 3 cells ahead) is 6 cells off, beyond the 4-cell gate; the last position is not.
    frames = [[(20.0, 5.0 + 3.0 * t)] for t in range(5)] + [[]] + [[(20.0, 17.0)]] * 3
    res = feed(immediate(max_distance=4.0, velocity_smoothing=0.0, max_gap=1, occlusion_distance=None), frames)
    assert [ids(r) for r in res] == [[1]] * 5 + [[]] + [[1]] * 3
    assert res[-1].scores["n_tracks_total"] == 1


def test_older_track_wins_a_contested_detection():
    # A confirmed track and a newborn tentative one compete for one detection a little nearer the
    # newborn (1.3 vs 1.7 cells): the confirmed one keeps it; without the bias the newborn takes it.
    frames = [[(20.0, 20.0)] for _ in range(5)] + [[(20.0, 20.0), (20.0, 23.0)], [(20.0, 21.7)]]
    res = feed(BlobTracker(max_distance=3.0, duplicate_distance=None, occlusion_distance=None), frames)
    assert [int(e["track_id"]) for e in res[-1].events] == [1]
    assert res[-1].scores["n_tracks_total"] == 1
    unbiased = feed(BlobTracker(max_distance=3.0, duplicate_distance=None, occlusion_distance=None,
                                tentative_cost=0.0), frames)
    assert [int(e["track_id"]) for e in unbiased[-1].events] == [2]


def test_duplicate_tracks_on_one_blob_merge_into_the_older():
    # A blob seen twice (a fragment) for three steps: two confirmed tracks, then one detection again.
    frames = [[(20.0, 10.0 + t)] for t in range(4)]
    frames += [[(20.0, 10.0 + t), (21.0, 10.5 + t)] for t in range(4, 7)]
    frames += [[(20.2, 10.0 + t)] for t in range(7, 10)]
    trk = BlobTracker(max_distance=3.0, max_gap=3)
    res = feed(trk, frames)
    assert sum(r.scores["n_duplicates"] for r in res) == 1
    assert [int(e["track_id"]) for e in res[-1].events] == [1]
    assert res[-1].scores["n_active"] == 1  # the duplicate ended at once (not after max_gap)


def test_spacing_gate_follows_crowding():
    """The gate shrinks to spacing_gate x the median neighbour distance where objects are crowded."""
    trk = BlobTracker(max_distance=10.0, spacing_gate=0.5)
    grid = np.array([[y, x, 0.0] for y in range(4, 60, 6) for x in range(4, 60, 6)], dtype=float)
    assert np.isclose(trk._gate(grid, np.zeros(3), 2), 3.0)  # neighbours 6 apart
    sparse = np.array([[5.0, 5.0, 0.0], [40.0, 40.0, 0.0], [5.0, 50.0, 0.0]])
    assert trk._gate(sparse, np.zeros(3), 2) == 10.0  # capped at max_distance
    # A crowded field: a track whose blob vanished does not jump to the neighbour 6 cells away.
    frames = [[(float(y), float(x)) for y, x in grid[:, :2]] for _ in range(4)]
    frames.append(frames[0][1:])  # object 0 gone; its neighbour at 6 cells is outside the 3-cell gate
    res = feed(BlobTracker(max_distance=10.0, spacing_gate=0.5, occlusion_distance=None), frames)
    assert sorted(ids(res[-1])) == sorted(ids(res[-2])[1:])


def test_version_2_checkpoint_loads_as_confirmed_tracks():
    """A checkpoint from before confirmation: its tracks were all in the catalog, so they stay there."""
    v2 = {"version": 2, "next_id": 3, "ended": [{"track_id": 1, "first_step": 0, "last_step": 2, "n_obs": 3}],
          "live": [{"track_id": 2, "pos": [10.0, 10.0, 0.0], "vel": [1.0, 0.0, 0.0], "first_step": 0, "last_step": 4,
                    "last_index": 4, "n_obs": 5, "occluder": 0, "coast": 0}]}
    trk = BlobTracker(max_distance=3.0)
    trk.load_state_dict(v2)
    res = feed(trk, [[(11.0, 10.0)], [(12.0, 10.0), (40.0, 40.0)], [(13.0, 10.0), (40.0, 40.0)]],
               steps=[5, 6, 7], start_index=5)
    assert [sorted(int(e["track_id"]) for e in r.events) for r in res] == [[2], [2], [2, 3]]
    assert res[0].events[0]["born"] == 0.0  # not a new catalog track
    assert [r["track_id"] for r in trk.summary()] == [1, 2, 3]


def _peaked(*points: tuple[float, float, float]) -> StepResult:
    """Detections with a ``peak`` (in noise sigma), as the noise-aware blob_detection reports them."""
    return StepResult(events=[{"object": float(i), "c0": float(y), "c1": float(x), "c2": 0.0, "peak": float(p)}
                              for i, (y, x, p) in enumerate(points)])


def test_significant_detection_is_its_own_confirmation():
    """A detection at >= confirm_peak sigma starts a catalog track at once; a weaker one (or one
    without a peak) still needs confirm_hits of confirm_window steps."""
    trk = BlobTracker(max_distance=3.0)
    assert trk.confirm_peak == 5.0
    out = []
    for t in range(3):
        pts = _peaked((10.0, 10.0 + t, 9.0), (40.0, 40.0, 4.2))
        ctx = StepContext(step=t, index=t, variable="n", global_shape=SHAPE, blocks=[], input=pts)
        out.append(trk.combine([None], ctx))
    assert [sorted(int(e["object"]) for e in r.events) for r in out] == [[0], [0, 1], [0, 1]]
    assert out[0].events[0]["born"] == 1.0 and out[0].events[0]["age"] == 1.0
    assert out[0].scores["n_active"] == 1 and out[0].scores["n_tentative"] == 1
    off = BlobTracker(max_distance=3.0, confirm_peak=None)
    ctx = StepContext(step=0, index=0, variable="n", global_shape=SHAPE, blocks=[], input=_peaked((10.0, 10.0, 9.0)))
    assert off.combine([None], ctx).events == []


def _coalesce(rel_speed: float, n: int = 10) -> list[list[tuple[float, float]]]:
    """Two tracked blobs 3 cells apart; from step 5 on one detection between them, drifting at ``rel_speed``/2."""
    frames = [[(20.0, 20.0 + 0.5 * rel_speed * t), (20.0, 23.0 - 0.5 * rel_speed * t)] for t in range(5)]
    mid = frames[-1]
    c = (20.0, (mid[0][1] + mid[1][1]) / 2)
    return frames + [[c] for _ in range(5, n)]


def test_resting_tracks_that_coalesce_merge_after_merge_gap():
    """Slow tracks (relative speed < coast_speed) that become one detection are a merge, declared once
    the hidden one has been unseen for more than merge_gap steps: both end, a child with both parents."""
    for merge_gap, step in ((1, 6), (0, 5), (None, 7)):
        res = feed(BlobTracker(merge_gap=merge_gap, confirm_hits=1, confirm_window=1, min_length=1), _coalesce(0.0))
        links = [(t, sorted((int(e["parent0"]), int(e["parent1"])))) for t, r in enumerate(res)
                 for e in r.events if e["parent1"]]
        assert links == [(step, [1, 2])], merge_gap
        assert res[step].scores["n_merges"] == 1 and [int(e["track_id"]) for e in res[-1].events] == [3]


def test_fast_tracks_that_coalesce_coast_as_a_crossing():
    """The same geometry passing at 2 cells per step: the hidden track coasts (rows at its prediction,
    object -1) instead of merging; with coast_speed 0 slow tracks coast the same way."""
    res = feed(BlobTracker(confirm_hits=1, confirm_window=1, min_length=1), _coalesce(2.0, n=7))
    assert not any(e["parent1"] for r in res for e in r.events)
    assert sorted((int(e["track_id"]), e["object"]) for e in res[5].events) == [(1, 0.0), (2, -1.0)]
    slow = feed(BlobTracker(coast_speed=0.0, confirm_hits=1, confirm_window=1, min_length=1), _coalesce(0.0, n=7))
    assert not any(e["parent1"] for r in slow for e in r.events)


def test_relink_keeps_the_id_of_a_spot_whose_centroid_jumps_in_a_crowded_field():
    """Spots 6 cells apart (first gate 0.5 x 6 = 3): one spot's centroid moves 4 cells (a split's larger
    piece); the second pass (relink_gate 0.75 x 6 = 4.5) keeps its ID; without it a new track starts."""
    grid = [(float(y), float(x)) for y in range(4, 60, 6) for x in range(4, 60, 6)]
    frames = [list(grid) for _ in range(4)]
    frames.append([(4.0, 8.0)] + grid[1:])
    for relink, same in ((0.75, True), (None, False)):
        res = feed(BlobTracker(relink_gate=relink, confirm_hits=1, confirm_window=1, min_length=1), frames)
        before = {int(e["object"]): int(e["track_id"]) for e in res[-2].events}[0]
        after = {int(e["object"]): int(e["track_id"]) for e in res[-1].events}[0]
        assert (after == before) is same, relink
        assert sorted(ids(res[-1])[1:]) == sorted(ids(res[-2])[1:])  # the other spots keep theirs


def test_new_options_validated():
    for bad in (dict(confirm_peak=float("nan")), dict(coast_speed=-1.0), dict(merge_gap=-1), dict(merge_gap=True),
                dict(relink_gate=0.0), dict(relink_gate=float("inf"))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            BlobTracker(**bad)
