"""The SST open plan (adapters/sst_open.py): every pid + second in the table differs,
problems reach every rank, late ranks move to their reserve seconds; and, over real SST with
`mpiexec`, two ranks timed to share EVPath's seed still read every step."""

from __future__ import annotations

import json
import os
import random
import re
import sys

import pytest

from intransit.adapters.reader import AdiosStepReader, StreamError
from intransit.adapters.sst_open import (
    OPEN_MARGIN_S,
    OpenPlanError,
    OpenSlot,
    agree_open_seconds,
    plan_open_seconds,
    wait_for_slot,
)
from tests import procs


class GatherComm:
    """One rank's view of an allgather whose other entries are fixed in advance (logic only)."""

    def __init__(self, rank: int, gathered: list):
        self.rank, self.gathered = rank, list(gathered)
        self.sent: list = []

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return len(self.gathered)

    def allgather(self, mine):
        self.sent.append(mine)
        return [mine if i == self.rank else x for i, x in enumerate(self.gathered)]


def ids(pids, table):
    return [pid + s for pid, seconds in zip(pids, table) for s in seconds]


def test_distinct_pids_share_the_primary_second():
    table = plan_open_seconds([4100, 4101, 4102], 1000)
    assert [seconds[0] for seconds in table] == [1000, 1000, 1000]


def test_a_pid_repeated_on_another_host_waits_a_second():
    table = plan_open_seconds([4100, 4100], 1000)
    assert [seconds[0] for seconds in table] == [1000, 1001]


def test_a_move_that_would_meet_a_neighbour_moves_again():
    # 4100 at 1001 would be 4101 + 1000, which rank 0 holds.
    assert [seconds[0] for seconds in plan_open_seconds([4101, 4100, 4100], 1000)] == [1000, 1000, 1002]


def test_random_tables_never_repeat_an_id_primary_or_reserve():
    rng = random.Random(7)
    for _ in range(200):
        pids = [rng.randint(100, 130) for _ in range(rng.randint(2, 40))]
        table = plan_open_seconds(pids, 5000)
        every = ids(pids, table)
        assert len(set(every)) == len(every)
        assert min(seconds[0] for seconds in table) == 5000
        assert all(list(seconds) == sorted(set(seconds)) for seconds in table)


def test_agreement_uses_the_latest_clock():
    gathered = [(None, 4100, 999.2), (None, 4101, 999.9)]
    slot = agree_open_seconds(GatherComm(0, gathered), None, clock=lambda: 999.2, pid=4100)
    assert slot == OpenSlot(seconds=tuple(plan_open_seconds([4100, 4101], 1000)[0]))
    assert slot.seconds[0] == 1000


def test_a_problem_on_any_rank_is_raised_on_every_rank():
    msg = "no live SST writer for stream 'x' within 5 s"
    gathered = [(None, 4100, 10.0), (msg, 4101, 10.0)]
    for rank in (0, 1):
        mine = gathered[rank]
        with pytest.raises(OpenPlanError, match="no live SST writer for stream 'x'"):
            agree_open_seconds(GatherComm(rank, gathered), mine[0], clock=lambda: 10.0, pid=mine[1])


def test_an_early_rank_sleeps_into_its_second():
    clock = FakeClock(999.5)
    assert wait_for_slot(OpenSlot((1000, 1002)), clock=clock, sleep=clock.sleep) == 1000
    assert clock.slept == [pytest.approx(0.5 + OPEN_MARGIN_S)]


def test_a_rank_inside_its_second_opens_at_once():
    clock = FakeClock(1000.2)
    assert wait_for_slot(OpenSlot((1000, 1002)), clock=clock, sleep=clock.sleep) == 1000
    assert clock.slept == []


def test_an_oversleeping_rank_takes_its_next_reserve_second():
    clock = FakeClock(999.5, oversleeps=[1.0])  # first wake at 1001.05: too late for 1000
    assert wait_for_slot(OpenSlot((1000, 1002, 1004)), clock=clock, sleep=clock.sleep) == 1002


def test_two_late_neighbours_never_meet():
    # pids p and p + 1 both planned for 1000 and both waking late: with local choices
    # they could both land on id p + 1002; the table's reserves cannot.
    pids = [5100, 5101]
    table = plan_open_seconds(pids, 1000)
    for now in (1000.7, 1001.2, 1001.7, 1002.4, 1003.1):
        chosen = []
        for pid, seconds in zip(pids, table):
            clock = FakeClock(now)
            chosen.append(pid + wait_for_slot(OpenSlot(tuple(seconds)), clock=clock, sleep=clock.sleep))
        assert chosen[0] != chosen[1], now


def test_every_rank_joins_the_exchange_even_when_its_own_setup_failed(tmp_path):
    # Rank 0's XML is missing: it still sends its problem, and raises it.
    comm = GatherComm(0, [None, (None, 4101, 10.0)])
    with pytest.raises(StreamError, match="ADIOS2 XML file .* does not exist"):
        AdiosStepReader(stream=str(tmp_path / "s"), xml=str(tmp_path / "missing.xml"), io_name="r", comm=comm)
    assert len(comm.sent) == 1 and "does not exist" in comm.sent[0][0]


def test_a_rank_that_could_open_raises_the_other_ranks_problem(tmp_path):
    bp = _one_step_bp(str(tmp_path / "ok.bp"))
    comm = GatherComm(0, [None, ("no live SST writer for stream 'elsewhere' within 5 s", 4101, 10.0)])
    with pytest.raises(StreamError, match="no live SST writer for stream 'elsewhere'"):
        AdiosStepReader(stream=bp, xml=None, io_name="r", engine="BP5", comm=comm)
    assert comm.sent[0][0] is None


class FakeClock:
    """A wall clock that moves only when slept on; the first sleeps may overshoot."""

    def __init__(self, now: float, oversleeps: list[float] | None = None):
        self.now, self.oversleeps, self.slept = now, list(oversleeps or []), []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds + (self.oversleeps.pop(0) if self.oversleeps else 0.0)


def _one_step_bp(path: str) -> str:
    import adios2
    import numpy as np
    from adios2 import bindings

    io = adios2.Adios().declare_io("w")
    io.set_engine("BP5")
    x = np.zeros((4, 4))
    var = io.define_variable("density", x, [4, 4], [0, 0], [4, 4])
    engine = io.open(path, bindings.Mode.Write)
    engine.begin_step()
    engine.put(var, x, bindings.Mode.Sync)
    engine.end_step()
    engine.close()
    return path


RANKS_SCRIPT = os.path.join(os.path.dirname(__file__), "open_plan_ranks.py")


@pytest.mark.sst
@pytest.mark.mpi
@pytest.mark.slow
def test_ranks_timed_to_share_evpaths_seed_still_read_every_step(tmp_path):
    """Two serial SST readers reach ``Open`` timed so that pid + second is equal on both
    (without the plan, the writer sends one rank's data to the other: SIGSEGV, every time
    in our runs); the open plan moves them into one second and both read all steps.
    The higher pid tells the lower one the second it arrived in (an MPI message, not a
    shared guess of the wall clock), so only the lower one's wake-up within 0.95 s of its
    target second is left to timing; a run where it overslept that, or whose pids are
    more than 10 apart, proves nothing and is rerun (every run must still read all steps)."""
    runs = []
    for attempt in range(4):
        results = _timed_pair(os.path.join(str(tmp_path), f"try{attempt}"))
        runs.append(results)
        assert sorted(r["rank"] for r in results) == [0, 1]
        for r in results:
            assert r["steps"] == 8
            assert r["opened_second"] == r["planned_second"]
        assert len({r["pid"] + r["opened_second"] for r in results}) == 2
        if all(r["forced_same_seed"] for r in results):
            break
    else:
        raise AssertionError(f"the ranks never arrived timed to share EVPath's seed in 4 runs: {runs}")


def _timed_pair(folder: str) -> list[dict]:
    os.makedirs(folder)
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
    return [json.loads(m) for m in re.findall(r"\{[^{}]*\}", log)]
