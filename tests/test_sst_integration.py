"""End to end over real SST: the reference simulation and `mpiexec -n M intransit run`
as separate processes; BP5 replay of the same simulation; bad input fails fast and clearly."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from intransit.service.catalog import read_catalog
from intransit.service.groundtruth import compare_tracks, read_truth
from tests import procs

pytestmark = [pytest.mark.sst, pytest.mark.slow]  # mpi: only the tests that run mpiexec (below)

SIZE = 128
SIM_ARGS = ["--size", str(SIZE), "--steps", "30", "--blobs", "4", "--seed", "3"]


def live_catalog(folder, *, ranks: int, blocks: int, tag: str):
    """Run sim (N blocks) + analytics (M ranks) over SST in ``folder``; return the catalog."""
    stream = os.path.join(folder, f"stream_{tag}")
    catalog = os.path.join(folder, f"catalog_{tag}.bp")
    job = procs.write_job(folder, stream, name=f"job_{tag}.toml", catalog=catalog)
    rc_sim, rc_an = procs.run_pair(
        folder, stream=stream, ranks=ranks, job=job,
        sim_args=[*SIM_ARGS, "--blocks", str(blocks), "--truth", os.path.join(folder, "truth.csv")],
    )
    assert rc_sim == 0, procs.read_log(folder, "sim.log")[-3000:]
    assert rc_an == 0, procs.read_log(folder, "analytics.log")[-3000:]
    return read_catalog(catalog)


def assert_same_catalog(a, b):
    assert [r["step"] for r in a.steps] == [r["step"] for r in b.steps]
    for name in ("blobs", "tracking"):
        ea, eb = a.events[name], b.events[name]
        assert len(ea) == len(eb), name
        cols = a.fields[name]
        xa = np.array([[e[c] for c in cols] for e in ea])
        xb = np.array([[e[c] for c in cols] for e in eb])
        np.testing.assert_allclose(xa, xb, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 2-rank, 4-block live run that the other runs are compared with."""
    folder = str(tmp_path_factory.mktemp("sst_ref"))
    return folder, live_catalog(folder, ranks=2, blocks=4, tag="m2n4")


@pytest.mark.mpi
def test_live_catalog_matches_ground_truth(reference):
    folder, cat = reference
    truth = read_truth(os.path.join(folder, "truth.csv"))
    assert len(cat.steps) == 30
    assert sum(r["dropped"] for r in cat.steps) == 0  # lossless preset
    cmp = compare_tracks(truth, cat.events["tracking"], shape=(SIZE, SIZE), periodic=(True, False), tolerance=2.0)
    # Stated tolerance: every true blob tracked by one track over >= 80 % of its
    # steps, >= 95 % of per-step detections within 2 cells, few spurious ones.
    assert cmp.tracks_true >= 4
    assert cmp.tracks_matched == cmp.tracks_true
    assert cmp.detection_recall >= 0.95
    assert cmp.detection_precision >= 0.9
    assert cmp.centroid_error_mean < 1.0


@pytest.mark.mpi
@pytest.mark.parametrize("ranks,blocks", [(1, 4), (3, 4), (2, 1)])
def test_same_catalog_for_any_ranks_and_blocks(tmp_path, reference, ranks, blocks):
    _, ref = reference
    cat = live_catalog(str(tmp_path), ranks=ranks, blocks=blocks, tag=f"m{ranks}n{blocks}")
    assert_same_catalog(ref, cat)


@pytest.mark.mpi
def test_bp5_replay_gives_the_live_catalog(tmp_path, reference):
    _, ref = reference
    folder = str(tmp_path)
    bp = os.path.join(folder, "sim_output.bp")
    xml = procs.sim_xml(folder, engine="BP5")
    sim = procs.start_sim(folder, bp, xml, *SIM_ARGS, "--blocks", "4")
    assert procs.wait(sim, 120) == 0, procs.read_log(folder, "sim.log")
    job = procs.write_job(folder, bp, engine="BP5", catalog=os.path.join(folder, "replay.bp"))
    an = procs.start_analytics(folder, job, 2)
    assert procs.wait(an, 120) == 0, procs.read_log(folder, "analytics.log")
    assert_same_catalog(ref, read_catalog(os.path.join(folder, "replay.bp")))


def _run_cli(folder, *args, timeout=60):
    return subprocess.run([procs.INTRANSIT, *args], cwd=folder, capture_output=True, text=True, timeout=timeout)


def test_missing_stream_times_out_naming_it(tmp_path):
    folder = str(tmp_path)
    stream = os.path.join(folder, "nobody_writes_this")
    job = procs.write_job(folder, stream, open_timeout_s=2)
    res = _run_cli(folder, "run", job)
    assert res.returncode == 1
    assert f"no live SST writer for stream {stream!r} within 2 s" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_variable_is_named_with_what_exists(tmp_path):
    folder = str(tmp_path)
    bp = os.path.join(folder, "small.bp")
    sim = procs.start_sim(folder, bp, procs.sim_xml(folder, engine="BP5"), "--size", "64", "--steps", "2")
    assert procs.wait(sim, 60) == 0
    job = procs.write_job(folder, bp, engine="BP5")
    with open(job) as fh:
        text = fh.read().replace('variables = ["density"]', 'variables = ["temperature"]')
    with open(job, "w") as fh:
        fh.write(text)
    res = _run_cli(folder, "run", job)
    assert res.returncode == 1
    assert "variable 'temperature' is not in stream" in res.stderr and "density" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_config_is_a_clear_error(tmp_path):
    folder = str(tmp_path)
    job = procs.write_job(folder, "x", analyzers='[[analyzers]]\ntype = "blob_detection"\nparams = { threshold = "high" }\n')
    res = _run_cli(folder, "run", job)
    assert res.returncode == 2
    assert "parameter 'threshold' of 'blob_detection' must be float | None, got str 'high'" in res.stderr
    assert "Traceback" not in res.stderr


def test_stalled_writer_is_a_timeout_not_an_end(tmp_path):
    """A simulation that stops publishing (but keeps its stream open) → exit 1 and a timeout message."""
    folder = str(tmp_path)
    stream = os.path.join(folder, "slow")
    job = procs.write_job(folder, stream, step_timeout_s=2)
    xml = procs.sim_xml(folder, readers=1)
    an = procs.start_analytics(folder, job, 1)
    sim = procs.start_sim(folder, stream, xml, "--size", "64", "--steps", "3", "--sleep", "6")
    try:
        assert procs.wait(an, 90) == 1
    finally:
        procs.stop(sim)
        procs.remove_contact_files(folder)
    log = procs.read_log(folder, "analytics.log")
    assert f"no step from stream {stream!r} within 2 s" in log
    assert "Traceback" not in log
