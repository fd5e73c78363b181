"""Faults on the simulation's side: it is SIGKILLed, it left a stale contact file, it names an IO the XML
lacks, and a keep-pace writer drops steps after the last one the analytics took (issue 13 items 3, 5)."""

from __future__ import annotations

import os
import time

import pytest

from tests import procs
from tests.faults import helpers

pytestmark = [pytest.mark.sst, pytest.mark.slow]


def test_writer_killed_mid_run_is_named_with_its_step_count_and_the_summary_is_written(tmp_path):
    folder = str(tmp_path)
    stream = os.path.join(folder, "killed")
    job = helpers.job(folder, stream, step_timeout_s=60)
    an = helpers.start_analytics(folder, job, 1, "--summary-json", os.path.join(folder, "s.json"))
    writer = helpers.start_writer(folder, stream, "--steps", "1000", "--sleep", "0.02", "--kill-after", "40",
                                  "--readers", "1")
    try:
        rc = procs.wait(an, 90, log=os.path.join(folder, "analytics.log"))
        procs.wait(writer, 30)
    finally:
        procs.stop(an)
        procs.stop(writer)
        procs.remove_contact_files(folder)
    log = helpers.analytics_log(folder)
    assert rc == 1, log[-3000:]
    assert "Traceback" not in log and "OtherError" not in log, log[-3000:]
    assert f"the writer of stream {stream!r} vanished after writer step" in log, log[-3000:]
    s = helpers.summary(os.path.join(folder, "s.json"))
    assert s["last_step"] is not None and s["last_step"] <= 39
    assert helpers.steps_accounted(s) == s["last_step"] + 1  # every step up to the last seen: analyzed or dropped
    assert "vanished after writer step" in s["stream_end"] and s["steps_dropped_at_end"] is None
    helpers.record("writer_killed", summary_=s, log=log)


def test_stale_contact_file_is_named_as_stale(tmp_path):
    folder = str(tmp_path)
    stream = os.path.join(folder, "stale")
    writer = helpers.start_writer(folder, stream, "--steps", "5", "--kill-after", "1")
    procs.wait(writer, 60)
    assert os.path.exists(stream + ".sst")  # the dead writer's contact file
    job = helpers.job(folder, stream, open_timeout_s=20)
    an = helpers.start_analytics(folder, job, 1)
    try:
        t0 = time.monotonic()
        rc = procs.wait(an, 60, log=os.path.join(folder, "analytics.log"))
        took = time.monotonic() - t0
    finally:
        procs.stop(an)
        procs.remove_contact_files(folder)
    log = helpers.analytics_log(folder)
    assert rc == 1, log[-3000:]
    assert f"the SST contact file {stream}.sst is stale" in log and f"Remove {stream}.sst" in log, log[-3000:]
    assert "DataTransport=MPI" not in log and "Traceback" not in log, log[-3000:]
    assert took < 45
    helpers.record("stale_contact_file", log=log, seconds=round(took, 1))


def test_io_missing_from_the_xml_is_named_under_sst(tmp_path):
    folder = str(tmp_path)
    stream = os.path.join(folder, "noio")
    xml = os.path.join(folder, "other.xml")
    with open(xml, "w") as fh:
        fh.write('<?xml version="1.0"?><adios-config><io name="Elsewhere"><engine type="SST"/></io></adios-config>')
    job = helpers.job(folder, stream)
    text = open(job).read().replace(os.path.join(procs.ROOT, "xml_configs", "analytics.xml"), xml)
    with open(job, "w") as fh:
        fh.write(text)
    an = helpers.start_analytics(folder, job, 1)
    rc = procs.wait(an, 60, log=os.path.join(folder, "analytics.log"))
    log = helpers.analytics_log(folder)
    assert rc == 1, log[-3000:]
    assert "IO 'SimulationOutput' is not in the ADIOS2 XML" in log and "Elsewhere" in log, log[-3000:]
    assert "to replay" not in log and "Traceback" not in log
    helpers.record("io_missing_from_xml", log=log)


def _slow_pair(folder: str, *, policy: str, report: bool, steps: int = 120) -> tuple[dict, str]:
    """A 0.7 s/step analyzer on a 20 ms/step writer; the summary and the analytics log."""
    stream = os.path.join(folder, "slow")
    job = helpers.job(folder, stream, seconds=0.7, step_timeout_s=60)
    out = os.path.join(folder, "s.json")
    an = helpers.start_analytics(folder, job, 1, "--summary-json", out)
    writer = helpers.start_writer(folder, stream, "--steps", str(steps), "--sleep", "0.02", "--policy", policy,
                                  "--readers", "1", *([] if report else ["--no-report"]))
    try:
        assert procs.wait(writer, 240, log=os.path.join(folder, "writer.log")) == 0
        rc = procs.wait(an, 240, log=os.path.join(folder, "analytics.log"))
    finally:
        procs.stop(an)
        procs.stop(writer)
        procs.remove_contact_files(folder)
    log = helpers.analytics_log(folder)
    assert rc == 0, log[-3000:]
    return helpers.summary(out), log


def test_keep_pace_slow_analyzer_counts_every_writer_step(tmp_path):
    """Item 3: analyzed + dropped (gaps and the tail after the last step seen) = the 120 steps written."""
    s, log = _slow_pair(str(tmp_path), policy="Discard", report=True)
    helpers.record("slow_analyzer_keep_pace", summary_=s, log=log, analyzed=s["steps_analyzed"],
                   dropped=s["steps_dropped"], dropped_at_end=s["steps_dropped_at_end"])
    assert s["writer_steps"] == 120, s
    assert helpers.steps_accounted(s) == 120, s
    assert s["steps_dropped"] > 0 and s["steps_analyzed"] < 60, s  # keep-pace did drop steps
    assert s["steps_dropped_at_end"] == 119 - s["last_step"], s
    assert "every one is accounted for" in s["stream_end"] or "none was dropped" in s["stream_end"]


def test_keep_pace_tail_unknown_without_the_writers_report_is_said(tmp_path):
    s, _log = _slow_pair(str(tmp_path), policy="Discard", report=False)
    helpers.record("slow_analyzer_keep_pace_no_report", summary_=s, log=_log)
    assert s["writer_steps"] is None and s["steps_dropped_at_end"] is None, s
    assert f"after writer step {s['last_step']}" in s["stream_end"] and "cannot be counted" in s["stream_end"], s
    assert helpers.steps_accounted(s) == s["last_step"] + 1


def test_lossless_slow_analyzer_analyzes_every_step(tmp_path):
    s, _log = _slow_pair(str(tmp_path), policy="Block", report=True, steps=12)
    helpers.record("slow_analyzer_lossless", summary_=s, log=_log)
    assert s["steps_analyzed"] == 12 and s["steps_dropped"] == 0 and s["steps_dropped_at_end"] == 0, s
