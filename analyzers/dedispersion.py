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

Distributed: the tree pairs channels in data order, so level ``L`` nodes are
fixed subbands of ``2**L`` channels aligned on the global channel index.  Each
rank runs the lower levels on the subbands it holds (zeros for channels it
lacks: the transform is linear); rank 0 adds the partial subband outputs and
runs the upper levels.  With integer-valued (quantised) input every sum is
exact in float32, so the plane is bit-identical however channels are spread.
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
    i_upper: np.ndarray  # row of the upper (higher-frequency) child, per output row
    i_lower: np.ndarray  # row of the lower child (the zero row for carried nodes)
    shift: np.ndarray  # time shift of the lower child
    max_shift: int  # over the whole level (every subband trims the same width)
    n_rows: int


class FDMT:
    """FDMT over the whole band for band delays ``d_min..d_max``, split at fixed subbands.

    ``freqs_mhz`` are all channel centres in data order (monotone, either
    direction).  Channels are merged pairwise in data order, so the nodes of
    level ``l`` are aligned runs of ``2**l`` channels; with ``subband = 2**L``
    the nodes of level ``L`` are the fixed subbands ``[k*S, (k+1)*S)`` of the
    global channel index.  ``lower(k, x)`` runs levels ``1..L`` on subband
    ``k`` (its channels, zeros for channels this rank lacks: the transform is
    linear, so partial inputs give partial outputs that add up exactly);
    ``upper(rows)`` runs the remaining levels on all subbands' outputs stacked
    (``stack``) and gives the DM–time plane: row ``i`` = trial ``d_min + i``,
    column ``t`` = arrival (at the highest channel) ``t``.  ``__call__`` does
    both.  The split points depend only on the global channel index, never on
    how channels are spread over ranks.
    """

    def __init__(self, freqs_mhz: Sequence[float], d_min: int, d_max: int, *, subband: int = 0,
                 device: torch.device | str = "cpu") -> None:
        f = np.asarray(freqs_mhz, dtype=np.float64)
        self.device = torch.device(device)
        self.n_chan = n = f.size
        self.d_min, self.d_max = int(d_min), int(d_max)
        inv = (f / 1e3) ** -2
        # nodes per level: (first, stop) channel range; children (upper, lower or None)
        nodes: list[list[tuple[int, int]]] = [[(c, c + 1) for c in range(n)]]
        kids: list[list[tuple[int, int | None]]] = [[]]

        def top(nd):  # f^-2 of the node's highest channel
            return min(inv[nd[0]], inv[nd[1] - 1])

        def bot(nd):
            return max(inv[nd[0]], inv[nd[1] - 1])

        while len(nodes[-1]) > 1:
            prev, cur, ch = nodes[-1], [], []
            for j in range(0, len(prev), 2):
                if j + 1 < len(prev):
                    a, b = prev[j], prev[j + 1]
                    cur.append((a[0], b[1]))
                    ch.append((j, j + 1) if top(a) <= top(b) else (j + 1, j))
                else:
                    cur.append(prev[j])
                    ch.append((j, None))
            nodes.append(cur)
            kids.append(ch)
        n_lv = len(nodes) - 1
        split = int(round(math.log2(subband))) if subband and subband > 1 else n_lv
        if subband and 2 ** split != subband:
            raise ValueError(f"subband must be a power of two, got {subband}")
        self.split = min(split, n_lv)
        self.subband = 2 ** self.split
        # delay ranges, top-down (the top node's delay is the global band delay)
        rng: list[list[tuple[int, int]]] = [[] for _ in nodes]
        rng[n_lv] = [(self.d_min, self.d_max)]
        for li in range(n_lv, 0, -1):
            child = [(0, 0)] * len(nodes[li - 1])
            for j, ((lo, hi), (u, lw)) in enumerate(zip(rng[li], kids[li])):
                nd = nodes[li][j]
                if lw is None:
                    child[u] = (lo, hi)
                    continue
                span = bot(nd) - top(nd)
                nu, nl = nodes[li - 1][u], nodes[li - 1][lw]
                ends = []
                for d in (lo, hi):
                    kk = d / span
                    ends.append((int(np.rint(kk * (bot(nu) - top(nu)))), d - int(np.rint(kk * (top(nl) - top(nu))))))
                child[u] = (ends[0][0], ends[1][0])
                child[lw] = (ends[0][1], ends[1][1])
            rng[li - 1] = child
        offs = [np.concatenate([[0], np.cumsum([hi - lo + 1 for lo, hi in r])]).astype(np.int64) for r in rng]
        self.levels: list[_Level] = []
        for li in range(1, n_lv + 1):
            iu, il, sh = [], [], []
            zero = int(offs[li - 1][-1])
            for j, ((lo, hi), (u, lw)) in enumerate(zip(rng[li], kids[li])):
                nd = nodes[li][j]
                d = np.arange(lo, hi + 1, dtype=np.int64)
                if lw is None:
                    iu.append(offs[li - 1][u] + d - rng[li - 1][u][0])
                    il.append(np.full(d.size, zero, np.int64))
                    sh.append(np.zeros(d.size, np.int64))
                    continue
                span = bot(nd) - top(nd)
                kk = d / span
                nu, nl = nodes[li - 1][u], nodes[li - 1][lw]
                du = np.rint(kk * (bot(nu) - top(nu))).astype(np.int64)
                shift = np.rint(kk * (top(nl) - top(nu))).astype(np.int64)
                iu.append(offs[li - 1][u] + du - rng[li - 1][u][0])
                il.append(offs[li - 1][lw] + (d - shift) - rng[li - 1][lw][0])
                sh.append(shift)
            iu_a, il_a, sh_a = (np.concatenate(x) for x in (iu, il, sh))
            self.levels.append(_Level(iu_a, il_a, sh_a, int(sh_a.max()) if sh_a.size else 0, iu_a.size))
        self.shift_lower = sum(lv.max_shift for lv in self.levels[: self.split])
        self.total_shift = sum(lv.max_shift for lv in self.levels)
        self.row_adds = sum(lv.n_rows for lv in self.levels)  # rows added per sample
        # subbands: nodes of level `split`; per subband the local index arrays of levels 1..split
        self.subbands = nodes[self.split]
        self._offs, self._nodes = offs, nodes
        self._lower: list[list[_Level]] = []
        for k in range(len(self.subbands)):
            local = []
            for li in range(1, self.split + 1):
                j0, j1 = k << (self.split - li), min((k + 1) << (self.split - li), len(nodes[li]))
                c0, c1 = k << (self.split - li + 1), min((k + 1) << (self.split - li + 1), len(nodes[li - 1]))
                r0, r1 = offs[li][j0], offs[li][j1]
                base, zero_local = offs[li - 1][c0], offs[li - 1][c1] - offs[li - 1][c0]
                lv = self.levels[li - 1]
                iu = lv.i_upper[r0:r1] - base
                il = lv.i_lower[r0:r1]
                il = np.where(il == offs[li - 1][-1], zero_local + base, il) - base
                local.append(_Level(iu, il, lv.shift[r0:r1], lv.max_shift, int(r1 - r0)))
            self._lower.append(local)
        self.sub_rows = [int(offs[self.split][k + 1] - offs[self.split][k]) for k in range(len(self.subbands))]
        self._torch_levels: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
        #: Run the device path (torch gathers) on CPU tensors too: the GPU code checked where there is none.
        self.gather_on_cpu = False

    # --- compute ----------------------------------------------------------------
    def lower(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Levels 1..split on subband ``k``: ``(subband channels, T)`` → ``(sub_rows[k], T - shift_lower)``."""
        return self._run(x, self._lower[k], ("lower", k))

    def upper(self, rows: torch.Tensor) -> torch.Tensor:
        """The remaining levels on the stacked subband outputs → plane ``(n_trials, width)``."""
        return self._run(rows, self.levels[self.split:], ("upper",))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.lower(k, x[a:b]) for k, (a, b) in enumerate(self.subbands)]
        return self.upper(parts[0] if len(parts) == 1 else torch.cat(parts, 0))

    def _run(self, x: torch.Tensor, levels: Sequence[_Level], key) -> torch.Tensor:
        if not levels:
            return x
        if x.device.type == "cpu" and not self.gather_on_cpu:
            a = np.empty((x.shape[0] + 1, x.shape[1]), dtype=np.float32)
            a[:-1] = x.numpy()
            a[-1] = 0.0
            for lv in levels:
                a = _level_numpy(a, lv)
            return torch.from_numpy(a[:-1])
        if key not in self._torch_levels:
            self._torch_levels[key] = [(torch.as_tensor(lv.i_upper, device=x.device),
                                         torch.as_tensor(lv.i_lower, device=x.device),
                                         torch.as_tensor(lv.shift, device=x.device)) for lv in levels]
        a = torch.cat([x, torch.zeros((1, x.shape[1]), dtype=x.dtype, device=x.device)], 0)
        for lv, (iu, il, sh) in zip(levels, self._torch_levels[key]):
            width = a.shape[1]
            w_out = width - lv.max_shift
            # every output row reads a flat offset of this level: gather from an overlapping view
            view = a.reshape(-1).as_strided((a.numel() - w_out + 1, w_out), (1, 1))
            out = torch.empty((lv.n_rows + 1, w_out), dtype=x.dtype, device=x.device)
            torch.add(view.index_select(0, iu * width), view.index_select(0, il * width + sh), out=out[:-1])
            out[-1].zero_()
            a = out
        return a[:-1]


def _level_numpy(a: np.ndarray, lv: _Level) -> np.ndarray:
    """One FDMT level on the CPU: one cache-friendly add per output row (no large temporaries)."""
    width = a.shape[1]
    w_out = width - lv.max_shift
    out = np.empty((lv.n_rows + 1, w_out), dtype=a.dtype)
    zero = a.shape[0] - 1
    add = np.add
    for r, (u, lo, s) in enumerate(zip(lv.i_upper.tolist(), lv.i_lower.tolist(), lv.shift.tolist())):
        if lo == zero:
            out[r] = a[u, :w_out]
        else:
            add(a[u, :w_out], a[lo, s:s + w_out], out=out[r])
    out[-1] = 0.0
    return out


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
