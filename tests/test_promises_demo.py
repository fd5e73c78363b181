"""README promise: `make demo` runs the live demo and its last line is one JSON object
(`tracks_true`, `tracks_found`, `tracks_matched`, `steps`, `catalog`, ...).

The command is the one the Makefile's ``demo`` recipe runs (read from the Makefile,
``$(PY)`` being this venv's python; not ``make`` itself, which would reinstall),
run in a copy of ``examples/`` and ``xml_configs/`` so that the demo's ``out/demo``
lands in the test's folder, never in the checkout (a user's own demo output).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from intransit.service.catalog import read_catalog
from tests import procs

KEYS = {"tracks_true": int, "tracks_found": int, "tracks_matched": int, "detection_recall": float,
        "detection_precision": float, "steps": int, "dropped": int, "catalog": str}


def demo_recipe() -> list[str]:
    """The commands of the Makefile's ``demo`` target."""
    with open(os.path.join(procs.ROOT, "Makefile")) as fh:
        text = fh.read()
    m = re.search(r"^demo:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert m, "no demo target in the Makefile"
    return [line.strip() for line in m.group(1).splitlines() if line.strip()]


def test_the_demo_recipe_is_one_python_command():
    recipe = demo_recipe()
    assert len(recipe) == 1 and recipe[0].startswith("$(PY) "), recipe


@pytest.mark.sst
@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_make_demo_ends_with_its_json_line(tmp_path):
    root = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "cpp")
    shutil.copytree(os.path.join(procs.ROOT, "examples"), root / "examples", ignore=ignore)
    shutil.copytree(os.path.join(procs.ROOT, "xml_configs"), root / "xml_configs")
    cmd = [sys.executable if word == "$(PY)" else word for word in shlex.split(demo_recipe()[0])]
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1100)
    out_dir = root / "out" / "demo"
    logs = "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-2000:] for p in sorted(out_dir.glob("*.log")))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:] + logs
    last = res.stdout.strip().splitlines()[-1]
    summary = json.loads(last)  # the last line itself, not just some line
    for key, kind in KEYS.items():
        assert isinstance(summary.get(key), kind), (key, summary)
    # What it says is what it wrote: the catalog (in this copy's out/demo), its steps and drops.
    assert os.path.realpath(summary["catalog"]) == os.path.realpath(out_dir / "catalog.bp")
    cat = read_catalog(summary["catalog"])
    assert summary["steps"] == len(cat.steps) > 0
    assert summary["dropped"] == sum(int(r["dropped"]) for r in cat.steps) == 0  # the demo is lossless
    with open(out_dir / "truth.csv") as fh:
        blobs = {row["blob_id"] for row in csv.DictReader(fh)}
    assert summary["tracks_true"] == len(blobs) > 0
    assert 1 <= summary["tracks_matched"] <= min(summary["tracks_true"], summary["tracks_found"])
    assert 0.0 < summary["detection_recall"] <= 1.0 and 0.0 < summary["detection_precision"] <= 1.0
    assert not list(out_dir.glob("*.sst"))  # no contact file left behind
