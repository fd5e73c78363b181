"""Fast radio burst search over a continuous (channels × samples) stream.

One ADIOS2 step is one *chunk* of a dynamic spectrum: a 2D global array
``(n_chan, chunk_len)``, channel ``c`` at ``fch1_mhz + c * foff_mhz`` (SIGPROC
convention), samples ``tsamp_s`` apart, decomposed into channel *subband*
blocks.  Absolute time: chunk ``ctx.step`` starts at sample
``ctx.step * chunk_len``.

Per rank (``process_blocks``, its subbands only):

1. Robust normalisation per channel (median, 1.4826·MAD on a subsample).
2. RFI: channels whose noise level (σ/median), kurtosis or std-to-MAD ratio is
   an outlier among the rank's channels (robust z > ``mask_z``) are masked;
   the zero-DM filter subtracts the mean over *all* good channels of every
   sample (one ``allreduce`` of a length-T vector), and samples whose zero-DM
   S/N exceeds ``zero_dm_clip`` are blanked (broadband bursts).
3. The last ``overlap`` normalised samples of the previous chunk (the maximum
   dispersion delay plus the widest boxcar) are prepended, so every arrival
   time is searched exactly once; a gap in the ADIOS2 step numbers (steps the
   writer dropped) resets that buffer (the gap is counted in ``gap_resets``).
4. FDMT per contiguous channel group (``dedispersion.FDMT``), per range of
   the DM plan (time scrunch 1, 2, 4, … where the smearing allows), mapped
   onto the global DM trials: only these partial DM–time planes travel.

On rank 0 (``combine``): the planes are summed (full band), boxcar filters
(cumulative sums) of several widths give S/N = sum / sqrt(N_good · scrunch ·
width), the best (DM, width) per time sample above ``snr_threshold`` is kept,
detections are clustered in time (friends of friends) so one pulse gives one
candidate; a cluster touching the end of the searched span is held back and
merged with the next chunk's detections (so a pulse across two chunks is
reported once).  Candidates below ``min_dm`` are zero-DM interference and
are counted, not reported.

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
    """What one rank sends to rank 0 for one chunk."""

    n_good: int
    planes: list[np.ndarray]  # per DM range: (n_trials, n_valid_scrunched + max_width)
    buf_start: int  # absolute sample of buffer column 0
    n_valid: int  # raw samples of arrival (boxcar start) time searched from buf_start
    gap: bool
    masked: int
    clipped: int


def _robust_z(v: np.ndarray, floor: float) -> np.ndarray:
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    return (v - med) / max(mad, floor)


class FRBSearch(Analyzer):
    """Incoherent dedispersion (FDMT, torch) + boxcar search, chunk by chunk."""

    event_fields = ("t_s", "sample", "dm", "width_s", "snr", "window_start_s", "window_end_s", "n_det")
    score_names = ("n_candidates", "max_snr", "trigger_start_s", "trigger_end_s", "masked_fraction",
                   "clipped_samples", "gap_resets", "seconds_searched", "rfi_rejected")

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
        min_dm: float = 2.0,
        mask_z: float = 6.0,
        zero_dm: bool = True,
        zero_dm_clip: float = 6.0,
        cluster_gap: int = 32,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        if tsamp_s <= 0 or foff_mhz == 0 or dm_max <= dm_min or dm_min < 0:
            raise ValueError("need tsamp_s > 0, foff_mhz != 0 and 0 <= dm_min < dm_max")
        if not widths or min(widths) < 1:
            raise ValueError("widths must be positive sample counts")
        self.fch1, self.foff, self.tsamp = float(fch1_mhz), float(foff_mhz), float(tsamp_s)
        self.dm_min, self.dm_max = float(dm_min), float(dm_max)
        self.snr_threshold, self.min_dm = float(snr_threshold), float(min_dm)
        self.widths = sorted({int(w) for w in widths})
        self.max_scrunch, self.smear_tolerance = int(max_scrunch), float(smear_tolerance)
        self.mask_z, self.zero_dm, self.zero_dm_clip = float(mask_z), bool(zero_dm), float(zero_dm_clip)
        self.cluster_gap = int(cluster_gap)
        self.device = pick_device(device)
        if threads:
            torch.set_num_threads(int(threads))
        self._n_chan: int | None = None
        self._plan: list[DMRange] = []
        self._fdmt: dict[tuple[int, int, int], FDMT] = {}
        self.overlap = 0
        # per-rank stream state
        self._tail: torch.Tensor | None = None
        self._tail_start = 0
        self._last_step: int | None = None
        # rank-0 state
        self._held: list[tuple[float, float, int, float, int]] = []  # (start, snr, width_raw, dm, level)
        self._last_combined: int | None = None
        self.gap_resets = 0
        self.candidates_total = 0
        self.rfi_rejected_total = 0
        self.samples_searched = 0
        self.busy_seconds = 0.0

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"fch1_mhz": 1500.0, "foff_mhz": -4.6875, "tsamp_s": 1e-3, "dm_max": 50.0}

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
        need = max(r.scrunch * (r.d_max + 2 + max(ws)) for r, ws in zip(self._plan, self._level_widths))
        s_max = max(r.scrunch for r in self._plan)
        self.overlap = int(math.ceil(need / s_max) * s_max)
        self._fdmt.clear()

    def _fdmt_for(self, c0: int, c1: int, level: int) -> FDMT:
        key = (c0, c1, level)
        if key not in self._fdmt:
            r = self._plan[level]
            self._fdmt[key] = FDMT(self.freqs(self._n_chan)[c0:c1], self._f_ref, self._f_bot, r.d_min, r.d_max,
                                   device=self.device)
        return self._fdmt[key]

    def plan_summary(self) -> dict[str, Any]:
        """The DM plan and its cost against the full-resolution FDMT (per second of data)."""
        assert self._n_chan is not None
        n_f = self._n_chan
        per_s = 1.0 / self.tsamp
        full_trials = int(math.ceil(float(band_delay_s(self.dm_max, self._f_bot, self._f_ref)) / self.tsamp))
        full = per_s * full_trials * math.log2(n_f)
        ours = sum(per_s / r.scrunch * r.n_trials * math.log2(n_f) for r in self._plan)
        return {
            "ranges": [{"scrunch": r.scrunch, "dm_lo": float(r.dm(r.d_min)), "dm_hi": float(r.dm(r.d_max)),
                        "trials": r.n_trials, "dm_step": r.dm_per_trial} for r in self._plan],
            "full_res_trials": full_trials,
            "full_res_cost_per_s": full,
            "plan_cost_per_s": ours,
            "cost_ratio": ours / full,
            "overlap_samples": self.overlap,
        }

    # --- per rank ----------------------------------------------------------------
    def process_blocks(self, ctx: StepContext) -> _Partial:
        t_begin = time.perf_counter()
        n_chan, chunk = int(ctx.global_shape[0]), int(ctx.global_shape[1])
        self._setup(n_chan)
        # stitch time pieces of the same channels (a block may be cut along time)
        pieces: dict[tuple[int, int], np.ndarray] = {}
        filled: dict[tuple[int, int], int] = {}
        for b in ctx.blocks:
            key = (int(b.start[0]), int(b.count[0]))
            arr = pieces.setdefault(key, np.zeros((key[1], chunk), np.float32))
            arr[:, b.start[1]:b.start[1] + b.count[1]] = b.data
            filled[key] = filled.get(key, 0) + int(b.count[1])
        if any(n != chunk for n in filled.values()):
            raise ValueError("frb needs every channel's whole chunk on one rank (subband blocks): "
                             "publish at least as many subband blocks as analytics ranks")
        keys = sorted(pieces)
        groups: list[list[tuple[int, int]]] = []
        for k in keys:
            if groups and groups[-1][-1][0] + groups[-1][-1][1] == k[0]:
                groups[-1].append(k)
            else:
                groups.append([k])
        spans = [(g[0][0], g[-1][0] + g[-1][1]) for g in groups]
        x = torch.from_numpy(np.concatenate([pieces[k] for k in keys], 0)) if keys else torch.zeros((0, chunk))
        x, n_good, masked = self._normalise(x)
        clipped = 0
        if self.zero_dm:
            s = ctx.allreduce(np.concatenate([x.sum(0).double().numpy(), [float(n_good)]]))
            total_good = max(float(s[-1]), 1.0)
            mean = torch.as_tensor(s[:-1] / total_good, dtype=torch.float32)
            good = (x.abs().sum(1) > 0).to(torch.float32)[:, None]
            x = x - mean[None, :] * good
            if self.zero_dm_clip > 0:
                bad = torch.as_tensor(np.abs(s[:-1]) / math.sqrt(total_good) > self.zero_dm_clip)
                clipped = int(bad.sum())
                if clipped:
                    x[:, bad] = 0.0
        # overlap with the previous chunk
        start = ctx.step * chunk
        gap = self._last_step is not None and ctx.step != self._last_step + 1
        if self._tail is None or gap or self._tail.shape[0] != x.shape[0]:
            buf, buf_start = x, start
        else:
            buf, buf_start = torch.cat([self._tail, x], 1), self._tail_start
        self._last_step = ctx.step
        keep = min(self.overlap, buf.shape[1])
        self._tail, self._tail_start = buf[:, buf.shape[1] - keep:].clone(), buf_start + buf.shape[1] - keep
        n_valid = max(buf.shape[1] - self.overlap, 0)
        planes: list[np.ndarray] = []
        buf = buf.to(self.device)
        for level, (r, ws) in enumerate(zip(self._plan, self._level_widths)):
            nv = n_valid // r.scrunch
            need = (nv + r.d_max + max(ws) + 2) * r.scrunch
            plane = None
            for (c0, c1) in spans:
                lc0 = sum(b1 - b0 for b0, b1 in spans if b1 <= c0)
                xs = scrunch(buf[lc0:lc0 + c1 - c0, :need], r.scrunch)
                part = self._fdmt_for(c0, c1, level)(xs)[:, : nv + max(ws)]
                plane = part if plane is None else plane + part
            if plane is None:
                plane = torch.zeros((r.n_trials, nv + max(ws)))
            planes.append(plane.to("cpu", torch.float32).numpy())
        self.busy_seconds += time.perf_counter() - t_begin
        return _Partial(n_good, planes, buf_start, n_valid, gap, masked, clipped)

    def _normalise(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Per-channel robust normalisation and channel masking (masked channels → 0)."""
        if x.shape[0] == 0:
            return x, 0, 0
        sub = x[:, :: max(1, x.shape[1] // 2048)].numpy()
        med = np.median(sub, axis=1)
        sig = 1.4826 * np.median(np.abs(sub - med[:, None]), axis=1)
        dead = sig <= 0
        sig[dead] = 1.0
        xn = (x - torch.as_tensor(med, dtype=torch.float32)[:, None]) / torch.as_tensor(sig, dtype=torch.float32)[:, None]
        # channel statistics on a subsample (~4096 samples per channel) keep this pass cheap
        subn = xn[:, :: max(1, x.shape[1] // 4096)]
        std = subn.std(1).numpy()
        kurt = (subn ** 4).mean(1).numpy() / np.maximum(std, 1e-6) ** 4 - 3.0
        n = subn.shape[1]
        ratio = np.log(sig / np.maximum(np.abs(med), 1e-12)) if np.all(np.abs(med) > 0) else np.zeros_like(sig)
        bad = dead.copy()
        if x.shape[0] >= 8:
            bad |= np.abs(_robust_z(ratio, 0.02)) > self.mask_z
            bad |= np.abs(_robust_z(kurt, 2 * math.sqrt(24.0 / n))) > self.mask_z
            bad |= np.abs(_robust_z(std, 2 * math.sqrt(1.0 / n))) > self.mask_z
        if bad.any():
            xn[torch.as_tensor(bad)] = 0.0
        return xn, int((~bad).sum()), int(bad.sum())

    # --- rank 0 ------------------------------------------------------------------
    def combine(self, partials: Sequence[_Partial], ctx: StepContext) -> StepResult:
        t_begin = time.perf_counter()
        p0 = partials[0]
        n_good = sum(p.n_good for p in partials)
        gap = p0.gap
        events: list[dict[str, float]] = []
        rejected = 0
        if gap:
            self.gap_resets += 1
            ev, rej = self._emit(self._held)
            events += ev
            rejected += rej
            self._held = []
        dets: list[tuple[float, float, int, float, int]] = list(self._held)
        self._held = []
        for level, (r, ws) in enumerate(zip(self._plan, self._level_widths)):
            plane = torch.as_tensor(partials[0].planes[level])
            for p in partials[1:]:
                plane = plane + torch.as_tensor(p.planes[level])
            dets += self._search(plane, r, ws, n_good, p0.buf_start, p0.n_valid // r.scrunch, level)
        end = p0.buf_start + p0.n_valid  # boxcar starts searched: [buf_start, end)
        dets.sort()
        clusters = self._cluster(dets)
        hold = self.cluster_gap + max(self.widths)
        for cl in clusters:
            if max(d[0] for d in cl) >= end - hold and p0.n_valid > 0:
                self._held += cl
            else:
                ev, rej = self._emit(cl, single=True)
                events += ev
                rejected += rej
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
            "masked_fraction": float(sum(p.masked for p in partials) / max(self._n_chan or 1, 1)),
            "clipped_samples": float(p0.clipped),
            "gap_resets": float(self.gap_resets),
            "seconds_searched": float(p0.n_valid * self.tsamp),
            "rfi_rejected": float(rejected),
        })

    def _search(self, plane: torch.Tensor, r: DMRange, ws: list[int], n_good: int, buf_start: int, nv: int,
                level: int) -> list[tuple[float, float, int, float, int]]:
        if nv <= 0 or n_good <= 0:
            return []
        wmax = max(ws)
        c = torch.zeros((plane.shape[0], nv + wmax + 1), dtype=torch.float32)
        torch.cumsum(plane[:, : nv + wmax], dim=1, out=c[:, 1:])
        best = torch.full((nv,), -1e30)
        best_w = torch.zeros(nv, dtype=torch.long)
        for w in ws:
            # max over DM trials only (amax is much cheaper than max-with-index);
            # the best trial is found afterwards, for the few samples above threshold
            val = torch.sub(c[:, w:w + nv], c[:, :nv]).amax(0).mul_(1.0 / math.sqrt(n_good * r.scrunch * w))
            better = val > best
            best = torch.where(better, val, best)
            best_w = torch.where(better, torch.full_like(best_w, w), best_w)
        hits = torch.nonzero(best >= self.snr_threshold).flatten().tolist()
        out = []
        for t in hits:
            w = int(best_w[t])
            row = int(torch.argmax(c[:, t + w] - c[:, t]))
            out.append((float(buf_start + t * r.scrunch), float(best[t]), w * r.scrunch,
                        float(r.dm(r.d_min + row)), level))
        return out

    def _cluster(self, dets: list[tuple[float, float, int, float, int]]) -> list[list[tuple[float, float, int, float, int]]]:
        clusters: list[list[tuple[float, float, int, float, int]]] = []
        reach = -math.inf
        for d in dets:
            if clusters and d[0] <= reach + self.cluster_gap:
                clusters[-1].append(d)
            else:
                clusters.append([d])
                reach = -math.inf
            reach = max(reach, d[0] + d[2])
        return clusters

    def _emit(self, dets, single: bool = False) -> tuple[list[dict[str, float]], int]:
        if not dets:
            return [], 0
        clusters = [dets] if single else self._cluster(sorted(dets))
        events, rejected = [], 0
        for cl in clusters:
            start, snr, width, dm, _ = max(cl, key=lambda d: d[1])
            if dm < self.min_dm:
                rejected += 1
                continue
            centre = start + width / 2.0
            sweep = float(band_delay_s(dm, self._f_bot, self._f_ref))
            events.append({
                "t_s": centre * self.tsamp,
                "sample": centre,
                "dm": dm,
                "width_s": width * self.tsamp,
                "snr": snr,
                "window_start_s": (start - width) * self.tsamp,
                "window_end_s": (start + 2 * width) * self.tsamp + sweep,
                "n_det": float(len(cl)),
            })
        return events, rejected

    # --- hooks ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"held": [list(d) for d in self._held], "gap_resets": self.gap_resets,
                "candidates_total": self.candidates_total, "rfi_rejected_total": self.rfi_rejected_total,
                "samples_searched": self.samples_searched}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._held = [tuple(d) for d in state.get("held", [])]  # type: ignore[misc]
        self.gap_resets = int(state.get("gap_resets", 0))
        self.candidates_total = int(state.get("candidates_total", 0))
        self.rfi_rejected_total = int(state.get("rfi_rejected_total", 0))
        self.samples_searched = int(state.get("samples_searched", 0))

    def summary(self) -> dict[str, Any]:
        seconds = self.samples_searched * self.tsamp
        return {"candidates": self.candidates_total, "rfi_rejected": self.rfi_rejected_total,
                "seconds_searched": seconds, "gap_resets": self.gap_resets,
                "realtime_factor": seconds / self.busy_seconds if self.busy_seconds > 0 else 0.0,
                "device": str(self.device)}


register("frb")(FRBSearch)
