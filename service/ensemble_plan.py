"""Design of experiments: the member table of an ensemble (``intransit ensemble plan``).

Samples in the unit cube from ``scipy.stats.qmc`` (scrambled Sobol', Latin
hypercube) or a plain pseudo-random generator, then mapped through each
parameter's distribution (inverse CDF).  With ``sobol_indices`` each sample
is a pick-freeze group: a 2p-dimensional point gives A (first p coordinates)
and B (last p), and C_i is A with its i-th parameter from B; the group's
members are, in order, A, B, C_1..C_p (roles ``A``, ``B``, ``C<i>``),
which is the row order ``analyzers.ensemble.Sobol.add_group`` expects.
Without, every member is its own group (role ``M``).

The table is written as ``members.csv`` and ``members.json`` in the workdir;
``member`` ids are 0.. in group order, so a group's members are contiguous.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from typing import Any

import numpy as np
from scipy import stats
from scipy.stats import qmc

from intransit.service.ensemble_config import EnsembleConfig, Parameter


def unit_samples(design: str, n: int, d: int, seed: int) -> np.ndarray:
    """``n`` points in [0, 1)^d by ``design`` ("sobol", "lhs", "random")."""
    if design == "sobol":
        with warnings.catch_warnings():  # n not a power of 2: balance properties are weaker, still valid
            warnings.simplefilter("ignore", UserWarning)
            return qmc.Sobol(d=d, scramble=True, seed=seed).random(n)
    if design == "lhs":
        return qmc.LatinHypercube(d=d, seed=seed).random(n)
    if design == "random":
        return np.random.default_rng(seed).random((n, d))
    raise ValueError(f"unknown design {design!r}")


def to_parameter(p: Parameter, u: np.ndarray) -> np.ndarray:
    """Map unit samples to ``p``'s distribution by its inverse CDF."""
    u = np.clip(u, 1e-12, 1 - 1e-12)
    if p.distribution == "uniform":
        return p.low + u * (p.high - p.low)
    if p.distribution == "loguniform":
        return np.exp(np.log(p.low) + u * (np.log(p.high) - np.log(p.low)))
    if p.distribution == "normal":
        return stats.norm.ppf(u, loc=p.mean, scale=p.std)
    raise ValueError(f"unknown distribution {p.distribution!r}")


def plan(cfg: EnsembleConfig) -> list[dict[str, Any]]:
    """The member table: one row per member, ``member``, ``group``, ``role`` and one column per parameter."""
    p = len(cfg.parameters)
    names = [q.name for q in cfg.parameters]
    rows: list[dict[str, Any]] = []
    if cfg.sobol_indices:
        u = unit_samples(cfg.design, cfg.samples, 2 * p, cfg.seed)
        values = np.column_stack([to_parameter(q, u[:, i]) for i, q in enumerate(cfg.parameters)]
                                 + [to_parameter(q, u[:, p + i]) for i, q in enumerate(cfg.parameters)])
        for g in range(cfg.samples):
            a, b = values[g, :p], values[g, p:]
            design = [("A", a), ("B", b)]
            for i in range(p):
                c = a.copy()
                c[i] = b[i]
                design.append((f"C{i + 1}", c))
            for role, x in design:
                rows.append({"member": len(rows), "group": g, "role": role,
                             **{n: float(v) for n, v in zip(names, x)}})
    else:
        u = unit_samples(cfg.design, cfg.samples, p, cfg.seed)
        for g in range(cfg.samples):
            rows.append({"member": g, "group": g, "role": "M",
                         **{n: float(to_parameter(q, u[g:g + 1, i])[0]) for i, (n, q) in
                            enumerate(zip(names, cfg.parameters))}})
    return rows


def write_table(cfg: EnsembleConfig, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """``members.csv`` and ``members.json`` in the workdir; returns their paths."""
    os.makedirs(cfg.workdir, exist_ok=True)
    csv_path = os.path.join(cfg.workdir, "members.csv")
    json_path = os.path.join(cfg.workdir, "members.json")
    fields = ["member", "group", "role"] + [q.name for q in cfg.parameters]
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    with open(json_path, "w") as fh:
        json.dump({"design": cfg.design, "sobol_indices": cfg.sobol_indices, "group_size": cfg.group_size,
                   "parameters": fields[3:], "seed": cfg.seed, "members": rows}, fh, indent=1)
    return csv_path, json_path


def read_table(workdir: str) -> list[dict[str, Any]]:
    with open(os.path.join(workdir, "members.json")) as fh:
        return json.load(fh)["members"]
