#!/usr/bin/env python3
"""Ensemble benchmark: the online pool vs an offline workflow that stores every member, side by side.

One ensemble of examples/ishigami_member.py (the Ishigami function as a
field: known Sobol indices at every point), p = 3, pick-freeze groups of 5:

* online: ``intransit ensemble run`` (local launcher, the pool of ``--ranks``
  ranks, members over SST), with member failures injected (each relaunched
  once as its group's next attempt);
* offline: the same member table, every member writing BP5 files to disk
  (``--parallel`` at once), then the same statistics computed from the
  stored files with numpy (moments, min/max, exceedance, Martinez Sobol).

Last line: one JSON object: members, members per minute, analytics seconds
per member-step and their ratio to the member's own step time, RSS of pool
rank 0 at the first merged group and at the end (and its trace vs members),
bytes written online (products + checkpoint) vs offline (member files),
wall times, max |online - offline| over the exact statistics, the fraction
of Sobol indices whose 95 % interval holds the analytic value, the failures
injected and whether they changed the result.  ``--quick``: 20 members, 32^2,
5 steps, one failure (about 5 minutes on the two-core machine under a load
of 9; the Sobol intervals of 4 groups are very wide: the full run is the
informative one for ``sobol_within_ci``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np
import scipy.stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
MEMBER = os.path.join(ROOT, "examples", "ishigami_member.py")
EXACT = ("mean", "variance", "min", "max", "p_exceed_5")


def _du(path: str) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(base, f))
    return total


def _config(folder: str, a: argparse.Namespace, faults: list[int]) -> str:
    inject = ", ".join(f'{{member = {m}, attempt = 0, args = "--fail-at-step 1"}}' for m in faults)
    params = "".join(f'\n[[parameters]]\nname = "x{i}"\nlow = {-np.pi!r}\nhigh = {np.pi!r}\n' for i in (1, 2, 3))
    text = textwrap.dedent(f"""
        [ensemble]
        workdir = "online"
        design = "sobol"
        samples = {a.groups}
        seed = 7
        """) + params + textwrap.dedent(f"""
        [member]
        command = "{{python}} {MEMBER} --stream {{stream}} --xml {{xml}} --steps {{steps}} --n {a.n} --x1 {{param.x1}} --x2 {{param.x2}} --x3 {{param.x3}}"
        variable = "Y"
        steps = {a.steps}
        timeout_s = 120
        stall_timeout_s = 30

        [launch]
        max_concurrent = {a.concurrent}
        retries = 1
        pool_ranks = {a.ranks}

        [statistics]
        thresholds = [5.0]
        quantiles = [0.5]

        [output]
        checkpoint_every = 4

        [faults]
        inject = [{inject}]
        """)
    path = os.path.join(folder, "ensemble.toml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def _offline(cfg, rows, folder: str, a: argparse.Namespace) -> tuple[dict[str, np.ndarray], float, float, int]:
    """Every member to a BP5 file, then the statistics from the files: (stats, write wall, compute wall, bytes)."""
    import adios2

    os.makedirs(folder, exist_ok=True)
    xml = os.path.join(folder, "bp5.xml")
    with open(xml, "w") as fh:
        fh.write('<?xml version="1.0"?>\n<adios-config><io name="SimulationOutput"><engine type="BP5"/></io>'
                 '</adios-config>\n')
    t0 = time.monotonic()
    todo = list(rows)
    running: list[subprocess.Popen] = []
    while todo or running:
        while todo and len(running) < a.parallel:
            r = todo.pop(0)
            cmd = [sys.executable, MEMBER, "--stream", os.path.join(folder, f"m{r['member']:05d}.bp"), "--xml", xml,
                   "--steps", str(a.steps), "--n", str(a.n)] + sum(([f"--{k}", repr(r[k])] for k in ("x1", "x2", "x3")), [])
            running.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in list(running):
            if p.poll() is not None:
                if p.returncode != 0:
                    raise SystemExit(f"offline member failed: {p.args}")
                running.remove(p)
        time.sleep(0.05)
    t_write = time.monotonic() - t0
    t0 = time.monotonic()
    x = np.empty((len(rows), a.steps, a.n, a.n))
    for k, r in enumerate(rows):
        with adios2.FileReader(os.path.join(folder, f"m{r['member']:05d}.bp")) as f:
            x[k] = np.asarray(f.read("Y", step_selection=[0, a.steps])).reshape(a.steps, a.n, a.n)
    ref = {"mean": x.mean(0), "variance": x.var(0, ddof=1), "min": x.min(0), "max": x.max(0),
           "p_exceed_5": (x > 5.0).mean(0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref["skewness"] = scipy.stats.skew(x, axis=0)
        ref["kurtosis"] = scipy.stats.kurtosis(x, axis=0)
    roles = {(int(r["group"]), r["role"]): k for k, r in enumerate(rows)}
    groups = sorted({int(r["group"]) for r in rows})

    def corr(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = u - u.mean(0), v - v.mean(0)
        return (du * dv).sum(0) / np.sqrt((du * du).sum(0) * (dv * dv).sum(0))

    ya = x[[roles[(g, "A")] for g in groups]]
    yb = x[[roles[(g, "B")] for g in groups]]
    for i in (1, 2, 3):
        yc = x[[roles[(g, f"C{i}")] for g in groups]]
        ref[f"sobol_first_x{i}"] = corr(yb, yc)
        ref[f"sobol_total_x{i}"] = 1 - corr(ya, yc)
    return ref, t_write, time.monotonic() - t0, _du(folder)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 members, 32^2, 5 steps, one failure")
    p.add_argument("--groups", type=int, default=40, help="pick-freeze groups (members = 5 x groups)")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--ranks", type=int, default=1, help="pool ranks")
    p.add_argument("--concurrent", type=int, default=10, help="members at once (K)")
    p.add_argument("--parallel", type=int, default=4, help="offline members at once")
    p.add_argument("--keep", help="run in this folder and keep it")
    p.add_argument("--reuse-online", action="store_true",
                   help="with --keep: take the online run already in the folder (re-run only the offline side)")
    a = p.parse_args(argv)
    if a.quick:
        a.groups, a.n, a.steps = 4, 32, 5
    from intransit.service import ensemble_config
    from intransit.service.ensemble_launch import run
    from intransit.service.ensemble_plan import read_table
    from intransit.service.products import read_product
    from ishigami_member import analytic_indices, field

    folder = a.keep or tempfile.mkdtemp(prefix="intransit_ens_bench_")
    os.makedirs(folder, exist_ok=True)
    faults = [2] if a.quick or a.groups < 3 else [2, 13]
    cfg = ensemble_config.load(_config(folder, a, faults))
    t0 = time.monotonic()
    if a.reuse_online:
        with open(os.path.join(cfg.workdir, "ensemble_summary.json")) as fh:
            summary = json.load(fh)
        t_online = summary["launcher_wall_s"]
    else:
        summary = run(cfg, log_level="warning")
        t_online = time.monotonic() - t0
    rows = read_table(cfg.workdir)
    names = list(EXACT) + ["skewness", "kurtosis"] + [f"sobol_{k}_x{i}" for k in ("first", "total") for i in (1, 2, 3)]
    got = {n: np.stack([read_product(cfg.product_folder(), f"ensemble/{n}", step=t) for t in range(a.steps)])
           for n in names + [f"sobol_{k}_x{i}_{e}" for k in ("first", "total") for i in (1, 2, 3) for e in ("lo", "hi")]}
    ref, t_write, t_compute, bytes_offline = _offline(cfg, rows, os.path.join(folder, "offline"), a)
    resolved = ref["variance"] > 1e-12 * ref["variance"].max()
    diffs = {n: float(np.nanmax(np.abs(got[n] - ref[n]) if n in EXACT else np.abs(got[n] - ref[n])[resolved]))
             for n in names}
    first, total = analytic_indices(a.n)
    inside = []
    for k, truth in (("first", first), ("total", total)):
        for i in (1, 2, 3):
            lo, hi = got[f"sobol_{k}_x{i}_lo"][-1], got[f"sobol_{k}_x{i}_hi"][-1]
            inside.append(((lo <= truth[i - 1]) & (truth[i - 1] <= hi)).ravel())
    inside = np.concatenate(inside)
    t1 = time.perf_counter()
    for step in range(a.steps):
        field(0.1, 0.2, 0.3, a.n, step)
    member_step_s = (time.perf_counter() - t1) / a.steps
    bytes_products = _du(cfg.product_folder())
    bytes_ckpt = summary.get("checkpoint_bytes_at_end", 0)  # removed by the pool once the products are written
    trace = summary.get("rss_trace_rank0", [])
    max_diff = max(diffs.values())
    out = {
        "members": len(rows), "groups": a.groups, "grid": [a.n, a.n], "steps": a.steps, "pool_ranks": a.ranks,
        "members_applied": summary["members_applied"], "members_started": summary["members_started"],
        "members_per_minute": round(summary["members_started"] / t_online * 60, 2),
        "analytics_s_per_member_step": summary["ingest_s_per_member_step"],
        "member_step_s": member_step_s,
        "analytics_per_member_step_ratio": summary["ingest_s_per_member_step"] / member_step_s,
        "rss_mb_start": trace[0][1] if trace else summary["rss_mb_start"], "rss_mb_end": summary["rss_mb_end"],
        "rss_trace_members_mb": trace[:: max(1, len(trace) // 10)] + trace[-1:],
        "bytes_written": bytes_products, "bytes_checkpoint_peak": bytes_ckpt,
        "bytes_offline": bytes_offline, "bytes_ratio": bytes_products / bytes_offline,
        "bytes_ratio_with_checkpoint": (bytes_products + bytes_ckpt) / bytes_offline,
        "wall_online_s": round(t_online, 1), "wall_offline_write_s": round(t_write, 1),
        "wall_offline_compute_s": round(t_compute, 2), "wall_offline_s": round(t_write + t_compute, 1),
        "max_abs_diff_vs_offline": max_diff, "max_abs_diff_by_statistic": diffs,
        "sobol_within_ci": float(inside.mean()), "sobol_indices_checked": int(inside.size),
        "members_failed_injected": len(faults), "members_failed_detected": summary["members_failed"],
        "group_retries": summary["group_retries"], "result_changed_by_faults": bool(max_diff > 1e-10),
        "folder": folder,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
