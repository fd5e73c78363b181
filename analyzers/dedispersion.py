"""Incoherent dedispersion in torch: a DM plan with time scrunching, and the FDMT.

Conventions
-----------
* Data are ``(channels, samples)``; channel ``c`` has centre frequency
  ``freqs_mhz[c]`` (any order).  The reference frequency is the highest
  channel centre of the *whole band* (``f_ref``): a pulse "arrives" at time
  ``t`` when it crosses ``f_ref``; at frequency ``f`` it is seen at
  ``t + K_DM * DM * (f^-2 - f_ref^-2)`` with ``K_DM = 4.148808e-3 s GHz^2``.
* A DM trial is an integer *band delay* ``D``: the delay, in (scrunched)
  samples, between ``f_ref`` and the lowest channel centre of the whole band.
  One trial per sample of band delay is the full-resolution grid of the FDMT.
* The DM plan splits [dm_min, dm_max] into ranges; range ``k`` is searched
  after summing ``s_k`` adjacent samples (time scrunching), chosen where the
  dispersion smearing inside the lowest channel already exceeds ``s_k``
  samples, so the scrunch costs little S/N.

FDMT (Zackay & Ofek 2017)
-------------------------
Channels are merged pairwise, level by level; a subband ``S`` holds, for each
delay ``d`` across it (between its highest and lowest channel centres), the sum
of its channels along the dispersion curve.  Merging the upper half ``U`` and
lower half ``L``: ``A_S[d](t) = A_U[d_U](t) + A_L[d_L](t + shift)`` with
``d_U``, ``d_L``, ``shift`` the rounded delays of the same curve.  The delay
ranges of every subband are derived top-down from the DM range asked for, so
a range ``[D_min, D_max]`` costs about ``(D_max - D_min + n_sub) * log2(n_chan)``
row additions per sample, not ``D_max * n_chan``.  Each level is one gather
+ add over all its rows (``as_strided`` view for the time shifts).

A *channel group* is a contiguous run of channels (a rank's subbands); its
FDMT output is mapped onto the global DM trials (``partial_plane``), so the
planes of several groups/ranks simply add up (the distributed case).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch

K_DM = 4.148808e-3  # s GHz^2 cm^3 / pc


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def band_delay_s(dm: float | np.ndarray, f_lo_mhz: float, f_hi_mhz: float) -> float | np.ndarray:
    """Dispersion delay (s) of ``f_lo`` behind ``f_hi`` at ``dm``."""
    return K_DM * np.asarray(dm) * ((f_lo_mhz / 1e3) ** -2 - (f_hi_mhz / 1e3) ** -2)


def smearing_s(dm: float, f_mhz: float, chan_bw_mhz: float) -> float:
    """Intra-channel dispersion smearing (s) at ``f`` for a channel ``chan_bw`` wide."""
    return 2 * K_DM * dm * (abs(chan_bw_mhz) / 1e3) / (f_mhz / 1e3) ** 3


@dataclasses.dataclass(frozen=True)
class DMRange:
    """One range of the DM plan: trials ``d_min..d_max`` (band delays in scrunched samples)."""

    scrunch: int
    d_min: int
    d_max: int
    dm_per_trial: float  # DM step of one trial

    @property
    def n_trials(self) -> int:
        return self.d_max - self.d_min + 1

    def dm(self, d: np.ndarray | int) -> np.ndarray:
        return np.asarray(d, dtype=np.float64) * self.dm_per_trial


def plan_dm_ranges(
    freqs_mhz: Sequence[float],
    tsamp_s: float,
    dm_min: float,
    dm_max: float,
    *,
    max_scrunch: int = 16,
    smear_tolerance: float = 1.0,
) -> list[DMRange]:
    """Split [dm_min, dm_max] into ranges searched at scrunch 1, 2, 4, …

    Scrunch ``s`` starts at the DM where the smearing in the lowest channel
    reaches ``s * smear_tolerance`` samples (``smear_tolerance`` large or
    ``max_scrunch`` 1 gives the full-resolution grid).
    """
    f = np.asarray(freqs_mhz, dtype=np.float64)
    f_lo, f_hi = float(f.min()), float(f.max())
    chan_bw = float(np.median(np.abs(np.diff(np.sort(f))))) if f.size > 1 else 1.0
    smear_per_dm = smearing_s(1.0, f_lo, chan_bw) / tsamp_s  # samples per unit DM
    delay_per_dm = float(band_delay_s(1.0, f_lo, f_hi)) / tsamp_s  # samples per unit DM
    ranges: list[DMRange] = []
    s = 1
    lo = dm_min
    while lo <= dm_max:
        nxt = 2 * s * smear_tolerance / smear_per_dm if smear_per_dm > 0 else math.inf
        hi = dm_max if (s >= max_scrunch or nxt >= dm_max) else nxt
        dm_per_trial = s / delay_per_dm
        d_min = int(math.floor(lo / dm_per_trial))
        d_max = int(math.ceil(hi / dm_per_trial))
        if ranges:
            d_min = max(d_min, int(math.floor(ranges[-1].d_max * ranges[-1].scrunch / s)))
        ranges.append(DMRange(s, d_min, max(d_max, d_min), dm_per_trial))
        if hi >= dm_max:
            break
        lo, s = hi, 2 * s
    return ranges


@dataclasses.dataclass
class _Level:
    i_upper: torch.Tensor  # row of the upper child, per output row
    i_lower: torch.Tensor  # row of the lower child (a zero row for carried subbands)
    shift: torch.Tensor  # time shift of the lower child
    max_shift: int
    n_rows: int


class FDMT:
    """FDMT over one contiguous group of channels, for global band delays ``d_min..d_max``.

    ``freqs_mhz`` are the group's channel centres (in data order); ``f_ref``
    and ``f_bottom`` the highest and lowest channel centres of the whole band
    (the group may be a subband of it).  ``__call__`` maps ``(n_chan, T)`` to
    the group's contribution to the global DM–time plane ``(n_trials, T)``;
    row ``i`` is trial ``d_min + i``; column ``t`` is valid where
    ``t + max delay < T`` (later columns read past the data: discard them).
    """

    def __init__(self, freqs_mhz: Sequence[float], f_ref_mhz: float, f_bottom_mhz: float,
                 d_min: int, d_max: int, device: torch.device | str = "cpu") -> None:
        f = np.asarray(freqs_mhz, dtype=np.float64)
        self.device = torch.device(device)
        self.order = np.argsort(-f, kind="stable")  # highest first
        inv = (f[self.order] / 1e3) ** -2  # f^-2, increasing
        self.n_chan = f.size
        self.d_min, self.d_max = int(d_min), int(d_max)
        span_global = (f_bottom_mhz / 1e3) ** -2 - (f_ref_mhz / 1e3) ** -2
        g_top, g_bot = inv[0], inv[-1]
        # global trial D -> group delay and group offset (relative to f_ref)
        dd = np.arange(self.d_min, self.d_max + 1, dtype=np.float64)
        k = dd / span_global  # samples per unit f^-2
        self._g_delay = np.rint(k * (g_bot - g_top)).astype(np.int64)
        self._g_offset = np.rint(k * (g_top - (f_ref_mhz / 1e3) ** -2)).astype(np.int64)
        self.max_offset = int(self._g_offset.max()) if self._g_offset.size else 0
        # tree: level 0 = single channels
        nodes = [(i, i) for i in range(self.n_chan)]  # (first, last) channel index in sorted order
        tree: list[list[tuple[int, int, int | None, int | None]]] = []  # per level: (first, last, upper, lower)
        while len(nodes) > 1:
            nxt = []
            lvl = []
            for j in range(0, len(nodes) - 1, 2):
                (a, _), (_, b) = nodes[j], nodes[j + 1]
                lvl.append((a, b, j, j + 1))
                nxt.append((a, b))
            if len(nodes) % 2:
                lvl.append((nodes[-1][0], nodes[-1][1], len(nodes) - 1, None))
                nxt.append(nodes[-1])
            tree.append(lvl)
            nodes = nxt
        # delay ranges, top-down
        g_lo, g_hi = int(self._g_delay.min()), int(self._g_delay.max())
        ranges: list[list[tuple[int, int]]] = [[(g_lo, g_hi)]]
        for li in range(len(tree) - 1, -1, -1):
            lvl = tree[li]
            parent = ranges[0]
            n_child = len(tree[li - 1]) if li > 0 else self.n_chan
            child = [[1 << 60, -(1 << 60)] for _ in range(n_child)]
            for (a, b, u, l), (lo, hi) in zip(lvl, parent):
                span = inv[b] - inv[a]
                for node in (u, l):
                    if node is None:
                        continue
                    na, nb = self._node_span(tree, li, node)
                    ua = self._node_span(tree, li, u)[0]
                    for d in (lo, hi):
                        kk = d / span if span > 0 else 0.0
                        if node == u:
                            dn = int(np.rint(kk * (inv[nb] - inv[na])))
                        else:  # the lower child ends exactly at the parent's delay
                            dn = d - int(np.rint(kk * (inv[na] - inv[ua])))
                        child[node][0] = min(child[node][0], dn)
                        child[node][1] = max(child[node][1], dn)
            ranges.insert(0, [(c[0], c[1]) for c in child])
        # ranges[0] = leaves (must be (0, 0)); ranges[L] = level L outputs
        self.levels: list[_Level] = []
        prev_rng = ranges[0]
        prev_off = np.concatenate([[0], np.cumsum([hi - lo + 1 for lo, hi in prev_rng])])
        for li, lvl in enumerate(tree):
            rng = ranges[li + 1]
            zero_row = int(prev_off[-1])
            iu, il, sh = [], [], []
            for (a, b, u, l), (lo, hi) in zip(lvl, rng):
                span = inv[b] - inv[a]
                d = np.arange(lo, hi + 1, dtype=np.float64)
                kk = d / span if span > 0 else np.zeros_like(d)
                ua, ub = self._node_span(tree, li, u)
                du = np.rint(kk * (inv[ub] - inv[ua])).astype(np.int64)
                iu.append(prev_off[u] + du - prev_rng[u][0])
                if l is None:
                    il.append(np.full(d.size, zero_row, dtype=np.int64))
                    sh.append(np.zeros(d.size, dtype=np.int64))
                else:
                    la, lb = self._node_span(tree, li, l)
                    shift = np.rint(kk * (inv[la] - inv[ua])).astype(np.int64)
                    dl = d.astype(np.int64) - shift  # the lower child ends exactly at d
                    il.append(prev_off[l] + dl - prev_rng[l][0])
                    sh.append(shift)
            iu_a, il_a, sh_a = (np.concatenate(x) for x in (iu, il, sh))
            self.levels.append(_Level(
                torch.as_tensor(iu_a, device=self.device), torch.as_tensor(il_a, device=self.device),
                torch.as_tensor(sh_a, device=self.device), int(sh_a.max()) if sh_a.size else 0, iu_a.size))
            prev_rng = rng
            prev_off = np.concatenate([[0], np.cumsum([hi - lo + 1 for lo, hi in rng])])
        self.top_range = ranges[-1][0]
        self.total_shift = sum(lv.max_shift for lv in self.levels)
        self.max_delay = int((self._g_delay + self._g_offset).max()) if self._g_delay.size else 0
        self.row_adds = sum(lv.n_rows for lv in self.levels)  # rows added per sample
        self._g_row = torch.as_tensor(self._g_delay - self.top_range[0], device=self.device)
        self._g_off_t = torch.as_tensor(self._g_offset, device=self.device)
        self._order_t = torch.as_tensor(self.order, device=self.device)
        self._lists: list[tuple[list[int], list[int], list[int]]] | None = None
        self._identity = bool(np.array_equal(self._g_delay - self.top_range[0], np.arange(self._g_delay.size)))

    # --- helpers for the tree ---------------------------------------------------
    def _node_span(self, tree, li: int, node: int) -> tuple[int, int]:
        """(first, last) sorted-channel index of ``node`` of the level below level ``li``."""
        if li == 0:
            return node, node
        a, b, _, _ = tree[li - 1][node]
        return a, b

    # --- compute ----------------------------------------------------------------
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Group FDMT: ``(n_chan, T)`` → ``(n_group_delays, T)`` (group-delay rows)."""
        t_len = x.shape[1]
        a = torch.zeros((self.n_chan + 1, t_len + self.total_shift), dtype=x.dtype, device=x.device)
        a[: self.n_chan, :t_len] = x.index_select(0, self._order_t) if self.n_chan > 1 else x
        width = a.shape[1]
        if a.device.type == "cpu":
            return self._transform_rows(a, width)[:, :t_len]
        for lv in self.levels:
            w_out = width - lv.max_shift
            # every row of the next level starts at a flat offset of this one:
            # an overlapping (offsets, w_out) view gathered with index_select
            rows = a.view(-1).as_strided((a.numel() - w_out + 1, w_out), (1, 1))
            out = torch.empty((lv.n_rows + 1, w_out), dtype=x.dtype, device=x.device)
            torch.add(rows.index_select(0, lv.i_upper * width), rows.index_select(0, lv.i_lower * width + lv.shift),
                      out=out[: lv.n_rows])
            out[lv.n_rows].zero_()
            a, width = out, w_out
        return a[:-1, :t_len]

    def _transform_rows(self, a: torch.Tensor, width: int) -> torch.Tensor:
        """CPU path: one cache-friendly add per output row (no large temporaries)."""
        if self._lists is None:
            self._lists = [(lv.i_upper.tolist(), lv.i_lower.tolist(), lv.shift.tolist()) for lv in self.levels]
        an = a.numpy()
        add = np.add
        for lv, (iu, il, sh) in zip(self.levels, self._lists):
            w_out = width - lv.max_shift
            out = np.empty((lv.n_rows + 1, w_out), dtype=an.dtype)
            for r in range(lv.n_rows):
                lo = il[r]
                if lo == an.shape[0] - 1:  # carried subband: copy
                    out[r] = an[iu[r], :w_out]
                else:
                    s = sh[r]
                    add(an[iu[r], :w_out], an[lo, s:s + w_out], out=out[r])
            out[lv.n_rows] = 0.0
            an, width = out, w_out
        return torch.from_numpy(an[:-1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Contribution of this group to the global plane ``(n_trials, T)``."""
        g = self.transform(x)
        t_len = g.shape[1]
        if self.max_offset == 0:
            if self._identity:
                return g
            return g.index_select(0, self._g_row)
        pad = torch.zeros((g.shape[0], t_len + self.max_offset), dtype=g.dtype, device=g.device)
        pad[:, :t_len] = g
        view = pad.as_strided((pad.shape[0], self.max_offset + 1, t_len), (pad.stride(0), 1, 1))
        return view[self._g_row, self._g_off_t]


def brute_force_plane(x: np.ndarray, freqs_mhz: Sequence[float], f_ref_mhz: float, f_bottom_mhz: float,
                      d_min: int, d_max: int) -> np.ndarray:
    """The straightforward search (numpy): one shifted sum over channels per trial."""
    f = np.asarray(freqs_mhz, dtype=np.float64)
    span = (f_bottom_mhz / 1e3) ** -2 - (f_ref_mhz / 1e3) ** -2
    frac = ((f / 1e3) ** -2 - (f_ref_mhz / 1e3) ** -2) / span
    t_len = x.shape[1]
    out = np.zeros((d_max - d_min + 1, t_len), dtype=np.float32)
    for i, d in enumerate(range(d_min, d_max + 1)):
        shifts = np.rint(d * frac).astype(np.int64)
        row = out[i]
        for c in range(f.size):
            s = shifts[c]
            row[: t_len - s] += x[c, s:]
    return out


def scrunch(x: torch.Tensor, s: int) -> torch.Tensor:
    """Sum ``s`` adjacent samples along the last axis (drops an incomplete tail)."""
    if s == 1:
        return x
    n = x.shape[-1] // s
    return x[..., : n * s].reshape(*x.shape[:-1], n, s).sum(-1)
