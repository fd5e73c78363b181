"""The distribution installs `intransit.service/adapters/analyzers` and no bare top-level names."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_wheel_installs_and_imports_in_a_scratch_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), ROOT],
        check=True, timeout=300, cwd=tmp_path,
    )
    (wheel,) = glob.glob(str(dist / "intransit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("intransit-")}
    assert top == {"intransit"}, f"bare top-level names in the wheel: {top}"
    for pkg in ("service", "adapters", "analyzers"):
        assert f"intransit/{pkg}/__init__.py" in names
    assert not any(n.startswith("intransit/tests") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The wheel goes into the scratch venv; its dependencies come from ours through a
    # plain path entry (which does not load our editable-install finder).
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel],
                   check=True, timeout=300)
    with open(os.path.join(site, "deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import intransit.service.cli, intransit.adapters.reader, intransit.analyzers as a;"
        "import intransit.service as s; print(s.__file__); print(','.join(a.available()))"
    )
    out = subprocess.run([str(vpy), "-c", probe], check=True, capture_output=True, text=True,
                         cwd=tmp_path, timeout=120).stdout
    assert out.splitlines()[0].startswith(site), out
    assert "noop" in out.splitlines()[1]
    bare = subprocess.run([str(vpy), "-c", "import service"], capture_output=True, text=True, cwd=tmp_path)
    assert bare.returncode != 0 and "No module named 'service'" in bare.stderr
