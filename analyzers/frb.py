"""Fast radio burst search over a continuous (channels × samples) stream.

One ADIOS2 step is one *chunk* of a dynamic spectrum: a 2D global array
``(n_chan, chunk_len)``, channel ``c`` at ``fch1_mhz + c * foff_mhz`` (SIGPROC
convention), samples ``tsamp_s`` apart, decomposed into channel *subband*
blocks.  Absolute time: chunk ``ctx.step`` starts at sample
``ctx.step * chunk_len``.

Per rank (``process_blocks``, its channels only; the service hands whole
time rows, ``whole_axes = (1,)``):

1. Robust normalisation per channel (median, 1.4826·MAD on a subsample),
   then quantisation to 1/64 σ (integer-valued float32: every later sum is
   exact, so results are bit-identical however channels are spread).
2. One ``allreduce`` per step: full-length per-channel statistics (noise
   level σ/median, kurtosis, std) — every rank judges every channel against
   the whole band (robust z > ``mask_z`` → masked) — and the zero-DM series
   (per-sample sum over the channels the previous chunk judged good).  The
   zero-DM mean is subtracted; samples whose zero-DM S/N exceeds
   ``zero_dm_clip`` are blanked (broadband bursts).
3. The last ``overlap`` samples of the previous chunk (largest FDMT shift +
   widest boxcar + a look-ahead) are prepended; a gap in the ADIOS2 step
   numbers (steps the writer dropped) resets that buffer (``gap_resets``).
4. Per range of the DM plan (time scrunch 1, 2, 4, … where the smearing
   allows), the lower FDMT levels on the fixed, globally aligned subbands of
   ``subband`` channels this rank holds: only these partial subband outputs
   travel.

On rank 0 (``combine``): partial subband outputs are added, the upper FDMT
levels give the DM–time plane, boxcars (cumulative sums, in cache-sized
tiles) of several widths give S/N = sum / sqrt(N_good · scrunch · width);
the best (DM, width) per start sample above ``snr_threshold`` is kept, and
refined over every integer width around it (``refine``); detections are
clustered in time (friends of friends).  Arrival times are searched a
look-ahead beyond the chunk's own span, so a cluster that starts in the chunk
is complete when it is emitted — nothing is held to the next step, nothing
lost at the end of the stream — and detections chained to a cluster already
emitted are dropped (so a pulse across two chunks is reported once).
Candidates below ``min_dm`` are zero-DM interference and are counted, not
reported.

Events: ``t_s`` (arrival of the pulse centre at ``f_ref`` = highest channel
centre, seconds from the stream start), ``sample``, ``dm``, ``width_s``,
``snr``, ``window_start_s``/``window_end_s`` (the data to dump: the sweep
through the band, padded by the width), ``n_det``.  Scores: ``n_candidates``,
``max_snr`` (0 when none), the best candidate's ``trigger_start_s``/
``trigger_end_s``, ``masked_fraction``, ``clipped_samples``, ``gap_resets``,
``seconds_searched``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from intransit.analyzers.base import Analyzer, StepContext, StepResult, register
from intransit.analyzers.dedispersion import FDMT, DMRange, band_delay_s, pick_device, plan_dm_ranges, scrunch

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Partial:
    """What one rank sends to rank 0 for one chunk: its lower-FDMT subband outputs."""

    subbands: dict[tuple[int, int], np.ndarray]  # (DM range, subband) -> rows (quantised units)
    buf_start: int  # absolute sample of buffer column 0
    n_valid: int  # raw samples of arrival time owned by this chunk, from buf_start
    n_good: int  # good channels over the whole band (same on every rank)
    gap: bool
    masked: int  # masked channels over the whole band
    clipped: int


#: Quantisation step of the normalised data (noise sigma units): sums of
#: integer-valued float32 are exact, so planes are bit-identical whatever the
#: channel split and summation order.  Its noise (1/Q/sqrt(12) sigma) is negligible.
Q = 64.0
#: Normalised samples are clipped to +-CLIP sigma (keeps the sums exact and RFI bounded).
CLIP = 64.0


def _robust_z(v: np.ndarray, floor: float) -> np.ndarray:
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    return (v - med) / max(mad, floor)


Det = tuple  # (start sample, snr, width samples, dm, level)


class FRBSearch(Analyzer):
    """Incoherent dedispersion (FDMT, torch) + boxcar search, chunk by chunk."""

    event_fields = ("t_s", "sample", "dm", "width_s", "snr", "window_start_s", "window_end_s", "n_det")
    score_names = ("n_candidates", "max_snr", "trigger_start_s", "trigger_end_s", "masked_fraction",
                   "clipped_samples", "gap_resets", "seconds_searched", "rfi_rejected")
    whole_axes = (1,)  # axis 0 = channels (split across ranks), axis 1 = time (whole on each rank)

    def __init__(
        self,
        *,
        fch1_mhz: float,
        foff_mhz: float,
        tsamp_s: float,
        dm_min: float = 0.0,
        dm_max: float = 1000.0,
        snr_threshold: float = 7.0,
        widths: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
        max_scrunch: int = 16,
        smear_tolerance: float = 1.0,
        subband: int = 64,
        min_dm: float = 2.0,
        mask_z: float = 6.0,
        zero_dm: bool = True,
        zero_dm_clip: float = 6.0,
        cluster_gap: int = 32,
        refine: bool = True,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        if tsamp_s <= 0 or foff_mhz == 0 or dm_max <= dm_min or dm_min < 0:
            raise ValueError("need tsamp_s > 0, foff_mhz != 0 and 0 <= dm_min < dm_max")
        if not widths or min(widths) < 1:
            raise ValueError("widths must be positive sample counts")
        if subband < 1 or subband & (subband - 1):
            raise ValueError(f"subband must be a power of two (channels), got {subband}")
        self.fch1, self.foff, self.tsamp = float(fch1_mhz), float(foff_mhz), float(tsamp_s)
        self.dm_min, self.dm_max = float(dm_min), float(dm_max)
        self.snr_threshold, self.min_dm = float(snr_threshold), float(min_dm)
        self.widths = sorted({int(w) for w in widths})
        self.max_scrunch, self.smear_tolerance = int(max_scrunch), float(smear_tolerance)
        self.subband = int(subband)
        self.mask_z, self.zero_dm, self.zero_dm_clip = float(mask_z), bool(zero_dm), float(zero_dm_clip)
        self.cluster_gap, self.refine = int(cluster_gap), bool(refine)
        self.device = pick_device(device)
        if threads:
            torch.set_num_threads(int(threads))
        self._n_chan: int | None = None
        self._plan: list[DMRange] = []
        self._fdmt: list[FDMT] = []
        self.overlap = 0
        self.lookahead = 0
        # per-rank stream state (local_state_dict)
        self._tail: np.ndarray | None = None
        self._tail_start = 0
        self._last_step: int | None = None
        self._mask: np.ndarray | None = None  # good channels (global verdict of the last chunk)
        # rank-0 state (state_dict)
        self._reach = -math.inf  # last sample covered by an emitted cluster
        self.gap_resets = 0
        self.candidates_total = 0
        self.rfi_rejected_total = 0
        self.samples_searched = 0
        self.busy_seconds = 0.0

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        # 64 channels x 64 samples per step (the contract suite's field)
        return {"fch1_mhz": 1500.0, "foff_mhz": -4.6875, "tsamp_s": 1e-3, "dm_max": 20.0, "widths": [1, 2, 4],
                "subband": 16, "snr_threshold": 6.0, "cluster_gap": 4, "mask_z": 50.0, "min_dm": 0.0}

    # --- geometry ----------------------------------------------------------------
    def freqs(self, n_chan: int) -> np.ndarray:
        return self.fch1 + self.foff * np.arange(n_chan)

    def _setup(self, n_chan: int) -> None:
        if self._n_chan == n_chan:
            return
        f = self.freqs(n_chan)
        self._n_chan, self._f_ref, self._f_bot = n_chan, float(f.max()), float(f.min())
        self._plan = plan_dm_ranges(f, self.tsamp, self.dm_min, self.dm_max,
                                    max_scrunch=self.max_scrunch, smear_tolerance=self.smear_tolerance)
        self._level_widths = [[w // r.scrunch for w in self.widths if w >= r.scrunch] or [1] for r in self._plan]
        self._fdmt = [FDMT(f, r.d_min, r.d_max, subband=self.subband, device=self.device) for r in self._plan]
        s_max = max(r.scrunch for r in self._plan)
        # arrival times searched beyond the chunk's own span, so a cluster that starts in
        # the chunk is complete when it is emitted (no candidate is held to the next step)
        look = self.cluster_gap + 2 * max(self.widths)
        self.lookahead = int(math.ceil(look / s_max) * s_max)
        need = max(r.scrunch * (fd.total_shift + max(ws) + 1) for r, ws, fd in zip(self._plan, self._level_widths, self._fdmt))
        self.overlap = int(math.ceil(need / s_max) * s_max) + self.lookahead
        self._s_max = s_max

    def plan_summary(self) -> dict[str, Any]:
        """The DM plan and its cost against the full-resolution FDMT (per second of data)."""
        assert self._n_chan is not None
        n_f = self._n_chan
        per_s = 1.0 / self.tsamp
        full_trials = int(math.ceil(float(band_delay_s(self.dm_max, self._f_bot, self._f_ref)) / self.tsamp))
        full = per_s * full_trials * math.log2(n_f)
        ours = sum(per_s / r.scrunch * r.n_trials * math.log2(n_f) for r in self._plan)
        rows = sum(per_s / r.scrunch * fd.row_adds for r, fd in zip(self._plan, self._fdmt))
        return {
            "ranges": [{"scrunch": r.scrunch, "dm_lo": float(r.dm(r.d_min)), "dm_hi": float(r.dm(r.d_max)),
                        "trials": r.n_trials, "dm_step": r.dm_per_trial} for r in self._plan],
            "full_res_trials": full_trials,
            "full_res_cost_per_s": full,
            "plan_cost_per_s": ours,
            "plan_row_adds_per_s": rows,
            "cost_ratio": ours / full,
            "overlap_samples": self.overlap,
            "subband": self.subband,
        }

    # --- per rank ----------------------------------------------------------------
    def process_blocks(self, ctx: StepContext) -> _Partial:
        t_begin = time.perf_counter()
        n_chan, chunk = int(ctx.global_shape[0]), int(ctx.global_shape[1])
        self._setup(n_chan)
        # whole-time blocks (the service hands whole bands: whole_axes) are stacked as they are;
        # time pieces of the same channels are stitched
        whole = sorted((int(b.start[0]), b) for b in ctx.blocks if int(b.count[1]) == chunk)
        rows: dict[int, np.ndarray] = {}
        filled: dict[int, int] = {}
        for b in ctx.blocks:
            if int(b.count[1]) == chunk:
                continue
            c0, nc = int(b.start[0]), int(b.count[0])
            t0, nt = int(b.start[1]), int(b.count[1])
            data = np.asarray(b.data, dtype=np.float32)
            for i, c in enumerate(range(c0, c0 + nc)):
                rows.setdefault(c, np.zeros(chunk, np.float32))[t0:t0 + nt] = data[i]
                filled[c] = filled.get(c, 0) + nt
        if any(n != chunk for n in filled.values()):
            raise ValueError("frb needs every channel's whole chunk on one rank (whole_axes = (1,))")
        pieces = [(c0, np.asarray(b.data, dtype=np.float32)) for c0, b in whole]
        pieces += [(c, rows[c][None, :]) for c in sorted(rows)]
        pieces.sort(key=lambda p: p[0])
        chans = np.concatenate([np.arange(c0, c0 + p.shape[0]) for c0, p in pieces]) if pieces else np.zeros(0, np.int64)
        if np.unique(chans).size != chans.size:
            raise ValueError("frb got overlapping blocks")
        x = np.concatenate([p for _, p in pieces], 0) if pieces else np.zeros((0, chunk), np.float32)
        if len(pieces) == 1 and x is pieces[0][1]:
            x = x.copy()  # the block may be the reader's buffer: normalised in place below
        xq, n_good, masked, clipped = self._normalise(x, chans, n_chan, chunk, ctx)
        # overlap with the previous chunk
        start = ctx.step * chunk
        gap = self._last_step is not None and ctx.step != self._last_step + 1
        if self._tail is None or gap or self._tail.shape[0] != xq.shape[0]:
            buf, buf_start = xq, start
        else:
            buf, buf_start = np.concatenate([self._tail, xq], 1), self._tail_start
        self._last_step = ctx.step
        n_valid = max((buf.shape[1] - self.overlap) // self._s_max * self._s_max, 0)
        self._tail, self._tail_start = buf[:, n_valid:].copy(), buf_start + n_valid
        out: dict[tuple[int, int], np.ndarray] = {}
        if n_valid > 0 and chans.size:
            bt = torch.from_numpy(buf).to(self.device)
            scrunched = {1: bt}
            for level, (r, ws, fd) in enumerate(zip(self._plan, self._level_widths, self._fdmt)):
                s = r.scrunch
                need = (n_valid + self.lookahead) // s + max(ws) + 1 + fd.total_shift
                while s not in scrunched:  # 1 -> 2 -> 4 ...: each from the previous (sums of integers: exact)
                    s2 = max(scrunched)
                    prev = scrunched[s2]
                    n2 = prev.shape[1] // 2
                    scrunched[2 * s2] = prev[:, 0:2 * n2:2] + prev[:, 1:2 * n2:2]
                xs = scrunched[s][:, :need]
                for k, (a, b) in enumerate(fd.subbands):
                    i0, i1 = np.searchsorted(chans, a), np.searchsorted(chans, b)
                    if i0 == i1:
                        continue
                    if i1 - i0 == b - a:
                        sub = xs[i0:i1]
                    else:  # this rank holds part of the subband: zeros for the rest
                        sub = torch.zeros((b - a, xs.shape[1]), dtype=xs.dtype, device=xs.device)
                        sub[torch.as_tensor(chans[i0:i1] - a, device=xs.device)] = xs[i0:i1]
                    out[(level, k)] = fd.lower(k, sub).to("cpu").numpy()
        self.busy_seconds += time.perf_counter() - t_begin
        return _Partial(out, buf_start, n_valid, n_good, gap, masked, clipped)

    def _normalise(self, x: np.ndarray, chans: np.ndarray, n_chan: int, chunk: int, ctx: StepContext
                   ) -> tuple[np.ndarray, int, int, int]:
        """Robust normalisation, channel mask, zero-DM filter; data in units of 1/Q sigma.

        One allreduce per step carries full-length per-channel statistics
        (channels are disjoint across ranks, so the sum is exact: every rank
        then judges every channel against the whole band, identically) and
        the per-sample sum over the channels that the previous chunk judged
        good (the zero-DM series; integer sums, exact).  The zero-DM mean thus
        uses the mask of the previous chunk (all live channels for the first),
        and the data of this chunk are masked with this chunk's verdict.
        """
        stats = np.zeros((5, n_chan))
        zsum = np.zeros(chunk)
        n_sub = len(range(0, chunk, max(1, chunk // 4096)))
        xq = x
        if chans.size:
            sub = x[:, :: max(1, chunk // 2048)]
            med = np.median(sub, axis=1)
            sig = 1.4826 * np.median(np.abs(sub - med[:, None]), axis=1)
            dead = sig <= 0
            sig[dead] = 1.0
            # in place, through torch (one fused pass each, faster than numpy's clip)
            xt = torch.from_numpy(x)
            xt.sub_(torch.from_numpy(med.astype(np.float32))[:, None]).mul_(
                torch.from_numpy((Q / sig).astype(np.float32))[:, None]).clamp_(-CLIP * Q, CLIP * Q).round_()
            xq = x
            subn = xq[:, :: max(1, chunk // 4096)].astype(np.float64) / Q
            std = subn.std(1)
            kurt = (subn ** 4).mean(1) / np.maximum(std, 1e-6) ** 4 - 3.0
            ratio = np.log(sig / np.maximum(np.abs(med), 1e-12)) if np.all(np.abs(med) > 0) else np.zeros_like(sig)
            stats[:, chans] = np.stack([np.ones(chans.size), dead, ratio, kurt, std])
            xq[dead] = 0.0
            prev = self._mask[chans] & ~dead if self._mask is not None else ~dead
            if self.zero_dm and prev.any():
                # integer-valued float32 sums are exact below 2**24 units
                exact32 = chans.size * CLIP * Q < 2 ** 24
                zsum = xq.sum(0, dtype=np.float32 if exact32 else np.float64).astype(np.float64)
                for i in np.flatnonzero(~prev):
                    zsum -= xq[i]
        g = ctx.allreduce(np.concatenate([stats.reshape(-1), zsum]))
        zsum = g[5 * n_chan:]
        g = g[: 5 * n_chan].reshape(5, n_chan)
        have = g[0] > 0
        bad = g[1] > 0
        n_prev = int((have & ~bad & (self._mask if self._mask is not None else True)).sum())
        if have.sum() >= 8:
            for row, floor in ((2, 0.02), (3, 2 * math.sqrt(24.0 / n_sub)), (4, 2 * math.sqrt(1.0 / n_sub))):
                z = np.zeros(n_chan)
                z[have] = _robust_z(g[row][have], floor)
                bad |= np.abs(z) > self.mask_z
        good = have & ~bad
        self._mask = good
        n_good, masked = int(good.sum()), int((have & bad).sum())
        clipped = 0
        if self.zero_dm and n_prev > 0:
            zbad = np.abs(zsum) / (Q * math.sqrt(n_prev)) > self.zero_dm_clip if self.zero_dm_clip > 0 else None
            clipped = int(zbad.sum()) if zbad is not None else 0
            if chans.size:
                torch.from_numpy(xq).sub_(torch.from_numpy((zsum / n_prev).astype(np.float32))[None, :]).round_()
                # rows judged bad are zeroed below
                if clipped:
                    xq[:, zbad] = 0.0
        if chans.size:
            xq[~good[chans]] = 0.0
        return xq.astype(np.float32, copy=False), n_good, masked, clipped

    # --- rank 0 ------------------------------------------------------------------
    def combine(self, partials: Sequence[_Partial], ctx: StepContext) -> StepResult:
        t_begin = time.perf_counter()
        p0 = max(partials, key=lambda p: len(p.subbands))  # ranks without channels know less
        n_good = p0.n_good
        events: list[dict[str, float]] = []
        rejected = 0
        if p0.gap:
            self.gap_resets += 1
        dets: list[Det] = []
        if p0.n_valid > 0 and n_good > 0:
            for level, (r, ws, fd) in enumerate(zip(self._plan, self._level_widths, self._fdmt)):
                parts = []
                for k in range(len(fd.subbands)):
                    mine = [p.subbands[(level, k)] for p in partials if (level, k) in p.subbands]
                    if not mine:
                        width = next(iter(p0.subbands.values())).shape[1] if p0.subbands else 0
                        parts.append(np.zeros((fd.sub_rows[k], width), np.float32))
                    else:
                        acc = mine[0].copy() if len(mine) > 1 else mine[0]
                        for m in mine[1:]:
                            acc += m
                        parts.append(acc)
                stack = torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts, 0)).to(self.device)
                plane = fd.upper(stack)
                nv = (p0.n_valid + self.lookahead) // r.scrunch
                dets += self._search(plane, r, ws, n_good, p0.buf_start, nv, level)
        end = p0.buf_start + p0.n_valid  # arrival times owned by this chunk: [buf_start, end)
        dets.sort()
        # detections chained to a cluster already emitted (by the previous chunk) are dropped
        kept = []
        for d in dets:
            if d[0] <= self._reach + self.cluster_gap:
                self._reach = max(self._reach, d[0] + d[2])
            else:
                kept.append(d)
        for cl in self._cluster(kept):
            if cl[0][0] >= end:
                continue  # starts in the next chunk's span: found again there
            ev, rej = self._emit(cl)
            events += ev
            rejected += rej
            self._reach = max(self._reach, max(d[0] + d[2] for d in cl))
        self.samples_searched += p0.n_valid
        self.candidates_total += len(events)
        self.rfi_rejected_total += rejected
        best = max(events, key=lambda e: e["snr"]) if events else None
        self.busy_seconds += time.perf_counter() - t_begin
        return StepResult(events=events, scores={
            "n_candidates": float(len(events)),
            "max_snr": float(best["snr"]) if best else 0.0,
            "trigger_start_s": float(best["window_start_s"]) if best else 0.0,
            "trigger_end_s": float(best["window_end_s"]) if best else 0.0,
            "masked_fraction": float(p0.masked / max(self._n_chan or 1, 1)),
            "clipped_samples": float(p0.clipped),
            "gap_resets": float(self.gap_resets),
            "seconds_searched": float(p0.n_valid * self.tsamp),
            "rfi_rejected": float(rejected),
        })

    def _search(self, plane: torch.Tensor, r: DMRange, ws: list[int], n_good: int, buf_start: int, nv: int,
                level: int) -> list[Det]:
        """Boxcars over the plane, in tiles of DM rows (cache-sized, no large temporaries)."""
        nv = min(nv, plane.shape[1] - max(ws))
        if nv <= 0:
            return []
        wmax = max(ws)
        norm = {w: 1.0 / (Q * math.sqrt(n_good * r.scrunch * w)) for w in ws}
        rows = max(1, (1 << 19) // (nv + wmax + 1))  # ~2 MB tiles
        c = torch.zeros((min(rows, plane.shape[0]), nv + wmax + 1), dtype=torch.float32, device=plane.device)
        tmp = torch.empty((c.shape[0], nv), dtype=torch.float32, device=plane.device)
        peak = torch.empty(nv, dtype=torch.float32, device=plane.device)
        per_w = {w: torch.full((nv,), -1e30, device=plane.device) for w in ws}
        for r0 in range(0, plane.shape[0], rows):
            r1 = min(r0 + rows, plane.shape[0])
            n = r1 - r0
            torch.cumsum(plane[r0:r1, : nv + wmax], dim=1, out=c[:n, 1:])
            for w in ws:
                torch.sub(c[:n, w:w + nv], c[:n, :nv], out=tmp[:n])
                torch.amax(tmp[:n], 0, out=peak)
                torch.maximum(per_w[w], peak, out=per_w[w])
        best = torch.full((nv,), -1e30, device=plane.device)
        best_w = torch.zeros(nv, dtype=torch.long, device=plane.device)
        for w in ws:
            val = per_w[w] * norm[w]
            better = val > best
            best = torch.where(better, val, best)
            best_w = torch.where(better, torch.full_like(best_w, w), best_w)
        hits = torch.nonzero(best >= self.snr_threshold).flatten().tolist()
        out = []
        for t in hits:
            w = int(best_w[t])
            seg = plane[:, t:t + w].sum(1)
            row = int(torch.argmax(seg))
            snr, t_best, w_best = float(best[t]), t, w
            if self.refine:  # every integer width between the grid's, around the peak (cheap: few hits)
                wl, wh = max(1, w // 2), min(2 * w, max(ws))
                lo_t, hi_t = max(0, t - w), min(t + w + 1, nv)
                win = plane[row, lo_t:hi_t + wh].to(torch.float64)
                cs = torch.cat([torch.zeros(1, dtype=torch.float64, device=win.device), torch.cumsum(win, 0)])
                for ww in range(wl, wh + 1):
                    n = hi_t - lo_t
                    if n <= 0 or cs.numel() < n + ww:
                        continue
                    vals = (cs[ww:ww + n] - cs[:n]) / (Q * math.sqrt(n_good * r.scrunch * ww))
                    k = int(torch.argmax(vals))
                    if float(vals[k]) > snr:
                        snr, t_best, w_best = float(vals[k]), lo_t + k, ww
            out.append((float(buf_start + t_best * r.scrunch), snr, w_best * r.scrunch,
                        float(r.dm(r.d_min + row)), level))
        return out

    def _cluster(self, dets: list[Det]) -> list[list[Det]]:
        clusters: list[list[Det]] = []
        reach = -math.inf
        for d in dets:
            if clusters and d[0] <= reach + self.cluster_gap:
                clusters[-1].append(d)
            else:
                clusters.append([d])
                reach = -math.inf
            reach = max(reach, d[0] + d[2])
        return clusters

    def _emit(self, cl: list[Det]) -> tuple[list[dict[str, float]], int]:
        start, snr, width, dm, _ = max(cl, key=lambda d: (d[1], -d[0]))
        if dm < self.min_dm:
            return [], 1
        centre = start + width / 2.0
        sweep = float(band_delay_s(dm, self._f_bot, self._f_ref))
        return [{
            "t_s": centre * self.tsamp,
            "sample": centre,
            "dm": dm,
            "width_s": width * self.tsamp,
            "snr": snr,
            "window_start_s": (start - width) * self.tsamp,
            "window_end_s": (start + 2 * width) * self.tsamp + sweep,
            "n_det": float(len(cl)),
        }], 0

    # --- hooks ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"reach": self._reach, "gap_resets": self.gap_resets,
                "candidates_total": self.candidates_total, "rfi_rejected_total": self.rfi_rejected_total,
                "samples_searched": self.samples_searched}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._reach = float(state.get("reach", -math.inf))
        self.gap_resets = int(state.get("gap_resets", 0))
        self.candidates_total = int(state.get("candidates_total", 0))
        self.rfi_rejected_total = int(state.get("rfi_rejected_total", 0))
        self.samples_searched = int(state.get("samples_searched", 0))

    def local_state_dict(self) -> dict[str, Any]:
        """This rank's overlap buffer (quantised, its channels) and the last step it saw."""
        if self._tail is None:
            return {}
        return {"tail": self._tail.copy(), "tail_start": self._tail_start, "last_step": self._last_step,
                "mask": None if self._mask is None else self._mask.copy()}

    def load_local_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:
            self._tail, self._last_step, self._mask = None, None, None
            return
        self._tail = np.asarray(state["tail"], dtype=np.float32).copy()
        self._tail_start = int(state["tail_start"])
        self._last_step = None if state.get("last_step") is None else int(state["last_step"])
        self._mask = None if state.get("mask") is None else np.asarray(state["mask"], dtype=bool).copy()

    def summary(self) -> dict[str, Any]:
        seconds = self.samples_searched * self.tsamp
        return {"candidates": self.candidates_total, "rfi_rejected": self.rfi_rejected_total,
                "seconds_searched": seconds, "gap_resets": self.gap_resets,
                "realtime_factor": seconds / self.busy_seconds if self.busy_seconds > 0 else 0.0,
                "device": str(self.device)}


register("frb")(FRBSearch)
