"""The GPU section of the transport benchmark: it says why it skips, and its code runs (forced onto the CPU)."""

from __future__ import annotations

import pytest

from benchmarks.gpu_section import gpu_section

torch = pytest.importorskip("torch")


def test_gpu_section_skips_with_the_reason_when_there_is_no_cuda_device():
    result = gpu_section(sizes=(64,), steps=2)
    if torch.cuda.is_available():
        assert result["detection"]["64"]["device_steps_per_s"] > 0
    else:
        assert result == {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}


def test_gpu_section_forced_onto_the_cpu_times_both_paths_on_the_same_objects():
    result = gpu_section(sizes=(64, 96), steps=2, device="cpu")
    assert result["device"] == "cpu (forced: not a GPU figure)"
    assert result["copy"] is None  # the pinned-copy probe needs a CUDA device
    for size in ("64", "96"):
        figures = result["detection"][size]
        assert figures["device_steps_per_s"] > 0 and figures["cpu_numpy_steps_per_s"] > 0
        assert figures["speedup_vs_cpu_numpy"] == pytest.approx(
            figures["device_steps_per_s"] / figures["cpu_numpy_steps_per_s"], rel=1e-2, abs=1e-3)
        # The torch path and the scipy path find the same objects in the benchmark's field.
        assert figures["objects"]["device"] == figures["objects"]["cpu_numpy"] > 0
