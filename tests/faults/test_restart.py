"""Restart from a checkpoint (issue 13 item 2): the analytics are SIGKILLed mid-run and started again on the
same checkpoint, catalog and reverse stream while the simulation goes on.

The catalog must be continuous (loop indices 0..n-1, no duplicate, no gap;
each row's ``dropped`` = the writer steps missing before it), every writer
step analyzed or counted, and steering must go on: the restarted job's
records continue the sequence numbers and the simulation applies them.
"""

from __future__ import annotations

import os
import re

import pytest

from intransit.service.catalog import read_catalog
from tests import procs
from tests.faults import helpers

pytestmark = [pytest.mark.sst, pytest.mark.slow]

STEPS = 260
#: A rule that never fires: every analyzed step is answered with ``continue`` (a record all the same).
NEVER = """
[[steering.rules]]
name = "never"
analyzer = "slow"
score = "cells"
op = "<"
threshold = -1
command = "stop"
"""


def test_restart_from_checkpoint_keeps_catalog_counts_and_steering_continuous(tmp_path):
    folder = str(tmp_path)
    stream, steer = os.path.join(folder, "live"), os.path.join(folder, "steer.bp")
    job = helpers.job(folder, stream, seconds=0.03, step_timeout_s=60,
                      extra=f'[steering]\nstream = "{steer}"\n' + NEVER,
                      output=f'checkpoint = "{os.path.join(folder, "ckpt.pkl")}"\ncheckpoint_every = 7\n')
    xml = procs.sim_xml(folder, readers=0, queue=3, policy="Discard")
    first = helpers.start_analytics(folder, job, 1, log_name="first.log")
    sim = procs.start_sim(folder, stream, xml, *helpers.FAST_SIM, "--steps", str(STEPS), "--sleep", "0.06",
                          "--steering", steer)
    second = None
    try:
        helpers.wait_for_text(folder, "first.log", "(index 50)", 180, [first, sim])
        procs.kill_tree(first)  # a crash between checkpoints: steps after the last one are in the catalog
        second = helpers.start_analytics(folder, job, 1, "--summary-json", os.path.join(folder, "s.json"),
                                         log_name="second.log")
        assert procs.wait(sim, 180, log=os.path.join(folder, "sim.log")) == 0, procs.read_log(folder, "sim.log")
        assert procs.wait(second, 120, log=os.path.join(folder, "second.log")) == 0, \
            helpers.analytics_log(folder, "second.log")[-3000:]
    finally:
        procs.stop(sim)
        procs.stop(first)
        if second is not None:
            procs.stop(second)
        procs.remove_contact_files(folder)
    log2 = helpers.analytics_log(folder, "second.log")
    assert "resumed from checkpoint" in log2, log2[-3000:]
    rows = read_catalog(os.path.join(folder, "job_catalog.bp")).steps
    index = [int(r["index"]) for r in rows]
    steps = [int(r["step"]) for r in rows]
    assert index == list(range(len(rows))), index  # no duplicated loop index, no gap
    assert all(b > a for a, b in zip(steps, steps[1:])), steps
    expected = [steps[0]] + [b - a - 1 for a, b in zip(steps, steps[1:])]
    assert [int(r["dropped"]) for r in rows] == expected  # each row's drops are the writer steps missing
    s = helpers.summary(os.path.join(folder, "s.json"))
    assert s["writer_steps"] == STEPS
    assert len(rows) + sum(expected) + s["steps_dropped_at_end"] == STEPS  # every writer step accounted for
    seqs = [int(r["steering/seq"]) for r in rows]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs  # the restarted job continued the sequence
    restart_row = next(i for i, r in enumerate(rows) if i and int(r["index"]) >= s["extras"]["restored_from"]["index"])
    sim_log = procs.read_log(folder, "sim.log")
    m = re.search(r"steering: (\d+) record\(s\) received, (\d+) applied, (\d+) rejected, (\d+) replayed "
                  r"\(last seq (\d+)\)", sim_log)
    assert m, sim_log[-3000:]
    received, applied, rejected, replayed, last_seq = map(int, m.groups())
    assert rejected == 0 and replayed == 0, sim_log[-3000:]
    assert applied == received
    assert last_seq > seqs[restart_row] + 10, (last_seq, seqs[restart_row])  # the second job's records applied
    assert "reattaching" in sim_log or "connected to" in sim_log
    # Both jobs' steps are in the catalog (the second job's summary covers its own run only).
    helpers.record("restart_from_checkpoint", log=log2, records_applied=applied, replayed=replayed,
                   steps_lost_uncounted=STEPS - (len(rows) + sum(expected) + s["steps_dropped_at_end"]),
                   tail_unknown=False)
