#!/usr/bin/env python3
"""A numpy model of ADIOS2's Gray-Scott example, with ground truth of its spots.

ADIOS2's example (``examples/simulations/gray-scott`` in its source) is a 3D,
periodic, 7-point-stencil reaction-diffusion code::

    u_t = Du * lap(u) - u v^2 + F (1 - u) + noise * uniform(-1, 1)
    v_t = Dv * lap(v) + u v^2 - (F + k) v

with ``lap(s) = (sum of the 6 face neighbours - 6 s) / 6`` (its
``GrayScott::laplacian`` divides by 6), explicit Euler steps of ``dt``, the
noise drawn per cell and step and added to ``du`` only, and the initial
condition u = 1, v = 0 except a cube ``[L/2 - 6, L/2 + 6)^3`` where
u = 0.25, v = 0.33.  This module keeps all of that and ADIOS2's default
settings (``settings-files.json``: L = 64, F = 0.01, k = 0.05, Du = 0.2,
Dv = 0.1, dt = 2, noise = 1e-7, output every 10 steps).  What differs:

* the noise comes from a seeded ``numpy`` generator (ADIOS2's uses
  ``std::random_device``: no two runs alike), so a seed gives one field;
  and a seed also perturbs the initial cube (``init_jitter``, +-1 % of v by
  default), because with noise at 1e-7 the run is otherwise nearly the same
  for every seed;
* it is vectorised numpy on one process (ghost cells filled by periodic
  copies, as the C++ code's halo exchange does across ranks).

Why these parameters: at 64^3 ADIOS2's defaults are already in the
spot-splitting regime.  The central cube breaks up into spots that split and
fill the box (238 spots with V > 0.2 at model step 1000, measured here:
ADIOS2's own run showed the same number), and from about step 1300 on the box
holds 400-700 spots that keep splitting, merging and dying.  ``warmup``
(default 1500 model steps) skips the filling phase so every output frame has
~500 spots.

Ground truth shares no code with ``intransit.analyzers``; it comes from the
NOISE-FREE V field (observation noise is added only to what is handed out):

* spots = connected components (face connectivity) of ``V > level``
  (default 0.2, the level a user would state), joined across the periodic
  faces;
* centroid = the mean of a spot's cell coordinates with periodic unwrapping
  (minimum image about the spot's circular mean), in [0, L) per axis;
  size = its number of cells;
* identities by overlap with the previous output frame: a spot keeps its
  id when it overlaps exactly one spot of the previous frame and is that
  spot's largest-overlap child (so ids stay unique); otherwise it gets a new
  id and every overlapping spot of the previous frame is recorded as its
  parent (``edges``: parent id -> child id).  A split: the largest piece
  keeps the id, each other piece gets a new one with the parent edge; a
  merge: a new id with an edge from each parent.  A spot that overlaps
  nothing is born (no edge).  At 64^3, per frame (10 model steps), ~35
  spots split, ~10 merge and ~20 die among ~610.

Speed (2-core machine, float64, 64^3): ~8 ms per model step; float32 about
half.  ``python examples/gray_scott.py --frames 100`` prints a JSON summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: ADIOS2's ``settings-files.json`` defaults.
ADIOS2_DEFAULTS = {"F": 0.01, "k": 0.05, "Du": 0.2, "Dv": 0.1, "dt": 2.0, "noise": 1e-7}


class Spot(NamedTuple):
    id: int
    centroid: tuple[float, ...]
    size: int


@dataclasses.dataclass
class Truth:
    """Ground truth of one output frame."""

    step: int
    spots: list[Spot]
    edges: list[tuple[int, int]]  # (parent id, child id): splits and merges since the last frame


def periodic_label(mask: np.ndarray, periodic: Sequence[bool] | None = None,
                   structure: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label`` with components joined across periodic faces: labels 1..n.

    Components that touch both faces of a periodic axis (cell pairs facing each
    other across the wrap) are one; they are renumbered 1..n in order of their
    smallest ``ndimage`` label, 0 stays background.  ``periodic`` defaults to
    every axis; ``structure`` is ``ndimage.label``'s (default: face
    connectivity).  Shared by this model's truth and the benchmark's
    robust-z baseline (``benchmarks/tracking.py``), so both join seams alike.
    """
    periodic = [True] * mask.ndim if periodic is None else list(periodic)
    if len(periodic) != mask.ndim:
        raise ValueError(f"periodic needs one flag per axis of the mask ({mask.ndim}); got {periodic!r}")
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0 or not any(periodic):
        return labels, n
    a, b = [], []
    for axis, p in enumerate(periodic):
        if not p:
            continue
        lo = np.take(labels, 0, axis=axis).ravel()
        hi = np.take(labels, -1, axis=axis).ravel()
        both = (lo > 0) & (hi > 0)
        a.append(lo[both])
        b.append(hi[both])
    a, b = np.concatenate(a), np.concatenate(b)
    if not len(a):
        return labels, n
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n + 1, n + 1))
    _, comp = connected_components(graph, directed=False)
    # renumber: components in order of their smallest old label get 1..m (label 0 is its own component)
    _, first_old = np.unique(comp[1:], return_index=True)
    rank = np.empty(len(first_old), np.int64)
    rank[np.argsort(first_old)] = np.arange(1, len(first_old) + 1)
    _, inv = np.unique(comp[1:], return_inverse=True)
    new = np.zeros(n + 1, np.int64)
    new[1:] = rank[inv]
    return new[labels], len(first_old)


class GrayScott:
    """ADIOS2's Gray-Scott model on a periodic box, with spot ground truth.

    ``shape`` may be any 3D box (ADIOS2 uses a cube L^3).  ``obs_noise`` is the
    standard deviation of white Gaussian noise added to V in what ``frames``
    hands out (the model itself never sees it).
    """

    def __init__(
        self,
        shape: Sequence[int] = (64, 64, 64),
        seed: int = 0,
        *,
        F: float = ADIOS2_DEFAULTS["F"],
        k: float = ADIOS2_DEFAULTS["k"],
        Du: float = ADIOS2_DEFAULTS["Du"],
        Dv: float = ADIOS2_DEFAULTS["Dv"],
        dt: float = ADIOS2_DEFAULTS["dt"],
        noise: float = ADIOS2_DEFAULTS["noise"],
        warmup: int = 1500,
        init_jitter: float = 0.01,
        obs_noise: float = 0.02,
        level: float = 0.2,
        dtype: str = "float64",
    ) -> None:
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3 or min(shape) < 13:
            raise ValueError(f"shape must be three sizes >= 13 (the initial cube is 12 cells wide); got {shape}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0 model steps; got {warmup}")
        if obs_noise < 0 or noise < 0 or init_jitter < 0:
            raise ValueError("obs_noise, noise and init_jitter must be >= 0")
        self.shape, self.seed = shape, int(seed)
        self.F, self.k, self.Du, self.Dv, self.dt, self.noise = F, k, Du, Dv, dt, noise
        self.obs_noise, self.level = float(obs_noise), float(level)
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.obs_rng = np.random.default_rng([seed, 1])  # observation noise: its own stream
        g = tuple(n + 2 for n in shape)
        self._u = np.ones(g, self.dtype)
        self._v = np.zeros(g, self.dtype)
        d = 6
        cube = tuple(slice(1 + n // 2 - d, 1 + n // 2 + d) for n in shape)
        self._u[cube] = 0.25
        self._v[cube] = 0.33 * (1.0 + init_jitter * self.rng.uniform(-1.0, 1.0, (2 * d,) * 3))
        self._lu = np.empty(shape, self.dtype)
        self._lv = np.empty(shape, self.dtype)
        self._uvv = np.empty(shape, self.dtype)
        self._tmp = np.empty(shape, self.dtype)
        self.model_step = 0
        self.advance(warmup)
        # identity bookkeeping
        self._prev_labels: np.ndarray | None = None
        self._prev_ids: np.ndarray | None = None
        self._next_id = 1

    # ------------------------------------------------------------- physics
    @property
    def U(self) -> np.ndarray:
        return self._u[1:-1, 1:-1, 1:-1]

    @property
    def V(self) -> np.ndarray:
        """The noise-free V field (a view: copy what must outlive the next step)."""
        return self._v[1:-1, 1:-1, 1:-1]

    @staticmethod
    def _fill_ghosts(a: np.ndarray) -> None:
        a[0], a[-1] = a[-2], a[1]
        a[:, 0], a[:, -1] = a[:, -2], a[:, 1]
        a[:, :, 0], a[:, :, -1] = a[:, :, -2], a[:, :, 1]

    @staticmethod
    def _laplacian(a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """ADIOS2's 7-point Laplacian: (sum of face neighbours - 6 s) / 6."""
        i = slice(1, -1)
        np.add(a[:-2, i, i], a[2:, i, i], out=out)
        out += a[i, :-2, i]
        out += a[i, 2:, i]
        out += a[i, i, :-2]
        out += a[i, i, 2:]
        out -= 6.0 * a[i, i, i]
        out *= 1.0 / 6.0
        return out

    def advance(self, n: int = 1) -> None:
        """``n`` explicit Euler steps of the model."""
        u, v, uvv, tmp = self.U, self.V, self._uvv, self._tmp
        F, k, dt = self.F, self.k, self.dt
        for _ in range(n):
            self._fill_ghosts(self._u)
            self._fill_ghosts(self._v)
            lu = self._laplacian(self._u, self._lu)
            lv = self._laplacian(self._v, self._lv)
            np.multiply(v, v, out=uvv)
            uvv *= u
            # du = Du lap u - u v^2 + F (1 - u) + noise * U(-1, 1)
            lu *= self.Du
            lu -= uvv
            np.multiply(u, -F, out=tmp)
            tmp += F
            lu += tmp
            if self.noise:
                r = self.rng.random(self.shape, dtype=self.dtype if self.dtype in (np.float32, np.float64) else np.float64)
                r *= 2.0 * self.noise
                r -= self.noise
                lu += r
            # dv = Dv lap v + u v^2 - (F + k) v
            lv *= self.Dv
            lv += uvv
            np.multiply(v, F + k, out=tmp)
            lv -= tmp
            lu *= dt
            lv *= dt
            u += lu
            v += lv
            self.model_step += 1

    # --------------------------------------------------------------- truth
    def label(self, field: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Periodic connected components of ``field > level`` (default: the noise-free V): labels 1..n."""
        field = self.V if field is None else field
        return periodic_label(field > self.level, [True] * field.ndim)

    def spots(self, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(centroids (n, 3) in [0, L), sizes (n,)) of labels 1..n, periodic-aware."""
        flat = labels.ravel()
        sel = flat > 0
        lab = flat[sel] - 1
        size = np.bincount(lab, minlength=n).astype(np.int64)
        coords = np.unravel_index(np.flatnonzero(sel), labels.shape)
        cent = np.empty((n, 3))
        for axis, L in enumerate(self.shape):
            x = coords[axis].astype(np.float64)
            ang = 2 * np.pi * x / L
            ref = np.arctan2(np.bincount(lab, np.sin(ang), n), np.bincount(lab, np.cos(ang), n)) * L / (2 * np.pi)
            d = x - ref[lab]
            d = (d + L / 2) % L - L / 2  # minimum image about the circular mean
            c = (ref + np.bincount(lab, d, n) / np.maximum(size, 1)) % L
            cent[:, axis] = np.where(c >= L, c - L, c)  # -1e-16 % L rounds to L
        return cent, size

    def truth(self) -> Truth:
        """Ground truth of the current (noise-free) V, linked to the previous call's by overlap."""
        labels, n = self.label()
        cent, size = self.spots(labels, n)
        ids = np.zeros(n + 1, np.int64)
        edges: list[tuple[int, int]] = []
        prev = self._prev_labels
        if prev is None:
            ids[1:] = np.arange(self._next_id, self._next_id + n)
            self._next_id += n
        else:
            both = (prev > 0) & (labels > 0)
            key = prev[both].astype(np.int64) * (n + 1) + labels[both]
            key, overlap = np.unique(key, return_counts=True)
            pairs = np.stack([key // (n + 1), key % (n + 1)])
            n_parents = np.bincount(pairs[1], minlength=n + 1)
            # each parent's largest-overlap child among those overlapping only it (ties: lower label)
            best: dict[int, tuple[int, int]] = {}
            for (p, c), o in zip(pairs.T, overlap):
                p, c, o = int(p), int(c), int(o)
                if n_parents[c] == 1 and (p not in best or o > best[p][1]):
                    best[p] = (c, o)
            keep = {c: p for p, (c, _) in best.items()}
            for c in range(1, n + 1):
                if c in keep:
                    ids[c] = self._prev_ids[keep[c]]
                else:
                    ids[c] = self._next_id
                    self._next_id += 1
            for p, c in pairs.T:
                if int(c) not in keep:
                    edges.append((int(self._prev_ids[p]), int(ids[c])))
        self._prev_labels, self._prev_ids = labels, ids
        spots = [Spot(int(ids[i + 1]), tuple(float(x) for x in cent[i]), int(size[i])) for i in range(n)]
        return Truth(self.model_step, spots, edges)

    def observe(self) -> np.ndarray:
        """What a writer would publish: V plus white Gaussian observation noise (a new array)."""
        out = np.array(self.V, dtype=np.float64)
        if self.obs_noise:
            out += self.obs_noise * self.obs_rng.standard_normal(self.shape)
        return out

    def frames(self, n: int, every: int = 10) -> Iterator[tuple[int, np.ndarray, Truth]]:
        """``n`` output frames, ``every`` model steps apart: (model step, observed V, truth).

        The first frame is the state after the warm-up; the truth of each frame is
        linked by overlap to the frame before it.
        """
        if every < 1:
            raise ValueError(f"every must be >= 1 model step; got {every}")
        for i in range(n):
            if i:
                self.advance(every)
            yield self.model_step, self.observe(), self.truth()


def summary(frames: int, every: int, seed: int, shape: Sequence[int], dtype: str) -> dict:
    t0 = time.perf_counter()
    gs = GrayScott(shape, seed, dtype=dtype)
    t_warm = time.perf_counter() - t0
    counts, splits, merges, births, sizes, peaks = [], 0, 0, 0, [], []
    t_truth = 0.0
    t1 = time.perf_counter()
    prev_ids: set[int] = set()
    for step, _, truth in gs.frames(frames, every):
        counts.append(len(truth.spots))
        children: dict[int, int] = {}
        parents: dict[int, int] = {}
        for p, c in truth.edges:
            children[p] = children.get(p, 0) + 1
            parents[c] = parents.get(c, 0) + 1
        splits += sum(1 for v in children.values() if v > 1)
        merges += sum(1 for v in parents.values() if v > 1)
        ids = {s.id for s in truth.spots}
        if prev_ids:
            births += sum(1 for s in truth.spots if s.id not in prev_ids and s.id not in parents)
        prev_ids = ids
        sizes += [s.size for s in truth.spots]
    t_run = time.perf_counter() - t1
    return {
        "shape": list(shape), "seed": seed, "frames": frames, "every": every, "params": ADIOS2_DEFAULTS,
        "warmup_steps": 1500, "warmup_s": round(t_warm, 2), "frames_s": round(t_run, 2),
        "spots_per_frame": {"mean": float(np.mean(counts)), "min": int(min(counts)), "max": int(max(counts))},
        "spot_size_cells": {"median": float(np.median(sizes)), "p90": float(np.percentile(sizes, 90))},
        "splits": splits, "merges": merges, "births": births,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="ADIOS2's Gray-Scott in numpy: spot statistics as JSON.")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    a = p.parse_args(argv)
    print(json.dumps(summary(a.frames, a.every, a.seed, (a.size,) * 3, a.dtype)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
