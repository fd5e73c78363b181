"""Online anomaly detection on a 2-D field: an early warning before a numerical blow-up.

Per rank, per step (``process_blocks``), the local blocks are *sampled* on
a global grid — the cells whose global indices are both multiples of
``stride`` (default: auto, the smallest stride leaving at most 64² samples:
1 up to 64², 2 at 128², 8 at 512²) — and reduced to a fixed-size feature
vector, never the field, summed over the ranks with the step's single
``ctx.allreduce``.  The grid is anchored to global indices, so the sampled
cells are the same for any decomposition:

* a coarse ``coarse x coarse`` grid of sums of the sampled cells (a
  downsampled *global* field; ``coarse`` x sampled-rows 0/1 matrices, cached
  per block geometry, do the binning);
* sampled cell count, sum n², sums of squared unit-spaced differences from
  each sampled cell towards +1 along each axis (gradient norm,
  ``|grad n|^2``: inside a block only, no halo) and of the mixed second
  difference (a high-pass: grid-scale energy), each with its count (a pair
  cut by a block boundary is left out, so these depend slightly on the
  decomposition), and the count of NaN/inf sampled cells.

At 512² with stride 8 that reads two rows in eight (each sampled cell and
its +x/+y/+x+y neighbours, gathered into four small contiguous arrays): about
0.1 ms per step instead of ~15 ms for full-field passes.  A NaN or a spike
off the sampled grid is seen only once it reaches a sampled cell (a spectral
solver spreads it over the whole field within a step); set ``stride = 1`` to
check every cell.

Maxima do not add, and the allreduce is a sum: each rank's ``max |n|`` rides
in its partial, which the service gathers to rank 0 anyway (one float per
rank); ``combine`` takes the maximum.  Exact, and no extra collective.

On rank 0 (``combine``) the global diagnostics are ``x_t`` = the coarse field
(scaled by its warm-up rms) and the scalars ``log E``, ``log |grad n|^2/E``,
``log H/E``, ``log max|n|``.  Two detectors score the step:

* robust statistics: the increments of the scalars and the log of the coarse
  field's relative change, each as ``|u - median| / (1.4826 MAD)`` with the
  median/MAD of the warm-up (refreshed slowly from nominal steps);
* a small torch MLP predicting the next increment ``x_{t+1} - x_t`` from the
  last ``lags`` increments (plus a skip: the last increment), trained online
  on a bounded replay buffer during the warm-up (``train_iters`` Adam steps
  per step) and after it one Adam step every ``update_every`` (50) steps,
  when that step is nominal (the median/MAD statistics are refreshed every
  10 steps).  Its score is the rms prediction error over the recent
  median error.  Scoring runs in numpy on a copy of the weights taken after
  each update: a step without an update makes no torch call.  Training runs
  with ``threads`` (1) torch threads, restored after: the model is tiny.

``raw`` = the larger of the two; calibration: ``threshold`` = ``margin`` x the
largest raw score of the warm-up's second half (scored by the then-trained
model).  The published ``score`` is ``raw / threshold`` (1 = the calibrated
threshold), so a steering rule reads ``score > 1``.  A NaN/inf cell or
``max|n| > blowup_abs`` scores ``1e6`` at once.  The first ``warmup`` steps
score 0 (``warmup`` = 1 says so).

Everything that changes the scores — weights, optimizer moments, buffers,
statistics, the RNG — is in ``state_dict``, so a restored job scores exactly
as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from intransit.analyzers.base import Analyzer, StepContext, StepResult, register
from intransit.analyzers.changepoint import median0

log = logging.getLogger(__name__)

#: scalar slots after the coarse grid in the allreduce vector
_SCALARS = ("cells", "sum_sq", "sum_dx2", "n_dx", "sum_dy2", "n_dy", "sum_hp2", "n_hp", "nonfinite")
N_SCALAR_FEATURES = 4  # log E, log G/E, log H/E, log max|n|
BIG = 1e6
#: floors of the robust scales: increments of the log diagnostics below these are noise
MIN_SCALE = np.array([1e-3, 1e-3, 1e-3, 1e-2, 0.05])
MIN_PRED_ERR = 0.05  # prediction rms error floor, in units of the warm-up increment rms
#: ``stride = 0`` (auto) samples at most this many cells per step: stride 1 up to 64^2, 2 at 128^2, 8 at 512^2
AUTO_SAMPLES = 64 * 64
#: after the warm-up, the robust median/MAD are refreshed every this many steps (not every step: cost)
STATS_EVERY = 10


def auto_stride(global_shape: Sequence[int], target: int = AUTO_SAMPLES) -> int:
    """The smallest stride that leaves at most ``target`` sampled cells."""
    return _auto_stride(tuple(int(n) for n in global_shape), target)


@functools.lru_cache(maxsize=64)
def _auto_stride(global_shape: tuple[int, ...], target: int) -> int:
    cells = math.prod(global_shape)
    s = max(1, math.isqrt(cells // target))
    while cells > target * s * s:
        s += 1
    return s


@functools.lru_cache(maxsize=256)
def _coarse_matrix(start: int, count: int, size: int, coarse: int, stride: int) -> np.ndarray:
    """``(coarse, m)`` 0/1 matrix: which coarse cell each of a block's ``m`` sampled cells falls in.

    Samples sit at the global indices ``i % stride == 0``; the block's first one
    is local index ``(-start) % stride``.
    """
    idx = start + np.arange((-start) % stride, count, stride)
    m = np.zeros((coarse, idx.size))
    m[(idx * coarse) // size, np.arange(idx.size)] = 1.0
    m.setflags(write=False)
    return m


def _sumsq(a: np.ndarray) -> float:
    f = a.ravel()
    return float(np.dot(f, f))


def _rms(a: np.ndarray) -> float:
    """Root mean square of a 1-D array (np.mean's Python wrapper costs more than the sum here)."""
    return math.sqrt(_sumsq(a) / a.size)


def local_features(blocks: Sequence[Any], global_shape: Sequence[int], coarse: int,
                   stride: int = 1) -> tuple[np.ndarray, float]:
    """This rank's feature sums (``coarse**2 + 9`` floats) and its max |n| (NaN/inf excluded).

    Only the cells on the global stride grid (``i % stride == 0`` and
    ``j % stride == 0``) are sampled, so every sum but the difference sums is
    the same for any decomposition.  Differences are unit-spaced, from each
    sampled cell towards ``+1`` along each axis, inside the block.
    """
    if len(global_shape) != 2:
        raise ValueError(f"the anomaly analyzer needs a 2-D field, got global shape {tuple(global_shape)}")
    ny, nx = int(global_shape[0]), int(global_shape[1])
    k = int(stride)
    grid = np.zeros((coarse, coarse))
    s = np.zeros(len(_SCALARS))
    vmax = 0.0
    for b in blocks:
        d = np.asarray(b.data)
        if d.dtype.kind != "f":
            d = d.astype(np.float64)
        y0, x0 = int(b.start[0]), int(b.start[1])
        oy, ox = (-y0) % k, (-x0) % k
        # the sampled cells and their +x, +y, +x+y neighbours; contiguous copies when strided
        # (numpy's strided loops are several times slower than a copy and contiguous ones)
        A = d[oy::k, ox::k]
        if A.size == 0:
            continue
        A = np.ascontiguousarray(A)
        sq = _sumsq(A)
        bad_n = 0
        if not math.isfinite(sq):  # slow path: count and zero the bad cells
            bad = ~np.isfinite(d)
            bad_n = int(bad[oy::k, ox::k].sum())
            d = np.where(bad, 0.0, d)
            A = np.ascontiguousarray(d[oy::k, ox::k])
            with np.errstate(over="ignore"):
                sq = _sumsq(A)
            if not math.isfinite(sq):
                sq = BIG**4
        s[8] += bad_n
        s[0] += A.size - bad_n
        s[1] += sq
        vmax = max(vmax, float(A.max()), -float(A.min()))
        ry = len(range(oy + 1, d.shape[0], k))  # sampled rows with a row below them in the block
        cx = len(range(ox + 1, d.shape[1], k))  # sampled columns with a column to their right
        with np.errstate(over="ignore", invalid="ignore"):
            if cx:
                dx = np.ascontiguousarray(d[oy::k, ox + 1::k][:, :cx])
                dx -= A[:, :cx]
                s[2] += _sumsq(dx)
                s[3] += dx.size
            if ry:
                C = np.ascontiguousarray(d[oy + 1::k, ox::k][:ry])
                dy = C - A[:ry]
                s[4] += _sumsq(dy)
                s[5] += dy.size
                if cx:  # mixed second difference: (n[i+1,j+1] - n[i+1,j]) - (n[i,j+1] - n[i,j])
                    hp = np.ascontiguousarray(d[oy + 1::k, ox + 1::k][:ry, :cx])
                    hp -= C[:, :cx]
                    hp -= dx[:ry]
                    s[6] += _sumsq(hp)
                    s[7] += hp.size
        my = _coarse_matrix(y0, d.shape[0], ny, coarse, k)
        mx = _coarse_matrix(x0, d.shape[1], nx, coarse, k)
        grid += my @ A @ mx.T
    if not math.isfinite(float(s[:8].sum())):  # overflow near a blow-up: cap, keep the sums finite
        s[:8] = np.nan_to_num(s[:8], nan=BIG**4, posinf=BIG**4)
    return np.concatenate((grid.ravel(), s)), vmax


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run a block with ``n`` torch intra-op threads (0: leave as is), restored after.

    The model is tiny: on a loaded CPU more threads only add contention
    (measured: 60 ms per Adam step with 2 threads on 2 busy cores, 0.8 ms with 1).
    """
    import torch

    old = torch.get_num_threads()
    change = n > 0 and n != old
    if change:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)


@functools.lru_cache(maxsize=16)
def _coarse_counts(ny: int, nx: int, coarse: int, stride: int) -> np.ndarray:
    """Sampled cells per coarse cell."""
    return np.outer(np.bincount((np.arange(0, ny, stride) * coarse) // ny, minlength=coarse),
                    np.bincount((np.arange(0, nx, stride) * coarse) // nx, minlength=coarse)).astype(float)


class _Predictor:
    """Small MLP: next increment of the diagnostics from the last ``lags`` increments.

    Trained with torch (on the GPU when asked); scored with numpy from a
    float64 copy of the weights taken after every update, so a step without an
    update makes no torch call at all.
    """

    def __init__(self, dim: int, lags: int, hidden: int, lr: float, device: str, seed: int, threads: int = 1) -> None:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.threads = threads
        gen = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim * lags, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, dim))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.3 / math.sqrt(p.shape[-1])))
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()
        self.net.to(self.device, dtype=torch.float64)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.dim, self.lags = dim, lags
        self._sync()

    def _sync(self) -> None:
        """numpy copies of the weights, for ``predict``."""
        w = [p.detach().cpu().numpy().astype(np.float64, copy=True) for p in self.net.parameters()]
        self.w1, self.b1, self.w2, self.b2 = w[0].T.copy(), w[1], w[2].T.copy(), w[3]

    def predict(self, hist: np.ndarray) -> np.ndarray:
        h = np.tanh(hist @ self.w1 + self.b1)
        return hist[-self.dim:] + (h @ self.w2 + self.b2)

    def train(self, X: np.ndarray, Y: np.ndarray, iters: int, lr: float) -> None:
        import torch
        with _torch_threads(self.threads if self.device.type == "cpu" else 0):
            for g in self.opt.param_groups:
                g["lr"] = lr
            x = torch.as_tensor(X, device=self.device)
            y = torch.as_tensor(Y, device=self.device)
            for _ in range(iters):
                self.opt.zero_grad()
                loss = ((x[:, -self.dim:] + self.net(x) - y) ** 2).mean()
                loss.backward()
                self.opt.step()
        self._sync()

    def state(self) -> dict[str, Any]:
        net = {k: v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}
        opt = self.opt.state_dict()
        moments = {int(k): {n: (t.detach().cpu().numpy().copy() if hasattr(t, "detach") else t) for n, t in v.items()}
                   for k, v in opt["state"].items()}
        return {"net": net, "opt_state": moments, "opt_groups": opt["param_groups"]}

    def load(self, st: Mapping[str, Any]) -> None:
        import torch
        self.net.load_state_dict({k: torch.as_tensor(v, device=self.device) for k, v in st["net"].items()})
        state = {k: {n: (torch.as_tensor(t, device=self.device) if isinstance(t, np.ndarray) else t)
                     for n, t in v.items()} for k, v in st["opt_state"].items()}
        for v in state.values():  # Adam keeps 'step' as a CPU tensor
            if "step" in v and not hasattr(v["step"], "detach"):
                v["step"] = torch.tensor(float(v["step"]))
            elif "step" in v:
                v["step"] = v["step"].to("cpu")
        self.opt.load_state_dict({"state": state, "param_groups": st["opt_groups"]})
        self._sync()


class AnomalyDetector(Analyzer):
    """One anomaly score per step from global features; ``score > 1`` = above the calibrated threshold."""

    event_fields = ("score", "z_robust", "z_pred", "max_abs", "feature")
    #: Gradient and high-pass sums use differences inside each block only (no
    #: halos), so cells along block boundaries add nothing: those two
    #: diagnostics move slightly with the decomposition (the coarse field,
    #: energy, max|n| and NaN counts are exact).
    decomposition_rtol = 0.25
    score_names = ("score", "raw", "threshold", "z_robust", "z_pred", "alarm", "warmup", "max_abs", "nonfinite",
                   "log_energy", "log_grad_ratio", "log_hp_ratio", "log_max_abs", "log_rate",
                   "d_log_energy", "d_log_grad_ratio", "d_log_hp_ratio")

    def __init__(self, *, coarse: int = 8, warmup: int = 100, margin: float = 2.0, lags: int = 2,
                 hidden: int = 32, lr: float = 3e-3, train_iters: int = 5, update_every: int = 50,
                 update_lr: float = 3e-4, update_below: float = 0.5, window: int = 64, batch: int = 64,
                 buffer: int = 256,
                 min_threshold: float = 8.0, persist: int = 2, blowup_abs: float = 1e6,
                 stride: int = 0, threads: int = 1, device: str = "auto", seed: int = 0) -> None:
        if coarse < 1:
            raise ValueError(f"coarse must be >= 1, got {coarse}")
        if warmup < 10:
            raise ValueError(f"warmup must be >= 10 steps, got {warmup}")
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        if stride < 0 or threads < 0 or update_every < 1:
            raise ValueError(f"need stride >= 0 (0 = auto), threads >= 0, update_every >= 1; got {stride}, {threads}, "
                             f"{update_every}")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        self.coarse, self.warmup, self.margin, self.lags = coarse, warmup, margin, lags
        self.train_iters, self.lr, self.update_lr = train_iters, lr, update_lr
        self.update_every, self.update_below, self.buffer_size = update_every, update_below, buffer
        self.window, self.batch, self.stride, self.threads = window, batch, stride, threads
        self.blowup_abs, self.min_threshold, self.persist = blowup_abs, min_threshold, max(1, persist)
        self.dim = coarse * coarse + N_SCALAR_FEATURES - 1  # the predictor's: log max|n| left out
        self.model = _Predictor(self.dim, lags, hidden, lr, device, seed, threads)
        self.rng = np.random.default_rng(seed)
        self.reset_stats()

    def reset_stats(self) -> None:
        self.n_seen = 0
        self.prev_raw: np.ndarray | None = None  # unscaled diagnostics of the previous step
        self.incs: deque[np.ndarray] = deque(maxlen=self.lags)  # last increments (scaled)
        self.scale: np.ndarray | None = None  # per-dimension scale of the diagnostics
        self.X: deque[np.ndarray] = deque(maxlen=self.buffer_size)  # replay buffer: inputs
        self.Y: deque[np.ndarray] = deque(maxlen=self.buffer_size)  # and targets (next increment)
        self.U: deque[np.ndarray] = deque(maxlen=self.buffer_size)  # robust features of nominal steps
        self.E: deque[float] = deque(maxlen=self.buffer_size)  # prediction errors of nominal steps
        self.med = self.mad = np.zeros(len(MIN_SCALE))
        self.err_ref = 1.0
        self.threshold = math.inf
        self.calib: list[float] = []  # raw scores of the warm-up's second half
        self.alarm_on = False
        self.n_alarms = 0
        self.streak = 0

    # -- per rank -------------------------------------------------------
    def process_blocks(self, ctx: StepContext) -> tuple[np.ndarray | None, float]:
        c = max(1, min(self.coarse, *ctx.global_shape)) if ctx.global_shape else self.coarse
        if c != self.coarse:
            raise ValueError(f"coarse {self.coarse} larger than the field {ctx.global_shape}")
        vec, vmax = local_features(ctx.blocks, ctx.global_shape, self.coarse, self._stride(ctx.global_shape))
        total = ctx.allreduce(vec)
        return (total, vmax)

    def _stride(self, shape: Sequence[int]) -> int:
        return self.stride or auto_stride(shape)

    # -- rank 0 ---------------------------------------------------------
    def _diagnostics(self, total: np.ndarray, vmax: float, shape: Sequence[int]) -> tuple[np.ndarray, dict[str, float]]:
        c = self.coarse
        grid = total[: c * c].reshape(c, c)
        s = dict(zip(_SCALARS, total[c * c:]))
        mean_grid = grid / _coarse_counts(int(shape[0]), int(shape[1]), c, self._stride(shape))
        tiny = 1e-300
        E = s["sum_sq"] / max(s["cells"], 1.0)
        G = s["sum_dx2"] / max(s["n_dx"], 1.0) + s["sum_dy2"] / max(s["n_dy"], 1.0)
        H = s["sum_hp2"] / max(s["n_hp"], 1.0)
        logs = np.log(np.array([E + tiny, (G + tiny) / (E + tiny), (H + tiny) / (E + tiny), vmax + tiny]))
        x = np.concatenate((mean_grid.ravel(), logs))
        info = {"max_abs": float(vmax), "nonfinite": float(s["nonfinite"]), "log_energy": float(logs[0]),
                "log_grad_ratio": float(logs[1]), "log_hp_ratio": float(logs[2]), "log_max_abs": float(logs[3])}
        return x, info

    def _robust_features(self, inc_raw: np.ndarray) -> np.ndarray:
        c2 = self.coarse * self.coarse
        rate = _rms(inc_raw[:c2]) / (self.scale[0] + 1e-300)
        return np.concatenate((inc_raw[c2:], [math.log(rate + 1e-12)]))

    def _scores(self, hist: np.ndarray, target: np.ndarray, u: np.ndarray) -> tuple[float, float, float, int]:
        z = np.abs(u - self.med) / np.maximum(1.4826 * self.mad, MIN_SCALE)
        err = _rms(self.model.predict(hist) - target)
        z_pred = err / self.err_ref
        z_rob = float(z.max())
        return max(z_rob, z_pred), z_rob, z_pred, int(z.argmax())

    def _refresh_stats(self) -> None:
        """Median/MAD of the recent nominal steps (a sliding window: slow drift is tracked)."""
        n = len(self.U)
        U = np.array(list(itertools.islice(self.U, max(0, n - self.window), n)))
        self.med = median0(U)
        self.mad = median0(np.abs(U - self.med))
        if self.E:
            n = len(self.E)
            recent = np.array(list(itertools.islice(self.E, max(0, n - self.window), n)))
            self.err_ref = max(float(median0(recent[:, None])[0]), MIN_PRED_ERR)

    def combine(self, partials: Sequence[Any], ctx: StepContext) -> StepResult:
        total = partials[0][0]
        vmax = max(float(p[1]) for p in partials)
        x_raw, info = self._diagnostics(total, vmax, ctx.global_shape)
        out = {"score": 0.0, "raw": 0.0, "threshold": float(self.threshold), "z_robust": 0.0, "z_pred": 0.0,
               "alarm": 0.0, "warmup": 1.0, "log_rate": 0.0, "d_log_energy": 0.0, "d_log_grad_ratio": 0.0,
               "d_log_hp_ratio": 0.0, **info}
        events: list[dict[str, float]] = []
        if info["nonfinite"] > 0 or not np.isfinite(x_raw).all() or vmax > self.blowup_abs:
            out.update(score=BIG, raw=BIG, alarm=1.0, warmup=0.0)
            if not self.alarm_on:
                events.append({"score": BIG, "z_robust": BIG, "z_pred": BIG, "max_abs": vmax, "feature": -1.0})
                self.n_alarms += 1
            self.alarm_on = True
            return StepResult(events=events, scores=out)

        self.n_seen += 1
        prev, self.prev_raw = self.prev_raw, x_raw
        if prev is None:
            return StepResult(scores=out)
        inc_raw = x_raw - prev
        if self.scale is None:  # first increment: provisional scale, fixed at the warm-up midpoint
            self.scale = self._make_scale(inc_raw[None, : self.dim])
        u = self._robust_features(inc_raw)
        out.update(log_rate=float(u[-1]), d_log_energy=float(u[0]), d_log_grad_ratio=float(u[1]),
                   d_log_hp_ratio=float(u[2]))
        inc = inc_raw[: self.dim] / self.scale
        if len(self.incs) < self.lags:
            self.incs.append(inc)
            return StepResult(scores=out)
        hist = np.concatenate(self.incs)
        self.incs.append(inc)
        half = self.warmup // 2
        if self.n_seen <= self.warmup:
            if self.n_seen > half + self.lags:  # second half: score with the model trained so far
                self._refresh_stats()
                self.calib.append(self._scores(hist, inc, u)[0])
                self.E.append(_rms(self.model.predict(hist) - inc))
            self.X.append(hist)
            self.Y.append(inc)
            self.U.append(u)
            if self.n_seen == half:
                self.scale = self._make_scale(np.array(self.Y) * self.scale, rescale_from=self.scale)
            self._train(self.train_iters, self.lr)
            if self.n_seen == self.warmup:
                self.threshold = max(self.margin * max(self.calib), self.min_threshold)
                log.info("anomaly: calibrated after %d steps: threshold %.3g (warm-up raw scores: max %.3g, "
                         "median %.3g)", self.n_seen, self.threshold, max(self.calib), float(np.median(self.calib)))
                self.calib = []
            return StepResult(scores=out)

        if (self.n_seen - self.warmup - 1) % STATS_EVERY == 0:
            self._refresh_stats()
        raw, z_rob, z_pred, feat = self._scores(hist, inc, u)
        score = raw / self.threshold
        self.streak = self.streak + 1 if score > 1.0 else 0
        alarm = self.streak >= self.persist
        out.update(score=float(score), raw=float(raw), threshold=float(self.threshold), z_robust=z_rob,
                   z_pred=z_pred, alarm=float(alarm), warmup=0.0)
        if alarm and not self.alarm_on:
            self.n_alarms += 1
            events.append({"score": float(score), "z_robust": z_rob, "z_pred": z_pred, "max_abs": vmax,
                           "feature": float(feat)})
        self.alarm_on = alarm
        if score < self.update_below:  # slow update from nominal steps only
            self.X.append(hist)
            self.Y.append(inc)
            self.U.append(u)
            self.E.append(z_pred * self.err_ref)
            if self.update_every and self.n_seen % self.update_every == 0:
                self._train(1, self.update_lr)
        return StepResult(events=events, scores=out)

    def _train(self, iters: int, lr: float) -> None:
        n = len(self.X)
        idx = self.rng.choice(n, size=min(self.batch, n), replace=False)
        X, Y = np.stack([self.X[i] for i in idx]), np.stack([self.Y[i] for i in idx])
        self.model.train(X, Y, iters, lr)

    def _make_scale(self, incs: np.ndarray, rescale_from: np.ndarray | None = None) -> np.ndarray:
        """Per-dimension increment scale (the coarse cells share one rms)."""
        c2 = self.coarse * self.coarse
        rms = np.sqrt(np.mean(incs[:, :c2] ** 2)) + 1e-12
        per = np.concatenate((np.full(c2, rms), np.sqrt(np.mean(incs[:, c2:] ** 2, axis=0)) + 1e-12))
        if rescale_from is not None:  # keep the buffered (scaled) samples consistent
            ratio = rescale_from / per
            self.X = deque((h * np.tile(ratio, self.lags) for h in self.X), maxlen=self.buffer_size)
            self.Y = deque((y * ratio for y in self.Y), maxlen=self.buffer_size)
            self.incs = deque((i * ratio for i in self.incs), maxlen=self.lags)
            self.U.clear()  # the rate feature depends on the scale
        return per

    # -- state ------------------------------------------------------------
    _STATE_KEYS = ("n_seen", "prev_raw", "scale", "med", "mad", "err_ref", "threshold", "alarm_on", "n_alarms", "streak")
    _DEQUES = ("incs", "X", "Y", "U", "E")

    def state_dict(self) -> dict[str, Any]:
        st: dict[str, Any] = {k: getattr(self, k) for k in self._STATE_KEYS}
        st.update({k: list(getattr(self, k)) for k in self._DEQUES})
        st["calib"] = list(self.calib)
        st["rng"] = self.rng.bit_generator.state
        st["model"] = self.model.state()
        return st

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in self._STATE_KEYS:
            setattr(self, k, state[k])
        for k in self._DEQUES:
            setattr(self, k, deque(state[k], maxlen=self.lags if k == "incs" else self.buffer_size))
        self.calib = list(state["calib"])
        self.rng.bit_generator.state = state["rng"]
        self.model.load(state["model"])

    def summary(self) -> dict[str, Any]:
        return {"steps": self.n_seen, "threshold": self.threshold, "alarms": self.n_alarms}


register("anomaly")(AnomalyDetector)
