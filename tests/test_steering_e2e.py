"""Steering end to end: the reference simulation stopped by a rule; the simulation
finishes whatever the analytics do (killed mid-run, never started)."""

from __future__ import annotations

import os
import time

import pytest

from intransit.service.catalog import read_catalog
from tests import procs

pytestmark = [pytest.mark.sst, pytest.mark.slow]

STOP_RULE = """
[steering]
stream = "{steer}"

[[steering.rules]]
name = "enough"
analyzer = "blobs"
score = "n_objects"
op = ">="
threshold = 1
for_steps = 5
command = "stop"
"""


def job_with_steering(folder, stream, steer, **kw):
    job = procs.write_job(folder, stream, **kw)
    with open(job, "a") as fh:
        fh.write(STOP_RULE.format(steer=steer))
    return job


def test_rule_stops_the_simulation_at_the_expected_step(tmp_path):
    """n_objects >= 1 for 5 consecutive steps → stop answering step 4; the simulation
    (waiting at most 30 s per step for its answer) writes exactly steps 0..4."""
    folder = str(tmp_path)
    stream, steer = os.path.join(folder, "live"), os.path.join(folder, "steer.bp")
    job = job_with_steering(folder, stream, steer, catalog=os.path.join(folder, "cat.bp"))
    rc_sim, rc_an = procs.run_pair(
        folder, stream=stream, ranks=2, job=job,
        sim_args=["--size", "64", "--steps", "40", "--blobs", "2", "--steering", steer, "--steering-wait", "30"],
    )
    sim_log = procs.read_log(folder, "sim.log")
    assert rc_sim == 0, sim_log[-2000:]
    assert rc_an == 0, procs.read_log(folder, "analytics.log")[-2000:]
    assert "stopped by steering after step 4 (seq 5 answering step 4, rule 'enough')" in sim_log
    assert "wrote 5 steps" in sim_log
    cat = read_catalog(os.path.join(folder, "cat.bp"))
    assert [int(r["step"]) for r in cat.steps] == [0, 1, 2, 3, 4]
    assert [int(r["steering/command"]) for r in cat.steps] == [0, 0, 0, 0, 1]


def test_simulation_completes_when_analytics_are_killed_mid_run(tmp_path):
    folder = str(tmp_path)
    stream, steer = os.path.join(folder, "live"), os.path.join(folder, "steer.bp")
    job = job_with_steering(folder, stream, steer, step_timeout_s=60)
    xml = procs.sim_xml(folder, readers=0, queue=3, policy="Discard")  # keep-pace preset
    an = procs.start_analytics(folder, job, 2)
    # --timeout: if an ADIOS2 call blocks, the simulation's watchdog names it in sim.log.
    # A writer EndStep that blocks after the kill until the watchdog is ADIOS2's (procs.xfail_if_sst_writer_hung).
    sim = procs.start_sim(folder, stream, xml, "--size", "64", "--steps", "150", "--sleep", "0.04",
                          "--steering", steer, "--timeout", "90")
    try:
        t0 = time.monotonic()
        while "analyzed" not in procs.read_log(folder, "analytics.log"):
            assert time.monotonic() - t0 < 180 and an.poll() is None, procs.read_log(folder, "analytics.log")
            time.sleep(0.1)
        procs.kill_tree(an)  # every analytics rank vanishes, nothing closed
        rc = procs.wait(sim, 150, log=os.path.join(folder, "sim.log"))
    finally:
        procs.stop(sim)
        procs.stop(an)
        procs.remove_contact_files(folder)
    procs.xfail_if_sst_writer_hung(folder, rc)
    assert rc == 0, procs.read_log(folder, "sim.log")[-8000:]
    assert "wrote 150 steps" in procs.read_log(folder, "sim.log")


def test_simulation_completes_when_analytics_never_start(tmp_path):
    folder = str(tmp_path)
    xml = procs.sim_xml(folder, readers=0, queue=3, policy="Discard")
    sim = procs.start_sim(folder, os.path.join(folder, "live"), xml, "--size", "64", "--steps", "60",
                          "--steering", os.path.join(folder, "steer.bp"), "--steering-wait", "0.01")
    t0 = time.monotonic()
    assert procs.wait(sim, 120) == 0, procs.read_log(folder, "sim.log")[-2000:]
    procs.remove_contact_files(folder)
    log = procs.read_log(folder, "sim.log")
    assert "wrote 60 steps" in log
    assert time.monotonic() - t0 < 60
