#!/usr/bin/env python3
"""Ensemble member with known Sobol indices: the Ishigami function written as a field, through ADIOS2.

    Y(i, j) = sin x1 + a_ij sin^2 x2 + b_ij x3^4 sin x1,   x1, x2, x3 ~ U(-pi, pi)

with a and b varying over the (n, n) field (a from 5 to 9 along axis 1, b
from 0.05 to 0.15 along axis 0), so every point has its own analytic
first-order and total indices (``analytic_indices``).  Each output step
multiplies Y by (1 + step / 10): the indices do not depend on the step, the
moments do.  Used by benchmarks/ensemble.py to check the pool's Sobol
indices and their confidence intervals; like heat_member.py it takes its
parameters from its command line, writes through the XML's engine and
never imports intransit.  ``--fail-at-step K``: exit 3 after writing step K.
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def coefficients(n: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.broadcast_to(np.linspace(5.0, 9.0, n)[None, :], (n, n))
    b = np.broadcast_to(np.linspace(0.05, 0.15, n)[:, None], (n, n))
    return a, b


def field(x1: float, x2: float, x3: float, n: int, step: int) -> np.ndarray:
    a, b = coefficients(n)
    return (1 + step / 10) * (np.sin(x1) + a * np.sin(x2) ** 2 + b * x3**4 * np.sin(x1))


def analytic_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First-order and total indices, each (3, n, n)."""
    a, b = coefficients(n)
    pi = np.pi
    v1 = 0.5 * (1 + b * pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = 8 * b**2 * pi**8 / 225
    v = v1 + v2 + v13
    return np.stack([v1 / v, v2 / v, 0 * v]), np.stack([(v1 + v13) / v, v2 / v, v13 / v])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stream", required=True)
    p.add_argument("--xml", required=True)
    p.add_argument("--io", default="SimulationOutput")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--x1", type=float, required=True)
    p.add_argument("--x2", type=float, required=True)
    p.add_argument("--x3", type=float, required=True)
    p.add_argument("--fail-at-step", type=int, default=-1)
    a = p.parse_args(argv)
    import adios2
    import adios2.bindings as ab

    io = adios2.Adios(a.xml).declare_io(a.io)
    var = io.define_variable("Y", np.zeros((a.n, a.n)), [a.n, a.n], [0, 0], [a.n, a.n])
    engine = io.open(a.stream, ab.Mode.Write)
    for step in range(a.steps):
        engine.begin_step()
        engine.put(var, np.ascontiguousarray(field(a.x1, a.x2, a.x3, a.n, step)), ab.Mode.Sync)
        engine.end_step()
        if step == a.fail_at_step:
            os._exit(3)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
