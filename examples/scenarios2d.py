"""Blobs of very different amplitudes over mildly correlated noise, and uneven block layouts.

Another field the detector was not built on (``Amplitudes``), and the block
layouts a user's code may write (``uneven_blocks``).  Like
``scenario_sim.py`` it shares no code with ``intransit.analyzers``: numpy and
``scipy.ndimage`` only.

Field, per step, shape ``(ny, nx)``, both axes periodic::

    field = noise + sum_k peak_k * exp(-r_k^2 / (2 sigma_k^2))

* noise: white Gaussian noise smoothed with a Gaussian of ``noise_corr``
  cells (default 1; ``mode="wrap"``), divided by the filter's white-noise gain
  so its standard deviation is 1; new every step.
* blobs: isotropic Gaussians, ``sigma`` drawn in 1.5-3.5 cells, ``peak``
  drawn log-uniformly in ``peak`` (default 4-64 noise standard deviations: a
  factor 16 between the faintest and the brightest).  A blob of peak 4 is
  "near the noise": the field's own maxima of pure noise reach ~4 in a 256^2
  frame, so only its extent (a matched filter) tells it apart.  The bright
  blobs' tails are wide and they inflate the field's plain standard deviation
  (several units at 256^2), so a threshold in plain standard deviations loses
  the faint ones.
* motion: constant speed 0.5-1.5 cells per step along gently curving paths
  (heading turns 0-0.03 rad per step, either sense); starts >= 12 cells apart
  (minimum image).  Every blob lives for the whole run.

Ground truth (``render``): ``[[id, c0, c1], ...]`` with ``c0`` the row and
``c1`` the column of each centre in [0, ny) and [0, nx) (cell i has
coordinate i); ``blob_table`` gives each blob's sigma and peak.

``uneven_blocks(shape, parts)`` cuts any array into a grid of uneven boxes
(``parts[k]``: relative sizes along axis k), the way a simulation's ranks
may own unequal shares.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage


def uneven_blocks(shape: Sequence[int], parts: Sequence[Sequence[float]]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(start, count)`` of every box of the grid with relative sizes ``parts[k]`` along axis ``k``.

    The boxes tile the array exactly (every cell in one box); an axis with
    ``parts[k] = [1]`` is not cut.  Sizes are rounded cumulatively, so they
    add up to ``shape[k]``.  A part that rounds to zero cells is an error
    naming the axis.
    """
    shape = tuple(int(n) for n in shape)
    if len(parts) != len(shape):
        raise ValueError(f"parts must give one list of relative sizes per axis ({len(shape)}); got {len(parts)}")
    edges_per_axis = []
    for k, (n, ps) in enumerate(zip(shape, parts)):
        ps = [float(p) for p in ps]
        if not ps or any(not math.isfinite(p) or p <= 0 for p in ps):
            raise ValueError(f"parts[{k}] must be positive numbers; got {list(ps)}")
        total, acc, edges = sum(ps), 0.0, [0]
        for p in ps[:-1]:
            acc += p
            edges.append(int(round(acc / total * n)))
        edges.append(n)
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"parts[{k}] = {list(ps)} gives an empty block along axis {k} of {n} cells")
        edges_per_axis.append(list(zip(edges, edges[1:])))
    out: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for combo in np.ndindex(*[len(e) for e in edges_per_axis]):
        spans = [edges_per_axis[k][i] for k, i in enumerate(combo)]
        out.append((tuple(a for a, _ in spans), tuple(b - a for a, b in spans)))
    return out


def cut(field: np.ndarray, blocks: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """The field as ``(start, array)`` pieces of ``blocks`` (copies), as a writer would Put them."""
    return [(tuple(int(s) for s in start),
             np.ascontiguousarray(field[tuple(slice(s, s + c) for s, c in zip(start, count))]))
            for start, count in blocks]


class Amplitudes:
    """Blobs of peaks spread over a factor 16 (the faint ones near the noise), step by step, with truth."""

    def __init__(self, ny: int, nx: int, n_blobs: int, seed: int, noise_corr: float = 1.0,
                 peak: tuple[float, float] = (4.0, 64.0), sigma: tuple[float, float] = (1.5, 3.5),
                 min_separation: float = 12.0) -> None:
        if ny < 16 or nx < 16:
            raise ValueError(f"the grid must be at least 16 x 16; got {ny} x {nx}")
        if not 0 < peak[0] <= peak[1]:
            raise ValueError(f"peak must be (lo, hi) with 0 < lo <= hi noise standard deviations; got {peak}")
        if not 0 < sigma[0] <= sigma[1] < min(ny, nx) / 10:
            raise ValueError(f"sigma must be (lo, hi) with 0 < lo <= hi < {min(ny, nx) / 10} cells; got {sigma}")
        if noise_corr < 0:
            raise ValueError(f"noise_corr must be >= 0 cells; got {noise_corr}")
        self.ny, self.nx, self.noise_corr = int(ny), int(nx), float(noise_corr)
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        pos: list[np.ndarray] = []
        tries = 0
        while len(pos) < n_blobs:
            p = rng.uniform(0, (ny, nx))
            if all(self._dist(p, q) >= min_separation for q in pos):
                pos.append(p)
            tries += 1
            if tries > 20000:
                raise ValueError(f"{n_blobs} blobs do not fit {min_separation} cells apart in {ny}x{nx}")
        self.n = int(n_blobs)
        self.pos = np.array(pos, dtype=float).reshape(-1, 2)
        self.sigma = rng.uniform(sigma[0], sigma[1], self.n)
        self.peak = np.exp(rng.uniform(math.log(peak[0]), math.log(peak[1]), self.n))
        self.speed = rng.uniform(0.5, 1.5, self.n)
        self.heading = rng.uniform(0, 2 * np.pi, self.n)
        self.turn = rng.uniform(0.0, 0.03, self.n) * rng.choice([-1.0, 1.0], self.n)
        if self.noise_corr > 0:
            delta = np.zeros((8 * int(math.ceil(self.noise_corr)) + 1,) * 2)
            delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1.0
            self.noise_gain = float(np.sqrt((ndimage.gaussian_filter(delta, self.noise_corr, mode="wrap") ** 2).sum()))
        else:
            self.noise_gain = 1.0

    def _dist(self, a: np.ndarray, b: np.ndarray) -> float:
        L = np.array([self.ny, self.nx], dtype=float)
        d = (np.asarray(a) - np.asarray(b) + L / 2) % L - L / 2
        return float(np.hypot(*d))

    def advance(self) -> None:
        """One step: move along the heading, then turn."""
        self.pos[:, 0] = (self.pos[:, 0] + self.speed * np.sin(self.heading)) % self.ny
        self.pos[:, 1] = (self.pos[:, 1] + self.speed * np.cos(self.heading)) % self.nx
        self.heading += self.turn

    def noise(self) -> np.ndarray:
        white = self.rng.standard_normal((self.ny, self.nx))
        if self.noise_corr <= 0:
            return white
        return ndimage.gaussian_filter(white, self.noise_corr, mode="wrap") / self.noise_gain

    def render(self, with_noise: bool = True) -> tuple[np.ndarray, list[list[float]]]:
        """The current field and the truth centres ``[[id, c0, c1], ...]``.

        Each blob is drawn on a patch of +-5 sigma around its centre (periodic
        indices), so a frame costs O(blobs x patch), not O(blobs x grid).
        ``with_noise=False`` draws the blobs alone (for checks); it draws no
        noise, so the noise stream of later steps is not the same.
        """
        field = self.noise() if with_noise else np.zeros((self.ny, self.nx))
        for k in range(self.n):
            r = int(math.ceil(5 * self.sigma[k]))
            cy, cx = self.pos[k]
            iy = np.arange(math.floor(cy) - r, math.floor(cy) + r + 2)
            ix = np.arange(math.floor(cx) - r, math.floor(cx) + r + 2)
            g = self.peak[k] * np.exp(-((iy[:, None] - cy) ** 2 + (ix[None, :] - cx) ** 2) / (2 * self.sigma[k] ** 2))
            idx = np.ix_(iy % self.ny, ix % self.nx)
            if len(iy) <= self.ny and len(ix) <= self.nx:
                field[idx] += g  # the patch fits: no index repeats
            else:
                np.add.at(field, idx, g)
        centres = []
        for k in range(self.n):
            c0, c1 = float(self.pos[k, 0]) % self.ny, float(self.pos[k, 1]) % self.nx
            centres.append([k, 0.0 if c0 >= self.ny else c0, 0.0 if c1 >= self.nx else c1])  # -1e-16 % n == n
        return field, centres

    def blob_table(self) -> list[dict]:
        return [{"id": k, "sigma": float(self.sigma[k]), "peak": float(self.peak[k])} for k in range(self.n)]
