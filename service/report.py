"""``intransit report``: a catalog as a summary table, and CSV for everything else."""

from __future__ import annotations

import csv
import os
from typing import TextIO

import numpy as np

from intransit.service.catalog import Catalog, check_writable, read_catalog_bounded


def summary_lines(cat: Catalog) -> list[str]:
    """A human summary: steps, drops, events per analyzer, tracks."""
    steps = [int(r["step"]) for r in cat.steps]
    dropped = int(sum(r.get("dropped", 0) for r in cat.steps))
    lines = [f"steps analyzed: {len(steps)}" + (f" (writer steps {steps[0]}..{steps[-1]}, {dropped} dropped)" if steps else "")]
    if cat.steps:
        secs = np.array([r.get("seconds", 0.0) for r in cat.steps])
        lines.append(f"step time: mean {secs.mean() * 1e3:.2f} ms, p95 {np.percentile(secs, 95) * 1e3:.2f} ms")
    lines.append("")
    lines.append(f"{'analyzer':<20} {'events':>8} {'per step':>9} {'failed':>7}")
    names = sorted(set(cat.fields) | {k[: -len("/failed")] for r in cat.steps for k in r if k.endswith("/failed")})
    for name in names:
        n = len(cat.events.get(name, []))
        failed = int(sum(r.get(f"{name}/failed", 0) for r in cat.steps))
        per = n / len(cat.steps) if cat.steps else 0.0
        lines.append(f"{name:<20} {n:>8} {per:>9.2f} {failed:>7}")
    for name, cols in sorted(cat.fields.items()):
        if "track_id" not in cols:
            continue
        tracks = cat.tracks(name)
        lengths = sorted((len(v) for v in tracks.values()), reverse=True)
        lines.append("")
        lines.append(f"{name}: {len(tracks)} tracks; length max {lengths[0] if lengths else 0}, "
                     f"median {int(np.median(lengths)) if lengths else 0}, >= 5 steps: {sum(1 for n in lengths if n >= 5)}")
        lines.append(f"  {'track':>6} {'first':>6} {'last':>6} {'n_obs':>6} {'c0 start→end':>22} {'c1 start→end':>22}")
        for tid, rows in sorted(tracks.items(), key=lambda kv: -len(kv[1]))[:15]:
            a, b = rows[0], rows[-1]
            lines.append(f"  {tid:>6} {int(a['step']):>6} {int(b['step']):>6} {len(rows):>6} "
                         f"{a['c0']:>10.1f}→{b['c0']:<10.1f} {a['c1']:>10.1f}→{b['c1']:<10.1f}")
    return lines


def write_csv(cat: Catalog, directory: str) -> list[str]:
    """One CSV per analyzer (events) plus ``steps.csv``; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    step_cols = sorted({k for r in cat.steps for k in r})
    path = os.path.join(directory, "steps.csv")
    with open(path, "w", newline="") as fh:
        _write_rows(fh, ["step", "index"] + [c for c in step_cols if c not in ("step", "index")], cat.steps)
    paths.append(path)
    for name, cols in sorted(cat.fields.items()):
        path = os.path.join(directory, f"{name.replace('/', '_')}.csv")
        with open(path, "w", newline="") as fh:
            _write_rows(fh, ["step", "index"] + list(cols), cat.events.get(name, []))
        paths.append(path)
    return paths


def _write_rows(fh: TextIO, columns: list[str], rows: list[dict[str, float]]) -> None:
    writer = csv.writer(fh)
    writer.writerow(columns)
    for row in rows:
        out = []
        for c in columns:
            v = row.get(c, "")
            out.append(int(v) if isinstance(v, float) and c in ("step", "index", "track_id", "object") and v == v else v)
        writer.writerow(out)


def report(path: str, *, csv_dir: str | None = None, timeout_s: float = 120.0) -> tuple[list[str], list[str]]:
    """Summary lines and CSV paths; every wait bounded by ``timeout_s`` (a damaged catalog raises CatalogError).

    A ``csv_dir`` that cannot be written is refused before the catalog is read (OutputPathError).
    """
    if csv_dir:
        check_writable(csv_dir, "--csv folder", folder=True)
    cat = read_catalog_bounded(path, timeout_s)
    lines = summary_lines(cat)
    paths = write_csv(cat, csv_dir) if csv_dir else []
    return lines, paths
