"""The default pipeline, untuned, on data we did not make, over real SST.

``examples/scenario_sim.py`` (its own process) writes anisotropic, rotating
blobs on curved paths over spatially correlated noise as three uneven blocks;
``mpiexec -n 2 intransit run`` reads it live with a job whose
``blob_detection`` and ``tracking`` carry no parameter but ``periodic``: the
defaults a new user gets.  The catalog is scored against the simulation's
ground truth (blob parameters, not masks).

Floors are what the code reaches now, measured, not the issue's targets
(MOTA/IDF1 >= 0.9, detection F1 >= 0.95): see ``FLOORS`` for each figure
and the gap.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from intransit.service.catalog import read_catalog
from intransit.service.groundtruth import compare_tracks
from tests import procs

# The live runs are marked sst, mpi, slow one by one; the scorer's own test runs in process.

SCENARIO = os.path.join(procs.ROOT, "examples", "scenario_sim.py")
NY = NX = 256
STEPS = 60
SIM_ARGS = ["--ny", str(NY), "--nx", str(NX), "--steps", str(STEPS), "--blobs", "24", "--seed", "7",
            "--widths", "0.2,0.45,0.35"]
GATE = 3.0  # cells: a blob's sigma is 1-4 cells, starts >= 12 cells apart

DEFAULTS = """
[[analyzers]]
type = "blob_detection"
name = "blobs"
params = { periodic = [true, true] }

[[analyzers]]
type = "tracking"
input = "blobs"
params = { periodic = [true, true] }
"""

#: Honest floors, a little under what the defaults reached on this run when the
#: test was written (2026-12-03, defaults of that day: detection threshold 2.5
#: global sigma, tracking max_distance 10): detection P 0.65 / R 0.95 / F1 0.774,
#: MOTA 0.431, IDF1 0.652, 19 identity switches, 14 of 24 true tracks matched
#: (50 tracks found).  Identical on 1 rank in process and on 2 SST ranks.  The
#: issue's targets are MOTA, IDF1 >= 0.9 and detection F1 >= 0.95: the gap is
#: 0.18 in F1, 0.47 in MOTA, 0.25 in IDF1, mostly false detections on noise
#: maxima (precision 0.65).  Raise these floors as the defaults improve.
#: Raised after the noise-aware detection defaults (issue 20; threshold 4 sigma of
#: the robustly estimated noise, grow 2.5, split 6/9/13, prominence 3): that run
#: gave detection P 0.976 / R 0.895 / F1 0.934, MOTA 0.856, IDF1 0.860, 8 identity
#: switches, 18 of 24 true tracks matched (28 found).  Floors kept below it with
#: room for the tracker's own changes.
FLOORS = {
    "det_f1": 0.90,
    "mota": 0.70,
    "idf1": 0.75,
    "tracks_matched": 15,
}
#: The issue's targets, reported (not asserted) by the test.
TARGETS = {"det_f1": 0.95, "mota": 0.9, "idf1": 0.9}


def _min_image(d: np.ndarray) -> np.ndarray:
    L = np.array([NY, NX], dtype=float)
    return (d + L / 2) % L - L / 2


def _pairs(truth: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Distances and the one-to-one pairs within the gate (Hungarian, periodic minimum image)."""
    if not len(truth) or not len(found):
        return np.zeros((len(truth), len(found))), []
    d = np.sqrt((_min_image(truth[:, None, :] - found[None, :, :]) ** 2).sum(-1))
    big = GATE * (min(d.shape) + 1) + 1.0
    r, c = linear_sum_assignment(np.where(d <= GATE, d, big))
    return d, [(int(i), int(j)) for i, j in zip(r, c) if d[i, j] <= GATE]


def score(truth: dict, cat) -> dict:
    """Detection P/R/F1 on the detector's rows; MOTA, IDF1 (motmetrics) and true tracks matched on the tracker's."""
    import motmetrics as mm

    frames = {f["step"]: f["centres"] for f in truth["frames"]}
    det_by_step: dict[int, list] = {}
    for e in cat.events["blobs"]:
        det_by_step.setdefault(int(e["step"]), []).append((e["c0"], e["c1"]))
    trk_by_step: dict[int, list] = {}
    for e in cat.events["tracking"]:
        if e.get("object", 0) >= 0:  # occluded rows (object -1) are predictions, not detections
            trk_by_step.setdefault(int(e["step"]), []).append((int(e["track_id"]), e["c0"], e["c1"]))
    tp = n_true = n_found = 0
    acc = mm.MOTAccumulator(auto_id=True)
    for step in sorted(frames):
        t = np.array([[c0, c1] for _, c0, c1 in frames[step]]).reshape(-1, 2)
        f = np.array(det_by_step.get(step, [])).reshape(-1, 2)
        tp += len(_pairs(t, f)[1])
        n_true += len(t)
        n_found += len(f)
        rows = trk_by_step.get(step, [])
        h = np.array([[c0, c1] for _, c0, c1 in rows]).reshape(-1, 2)
        d, _ = _pairs(t, h)
        acc.update([i for i, _, _ in frames[step]], [tid for tid, _, _ in rows], np.where(d <= GATE, d, np.nan))
    p = tp / n_found if n_found else 1.0
    r = tp / n_true if n_true else 1.0
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="default")
    truth_rows = {s: [{"blob_id": i, "c0": c0, "c1": c1} for i, c0, c1 in cs] for s, cs in frames.items()}
    cmp = compare_tracks(truth_rows, [e for e in cat.events["tracking"] if e.get("object", 0) >= 0],
                         shape=(NY, NX), periodic=(True, True), tolerance=GATE)
    return {"det_precision": p, "det_recall": r, "det_f1": 2 * p * r / (p + r) if p + r else 0.0,
            "mota": float(summary["mota"].iloc[0]), "idf1": float(summary["idf1"].iloc[0]),
            "id_switches": int(summary["num_switches"].iloc[0]),
            "tracks_true": cmp.tracks_true, "tracks_matched": cmp.tracks_matched, "tracks_found": cmp.tracks_found}


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("default_pipeline_sst"))
    stream = os.path.join(folder, "scenario_stream")
    catalog = os.path.join(folder, "scenario_catalog.bp")
    truth_path = os.path.join(folder, "scenario_truth.json")
    job = procs.write_job(folder, stream, name="scenario_job.toml", catalog=catalog, analyzers=DEFAULTS,
                          step_timeout_s=60, open_timeout_s=60)
    xml = procs.sim_xml(folder, readers=2)  # the lossless preset, RendezvousReaderCount = 2 ranks
    analytics = procs.start_analytics(folder, job, 2)
    time.sleep(0.2)
    sim = procs.start([sys.executable, SCENARIO, "--xml", xml, "--stream", stream, "--truth", truth_path,
                       "--timeout", "120", *SIM_ARGS], folder, "scenario_sim.log")
    try:
        rc_sim = procs.wait(sim, 180, os.path.join(folder, "scenario_sim.log"))
        rc_an = procs.wait(analytics, 180, os.path.join(folder, "analytics.log"))
    finally:
        procs.stop(sim)
        procs.stop(analytics)
        procs.remove_contact_files(folder)
    assert rc_sim == 0, procs.read_log(folder, "scenario_sim.log")[-3000:]
    assert rc_an == 0, procs.read_log(folder, "analytics.log")[-3000:]
    with open(truth_path) as fh:
        truth = json.load(fh)
    return truth, read_catalog(catalog)


@pytest.mark.sst
@pytest.mark.mpi
@pytest.mark.slow
def test_the_run_is_complete_and_the_blocks_uneven(live_run):
    truth, cat = live_run
    assert len(cat.steps) == STEPS
    assert sum(r["dropped"] for r in cat.steps) == 0  # lossless preset
    widths = [count[1] for _, count in truth["blocks"]]
    assert len(widths) == 3 and len(set(widths)) == 3 and sum(widths) == NX


@pytest.mark.sst
@pytest.mark.mpi
@pytest.mark.slow
def test_default_pipeline_scores_against_the_truth(live_run):
    truth, cat = live_run
    s = score(truth, cat)
    gaps = {k: round(v - s[k], 3) for k, v in TARGETS.items() if s[k] < v}
    print("default pipeline on the scenario:", json.dumps(s), "short of the targets by:", json.dumps(gaps))
    assert s["tracks_true"] == 24
    for key, floor in FLOORS.items():
        assert s[key] >= floor, (key, s)


class _Catalog:
    def __init__(self, blobs, tracking):
        self.events = {"blobs": blobs, "tracking": tracking}


def test_the_score_is_perfect_on_the_truth_and_drops_with_errors():
    """The scorer itself: the truth as a catalog scores 1; shifted detections and swapped ids score less."""
    frames = [{"step": s, "centres": [[0, 10.0 + s, 20.0], [1, 200.0, 255.5 - s]]} for s in range(10)]
    truth = {"frames": frames}
    rows = [{"step": f["step"], "c0": c0, "c1": c1, "track_id": i + 1, "object": i}
            for f in frames for i, c0, c1 in f["centres"]]
    s = score(truth, _Catalog(rows, rows))
    assert s["det_f1"] == 1.0 and s["mota"] == 1.0 and s["idf1"] == 1.0 and s["tracks_matched"] == 2
    far = [dict(r, c0=r["c0"] + GATE + 0.5) for r in rows]
    assert score(truth, _Catalog(far, far))["det_f1"] == 0.0
    swapped = [dict(r, track_id=3 - r["track_id"]) if r["step"] >= 5 else r for r in rows]
    s = score(truth, _Catalog(rows, swapped))
    assert s["id_switches"] == 2 and s["idf1"] < 1.0
