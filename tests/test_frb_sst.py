"""FRB search end to end over real SST: the reference beamformer and `intransit run` (1 and 2 ranks)
as separate processes; injected pulses found once each (one across a chunk boundary), interference
not reported, a `trigger` steering command on the steps with a pulse, the same candidates for 1 and 2 ranks."""

from __future__ import annotations

import csv
import os
import sys
import textwrap
import time

import pytest

from intransit.service.catalog import read_catalog
from tests import procs

pytestmark = [pytest.mark.sst, pytest.mark.mpi, pytest.mark.slow]

BEAMFORMER = os.path.join(procs.ROOT, "examples", "beamformer.py")
NCH, CHUNK, TSAMP, STEPS = 64, 1024, 1e-3, 6
# (arrival sample at the top of the band, DM, FWHM s, S/N); the second crosses the chunk 2/3 boundary
PULSES = [(1500, 100.0, 3e-3, 20.0), (3060, 150.0, 2e-3, 18.0), (4600, 60.0, 4e-3, 16.0)]
BF_ARGS = ["--nchan", str(NCH), "--chunk", str(CHUNK), "--tsamp", str(TSAMP), "--steps", str(STEPS),
           "--blocks", "4", "--seed", "21", "--rfi-channels", "3", "--rfi-bursts", "60", "-q",
           *[a for p in PULSES for a in ("--pulse", ",".join(str(v) for v in p))]]


def job_toml(folder: str, stream: str, tag: str) -> str:
    path = os.path.join(folder, f"job_{tag}.toml")
    text = f"""
        [stream]
        name = "{stream}"
        xml = "{os.path.join(procs.ROOT, 'xml_configs', 'analytics.xml')}"
        variables = ["spectra"]
        step_timeout_s = 30
        open_timeout_s = 30

        [[analyzers]]
        type = "frb"
        name = "frb"
        params = {{ fch1_mhz = 1500.0, foff_mhz = {-300.0 / NCH}, tsamp_s = {TSAMP}, dm_max = 200.0, snr_threshold = 7.0, widths = [1, 2, 4, 8, 16], subband = 16 }}

        [steering]
        stream = "{os.path.join(folder, f'steer_{tag}.bp')}"

        [[steering.rules]]
        name = "frb_trigger"
        analyzer = "frb"
        score = "max_snr"
        op = ">="
        threshold = 8
        command = "trigger"
        once = false

        [output]
        catalog = "{os.path.join(folder, f'catalog_{tag}.bp')}"
        """
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(text))
    return path


def live_run(folder: str, ranks: int):
    tag = f"m{ranks}"
    stream = os.path.join(folder, f"spectra_{tag}")
    xml = procs.sim_xml(folder, readers=ranks)
    analytics = procs.start_analytics(folder, job_toml(folder, stream, tag), ranks, log_name=f"analytics_{tag}.log")
    bf = procs.start([sys.executable, BEAMFORMER, "--xml", xml, "--stream", stream,
                      "--truth", os.path.join(folder, "truth.csv"), *BF_ARGS], folder, f"bf_{tag}.log")
    try:
        deadline = time.monotonic() + 120
        while bf.poll() is None and analytics.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # an analytics job that fails at start must not leave the writer waiting
        if bf.poll() is None and analytics.poll() not in (None, 0):
            raise AssertionError(procs.read_log(folder, f"analytics_{tag}.log")[-3000:])
        assert procs.wait(bf, max(deadline - time.monotonic(), 1)) == 0, procs.read_log(folder, f"bf_{tag}.log")[-3000:]
        assert procs.wait(analytics, 60) == 0, procs.read_log(folder, f"analytics_{tag}.log")[-3000:]
    finally:
        procs.stop(bf)
        procs.stop(analytics)
        procs.remove_contact_files(folder)
    return read_catalog(os.path.join(folder, f"catalog_{tag}.bp"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("frb_sst"))
    return folder, {ranks: live_run(folder, ranks) for ranks in (1, 2)}


def test_pulses_found_once_interference_not_reported_trigger_fired(runs):
    folder, cats = runs
    with open(os.path.join(folder, "truth.csv")) as fh:
        truth = list(csv.DictReader(fh))
    bursts = [float(r["t_s"]) for r in truth if r["kind"] == "rfi_burst"]
    assert len(bursts) >= 3 and sum(r["kind"] == "rfi_channel" for r in truth) == 3
    cat = cats[1]
    assert len(cat.steps) == STEPS and sum(r["dropped"] for r in cat.steps) == 0
    events = cat.events["frb"]
    assert len(events) == len(PULSES), events
    for (sample, dm, fwhm, snr), ev in zip(PULSES, sorted(events, key=lambda e: e["t_s"])):
        assert abs(ev["t_s"] - sample * TSAMP) <= 0.01, ev
        assert abs(ev["dm"] - dm) / dm < 0.05, ev
        assert 0.6 * snr <= ev["snr"] <= 1.3 * snr, ev
        assert ev["window_start_s"] <= sample * TSAMP <= ev["window_end_s"]
    for t in bursts:  # zero-DM interference: nothing reported near it
        assert all(abs(ev["t_s"] - t) > 0.02 for ev in events)
    # the trigger answers exactly the steps that reported a pulse (S/N >= 8)
    with_pulse = {int(ev["step"]) for ev in events}
    commands = {int(r["step"]): int(r["steering/command"]) for r in cat.steps}
    assert {s for s, c in commands.items() if c == 4} == with_pulse and all(c in (0, 4) for c in commands.values())


def test_same_candidates_for_one_and_two_ranks(runs):
    _, cats = runs
    a, b = cats[1].events["frb"], cats[2].events["frb"]
    fields = cats[1].fields["frb"]
    assert len(a) == len(b) == len(PULSES)
    for ea, eb in zip(a, b):
        assert [ea[f] for f in fields] == [eb[f] for f in fields]
    assert [int(r["steering/command"]) for r in cats[1].steps] == [int(r["steering/command"]) for r in cats[2].steps]
