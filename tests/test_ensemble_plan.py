"""Design of experiments, the ensemble config's errors, the member command template and the Slurm scripts."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess

import numpy as np
import pytest

from intransit.service import ensemble_config
from intransit.service.config import ConfigError
from intransit.service.ensemble_launch import member_command, prepare
from intransit.service.ensemble_plan import plan, read_table
from intransit.service.ensemble_slurm import write_scripts
from tests import procs
from tests.ensemble_helpers import write_config


def test_plan_cli_writes_pick_freeze_groups(tmp_path):
    cfg_path = write_config(str(tmp_path), params=("nu", "vx", "vy"), samples=5, max_concurrent=5)
    res = subprocess.run([procs.INTRANSIT, "ensemble", "plan", cfg_path], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "25 members in 5 groups of 5" in res.stdout
    workdir = tmp_path / "run_ens"
    with open(workdir / "members.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["role"] for r in rows[:5]] == ["A", "B", "C1", "C2", "C3"]
    table = read_table(str(workdir))
    assert len(table) == 25 and [r["member"] for r in table] == list(range(25))
    names = ("nu", "vx", "vy")
    for g in range(5):
        grp = {r["role"]: np.array([r[n] for n in names]) for r in table if r["group"] == g}
        for i in range(3):  # C_i = A with its i-th parameter from B
            expect = grp["A"].copy()
            expect[i] = grp["B"][i]
            np.testing.assert_array_equal(grp[f"C{i + 1}"], expect)
        assert not np.any(grp["A"] == grp["B"])
    for r in table:
        assert 0.002 <= r["nu"] <= 0.01 and 0.5 <= r["vx"] <= 1.5 and -0.5 <= r["vy"] <= 0.5
    with open(workdir / "members.json") as fh:
        meta = json.load(fh)
    assert meta["group_size"] == 5 and meta["parameters"] == list(names)


def test_lhs_design_is_stratified_and_seeded(tmp_path):
    cfg = ensemble_config.load(write_config(str(tmp_path), params=("nu", "vx"), samples=20, sobol=False,
                                            design="lhs"))
    rows = plan(cfg)
    assert len(rows) == 20 and {r["role"] for r in rows} == {"M"} and [r["group"] for r in rows] == list(range(20))
    u = (np.array([r["nu"] for r in rows]) - 0.002) / 0.008
    assert sorted(np.floor(u * 20).astype(int).tolist()) == list(range(20))  # one sample per stratum
    assert plan(cfg) == rows  # same seed, same table


def test_normal_and_loguniform_distributions(tmp_path):
    raw = {"ensemble": {"samples": 256, "sobol_indices": False, "design": "random"},
           "parameters": [{"name": "k", "distribution": "normal", "mean": 2.0, "std": 0.5},
                          {"name": "d", "distribution": "loguniform", "low": 1e-3, "high": 1e-1}],
           "member": {"command": "sim {stream}", "variable": "T", "steps": 2}}
    rows = plan(ensemble_config.from_dict(raw))
    k = np.array([r["k"] for r in rows])
    d = np.array([r["d"] for r in rows])
    assert abs(k.mean() - 2.0) < 0.1 and abs(k.std() - 0.5) < 0.1
    assert d.min() >= 1e-3 and d.max() <= 1e-1 and abs(np.log10(d).mean() + 2) < 0.15


@pytest.mark.parametrize("patch, message", [
    ({"ensemble": {"designs": "sobol"}}, "unknown key [ensemble].designs"),
    ({"ensemble": {"design": "halton"}}, "design 'halton' unknown"),
    ({"member": {"command": "sim --out x", "variable": "T", "steps": 2}}, "must contain {stream}"),
    ({"launch": {"max_concurrent": 3}}, "smaller than a pick-freeze group"),
    ({"statistics": {"quantiles": [0.5, 1.5]}}, "strictly between 0 and 1"),
    ({"parameters": [{"name": "nu", "low": 1.0, "high": 0.5}]}, "needs low < high"),
    ({"parameters": []}, "at least one [[parameters]]"),
    ({"member": {"command": "x {stream}", "variable": "T", "steps": "5"}}, "[member].steps must be int"),
    ({"cluster": {}}, "unknown section [cluster]"),
])
def test_config_errors_name_the_key(patch, message):
    raw = {"ensemble": {"samples": 2}, "parameters": [{"name": "nu", "low": 0.0, "high": 1.0},
                                                       {"name": "vx", "low": 0.0, "high": 1.0}],
           "member": {"command": "sim {stream}", "variable": "T", "steps": 2}, "launch": {"max_concurrent": 4}}
    raw.update(patch)
    with pytest.raises(ConfigError) as err:
        ensemble_config.from_dict(raw)
    assert message in str(err.value)


def test_cli_config_error_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[ensemble]\nsamples = 0\n[[parameters]]\nname = "a"\nlow = 0\nhigh = 1\n'
                    '[member]\ncommand = "x {stream}"\nvariable = "T"\nsteps = 2\n')
    res = subprocess.run([procs.INTRANSIT, "ensemble", "run", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "[ensemble] samples must be > 0" in res.stderr


def test_member_command_template_and_fault_injection(tmp_path):
    faults = '\n[faults]\ninject = [{member = 2, attempt = 1, args = "--fail-at-step 3"}]\n'
    cfg = ensemble_config.load(write_config(str(tmp_path), faults=faults))
    rows = prepare(cfg, resume=False)
    cmd = member_command(cfg, rows[2], 0, python="PY")
    assert cmd[0] == "PY" and cmd[cmd.index("--stream") + 1] == os.path.join(cfg.workdir, "streams", "m00002_a0")
    assert float(cmd[cmd.index("--nu") + 1]) == rows[2]["nu"] and "--fail-at-step" not in cmd
    assert member_command(cfg, rows[2], 1)[-2:] == ["--fail-at-step", "3"]
    with open(os.path.join(cfg.workdir, "member.xml")) as fh:
        xml = fh.read()
    assert 'key="RendezvousReaderCount" value="1"' in xml and 'value="Block"' in xml
    cfg.command = "sim {stream} --k {param.kappa}"
    with pytest.raises(Exception, match="param.nu"):
        member_command(cfg, rows[0], 0)


def test_slurm_scripts(tmp_path):
    cfg = ensemble_config.load(write_config(str(tmp_path), samples=3, ranks=2, max_concurrent=8, retries=2))
    cfg.slurm_partition = "gpu"
    prepare(cfg, resume=False)
    pool, members = write_scripts(cfg, python="/opt/py/bin/python")
    for script in (pool, members):
        assert subprocess.run(["bash", "-n", script]).returncode == 0  # valid bash
        text = open(script).read()
        assert not re.search(r"@[A-Z_]+@", text), "a template field was left unfilled"
        assert "#SBATCH --partition=gpu" in text
    pool_text, members_text = open(pool).read(), open(members).read()
    assert "#SBATCH --ntasks=2" in pool_text and "srun --ntasks=2 /opt/py/bin/python -m intransit.service.ensemble_pool" in pool_text
    assert "#SBATCH --array=0-2%2" in members_text  # 3 groups, 8 // 4 groups at once
    assert "#SBATCH --ntasks=4" in members_text and "seq 0 2" in members_text
    assert "timeout --signal=KILL 90" in members_text and ".kill" in members_text and ".discarded" in members_text
    slurm = os.path.join(cfg.workdir, "slurm")
    assert open(os.path.join(slurm, "groups.txt")).read().split() == ["00000", "00001", "00002"]
    lines = open(os.path.join(slurm, "g00001.cmds")).read().splitlines()
    assert len(lines) == 3 * 4  # (retries + 1) attempts x 4 members
    attempt, tag, cmd = lines[5].split("\t")
    assert attempt == "1" and tag == "m00005_a1" and os.path.join(cfg.workdir, "streams", "m00005_a1") in cmd
    assert cmd.startswith("/opt/py/bin/python ")


@pytest.mark.parametrize("kind, words", [
    ("folder", "is a directory: give the ensemble's TOML file"),
    ("binary", "is not text"),
    ("missing", "does not exist"),
    ("not_toml", "not valid TOML"),
])
def test_cli_refuses_unreadable_ensemble_files_without_a_traceback(tmp_path, kind, words):
    path = tmp_path / "e.toml"
    if kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\x00\xff\xfe")
    elif kind == "not_toml":
        path.write_text("[ensemble\nsamples = ")
    for sub in ("plan", "run"):
        res = subprocess.run([procs.INTRANSIT, "ensemble", sub, str(path)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and words in res.stderr, (sub, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr
