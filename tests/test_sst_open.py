"""The SST open plan (adapters/sst_open.py): every rank's pid + opening second differs,
problems reach every rank, late ranks move to a free second; and, over real SST with
`mpiexec`, two ranks timed to share EVPath's seed still read every step."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest

from intransit.adapters.sst_open import (
    LATE_AFTER_S,
    OPEN_MARGIN_S,
    OpenPlanError,
    OpenSlot,
    agree_open_second,
    free_second,
    plan_open_seconds,
    wait_for_slot,
)
from tests import procs


class GatherComm:
    """One rank's view of an allgather whose result is fixed in advance (logic only)."""

    def __init__(self, rank: int, gathered: list):
        self.rank, self.gathered = rank, gathered

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return len(self.gathered)

    def allgather(self, mine):
        assert mine == self.gathered[self.rank], "each rank sends its own (problem, pid, clock)"
        return self.gathered


def test_distinct_pids_share_the_base_second():
    assert plan_open_seconds([4100, 4101, 4102], 1000) == [1000, 1000, 1000]


def test_a_pid_repeated_on_another_host_waits_a_second():
    assert plan_open_seconds([4100, 4100], 1000) == [1000, 1001]


def test_a_move_that_would_meet_a_neighbour_moves_again():
    # 4100 at 1001 would be 4101 + 1000, which rank 0 holds.
    seconds = plan_open_seconds([4101, 4100, 4100], 1000)
    assert seconds == [1000, 1000, 1002]


def test_random_plans_never_repeat_an_id():
    rng = random.Random(7)
    for _ in range(200):
        pids = [rng.randint(100, 130) for _ in range(rng.randint(2, 40))]
        seconds = plan_open_seconds(pids, 5000)
        ids = [p + s for p, s in zip(pids, seconds)]
        assert len(set(ids)) == len(ids)
        assert min(seconds) == 5000


def test_agreement_uses_the_latest_clock_and_names_the_others_ids():
    gathered = [(None, 4100, 999.2), (None, 4101, 999.9)]
    slot = agree_open_second(GatherComm(0, gathered), None, clock=lambda: 999.2, pid=4100)
    assert slot == OpenSlot(second=1000, others=frozenset({4101 + 1000}))


def test_a_problem_on_any_rank_is_raised_on_every_rank():
    msg = "no live SST writer for stream 'x' within 5 s"
    gathered = [(None, 4100, 10.0), (msg, 4101, 10.0)]
    for rank in (0, 1):
        mine = gathered[rank]
        with pytest.raises(OpenPlanError, match="no live SST writer for stream 'x'"):
            agree_open_second(GatherComm(rank, gathered), mine[0], clock=lambda: 10.0, pid=mine[1])


def test_an_early_rank_sleeps_into_its_second():
    slept = []
    second = wait_for_slot(OpenSlot(1000, frozenset()), clock=lambda: 999.5, sleep=slept.append, pid=1)
    assert second == 1000
    assert slept == [pytest.approx(0.5 + OPEN_MARGIN_S)]


def test_a_rank_inside_its_second_opens_at_once():
    slept = []
    assert wait_for_slot(OpenSlot(1000, frozenset()), clock=lambda: 1000.2, sleep=slept.append, pid=1) == 1000
    assert slept == []


def test_a_late_rank_moves_to_a_second_no_one_else_uses():
    # pid 7 planned 1000 but arrives at 1001.9 (too late for 1001 too); 1002 is taken by
    # another rank's id (7 + 1002), so it opens in 1003.
    slept = []
    second = wait_for_slot(OpenSlot(1000, frozenset({7 + 1002})), clock=lambda: 1001.9, sleep=slept.append, pid=7)
    assert second == 1003
    assert slept == [pytest.approx(1003 + OPEN_MARGIN_S - 1001.9)]


def test_free_second_keeps_the_current_second_when_early_enough():
    assert free_second(7, 1001.0 + LATE_AFTER_S / 2, frozenset()) == 1001
    assert free_second(7, 1001.0 + LATE_AFTER_S + 0.1, frozenset()) == 1002


RANKS_SCRIPT = os.path.join(os.path.dirname(__file__), "open_plan_ranks.py")


@pytest.mark.sst
@pytest.mark.mpi
@pytest.mark.slow
def test_ranks_timed_to_share_evpaths_seed_still_read_every_step(tmp_path):
    """Two serial SST readers reach ``Open`` timed so that pid + second is equal on both
    (without the plan, the writer sends one rank's data to the other: SIGSEGV, every time
    in our runs); the open plan moves them into one second and both read all steps."""
    folder = str(tmp_path)
    stream = os.path.join(folder, "seed")
    xml = procs.sim_xml(folder, readers=2)
    ranks = procs.start([procs.MPIEXEC, "-n", "2", sys.executable, RANKS_SCRIPT, stream, "8"], folder, "ranks.log")
    sim = procs.start_sim(folder, stream, xml, "--size", "64", "--steps", "8", "--blocks", "2", "--sleep", "0.02")
    try:
        rc_sim = procs.wait(sim, 120, os.path.join(folder, "sim.log"))
        rc_ranks = procs.wait(ranks, 120, os.path.join(folder, "ranks.log"))
    finally:
        procs.stop(sim)
        procs.stop(ranks)
        procs.remove_contact_files(folder)
    log = procs.read_log(folder, "ranks.log")
    assert rc_sim == 0, procs.read_log(folder, "sim.log")[-3000:]
    assert rc_ranks == 0, log[-3000:]
    # mpiexec may join the ranks' lines: take every JSON object in the output.
    results = [json.loads(m) for m in re.findall(r"\{[^{}]*\}", log)]
    assert sorted(r["rank"] for r in results) == [0, 1]
    for r in results:
        assert r["steps"] == 8
        assert r["forced_same_seed"], r  # the timing did set up the collision
        assert r["opened_second"] == r["planned_second"]
    assert len({r["pid"] + r["opened_second"] for r in results}) == 2
