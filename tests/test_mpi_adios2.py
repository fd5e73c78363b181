"""MPI-enabled ADIOS2 (the second venv `.venv-mpi`, built by `make adios2-mpi`).

* N = 3 MPI writer ranks of the reference simulation → M = 2 analytics ranks as
  one SST reader cohort: the same catalog as the serial path (serial wheel, one
  writer process with 3 blocks, two independent reader ranks).
* A serial-wheel reader job and an MPI cohort job on the same stream at once
  (the writer waits for 2 readers: the cohort counts as one).
* The data-plane pitfalls end in a clear message, not a hang.

Without a usable `.venv-mpi` the integration tests skip, saying why and how to
build it; the unit tests of the cohort decisions always run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from intransit.adapters import cohort
from intransit.service.catalog import read_catalog
from tests import procs
from tests.test_sst_integration import assert_same_catalog

ROOT = procs.ROOT
VENV_MPI = os.environ.get("INTRANSIT_VENV_MPI", os.path.join(ROOT, ".venv-mpi"))
MPI_PY = os.path.join(VENV_MPI, "bin", "python")
MPI_MPIEXEC = os.path.join(VENV_MPI, "bin", "mpiexec")
MPI_INTRANSIT = os.path.join(VENV_MPI, "bin", "intransit")
BUILD_HINT = (
    "build it with `make adios2-mpi` (a CMake build of ADIOS2 with MPI into .venv-mpi, ~6-15 min on 2 cores, "
    "cached afterwards) or run `make test-mpi`; see docs/hpc.md"
)

SIZE = 128
WRITERS = 3
COHORT = 2
SIM_ARGS = ["--size", str(SIZE), "--steps", "30", "--blobs", "4", "--seed", "3"]
TIMEOUT = 400
#: Readers wait this long for the writer's contact file / a step: on a loaded 2-core
#: machine the simulation's start (numba JIT + HW warm-up, N ranks) can take > 30 s.
WAIT = {"open_timeout_s": 240, "step_timeout_s": 120}

integration = [pytest.mark.mpi, pytest.mark.sst, pytest.mark.slow]


# --- is there an MPI-enabled ADIOS2 to test? --------------------------------------------------


def _probe() -> str | None:
    """Why `.venv-mpi` cannot run these tests, or None when it can."""
    if not os.path.isfile(MPI_PY):
        return f"{VENV_MPI} does not exist"
    for exe in (MPI_MPIEXEC, MPI_INTRANSIT):
        if not os.access(exe, os.X_OK):
            return f"{exe} is missing"
    # The probe asks ADIOS2 itself, never the code under test (cohort.adios_has_mpi):
    # a regression there must fail test_the_cohort_sees_the_mpi_build, not become a skip.
    code = (
        "import adios2, mpi4py\n"
        "assert adios2.is_built_with_mpi, 'adios2 in this venv is built without MPI'\n"
    )
    try:
        res = subprocess.run([MPI_PY, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{MPI_PY} does not run: {exc}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"{VENV_MPI} is broken: {last}"
    return None


#: Set by .ci/run once `make adios2-mpi` built: then a missing or broken .venv-mpi fails
#: these tests instead of skipping them (CI cannot go green without the cohort path).
REQUIRE_ENV = "INTRANSIT_REQUIRE_MPI_ADIOS2"


@pytest.fixture(scope="module")
def mpi_venv() -> str:
    reason = _probe()
    if reason:
        message = f"no MPI-enabled ADIOS2 to test: {reason}. To run these tests, {BUILD_HINT}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 (CI) but {message}")
        pytest.skip(message)
    return VENV_MPI


def test_the_cohort_sees_the_mpi_build(mpi_venv):  # one process (no mpiexec): not marked mpi
    """The decision the reader takes from the build (probed above without it) agrees with ADIOS2."""
    code = "import intransit.adapters.cohort as c; print(c.adios_has_mpi())"
    res = subprocess.run([MPI_PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"


# --- launching -------------------------------------------------------------------------------


def _env(mpi_ports: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # each venv imports its own adios2
    for key in [k for k in env if k.startswith(("PMI_", "HYDRA_", "MPIR_CVAR_"))]:
        env.pop(key)
    if mpi_ports:
        env.update(cohort.MPI_PORTS_ENV)
    return env


def _start(cmd: list[str], folder: str, log_name: str, env: dict[str, str]) -> subprocess.Popen:
    log = open(os.path.join(folder, log_name), "w")
    return subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def start_mpi_sim(folder: str, stream: str, xml: str, *args: str, ranks: int = WRITERS, mpi_ports: bool = False,
                  log_name: str = "sim.log") -> subprocess.Popen:
    """The reference simulation as ``ranks`` MPI writer ranks (each writes blocks[rank::ranks])."""
    cmd = [MPI_MPIEXEC, "-n", str(ranks), MPI_PY, procs.SIM, "--xml", xml, "--stream", stream, *args]
    return _start(cmd, folder, log_name, _env(mpi_ports))


def start_cohort(folder: str, job: str, ranks: int = COHORT, *, mpi_ports: bool = False,
                 log_name: str = "cohort.log") -> subprocess.Popen:
    """An analytics job of ``ranks`` ranks on the MPI-enabled ADIOS2: one reader cohort."""
    return _start([MPI_MPIEXEC, "-n", str(ranks), MPI_INTRANSIT, "run", job], folder, log_name, _env(mpi_ports))


def run_all(folder: str, sim: subprocess.Popen, *readers: tuple[subprocess.Popen, str]) -> None:
    """Wait for the simulation and every reader job; all must exit 0."""
    try:
        rc_sim = procs.wait(sim, TIMEOUT)
        rcs = [(procs.wait(p, TIMEOUT), log) for p, log in readers]
    finally:
        procs.stop(sim)
        for p, _ in readers:
            procs.stop(p)
        procs.remove_contact_files(folder)
    assert rc_sim == 0, procs.read_log(folder, "sim.log")[-3000:]
    for rc, log in rcs:
        assert rc == 0, f"{log}:\n" + procs.read_log(folder, log)[-3000:]


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory, mpi_venv):
    """The serial path: serial wheel, one writer process with 3 blocks, 2 independent reader ranks."""
    folder = str(tmp_path_factory.mktemp("serial_ref"))
    stream = os.path.join(folder, "stream_serial")
    catalog = os.path.join(folder, "catalog_serial.bp")
    job = procs.write_job(folder, stream, name="job_serial.toml", catalog=catalog, **WAIT)
    rc_sim, rc_an = procs.run_pair(folder, stream=stream, ranks=COHORT, job=job,
                                   sim_args=[*SIM_ARGS, "--blocks", str(WRITERS)], timeout=TIMEOUT)
    assert rc_sim == 0, procs.read_log(folder, "sim.log")[-3000:]
    assert rc_an == 0, procs.read_log(folder, "analytics.log")[-3000:]
    cat = read_catalog(catalog)
    assert len(cat.steps) == 30
    return cat


# --- the integration tests -------------------------------------------------------------------


@pytest.mark.mpi
@pytest.mark.sst
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mpi_writers_to_one_reader_cohort_give_the_serial_catalog(tmp_path, serial_reference):
    folder = str(tmp_path)
    stream = os.path.join(folder, "stream_mpi")
    catalog = os.path.join(folder, "catalog_cohort.bp")
    job = procs.write_job(folder, stream, name="job_cohort.toml", catalog=catalog, **WAIT)
    # The cohort is ONE reader for the writer: with RendezvousReaderCount=1 a lossless
    # start from step 0 works only if both analytics ranks attach as one.
    xml = procs.sim_xml(folder, readers=1)
    an = start_cohort(folder, job)
    time.sleep(0.2)
    sim = start_mpi_sim(folder, stream, xml, *SIM_ARGS, "--blocks", str(WRITERS))
    run_all(folder, sim, (an, "cohort.log"))
    cat = read_catalog(catalog)
    assert cat.metadata.get("ranks") == str(COHORT)
    assert sum(r["dropped"] for r in cat.steps) == 0
    assert_same_catalog(serial_reference, cat)


@pytest.mark.mpi
@pytest.mark.sst
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_serial_reader_and_mpi_cohort_read_one_stream_at_once(tmp_path, serial_reference):
    folder = str(tmp_path)
    stream = os.path.join(folder, "stream_both")
    job_serial = procs.write_job(folder, stream, name="job_serial.toml", catalog=os.path.join(folder, "serial.bp"),
                                 **WAIT)
    job_cohort = procs.write_job(folder, stream, name="job_cohort.toml", catalog=os.path.join(folder, "cohort.bp"),
                                 **WAIT)
    xml = procs.sim_xml(folder, readers=2)  # one serial-wheel reader + one cohort
    serial = procs.start_analytics(folder, job_serial, 1, log_name="serial.log")
    an = start_cohort(folder, job_cohort)
    time.sleep(0.2)
    sim = start_mpi_sim(folder, stream, xml, *SIM_ARGS, "--blocks", str(WRITERS))
    run_all(folder, sim, (serial, "serial.log"), (an, "cohort.log"))
    for name in ("serial.bp", "cohort.bp"):
        cat = read_catalog(os.path.join(folder, name))
        assert sum(r["dropped"] for r in cat.steps) == 0, name
        assert_same_catalog(serial_reference, cat)


def _mpi_transport_xml(folder: str, readers: int = 1) -> str:
    """A simulation XML that asks for SST's MPI data plane."""
    path = procs.sim_xml(folder, readers=readers)
    with open(path) as fh:
        text = fh.read().replace('key="DataTransport" value="WAN"', 'key="DataTransport" value="MPI"')
    with open(path, "w") as fh:
        fh.write(text)
    return path


@pytest.mark.mpi
@pytest.mark.sst
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mpi_data_plane_writer_and_serial_reader_fail_clearly(tmp_path, mpi_venv):
    """A writer on DataTransport=MPI cannot be read by the serial wheel: a message, not a hang."""
    folder = str(tmp_path)
    stream = os.path.join(folder, "stream_dp")
    job = procs.write_job(folder, stream, name="job_serial.toml", **WAIT)
    sim = start_mpi_sim(folder, stream, _mpi_transport_xml(folder), "--size", "64", "--steps", "3", ranks=2,
                        mpi_ports=True)
    serial = procs.start_analytics(folder, job, 1, log_name="serial.log")
    try:
        rc = procs.wait(serial, TIMEOUT)
    finally:
        procs.stop(serial)
        procs.stop(sim)
        procs.remove_contact_files(folder)
    log = procs.strip_ansi(procs.read_log(folder, "serial.log"))
    assert rc == 1, log[-3000:]
    assert "DataTransport=WAN" in log and "make adios2-mpi" in log, log[-3000:]
    assert "Traceback" not in log


# --- unit tests (no MPI build needed) ----------------------------------------------------------


def test_the_cohort_decision_follows_the_adios2_build(monkeypatch):
    comm = object()
    monkeypatch.setattr(cohort, "adios_has_mpi", lambda: True)
    assert cohort.reader_communicator(comm) is comm
    assert cohort.reader_communicator(None) is None
    assert cohort.readers_seen_by_writer(4) == 1
    monkeypatch.setattr(cohort, "adios_has_mpi", lambda: False)
    assert cohort.reader_communicator(comm) is None
    assert cohort.readers_seen_by_writer(4) == 4


def test_mpi_data_plane_on_a_serial_adios2_is_named_with_the_fix():
    assert cohort.transport_problem("WAN", has_mpi=False) is None
    assert cohort.transport_problem(None, has_mpi=False) is None
    msg = cohort.transport_problem("MPI", has_mpi=False)
    assert msg and "DataTransport=WAN" in msg and "make adios2-mpi" in msg


def test_mpi_data_plane_with_pypi_mpich_needs_the_ofi_netmod(monkeypatch):
    monkeypatch.setattr(cohort, "pypi_mpich", lambda: True)
    msg = cohort.transport_problem("mpi", has_mpi=True, environ={})
    assert msg and "MPIR_CVAR_CH4_NETMOD=ofi" in msg
    assert cohort.transport_problem("mpi", has_mpi=True, environ={"MPIR_CVAR_CH4_NETMOD": "ofi"}) is None
    monkeypatch.setattr(cohort, "pypi_mpich", lambda: False)  # a site MPI: not ours to judge
    assert cohort.transport_problem("mpi", has_mpi=True, environ={}) is None


def test_the_serial_reader_refuses_an_mpi_data_plane_before_open(tmp_path):
    """The analytics' own XML asking for DataTransport=MPI fails at once, naming the fix."""
    from intransit.adapters.reader import AdiosStepReader, StreamError

    if cohort.adios_has_mpi():
        pytest.skip("this test is about the serial wheel")
    xml = tmp_path / "reader.xml"
    xml.write_text('<?xml version="1.0"?><adios-config><io name="SimulationOutput"><engine type="SST">'
                   '<parameter key="DataTransport" value="MPI"/></engine></io></adios-config>')
    t0 = time.monotonic()
    with pytest.raises(StreamError, match="DataTransport=WAN"):
        AdiosStepReader(stream=str(tmp_path / "nobody"), xml=str(xml), io_name="SimulationOutput", open_timeout_s=30)
    assert time.monotonic() - t0 < 5


def test_stream_readers_do_not_depend_on_attributes():
    """Late SST readers miss step-0 attributes and string arrays arrive empty: read variables only."""
    for rel in ("adapters/reader.py", "adapters/blocks.py", "adapters/steering.py", "service/runner.py"):
        with open(os.path.join(ROOT, rel)) as fh:
            text = fh.read()
        for call in ("available_attributes", "inquire_attribute", "read_attribute"):
            assert call not in text, f"{rel} uses {call}: stream metadata must travel as variables"


def test_skip_message_says_how_to_build(monkeypatch):
    assert "make adios2-mpi" in BUILD_HINT
    monkeypatch.setattr(sys.modules[__name__], "MPI_PY", "/nonexistent/python")
    assert "does not exist" in (_probe() or "")


@pytest.mark.mpi
@pytest.mark.sst
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mpi_data_plane_between_mpi_writers_and_a_cohort(tmp_path, mpi_venv):
    """SST's MPI data plane works between two MPI jobs once MPIR_CVAR_CH4_NETMOD=ofi is set (PyPI MPICH)."""
    folder = str(tmp_path)
    stream = os.path.join(folder, "stream_mpidp")
    catalog = os.path.join(folder, "catalog_mpidp.bp")
    job = procs.write_job(folder, stream, name="job_mpidp.toml", catalog=catalog, **WAIT)
    reader_xml = os.path.join(folder, "analytics_mpi.xml")
    with open(os.path.join(ROOT, "xml_configs", "analytics.xml")) as fh:
        text = fh.read().replace('key="DataTransport" value="WAN"', 'key="DataTransport" value="MPI"')
    with open(reader_xml, "w") as fh:
        fh.write(text)
    with open(job) as fh:
        text = fh.read().replace(os.path.join(ROOT, "xml_configs", "analytics.xml"), reader_xml)
    with open(job, "w") as fh:
        fh.write(text)
    # Without the variable the cohort refuses at once, naming the fix (no MPI abort, no hang).
    res = subprocess.run([MPI_INTRANSIT, "run", job], cwd=folder, capture_output=True, text=True, timeout=120,
                         env=_env(mpi_ports=False))
    assert res.returncode == 1 and "MPIR_CVAR_CH4_NETMOD=ofi" in res.stderr, res.stderr[-3000:]
    an = start_cohort(folder, job, mpi_ports=True)
    time.sleep(0.2)
    sim = start_mpi_sim(folder, stream, _mpi_transport_xml(folder), "--size", "64", "--steps", "5", "--blobs", "2",
                        mpi_ports=True)
    run_all(folder, sim, (an, "cohort.log"))
    cat = read_catalog(catalog)
    assert len(cat.steps) == 5
