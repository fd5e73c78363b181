"""The torch paths against the CPU results: FRB FDMT gathers and blob detection ``backend="torch"``.

Each check runs on every device there is: ``cuda`` (marked ``gpu``; skipped,
saying so, where torch sees no CUDA device) and ``cpu``, where the same torch
code runs on CPU tensors (blob detection: ``backend="torch", device="cpu"``;
FDMT: ``gather_on_cpu``, since its CPU default is a numpy loop), so the device
code is checked on every machine and the CUDA run adds only the device itself.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from intransit.analyzers.blobs import BlobDetector  # noqa: E402
from intransit.analyzers.dedispersion import FDMT  # noqa: E402
from tests.test_blob_detection import assert_same, cut, run, smooth_noise  # noqa: E402

NO_CUDA = "no CUDA device (torch.cuda.is_available() is False): the torch paths were checked on CPU tensors only"
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu,
                                           pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]),
]


def _dispersed(n_chan: int = 64, n_t: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus one dispersed line (band delay 40 samples) and a few bright spikes."""
    f = 1500.0 - np.arange(n_chan) * 300.0 / n_chan
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n_chan, n_t)).astype(np.float32)
    frac = ((f / 1e3) ** -2 - (f.max() / 1e3) ** -2) / ((f.min() / 1e3) ** -2 - (f.max() / 1e3) ** -2)
    for c in range(n_chan):
        x[c, 200 + int(round(40 * frac[c]))] += 6.0
    x[rng.integers(0, n_chan, 20), rng.integers(0, n_t, 20)] += 30.0
    return f, x


@pytest.mark.parametrize("device", DEVICES)
def test_fdmt_gathers_on_the_device_give_the_cpu_plane(device):
    f, x = _dispersed()
    ref_fd = FDMT(f, 0, 80, subband=16)
    assert not ref_fd.gather_on_cpu
    ref = ref_fd(torch.from_numpy(x)).numpy()  # the CPU path: numpy row adds
    fd = FDMT(f, 0, 80, subband=16, device=device)
    fd.gather_on_cpu = True  # on CPU tensors: the device path, not the numpy one
    xd = torch.from_numpy(x).to(device)
    plane = fd(xd)
    assert plane.device.type == device and plane.dtype == torch.float32
    # The same pairs of rows added in the same order: equal to the last bit.
    np.testing.assert_array_equal(plane.cpu().numpy(), ref)
    d, t = np.unravel_index(np.argmax(ref[:, 150:250]), ref[:, 150:250].shape)
    assert abs(d - 40) <= 1  # and the plane is a real one: the line at its band delay
    # The subband split (partial channels per rank, added after ``lower``) on the device as well.
    xa, xb = x.copy(), x.copy()
    xa[7:], xb[:7] = 0, 0
    parts = [fd.lower(k, torch.from_numpy(xa[a:b]).to(device)) + fd.lower(k, torch.from_numpy(xb[a:b]).to(device))
             for k, (a, b) in enumerate(fd.subbands)]
    np.testing.assert_allclose(fd.upper(torch.cat(parts)).cpu().numpy(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_fdmt_reversed_band_on_the_device(device):
    f, x = _dispersed(seed=1)
    ref = FDMT(f[::-1], 0, 80, subband=16)(torch.from_numpy(x[::-1].copy())).numpy()
    fd = FDMT(f[::-1], 0, 80, subband=16, device=device)
    fd.gather_on_cpu = True
    np.testing.assert_array_equal(fd(torch.from_numpy(x[::-1].copy()).to(device)).cpu().numpy(), ref)


def _blob_field(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth noise with bright Gaussian blobs, some across block edges and the periodic seam."""
    rng = np.random.default_rng(seed)
    field = smooth_noise(shape, seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(12):
        c0, c1, w = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(1.5, 4.0)
        d0 = (yy - c0 + shape[0] / 2) % shape[0] - shape[0] / 2  # periodic along axis 0
        field += rng.uniform(5, 12) * np.exp(-(d0 ** 2 + (xx - c1) ** 2) / (2 * w * w))
    return field


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("params", [
    # robust noise, hysteresis and splits (the defaults with a fixed seed level: the adaptive one needs halos)
    pytest.param({"periodic": [True, False], "threshold": 4.0}, id="robust"),
    pytest.param({"noise": "moments", "threshold": 3.0, "grow_threshold": 3.0, "split_levels": [], "min_area": 4},
                 id="moments"),
])
def test_blob_detection_torch_backend_on_the_device_gives_the_cpu_objects(device, params):
    for seed, widths in ((3, (2, 2)), (4, (3, [40, 50, 38]))):
        field = _blob_field((96, 128), seed)
        blocks = cut(field, widths)
        ref = run(BlobDetector(**params), field, blocks)
        got = run(BlobDetector(backend="torch", device=device, **params), field, cut(field, widths))
        assert_same(got, ref, field.shape, params.get("periodic"))
        assert ref.scores["n_objects"] >= 5


def frb_candidates(device: str) -> list[tuple[int, float, float]]:
    """(sample, DM, S/N) of the FRB analyzer's candidates on three pulses (as tests/test_frb.py injects them)."""
    from tests.test_frb import CHUNK, NCH, TSAMP, _search, bfm

    bf = bfm.Beamformer(nchan=NCH, tsamp_s=TSAMP, chunk=CHUNK, seed=11)
    for t, dm, w, snr in [(1500, 80.0, 2e-3, 15.0), (6000, 250.0, 1e-3, 20.0), (10500, 420.0, 3e-3, 25.0)]:
        bf.add_pulse(t, dm, w, snr)
    _, events, _ = _search(bf, 6, device=device)
    return sorted((int(round(e["sample"])), round(float(e["dm"]), 3), float(e["snr"])) for e in events)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_frb_search_on_cuda_finds_the_cpu_candidates():
    """The whole FRB analyzer on the device (FDMT, boxcars, thresholds) against device = "cpu"."""
    cpu, gpu = frb_candidates("cpu"), frb_candidates("cuda")
    assert len(cpu) == 3
    assert [c[:2] for c in gpu] == [c[:2] for c in cpu]
    np.testing.assert_allclose([c[2] for c in gpu], [c[2] for c in cpu], rtol=1e-4)
