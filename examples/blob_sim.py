#!/usr/bin/env python3
"""Reference simulation: blobs moving over drift-wave turbulence, through ADIOS2.

It stands for the user's unmodified code: it never imports ``intransit``
(except, with ``--steering``, the steering hooks a code opts into); it
opens its ADIOS2 IO *by name* from an XML file, so file output (BP5) versus a
live stream (SST) is an XML change only (``adios2.xml`` / ``adios2_sst.xml``).

Field, per output step, shape ``(ny, nx)``; axis 0 = y (periodic),
axis 1 = x (radial; blobs enter at x < 0 and leave at x >= nx)::

    density = turbulence + sum_k blob_k

* turbulence: Hasegawa-Wakatani (``hw2d``, k0=0.15, c1=1, N=3, RK4, dt=0.025)
  on a coarse periodic grid (``--coarse``, default 64), advanced
  ``--hw-substeps`` RK4 steps per output step, spectrally (Fourier)
  interpolated to ``(ny, nx)`` and scaled to mean 0 and standard deviation
  ``--turbulence`` exactly.  A fresh HW run needs thousands of steps to
  saturate; instead it starts from hw2d's Fourier noise at an amplitude near
  the saturated level (``--hw-init-scale`` 4) and runs a short warm-up
  (``--warmup`` 150 RK4 steps, about 0.5 s at 64^2) that removes the
  incoherent small scales and sets up the drift-wave n-phi coupling.
  Hyper-viscosity ``nu`` defaults to 5e-3 * (64/coarse)^6, which keeps
  nu*k_max^6*dt fixed and the run free of grid-scale noise and blow-up
  (checked: 30,000 RK4 steps at 64^2).
* blobs: ``blobmodel.Blob`` with the Gaussian shape,
  ``A * exp(-((x-x_k)/w)^2 - ((y-y_k)/w)^2) / pi`` (peak ``A/pi``), moving on
  straight lines at constant velocity; each is evaluated only on a local
  window (5 widths) around it.  Sparse regime: blobs travel in separate y
  lanes (lane height >= 6 widths) like a conveyor belt; a blob that leaves
  at x > nx + margin is replaced by a new one (new id) entering at
  x < -margin, so blobs never overlap heavily.

Ground truth (``--truth PATH``), from the blob parameters (not masks): CSV
with header ``step,blob_id,c0,c1,peak,width``, one row per step and blob whose
centre is inside the domain (0 <= c1 <= nx-1): c0 = row/y centre in cells in
[0, ny), c1 = column/x centre in cells (cell i has coordinate i), peak = the
blob's own peak value (A/pi, turbulence excluded), width = blobmodel width w
in cells (e^-1 radius; the Gaussian sigma is w/sqrt(2)).

ADIOS2 variables per step: ``density`` (global ``(ny, nx)``, ``--dtype``,
written as ``--blocks``/``--decomp`` blocks), ``time`` (float64, HW time),
``sim_step`` (int64, output step index).

Time units: blob velocities are in cells per output step; ``time`` advances
by ``hw_substeps * 0.025`` per output step.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import signal
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.fft

log = logging.getLogger("blob_sim")

HERE = Path(__file__).resolve().parent
DEFAULT_XML = HERE / "adios2.xml"

HW_DT = 0.025  # stable at 64^2 (FIELD_NOTES); 0.07-0.08 blows up
HW_K0 = 0.15
HW_C1 = 1.0
HW_N = 3


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _decomp(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected PYxPX such as 2x2, got {text!r}")
    try:
        py, px = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PYxPX such as 2x2, got {text!r}")
    if py < 1 or px < 1:
        raise argparse.ArgumentTypeError(f"block counts must be >= 1, got {text!r}")
    return py, px


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blob_sim.py",
        description="Reference 2D blob/turbulence simulation writing through ADIOS2.",
    )
    g = p.add_argument_group("ADIOS2")
    g.add_argument("--xml", default=str(DEFAULT_XML), help="ADIOS2 XML config (default: %(default)s)")
    g.add_argument("--io", default="SimulationOutput", help="IO name in the XML (default: %(default)s)")
    g.add_argument("--stream", default="blobs.bp",
                   help="name passed to engine Open: a BP5 directory, or for SST the "
                        "stream whose contact file is NAME.sst (default: %(default)s)")
    g.add_argument("--timeout", type=_nonneg_float, default=600.0,
                   help="kill the writer (exit status 137, SST contact file removed) if one "
                        "ADIOS2 call (Open, BeginStep, EndStep, Close) blocks longer than this "
                        "many seconds; 0 = wait forever (default: %(default)s)")
    g = p.add_argument_group("grid and decomposition")
    g.add_argument("--size", type=int, default=None, help="square grid N x N, 64..1024 (default 256)")
    g.add_argument("--ny", type=int, default=None, help="rows (y, periodic), 64..1024")
    g.add_argument("--nx", type=int, default=None, help="columns (x, radial), 64..1024")
    d = g.add_mutually_exclusive_group()
    d.add_argument("--blocks", type=_positive_int, default=None,
                   help="number of blocks per step (factored as near-square PYxPX, PY >= PX)")
    d.add_argument("--decomp", type=_decomp, default=None, help="explicit PYxPX block grid, e.g. 2x2")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    g = p.add_argument_group("run")
    g.add_argument("--steps", type=_positive_int, default=100, help="output steps (default: %(default)s)")
    g.add_argument("--seed", type=_nonneg_int, default=0)
    g.add_argument("--sleep", type=_nonneg_float, default=0.0, help="seconds to sleep per step (pacing)")
    g.add_argument("--truth", default=None, help="write ground truth CSV here")
    g.add_argument("--stop-file", default=None, metavar="PATH",
                   help="end cleanly (stream closed, timings written) once PATH exists; looked for every 10 steps")
    g.add_argument("--timing-csv", default=None, metavar="PATH",
                   help="write step,step_ms per step: wall time of the whole step-loop iteration (physics, "
                        "ADIOS2 Begin/Put/EndStep, truth rows, steering poll; not the --sleep pacing)")
    g = p.add_argument_group("physics")
    g.add_argument("--blobs", type=_nonneg_int, default=5, help="blobs alive at a time (default: %(default)s)")
    g.add_argument("--blob-peak", type=_nonneg_float, default=6.5,
                   help="mean blob peak value; each blob draws 0.8..1.2 x this (default: %(default)s)")
    g.add_argument("--blob-width", type=_nonneg_float, default=None,
                   help="mean blob width in cells (default: max(2.5, min(ny,nx)/50))")
    g.add_argument("--blob-speed", type=_nonneg_float, default=None,
                   help="mean radial speed, cells per step (default: nx/200)")
    g.add_argument("--turbulence", type=_nonneg_float, default=1.0,
                   help="standard deviation of the turbulent background; 0 = none (default: %(default)s)")
    g.add_argument("--coarse", type=int, default=64, help="HW grid points per side, 32..256 (default: %(default)s)")
    g.add_argument("--hw-substeps", type=_positive_int, default=2, help="HW RK4 steps per output step")
    g.add_argument("--warmup", type=_nonneg_int, default=150, help="HW RK4 warm-up steps before step 0")
    g.add_argument("--hw-init-scale", type=_nonneg_float, default=4.0, help="amplitude of the HW initial noise")
    g.add_argument("--nu", type=_nonneg_float, default=None, help="HW hyper-viscosity (default 5e-3*(64/coarse)^6)")
    g = p.add_argument_group("steering (optional; only then is intransit imported)")
    g.add_argument("--steering", default=None, metavar="STREAM",
                   help="poll this reverse stream once per step (intransit.adapters.steering)")
    g.add_argument("--steering-xml", default=None, help="ADIOS2 XML for the steering IO (default: BP5 file stream)")
    g.add_argument("--steering-wait", type=_nonneg_float, default=0.0, metavar="SECONDS",
                   help="wait at most this long per step for the answer to the step just written")
    g.add_argument("--steering-log", default=None, metavar="CSV",
                   help="write seq,answers_step,received_at_step,lag_ms per steering record (lag benchmark)")
    g.add_argument("--checkpoint-dir", default=None, help="where a 'checkpoint' command writes (default: beside the stream)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.size is not None and (a.ny is not None or a.nx is not None):
        parser.error("give either --size or --ny/--nx, not both")
    default = a.size if a.size is not None else 256
    a.ny = a.ny if a.ny is not None else default
    a.nx = a.nx if a.nx is not None else default
    for name in ("ny", "nx"):
        if not 64 <= getattr(a, name) <= 1024:
            parser.error(f"grid size {name}={getattr(a, name)} out of range: must be 64..1024")
    if not 32 <= a.coarse <= 256:
        parser.error(f"--coarse {a.coarse} out of range: must be 32..256")
    if a.decomp is None:
        a.decomp = factor_blocks(a.blocks or 1)
    py, px = a.decomp
    if py > a.ny or px > a.nx:
        parser.error(f"decomposition {py}x{px} has more blocks than cells along an axis of {a.ny}x{a.nx}")
    if py * px > 4096:
        parser.error(f"too many blocks: {py * px} (at most 4096)")
    if not os.path.isfile(a.xml):
        parser.error(f"--xml {a.xml}: no such file")
    try:
        ios = xml_io_names(a.xml)
    except ET.ParseError as exc:
        parser.error(f"--xml {a.xml}: not valid XML: {exc}")
    if a.io not in ios:
        parser.error(f"--io {a.io!r} is not defined in {a.xml}; it defines: {', '.join(ios) or 'no IO'}")
    a.blob_width = a.blob_width if a.blob_width is not None else max(2.5, min(a.ny, a.nx) / 50.0)
    if a.blob_width < 1.0:
        parser.error(f"--blob-width {a.blob_width} too small: at least 1 cell")
    a.blob_speed = a.blob_speed if a.blob_speed is not None else a.nx / 200.0
    try:
        plan_lanes(a.blobs, a.ny, a.nx, a.blob_width)
    except ValueError as exc:
        parser.error(str(exc))
    if a.nu is None:
        a.nu = 5e-3 * (64.0 / a.coarse) ** 6
    if a.truth is not None and os.path.isdir(a.truth):
        parser.error(f"--truth {a.truth} is a directory")
    return a


def xml_io_names(path: str) -> list[str]:
    root = ET.parse(path).getroot()
    return [io.get("name", "") for io in root.iter("io")]


# --------------------------------------------------------------------------
# decomposition
# --------------------------------------------------------------------------
def factor_blocks(n: int) -> tuple[int, int]:
    """Near-square factorisation n = py * px with py >= px."""
    px = int(math.isqrt(n))
    while n % px:
        px -= 1
    return n // px, px


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """(start, count) of ``parts`` contiguous chunks of ``n`` (first ones 1 larger)."""
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        count = base + (1 if i < extra else 0)
        out.append((start, count))
        start += count
    return out


def blocks_for(ny: int, nx: int, decomp: tuple[int, int]) -> list[tuple[list[int], list[int]]]:
    """Row-major list of ([start_y, start_x], [count_y, count_x])."""
    py, px = decomp
    return [([y0, x0], [cy, cx]) for (y0, cy) in split(ny, py) for (x0, cx) in split(nx, px)]


# --------------------------------------------------------------------------
# turbulence (hw2d on a coarse grid, spectrally interpolated)
# --------------------------------------------------------------------------
class Turbulence:
    def __init__(self, *, coarse: int, ny: int, nx: int, std: float, seed: int,
                 substeps: int, warmup: int, init_scale: float, nu: float) -> None:
        from hw2d.initializations.fourier_noise import get_fft_noise
        from hw2d.model import HW
        from hw2d.utils.namespaces import Namespace

        self.n, self.ny, self.nx, self.std, self.substeps = coarse, ny, nx, std, substeps
        self.dt = HW_DT  # a steering 'set dt' changes it
        self.L = 2 * np.pi / HW_K0
        self.dx = self.L / coarse
        self.hw = HW(dx=self.dx, N=HW_N, c1=HW_C1, nu=nu, k0=HW_K0, TEST_CONSERVATION=False)
        state = np.random.get_state()
        np.random.seed(seed)  # get_fft_noise draws from the legacy global RNG
        try:
            noise = lambda: get_fft_noise(  # noqa: E731  (as in hw2d.run, 'fourier')
                resolution=[coarse, coarse], size=self.L, scale=1,
                min_wavelength=self.dx * 12, max_wavelength=self.dx * coarse * 100, factor=2)
            self.plasma = Namespace(density=noise() * init_scale, omega=noise() * init_scale,
                                    phi=None, age=0.0)
        finally:
            np.random.set_state(state)
        self.plasma["phi"] = self.hw.get_phi(self.plasma.omega, self.dx)
        t0 = time.perf_counter()
        for _ in range(warmup):
            self._rk4()
        self.warmup_seconds = time.perf_counter() - t0
        # spectral interpolation bookkeeping: keep |k| below both Nyquists
        self.ky = (min(coarse, ny) - 1) // 2  # positive rows 1..ky and their negatives
        self.kx = (min(coarse, nx) - 1) // 2 + 1  # rfft columns 0..kx-1
        self.spec = np.zeros((ny, nx // 2 + 1), dtype=np.complex128)

    @property
    def time(self) -> float:
        return float(self.plasma.age)

    def _rk4(self) -> None:
        self.plasma = self.hw.rk4_step(self.plasma, dt=self.dt, dx=self.dx)
        if not np.isfinite(self.plasma.density).all():
            raise FloatingPointError(f"HW turbulence blew up at t={self.plasma.age}")

    def advance(self) -> None:
        for _ in range(self.substeps):
            self._rk4()

    def _truncated(self, coarse_spec: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros((shape[0], shape[1] // 2 + 1), dtype=np.complex128)
        ky, kx = self.ky, self.kx
        out[: ky + 1, :kx] = coarse_spec[: ky + 1, :kx]
        if ky:
            out[-ky:, :kx] = coarse_spec[-ky:, :kx]
        out[0, 0] = 0.0
        return out

    def sample(self) -> np.ndarray:
        """The current density on (ny, nx), mean 0, std ``self.std`` (float64)."""
        n = self.n
        cs = scipy.fft.rfft2(self.plasma.density)
        low = self._truncated(cs, (n, n))
        # Fourier interpolation keeps mean and variance (Parseval): measure on the coarse grid
        std = float(scipy.fft.irfft2(low, s=(n, n)).std())
        spec = self.spec
        spec[...] = 0.0
        ky, kx = self.ky, self.kx
        scale = (self.ny * self.nx) / (n * n) * (self.std / std if std > 0 else 0.0)
        spec[: ky + 1, :kx] = low[: ky + 1, :kx] * scale
        if ky:
            spec[-ky:, :kx] = low[-ky:, :kx] * scale
        return scipy.fft.irfft2(spec, s=(self.ny, self.nx), workers=-1)


# --------------------------------------------------------------------------
# blobs
# --------------------------------------------------------------------------
@dataclass
class Lane:
    y_center: float
    height: float
    v_x: float
    n_blobs: int


def plan_lanes(n_blobs: int, ny: int, nx: int, width: float) -> tuple[int, float, float]:
    """(lanes, lane height, conveyor length) for the sparse regime; ValueError if crowded."""
    w_max = 1.15 * width
    margin = math.ceil(4 * w_max)
    length = nx + 2 * margin
    if n_blobs == 0:
        return 0, float(ny), float(length)
    max_lanes = max(1, int(ny // (6 * w_max)))
    lanes = min(n_blobs, max_lanes)
    per_lane = math.ceil(n_blobs / lanes)
    if length / per_lane < 4 * w_max:
        cap = max_lanes * int(length // (4 * w_max))
        raise ValueError(f"--blobs {n_blobs} too many for a sparse {ny}x{nx} grid with width "
                         f"{width:.3g}: at most {cap}")
    return lanes, ny / lanes, float(length)


class BlobField:
    """Blobs on conveyor lanes; rendering on local windows; ground truth rows."""

    def __init__(self, *, ny: int, nx: int, n_blobs: int, peak: float, width: float,
                 speed: float, rng: np.random.Generator) -> None:
        from blobmodel import Blob

        self._Blob = Blob
        self.ny, self.nx, self.peak, self.width, self.rng = ny, nx, peak, width, rng
        n_lanes, lane_h, self.length = plan_lanes(n_blobs, ny, nx, width)
        self.margin = (self.length - nx) / 2
        y_off = rng.uniform(0, lane_h)
        self.lanes: list[Lane] = []
        for i in range(n_lanes):
            per = n_blobs // n_lanes + (1 if i < n_blobs % n_lanes else 0)
            self.lanes.append(Lane(y_center=(y_off + (i + 0.5) * lane_h) % ny, height=lane_h,
                                   v_x=speed * rng.uniform(0.7, 1.3), n_blobs=per))
        self.next_id = 0
        self.blobs: list[tuple[int, object]] = []  # (lane index, Blob)
        for li, lane in enumerate(self.lanes):
            spacing = self.length / lane.n_blobs
            phase = rng.uniform(0, spacing)
            for k in range(lane.n_blobs):
                x0 = -self.margin + phase + k * spacing
                self.blobs.append((li, self._new_blob(lane, x0, t0=0)))

    def _new_blob(self, lane: Lane, x0: float, t0: int):
        rng = self.rng
        w = max(2.5, self.width * rng.uniform(0.85, 1.15)) if self.width >= 2.5 else self.width
        peak = self.peak * rng.uniform(0.8, 1.2)
        crossing = self.length / lane.v_x if lane.v_x > 0 else np.inf
        # y drift over a whole crossing <= 0.15 lane height, start within +-0.1 lane height
        vy_max = min(0.15 * lane.v_x, 0.15 * lane.height / crossing) if np.isfinite(crossing) else 0.0
        blob = self._Blob(
            blob_id=self.next_id, amplitude=peak * np.pi, width_p=w, width_s=w,
            v_x=lane.v_x, v_y=rng.uniform(-vy_max, vy_max),
            pos_x0=x0, pos_y0=lane.y_center + rng.uniform(-0.1, 0.1) * lane.height,
            t_init=t0,
        )
        self.next_id += 1
        return blob

    def advance_to(self, step: int) -> None:
        """Replace blobs that left at x > nx + margin by new ones entering at x < -margin."""
        for i, (li, blob) in enumerate(self.blobs):
            x = blob._blob_trajectory_x(step)
            if x > self.nx + self.margin:
                self.blobs[i] = (li, self._new_blob(self.lanes[li], x - self.length, t0=step))

    def render(self, field: np.ndarray, step: int) -> list[tuple[int, int, float, float, float, float]]:
        """Add every blob to ``field`` (in place); return ground-truth rows."""
        ny, nx = self.ny, self.nx
        rows = []
        for _, blob in self.blobs:
            x = float(blob._blob_trajectory_x(step))
            y = float(blob._blob_trajectory_y(step))
            w = blob.width_p
            r = math.ceil(5 * w)
            c_lo, c_hi = max(0, math.floor(x) - r), min(nx, math.floor(x) + r + 2)
            if c_lo < c_hi:
                ry = min(r, (ny - 1) // 2)
                iy = np.arange(math.floor(y) - ry, math.floor(y) + ry + 2, dtype=np.float64)
                cols = np.arange(c_lo, c_hi, dtype=np.float64)
                vals = blob.discretize_blob(x=cols[np.newaxis, :, np.newaxis],
                                            y=iy[:, np.newaxis, np.newaxis],
                                            t=step, Ly=ny, periodic_y=False)[..., 0]
                ridx = iy.astype(np.int64) % ny
                if ridx[0] < ridx[-1]:  # no wrap: plain slice
                    field[ridx[0]: ridx[-1] + 1, c_lo:c_hi] += vals
                else:
                    field[ridx, c_lo:c_hi] += vals
            if 0.0 <= x <= nx - 1:
                rows.append((step, blob.blob_id, y % ny, x, blob.amplitude / np.pi, w))
        return rows


# --------------------------------------------------------------------------
# ADIOS2 plumbing, watchdog, signals
# --------------------------------------------------------------------------
class Supervisor:
    """A forked helper process that makes sure the writer never hangs forever.

    ADIOS2's Python bindings hold the GIL inside Open/BeginStep/EndStep/Close
    (an SST writer waits in Open, without limit, for RendezvousReaderCount
    readers, and in BeginStep/EndStep while the queue is full under Block), so
    no Python thread or signal handler can run meanwhile.  This child process
    gets each deadline through a pipe; when one passes it reports the stuck call,
    SIGKILLs the writer (exit status 137) and removes the writer's SST contact
    file.  If the writer dies for any other reason with its stream open, the
    child removes that contact file too, so no stale one misleads readers.
    """

    def __init__(self) -> None:
        r, w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            os.close(w)
            code = 0
            try:
                self._child(r, parent)
            except BaseException:  # noqa: BLE001
                code = 1
            os._exit(code)
        os.close(r)
        self._w, self.pid = w, pid

    def _send(self, *fields: object) -> None:
        msg = "\t".join(str(f).replace("\t", " ").replace("\n", " ") for f in fields) + "\n"
        try:
            os.write(self._w, msg.encode())
        except OSError:
            pass

    def arm(self, what: str, seconds: float) -> None:
        if seconds > 0:
            self._send("arm", seconds, what)

    def disarm(self) -> None:
        self._send("disarm")

    def own(self, path: str | None) -> None:
        """The contact file to remove if the writer dies with its stream open (None: closed)."""
        self._send("own", path or "")

    def close(self) -> None:
        os.close(self._w)
        os.waitpid(self.pid, 0)

    @staticmethod
    def _child(fd: int, parent: int) -> None:
        import select

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # outlive the writer to clean up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        deadline, what, owned, buf = None, "", "", b""
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:  # deadline passed
                sys.stderr.write(f"blob_sim: {what} blocked for too long (--timeout): "
                                 f"killing the writer (exit status 137)\n")
                sys.stderr.flush()
                os.kill(parent, signal.SIGKILL)
                break
            chunk = os.read(fd, 65536)
            if not chunk:  # writer exited (or died): EOF
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                cmd, *rest = line.decode().split("\t")
                if cmd == "arm":
                    deadline, what = time.monotonic() + float(rest[0]), rest[1]
                elif cmd == "disarm":
                    deadline = None
                elif cmd == "own":
                    owned = rest[0]
        if owned:
            try:
                os.remove(owned)
            except OSError:
                pass


class Blocking:
    """Context for one ADIOS2 call that may block: deadline armed, and SIGINT/SIGTERM back
    to their default action (terminate at once) since no Python handler can run meanwhile."""

    def __init__(self, sup: Supervisor, timeout: float, handler) -> None:
        self.sup, self.timeout, self.handler = sup, timeout, handler
        self.what = ""

    def __call__(self, what: str) -> "Blocking":
        self.what = what
        return self

    def __enter__(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.sup.arm(self.what, self.timeout)

    def __exit__(self, *exc) -> None:
        self.sup.disarm()
        signal.signal(signal.SIGINT, self.handler)
        signal.signal(signal.SIGTERM, self.handler)


def mpi_world_size() -> int:
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_NTASKS_MPI"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


def run(a: argparse.Namespace, sup: Supervisor) -> int:
    import adios2
    import adios2.bindings as ab

    comm, rank, size = None, 0, mpi_world_size()
    if size > 1:
        if not ab.is_built_with_mpi:
            log.error("started as %d MPI ranks, but this adios2 is built without MPI: run one "
                      "process and use --blocks/--decomp for the decomposition", size)
            return 2
        from mpi4py import MPI  # noqa: PLC0415

        comm, rank, size = MPI.COMM_WORLD, MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()

    blocks = blocks_for(a.ny, a.nx, a.decomp)
    my_blocks = blocks[rank::size]
    dtype = np.dtype(a.dtype)

    # --- ADIOS2: IO from the XML, by name -----------------------------------
    adios = adios2.Adios(a.xml, comm) if comm is not None else adios2.Adios(a.xml)
    io = adios.declare_io(a.io)
    engine_type = io.engine_type()
    is_sst = engine_type.lower() == "sst"
    contact = a.stream + ".sst"
    stale = is_sst and rank == 0 and os.path.exists(contact)
    if comm is not None:
        stale = comm.bcast(stale, root=0)  # every writer rank must leave, or the others hang in Open
    if stale:
        if rank == 0:
            log.error("%s exists: another writer is running on this stream, or one died and left it "
                      "(remove it if so)", contact)
        return 2
    # signals between ADIOS2 calls: finish the step, close the engine cleanly, exit 128+sig
    stop = {"signum": 0}

    def on_signal(signum, _frame) -> None:
        if not stop["signum"]:
            log.warning("%s: stopping after the current step", signal.Signals(signum).name)
        stop["signum"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    blocking = Blocking(sup, a.timeout, on_signal)

    # physics (before Open, so a waiting SST reader sees steps at full pace)
    rng = np.random.default_rng(a.seed)
    turb = None
    if a.turbulence > 0:
        turb = Turbulence(coarse=a.coarse, ny=a.ny, nx=a.nx, std=a.turbulence, seed=a.seed,
                          substeps=a.hw_substeps, warmup=a.warmup, init_scale=a.hw_init_scale, nu=a.nu)
        log.info("HW warm-up: %d RK4 steps at %d^2 in %.2f s", a.warmup, a.coarse, turb.warmup_seconds)
    blobs = BlobField(ny=a.ny, nx=a.nx, n_blobs=a.blobs, peak=a.blob_peak, width=a.blob_width,
                      speed=a.blob_speed, rng=rng)

    start0, count0 = my_blocks[0] if my_blocks else ([0, 0], [0, 0])
    v_density = io.define_variable("density", np.zeros((1, 1), dtype=dtype), [a.ny, a.nx], start0, count0)
    v_time = io.define_variable("time", np.array(0.0, dtype=np.float64))
    v_step = io.define_variable("sim_step", np.array(0, dtype=np.int64))

    if stop["signum"]:
        return 128 + stop["signum"]
    truth_file = truth = None
    if a.truth and rank == 0:
        truth_file = open(a.truth, "w", newline="")
        truth = csv.writer(truth_file)
        truth.writerow(["step", "blob_id", "c0", "c1", "peak", "width"])
    log.info("opening %s stream %r (io %r, xml %s), %dx%d %s, %d blocks %dx%d",
             engine_type, a.stream, a.io, a.xml, a.ny, a.nx, a.dtype, len(blocks), *a.decomp)
    if is_sst and rank == 0:
        sup.own(os.path.abspath(contact))
        clear_end_of_stream(a.stream)
    with blocking(f"{engine_type} Open({a.stream!r})"):
        engine = io.open(a.stream, ab.Mode.Write)

    steering = make_steering(a, turb, stop) if (a.steering and rank == 0) else None

    written, t_compute, t_io = 0, 0.0, 0.0
    step_ms: list[tuple[int, float]] = []  # --timing-csv (rank 0)
    end_times: dict[int, float] = {}
    t_start = time.perf_counter()
    try:
        for step in range(a.steps):
            if stop["signum"]:
                break
            if a.stop_file and step % 10 == 0:
                found = os.path.exists(a.stop_file) if rank == 0 else None
                if (comm.bcast(found, root=0) if comm is not None else found):
                    log.info("stop file %s found: ending after %d steps", a.stop_file, step)
                    break
            t0 = time.perf_counter()
            if turb is not None:
                if step:
                    turb.advance()
                field = turb.sample()
            else:
                field = np.zeros((a.ny, a.nx))
            blobs.advance_to(step)
            rows = blobs.render(field, step)
            sim_time = turb.time if turb is not None else step * a.hw_substeps * HW_DT
            t1 = time.perf_counter()

            with blocking(f"BeginStep (step {step})"):
                status = engine.begin_step()
            if status != ab.StepStatus.OK:
                log.error("BeginStep returned %s at step %d", status, step)
                break
            for start, count in my_blocks:
                (y0, x0), (cy, cx) = start, count
                v_density.set_selection([start, count])
                # Put ignores numpy strides: always hand it a contiguous block.  Sync copies
                # the data into ADIOS2's buffer, so the field can be reused right away.
                block = np.ascontiguousarray(field[y0:y0 + cy, x0:x0 + cx], dtype=dtype)
                engine.put(v_density, block, ab.Mode.Sync)
            if rank == 0:
                engine.put(v_time, np.array(sim_time, dtype=np.float64), ab.Mode.Sync)
                engine.put(v_step, np.array(step, dtype=np.int64), ab.Mode.Sync)
            with blocking(f"EndStep (step {step})"):
                engine.end_step()
            end_times[step] = time.monotonic()
            written += 1
            if truth is not None:
                truth.writerows((s, b, f"{c0:.6f}", f"{c1:.6f}", f"{pk:.9g}", f"{w:.6f}")
                                for (s, b, c0, c1, pk, w) in rows)
                truth_file.flush()
            t2 = time.perf_counter()
            t_compute += t1 - t0
            t_io += t2 - t1
            if steering is not None:
                steering.poll(step, wait_s=a.steering_wait)
            if comm is not None and a.steering:
                # Steering is read on rank 0; every writer rank must act on it together.
                flags = comm.bcast((stop.get("steered"), stop.get("checkpoint")), root=0)
                stop["steered"], stop["checkpoint"] = flags
                if not flags[1]:
                    stop.pop("checkpoint", None)
                if not flags[0]:
                    stop.pop("steered", None)
            if a.steering:
                if stop.get("steered"):
                    step_ms.append((step, (time.perf_counter() - t0) * 1e3))
                    cmd = stop["steered"]
                    log.warning("stopped by steering after step %d (seq %d answering step %d, rule %r)",
                                step, cmd.seq, cmd.answers_step, cmd.rule)
                    break
                if stop.get("checkpoint"):
                    cmd = stop.pop("checkpoint")
                    if rank == 0:  # the turbulence state is the same on every rank
                        write_checkpoint(a, turb, step, cmd)
            step_ms.append((step, (time.perf_counter() - t0) * 1e3))
            if a.sleep:
                time.sleep(a.sleep)
    finally:
        if steering is not None:
            steering.close()
            st = steering.stats
            log.warning("steering: %d record(s) received, %d applied, %d rejected, %d replayed (last seq %d)",
                        st.received, st.applied, st.rejected, st.replayed, st.last_seq)
            if a.steering_log and steering.receipts is not None:
                with open(a.steering_log, "w") as fh:
                    fh.write("seq,answers_step,received_at_step,lag_ms\n")
                    for seq, answers, at_step, t in steering.receipts:
                        lag = (t - end_times[answers]) * 1e3 if answers in end_times else float("nan")
                        fh.write(f"{seq},{answers},{at_step},{lag:.3f}\n")
        if is_sst and rank == 0:
            report_end_of_stream(a.stream, written)  # before Close: readers see the end only after it
        if truth_file is not None:
            truth_file.close()
        if a.timing_csv and rank == 0:  # before Close, which the watchdog may end (--timeout)
            with open(a.timing_csv, "w") as fh:
                fh.write("step,step_ms\n")
                fh.writelines(f"{s},{ms:.4f}\n" for s, ms in step_ms)
        with blocking(f"{engine_type} Close"):
            engine.close()
        sup.own(None)  # a clean close removed the contact file

    elapsed = time.perf_counter() - t_start
    per = elapsed / written * 1e3 if written else float("nan")
    log.warning("wrote %d steps (%dx%d %s, %d blocks, %s %r) in %.2f s: %.2f ms/step "
                "(compute %.2f, adios %.2f)%s",
                written, a.ny, a.nx, a.dtype, len(blocks), engine_type, a.stream, elapsed, per,
                t_compute / max(written, 1) * 1e3, t_io / max(written, 1) * 1e3,
                f"; HW warm-up {turb.warmup_seconds:.2f} s" if turb is not None else "")
    if stop["signum"]:
        return 128 + stop["signum"]
    return 0


END_REPORT_FORMAT = "intransit-end-of-stream/1"  # as intransit.adapters.steering.report_end_of_stream


def clear_end_of_stream(stream: str) -> None:
    """Remove an earlier run's end-of-stream report before this run's stream opens."""
    try:
        os.remove(stream + ".end.json")
    except FileNotFoundError:
        pass


def report_end_of_stream(stream: str, steps_written: int) -> None:
    """``<stream>.end.json``: how many steps this run published, so the analytics count a keep-pace
    writer's dropped tail exactly (a reader never sees steps discarded after its last one).
    Written here without importing intransit (the same format as its helper)."""
    import json

    tmp = f"{stream}.end.json.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"format": END_REPORT_FORMAT, "stream": os.path.basename(stream),
                   "steps_written": int(steps_written), "time": time.time()}, fh)
    os.replace(tmp, stream + ".end.json")


def make_steering(a: argparse.Namespace, turb: "Turbulence | None", stop: dict):
    """The simulation's steering hooks: what it accepts, and what each command does."""
    from intransit.adapters.steering import SteeringClient  # noqa: PLC0415 (opt-in)

    client = SteeringClient(a.steering, xml=a.steering_xml, poll_timeout_s=0.05,
                            record_receipts=bool(a.steering_log))
    client.on("stop", lambda cmd: stop.__setitem__("steered", cmd))
    client.on("checkpoint", lambda cmd: stop.__setitem__("checkpoint", cmd))
    if turb is not None:
        client.declare_parameter("dt", float, lambda _n, v: setattr(turb, "dt", v), low=1e-4, high=0.1)
    return client


def write_checkpoint(a: argparse.Namespace, turb: "Turbulence | None", step: int, cmd) -> None:
    """A BP5 checkpoint of the turbulence state (the blobs follow from seed and step)."""
    import adios2
    import adios2.bindings as ab

    folder = a.checkpoint_dir or os.path.dirname(os.path.abspath(a.stream))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"checkpoint_{step:06d}.bp")
    io = adios2.Adios().declare_io("Checkpoint")
    io.set_engine("BP5")
    engine = io.open(path, ab.Mode.Write)
    engine.begin_step()
    engine.put(io.define_variable("step", np.array(step, dtype=np.int64)), np.array(step, dtype=np.int64), ab.Mode.Sync)
    if turb is not None:
        for name in ("density", "omega", "phi"):
            arr = np.ascontiguousarray(turb.plasma[name], dtype=np.float64)
            engine.put(io.define_variable(name, arr, list(arr.shape), [0, 0], list(arr.shape)), arr, ab.Mode.Sync)
    engine.end_step()
    engine.close()
    log.warning("checkpoint written after step %d to %s (seq %d, rule %r)", step, path, cmd.seq, cmd.rule)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO,
                        format="blob_sim: %(message)s", stream=sys.stderr)
    sup = Supervisor()  # fork before ADIOS2 or MPI start threads
    try:
        return run(a, sup)
    except FloatingPointError as exc:
        log.error("%s", exc)
        return 4
    finally:
        sup.close()


if __name__ == "__main__":
    sys.exit(main())
