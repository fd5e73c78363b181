#!/usr/bin/env python3
"""Reference simulation made unstable on purpose: Hasegawa-Wakatani (``hw2d``) through ADIOS2.

It stands for the user's unmodified code: it never imports ``intransit``
(except, with ``--steering``, the steering hooks a code opts into) and opens
its ADIOS2 IO *by name* from an XML file (``--xml``/``--io``), so a BP5 file or
a live SST stream is an XML change only.

Physics: ``hw2d`` HW model on an N x N periodic grid (k0 = 0.15, c1 = 1,
hyper-viscosity order 3, ``nu = 5e-3 (64/N)^6``, RK4), started from hw2d's
Fourier noise (amplitude 4) and a 150-step warm-up, one RK4 step per output
step.  Ground truth events, each at a known output step:

* ``--unstable-step S``: the time step goes from ``--dt`` (0.025, stable) to
  ``--unstable-dt`` (0.075) *before* RK4 step S.  The adiabatic coupling of the
  largest-scale modes, rate ``c1 (1 + 1/k0^2)`` ~ 45, leaves RK4's stability
  interval at dt ~ 0.061: the k = k0 modes grow ~2.4x per step until the field
  blows up (``|n| > 1e6`` or NaN) some 20-60 steps later.
* ``--change-step C``: a physics parameter (``--change-param``, default ``c1``)
  is set to ``--change-value`` before step C; the run stays stable.

The simulation stops writing at the blow-up step (that step is written: the
analytics see the NaN/huge field), when steered to stop, or after ``--steps``.

Ground truth (``--truth PATH``, JSON, rewritten at the end): ``onset_step``
(S or null), ``blowup_step`` (first output step with |n| > 1e6 or a NaN, or
null), ``change_step``/``change_param``/``change_value``, ``steps_written``,
``last_step``, ``stopped_by_steering`` (the step after which a ``stop`` was
applied, or null), ``max_abs_density`` (of the last written step), the grid,
seed and dt values.

ADIOS2 variables per step: ``density`` (global ``(N, N)`` float64, written as
``--blocks`` blocks), ``time`` (float64), ``sim_step`` (int64).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("hw_sim")

HERE = Path(__file__).resolve().parent
DEFAULT_XML = HERE / "adios2.xml"
BLOWUP_ABS = 1e6
K0, C1, ORDER = 0.15, 1.0, 3


class HWRun:
    """The HW state and its stepping; usable without ADIOS2 (benchmarks import it)."""

    def __init__(self, *, size: int, seed: int, dt: float = 0.025, nu: float | None = None,
                 warmup: int = 150, init_scale: float = 4.0, c1: float = C1) -> None:
        from hw2d.initializations.fourier_noise import get_fft_noise
        from hw2d.model import HW
        from hw2d.utils.namespaces import Namespace

        self.size, self.dt = size, dt
        self.L = 2 * np.pi / K0
        self.dx = self.L / size
        self.nu = 5e-3 * (64.0 / size) ** 6 if nu is None else nu
        self.hw = HW(dx=self.dx, N=ORDER, c1=c1, nu=self.nu, k0=K0, TEST_CONSERVATION=False)
        state = np.random.get_state()
        np.random.seed(seed)  # get_fft_noise draws from the legacy global RNG
        try:
            noise = lambda: get_fft_noise(  # noqa: E731  (as in hw2d.run, 'fourier')
                resolution=[size, size], size=self.L, scale=1,
                min_wavelength=self.dx * 12, max_wavelength=self.dx * size * 100, factor=2)
            self.plasma = Namespace(density=noise() * init_scale, omega=noise() * init_scale, phi=None, age=0.0)
        finally:
            np.random.set_state(state)
        self.plasma["phi"] = self.hw.get_phi(self.plasma.omega, self.dx)
        for _ in range(warmup):
            self.step()

    def set_param(self, name: str, value: float) -> None:
        if name == "dt":
            self.dt = value
        elif name == "c1":
            self.hw.c1 = value
        elif name == "nu":
            self.hw.nu = (-1) ** (ORDER + 1) * value
        elif name == "kappa":
            self.hw.kappa_coeff = value
        else:
            raise ValueError(f"unknown parameter {name!r}: dt, c1, nu, kappa")

    def step(self) -> None:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            self.plasma = self.hw.rk4_step(self.plasma, dt=self.dt, dx=self.dx)

    @property
    def density(self) -> np.ndarray:
        return self.plasma.density

    def blown_up(self) -> bool:
        d = self.plasma.density
        with np.errstate(all="ignore"):
            m = float(np.max(np.abs(d)))
        return not math.isfinite(m) or m > BLOWUP_ABS


class Schedule:
    """Which parameter changes happen before which output step."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.events: dict[int, list[tuple[str, float]]] = {}
        if a.unstable_step is not None:
            self.events.setdefault(a.unstable_step, []).append(("dt", a.unstable_dt))
        if a.change_step is not None:
            self.events.setdefault(a.change_step, []).append((a.change_param, a.change_value))

    def apply(self, run: HWRun, step: int) -> None:
        for name, value in self.events.get(step, []):
            run.set_param(name, value)
            log.info("step %d: %s set to %g", step, name, value)


def factor_blocks(n: int) -> tuple[int, int]:
    px = int(math.isqrt(n))
    while n % px:
        px -= 1
    return n // px, px


def split(n: int, parts: int) -> list[tuple[int, int]]:
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        count = base + (1 if i < extra else 0)
        out.append((start, count))
        start += count
    return out


def blocks_for(n: int, nblocks: int) -> list[tuple[list[int], list[int]]]:
    py, px = factor_blocks(nblocks)
    return [([y0, x0], [cy, cx]) for (y0, cy) in split(n, py) for (x0, cx) in split(n, px)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hw_sim.py", description=__doc__.split("\n")[0])
    p.add_argument("--xml", default=str(DEFAULT_XML))
    p.add_argument("--io", default="SimulationOutput")
    p.add_argument("--stream", default="hw.bp")
    p.add_argument("--size", type=int, default=64, help="grid N x N, 32..1024 (default %(default)s)")
    p.add_argument("--blocks", type=int, default=4, help="blocks per step (default %(default)s)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dt", type=float, default=0.025)
    p.add_argument("--unstable-step", type=int, default=None, metavar="S",
                   help="raise the time step to --unstable-dt before this output step")
    p.add_argument("--unstable-dt", type=float, default=0.075)
    p.add_argument("--change-step", type=int, default=None, metavar="C",
                   help="set --change-param to --change-value before this output step")
    p.add_argument("--change-param", default="c1", choices=("c1", "nu", "kappa", "dt"))
    p.add_argument("--change-value", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--truth", default=None, help="ground truth JSON")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep per step")
    p.add_argument("--steering", default=None, metavar="STREAM")
    p.add_argument("--steering-xml", default=None)
    p.add_argument("--steering-wait", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not 32 <= a.size <= 1024:
        parser.error(f"--size {a.size} out of range 32..1024")
    if a.blocks < 1 or any(c < 1 for c in factor_blocks(a.blocks)) or factor_blocks(a.blocks)[0] > a.size:
        parser.error(f"--blocks {a.blocks} does not fit a {a.size}^2 grid")
    if a.steps < 1:
        parser.error("--steps must be >= 1")
    if not os.path.isfile(a.xml):
        parser.error(f"--xml {a.xml}: no such file")
    ios = [io.get("name", "") for io in ET.parse(a.xml).getroot().iter("io")]
    if a.io not in ios:
        parser.error(f"--io {a.io!r} is not defined in {a.xml}; it defines: {', '.join(ios) or 'no IO'}")
    return a


def make_steering(a: argparse.Namespace, run: HWRun, flags: dict[str, Any]):
    from intransit.adapters.steering import SteeringClient  # noqa: PLC0415 (opt-in)

    client = SteeringClient(a.steering, xml=a.steering_xml, poll_timeout_s=0.05)
    client.on("stop", lambda cmd: flags.__setitem__("steered", cmd))
    client.on("checkpoint", lambda cmd: flags.__setitem__("checkpoint", cmd))
    client.declare_parameter("dt", float, lambda _n, v: run.set_param("dt", v), low=1e-4, high=0.1)
    return client


def write_checkpoint(a: argparse.Namespace, run: HWRun, step: int) -> str:
    """The HW state as .npz (enough to restart the physics)."""
    folder = a.checkpoint_dir or os.path.dirname(os.path.abspath(a.stream))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"hw_checkpoint_{step:06d}.npz")
    np.savez(path, step=step, dt=run.dt, density=run.plasma.density, omega=run.plasma.omega,
             phi=run.plasma.phi, age=run.plasma.age)
    return path


def run(a: argparse.Namespace) -> int:
    import adios2
    import adios2.bindings as ab

    truth: dict[str, Any] = {
        "size": a.size, "blocks": a.blocks, "seed": a.seed, "dt": a.dt,
        "onset_step": a.unstable_step, "unstable_dt": a.unstable_dt if a.unstable_step is not None else None,
        "change_step": a.change_step, "change_param": a.change_param if a.change_step is not None else None,
        "change_value": a.change_value if a.change_step is not None else None,
        "blowup_step": None, "steps_written": 0, "last_step": None, "stopped_by_steering": None,
        "checkpoints": [], "max_abs_density": None,
    }

    def save_truth() -> None:
        if a.truth:
            tmp = a.truth + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(truth, fh, indent=1)
            os.replace(tmp, a.truth)

    flags: dict[str, Any] = {"signum": 0}

    def on_signal(signum, _frame) -> None:
        flags["signum"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    t0 = time.perf_counter()
    hw = HWRun(size=a.size, seed=a.seed, dt=a.dt, warmup=a.warmup)
    log.info("HW warm-up %d steps at %d^2 in %.2f s", a.warmup, a.size, time.perf_counter() - t0)
    schedule = Schedule(a)
    blocks = blocks_for(a.size, a.blocks)

    adios = adios2.Adios(a.xml)
    io = adios.declare_io(a.io)
    contact = a.stream + ".sst"
    if io.engine_type().lower() == "sst" and os.path.exists(contact):
        log.error("%s exists: another writer runs on this stream, or a dead one left it", contact)
        return 2
    v_density = io.define_variable("density", np.zeros((1, 1)), [a.size, a.size], blocks[0][0], blocks[0][1])
    v_time = io.define_variable("time", np.array(0.0))
    v_step = io.define_variable("sim_step", np.array(0, dtype=np.int64))
    is_sst = io.engine_type().lower() == "sst"
    if is_sst:
        try:  # an earlier run's end-of-stream report must not count for this one
            os.remove(a.stream + ".end.json")
        except FileNotFoundError:
            pass
    engine = io.open(a.stream, ab.Mode.Write)
    steering = make_steering(a, hw, flags) if a.steering else None
    save_truth()
    t_start = time.perf_counter()
    try:
        for step in range(a.steps):
            if flags["signum"]:
                break
            schedule.apply(hw, step)
            if step:
                hw.step()
            field = hw.density
            engine.begin_step()
            for start, count in blocks:
                (y0, x0), (cy, cx) = start, count
                v_density.set_selection([start, count])
                engine.put(v_density, np.ascontiguousarray(field[y0:y0 + cy, x0:x0 + cx], dtype=np.float64), ab.Mode.Sync)
            engine.put(v_time, np.array(float(hw.plasma.age)), ab.Mode.Sync)
            engine.put(v_step, np.array(step, dtype=np.int64), ab.Mode.Sync)
            engine.end_step()
            truth["steps_written"] += 1
            truth["last_step"] = step
            with np.errstate(all="ignore"):
                truth["max_abs_density"] = float(np.nanmax(np.abs(field))) if np.isfinite(field).any() else None
            if hw.blown_up():
                truth["blowup_step"] = step
                log.warning("blew up at step %d (|n| > %g or NaN)", step, BLOWUP_ABS)
                break
            if steering is not None:
                steering.poll(step, wait_s=a.steering_wait)
                if flags.get("checkpoint"):
                    cmd = flags.pop("checkpoint")
                    path = write_checkpoint(a, hw, step)
                    truth["checkpoints"].append({"step": step, "path": path, "rule": cmd.rule})
                    log.warning("checkpoint written after step %d to %s (rule %r)", step, path, cmd.rule)
                if flags.get("steered"):
                    cmd = flags["steered"]
                    truth["stopped_by_steering"] = step
                    log.warning("stopped by steering after step %d (seq %d answering step %d, rule %r)",
                                step, cmd.seq, cmd.answers_step, cmd.rule)
                    break
            if a.sleep:
                time.sleep(a.sleep)
    finally:
        if steering is not None:
            steering.close()
        if is_sst:  # how many steps were published: the analytics count a keep-pace tail exactly
            tmp = f"{a.stream}.end.json.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                json.dump({"format": "intransit-end-of-stream/1", "stream": os.path.basename(a.stream),
                           "steps_written": truth["steps_written"], "time": time.time()}, fh)
            os.replace(tmp, a.stream + ".end.json")
        engine.close()
        save_truth()
    elapsed = time.perf_counter() - t_start
    log.warning("wrote %d steps (%d^2, %d blocks) in %.2f s; last step %s, blow-up step %s",
                truth["steps_written"], a.size, a.blocks, elapsed, truth["last_step"], truth["blowup_step"])
    return 128 + flags["signum"] if flags["signum"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO,
                        format="hw_sim: %(message)s", stream=sys.stderr)
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
