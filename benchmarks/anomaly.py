#!/usr/bin/env python3
"""Anomaly and change-point benchmark on the unstable HW reference simulation.

Runs ``examples/hw_sim.py``'s physics in-process (no transport: the analyzers
see the same blocks a rank would) and scores, in the same run:

* ``anomaly`` (this project: features + robust statistics + torch predictor)
  with ``changepoint`` (CUSUM) on its diagnostics;
* river's ``HalfSpaceTrees`` (after ``MinMaxScaler``) on the same scalar
  diagnostics, threshold = the warm-up's largest score;
* a plain threshold on ``max|n|``: 2x the warm-up's largest value.

Every detector alarms on 2 consecutive steps above its threshold.
Unstable runs: dt raised at step S; ``lead`` = blow-up step - first alarm at
or after S; ``window`` = blow-up step - S.  Stable runs: every alarm is false.
Change runs: c1 1 -> 0.5 at step C; delay = first change point (alarm for the
baselines) at or after C, minus C.  ``stride_check``: a second anomaly
detector with ``stride = 4`` (1/16 of the cells, as the default samples at
512^2) on the same runs.

Overhead (``overhead_ratio``): the analytics step time at 512^2 (4 blocks) of
the reference pipeline -- BP5 read + ``blob_detection`` + ``tracking`` -- and
what ``anomaly`` + ``changepoint`` add to it, timed in-process step by step
(interleaved, so machine load hits both alike) on a BP5 replay written by
this script (hw2d turbulence 64^2 spectrally interpolated to 512^2 plus
moving Gaussian blobs, like ``examples/blob_sim.py``).  Ratio = mean added /
mean reference over the steps after the anomaly warm-up.  ``--service``
(default in the full run) also runs ``intransit run`` on a ``blob_sim.py``
BP5 file with and without the two analyzers (``step_seconds_mean`` of the
summary and the catalog's per-step seconds).

Threads: one per library (OMP/OpenBLAS/numba), as on a busy analytics rank.
``--quick`` runs fewer/shorter runs (under a minute).  Last line: one JSON object.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import hw_sim  # noqa: E402

from intransit.analyzers.anomaly import AnomalyDetector  # noqa: E402
from intransit.analyzers.base import Block, StepContext  # noqa: E402
from intransit.analyzers.changepoint import CusumChangePoint  # noqa: E402

WARMUP = 100
PERSIST = 2


def blocks_of(field: np.ndarray, nblocks: int = 4) -> list[Block]:
    return [Block(np.ascontiguousarray(field[y:y + cy, x:x + cx]), (y, x), (cy, cx), i)
            for i, ((y, x), (cy, cx)) in enumerate(hw_sim.blocks_for(field.shape[0], nblocks))]


class Baselines:
    """HalfSpaceTrees and max|n| threshold, calibrated on the same warm-up."""

    def __init__(self) -> None:
        from river import anomaly, preprocessing

        self.hst = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42, window_size=50)
        self.n = 0
        self.cal = {"hst": [], "maxabs": []}
        self.thr = {"hst": np.inf, "maxabs": np.inf}
        self.streak = {"hst": 0, "maxabs": 0}

    def step(self, scores: dict[str, float]) -> dict[str, bool]:
        self.n += 1
        bad = scores["nonfinite"] > 0 or not np.isfinite(scores["max_abs"]) or scores["max_abs"] > 1e6
        x = {k: scores[k] for k in ("log_energy", "log_grad_ratio", "log_hp_ratio", "log_max_abs", "log_rate")}
        if not bad:
            s_hst = self.hst.score_one(x)
            self.hst.learn_one(x)
        else:
            s_hst = np.inf
        vals = {"hst": s_hst, "maxabs": scores["max_abs"] if not bad else np.inf}
        out = {}
        for k, v in vals.items():
            if self.n <= WARMUP:
                if self.n > WARMUP // 2:
                    self.cal[k].append(v)
                if self.n == WARMUP:
                    self.thr[k] = max(self.cal[k]) * (2.0 if k == "maxabs" else 1.0)
                out[k] = False
                continue
            self.streak[k] = self.streak[k] + 1 if v > self.thr[k] else 0
            out[k] = self.streak[k] >= PERSIST
        return out


DETECTORS = ("anomaly", "stride4", "hst", "maxabs")


_WARM: dict[tuple[int, int], hw_sim.HWRun] = {}


def warm_run(size: int, seed: int) -> hw_sim.HWRun:
    """A fresh HW run after its warm-up (the warm-up is deterministic: done once per size and seed)."""
    if (size, seed) not in _WARM:
        _WARM[(size, seed)] = hw_sim.HWRun(size=size, seed=seed)
    return copy.deepcopy(_WARM[(size, seed)])


def run_case(size: int, seed: int, steps: int, *, onset: int | None = None, change: int | None = None) -> dict:
    run = warm_run(size, seed)
    det = AnomalyDetector(warmup=WARMUP, persist=PERSIST, device="cpu", seed=seed)
    det4 = AnomalyDetector(warmup=WARMUP, persist=PERSIST, device="cpu", seed=seed, stride=4)
    cpd = CusumChangePoint()
    base = Baselines()
    alarms: dict[str, list[int]] = {k: [] for k in DETECTORS}
    prev = {k: False for k in DETECTORS}
    cps: list[int] = []
    blowup = None
    for step in range(steps):
        if onset is not None and step == onset:
            run.set_param("dt", 0.075)
        if change is not None and step == change:
            run.set_param("c1", 0.5)
        if step:
            run.step()
        ctx = StepContext(step=step, index=step, variable="density", global_shape=(size, size),
                          blocks=blocks_of(run.density))
        res = det.combine([det.process_blocks(ctx)], ctx)
        res4 = det4.combine([det4.process_blocks(ctx)], ctx)
        ctx.input = res
        cp = cpd.combine([None], ctx)
        if cp.events:
            cps.append(step)
        flags = {"anomaly": bool(res.scores["alarm"]), "stride4": bool(res4.scores["alarm"]), **base.step(res.scores)}
        for k, on in flags.items():
            if on and not prev[k]:
                alarms[k].append(step)
            prev[k] = on
        if run.blown_up():
            blowup = step
            break
    return {"size": size, "seed": seed, "onset": onset, "change": change, "blowup": blowup,
            "alarms": alarms, "changepoints": cps, "steps": step + 1}


# ----------------------------------------------------------------- overhead
def replay_frames(size: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    """hw2d turbulence (64^2, spectrally interpolated, std 1) plus 5 moving Gaussian blobs (peak 5)."""
    hw = hw_sim.HWRun(size=64, seed=seed)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    pos = rng.uniform(0, size, (5, 2))
    vel = rng.uniform(-2, 2, (5, 2)) * size / 256
    width = size / 64
    o = (size - 64) // 2
    frames = []
    for _ in range(steps):
        hw.step()
        spec = np.fft.fftshift(np.fft.fft2(hw.density))
        pad = np.zeros((size, size), complex)
        pad[o:o + 64, o:o + 64] = spec
        f = np.real(np.fft.ifft2(np.fft.ifftshift(pad)))
        f = (f - f.mean()) / f.std()
        for (cy, cx) in pos:
            dy = (yy - cy + size / 2) % size - size / 2
            dx = (xx - cx + size / 2) % size - size / 2
            f += 5.0 * np.exp(-(dy ** 2 + dx ** 2) / width ** 2)
        pos = (pos + vel) % size
        frames.append(f)
    return frames


def write_bp5(path: str, frames: list[np.ndarray], nblocks: int = 4) -> None:
    """The frames as a BP5 file in ``nblocks`` blocks (as hw_sim/blob_sim write them)."""
    import adios2
    import adios2.bindings as ab

    size = frames[0].shape[0]
    blocks = hw_sim.blocks_for(size, nblocks)
    adios = adios2.Adios(str(ROOT / "examples" / "adios2.xml"))
    io = adios.declare_io("SimulationOutput")
    var = io.define_variable("density", np.zeros((1, 1)), [size, size], blocks[0][0], blocks[0][1])
    engine = io.open(path, ab.Mode.Write)
    for f in frames:
        engine.begin_step()
        for (y0, x0), (cy, cx) in blocks:
            var.set_selection([[y0, x0], [cy, cx]])
            engine.put(var, np.ascontiguousarray(f[y0:y0 + cy, x0:x0 + cx]), ab.Mode.Sync)
        engine.end_step()
    engine.close()


REF_BLOBS = dict(threshold=3.0, min_area=4, periodic=[True, False])
REF_TRACKING = dict(max_distance=8.0, max_gap=2, periodic=[True, False])
OVERHEAD_WARMUP = 20


def overhead_inprocess(bp: str, warmup: int = OVERHEAD_WARMUP) -> dict:
    """Per step, on the same BP5 replay: read + blob_detection + tracking, then anomaly + changepoint."""
    from intransit.adapters.reader import AdiosStepReader, StepStatus
    from intransit.analyzers.base import get

    reader = AdiosStepReader(stream=bp, xml=str(ROOT / "xml_configs" / "replay_bp5.xml"), io_name="SimulationOutput")
    blob, trk = get("blob_detection")(**REF_BLOBS), get("tracking")(**REF_TRACKING)
    det, cpd = AnomalyDetector(warmup=warmup, device="cpu"), CusumChangePoint()

    def run(analyzer, ctx, results, key, inp=None):
        ctx.input = results.get(inp) if inp else None
        results[key] = analyzer.combine([analyzer.process_blocks(ctx)], ctx)

    ref, add, ref_cpu, add_cpu, cells = [], [], [], [], 0
    index = 0
    while reader.begin_step(10.0) is StepStatus.OK:
        t0, c0 = time.perf_counter(), time.thread_time()
        shape, blocks = reader.read("density")
        reader.end_step()
        results: dict = {}
        ctx = StepContext(step=index, index=index, variable="density", global_shape=shape, blocks=blocks,
                          upstream=results)
        run(blob, ctx, results, "blobs")
        run(trk, ctx, results, "tracks", "blobs")
        t1, c1 = time.perf_counter(), time.thread_time()
        run(det, ctx, results, "anomaly")
        run(cpd, ctx, results, "changepoint", "anomaly")
        t2, c2 = time.perf_counter(), time.thread_time()
        ref.append(t1 - t0)
        add.append(t2 - t1)
        ref_cpu.append(c1 - c0)
        add_cpu.append(c2 - c1)
        cells = int(np.prod(shape))
        index += 1
    reader.close()
    steady = slice(warmup + 4, None)  # after the warm-up and the first increments
    r, a = np.array(ref[steady]), np.array(add[steady])
    rc, ac = np.array(ref_cpu[steady]), np.array(add_cpu[steady])
    rw, aw = np.array(ref_cpu[:warmup]), np.array(add_cpu[:warmup])
    return {"how": "in-process, per step: BP5 read + blob_detection + tracking (reference) vs anomaly + changepoint "
                   "(process_blocks + combine, one rank), same 512^2 replay, interleaved; overhead_ratio = mean "
                   "added / mean reference thread CPU time over the steps after the warm-up (CPU time: immune to "
                   "preemption on a loaded machine); wall-clock ratios beside it",
            "cells": cells, "steps": index, "steady_steps": int(r.size), "stride": det._stride(shape),
            "reference_cpu_ms_mean": round(1e3 * float(rc.mean()), 3), "added_cpu_ms_mean": round(1e3 * float(ac.mean()), 3),
            "reference_wall_ms_mean": round(1e3 * float(r.mean()), 3), "added_wall_ms_mean": round(1e3 * float(a.mean()), 3),
            "reference_wall_ms_median": round(1e3 * float(np.median(r)), 3),
            "added_wall_ms_median": round(1e3 * float(np.median(a)), 3),
            "overhead_ratio": round(float(ac.mean() / rc.mean()), 4),
            "overhead_ratio_wall_mean": round(float(a.mean() / r.mean()), 4),
            "overhead_ratio_wall_median": round(float(np.median(a) / np.median(r)), 4),
            "warmup_overhead_ratio_cpu": round(float(aw.mean() / rw.mean()), 4) if rw.size else None}


def overhead_service(folder: str, steps: int = 120, repeats: int = 3, warmup: int = OVERHEAD_WARMUP) -> dict:
    """``intransit run`` on one blob_sim BP5 file, with and without anomaly + changepoint (alternating)."""
    from intransit.service.catalog import read_catalog

    bp = os.path.join(folder, "blob512.bp")
    subprocess.run([sys.executable, str(ROOT / "examples" / "blob_sim.py"), "--size", "512", "--blocks", "4",
                    "--steps", str(steps), "--stream", bp, "--xml", str(ROOT / "examples" / "adios2.xml"), "-q"],
                   check=True, capture_output=True)
    ref = f"""
[stream]
name = "{bp}"
xml = "{ROOT / 'xml_configs' / 'replay_bp5.xml'}"
io = "SimulationOutput"
variables = ["density"]

[[analyzers]]
type = "blob_detection"
name = "blobs"
params = {{ threshold = 3.0, min_area = 4, periodic = [true, false] }}

[[analyzers]]
type = "tracking"
input = "blobs"
params = {{ max_distance = 8.0, max_gap = 2, periodic = [true, false] }}
"""
    extra = f"""
[[analyzers]]
type = "anomaly"
name = "anomaly"
params = {{ warmup = {warmup}, device = "cpu" }}

[[analyzers]]
type = "changepoint"
input = "anomaly"
"""
    out: dict[str, list] = {"reference": [], "with_anomaly": []}
    for _ in range(repeats):
        for variant, text in (("reference", ref), ("with_anomaly", ref + extra)):
            job = os.path.join(folder, f"{variant}.toml")
            with open(job, "w") as fh:
                fh.write(text + f'\n[output]\ncatalog = "{os.path.join(folder, variant + "_cat.bp")}"\n')
            summary = os.path.join(folder, f"{variant}.json")
            subprocess.run([str(Path(sys.executable).parent / "intransit"), "run", job, "--summary-json", summary,
                            "--log-level", "warning"], check=True, capture_output=True)
            with open(summary) as fh:
                mean = json.load(fh)["step_seconds_mean"]
            sec = np.array([r["seconds"] for r in read_catalog(os.path.join(folder, variant + "_cat.bp")).steps])
            out[variant].append((mean, float(sec[warmup + 4:].mean())))
    r, w = np.array(out["reference"]), np.array(out["with_anomaly"])
    return {"how": f"intransit run on a blob_sim 512^2 BP5 file ({steps} steps, 4 blocks), {repeats} alternating "
                   "repeats; medians",
            "reference_ms": 1e3 * float(np.median(r[:, 0])), "with_anomaly_ms": 1e3 * float(np.median(w[:, 0])),
            "overhead_ratio_all_steps": float(np.median(w[:, 0]) / np.median(r[:, 0]) - 1),
            "overhead_ratio_steady": float(np.median(w[:, 1]) / np.median(r[:, 1]) - 1),
            "runs_ms": {"reference": (1e3 * r).round(2).tolist(), "with_anomaly": (1e3 * w).round(2).tolist()}}


def metrics(cases: list[dict], key: str) -> dict:
    leads, windows, late, fa_unstable = [], [], 0, 0
    for c in (c for c in cases if c["onset"] is not None):
        after = [a for a in c["alarms"][key] if a >= c["onset"]]
        fa_unstable += len([a for a in c["alarms"][key] if a < c["onset"]])
        if c["blowup"] is None:
            continue
        windows.append(c["blowup"] - c["onset"])
        if after and after[0] < c["blowup"]:
            leads.append(c["blowup"] - after[0])
        else:
            late += 1
            leads.append(0)
    stable = [c for c in cases if c["onset"] is None and c["change"] is None]
    false_alarms = sum(len(c["alarms"][key]) for c in stable)
    false_changes = sum(len(c["changepoints"] if key == "anomaly" else c["alarms"][key]) for c in stable)
    delays = []
    for c in (c for c in cases if c["change"] is not None):
        found = c["changepoints"] if key == "anomaly" else c["alarms"][key]
        after = [s for s in found if s >= c["change"]]
        delays.append(after[0] - c["change"] if after else None)
    ok_delays = [d for d in delays if d is not None]
    return {
        "lead_steps_min": min(leads) if leads else None,
        "window_steps_min": min(windows) if windows else None,
        "lead_over_window_min": round(min(l / w for l, w in zip(leads, windows)), 3) if leads else None,
        "missed_before_blowup": late,
        "unstable_runs_without_blowup": sum(1 for c in cases if c["onset"] is not None and c["blowup"] is None),
        "false_alarms": false_alarms,
        "stable_steps": sum(c["steps"] for c in stable),
        "false_alarms_before_onset": fa_unstable,
        "changepoint_delay_max": (max(ok_delays) if len(ok_delays) == len(delays) and delays else None),
        "changepoint_missed": len(delays) - len(ok_delays),
        "changepoint_false": false_changes,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter runs; in-process overhead only")
    p.add_argument("--service", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the real service (default: on in the full run, off with --quick)")
    a = p.parse_args()
    service = (not a.quick) if a.service is None else a.service
    t0 = time.perf_counter()
    if a.quick:
        unstable = [(64, s, 130) for s in (0, 1)]
        stable = [(64, s, 220) for s in (0, 1)]
        changes = [(64, 0, 160)]  # the CUSUM is armed 43 steps after the anomaly warm-up (100)
        ov_steps = 100
    else:
        unstable = [(64, s, 300) for s in range(5)] + [(128, s, 300) for s in range(3)]
        stable = [(64, s, 1000) for s in (0, 1, 2)]
        changes = [(64, s, 250) for s in (0, 1, 2)]
        ov_steps = 300
    cases = []
    for size, seed, onset in unstable:
        cases.append(run_case(size, seed, onset + 200, onset=onset))
    for size, seed, steps in stable:
        cases.append(run_case(size, seed, steps))
    for size, seed, c in changes:
        cases.append(run_case(size, seed, c + 40, change=c))
    t_cases = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="anomaly_bench_") as tmp:
        bp = os.path.join(tmp, "replay512.bp")
        write_bp5(bp, replay_frames(512, ov_steps))
        ov = overhead_inprocess(bp)
        if service:
            ov["service"] = overhead_service(tmp)
    result = metrics(cases, "anomaly")
    result["overhead_ratio"] = ov["overhead_ratio"]
    result["overhead"] = ov
    result["stride_check"] = {k: v for k, v in metrics(cases, "stride4").items() if not k.startswith("changepoint")}
    result["baselines"] = {}
    for key, name in (("hst", "river_half_space_trees"), ("maxabs", "max_abs_threshold")):
        m = metrics(cases, key)
        m["overhead_ratio"] = None
        result["baselines"][name] = m
    result["runs"] = cases
    result["quick"] = a.quick
    result["seconds_detection_runs"] = round(t_cases, 1)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    for c in cases:
        print(f"size {c['size']} seed {c['seed']} onset {c['onset']} change {c['change']} blowup {c['blowup']} "
              f"alarms {c['alarms']} changepoints {c['changepoints']}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
