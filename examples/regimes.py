"""Benchmark movies with ground truth: Gaussian blobs on known trajectories over hw2d turbulence.

Four regimes (``make_movie(regime, size, frames, seed)``):

* ``sparse``   — the reference simulation's own regime (``blob_sim.BlobField``:
  isolated blobs on conveyor lanes entering at x < 0 and leaving at x >= nx;
  axis 0 periodic, axis 1 open).
* ``crossing`` — 24 blobs (12 pairs), doubly periodic; each pair's straight
  paths cross, the two blobs passing within 0.7–1.4 widths of each other at a
  scripted time, at least 60 degrees apart in direction (plus whatever
  crossings the periodic box adds).
* ``merge``    — 5 coalesce-and-break-up groups plus 6 isolated blobs, doubly
  periodic: blobs A and B converge and are replaced by C (brighter, wider) when
  0.6 widths apart; later C breaks up into D and E that move apart.  Truth
  edges (parent, child, step): A→C, B→C, C→D, C→E.
* ``3d``       — 12 blobs as filaments along axis 0 (``nz`` cells, slightly
  tilted), moving in the (y, x) plane; the background is the 2D turbulence
  sheared along axis 0.  Axes 1 and 2 periodic, axis 0 open.

Blob shape as blobmodel's Gaussian: ``peak * exp(-(dx^2 + dy^2) / w^2)``
(peak = A/pi for blobmodel amplitude A, FIELD_NOTES), width w in cells
(``size / 50``, at least 2.5); peak 0.8–1.2 x 6.5 over turbulence of standard
deviation 1 (the reference simulation's defaults).  Ground truth comes from
the blob parameters, never from masks: per frame, one row per blob whose
centre is inside the domain: ``id``, centre ``c`` (one coordinate per array
axis), ``width``, ``peak``; a truth *box* is the centre +- w per in-plane axis
(the e-fold radius), the whole extent along the filament axis in 3D.
``ignore`` lists, per frame, blobs whose centre is outside the open x range
but within two widths of it (sparse regime): their tails are visible, so a
detection there is neither a hit nor a false positive (MOT "ignore" regions).

Three more regimes come from generators that share no code with the
detector or with the regimes above (``SceneMovie``; truth from each
generator's own parameters, gate ``GATE`` = 3 cells):

* ``curving``    — ``scenario_sim.Scenario``: anisotropic Gaussians (sigmas
  1-4 cells, so 2-8 cells across) that rotate and move along arcs, peak 4-8
  over spatially correlated noise (smoothing 2 cells, std 1), doubly
  periodic; 24 blobs per 256^2; written as 3 uneven column blocks (0.2,
  0.45, 0.35 of nx).
* ``amplitudes`` — ``scenarios2d.Amplitudes``: isotropic blobs (sigma
  1.5-3.5) whose peaks spread log-uniformly over 4-64 noise standard
  deviations (the faint ones near the noise) over mildly correlated noise
  (1 cell), doubly periodic; 24 blobs per 256^2; 2 x 3 uneven blocks.
* ``gray_scott`` — ``gray_scott.GrayScott``: ADIOS2's Gray-Scott example in
  numpy (3D, periodic; spots that split, merge and die; truth = components of
  the noise-free V > 0.2 linked by overlap, with split/merge edges), observed
  with noise 0.02; ``gs_size``^3 cells (64: ~600 spots; 32: ~80), one frame
  every 10 model steps; 3 x 2 uneven blocks.

Every movie has ``blocks``: the ``(start, count)`` boxes a writer would Put
(one box for the four regimes above), and ``radius``: a typical blob e-fold
radius from the truth (what a baseline tuned on the truth may use).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from blob_sim import BlobField, Turbulence  # noqa: E402

LEGACY_REGIMES = ("sparse", "crossing", "merge", "3d")
NEW_REGIMES = ("curving", "amplitudes", "gray_scott")
REGIMES = LEGACY_REGIMES + NEW_REGIMES
PEAK = 6.5
#: Scoring gate (cells) of the generated regimes: their blobs' sigmas are 1-4 cells, starts >= 12 apart.
GATE = 3.0


@dataclasses.dataclass
class Track:
    """One true blob: straight line at constant velocity, alive for steps ``t0 <= t < t1``."""

    id: int
    y0: float
    x0: float
    vy: float
    vx: float
    t0: int
    t1: int
    peak: float
    width: float

    def at(self, t: int) -> tuple[float, float]:
        return self.y0 + self.vy * (t - self.t0), self.x0 + self.vx * (t - self.t0)


@dataclasses.dataclass
class Movie:
    regime: str
    shape: tuple[int, ...]
    periodic: list[bool]
    n_frames: int
    width: float
    seed: int
    tracks: list[Track]
    edges: list[tuple[int, int, int]]  # (parent id, child id, step of the child's birth)
    nz: int = 0
    turbulence: float = 1.0
    _conveyor: BlobField | None = None
    truth: list[list[dict]] = dataclasses.field(default_factory=list)
    ignore: list[list[dict]] = dataclasses.field(default_factory=list)

    @property
    def blocks(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """One box: these regimes are written whole."""
        return [((0,) * len(self.shape), tuple(self.shape))]

    @property
    def radius(self) -> float:
        return self.width

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(step, field) for every frame, generated in order (fills ``truth`` on the way)."""
        ny, nx = self.shape[-2:]
        turb = None
        if self.turbulence > 0:
            turb = Turbulence(coarse=64, ny=ny, nx=nx, std=self.turbulence, seed=self.seed, substeps=2,
                              warmup=150, init_scale=4.0, nu=5e-3)
        self.truth, self.ignore = [], []
        for t in range(self.n_frames):
            if turb is not None and t:
                turb.advance()
            base = turb.sample() if turb is not None else np.zeros((ny, nx))
            if self._conveyor is not None:
                self._conveyor.advance_to(t)
                rows = self._conveyor.render(base, t)
                self.truth.append([{"id": int(b), "c": (c0, c1), "width": w, "peak": pk}
                                   for (_, b, c0, c1, pk, w) in rows])
                # Blobs whose centre is outside the open x range but whose tail is still visible
                # (within 2 widths): "don't care" for scoring, like MOT ignore regions.
                edge = []
                for _, blob in self._conveyor.blobs:
                    x = float(blob._blob_trajectory_x(t))
                    w = float(blob.width_p)
                    if (-2 * w <= x < 0.0) or (nx - 1 < x <= nx - 1 + 2 * w):
                        y = float(blob._blob_trajectory_y(t)) % ny
                        edge.append({"id": int(blob.blob_id), "c": (y, x), "width": w, "peak": blob.amplitude / np.pi})
                self.ignore.append(edge)
                yield t, base
                continue
            if self.nz:
                field = np.stack([np.roll(base, int(round(0.5 * z)), axis=0) for z in range(self.nz)])
            else:
                field = base
            rows = []
            for tr in self.tracks:
                if not tr.t0 <= t < tr.t1:
                    continue
                y, x = tr.at(t)
                y, x = y % ny, x % nx
                self._render(field, y, x, tr)
                c = ((self.nz - 1) / 2.0, y, x) if self.nz else (y, x)
                rows.append({"id": tr.id, "c": c, "width": tr.width, "peak": tr.peak})
            self.truth.append(rows)
            self.ignore.append([])
            yield t, field

    def _render(self, field: np.ndarray, y: float, x: float, tr: Track) -> None:
        ny, nx = self.shape[-2:]
        r = int(math.ceil(4 * tr.width))
        iy = np.arange(math.floor(y) - r, math.floor(y) + r + 2)
        ix = np.arange(math.floor(x) - r, math.floor(x) + r + 2)
        if self.nz:
            tilt = 0.08 * (np.arange(self.nz) - (self.nz - 1) / 2.0)  # filament slightly tilted along axis 0
            g = np.exp(-((iy[None, :, None] - y - tilt[:, None, None]) ** 2
                         + (ix[None, None, :] - x - tilt[:, None, None]) ** 2) / tr.width**2) * tr.peak
            field[:, (iy % ny)[:, None], (ix % nx)[None, :]] += g
        else:
            g = np.exp(-((iy[:, None] - y) ** 2 + (ix[None, :] - x) ** 2) / tr.width**2) * tr.peak
            np.add.at(field, ((iy % ny)[:, None], (ix % nx)[None, :]), g)


#: A generated movie's source: yields (field, truth rows, (parent, child) edges since the last frame).
Source = Callable[[], Iterator[tuple[np.ndarray, list[dict], list[tuple[int, int]]]]]


@dataclasses.dataclass
class SceneMovie:
    """A movie from a generator that shares no code with the detector (same scoring interface as ``Movie``).

    ``source`` is called anew by every ``frames()`` (a fresh generator of the
    same seed, so the frames repeat exactly); truth rows carry ``width`` =
    the scoring gate.
    """

    regime: str
    shape: tuple[int, ...]
    periodic: list[bool]
    n_frames: int
    width: float
    seed: int
    radius: float
    blocks: list[tuple[tuple[int, ...], tuple[int, ...]]]
    source: Source
    nz: int = 0
    edges: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    truth: list[list[dict]] = dataclasses.field(default_factory=list)
    ignore: list[list[dict]] = dataclasses.field(default_factory=list)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(step, field) for every frame, generated in order (fills ``truth`` and ``edges`` on the way)."""
        self.truth, self.ignore, self.edges = [], [], []
        for t, (field, rows, edges) in zip(range(self.n_frames), self.source()):
            self.truth.append(rows)
            self.ignore.append([])
            self.edges += [(int(p), int(c), t) for p, c in edges]
            yield t, field


def _stepper_source(make: Callable[[], object], n_frames: int) -> Source:
    """Frames of a ``Scenario``-like stepper (``advance()``, ``render() -> (field, [[id, c0, c1], ...])``)."""
    def source():
        st = make()
        for t in range(n_frames):
            if t:
                st.advance()
            field, centres = st.render()
            yield field, [{"id": int(k), "c": (c0, c1), "width": GATE} for k, c0, c1 in centres], []
    return source


def _gray_scott_source(shape: tuple[int, ...], seed: int, n_frames: int) -> Source:
    from gray_scott import GrayScott

    def source():
        gs = GrayScott(shape, seed, dtype="float32")
        for _, v, truth in gs.frames(n_frames, every=10):
            rows = [{"id": s.id, "c": tuple(s.centroid), "width": GATE, "size": s.size} for s in truth.spots]
            yield v, rows, list(truth.edges)
    return source


def blobs_for(size: int, per_256: int = 24, least: int = 8) -> int:
    """Blob count at the density of ``per_256`` per 256^2 (at least ``least``)."""
    return max(least, int(round(per_256 * (size / 256.0) ** 2)))


def make_scene(regime: str, size: int = 256, n_frames: int = 60, seed: int = 0, gs_size: int = 64) -> SceneMovie:
    """One of ``NEW_REGIMES`` (see the module docstring)."""
    from scenario_sim import Scenario, column_blocks
    from scenarios2d import Amplitudes, uneven_blocks

    if regime == "curving":
        n = blobs_for(size)
        probe = Scenario(size, size, n, seed)
        radius = float(np.median(np.sqrt(2.0 * probe.sig_a * probe.sig_b)))
        blocks = [(tuple(s), tuple(c)) for s, c in column_blocks(size, size, [0.2, 0.45, 0.35])]
        return SceneMovie(regime, (size, size), [True, True], n_frames, GATE, seed, radius, blocks,
                          _stepper_source(lambda: Scenario(size, size, n, seed), n_frames))
    if regime == "amplitudes":
        n = blobs_for(size)
        probe = Amplitudes(size, size, n, seed)
        radius = float(np.median(np.sqrt(2.0) * probe.sigma))
        blocks = uneven_blocks((size, size), [[0.3, 0.7], [0.2, 0.45, 0.35]])
        return SceneMovie(regime, (size, size), [True, True], n_frames, GATE, seed, radius, blocks,
                          _stepper_source(lambda: Amplitudes(size, size, n, seed), n_frames))
    if regime == "gray_scott":
        shape = (gs_size,) * 3
        # median spot 27-28 cells at 32^3-64^3 (gray_scott.py --size N): a ball of radius ~1.9
        blocks = uneven_blocks(shape, [[17, 25, 22], [29, 35], [1]])
        return SceneMovie(regime, shape, [True] * 3, n_frames, GATE, seed, 1.9, blocks,
                          _gray_scott_source(shape, seed, n_frames))
    raise ValueError(f"unknown generated regime {regime!r}; known: {', '.join(NEW_REGIMES)}")


def _unit(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    return np.array([math.sin(a), math.cos(a)])


def make_movie(regime: str, size: int = 256, n_frames: int = 60, seed: int = 0, nz: int = 16,
               gs_size: int = 64) -> Movie | SceneMovie:
    """The benchmark movie of ``regime`` at ``size`` x ``size`` (3D: ``nz`` x size x size; Gray-Scott: ``gs_size``^3)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")
    if regime in NEW_REGIMES:
        return make_scene(regime, size, n_frames, seed, gs_size)
    rng = np.random.default_rng(seed)
    w = max(2.5, size / 50.0)
    speed = size / 128.0  # cells per frame: 2 at 256^2
    tracks: list[Track] = []
    edges: list[tuple[int, int, int]] = []

    def new(y, x, v, t0, t1, peak=None, width=None) -> Track:
        tr = Track(len(tracks), float(y), float(x), float(v[0]), float(v[1]), int(t0), int(t1),
                   float(peak if peak is not None else PEAK * rng.uniform(0.8, 1.2)),
                   float(width if width is not None else w * rng.uniform(0.9, 1.1)))
        tracks.append(tr)
        return tr

    if regime == "sparse":
        n = max(4, size // 40)
        conveyor = BlobField(ny=size, nx=size, n_blobs=n, peak=PEAK, width=w, speed=speed, rng=rng)
        return Movie(regime, (size, size), [True, False], n_frames, w, seed, [], [], _conveyor=conveyor)

    if regime == "crossing":
        for _ in range(12):
            tm = rng.uniform(0.15, 0.85) * n_frames
            p = rng.uniform(0, size, 2)
            u1 = _unit(rng)
            ang = rng.uniform(np.pi / 3, np.pi) * rng.choice([-1, 1])
            u2 = np.array([u1[0] * math.cos(ang) - u1[1] * math.sin(ang), u1[0] * math.sin(ang) + u1[1] * math.cos(ang)])
            b = rng.uniform(0.7, 1.4) * w
            n = _unit(rng)
            for u, sgn in ((u1, 1), (u2, -1)):
                v = u * speed * rng.uniform(0.7, 1.3)
                pos = p + sgn * 0.5 * b * n - v * tm  # position at t = 0
                new(pos[0], pos[1], v, 0, n_frames)
        return Movie(regime, (size, size), [True, True], n_frames, w, seed, tracks, edges)

    if regime == "merge":
        for _ in range(5):
            tm = int(rng.uniform(0.2, 0.35) * n_frames)
            ts = tm + int(rng.uniform(0.25, 0.35) * n_frames)
            p = rng.uniform(0, size, 2)
            u = _unit(rng)
            vc = _unit(rng) * speed * 0.5
            va, vb = vc + u * speed, vc - u * speed
            wc = w * 1.25
            a = new(*(p - 0.3 * w * u - va * tm), va, 0, tm)
            b = new(*(p + 0.3 * w * u - vb * tm), vb, 0, tm)
            c = new(*(p - vc * tm), vc, tm, ts, peak=PEAK * 1.3, width=wc)
            pc = p + vc * (ts - tm)
            n = _unit(rng)
            d = new(*(pc - 0.4 * wc * n - (vc - n * speed) * ts), vc - n * speed, ts, n_frames)
            e = new(*(pc + 0.4 * wc * n - (vc + n * speed) * ts), vc + n * speed, ts, n_frames)
            for tr in (d, e):  # positions are given at t = 0: rebase to t0
                tr.y0, tr.x0 = tr.y0 + tr.vy * tr.t0, tr.x0 + tr.vx * tr.t0
            for tr in (c,):
                tr.y0, tr.x0 = tr.y0 + tr.vy * tr.t0, tr.x0 + tr.vx * tr.t0
            edges += [(a.id, c.id, tm), (b.id, c.id, tm), (c.id, d.id, ts), (c.id, e.id, ts)]
        for _ in range(6):
            new(*rng.uniform(0, size, 2), _unit(rng) * speed * rng.uniform(0.5, 1.0), 0, n_frames)
        return Movie(regime, (size, size), [True, True], n_frames, w, seed, tracks, edges)

    # 3d: filaments along axis 0
    for _ in range(12):
        new(*rng.uniform(0, size, 2), _unit(rng) * speed * rng.uniform(0.5, 1.0), 0, n_frames)
    return Movie(regime, (nz, size, size), [False, True, True], n_frames, w, seed, tracks, edges, nz=nz)
