"""The reference simulation (examples/blob_sim.py), run as the user would: a subprocess
writing BP5 through examples/adios2.xml, read back with adios2."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

adios2 = pytest.importorskip("adios2")
pytest.importorskip("hw2d")
pytest.importorskip("blobmodel")

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "examples" / "blob_sim.py"
XML = ROOT / "examples" / "adios2.xml"
NY = NX = 64
STEPS = 12


def _cmd(tmp: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, str(SIM), "--xml", str(XML), "--stream", str(tmp / f"{name}.bp"),
            "--truth", str(tmp / f"{name}.csv"), "--steps", str(STEPS), "-q", *extra]


RUNS = {
    # name: extra args; all but 'flat' share seed 7 and must give the same field
    "b4": ("--size", "64", "--seed", "7", "--blocks", "4"),
    "b1": ("--size", "64", "--seed", "7", "--blocks", "1"),
    "b3": ("--size", "64", "--seed", "7", "--blocks", "3", "--dtype", "float32"),
    "flat": ("--size", "64", "--seed", "8", "--decomp", "1x2", "--turbulence", "0", "--blobs", "4"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blob_sim")
    procs = {n: subprocess.Popen(_cmd(tmp, n, *extra), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=tmp)
             for n, extra in RUNS.items()}
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, f"{name}: rc={p.returncode}\n{stderr}"
        out[name] = _read(tmp / f"{name}.bp", tmp / f"{name}.csv", stderr)
    return out


def _read(bp: Path, truth: Path, stderr: str) -> dict:
    with adios2.FileReader(str(bp)) as f:
        n = f.num_steps()
        var = f.inquire_variable("density")
        shape = tuple(var.shape())
        blocks = f.all_blocks_info("density")
        dens = f.read("density", step_selection=[0, n]).reshape(n, *shape)
        times = f.read("time", step_selection=[0, n])
        steps = f.read("sim_step", step_selection=[0, n])
        vtype = var.type()
    with open(truth, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        rows = [{k: float(v) for k, v in r.items()} for r in reader]
    return dict(n=n, shape=shape, blocks=blocks, dens=dens, time=times, sim_step=steps,
                type=vtype, header=header, truth=rows, stderr=stderr)


def test_steps_shape_scalars(runs):
    r = runs["b4"]
    assert r["n"] == STEPS
    assert r["shape"] == (NY, NX)
    assert r["type"] == "double"
    assert runs["b3"]["type"] == "float"
    assert list(r["sim_step"]) == list(range(STEPS))
    assert r["sim_step"].dtype == np.int64
    assert np.all(np.diff(r["time"]) > 0)
    assert "wrote 12 steps" in r["stderr"] and "ms/step" in r["stderr"]


@pytest.mark.parametrize("name,nblocks", [("b1", 1), ("b4", 4), ("b3", 3), ("flat", 2)])
def test_blocks_per_step(runs, name, nblocks):
    info = runs[name]["blocks"]
    assert len(info) == STEPS
    assert all(len(step) == nblocks for step in info)
    # the blocks tile the global array exactly
    cover = np.zeros((NY, NX), dtype=int)
    for b in info[0]:
        (y0, x0), (cy, cx) = ([int(v) for v in b[k].split(",")] for k in ("Start", "Count"))
        cover[y0:y0 + cy, x0:x0 + cx] += 1
    assert np.all(cover == 1)


def test_uneven_blocks(runs):
    counts = sorted(tuple(int(v) for v in b["Count"].split(",")) for b in runs["b3"]["blocks"][0])
    assert counts == [(21, 64), (21, 64), (22, 64)]


def test_same_seed_same_field_for_every_decomposition(runs):
    ref = runs["b4"]["dens"]
    assert np.array_equal(runs["b1"]["dens"], ref)
    assert np.array_equal(runs["b3"]["dens"], ref.astype(np.float32))
    assert runs["b1"]["truth"] == runs["b4"]["truth"]
    assert ref.std() > 0.5  # turbulence is there


def test_truth_format(runs):
    r = runs["b4"]
    assert r["header"] == ["step", "blob_id", "c0", "c1", "peak", "width"]
    assert r["truth"], "no blob inside the domain"
    for row in r["truth"]:
        assert 0 <= row["step"] < STEPS
        assert 0 <= row["c0"] < NY and 0 <= row["c1"] <= NX - 1
        assert row["width"] >= 2.5
        assert 5.0 <= row["peak"] <= 8.0  # 6.5 x 0.8..1.2 with turbulence std 1


def test_blobs_are_local_maxima_at_truth(runs):
    r = runs["b4"]
    for row in r["truth"]:
        field = r["dens"][int(row["step"])]
        i, j = int(round(row["c0"])), int(round(row["c1"]))
        ys = [(i + k) % NY for k in range(-2, 3)]
        xs = [min(NX - 1, max(0, j + k)) for k in range(-2, 3)]
        win = field[np.ix_(ys, xs)]
        di, dj = np.unravel_index(np.argmax(win), win.shape)
        assert abs(di - 2) <= 1 and abs(dj - 2) <= 1, row
        assert abs(win.max() - row["peak"]) < 2.5, row  # turbulence std 1
        # the blob stands out of the background (turbulence std 1)
        assert win.max() > 2.5


def test_truth_reconstructs_field_without_turbulence(runs):
    r = runs["flat"]
    assert len({row["c0"] for row in r["truth"]}) > 1
    y = np.arange(NY)[:, None]
    x = np.arange(NX)[None, :]
    max_w = max(row["width"] for row in r["truth"])
    inner = slice(int(np.ceil(5 * max_w)), NX - int(np.ceil(5 * max_w)))
    for step in range(STEPS):
        model = np.zeros((NY, NX))
        for row in (q for q in r["truth"] if q["step"] == step):
            for shift in (-NY, 0, NY):  # periodic in y
                dy = y - row["c0"] + shift
                model += row["peak"] * np.exp(-((x - row["c1"]) ** 2 + dy ** 2) / row["width"] ** 2)
        # blobs whose centre is outside the domain are not in the truth: compare the interior
        np.testing.assert_allclose(r["dens"][step][:, inner], model[:, inner], atol=1e-5)


def test_seed_changes_blobs(runs):
    a = {(q["step"], q["c0"]) for q in runs["b4"]["truth"]}
    b = {(q["step"], q["c0"]) for q in runs["flat"]["truth"]}
    assert a != b


@pytest.mark.parametrize("args,message", [
    (["--size", "32"], "out of range"),
    (["--size", "2000"], "out of range"),
    (["--size", "64", "--nx", "128"], "either --size or --ny/--nx"),
    (["--blocks", "0"], "must be >= 1"),
    (["--decomp", "2y2"], "PYxPX"),
    (["--blocks", "2", "--decomp", "2x1"], "not allowed with"),
    (["--dtype", "int8"], "invalid choice"),
    (["--io", "NoSuchIO"], "not defined in"),
    (["--xml", "/nonexistent/adios2.xml"], "no such file"),
    (["--size", "64", "--blobs", "500"], "too many"),
    (["--steps", "-3"], "must be >= 1"),
    (["--sleep", "nan"], "finite"),
])
def test_bad_arguments(tmp_path, args, message):
    p = subprocess.run([sys.executable, str(SIM), "--stream", str(tmp_path / "x.bp"), *args],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr, p.stderr
    assert not (tmp_path / "x.bp").exists()


def test_stop_file_ends_the_run_cleanly_with_its_timings(tmp_path):
    # The transport benchmark ends a long simulation this way once its measurements are done.
    stop = tmp_path / "stop"
    stop.touch()
    timing = tmp_path / "timing.csv"
    p = subprocess.run([*_cmd(tmp_path, "stopped", "--size", "64", "--steps", "500", "--blobs", "1"),
                        "--stop-file", str(stop), "--timing-csv", str(timing)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "wrote 0 steps" in p.stderr, p.stderr
    assert timing.read_text().splitlines() == ["step,step_ms"]
