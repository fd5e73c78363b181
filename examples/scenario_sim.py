#!/usr/bin/env python3
"""A simulation the pipeline was not built on: curving anisotropic blobs over correlated noise, uneven blocks.

It stands for a user's code that already writes with ADIOS2: it opens its
IO by name from an XML file (``--xml``; e.g. ``xml_configs/simulation_lossless.xml``
for SST, ``xml_configs/simulation_bp5.xml`` for a BP5 file), never imports
``intransit``, and shares no code with ``intransit.analyzers``.

Field, per output step, shape ``(ny, nx)``, both axes periodic::

    density = noise + sum_k blob_k

* noise: white Gaussian noise smoothed with a Gaussian of ``--noise-corr``
  cells (default 2; ``scipy.ndimage.gaussian_filter``, wrap), renormalised to
  standard deviation 1 exactly (divided by the filter's own white-noise gain,
  sqrt(sum of squared kernel weights)), new every step.  Its maxima are
  blob-sized: a detector that thresholds single cells in units of the field's
  standard deviation finds many of them.
* blobs: ``--blobs`` anisotropic Gaussians ``peak * exp(-u^2/(2 a^2) -
  v^2/(2 b^2))`` in a frame rotated by the blob's orientation; sigmas ``a``,
  ``b`` drawn in 1-4 cells (so the blobs are ~2-8 cells across), ``b <= a``,
  peak drawn in ``--peak`` (default 4-8 noise standard deviations).  Each moves at constant speed
  (0.5-1.5 cells per step) along a curved path: its heading turns at a
  constant rate of 0.02-0.06 rad per step (either sense), so it drifts along
  arcs of 10-75 cells radius; its orientation rotates at 0.02-0.08 rad per
  step.  Start positions are at least 12 cells apart (minimum image); paths
  may still come close later.  Every blob lives for the whole run.

Decomposition: ``--widths`` (default 0.2,0.45,0.35 of ``nx``) cuts the
columns into uneven blocks, all Put by this one writer process (ADIOS2 lets
one writer Put several blocks of a global array per step).

ADIOS2 variables per step: ``density`` (global ``(ny, nx)`` float64, one
block per width), ``sim_step`` (int64).

Ground truth (``--truth PATH``, JSON), from the blob parameters::

    {"shape": [ny, nx], "periodic": [true, true],
     "blobs": [{"id": .., "sigma_major": .., "sigma_minor": .., "peak": ..}, ...],
     "frames": [{"step": s, "centres": [[id, c0, c1], ...]}, ...]}

with ``c0`` the row and ``c1`` the column of the blob's centre in cells, in
[0, ny) and [0, nx) (cell i has coordinate i).
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
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from blob_sim import Blocking, Supervisor, xml_io_names  # noqa: E402  (the writer's watchdog)

log = logging.getLogger("scenario_sim")


class Scenario:
    """The field and its truth, step by step (no ADIOS2 here: testable on its own)."""

    def __init__(self, ny: int, nx: int, n_blobs: int, seed: int, noise_corr: float = 2.0,
                 peak: tuple[float, float] = (4.0, 8.0)) -> None:
        self.ny, self.nx, self.noise_corr = ny, nx, float(noise_corr)
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        pos: list[np.ndarray] = []
        tries = 0
        while len(pos) < n_blobs:
            p = rng.uniform(0, (ny, nx))
            if all(self._dist(p, q) >= 12.0 for q in pos):
                pos.append(p)
            tries += 1
            if tries > 10000:
                raise ValueError(f"--blobs {n_blobs} do not fit 12 cells apart in {ny}x{nx}")
        self.n = n_blobs
        self.pos = np.array(pos).reshape(-1, 2)
        self.sig_a = rng.uniform(1.0, 4.0, n_blobs)
        self.sig_b = np.minimum(self.sig_a, rng.uniform(1.0, 4.0, n_blobs))
        self.peak = rng.uniform(peak[0], peak[1], n_blobs)
        self.speed = rng.uniform(0.5, 1.5, n_blobs)
        self.heading = rng.uniform(0, 2 * np.pi, n_blobs)
        self.turn = rng.uniform(0.02, 0.06, n_blobs) * rng.choice([-1.0, 1.0], n_blobs)
        self.orient = rng.uniform(0, np.pi, n_blobs)
        self.spin = rng.uniform(0.02, 0.08, n_blobs) * rng.choice([-1.0, 1.0], n_blobs)
        if self.noise_corr > 0:
            delta = np.zeros((8 * int(math.ceil(noise_corr)) + 1,) * 2)
            delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1.0
            self.noise_gain = float(np.sqrt((ndimage.gaussian_filter(delta, noise_corr, mode="wrap") ** 2).sum()))
        else:
            self.noise_gain = 1.0
        self.yy, self.xx = np.mgrid[0:ny, 0:nx].astype(np.float64)

    def _dist(self, a: np.ndarray, b: np.ndarray) -> float:
        d = np.asarray(a) - np.asarray(b)
        d = (d + np.array([self.ny, self.nx]) / 2) % np.array([self.ny, self.nx]) - np.array([self.ny, self.nx]) / 2
        return float(np.hypot(*d))

    def advance(self) -> None:
        """One step: move along the heading, turn, rotate."""
        self.pos[:, 0] = (self.pos[:, 0] + self.speed * np.sin(self.heading)) % self.ny
        self.pos[:, 1] = (self.pos[:, 1] + self.speed * np.cos(self.heading)) % self.nx
        self.heading += self.turn
        self.orient += self.spin

    def noise(self) -> np.ndarray:
        white = self.rng.standard_normal((self.ny, self.nx))
        if self.noise_corr <= 0:
            return white
        return ndimage.gaussian_filter(white, self.noise_corr, mode="wrap") / self.noise_gain

    def render(self) -> tuple[np.ndarray, list[list[float]]]:
        """The current field and the truth centres ``[[id, c0, c1], ...]``."""
        field = self.noise()
        for k in range(self.n):
            dy = (self.yy - self.pos[k, 0] + self.ny / 2) % self.ny - self.ny / 2
            dx = (self.xx - self.pos[k, 1] + self.nx / 2) % self.nx - self.nx / 2
            c, s = math.cos(self.orient[k]), math.sin(self.orient[k])
            u = c * dx + s * dy
            v = -s * dx + c * dy
            field += self.peak[k] * np.exp(-0.5 * ((u / self.sig_a[k]) ** 2 + (v / self.sig_b[k]) ** 2))
        centres = [[k, float(self.pos[k, 0]) % self.ny, float(self.pos[k, 1]) % self.nx] for k in range(self.n)]
        for row in centres:  # -1e-16 % n rounds to n
            row[1] = 0.0 if row[1] >= self.ny else row[1]
            row[2] = 0.0 if row[2] >= self.nx else row[2]
        return field, centres

    def blob_table(self) -> list[dict]:
        return [{"id": k, "sigma_major": float(self.sig_a[k]), "sigma_minor": float(self.sig_b[k]),
                 "peak": float(self.peak[k])} for k in range(self.n)]


def column_blocks(ny: int, nx: int, widths: Sequence[float]) -> list[tuple[list[int], list[int]]]:
    """([start_y, start_x], [count_y, count_x]) of column blocks with these fractions of ``nx``."""
    total = float(sum(widths))
    edges = [0]
    acc = 0.0
    for w in widths[:-1]:
        acc += w
        edges.append(int(round(acc / total * nx)))
    edges.append(nx)
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"--widths {list(widths)} give an empty block at nx={nx}")
    return [([0, a], [ny, b - a]) for a, b in zip(edges, edges[1:])]


def _widths(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions such as 0.2,0.45,0.35; got {text!r}")
    if not vals or any(not math.isfinite(v) or v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"widths must be positive numbers; got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenario_sim.py", description=__doc__.split("\n")[0])
    p.add_argument("--xml", required=True, help="ADIOS2 XML (e.g. xml_configs/simulation_lossless.xml)")
    p.add_argument("--io", default="SimulationOutput", help="IO name in the XML (default: %(default)s)")
    p.add_argument("--stream", required=True, help="stream name (SST: contact file NAME.sst) or BP5 path")
    p.add_argument("--ny", type=int, default=256)
    p.add_argument("--nx", type=int, default=256)
    p.add_argument("--widths", type=_widths, default=[0.2, 0.45, 0.35],
                   help="column block widths as fractions (default: 0.2,0.45,0.35)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--blobs", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak", type=_widths, default=[4.0, 8.0], metavar="LO,HI",
                   help="blob peaks drawn uniformly in LO..HI noise standard deviations (default: 4,8)")
    p.add_argument("--noise-corr", type=float, default=2.0, help="Gaussian smoothing of the noise, cells")
    p.add_argument("--truth", default=None, help="write the ground truth JSON here")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep per step")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="kill the writer (exit 137, contact file removed) if one ADIOS2 call blocks this long")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def run(a: argparse.Namespace, sup: Supervisor) -> int:
    import adios2
    import adios2.bindings as ab

    scen = Scenario(a.ny, a.nx, a.blobs, a.seed, a.noise_corr, (a.peak[0], a.peak[1]))
    blocks = column_blocks(a.ny, a.nx, a.widths)
    adios = adios2.Adios(a.xml)
    io = adios.declare_io(a.io)
    is_sst = io.engine_type().lower() == "sst"
    contact = a.stream + ".sst"
    if is_sst and os.path.exists(contact):
        log.error("%s exists: another writer runs on this stream, or one died and left it", contact)
        return 2
    stop = {"signum": 0}

    def on_signal(signum, _frame) -> None:
        stop["signum"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    blocking = Blocking(sup, a.timeout, on_signal)
    (s0, c0) = blocks[0]
    var = io.define_variable("density", np.zeros((1, 1)), [a.ny, a.nx], s0, c0)
    v_step = io.define_variable("sim_step", np.array(0, dtype=np.int64))
    if is_sst:
        sup.own(os.path.abspath(contact))
    with blocking(f"Open({a.stream!r})"):
        engine = io.open(a.stream, ab.Mode.Write)
    frames = []
    written = 0
    t0 = time.perf_counter()
    try:
        for step in range(a.steps):
            if stop["signum"]:
                break
            if step:
                scen.advance()
            field, centres = scen.render()
            with blocking(f"BeginStep (step {step})"):
                status = engine.begin_step()
            if status != ab.StepStatus.OK:
                log.error("BeginStep returned %s at step %d", status, step)
                break
            for start, count in blocks:
                var.set_selection([start, count])
                box = field[start[0]:start[0] + count[0], start[1]:start[1] + count[1]]
                engine.put(var, np.ascontiguousarray(box), ab.Mode.Sync)
            engine.put(v_step, np.array(step, dtype=np.int64), ab.Mode.Sync)
            with blocking(f"EndStep (step {step})"):
                engine.end_step()
            frames.append({"step": step, "centres": centres})
            written += 1
            if a.sleep:
                time.sleep(a.sleep)
    finally:
        with blocking("Close"):
            engine.close()
        sup.own(None)
        if a.truth:
            with open(a.truth, "w") as fh:
                json.dump({"shape": [a.ny, a.nx], "periodic": [True, True], "blobs": scen.blob_table(),
                           "blocks": blocks, "frames": frames}, fh)
    log.warning("wrote %d steps (%dx%d, %d blocks of widths %s) in %.2f s", written, a.ny, a.nx, len(blocks),
                [c[1] for _, c in blocks], time.perf_counter() - t0)
    return 128 + stop["signum"] if stop["signum"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not (16 <= a.ny <= 4096 and 16 <= a.nx <= 4096):
        parser.error(f"grid {a.ny}x{a.nx} out of range: each side 16..4096")
    if a.steps < 1 or a.blobs < 0:
        parser.error("--steps must be >= 1 and --blobs >= 0")
    if not os.path.isfile(a.xml):
        parser.error(f"--xml {a.xml}: no such file")
    if a.io not in xml_io_names(a.xml):
        parser.error(f"--io {a.io!r} is not defined in {a.xml}")
    if len(a.peak) != 2 or a.peak[0] > a.peak[1]:
        parser.error(f"--peak must be LO,HI with LO <= HI; got {a.peak}")
    try:
        column_blocks(a.ny, a.nx, a.widths)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO,
                        format="scenario_sim: %(message)s", stream=sys.stderr)
    sup = Supervisor()  # fork before ADIOS2 starts threads
    try:
        return run(a, sup)
    finally:
        sup.close()


if __name__ == "__main__":
    sys.exit(main())
