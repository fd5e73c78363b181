"""Every ADIOS2 XML preset in xml_configs/, used exactly as shipped (the file itself, never a copy).

* ``simulation_lossless.xml`` + ``analytics.xml`` (+ ``steering.xml`` on both sides):
  the simulation opens first and waits at ``Open`` for the one reader it asks for,
  so every step from 0 is analyzed, none dropped; a steering rule's checkpoint
  command reaches the simulation over the shipped steering preset.
* ``simulation_keep_pace.xml``: the simulation never waits — it runs to its end
  with no reader at all, and goes on writing while its reader is frozen (SIGSTOP);
  the reader, thawed, counts every step it missed.
* ``simulation_bp5.xml`` + ``replay_bp5.xml``: the same seed written to a file
  and replayed gives the live catalog.

A preset added to xml_configs/ without a test here fails the first test.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import textwrap
import time

import numpy as np
import pytest

from intransit.service.catalog import read_catalog
from tests import procs

PRESETS = os.path.join(procs.ROOT, "xml_configs")
LOSSLESS = os.path.join(PRESETS, "simulation_lossless.xml")
KEEP_PACE = os.path.join(PRESETS, "simulation_keep_pace.xml")
SIM_BP5 = os.path.join(PRESETS, "simulation_bp5.xml")
ANALYTICS = os.path.join(PRESETS, "analytics.xml")
REPLAY = os.path.join(PRESETS, "replay_bp5.xml")
STEERING = os.path.join(PRESETS, "steering.xml")

#: Which test below uses each preset.
COVERED = {
    "simulation_lossless.xml": "test_lossless_preset_analyzes_every_step_and_carries_steering",
    "analytics.xml": "test_lossless_preset_analyzes_every_step_and_carries_steering",
    "steering.xml": "test_lossless_preset_analyzes_every_step_and_carries_steering",
    "simulation_keep_pace.xml": "test_keep_pace_preset_never_waits_and_the_reader_counts_what_it_missed",
    "simulation_bp5.xml": "test_bp5_presets_replay_gives_the_live_catalog",
    "replay_bp5.xml": "test_bp5_presets_replay_gives_the_live_catalog",
}

STEPS = 20
#: No turbulent background (--turbulence 0): the presets are under test, not the physics, and its
#: warm-up takes a minute on a loaded 2-core machine.
SIM_ARGS = ["--size", "128", "--steps", str(STEPS), "--blobs", "4", "--seed", "11", "--blocks", "2", "--turbulence", "0"]


def test_every_preset_has_a_test():
    shipped = sorted(os.path.basename(p) for p in glob.glob(os.path.join(PRESETS, "*.xml")))
    assert shipped == sorted(COVERED), f"presets without a test here: {sorted(set(shipped) - set(COVERED))}"
    for name in COVERED.values():
        assert callable(globals().get(name)), name


def _job(folder: str, stream: str, *, xml: str, catalog: str, steering: str = "") -> str:
    text = f"""
        [stream]
        name = "{stream}"
        xml = "{xml}"
        io = "SimulationOutput"
        variables = ["density"]
        step_timeout_s = 60
        open_timeout_s = 120
        {textwrap.dedent(procs.DETECT_TRACK)}
        [output]
        catalog = "{catalog}"
        {textwrap.dedent(steering)}
        """
    path = os.path.join(folder, os.path.basename(catalog).replace(".bp", ".toml"))
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(text))
    return path


def _wait_for(path: str, proc, timeout: float, log: str) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, procs.read_log(os.path.dirname(log), os.path.basename(log))[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


def _events(cat, name: str) -> np.ndarray:
    return np.array([[e[c] for c in cat.fields[name]] for e in cat.events[name]])


@pytest.fixture(scope="module")
def lossless_run(tmp_path_factory):
    """The simulation first (lossless preset: it waits at Open), the analytics after it."""
    folder = str(tmp_path_factory.mktemp("lossless"))
    stream = os.path.join(folder, "fields")
    steer = os.path.join(folder, "steer.bp")
    steering = f"""
        [steering]
        stream = "{steer}"
        xml = "{STEERING}"

        [[steering.rules]]
        name = "snapshot"
        analyzer = "blobs"
        score = "n_objects"
        op = ">="
        threshold = 0
        for_steps = 3
        command = "checkpoint"
        """
    job = _job(folder, stream, xml=ANALYTICS, catalog=os.path.join(folder, "live.bp"), steering=steering)
    sim = procs.start_sim(folder, stream, LOSSLESS, *SIM_ARGS, "--steering", steer, "--steering-xml", STEERING,
                          "--checkpoint-dir", os.path.join(folder, "ckpt"))
    analytics = None
    try:
        # The contact file is written at the writer's Open, which then waits for its one reader:
        # no step can be written before the analytics attach, however late they start.
        _wait_for(stream + ".sst", sim, 120, os.path.join(folder, "sim.log"))
        analytics = procs.start_analytics(folder, job, 1)
        rc_sim = procs.wait(sim, 240, os.path.join(folder, "sim.log"))
        rc_an = procs.wait(analytics, 120, os.path.join(folder, "analytics.log"))
    finally:
        procs.stop(sim)
        if analytics is not None:
            procs.stop(analytics)
        procs.remove_contact_files(folder)
    assert rc_sim == 0, procs.read_log(folder, "sim.log")[-3000:]
    assert rc_an == 0, procs.read_log(folder, "analytics.log")[-3000:]
    return folder, read_catalog(os.path.join(folder, "live.bp"))


@pytest.mark.sst
@pytest.mark.slow
def test_lossless_preset_analyzes_every_step_and_carries_steering(lossless_run):
    folder, cat = lossless_run
    assert [int(r["step"]) for r in cat.steps] == list(range(STEPS))
    assert sum(int(r["dropped"]) for r in cat.steps) == 0
    assert len(cat.events["blobs"]) > 0
    # The rule fired once, on the third analyzed step; the simulation applied it over steering.xml.
    fired = [int(r["step"]) for r in cat.steps if int(r["steering/command"]) != 0]
    assert fired == [2], fired
    ckpts = sorted(os.listdir(os.path.join(folder, "ckpt")))
    assert len(ckpts) == 1 and ckpts[0].startswith("checkpoint_"), ckpts
    assert int(ckpts[0].split("_")[1].split(".")[0]) >= 2  # applied at or after the step it answers
    assert "checkpoint written after step" in procs.read_log(folder, "sim.log")


@pytest.mark.sst
@pytest.mark.slow
def test_bp5_presets_replay_gives_the_live_catalog(tmp_path, lossless_run):
    _, live = lossless_run
    folder = str(tmp_path)
    bp = os.path.join(folder, "fields.bp")
    sim = procs.start_sim(folder, bp, SIM_BP5, *SIM_ARGS)
    assert procs.wait(sim, 240, os.path.join(folder, "sim.log")) == 0, procs.read_log(folder, "sim.log")[-3000:]
    job = _job(folder, bp, xml=REPLAY, catalog=os.path.join(folder, "replay.bp"))
    an = procs.start_analytics(folder, job, 1)
    assert procs.wait(an, 120, os.path.join(folder, "analytics.log")) == 0, \
        procs.read_log(folder, "analytics.log")[-3000:]
    replay = read_catalog(os.path.join(folder, "replay.bp"))
    assert [int(r["step"]) for r in replay.steps] == list(range(STEPS))
    for name in ("blobs", "tracking"):
        assert replay.fields[name] == live.fields[name]
        a, b = _events(live, name), _events(replay, name)
        assert a.shape == b.shape and len(a) > 0, name
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=name)


def _sim_step(folder: str) -> int:
    """The last step the simulation wrote (its truth CSV, flushed every step, has a row per blob per step)."""
    path = os.path.join(folder, "truth.csv")
    if not os.path.exists(path):
        return -1
    with open(path) as fh:
        rows = [r for r in fh.read().splitlines()[1:] if r.split(",")[0].isdigit()]
    return int(rows[-1].split(",")[0]) if rows else -1


def _until(condition, what: str, timeout: float, *alive) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for proc, folder, log in alive:
            assert proc.poll() is None, f"{log} ended early:\n" + procs.read_log(folder, log)[-3000:]
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


@pytest.mark.sst
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_keep_pace_preset_never_waits_and_the_reader_counts_what_it_missed(tmp_path):
    """Ordered by what the processes report, never by sleeps: the reader is frozen once it
    analyzed 3 steps and the simulation must write 30 more (10 times its queue) while it is;
    thawed, the reader accounts for every step written."""
    folder = str(tmp_path)
    # 1. No reader at all: the simulation opens, writes every step and ends.
    alone = procs.start_sim(folder, os.path.join(folder, "alone"), KEEP_PACE, *SIM_ARGS, log_name="alone.log")
    assert procs.wait(alone, 240, os.path.join(folder, "alone.log")) == 0, procs.read_log(folder, "alone.log")[-3000:]
    assert f"wrote {STEPS} steps" in procs.read_log(folder, "alone.log")
    procs.remove_contact_files(folder)
    # 2. A reader attached, then frozen (SIGSTOP) while the simulation goes on to its end.
    stream = os.path.join(folder, "fields")
    stop_file = os.path.join(folder, "stop")
    job = _job(folder, stream, xml=ANALYTICS, catalog=os.path.join(folder, "live.bp"))
    analytics = procs.start_analytics(folder, job, 1, "--log-level", "debug")  # a log line per analyzed step
    sim = None
    try:
        sim = procs.start_sim(folder, stream, KEEP_PACE, *SIM_ARGS[:3], "100000", *SIM_ARGS[4:],
                              "--sleep", "0.02", "--stop-file", stop_file, "--truth", os.path.join(folder, "truth.csv"))
        running = [(sim, folder, "sim.log"), (analytics, folder, "analytics.log")]
        _until(lambda: "(index 2)" in procs.read_log(folder, "analytics.log"), "the reader analyzing 3 steps", 240,
               *running)
        os.kill(analytics.pid, signal.SIGSTOP)
        try:
            frozen_at = _sim_step(folder)
            _until(lambda: _sim_step(folder) >= frozen_at + 30, "30 more steps with the reader frozen", 120,
                   (sim, folder, "sim.log"))
        finally:
            os.kill(analytics.pid, signal.SIGCONT)
        # Thawed before the simulation closes: an SST writer's Close waits for its readers to
        # release their queued steps (at most QueueLimit = 3), and a reader frozen whole (its
        # network thread too, unlike a merely slow one) would hold that Close.
        open(stop_file, "w").close()  # checked every 10 steps: it ends cleanly
        rc_sim = procs.wait(sim, 120, os.path.join(folder, "sim.log"))
        rc_an = procs.wait(analytics, 120, os.path.join(folder, "analytics.log"))
    finally:
        if sim is not None:
            procs.stop(sim)
        procs.stop(analytics)
        procs.remove_contact_files(folder)
    sim_log = procs.read_log(folder, "sim.log")
    assert rc_sim == 0, sim_log[-3000:]
    assert rc_an == 0, procs.read_log(folder, "analytics.log")[-3000:]
    m = re.search(r"wrote (\d+) steps", sim_log)
    assert m, sim_log[-3000:]
    written_total = int(m.group(1))
    assert written_total >= frozen_at + 31 and _sim_step(folder) == written_total - 1
    cat = read_catalog(os.path.join(folder, "live.bp"))
    analyzed = [int(r["step"]) for r in cat.steps]
    dropped = [int(r["dropped"]) for r in cat.steps]
    assert analyzed == sorted(set(analyzed)) and analyzed[-1] <= written_total - 1
    # Each analyzed step's `dropped` is exactly the gap before it (writer step numbers skip).
    assert dropped == [s - (p + 1) for p, s in zip([-1, *analyzed[:-1]], analyzed)]
    # Every written step is analyzed or counted as dropped, the tail after the last analyzed one included.
    summary = procs.read_log(folder, "analytics.log")
    m = re.search(r"(\d+) steps analyzed, (\d+) dropped", summary)
    assert m, summary[-3000:]
    assert int(m.group(1)) == len(analyzed)
    assert int(m.group(1)) + int(m.group(2)) == written_total, summary[-3000:]
    # The frozen reader missed most of the 30 steps (before a later analyzed step, or in the tail
    # after its last one): not waited for.
    assert int(m.group(2)) >= 20 and int(m.group(2)) >= sum(dropped), (frozen_at, analyzed, summary[-1500:])
