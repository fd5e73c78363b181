#!/usr/bin/env python3
"""Ensemble member: 2D advection-diffusion of a heat blob with a source, writing through ADIOS2.

It stands for a user's unmodified code in an ensemble (docs/ensemble.md):
its uncertain parameters come from its command line, its output goes to the
ADIOS2 IO named in an XML (BP5 file or SST stream: an XML change only), and
it never imports ``intransit``.

    dT/dt = nu laplacian(T) - (vx, vy) . grad(T) + amp * s(x, y),   periodic unit square

T(0) is a Gaussian blob at (0.3, 0.3) (width 0.08), s a fixed Gaussian
source at (0.7, 0.6) (width 0.1).  Each output step advances the time by
``--dt``, exactly, in Fourier space (the linear operator's exponential), so
the field depends only on the parameters and the step, never on a time
step's stability.  Variables per step: ``T`` (float64, global (n, n),
``--blocks`` row bands), ``sim_step`` (int64).

Fault injection for the ensemble tests: ``--fail-at-step K`` exits with
status 3 right after writing step K, without closing (a crash); ``--stall-at-step
K`` stops writing after step K and sleeps (a hung member).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

log = logging.getLogger("heat_member")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stream", required=True, help="ADIOS2 stream or file name")
    p.add_argument("--xml", required=True, help="ADIOS2 XML (engine SST or BP5)")
    p.add_argument("--io", default="SimulationOutput", help="IO name in the XML")
    p.add_argument("--n", type=int, default=64, help="grid points per axis")
    p.add_argument("--steps", type=int, default=20, help="output steps")
    p.add_argument("--dt", type=float, default=0.02, help="time between output steps")
    p.add_argument("--nu", type=float, default=0.005, help="diffusivity")
    p.add_argument("--vx", type=float, default=1.0, help="advection velocity, x")
    p.add_argument("--vy", type=float, default=0.5, help="advection velocity, y")
    p.add_argument("--amp", type=float, default=1.0, help="source amplitude")
    p.add_argument("--blocks", type=int, default=1, help="row bands written as separate blocks")
    p.add_argument("--step-seconds", type=float, default=0.0, help="sleep per step (a slower code)")
    p.add_argument("--fail-at-step", type=int, default=-1, help="exit 3 after writing this step (fault test)")
    p.add_argument("--stall-at-step", type=int, default=-1, help="hang after writing this step (fault test)")
    return p.parse_args(argv)


def fields(a: argparse.Namespace):
    """Yield T at every output step (a generator: the physics without the I/O, also for offline checks)."""
    n = a.n
    x = np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="xy")  # axis 0 = y, axis 1 = x

    def gauss(cx: float, cy: float, w: float) -> np.ndarray:
        dx = (X - cx + 0.5) % 1.0 - 0.5
        dy = (Y - cy + 0.5) % 1.0 - 0.5
        return np.exp(-(dx * dx + dy * dy) / w**2)

    k = 2 * np.pi * np.fft.fftfreq(n, d=1.0 / n)
    KX, KY = np.meshgrid(k, k, indexing="xy")
    lam = -a.nu * (KX**2 + KY**2) - 1j * (a.vx * KX + a.vy * KY)
    growth = np.exp(lam * a.dt)
    with np.errstate(divide="ignore", invalid="ignore"):
        forcing = np.where(lam == 0, a.dt, (growth - 1) / lam)
    t_hat = np.fft.fft2(gauss(0.3, 0.3, 0.08))
    s_hat = a.amp * np.fft.fft2(gauss(0.7, 0.6, 0.1))
    for _ in range(a.steps):
        yield np.ascontiguousarray(np.fft.ifft2(t_hat).real)
        t_hat = t_hat * growth + s_hat * forcing


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s heat_member %(levelname)s %(message)s")
    a = _args(argv)
    import adios2
    import adios2.bindings as ab

    adios = adios2.Adios(a.xml)
    io = adios.declare_io(a.io)
    n, nb = a.n, max(1, min(a.blocks, a.n))
    edges = np.linspace(0, n, nb + 1).astype(int)
    v_t = io.define_variable("T", np.zeros((1, 1)), [n, n], [0, 0], [n, n])
    v_step = io.define_variable("sim_step", np.array(0, dtype=np.int64))
    log.info("opening %s %r: %d^2, %d steps, nu=%g vx=%g vy=%g amp=%g", io.engine_type(), a.stream, n, a.steps,
             a.nu, a.vx, a.vy, a.amp)
    engine = io.open(a.stream, ab.Mode.Write)
    for step, field in enumerate(fields(a)):
        if engine.begin_step() != ab.StepStatus.OK:
            log.error("BeginStep refused at step %d", step)
            return 1
        for y0, y1 in zip(edges[:-1], edges[1:]):
            v_t.set_selection([[int(y0), 0], [int(y1 - y0), n]])
            engine.put(v_t, np.ascontiguousarray(field[y0:y1]), ab.Mode.Sync)
        engine.put(v_step, np.array(step, dtype=np.int64), ab.Mode.Sync)
        engine.end_step()
        if step == a.fail_at_step:
            log.error("injected failure after step %d", step)
            sys.stdout.flush()
            os._exit(3)
        if step == a.stall_at_step:
            log.error("injected stall after step %d", step)
            while True:
                time.sleep(3600)
        if a.step_seconds > 0:
            time.sleep(a.step_seconds)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
