#!/usr/bin/env python3
"""Replay a SIGPROC filterbank (``.fil``) into an ADIOS2 stream, chunk by chunk.

Archived observations then run through the same path as a live beamformer:
``spectra`` (float32, global ``(nchan, chunk)``, ``--blocks`` subband blocks),
``sample_start`` (int64) per step and ``fch1_mhz``/``foff_mhz``/``tsamp_s`` at
step 0 — the layout of ``examples/beamformer.py``.  The file is read with
``your`` (``your.Your(path).get_data(start, n)``, time-major ``(n, nchan)``);
the parameters for the ``frb`` analyzer are printed as a TOML line.

    python examples/filterbank_replay.py obs.fil --xml xml_configs/simulation_bp5.xml --stream obs.bp
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from typing import Iterator, Sequence

import numpy as np

log = logging.getLogger("filterbank_replay")
HERE = os.path.dirname(os.path.abspath(__file__))


def _beamformer():
    spec = importlib.util.spec_from_file_location("beamformer", os.path.join(HERE, "beamformer.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("beamformer", mod)
    spec.loader.exec_module(mod)
    return mod


class FilterbankSource:
    """Chunks ``(nchan, chunk)`` float32 of a ``.fil`` file, read with ``your``."""

    def __init__(self, path: str, chunk: int) -> None:
        import your  # a well-kept SIGPROC/PSRFITS reader

        self.file = your.Your(path)
        h = self.file.your_header
        self.nchan, self.nsamp = int(h.nchans), int(h.nspectra)
        self.fch1, self.foff, self.tsamp = float(h.fch1), float(h.foff), float(h.tsamp)
        self.chunk = chunk
        if int(getattr(h, "npol", 1) or 1) != 1:
            raise ValueError(f"{path}: {h.npol} polarisations; replay expects total intensity (1)")

    def n_chunks(self) -> int:
        return self.nsamp // self.chunk  # a final partial chunk is dropped (fixed step shape)

    def chunks(self) -> Iterator[np.ndarray]:
        for k in range(self.n_chunks()):
            data = self.file.get_data(k * self.chunk, self.chunk)  # (chunk, nchan), time-major
            yield np.ascontiguousarray(np.asarray(data, dtype=np.float32).T)

    def analyzer_params(self) -> str:
        return f"params = {{ fch1_mhz = {self.fch1!r}, foff_mhz = {self.foff!r}, tsamp_s = {self.tsamp!r} }}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("fil", help="SIGPROC filterbank file")
    p.add_argument("--xml", default=os.path.join(HERE, "adios2.xml"))
    p.add_argument("--io", default="SimulationOutput")
    p.add_argument("--stream", default="replay.bp")
    p.add_argument("--chunk", type=int, default=16384, help="samples per ADIOS2 step")
    p.add_argument("--blocks", type=int, default=4, help="subband blocks per step")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds between steps (pace like a telescope)")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO, format="filterbank_replay: %(message)s")
    src = FilterbankSource(a.fil, a.chunk)
    bfm = _beamformer()
    n = bfm.publish(src.chunks(), xml=a.xml, io_name=a.io, stream=a.stream, nchan=src.nchan, chunk=a.chunk,
                    blocks=a.blocks, meta={"fch1_mhz": src.fch1, "foff_mhz": src.foff, "tsamp_s": src.tsamp},
                    sleep=a.sleep)
    log.info("replayed %d chunks of %d x %d from %s into %s", n, src.nchan, a.chunk, a.fil, a.stream)
    print(src.analyzer_params())
    return 0


if __name__ == "__main__":
    sys.exit(main())
