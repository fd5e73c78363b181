#!/usr/bin/env python3
"""Healthy and failing dynamics that none of our analyzers were tuned on (benchmarks/anomaly.py).

Independent of ``intransit``: plain numpy, no code shared with the analyzers,
so a detector cannot pass by having been written alongside its test data.
Every system is a periodic 2-D field on an N x N grid (64^2-128^2 keep many
seeds cheap), stepped by ``step()`` (several solver sub-steps per output
step), read as ``field`` (float64), with a ``fault`` applied at a chosen
output step and a ``blown_up()`` test (NaN/inf or ``|field| > 1e6``).

* ``GrayScott`` (reaction-diffusion, ``u`` published): spots that grow,
  replicate and reorganise for thousands of steps (healthy, non-stationary).
  Fault ``cfl``: the explicit time step is raised past the diffusion limit of
  ``u`` (``dt > 2 / (8 D_u)`` in grid units) so a checkerboard grows ~1.5-2.5x
  per output step.  ``regime``: (F, k) moved to another pattern (a healthy
  reorganisation: a change point, not an anomaly).
* ``AdvectionDiffusion`` (first-order upwind, rotating uniform wind, moving
  Gaussian sources, linear decay): fault ``cfl``: the advection step is
  raised until the Courant number leaves upwind's stability range.
* ``KuramotoSivashinsky`` (2-D, pseudo-spectral, exponential time
  differencing, 2/3 de-aliasing, mean removed): chaotic but bounded.  Fault
  ``unstable``: the fourth-order damping coefficient nu drops from 1 to
  0.45-0.6; the field grows for 50-150 steps, then runs away.
* ``nan`` fault (any system): a few NaN cells written into one block; the
  solver spreads them.
* ``MassLeak`` (conservative upwind advection-diffusion, no sources): fault
  ``leak``: a slow sink removes a tiny fraction of the mass every step (not a
  blow-up; ground truth for a conservation score).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BLOWUP = 1e6


def _lap(a: np.ndarray) -> np.ndarray:
    return (np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) - 4.0 * a


class System:
    """Common interface: ``field``, ``step()``, ``fault(kind)``, ``blown_up()``."""

    name = "system"
    faults: tuple[str, ...] = ("nan",)

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.rng = np.random.default_rng(seed)
        self.t = 0

    @property
    def field(self) -> np.ndarray:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def fault(self, kind: str) -> None:
        if kind == "nan":
            self._inject_nan()
        else:
            raise ValueError(f"{self.name}: unknown fault {kind!r}; known: {', '.join(self.faults + ('nan',))}")

    def _inject_nan(self) -> None:
        f = self._state_field()
        n = self.size
        y, x = self.rng.integers(0, n - 3, 2)
        f[y:y + 2, x:x + 2] = np.nan

    def _state_field(self) -> np.ndarray:
        return self.field

    def blown_up(self) -> bool:
        f = self.field
        with np.errstate(invalid="ignore"):
            m = float(np.max(np.abs(f)))
        return not math.isfinite(m) or m > BLOWUP


class GrayScott(System):
    """Gray-Scott in grid units (dx = 1): u_t = Du lap u - u v^2 + F (1 - u), v_t = Dv lap v + u v^2 - (F + k) v."""

    name = "gray_scott"
    faults = ("cfl", "regime", "nan")

    def __init__(self, size: int = 64, seed: int = 0, substeps: int = 10, dt: float = 1.0) -> None:
        super().__init__(size, seed)
        r = self.rng
        self.Du, self.Dv = 0.21, 0.105  # Pearson (1993) in grid units
        self.F = 0.0367 + r.uniform(-0.0015, 0.0015)  # "mitosis": spots that replicate
        self.k = 0.0649 + r.uniform(-0.0007, 0.0007)
        self.dt, self.substeps = dt, substeps
        n = size
        self.u = np.ones((n, n))
        self.v = np.zeros((n, n))
        for _ in range(int(r.integers(2, 5))):
            cy, cx = r.integers(0, n, 2)
            s = int(r.integers(6, 10))
            ys, xs = np.arange(cy - s, cy + s) % n, np.arange(cx - s, cx + s) % n
            self.u[np.ix_(ys, xs)] = 0.5
            self.v[np.ix_(ys, xs)] = 0.25
        self.u += 0.02 * r.standard_normal((n, n))
        self.v += 0.02 * r.standard_normal((n, n))
        self.v = np.clip(self.v, 0, None)
        self.noise = float(r.uniform(0.0, 2e-4))  # small stochastic forcing, varied per seed

    @property
    def field(self) -> np.ndarray:
        return self.u

    def step(self) -> None:
        with np.errstate(all="ignore"):
            for _ in range(self.substeps):
                uvv = self.u * self.v * self.v
                du = self.Du * _lap(self.u) - uvv + self.F * (1.0 - self.u)
                dv = self.Dv * _lap(self.v) + uvv - (self.F + self.k) * self.v
                self.u = self.u + self.dt * du
                self.v = self.v + self.dt * dv
            if self.noise:
                self.u = self.u + self.noise * self.rng.standard_normal(self.u.shape)
        self.t += 1

    def fault(self, kind: str) -> None:
        if kind == "cfl":  # growth factor per sub-step at (pi, pi): 8 Du dt - 1
            self.dt = (2.0 + self.rng.uniform(0.02, 0.04)) / (8.0 * self.Du)
        elif kind == "regime":  # spots -> coral growth: a reorganisation, healthy
            self.F, self.k = 0.0545 + self.rng.uniform(-0.001, 0.001), 0.062 + self.rng.uniform(-0.0005, 0.0005)
        else:
            super().fault(kind)

    def blown_up(self) -> bool:
        with np.errstate(invalid="ignore"):
            m = max(float(np.max(np.abs(self.u))), float(np.max(np.abs(self.v))))
        return not math.isfinite(m) or m > BLOWUP


class AdvectionDiffusion(System):
    """c_t + w . grad c = D lap c + sources - lam c; first-order upwind, explicit, a uniform wind that swings."""

    name = "advection_diffusion"
    faults = ("cfl", "nan")

    def __init__(self, size: int = 64, seed: int = 0, substeps: int = 4, sources: bool = True,
                 decay: float = 0.01) -> None:
        super().__init__(size, seed)
        r = self.rng
        n = size
        self.D = 0.05
        self.speed = 0.35 * r.uniform(0.8, 1.2)  # cells per sub-step at dt_factor 1: Courant <= 0.5
        self.omega = r.uniform(0.003, 0.01)
        self.theta0 = r.uniform(0, 2 * np.pi)
        self.theta, self.phase = self.theta0, 0.0
        self.dt_factor = 1.0
        self.substeps = substeps
        self.lam = decay if sources else 0.0
        self.c = np.zeros((n, n))
        yy, xx = np.mgrid[0:n, 0:n].astype(float)
        self.yy, self.xx = yy, xx
        self.src = r.uniform(0, n, (int(r.integers(2, 5)), 2)) if sources else np.zeros((0, 2))
        self.src_v = r.uniform(-0.3, 0.3, self.src.shape)
        self.src_w = r.uniform(1.5, 4.0, len(self.src))
        self.src_a = r.uniform(0.02, 0.06, len(self.src))
        if not sources:  # a conserved blob field to advect
            for _ in range(4):
                cy, cx = r.uniform(0, n, 2)
                dy, dx = (yy - cy + n / 2) % n - n / 2, (xx - cx + n / 2) % n - n / 2
                self.c += r.uniform(0.5, 1.5) * np.exp(-(dy ** 2 + dx ** 2) / r.uniform(8, 40))
        self.noise = float(r.uniform(0.0, 1e-4)) if sources else 0.0

    @property
    def field(self) -> np.ndarray:
        return self.c

    def _source(self) -> np.ndarray:
        n = self.size
        s = np.zeros((n, n))
        for (cy, cx), w, a in zip(self.src, self.src_w, self.src_a):
            dy, dx = (self.yy - cy + n / 2) % n - n / 2, (self.xx - cx + n / 2) % n - n / 2
            s += a * np.exp(-(dy ** 2 + dx ** 2) / (2 * w * w))
        return s

    def step(self) -> None:
        src = self._source() if len(self.src) else None
        with np.errstate(all="ignore"):
            for _ in range(self.substeps):
                dtf = self.dt_factor
                wy, wx = self.speed * math.sin(self.theta), self.speed * math.cos(self.theta)
                c = self.c
                # conservative upwind fluxes (periodic): mass is exact up to rounding without sources/decay
                fx = np.where(wx > 0, wx * c, wx * np.roll(c, -1, 1))  # flux through the +x face of each cell
                fy = np.where(wy > 0, wy * c, wy * np.roll(c, -1, 0))
                div = (fx - np.roll(fx, 1, 1)) + (fy - np.roll(fy, 1, 0))
                new = c + dtf * (-div + self.D * _lap(c) - self.lam * c)
                if src is not None:
                    new += dtf * src
                self.c = new
                self.phase += self.omega  # the wind swings by +-0.25 rad around its mean direction
                self.theta = self.theta0 + 0.25 * math.sin(self.phase)
            if self.noise:
                self.c = self.c + self.noise * self.rng.standard_normal(self.c.shape)
        self.src = (self.src + self.src_v) % self.size
        self.t += 1

    def fault(self, kind: str) -> None:
        if kind == "cfl":  # grid-scale amplification per sub-step |1 - 2 (Cx + Cy) - 8 D dt| raised to 1.06-1.12
            courant = self.speed * (abs(math.cos(self.theta)) + abs(math.sin(self.theta)))
            self.dt_factor = (2.0 + self.rng.uniform(0.06, 0.12)) / (2.0 * courant + 8.0 * self.D)
        else:
            super().fault(kind)


class MassLeak(AdvectionDiffusion):
    """Conservative advection-diffusion (no sources, no decay); fault ``leak``: a slow sink."""

    name = "mass_leak"
    faults = ("leak", "nan")

    def __init__(self, size: int = 64, seed: int = 0, substeps: int = 4) -> None:
        super().__init__(size, seed, substeps, sources=False, decay=0.0)
        self.leak = 0.0
        self.sink = None

    def step(self) -> None:
        super().step()
        if self.leak:
            self.c = self.c - self.leak * self.sink * self.c

    def fault(self, kind: str) -> None:
        if kind == "leak":  # a patch (as a bad boundary would) losing ~1e-4 of the total mass per step
            n = self.size
            cy, cx = self.rng.uniform(0, n, 2)
            dy, dx = (self.yy - cy + n / 2) % n - n / 2, (self.xx - cx + n / 2) % n - n / 2
            self.sink = np.exp(-(dy ** 2 + dx ** 2) / 50.0)
            self.leak = self.rng.uniform(2e-4, 5e-4)
        else:
            super().fault(kind)


class KuramotoSivashinsky(System):
    """u_t = -lap u - nu lap^2 u - |grad u|^2 / 2 (mean removed), periodic, domain L = 20 pi."""

    name = "kuramoto_sivashinsky"
    faults = ("unstable", "nan")

    def __init__(self, size: int = 64, seed: int = 0, dt: float = 0.05, substeps: int = 1,
                 length: float = 20 * np.pi, spinup: int = 2000) -> None:
        super().__init__(size, seed)
        n = size
        k = 2 * np.pi * np.fft.fftfreq(n, d=length / n)
        self.kx, self.ky = np.meshgrid(k, k)
        self.k2 = self.kx ** 2 + self.ky ** 2
        kmax = np.abs(k).max()
        self.dealias = (np.abs(self.kx) < 2 / 3 * kmax) & (np.abs(self.ky) < 2 / 3 * kmax)
        self.dt, self.substeps = dt, substeps
        self.set_nu(1.0)
        self.uh = np.fft.fft2(0.1 * self.rng.standard_normal((n, n)))
        self.uh[0, 0] = 0.0
        for _ in range(spinup):
            self.step()
        self.t = 0

    def set_nu(self, nu: float) -> None:
        self.nu = nu
        L = self.k2 - nu * self.k2 ** 2
        self.E = np.exp(L * self.dt)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.E1 = np.where(np.abs(L) > 1e-12, (self.E - 1.0) / L, self.dt)

    @property
    def field(self) -> np.ndarray:
        return self._u

    def step(self) -> None:
        with np.errstate(all="ignore"):
            for _ in range(self.substeps):
                ux = np.real(np.fft.ifft2(1j * self.kx * self.uh))
                uy = np.real(np.fft.ifft2(1j * self.ky * self.uh))
                nl = -0.5 * np.fft.fft2(ux * ux + uy * uy) * self.dealias
                self.uh = self.E * self.uh + self.E1 * nl
                self.uh[0, 0] = 0.0
            self._u = np.real(np.fft.ifft2(self.uh))
        self.t += 1

    def fault(self, kind: str) -> None:
        if kind == "unstable":  # damping of the small scales halved: amplitudes and gradients grow over
            # 50-150 steps until the explicit nonlinear term runs away (|u| > 1e6)
            self.set_nu(self.rng.uniform(0.45, 0.6))
        elif kind == "nan":
            u = self._u.copy()
            n = self.size
            y, x = self.rng.integers(0, n - 3, 2)
            u[y:y + 2, x:x + 2] = np.nan
            self._u = u
            self.uh = np.fft.fft2(u)
        else:
            super().fault(kind)


SYSTEMS: dict[str, Any] = {c.name: c for c in (GrayScott, AdvectionDiffusion, KuramotoSivashinsky, MassLeak)}


def make(name: str, **kw: Any) -> System:
    """A system by name; an unknown name lists the known ones."""
    try:
        return SYSTEMS[name](**kw)
    except KeyError:
        raise KeyError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}") from None


def blocks_layout(size: int, layout: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Decompositions the benchmark cycles through: 0 one block, 1 a 2x2 grid, 2 an uneven 3x2 grid."""
    if layout == 0:
        cuts_y, cuts_x = [size], [size]
    elif layout == 1:
        cuts_y, cuts_x = [size // 2, size - size // 2], [size // 2, size - size // 2]
    else:
        a, b = size // 5, size // 2
        cuts_y, cuts_x = [a, b, size - a - b], [size // 3 + 1, size - size // 3 - 1]
    out, y = [], 0
    for cy in cuts_y:
        x = 0
        for cx in cuts_x:
            out.append(((y, x), (cy, cx)))
            x += cx
        y += cy
    return out
