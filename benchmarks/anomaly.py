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
baselines) at or after C, minus C.  Overhead: analytics step time at 512^2
(4 blocks) of blob detection alone vs blob detection + anomaly.

``--quick`` runs fewer/shorter runs (under a minute).  Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

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


def run_case(size: int, seed: int, steps: int, *, onset: int | None = None, change: int | None = None) -> dict:
    run = hw_sim.HWRun(size=size, seed=seed)
    det = AnomalyDetector(warmup=WARMUP, persist=PERSIST, device="cpu", seed=seed)
    cpd = CusumChangePoint()
    base = Baselines()
    first: dict[str, int | None] = {"anomaly": None, "hst": None, "maxabs": None}
    alarms: dict[str, list[int]] = {k: [] for k in first}
    prev = {k: False for k in first}
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
        ctx.input = res
        cp = cpd.combine([None], ctx)
        if cp.events:
            cps.append(step)
        flags = {"anomaly": bool(res.scores["alarm"]), **base.step(res.scores)}
        for k, on in flags.items():
            if on and not prev[k]:
                alarms[k].append(step)
            prev[k] = on
        if run.blown_up():
            blowup = step
            break
    return {"size": size, "seed": seed, "onset": onset, "change": change, "blowup": blowup,
            "alarms": alarms, "changepoints": cps, "steps": step + 1}


def overhead(size: int = 512, steps: int = 20) -> dict:
    """Analytics step time: blob detection alone vs + anomaly (same blocks, in-process)."""
    from intransit.analyzers import blobs as _blobs  # noqa: F401
    from intransit.analyzers.base import get

    coarse = hw_sim.HWRun(size=64, seed=0)
    fields = []
    for _ in range(steps + 5):
        coarse.step()
        spec = np.fft.fftshift(np.fft.fft2(coarse.density))
        pad = np.zeros((size, size), complex)
        o = (size - 64) // 2
        pad[o:o + 64, o:o + 64] = spec
        f = np.real(np.fft.ifft2(np.fft.ifftshift(pad))) * (size / 64) ** 2
        fields.append((f - f.mean()) / f.std())
    blob = get("blob_detection")(threshold=3.0, min_area=4, periodic=[True, False])
    det = AnomalyDetector(warmup=10, device="cpu")

    def timed(pipeline) -> float:
        ts = []
        for i, f in enumerate(fields):
            ctx = StepContext(step=i, index=i, variable="density", global_shape=(size, size), blocks=blocks_of(f))
            t0 = time.perf_counter()
            for a in pipeline:
                a.combine([a.process_blocks(ctx)], ctx)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts[5:]))

    t_blob = timed([blob])
    t_both = timed([blob, det])
    t_anom = timed([det])
    return {"size": size, "blob_s": t_blob, "blob_plus_anomaly_s": t_both, "anomaly_s": t_anom,
            "overhead_ratio": (t_both - t_blob) / t_blob}


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
    false_alarms = sum(len(c["alarms"][key]) for c in cases if c["onset"] is None and c["change"] is None)
    delays = []
    for c in (c for c in cases if c["change"] is not None):
        found = c["changepoints"] if key == "anomaly" else c["alarms"][key]
        after = [s for s in found if s >= c["change"]]
        delays.append(after[0] - c["change"] if after else None)
    ok_delays = [d for d in delays if d is not None]
    return {
        "lead_steps_min": min(leads) if leads else None,
        "window_steps_min": min(windows) if windows else None,
        "lead_over_window_min": min(l / w for l, w in zip(leads, windows)) if leads else None,
        "missed_before_blowup": late,
        "false_alarms": false_alarms,
        "false_alarms_before_onset": fa_unstable,
        "changepoint_delay_max": (max(ok_delays) if len(ok_delays) == len(delays) and delays else None),
        "changepoint_missed": len(delays) - len(ok_delays),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    t0 = time.perf_counter()
    if a.quick:
        unstable = [(64, s, 200) for s in (0, 1)]
        stable = [(64, s, 300) for s in (0, 1, 2)]
        changes = [(64, 0, 160)]
    else:
        unstable = [(64, s, 300) for s in (0, 1, 2)] + [(128, s, 300) for s in (0, 1)]
        stable = [(64, s, 1000) for s in (0, 1, 2)]
        changes = [(64, s, 250) for s in (0, 1, 2)]
    cases = []
    for size, seed, onset in unstable:
        cases.append(run_case(size, seed, onset + 200, onset=onset))
    for size, seed, steps in stable:
        cases.append(run_case(size, seed, steps))
    for size, seed, c in changes:
        cases.append(run_case(size, seed, c + 40, change=c))
    ov = overhead(steps=10 if a.quick else 30)
    result = metrics(cases, "anomaly")
    result["overhead_ratio"] = ov["overhead_ratio"]
    result["overhead"] = ov
    result["baselines"] = {}
    for key, name in (("hst", "river_half_space_trees"), ("maxabs", "max_abs_threshold")):
        m = metrics(cases, key)
        m["overhead_ratio"] = None
        result["baselines"][name] = m
    result["runs"] = [{k: v for k, v in c.items()} for c in cases]
    result["quick"] = a.quick
    result["seconds"] = round(time.perf_counter() - t0, 1)
    for c in cases:
        print(f"size {c['size']} seed {c['seed']} onset {c['onset']} change {c['change']} blowup {c['blowup']} "
              f"alarms {c['alarms']} changepoints {c['changepoints']}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
