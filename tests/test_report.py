"""``intransit report`` over a real catalog: the table counts what was written and
``--csv`` holds every row (a README promise no test checked)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np

from intransit.analyzers.base import StepResult
from intransit.service.catalog import CatalogWriter

INTRANSIT = os.path.join(os.path.dirname(sys.executable), "intransit")


def _write(path: str, seed: int) -> tuple[int, int, dict[int, int]]:
    """Steps with random event counts, dropped steps and 3 tracks; returns (blob events, dropped, track lengths)."""
    rng = np.random.default_rng(seed)
    writer = CatalogWriter(path, {"blobs": ("c0", "c1", "area"), "tracks": ("track_id", "c0", "c1")},
                           flush_interval_s=0.0)
    n_blobs, dropped, lengths = 0, 0, {}
    step = 0
    for index in range(12):
        gap = int(rng.integers(0, 3))
        step += gap + 1
        dropped += gap if index else 0
        k = int(rng.integers(0, 4))
        n_blobs += k
        blobs = [{"c0": float(rng.normal()), "c1": float(rng.normal()), "area": float(rng.integers(4, 40))}
                 for _ in range(k)]
        alive = [t for t in (1, 2, 3) if index >= 2 * t]
        for t in alive:
            lengths[t] = lengths.get(t, 0) + 1
        tracks = [{"track_id": float(t), "c0": float(index), "c1": float(t)} for t in alive]
        writer.write_step(step=step, index=index, dropped=gap if index else 0, seconds=1e-3,
                          results={"blobs": StepResult(events=blobs, scores={"n": float(k)}),
                                   "tracks": StepResult(events=tracks, scores={})})
    writer.close()
    return n_blobs, dropped, lengths


def test_report_table_and_csv_hold_what_was_written(tmp_path):
    path = str(tmp_path / "cat.bp")
    n_blobs, dropped, lengths = _write(path, seed=5)
    out = subprocess.run([INTRANSIT, "report", path, "--csv", str(tmp_path / "csv")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"steps analyzed: 12 (writer steps ") and lines[0].endswith(f", {dropped} dropped)")
    blob_row = next(line for line in lines if line.startswith("blobs "))
    assert blob_row.split()[1] == str(n_blobs)
    assert f"tracks: {len(lengths)} tracks; length max {max(lengths.values())}" in out.stdout
    with open(tmp_path / "csv" / "blobs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert n_blobs > 0 and len(rows) == n_blobs
    assert set(rows[0]) == {"step", "index", "c0", "c1", "area"}
    with open(tmp_path / "csv" / "tracks.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({int(r["track_id"]) for r in rows}) == sorted(lengths)
    assert all(sum(1 for r in rows if int(r["track_id"]) == t) == n for t, n in lengths.items())
    with open(tmp_path / "csv" / "steps.csv") as fh:
        steps = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in steps] == list(range(12))
    assert sum(int(float(r["dropped"])) for r in steps) == dropped
    assert f"wrote {tmp_path / 'csv' / 'steps.csv'}" in out.stdout
