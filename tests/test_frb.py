"""FRB search (analyzers/frb.py): recovery, chunk boundaries, interference, gaps, filterbank replay.

Small sizes (128 channels, 256 µs, DM ≤ 500), CPU only, in-process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from intransit.analyzers.base import Block, StepContext
from intransit.analyzers.dedispersion import FDMT, brute_force_plane, plan_dm_ranges
from intransit.analyzers.frb import FRBSearch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NCH, TSAMP, CHUNK = 128, 256e-6, 4096


def _beamformer():
    spec = importlib.util.spec_from_file_location("beamformer", os.path.join(ROOT, "examples", "beamformer.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("beamformer", mod)
    spec.loader.exec_module(mod)
    return mod


bfm = _beamformer()


def _search(bf, n_chunks, *, steps=None, blocks=2, **kw):
    an = FRBSearch(fch1_mhz=bf.fch1, foff_mhz=bf.foff, tsamp_s=bf.tsamp, dm_max=500.0, snr_threshold=6.5, **kw)
    events, results = [], []
    for i, step in enumerate(steps if steps is not None else range(n_chunks)):
        while bf.step < step:  # dropped steps: the writer made them, we never saw them
            bf.next_chunk()
        data = bf.next_chunk()
        parts = [Block(data[c0:c0 + n], (c0, 0), (n, bf.chunk), j) for j, (c0, n) in enumerate(bfm.subband_blocks(bf.nchan, blocks))]
        ctx = StepContext(step=step, index=i, variable="spectra", global_shape=(bf.nchan, bf.chunk), blocks=parts)
        res = an.combine([an.process_blocks(ctx)], ctx)
        events += res.events
        results.append(res)
    return an, events, results


def _near(events, sample, tol=40):
    return [e for e in events if abs(e["sample"] - sample) <= tol + e["width_s"] / TSAMP]


def test_fdmt_finds_a_dispersed_line_and_partial_subbands_add_up_exactly():
    f = 1500.0 - np.arange(64) * 300.0 / 64
    x = np.zeros((64, 400), np.float32)
    span = (f.min() / 1e3) ** -2 - (f.max() / 1e3) ** -2
    frac = ((f / 1e3) ** -2 - (f.max() / 1e3) ** -2) / span
    for c in range(64):
        x[c, 50 + int(round(40 * frac[c])): 53 + int(round(40 * frac[c]))] = 1.0  # 3 samples wide
    fd = FDMT(f, 0, 80, subband=16)
    plane = fd(torch.from_numpy(x)).numpy()
    d, t = np.unravel_index(np.argmax(plane), plane.shape)
    assert abs(d - 40) <= 1 and 49 <= t <= 52 and plane.max() >= 0.95 * 64 * 1  # ≥ 95 % of channels aligned
    # channels 0-6 on one rank, 7-63 on another: partial subband outputs add up to the same plane, bit for bit
    xa, xb = x.copy(), x.copy()
    xa[7:], xb[:7] = 0, 0
    parts = [fd.lower(k, torch.from_numpy(xa[a:b])) + fd.lower(k, torch.from_numpy(xb[a:b]))
             for k, (a, b) in enumerate(fd.subbands)]
    assert len(parts) == 4 and np.array_equal(fd.upper(torch.cat(parts)).numpy(), plane)
    # the same line, for the reversed channel order (foff > 0)
    rev = FDMT(f[::-1], 0, 80, subband=16)(torch.from_numpy(x[::-1].copy())).numpy()
    assert np.unravel_index(np.argmax(rev), rev.shape) == (d, t) and rev.max() == plane.max()
    brute = brute_force_plane(x, f, f.max(), f.min(), 40, 40)
    assert brute.max() == 64 * 1  # the straightforward search aligns every channel at the true trial


def test_dm_plan_covers_the_range_contiguously():
    f = 1500.0 - np.arange(1024) * 300.0 / 1024
    plan = plan_dm_ranges(f, 64e-6, 0.0, 1000.0)
    assert plan[0].scrunch == 1 and plan[0].d_min == 0
    assert plan[-1].dm(plan[-1].d_max) >= 1000.0
    for a, b in zip(plan, plan[1:]):
        assert b.scrunch == 2 * a.scrunch and b.dm(b.d_min) <= a.dm(a.d_max) + 1e-9


def test_injected_pulses_recovered_with_dm_and_snr():
    bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=11)
    truth = [(1500, 80.0, 2e-3, 15.0), (6000, 250.0, 1e-3, 20.0), (10500, 420.0, 3e-3, 25.0), (14000, 30.0, 1e-3, 12.0)]
    for t, dm, w, snr in truth:
        bf.add_pulse(t, dm, w, snr)
    an, events, _ = _search(bf, 6)
    assert len(events) == len(truth), events
    for t, dm, w, snr in truth:
        (e,) = _near(events, t)
        assert abs(e["dm"] - dm) / dm < 0.05
        assert 0.6 * snr <= e["snr"] <= 1.3 * snr


def test_pulse_spanning_two_chunks_is_found_once():
    bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=12)
    # arrives just before the chunk 2/3 boundary; its sweep (≈ 2000 samples at DM 300) crosses it
    bf.add_pulse(3 * CHUNK - 300, 300.0, 1e-3, 20.0)
    bf.add_pulse(2 * CHUNK + 5, 150.0, 2e-3, 15.0)  # just after the chunk 1/2 boundary
    an, events, _ = _search(bf, 6)
    assert len(_near(events, 3 * CHUNK - 300)) == 1
    assert len(_near(events, 2 * CHUNK + 5)) == 1
    assert len(events) == 2


def test_interference_is_not_reported():
    bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=13, rfi_channels=6, rfi_bursts_per_min=200,
                        rfi_burst_snr=300.0)
    bf.add_pulse(9000, 200.0, 2e-3, 18.0)
    an, events, results = _search(bf, 6)
    assert len(bf.bursts) >= 5
    assert len(events) == 1 and abs(events[0]["dm"] - 200.0) < 10
    assert all(r.scores["masked_fraction"] >= 6 / NCH for r in results)


def test_noise_gives_no_candidates_and_scores_fire_a_rule():
    bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=14)
    _, events, results = _search(bf, 4)
    assert events == [] and all(r.scores["max_snr"] == 0.0 for r in results)
    bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=15)
    bf.add_pulse(5000, 100.0, 1e-3, 30.0)
    _, events, results = _search(bf, 3)
    fired = [r for r in results if r.scores["max_snr"] >= 8]
    assert len(fired) == 1
    s = fired[0].scores
    assert s["trigger_start_s"] <= 5000 * TSAMP <= s["trigger_end_s"]


def test_dropped_steps_reset_the_overlap():
    bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=16)
    bf.add_pulse(5 * CHUNK + 1500, 200.0, 2e-3, 20.0)
    an, events, results = _search(bf, 0, steps=[0, 1, 3, 4, 5, 6])
    assert an.gap_resets == 1 and results[2].scores["gap_resets"] == 1
    assert len(events) == 1 and abs(events[0]["sample"] - (5 * CHUNK + 1500)) < 40


def test_state_round_trip_resumes_mid_stream():
    """Global state (rank 0) and local state (overlap buffer, mask) restored: the same candidates follow."""
    import pickle

    def run(steps, an):
        bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=17)
        bf.add_pulse(3 * CHUNK + 200, 300.0, 1e-3, 20.0)  # its sweep spans chunks 3 and 4
        out = []
        for step in range(6):
            data = bf.next_chunk()
            if step not in steps:
                continue
            ctx = StepContext(step=step, index=step, variable="spectra", global_shape=(NCH, CHUNK),
                              blocks=[Block(data, (0, 0), (NCH, CHUNK))])
            out += an.combine([an.process_blocks(ctx)], ctx).events
        return out

    kw = dict(fch1_mhz=1500.0, foff_mhz=-300.0 / NCH, tsamp_s=TSAMP, dm_max=500.0, snr_threshold=6.5)
    a = FRBSearch(**kw)
    first = run(range(4), a)
    b = FRBSearch(**kw)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    b.load_local_state_dict(pickle.loads(pickle.dumps(a.local_state_dict())))
    ref = run(range(6), FRBSearch(**kw))
    assert first + run(range(4, 6), b) == ref and len(ref) == 1


def test_filterbank_replay_round_trip(tmp_path):
    pytest.importorskip("your")
    adios2 = pytest.importorskip("adios2")
    fil, bp, bp2 = tmp_path / "obs.fil", tmp_path / "direct.bp", tmp_path / "replay.bp"
    xml = os.path.join(ROOT, "examples", "adios2.xml")
    common = ["--nchan", "64", "--chunk", "1024", "--steps", "3", "--blocks", "2", "--tsamp", "256e-6", "-q"]
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "beamformer.py"), "--xml", xml,
                    "--stream", str(bp), "--fil", str(fil), "--pulse", "1500,100,1e-3,30", *common], check=True, timeout=60)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "filterbank_replay.py"), str(fil), "--xml", xml,
                          "--stream", str(bp2), "--chunk", "1024", "--blocks", "2", "-q"],
                         check=True, timeout=60, capture_output=True, text=True)
    assert "fch1_mhz = 1500.0" in out.stdout and "tsamp_s = 0.000256" in out.stdout

    def read(path):
        steps = []
        with adios2.FileReader(str(path)) as fr:
            n = fr.num_steps()
            for s in range(n):
                steps.append(fr.read("spectra", step_selection=[s, 1]))
        return steps

    a, b = read(bp), read(bp2)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.reshape(64, 1024), y.reshape(64, 1024))
