"""The blob detection path in torch: statistics, thresholds, labelling and features on a device.

``BlobDetector(backend="torch", device="auto")`` calls ``process_blocks``
here instead of its scipy path.  Everything that touches cells runs as torch
tensor ops on the chosen device (``"auto"``: CUDA when available, else the
CPU): the global moments, the level masks, connected-component labelling and
the per-label reductions.  Only the small per-label features (and the label
layers on block faces) come back to the host, in exactly the partial format
of the numpy path, so ``BlobDetector.combine`` (rank 0) is shared and the two
paths give the same objects (sums may differ in the last bits: the tests
compare with a 1e-9 tolerance).

Labelling: each masked cell starts with its own flat index (1-based); every
sweep takes the minimum over the neighbourhood given by the connectivity and
then jumps pointers (``lab = lab[lab]``, valid because a label is always the
index of a cell of the same component), until nothing changes.  The fixed
point labels each component by its first cell in C order, which is the order
``scipy.ndimage.label`` numbers them in, so relabelling the sorted unique
values 1..n reproduces scipy's labels exactly.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from intransit.analyzers.base import StepContext

if TYPE_CHECKING:
    from intransit.analyzers.blobs import BlobDetector


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"``: the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_tensor(data: Any, device: torch.device) -> torch.Tensor:
    t = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(data))
    return t.to(device=device, dtype=torch.float64)


def _offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    conn = min(connectivity, ndim)
    return [d for d in itertools.product((-1, 0, 1), repeat=ndim) if 0 < sum(x != 0 for x in d) <= conn]


def label(mask: torch.Tensor, connectivity: int) -> tuple[torch.Tensor, int]:
    """Connected components of ``mask``: int64 labels 1..n in scipy's order (0 = background), and n."""
    ndim = mask.dim()
    n_cells = mask.numel()
    if n_cells == 0 or not bool(mask.any()):
        return torch.zeros(mask.shape, dtype=torch.int64, device=mask.device), 0
    big = n_cells + 1
    idx = torch.arange(1, n_cells + 1, device=mask.device, dtype=torch.int64).reshape(mask.shape)
    lab = torch.where(mask, idx, torch.full_like(idx, big))
    offsets = _offsets(ndim, connectivity)
    flat_mask = mask.reshape(-1)
    while True:
        old = lab
        padded = F.pad(lab, (1, 1) * ndim, value=big)
        m = lab
        for d in offsets:
            m = torch.minimum(m, padded[tuple(slice(1 + o, s + 1 + o) for o, s in zip(d, mask.shape))])
        m = torch.where(mask, m, big)
        flat = m.reshape(-1)
        for _ in range(4):  # pointer jumping: labels point at cells of the same component
            flat = torch.where(flat_mask, torch.minimum(flat, flat[(flat - 1).clamp(max=n_cells - 1)]), flat)
        lab = flat.reshape(mask.shape)
        if torch.equal(lab, old):
            break
    roots, lab_c = torch.unique(lab[mask], sorted=True, return_inverse=True)
    out = torch.zeros(mask.shape, dtype=torch.int64, device=mask.device)
    out[mask] = lab_c + 1
    return out, int(roots.numel())


def _features(labels: torch.Tensor, n: int, mask: torch.Tensor, z: torch.Tensor, data: torch.Tensor,
              start: tuple[int, ...]) -> dict[str, Any]:
    ndim = labels.dim()
    dev = labels.device
    if n == 0:
        feat: dict[str, Any] = {
            "area": np.zeros(0, np.int64), "mass": np.zeros(0), "wcoord": np.zeros((0, ndim)),
            "peak": np.zeros(0), "peak_value": np.zeros(0), "lo": np.zeros((0, ndim), np.int64),
            "hi": np.zeros((0, ndim), np.int64), "anchor": np.zeros((0, ndim), np.int64),
        }
    else:
        cells = torch.nonzero(mask)  # C order
        lab = labels[mask] - 1
        w = z[mask]
        coords = cells + torch.as_tensor(start, device=dev, dtype=torch.int64)
        area = torch.bincount(lab, minlength=n)
        mass = torch.zeros(n, dtype=torch.float64, device=dev).index_add_(0, lab, w)
        wcoord = torch.zeros((n, ndim), dtype=torch.float64, device=dev).index_add_(0, lab, w[:, None] * coords)
        peak = torch.full((n,), -torch.inf, dtype=torch.float64, device=dev).scatter_reduce_(0, lab, w, "amax")
        value = torch.full((n,), -torch.inf, dtype=torch.float64, device=dev).scatter_reduce_(
            0, lab, data[mask], "amax")
        idx = lab[:, None].expand(-1, ndim)
        lo = torch.full((n, ndim), torch.iinfo(torch.int64).max, device=dev).scatter_reduce_(0, idx, coords, "amin")
        hi = torch.full((n, ndim), torch.iinfo(torch.int64).min, device=dev).scatter_reduce_(0, idx, coords, "amax")
        first = torch.full((n,), cells.shape[0], device=dev, dtype=torch.int64).scatter_reduce_(
            0, lab, torch.arange(cells.shape[0], device=dev), "amin")
        feat = {
            "area": area.cpu().numpy().astype(np.int64), "mass": mass.cpu().numpy(), "wcoord": wcoord.cpu().numpy(),
            "peak": peak.cpu().numpy(), "peak_value": value.cpu().numpy(), "lo": lo.cpu().numpy(),
            "hi": hi.cpu().numpy() + 1, "anchor": coords[first].cpu().numpy(),
        }
    faces = []
    for k in range(ndim):
        pair = []
        for end in (0, labels.shape[k] - 1):
            face = labels.select(k, end)
            pair.append(face.to(torch.int32).cpu().numpy() if bool(face.any()) else None)
        faces.append(tuple(pair))
    feat["faces"] = faces
    return feat


def process_blocks(det: "BlobDetector", ctx: StepContext) -> dict[str, Any]:
    """``BlobDetector.process_blocks`` on torch tensors (same partial format as the numpy path)."""
    from intransit.analyzers.blobs import moments_to_stats  # noqa: PLC0415 (circular at import time)

    ndim = len(ctx.global_shape)
    device = pick_device(det.device)
    tensors = [_as_tensor(b.data, device) for b in ctx.blocks]
    if det.noise == "robust" or det.auto_threshold:
        # The global histograms of the numpy path, on host copies: the same median, spread and
        # seed level (and collectives) whatever the backend, so both give the same objects.
        mean, std, seed = det.noise_and_seed([t.cpu().numpy() for t in tensors], ctx)
    else:
        local = torch.zeros(3, dtype=torch.float64, device=device)
        for t in tensors:
            fin = torch.isfinite(t)
            f = t[fin] if not bool(fin.all()) else t.reshape(-1)
            local += torch.stack([f.sum(), (f * f).sum(), torch.tensor(float(f.numel()), dtype=torch.float64, device=device)])
        mean, std = moments_to_stats(ctx.allreduce(local.cpu().numpy()))
        seed = det.threshold
    levels_here = det.levels_for(seed)
    blocks = []
    if std > 0:
        for b, t in zip(ctx.blocks, tensors):
            start = tuple(int(v) for v in b.start)
            z = (t - mean) / std
            finite = torch.isfinite(z)
            levels = []
            prev = None
            for level in levels_here:
                mask = (z > level) & finite
                labels, n = label(mask, det.connectivity)
                feat = _features(labels, n, mask, z, t, start)
                if prev is None:
                    feat["parent"] = np.full(n, -1, np.int64)
                elif n:
                    local_anchor = torch.as_tensor(feat["anchor"] - np.asarray(start), device=device)
                    feat["parent"] = (prev[tuple(local_anchor.T)] - 1).cpu().numpy().astype(np.int64)
                else:
                    feat["parent"] = np.zeros(0, np.int64)
                levels.append(feat)
                prev = labels
            blocks.append({"start": start, "count": tuple(int(v) for v in t.shape), "levels": levels})
    return {"mean": mean, "std": std, "ndim": ndim, "blocks": blocks, "threshold": max(seed, det.grow_threshold),
            "levels": levels_here}
