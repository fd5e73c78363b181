"""The GPU section of ``benchmarks/transport.py``: detection on the device vs the CPU, and the copy there.

Runs when torch sees a CUDA device (or when ``device`` is forced, e.g.
``--gpu-device cpu`` to exercise the code on a machine without one: the
figures are then not GPU figures and say so).  Figures, side by side in one run:

* ``detection``: steps/s of blob detection (``process_blocks`` + ``combine``
  of one block, as one analytics rank runs it) with ``backend="torch"`` on
  the device, against the CPU paths (``backend="numpy"``, scipy.ndimage, the
  default; and ``backend="torch"`` on the CPU), per field size.  The field
  starts in host memory, as ADIOS2 hands it over, so the device figure
  includes the host→device copy.
* ``copy``: host→device GB/s from a pageable numpy buffer (what the reader
  fills) ÷ from pinned memory (the probe: the most the link gives), per size.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np


def _field(size: int, seed: int = 0) -> np.ndarray:
    """Noise with a dozen Gaussian blobs: something for the detector to find, like a turbulence snapshot."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    field = rng.standard_normal((size, size))
    for _ in range(12):
        cy, cx = rng.uniform(0, size, 2)
        width = size / 40
        field += 6.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    return field


def _detection_rate(field: np.ndarray, backend: str, device: str, steps: int) -> tuple[float, int]:
    """Steps/s of one rank's detection on ``field`` (one block), and the objects found (a cross-check)."""
    import torch

    from intransit.analyzers.base import Block, StepContext
    from intransit.analyzers.blobs import BlobDetector

    detector = BlobDetector(threshold=3.0, min_area=4, periodic=[True, False], backend=backend, device=device)
    shape = tuple(field.shape)
    ctx = StepContext(step=0, index=0, variable="density", global_shape=shape,
                      blocks=[Block(field, (0, 0), shape, 0)])
    result = detector.combine([detector.process_blocks(ctx)], ctx)  # warm-up: kernels, caches
    cuda = device.startswith("cuda")
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        detector.combine([detector.process_blocks(ctx)], ctx)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return 1.0 / statistics.median(times), len(result.events)


def _copy_gbps(host: Any, device: str, repeats: int = 20) -> float:
    import torch

    dst = torch.empty(host.shape, dtype=host.dtype, device=device)
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        dst.copy_(host, non_blocking=False)
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return host.numel() * host.element_size() / best / 1e9


def gpu_section(sizes: tuple[int, ...] = (512, 1024, 2048), steps: int = 20, device: str | None = None) -> dict:
    """The figures above, or ``{"skipped": why}`` when there is no CUDA device and none was forced."""
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    if device is None:
        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
        device = "cuda"
    cuda = device.startswith("cuda")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(torch.device(device)) if cuda else
                           f"{device} (forced: not a GPU figure)", "detection": {}, "copy": {} if cuda else None}
    for size in sizes:
        field = _field(size)
        numpy_rate, n_numpy = _detection_rate(field, "numpy", "cpu", steps)
        torch_cpu_rate, _ = _detection_rate(field, "torch", "cpu", max(3, steps // 4))
        device_rate, n_device = _detection_rate(field, "torch", device, steps)
        out["detection"][str(size)] = {
            "device_steps_per_s": round(device_rate, 2), "cpu_numpy_steps_per_s": round(numpy_rate, 2),
            "cpu_torch_steps_per_s": round(torch_cpu_rate, 2),
            "speedup_vs_cpu_numpy": round(device_rate / numpy_rate, 3),
            "objects": {"device": n_device, "cpu_numpy": n_numpy},  # the same field: the same objects
        }
        if cuda:
            pageable = torch.from_numpy(field)
            pinned = torch.empty(field.shape, dtype=torch.float64).pin_memory()
            pinned.copy_(pageable)
            from_pageable, from_pinned = _copy_gbps(pageable, device), _copy_gbps(pinned, device)
            out["copy"][str(size)] = {"pageable_gb_per_s": round(from_pageable, 2), "pinned_gb_per_s": round(from_pinned, 2),
                                      "copy_efficiency": round(from_pageable / from_pinned, 3)}
    return out
