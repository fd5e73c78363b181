#!/usr/bin/env python3
"""Reference beamformer: dynamic spectra (channels × samples) chunk by chunk through ADIOS2.

It stands for a telescope's beamformer: it never imports ``intransit``; it
opens its ADIOS2 IO *by name* from an XML file (``--xml``, IO ``--io``), so BP5
files versus a live SST stream is an XML change only.

Data, per channel ``c`` (frequency ``fch1 + c * foff`` MHz, SIGPROC order:
``foff < 0`` = highest frequency first) and sample ``t`` (``tsamp`` s)::

    x[c, t] = B[c] + sigma[c] * (n[c, t] + s[c, t] + rfi[c, t]),   sigma = 0.05 * B

* ``B``: a smooth bandpass with roll-off at the band edges and ripple;
  ``n``: white Gaussian noise (radiometer: sigma ∝ B).
* ``s``: injected dispersed pulses, in units of the channel noise.  Pulse k
  has arrival time ``t_k`` at ``f_ref`` (the highest channel centre; the
  pulse *centre*), DM, intrinsic Gaussian FWHM, optional scattering
  (exponential, τ ∝ f⁻⁴) and a target optimal S/N: its per-channel profile is
  the Gaussian convolved with the intra-channel dispersion smearing (and a
  one-sample integration), at delay 4.148808 ms × DM × (f⁻² − f_ref⁻²)
  (f in GHz), and its amplitude is set so the matched-filter S/N over the
  whole dynamic spectrum, sqrt(Σ s²), equals the target.  The *fluence* in the
  truth file is Σ s (noise-σ units × samples, summed over channels).
* Interference that a search must not report: ``--rfi-channels`` narrow-band
  persistent channels (a strong sinusoid plus bursts, at random channels),
  and ``--rfi-bursts`` zero-DM broadband bursts per minute (a few samples,
  all channels, random spectral slope, very bright).

ADIOS2 variables per step (one step = one chunk of ``--chunk`` samples):
``spectra`` (float32, global ``(nchan, chunk)``, written as ``--blocks``
subband blocks with ``set_selection`` + ``Mode.Sync`` puts of contiguous
arrays), ``sample_start`` (int64, absolute sample of column 0), and at step 0
``fch1_mhz``, ``foff_mhz``, ``tsamp_s`` (float64).

Ground truth (``--truth PATH``, CSV): ``kind,t_s,sample,dm,fwhm_s,snr,fluence,
scatter_s,channel`` — ``kind`` is ``pulse``, ``rfi_burst`` (zero-DM) or
``rfi_channel``; times are the pulse centre at ``f_ref`` from the stream start.
``--fil PATH`` also writes the same data as a SIGPROC filterbank (float32).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from scipy.special import erf
from scipy.signal import lfilter

log = logging.getLogger("beamformer")
K_DM = 4.148808e-3  # s GHz^2


@dataclass
class Pulse:
    sample: float  # centre arrival at f_ref (absolute samples)
    dm: float
    fwhm_s: float
    snr: float
    scatter_s: float = 0.0  # at 1 GHz
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    fluence: float = 0.0


class Beamformer:
    """Generates chunks ``(nchan, chunk)`` float32 with injected pulses and interference."""

    def __init__(self, *, nchan: int = 1024, fch1_mhz: float = 1500.0, foff_mhz: float | None = None,
                 tsamp_s: float = 64e-6, chunk: int = 16384, seed: int = 0, rfi_channels: int = 0,
                 rfi_bursts_per_min: float = 0.0, rfi_burst_snr: float = 200.0) -> None:
        self.nchan, self.tsamp, self.chunk = nchan, tsamp_s, chunk
        self.fch1 = fch1_mhz
        self.foff = foff_mhz if foff_mhz is not None else -300.0 / nchan
        self.freqs = self.fch1 + self.foff * np.arange(nchan)
        self.f_ref = float(self.freqs.max())
        self.rng = np.random.default_rng(seed)
        u = np.linspace(0, 1, nchan)
        edge = 1 / (1 + np.exp(-(u - 0.03) / 0.01)) / (1 + np.exp((u - 0.97) / 0.01))
        self.bandpass = (100.0 * (0.2 + 0.8 * edge) * (1 + 0.1 * np.sin(2 * np.pi * 5 * u))).astype(np.float32)
        self.sigma = (0.05 * self.bandpass).astype(np.float32)
        self.pulses: list[Pulse] = []
        self.rfi_chan = np.sort(self.rng.choice(np.arange(nchan // 20, nchan - nchan // 20), rfi_channels,
                                                replace=False)) if rfi_channels else np.zeros(0, np.int64)
        self.rfi_rate = rfi_bursts_per_min / 60.0
        self.rfi_burst_snr = rfi_burst_snr
        self.bursts: list[tuple[int, int, float, float]] = []  # (sample, width, amplitude per channel, slope)
        self.step = 0

    # --- pulses -------------------------------------------------------------------
    def delays(self, dm: float, f_mhz: np.ndarray) -> np.ndarray:
        return K_DM * dm * ((f_mhz / 1e3) ** -2 - (self.f_ref / 1e3) ** -2) / self.tsamp

    def add_pulse(self, sample: float, dm: float, fwhm_s: float, snr: float, scatter_s: float = 0.0) -> Pulse:
        """Inject a pulse whose matched-filter S/N is ``snr`` (centre at ``f_ref`` at ``sample``)."""
        sig = max(fwhm_s / self.tsamp / 2.3548, 0.3)
        bw = abs(self.foff)
        d_mid = self.delays(dm, self.freqs)
        smear = np.abs(self.delays(dm, self.freqs - bw / 2) - self.delays(dm, self.freqs + bw / 2))
        box = np.sqrt(smear ** 2 + 1.0)  # smearing and the one-sample integration
        tau = scatter_s * (self.freqs / 1e3) ** -4 / self.tsamp
        half = int(math.ceil(5 * sig + box.max() / 2 + 6 * tau.max() + 3))
        centre = sample + d_mid
        cols = np.floor(centre)[:, None].astype(np.int64) + np.arange(-half, half + 2)[None, :]
        u = cols + 0.5 - centre[:, None]  # sample centres relative to the pulse centre (in samples)
        s2 = sig * math.sqrt(2)
        prof = (erf((u + box[:, None] / 2) / s2) - erf((u - box[:, None] / 2) / s2)) / (2 * box[:, None])
        if scatter_s > 0:
            for c in range(self.nchan):
                if tau[c] > 0.05:
                    a = math.exp(-1.0 / tau[c])
                    prof[c] = lfilter([1 - a], [1, -a], prof[c])
        amp = snr / math.sqrt(float((prof ** 2).sum()))
        vals = (amp * prof).astype(np.float32)
        keep = vals > 1e-6 * vals.max()
        rows = np.broadcast_to(np.arange(self.nchan)[:, None], cols.shape)[keep]
        p = Pulse(sample, dm, fwhm_s, snr, scatter_s, rows, cols[keep], vals[keep], float(vals.sum()))
        self.pulses.append(p)
        return p

    def populate(self, n_chunks: int, *, per_chunk: float, dm_range: tuple[float, float],
                 snr_range: tuple[float, float], fwhm_range_s: tuple[float, float], scatter: bool = False,
                 start_margin: int = 0) -> None:
        """Random pulses over ``n_chunks`` chunks, spaced so they never overlap in time."""
        total = n_chunks * self.chunk
        n = self.rng.poisson(per_chunk * n_chunks)
        if n == 0:
            return
        lo = start_margin
        hi = total - int(self.delays(dm_range[1], np.array([self.freqs.min()]))[0]) - 256
        spacing = (hi - lo) / n
        for k in range(n):
            t = lo + (k + 0.2 + 0.6 * self.rng.random()) * spacing
            dm = self.rng.uniform(*dm_range)
            snr = math.exp(self.rng.uniform(math.log(snr_range[0]), math.log(snr_range[1])))
            fwhm = math.exp(self.rng.uniform(math.log(fwhm_range_s[0]), math.log(fwhm_range_s[1])))
            sc = float(self.rng.uniform(0, 1e-3)) if scatter else 0.0
            self.add_pulse(t, dm, fwhm, snr, sc)

    # --- chunks -------------------------------------------------------------------
    def next_chunk(self) -> np.ndarray:
        t0 = self.step * self.chunk
        n = self.rng.standard_normal((self.nchan, self.chunk), dtype=np.float32)
        for p in self.pulses:
            sel = (p.cols >= t0) & (p.cols < t0 + self.chunk)
            if sel.any():
                np.add.at(n, (p.rows[sel], p.cols[sel] - t0), p.vals[sel])
        t = np.arange(t0, t0 + self.chunk)
        for k, c in enumerate(self.rfi_chan):  # persistent narrow-band: sinusoid + random bursts
            period = 50 + 37 * k
            n[c] += 4.0 * np.sin(2 * np.pi * t / period).astype(np.float32)
            on = self.rng.random(self.chunk) < 0.01
            n[c, on] += 20.0
        n_b = self.rng.poisson(self.rfi_rate * self.chunk * self.tsamp)
        for _ in range(n_b):
            ts = int(self.rng.integers(t0, t0 + self.chunk - 8))
            w = int(self.rng.integers(1, 6))
            amp = self.rfi_burst_snr / math.sqrt(self.nchan * w)
            slope = float(self.rng.uniform(-0.3, 0.3))
            self.bursts.append((ts, w, amp, slope))
            spec = amp * (1 + slope * np.linspace(-1, 1, self.nchan)).astype(np.float32)
            n[:, ts - t0: ts - t0 + w] += spec[:, None]
        self.step += 1
        return self.bandpass[:, None] + self.sigma[:, None] * n

    def truth_rows(self) -> Iterator[list]:
        for p in self.pulses:
            yield ["pulse", p.sample * self.tsamp, p.sample, p.dm, p.fwhm_s, p.snr, p.fluence, p.scatter_s, -1]
        for ts, w, amp, _ in self.bursts:
            yield ["rfi_burst", (ts + w / 2) * self.tsamp, ts + w / 2, 0.0, w * self.tsamp,
                   amp * math.sqrt(self.nchan * w), amp * w * self.nchan, 0.0, -1]
        for c in self.rfi_chan:
            yield ["rfi_channel", 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, int(c)]


TRUTH_HEADER = ["kind", "t_s", "sample", "dm", "fwhm_s", "snr", "fluence", "scatter_s", "channel"]


def write_truth(bf: Beamformer, path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TRUTH_HEADER)
        w.writerows(bf.truth_rows())


# --- SIGPROC filterbank writer ----------------------------------------------------------
def _h_str(key: str, value: str | None = None) -> bytes:
    out = struct.pack("i", len(key)) + key.encode()
    if value is not None:
        out += struct.pack("i", len(value)) + value.encode()
    return out


def sigproc_header(*, nchan: int, fch1: float, foff: float, tsamp: float, nbits: int = 32,
                   source: str = "beamformer", tstart: float = 60000.0) -> bytes:
    h = _h_str("HEADER_START") + _h_str("source_name", source)
    for k, v in (("machine_id", 10), ("telescope_id", 10), ("data_type", 1), ("nchans", nchan),
                 ("nbits", nbits), ("nifs", 1), ("nbeams", 1), ("ibeam", 0), ("barycentric", 0)):
        h += _h_str(k) + struct.pack("i", v)
    for k, v in (("fch1", fch1), ("foff", foff), ("tsamp", tsamp), ("tstart", tstart),
                 ("src_raj", 0.0), ("src_dej", 0.0), ("az_start", 0.0), ("za_start", 0.0)):
        h += _h_str(k) + struct.pack("d", v)
    return h + _h_str("HEADER_END")


# --- ADIOS2 -------------------------------------------------------------------------------
def subband_blocks(nchan: int, blocks: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, nchan, blocks + 1).round().astype(int)
    return [(int(a), int(b - a)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def publish(chunks: Iterator[np.ndarray], *, xml: str, io_name: str, stream: str, nchan: int, chunk: int,
            blocks: int, meta: dict[str, float], sleep: float = 0.0) -> int:
    """Write chunks as ADIOS2 steps: global (nchan, chunk) float32 in subband blocks."""
    import time

    import adios2
    import adios2.bindings as ab

    adios = adios2.Adios(xml)
    io = adios.declare_io(io_name)
    if io.engine_type().lower() == "sst" and os.path.exists(stream + ".sst"):
        raise SystemExit(f"{stream}.sst exists: another writer runs on this stream, or a dead one left it")
    sub = subband_blocks(nchan, blocks)
    var = io.define_variable("spectra", np.zeros((1, 1), np.float32), [nchan, chunk], [0, 0], [sub[0][1], chunk])
    v_start = io.define_variable("sample_start", np.array(0, np.int64))
    v_meta = {k: io.define_variable(k, np.array(0.0)) for k in meta}
    engine = io.open(stream, ab.Mode.Write)
    n = 0
    try:
        for step, data in enumerate(chunks):
            engine.begin_step()
            for c0, nc in sub:
                var.set_selection([[c0, 0], [nc, chunk]])
                # Put ignores numpy strides: hand it contiguous blocks; Sync copies at once.
                engine.put(var, np.ascontiguousarray(data[c0:c0 + nc], dtype=np.float32), ab.Mode.Sync)
            engine.put(v_start, np.array(step * chunk, np.int64), ab.Mode.Sync)
            if step == 0:
                for k, v in v_meta.items():
                    engine.put(v, np.array(float(meta[k])), ab.Mode.Sync)
            engine.end_step()
            n += 1
            if sleep:
                time.sleep(sleep)
    finally:
        engine.close()
    return n


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--xml", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "adios2.xml"))
    p.add_argument("--io", default="SimulationOutput")
    p.add_argument("--stream", default="spectra.bp")
    p.add_argument("--nchan", type=int, default=1024)
    p.add_argument("--fch1", type=float, default=1500.0, help="MHz, first (highest) channel")
    p.add_argument("--bw", type=float, default=300.0, help="MHz; foff = -bw/nchan")
    p.add_argument("--tsamp", type=float, default=64e-6)
    p.add_argument("--chunk", type=int, default=16384, help="samples per ADIOS2 step")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--blocks", type=int, default=4, help="subband blocks per step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pulses-per-chunk", type=float, default=0.5)
    p.add_argument("--pulse", action="append", default=[], metavar="SAMPLE,DM,FWHM_S,SNR",
                   help="inject this pulse (repeatable); with it no random pulses are drawn")
    p.add_argument("--dm-range", type=float, nargs=2, default=(50.0, 1000.0))
    p.add_argument("--snr-range", type=float, nargs=2, default=(8.0, 40.0))
    p.add_argument("--fwhm-range", type=float, nargs=2, default=(0.2e-3, 4e-3))
    p.add_argument("--scatter", action="store_true")
    p.add_argument("--rfi-channels", type=int, default=8)
    p.add_argument("--rfi-bursts", type=float, default=6.0, help="zero-DM bursts per minute")
    p.add_argument("--truth", help="ground-truth CSV path")
    p.add_argument("--fil", help="also write a SIGPROC filterbank here")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds between steps")
    p.add_argument("-q", "--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO, format="beamformer: %(message)s")
    bf = Beamformer(nchan=a.nchan, fch1_mhz=a.fch1, foff_mhz=-a.bw / a.nchan, tsamp_s=a.tsamp, chunk=a.chunk,
                    seed=a.seed, rfi_channels=a.rfi_channels, rfi_bursts_per_min=a.rfi_bursts)
    if a.pulse:
        for spec in a.pulse:
            t, dm, fwhm, snr = (float(v) for v in spec.split(","))
            bf.add_pulse(t, dm, fwhm, snr)
    else:
        bf.populate(a.steps, per_chunk=a.pulses_per_chunk, dm_range=tuple(a.dm_range), snr_range=tuple(a.snr_range),
                    fwhm_range_s=tuple(a.fwhm_range), scatter=a.scatter)
    fil = open(a.fil, "wb") if a.fil else None
    if fil:
        fil.write(sigproc_header(nchan=a.nchan, fch1=a.fch1, foff=-a.bw / a.nchan, tsamp=a.tsamp))

    def chunks() -> Iterator[np.ndarray]:
        for _ in range(a.steps):
            data = bf.next_chunk()
            if fil:
                fil.write(np.ascontiguousarray(data.T, dtype=np.float32).tobytes())  # time-major
            yield data

    meta = {"fch1_mhz": a.fch1, "foff_mhz": -a.bw / a.nchan, "tsamp_s": a.tsamp}
    try:
        n = publish(chunks(), xml=a.xml, io_name=a.io, stream=a.stream, nchan=a.nchan, chunk=a.chunk,
                    blocks=a.blocks, meta=meta, sleep=a.sleep)
    finally:
        if fil:
            fil.close()
        if a.truth:
            write_truth(bf, a.truth)
    log.info("wrote %d chunks of %d x %d to %s (%d pulses, %d RFI bursts)", n, a.nchan, a.chunk, a.stream,
             len(bf.pulses), len(bf.bursts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
