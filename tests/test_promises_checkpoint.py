"""README promises of `[output] checkpoint`: `checkpoint_every = N`, `restore = false`, rule streaks across a restart.

The job loop runs in process on an in-memory stream (the stages are what is
under test, not the transport).  A job "dies" when its reader raises
``Killed`` (a BaseException, as SIGKILL would: no handler of the job's runs,
so no final save; a stalled stream is not a death: the job saves what it
analyzed and exits 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from intransit.adapters.reader import MemoryStepReader
from intransit.service import checkpoint as job_checkpoint
from intransit.service import config
from intransit.service.catalog import read_catalog
from intransit.service.comm import SerialComm
from intransit.service.runner import run_job


def blob_steps(first: int, last: int) -> list:
    """Two blobs moving at constant velocity, in two row blocks (steps ``first`` .. ``last - 1``)."""
    out = []
    for s in range(first, last):
        field = np.zeros((48, 48))
        field[4 + s, 3:6] = 5.0  # one blob moving down a row per step
        field[30, 2 + 2 * s: 5 + 2 * s] = 5.0  # one moving right two columns per step
        out.append((s, {"density": ((48, 48), [((0, 0), field[:24]), ((24, 0), field[24:])])}))
    return out


def make_cfg(tmp_path, name: str, *, every: int = 0, restore: bool = True, rules: list | None = None):
    raw = {
        "stream": {"name": "mem", "variables": ["density"], "step_timeout_s": 0.2},
        "analyzers": [{"type": "blob_detection", "name": "blobs", "params": {"threshold": 2.0, "min_area": 2}},
                      {"type": "tracking", "input": "blobs", "params": {"max_distance": 4.0}}],
        "output": {"catalog": str(tmp_path / f"{name}.bp"), "checkpoint": str(tmp_path / f"{name}.ckpt"),
                   "checkpoint_every": every, "restore": restore},
    }
    if rules is not None:
        raw["steering"] = {"stream": str(tmp_path / f"{name}_steer.bp"), "rules": rules}
    return config.from_dict(raw)


class Killed(BaseException):
    """The job's death, raised where it waits for its next step."""


KILL = "kill"


class DyingReader(MemoryStepReader):
    """The in-memory stream, and the job's death where ``KILL`` stands in the list of steps."""

    def begin_step(self, timeout_s: float):
        if self._pos + 1 < len(self._steps) and self._steps[self._pos + 1] == KILL:
            raise Killed()
        return super().begin_step(timeout_s)


def run(cfg, steps):
    return run_job(cfg, SerialComm(), reader_factory=lambda c, r, s, comm: DyingReader(steps))


def tracks(cat, first: int = 0) -> list[tuple]:
    """(step, track, centroid, the loop index it was born at, its age in hits): a restored track keeps both."""
    return [(int(e["step"]), int(e["track_id"]), e["c0"], e["c1"], int(e["born"]), int(e["age"]))
            for e in cat.events["tracking"] if int(e["step"]) >= first]


def same(a, b) -> bool:
    """Deep equality of checkpoint states (dicts, lists, numpy arrays, scalars)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    return a == b or (a != a and b != b)


@pytest.fixture
def saves(monkeypatch):
    """The loop index of every checkpoint written."""
    seen: list[int] = []
    real = job_checkpoint.save

    def spy(path, **kw):
        seen.append(kw["index"])
        real(path, **kw)

    monkeypatch.setattr(job_checkpoint, "save", spy)
    return seen


def test_checkpoint_every_n_saves_every_nth_step_and_a_dead_job_resumes_from_the_last(tmp_path, saves):
    # A job with checkpoint_every = 3 dies after analyzing 8 steps (0..7): saved after 3 and 6 only.
    cfg = make_cfg(tmp_path, "part", every=3)
    with pytest.raises(Killed):
        run(cfg, [*blob_steps(0, 8), KILL])
    assert saves == [3, 6]
    state = job_checkpoint.load(cfg.output.checkpoint)
    assert (state["index"], state["last_step"]) == (6, 5)
    # What it holds is the state after step 5, as a job that ended cleanly after step 5 saved it.
    saves.clear()
    ref = run(make_cfg(tmp_path, "ref6", every=3), blob_steps(0, 6))
    assert ref.steps_analyzed == 6 and saves == [3, 6, 6]  # every 3rd, and at the end
    assert same(state["analyzers"], job_checkpoint.load(str(tmp_path / "ref6.ckpt"))["analyzers"])
    # The restarted job resumes: the analyzers from the checkpoint (after step 5), the loop after
    # the catalog's last row (step 7: a killed job had written it; service/state.py), so the
    # restarted stream's steps 8.. follow with no step twice in the catalog.
    resumed = run(cfg, blob_steps(8, 12))
    restored = resumed.extras["restored_from"]
    assert (restored["checkpoint_index"], restored["index"], restored["last_step"]) == (6, 8, 7)
    assert resumed.steps_analyzed == 4 and resumed.steps_dropped == 0
    cat = read_catalog(str(tmp_path / "part.bp"))
    assert [int(r["step"]) for r in cat.steps] == list(range(12))
    # The tracks go on with their IDs (restored state), no new ones: the same two as one whole run.
    whole = run(make_cfg(tmp_path, "whole"), blob_steps(0, 12))
    ids = {row[1] for row in tracks(read_catalog(str(tmp_path / "whole.bp")))}
    assert whole.steps_analyzed == 12 and len(ids) == 2
    got, want = tracks(cat, first=8), tracks(read_catalog(str(tmp_path / "whole.bp")), first=8)
    assert [row[:5] for row in got] == [row[:5] for row in want]  # same IDs, centroids and births
    # ... and each 2 hits younger than in the whole run: steps 6 and 7, analyzed after the last
    # checkpoint, died with the job (the cost of checkpoint_every = 3); nothing else was lost.
    assert [row[5] for row in got] == [row[5] - 2 for row in want]
    # Control: a tracker that starts fresh on steps 8.. has tracks of its own age (at most 4 hits).
    run(make_cfg(tmp_path, "fresh"), blob_steps(8, 12))
    assert max(row[5] for row in tracks(read_catalog(str(tmp_path / "fresh.bp")))) <= 4 < min(row[5] for row in got)


def test_checkpoint_every_1_would_have_saved_the_last_step(tmp_path, saves):
    """Control for the test above: with every step saved, the dead job's checkpoint is at index 8."""
    cfg = make_cfg(tmp_path, "each", every=1)
    with pytest.raises(Killed):
        run(cfg, [*blob_steps(0, 8), KILL])
    assert saves == list(range(1, 9))
    assert job_checkpoint.load(cfg.output.checkpoint)["index"] == 8


def test_restore_false_starts_fresh(tmp_path):
    first = make_cfg(tmp_path, "job")
    run(first, blob_steps(0, 5))
    assert job_checkpoint.load(first.output.checkpoint)["index"] == 5
    fresh = run(make_cfg(tmp_path, "job", restore=False), blob_steps(5, 10))
    assert "restored_from" not in fresh.extras
    assert fresh.steps_analyzed == 5
    assert fresh.steps_dropped == 5  # nothing restored: writer steps 0..4 were never seen by this job
    cat = read_catalog(str(tmp_path / "job.bp"))
    assert [int(r["step"]) for r in cat.steps] == list(range(5, 10))  # a new catalog, not appended
    # Track IDs start over, exactly as a job that never had a checkpoint.
    alone = run(make_cfg(tmp_path, "alone"), blob_steps(5, 10))
    assert alone.steps_analyzed == 5
    assert tracks(cat) == tracks(read_catalog(str(tmp_path / "alone.bp")))
    # The fresh job's own state replaces the old checkpoint.
    state = job_checkpoint.load(first.output.checkpoint)
    assert (state["index"], state["last_step"]) == (5, 9)
    # Control: with restore (the default) the same second run resumes and appends.
    run(make_cfg(tmp_path, "again"), blob_steps(0, 5))
    resumed = run(make_cfg(tmp_path, "again"), blob_steps(5, 10))
    assert resumed.extras["restored_from"]["index"] == 5 and resumed.steps_dropped == 0
    assert [int(r["step"]) for r in read_catalog(str(tmp_path / "again.bp")).steps] == list(range(10))


RULE = {"name": "crowded", "analyzer": "blobs", "score": "n_objects", "op": ">=", "threshold": 2,
        "for_steps": 3, "command": "stop"}


@pytest.mark.parametrize("restore,fires_at", [(True, 2), (False, 4)])
def test_a_rule_streak_goes_on_across_a_restart(tmp_path, restore, fires_at):
    """Two steps of a 3-step streak before the restart: the restored job fires on its first step,
    one that starts fresh needs three of its own."""
    before = run(make_cfg(tmp_path, "job", rules=[RULE]), blob_steps(0, 2))
    assert before.commands == []
    assert job_checkpoint.load(str(tmp_path / "job.ckpt"))["rules"]["streak"] == {"crowded": 2}
    after = run(make_cfg(tmp_path, "job", rules=[RULE], restore=restore), blob_steps(2, 8))
    assert [(c["answers_step"], c["command"], c["rule"]) for c in after.commands] == [(fires_at, "stop", "crowded")]


def test_a_rule_that_fired_before_a_restart_does_not_fire_again(tmp_path):
    """``once`` (the default) holds across a restart: the rule fired in the first run, not in the second."""
    before = run(make_cfg(tmp_path, "job", rules=[RULE]), blob_steps(0, 4))
    assert [c["answers_step"] for c in before.commands] == [2]
    after = run(make_cfg(tmp_path, "job", rules=[RULE]), blob_steps(4, 8))
    assert after.commands == []
