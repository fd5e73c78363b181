"""Helpers of the ensemble tests and benchmark: ENSEMBLE.toml files and the offline reference statistics."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap

import numpy as np
import scipy.stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAT = os.path.join(ROOT, "examples", "heat_member.py")
PARAMS = {"nu": (0.002, 0.01), "vx": (0.5, 1.5), "vy": (-0.5, 0.5), "amp": (0.5, 1.5)}


def heat_module():
    spec = importlib.util.spec_from_file_location("heat_member", HEAT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def write_config(folder: str, *, name: str = "ens.toml", params: tuple[str, ...] = ("nu", "vx"), samples: int = 2,
                 sobol: bool = True, design: str = "sobol", n: int = 16, steps: int = 4, ranks: int = 1,
                 max_concurrent: int = 4, retries: int = 1, timeout_s: float = 90, stall_timeout_s: float = 20,
                 thresholds=(0.05,), quantiles=(0.5,), faults: str = "", checkpoint_every: int = 1,
                 extra_member_args: str = "") -> str:
    plist = "".join(f'\n[[parameters]]\nname = "{p}"\nlow = {PARAMS[p][0]}\nhigh = {PARAMS[p][1]}\n' for p in params)
    pargs = " ".join(f"--{p} {{param.{p}}}" for p in params)
    text = textwrap.dedent(f"""
        [ensemble]
        workdir = "run_{name[:-5]}"
        design = "{design}"
        samples = {samples}
        sobol_indices = {str(sobol).lower()}
        seed = 3
        """) + plist + textwrap.dedent(f"""
        [member]
        command = "{{python}} {HEAT} --stream {{stream}} --xml {{xml}} --steps {{steps}} --n {n} {pargs} {extra_member_args}"
        variable = "T"
        steps = {steps}
        timeout_s = {timeout_s}
        stall_timeout_s = {stall_timeout_s}

        [launch]
        max_concurrent = {max_concurrent}
        retries = {retries}
        pool_ranks = {ranks}

        [statistics]
        thresholds = {list(thresholds)}
        quantiles = {list(quantiles)}

        [output]
        checkpoint_every = {checkpoint_every}
        """) + textwrap.dedent(faults)
    path = os.path.join(folder, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def member_fields(workdir: str, params: tuple[str, ...], *, n: int, steps: int, extra: str = "") -> dict[int, np.ndarray]:
    """Every member's field at every step, computed here with the member's own physics: {member: (steps, n, n)}."""
    heat = heat_module()
    with open(os.path.join(workdir, "members.json")) as fh:
        rows = json.load(fh)["members"]
    out = {}
    for r in rows:
        argv = ["--stream", "x", "--xml", "x", "--n", str(n), "--steps", str(steps)]
        for p in params:
            argv += [f"--{p}", repr(float(r[p]))]
        out[int(r["member"])] = np.array(list(heat.fields(heat._args(argv + extra.split()))))
    return out


def offline(fields: dict[int, np.ndarray], rows: list[dict], groups: set[int], thresholds, p: int | None) -> dict:
    """The statistics over the stored members of ``groups``, offline (numpy/scipy), per step."""
    members = [r for r in rows if int(r["group"]) in groups]
    x = np.stack([fields[int(r["member"])] for r in members])  # (members, steps, n, n)
    ref = {"mean": x.mean(0), "variance": x.var(0, ddof=1), "skewness": scipy.stats.skew(x, axis=0),
           "kurtosis": scipy.stats.kurtosis(x, axis=0), "min": x.min(0), "max": x.max(0)}
    for t in thresholds:
        ref[f"p_exceed_{t:g}"] = (x > t).mean(0)
    if p:
        names = [k for k in rows[0] if k not in ("member", "group", "role")]
        by_group: dict[int, dict[str, np.ndarray]] = {}
        for r in members:
            by_group.setdefault(int(r["group"]), {})[r["role"]] = fields[int(r["member"])]
        g = sorted(by_group)
        ya = np.stack([by_group[k]["A"] for k in g])
        yb = np.stack([by_group[k]["B"] for k in g])

        def corr(u, v):
            du, dv = u - u.mean(0), v - v.mean(0)
            return (du * dv).sum(0) / np.sqrt((du * du).sum(0) * (dv * dv).sum(0))

        for i, name in enumerate(names):
            yc = np.stack([by_group[k][f"C{i + 1}"] for k in g])
            ref[f"sobol_first_{name}"] = corr(yb, yc)
            ref[f"sobol_total_{name}"] = 1 - corr(ya, yc)
    return ref


def read_stats(folder: str, names, steps: int) -> dict[str, np.ndarray]:
    from intransit.service.products import read_product

    return {name: np.stack([read_product(folder, f"ensemble/{name}", step=t) for t in range(steps)]) for name in names}


def python() -> str:
    return sys.executable
