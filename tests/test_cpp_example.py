"""The compiled reference simulation (examples/cpp/heat_sim) and the C++ steering header.

One build (examples/cpp/build.sh into build/cpp_example, skipped when up to date); the same
binary writes BP5 and, with another XML only, a live SST stream that `intransit run` analyzes;
a Python process plays the analytics' end of the steering stream against it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from intransit.service.catalog import read_catalog
from intransit.service.groundtruth import compare_tracks, read_truth
from tests import procs

#: Every test here needs the compiled example (the module fixture builds it: minutes on a cold cache).
pytestmark = pytest.mark.slow

CPP = os.path.join(procs.ROOT, "examples", "cpp")
BUILD_DIR = os.path.join(procs.ROOT, "build", "cpp_example")
SIZE = 128
SIM_ARGS = ["--size", str(SIZE), "--steps", "30", "--spots", "4", "--seed", "5", "--blocks", "4"]
SUMMARY = re.compile(r"heat_sim: steps=(\d+) stopped_at=(-?\d+) applied=(\d+) rejected=(\d+) replayed=(\d+) "
                     r"received=(\d+) dt=(\S+)")


@pytest.fixture(scope="module")
def heat_sim() -> str:
    """Build the example once (build.sh skips an up-to-date build); the binary's path."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        pytest.fail("no C++ compiler (c++, g++, clang++ or $CXX): the C++ example needs one")
    env = dict(os.environ, PYTHON=sys.executable, JOBS="2")
    res = subprocess.run(["bash", os.path.join(CPP, "build.sh"), BUILD_DIR], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"build.sh failed:\n{res.stdout}\n{res.stderr[-4000:]}"
    binary = res.stdout.strip().splitlines()[-1]
    assert os.access(binary, os.X_OK), binary
    return binary


def summary(text: str) -> dict[str, float]:
    m = SUMMARY.search(text)
    assert m, f"no summary line in:\n{text[-3000:]}"
    keys = ("steps", "stopped_at", "applied", "rejected", "replayed", "received")
    out: dict[str, float] = {k: int(v) for k, v in zip(keys, m.groups())}
    out["dt"] = float(m.group(7))
    return out


def run_sim(binary: str, folder: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *args], cwd=folder, capture_output=True, text=True, timeout=timeout)


def read_bp(path: str, name: str) -> np.ndarray:
    """Every step of ``name`` in a BP5 file, shape (steps, *shape)."""
    import adios2

    with adios2.FileReader(path) as f:
        steps = f.num_steps()
        shape = f.inquire_variable(name).shape()
        data = f.read(name, step_selection=[0, steps])
    return np.asarray(data).reshape(steps, *shape)


def write_job(folder: str, stream: str, catalog: str, *, bp5: bool) -> str:
    xml = os.path.join(procs.ROOT, "xml_configs", "replay_bp5.xml" if bp5 else "analytics.xml")
    text = f"""
        [stream]
        name = "{stream}"
        xml = "{xml}"
        io = "SimulationOutput"
        variables = ["temperature"]
        step_timeout_s = 30
        open_timeout_s = 30
        {'engine = "BP5"' if bp5 else ''}

        [[analyzers]]
        type = "blob_detection"
        name = "blobs"
        params = {{ threshold = 3.0, min_area = 4, periodic = [true, true] }}

        [[analyzers]]
        type = "tracking"
        input = "blobs"
        params = {{ max_distance = 8.0, periodic = [true, true] }}

        [output]
        catalog = "{catalog}"
        """
    path = os.path.join(folder, "job_bp5.toml" if bp5 else "job_sst.toml")
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(text))
    return path


def sst_xml(folder: str, readers: int = 1) -> str:
    """examples/cpp/adios2_sst.xml with this test's reader count."""
    with open(os.path.join(CPP, "adios2_sst.xml")) as fh:
        text = fh.read()
    text, n = re.subn(r'key="RendezvousReaderCount" value="\d+"', f'key="RendezvousReaderCount" value="{readers}"', text)
    assert n == 1
    path = os.path.join(folder, "adios2_sst.xml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


# --------------------------------------------------------------------------------------------
def test_bad_arguments_are_clear_errors(heat_sim, tmp_path):
    xml = os.path.join(CPP, "adios2.xml")
    cases = [
        (["--xml", xml, "--size", "big"], "--size: expected an integer, got 'big'"),
        (["--xml", xml, "--steps", "0"], "--steps 0 out of range"),
        (["--xml", xml, "--frobnicate", "1"], "unknown option '--frobnicate'"),
        (["--xml", str(tmp_path / "missing.xml")], "no such file"),
        (["--xml", xml, "--io", "Nope"], "--io 'Nope' is not defined in"),
        (["--xml", xml, "--dt", "2"], "--dt 2 out of range"),
        (["--xml", xml, "--spots", "40"], "too many for a 128^2 grid"),
    ]
    for args, message in cases:
        res = run_sim(heat_sim, str(tmp_path), *args, "--stream", str(tmp_path / "x.bp"))
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr, (args, res.stderr)
    assert not (tmp_path / "x.bp").exists()  # nothing written on a usage error


@pytest.fixture(scope="module")
def catalogs(heat_sim, tmp_path_factory):
    """The unchanged binary: BP5 replayed by `intransit run`, then live over SST (XML swap)."""
    folder = str(tmp_path_factory.mktemp("cpp_heat"))
    # 1. BP5 file, replayed
    bp = os.path.join(folder, "heat.bp")
    res = run_sim(heat_sim, folder, "--xml", os.path.join(CPP, "adios2.xml"), "--stream", bp, *SIM_ARGS,
                  "--truth", os.path.join(folder, "truth_bp5.csv"))
    assert res.returncode == 0, res.stderr
    assert summary(res.stdout)["steps"] == 30
    an = procs.start_analytics(folder, write_job(folder, bp, os.path.join(folder, "catalog_bp5.bp"), bp5=True), 1,
                               log_name="analytics_bp5.log")
    assert procs.wait(an, 60) == 0, procs.read_log(folder, "analytics_bp5.log")[-3000:]
    # 2. the same binary, SST: analytics first, then the simulation (it waits for 1 reader)
    live = os.path.join(folder, "heat_live")
    an = procs.start_analytics(folder, write_job(folder, live, os.path.join(folder, "catalog_sst.bp"), bp5=False), 1,
                               log_name="analytics_sst.log")
    sim = procs.start([heat_sim, "--xml", sst_xml(folder), "--stream", live, *SIM_ARGS,
                       "--truth", os.path.join(folder, "truth_sst.csv")], folder, "sim_sst.log")
    try:
        assert procs.wait(sim, 60) == 0, procs.read_log(folder, "sim_sst.log")[-3000:]
        assert procs.wait(an, 60) == 0, procs.read_log(folder, "analytics_sst.log")[-3000:]
    finally:
        procs.stop(sim)
        procs.stop(an)
        procs.remove_contact_files(folder)
    return folder, read_catalog(os.path.join(folder, "catalog_bp5.bp")), read_catalog(os.path.join(folder, "catalog_sst.bp"))


@pytest.mark.sst
def test_bp5_and_live_sst_give_the_same_catalog(catalogs):
    folder, bp5, sst = catalogs
    assert "SST stream" in procs.read_log(folder, "sim_sst.log")  # the XML, not a rebuild, chose the engine
    assert [r["step"] for r in bp5.steps] == [r["step"] for r in sst.steps] == list(range(30))
    assert sum(r["dropped"] for r in sst.steps) == 0
    for name in ("blobs", "tracking"):
        cols = bp5.fields[name]
        assert cols == sst.fields[name]
        a = np.array([[e[c] for c in cols] for e in bp5.events[name]])
        b = np.array([[e[c] for c in cols] for e in sst.events[name]])
        assert a.shape == b.shape and len(a) > 0, name
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=f"{name} {cols}")
    with open(os.path.join(folder, "truth_bp5.csv")) as f1, open(os.path.join(folder, "truth_sst.csv")) as f2:
        assert f1.read() == f2.read()  # deterministic for a seed


@pytest.mark.sst
def test_catalog_finds_the_hot_spots_of_the_ground_truth(catalogs):
    folder, _, cat = catalogs
    truth = read_truth(os.path.join(folder, "truth_sst.csv"))
    assert sorted(truth) == list(range(30)) and all(len(rows) == 4 for rows in truth.values())
    cmp = compare_tracks(truth, cat.events["tracking"], shape=(SIZE, SIZE), periodic=(True, True), tolerance=2.0)
    assert cmp.tracks_true == 4
    assert cmp.tracks_matched == 4
    assert cmp.tracks_found == 4  # nothing spurious: the background stays far below threshold
    assert cmp.detection_recall >= 0.95
    assert cmp.detection_precision >= 0.95
    assert cmp.centroid_error_mean < 0.5


def test_bp5_output_has_blocks_dt_and_truth(heat_sim, tmp_path):
    import adios2

    folder = str(tmp_path)
    bp = os.path.join(folder, "small.bp")
    res = run_sim(heat_sim, folder, "--xml", os.path.join(CPP, "adios2.xml"), "--stream", bp, "--size", "64",
                  "--steps", "5", "--spots", "2", "--blocks", "6", "--dt", "0.05")
    assert res.returncode == 0, res.stderr
    s = summary(res.stdout)
    assert (s["steps"], s["stopped_at"], s["received"]) == (5, -1, 0)
    with adios2.FileReader(bp) as f:
        assert f.num_steps() == 5
        assert f.inquire_variable("temperature").shape() == [64, 64]
        assert len(f.all_blocks_info("temperature")[0]) == 6
    assert np.allclose(read_bp(bp, "dt"), 0.05)
    temp = read_bp(bp, "temperature")
    assert temp.shape == (5, 64, 64) and np.isfinite(temp).all()
    truth = read_truth(os.path.join(folder, "small_truth.csv"))  # default: beside the output
    assert sorted(truth) == list(range(5))
    for step, rows in truth.items():
        for r in rows:  # each hot spot towers over the background where the truth puts it
            field = temp[step]
            assert field[round(r["c0"]) % 64, round(r["c1"]) % 64] > field.mean() + 5 * field.std()


# --------------------------------------------------------------------------------------------
def _wait_for_step(folder: str, proc: subprocess.Popen, step: int, timeout: float = 30) -> int:
    """Wait until the simulation has written ``step`` (its truth CSV grows once per step)."""
    path = os.path.join(folder, "heat_truth.csv")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, procs.read_log(folder, "sim.log")[-3000:]
        if os.path.exists(path):
            with open(path) as fh:
                lines = fh.read().splitlines()[1:]
            if lines and int(lines[-1].split(",")[0]) >= step:
                return int(lines[-1].split(",")[0])
        time.sleep(0.01)
    raise AssertionError(f"the simulation did not reach step {step} in {timeout} s")


def test_steering_commands_are_validated_applied_and_stop_ends_the_run(heat_sim, tmp_path):
    from intransit.adapters.steering import SteeringWriter

    folder = str(tmp_path)
    stream = os.path.join(folder, "steer.bp")
    bp = os.path.join(folder, "heat.bp")
    writer = SteeringWriter(stream)
    sim = procs.start([heat_sim, "--xml", os.path.join(CPP, "adios2.xml"), "--stream", bp, "--size", "64",
                       "--spots", "2", "--steps", "3000", "--sleep-ms", "10", "--steering", stream,
                       "--checkpoint-dir", os.path.join(folder, "ckpt")], folder, "sim.log")
    try:
        at = _wait_for_step(folder, sim, 3)
        writer.write(at, "set", {"name": "dt", "value": 0.2}, rule="heat_up")        # applied
        at = _wait_for_step(folder, sim, at + 5)
        writer.write(at, "set", {"name": "dt", "value": 5.0}, rule="too_big")        # out of range
        writer.write(at, "set", {"name": "dt", "value": float("nan")}, rule="nan")   # not finite
        writer.write(at, "set", {"name": "viscosity", "value": 0.1}, rule="r")       # undeclared
        writer.write(at, "set", {"name": "sleep_ms", "value": 2.5}, rule="r")        # not an int64
        writer.seq += 1
        writer.write_raw({"seq": writer.seq, "answers_step": at, "command": "explode", "rule": "r",
                          "args": "{}", "set_name": "", "set_value": float("nan")})  # unknown command
        writer.write_raw({"seq": 1, "answers_step": at, "command": "set", "rule": "r", "args": "{}",
                          "set_name": "dt", "set_value": 0.3})                       # replay of seq 1
        writer.write_raw({"seq": writer.seq + 1, "answers_step": at})               # malformed: no command
        writer.write(10**6, "stop", rule="future")                                   # a step not reached
        writer.write(at, "checkpoint", rule="snap")                                  # applied
        at = _wait_for_step(folder, sim, at + 3)
        writer.write(at, "stop", rule="halt")                                        # applied
        rc = procs.wait(sim, 30)
    finally:
        procs.stop(sim)
        writer.close()
    log = procs.read_log(folder, "sim.log")
    assert rc == 0, log[-3000:]
    s = summary(log)
    assert s["applied"] == 3, log  # set dt 0.2, checkpoint, stop
    assert s["rejected"] == 7, log  # 5.0, NaN, viscosity, 2.5, explode, malformed, future step
    assert s["replayed"] == 1, log
    assert s["dt"] == 0.2
    assert "value 5 outside [0.0001, 0.5]" in log
    assert "value nan is not a finite number" in log
    assert "undeclared parameter 'viscosity'" in log
    assert "sleep_ms: value 2.5 is not an int64" in log
    assert "command 'explode' is not accepted" in log
    assert "malformed record, missing command" in log
    assert "ignored replayed sequence number 1" in log
    assert "which this simulation has not reached" in log
    # stop: ended right after the step it was polled at, well before --steps, engine closed cleanly
    m = re.search(r"stopped by steering after step (\d+) \(seq (\d+), answers step (\d+), rule 'halt'\)", log)
    assert m, log
    stopped = int(m.group(1))
    assert s["stopped_at"] == stopped and s["steps"] == stopped + 1 < 3000
    assert int(m.group(3)) <= stopped
    dt = read_bp(bp, "dt")
    assert len(dt) == stopped + 1  # every written step is in the (closed) file
    assert set(np.round(dt, 12)) == {0.1, 0.2}  # 5.0 and 0.3 never applied
    first = int(np.argmax(dt == 0.2))
    assert first >= 4 and np.all(dt[:first] == 0.1) and np.all(dt[first:] == 0.2)
    # checkpoint: the field of the step it was taken at, as written to the output
    ckpts = sorted(os.listdir(os.path.join(folder, "ckpt")))
    assert len(ckpts) == 1 and re.fullmatch(r"checkpoint_\d{6}\.bp", ckpts[0]), ckpts
    ck = os.path.join(folder, "ckpt", ckpts[0])
    ck_step = int(read_bp(ck, "step")[0])
    assert ckpts[0] == f"checkpoint_{ck_step:06d}.bp" and first <= ck_step < stopped
    assert np.array_equal(read_bp(ck, "temperature")[0], read_bp(bp, "temperature")[ck_step])


def _dead_sst_writer(folder: str, stream: str, xml: str) -> None:
    """Leave a stale SST contact file: a writer process killed without closing."""
    code = textwrap.dedent(f"""
        import os, signal
        from intransit.adapters.steering import SteeringWriter
        w = SteeringWriter({stream!r}, xml={xml!r})
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert os.path.exists(stream + ".sst")


def _steering_sst_xml(folder: str) -> str:
    path = os.path.join(folder, "steering_sst.xml")
    with open(path, "w") as fh:
        fh.write('<?xml version="1.0"?>\n<adios-config>\n  <io name="Steering">\n    <engine type="SST">\n'
                 '      <parameter key="DataTransport" value="WAN"/>\n    </engine>\n  </io>\n</adios-config>\n')
    return path


@pytest.mark.sst
def test_simulation_completes_without_analytics_and_with_a_stale_contact_file(heat_sim, tmp_path):
    folder = str(tmp_path)
    args = ["--xml", os.path.join(CPP, "adios2.xml"), "--size", "64", "--spots", "2", "--steps", "40",
            "--sleep-ms", "10"]
    # no steering writer ever appears (BP5 reverse stream, the default)
    t0 = time.monotonic()
    res = run_sim(heat_sim, folder, *args, "--stream", os.path.join(folder, "a.bp"),
                  "--steering", os.path.join(folder, "nobody.bp"))
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 10
    s = summary(res.stdout)
    assert (s["steps"], s["stopped_at"], s["received"]) == (40, -1, 0)
    assert "connected" not in res.stderr
    # a stale SST contact file from a writer that died: tried once, then never again
    stream = os.path.join(folder, "steer")
    xml = _steering_sst_xml(folder)
    _dead_sst_writer(folder, stream, xml)
    t0 = time.monotonic()
    res = run_sim(heat_sim, folder, *args, "--stream", os.path.join(folder, "b.bp"), "--steering", stream,
                  "--steering-xml", xml, timeout=30)
    elapsed = time.monotonic() - t0
    os.remove(stream + ".sst")
    assert res.returncode == 0, res.stderr
    assert elapsed < 10, res.stderr
    s = summary(res.stdout)
    assert (s["steps"], s["stopped_at"], s["received"]) == (40, -1, 0)
    assert res.stderr.count("could not attach") == 1, res.stderr  # the same stale file is not retried


@pytest.mark.sst
def test_simulation_never_waits_on_sst_analytics_that_do_not_answer(heat_sim, tmp_path):
    """An SST writer answers a reader's Open only inside its own calls: one that never writes
    would hold a synchronous Open forever.  The header's Open runs aside; the run keeps its pace."""
    folder = str(tmp_path)
    stream = os.path.join(folder, "steer")
    xml = _steering_sst_xml(folder)
    code = f"from intransit.adapters.steering import SteeringWriter; import time; " \
           f"w = SteeringWriter({stream!r}, xml={xml!r}); time.sleep(120)"
    silent = procs.start([sys.executable, "-c", code], folder, "analytics.log")
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(stream + ".sst"):
            assert time.monotonic() < deadline and silent.poll() is None, procs.read_log(folder, "analytics.log")
            time.sleep(0.02)
        t0 = time.monotonic()
        res = run_sim(heat_sim, folder, "--xml", os.path.join(CPP, "adios2.xml"), "--stream",
                      os.path.join(folder, "heat.bp"), "--size", "64", "--spots", "2", "--steps", "40",
                      "--sleep-ms", "25", "--steering", stream, "--steering-xml", xml, timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        procs.stop(silent)  # (the writer must not outlive the test: an ADIOS2 2.12 SST writer
        procs.remove_contact_files(folder)  # can crash answering a reader that has exited)
    assert res.returncode == 0, res.stderr
    assert elapsed < 40 * 0.025 + 3, res.stderr  # 1 s of pacing; a blocked Open would take forever
    s = summary(res.stdout)
    assert (s["steps"], s["stopped_at"], s["received"]) == (40, -1, 0)
    assert "abandoned a pending Open" in res.stderr


@pytest.mark.sst
def test_simulation_goes_on_when_sst_analytics_vanish(heat_sim, tmp_path):
    """SST reverse stream: the analytics attach, steer, then are killed; the run completes."""
    folder = str(tmp_path)
    stream = os.path.join(folder, "steer")
    xml = _steering_sst_xml(folder)
    # Ordered by what the simulation logs, never by sleeps: the set is sent once the simulation
    # says it attached (and again every 5 s until applied: a record written while the reader
    # was still registering may not reach it), and the analytics vanish only once the
    # simulation logged that it applied the set.
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        from intransit.adapters.steering import SteeringWriter
        w = SteeringWriter({stream!r}, xml={xml!r})
        log = {os.path.join(folder, "sim.log")!r}
        sent_at = None
        while True:  # one record per 'analyzed step', like the service
            text = open(log).read() if os.path.exists(log) else ""
            if "set dt = 0.25 (seq" in text:  # the header logs each applied set
                os.kill(os.getpid(), signal.SIGKILL)  # vanish without closing
            if "connected" in text and (sent_at is None or time.monotonic() - sent_at > 5):
                w.write(0, "set", {{"name": "dt", "value": 0.25}}, "r")
                sent_at = time.monotonic()
            else:
                w.write(0, "continue")
            time.sleep(0.05)
        """)
    analytics = procs.start([sys.executable, "-c", code], folder, "analytics.log")
    sim = None
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(stream + ".sst"):
            assert time.monotonic() < deadline and analytics.poll() is None, procs.read_log(folder, "analytics.log")
            time.sleep(0.02)
        sim = procs.start([heat_sim, "--xml", os.path.join(CPP, "adios2.xml"), "--stream",
                           os.path.join(folder, "heat.bp"), "--size", "64", "--spots", "2", "--steps", "150",
                           "--sleep-ms", "20", "--steering", stream, "--steering-xml", xml], folder, "sim.log")
        rc = procs.wait(sim, 60)
        if analytics.poll() is None:  # it vanishes only after the set was applied: it never was
            time.sleep(1)  # (its last look at the log)
        assert analytics.poll() == -signal.SIGKILL, (
            "the analytics never saw the set applied before the simulation ended:\n"
            + procs.read_log(folder, "sim.log")[-3000:])
    finally:
        if sim is not None:
            procs.stop(sim)
        procs.stop(analytics)
        procs.remove_contact_files(folder)
    log = procs.read_log(folder, "sim.log")
    assert rc == 0, log[-3000:]
    s = summary(log)
    assert s["steps"] == 150 and s["stopped_at"] == -1
    assert s["applied"] >= 1 and s["dt"] == 0.25, log  # it was steered before the analytics vanished
    assert "the simulation goes on" in log  # the loss was noticed, and survived
    assert np.isclose(read_bp(os.path.join(folder, "heat.bp"), "dt")[-1], 0.25)
