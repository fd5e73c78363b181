"""Ensembles end to end: real member processes writing SST, the pool under mpiexec, products read back.

Few members (8-12), 16^2 fields, 4 steps: each run takes about a minute on
the shared two-core machine (members start one after another, ~5 s each).
Every result is compared with the offline statistics over the same members'
fields computed here (tests/ensemble_helpers.py) to 1e-10.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import procs
from tests.ensemble_helpers import member_fields, offline, read_stats, write_config

pytestmark = [pytest.mark.sst, pytest.mark.slow]

EXACT = ("mean", "variance", "skewness", "kurtosis", "min", "max", "p_exceed_0.05")
SOBOL = ("sobol_first_nu", "sobol_total_nu", "sobol_first_vx", "sobol_total_vx")


def _run(cfg: str, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([procs.INTRANSIT, "ensemble", "run", cfg, *args], cwd=os.path.dirname(cfg),
                          capture_output=True, text=True, timeout=timeout)


def _summary(workdir: str) -> dict:
    with open(os.path.join(workdir, "ensemble_summary.json")) as fh:
        return json.load(fh)


def _rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "members.json")) as fh:
        return json.load(fh)["members"]


def _check_against_offline(workdir: str, groups: set[int], *, steps: int = 4, n: int = 16,
                           names=EXACT + SOBOL) -> dict[str, np.ndarray]:
    fields = member_fields(workdir, ("nu", "vx"), n=n, steps=steps)
    ref = offline(fields, _rows(workdir), groups, (0.05,), p=2 if any(x.startswith("sobol") for x in names) else None)
    got = read_stats(os.path.join(workdir, "stats.products"), names, steps)
    # Scale-free statistics (skewness, kurtosis, Sobol indices) are compared where the members' variance is
    # resolved: step 0 is the same initial field in every member (variance 0 or 1e-31 rounding), where both
    # sides divide rounding noise by rounding noise.
    resolved = ref["variance"] > 1e-12 * ref["variance"].max()
    assert resolved[1:].mean() > 0.5
    for name in names:
        assert got[name].shape == (steps, n, n), name
        if name in ("mean", "variance", "min", "max") or name.startswith("p_exceed"):
            np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-10, err_msg=name)
        else:
            np.testing.assert_allclose(got[name][resolved], ref[name][resolved], rtol=0, atol=1e-10, err_msg=name)
    return got


@pytest.mark.mpi
def test_clean_run_two_pool_ranks_equals_offline(tmp_path):
    cfg = write_config(str(tmp_path), samples=3, ranks=2)
    res = _run(cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    workdir = str(tmp_path / "run_ens")
    s = _summary(workdir)
    assert s["members"] == 12 and s["members_applied"] == 12 and s["groups_merged"] == 3
    assert s["members_failed"] == 0 and s["attempts_discarded"] == []
    assert s["pool_ranks"] == 2
    got = _check_against_offline(workdir, {0, 1, 2})
    # the quantile is the averaged stochastic approximation: within the range of the members, near the median
    q = read_stats(os.path.join(workdir, "stats.products"), ("quantile_0.5",), 4)["quantile_0.5"]
    assert np.all(q >= got["min"] - 1e-12) and np.all(q <= got["max"] + 1e-12)
    # each of the 2 ranks wrote its own product file; bytes written are a small part of the members' data
    assert sorted(os.listdir(os.path.join(workdir, "stats.products"))) == ["rank0.bp", "rank1.bp"]
    assert not [f for f in os.listdir(os.path.join(workdir, "streams")) if f.endswith(".sst")]


@pytest.mark.mpi
def test_three_pool_ranks_uneven_shares_of_two_writer_blocks(tmp_path):
    """M = 3 ranks over N = 2 writer blocks of a 17 x 17 field (uneven pieces), 8 Latin-hypercube members."""
    cfg = write_config(str(tmp_path), samples=8, sobol=False, design="lhs", n=17, ranks=3,
                       extra_member_args="--blocks 2")
    res = _run(cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    workdir = str(tmp_path / "run_ens")
    s = _summary(workdir)
    assert s["members_applied"] == 8 and s["pool_ranks"] == 3 and s["attempts_discarded"] == []
    _check_against_offline(workdir, set(range(8)), n=17, names=EXACT)
    assert sorted(os.listdir(os.path.join(workdir, "stats.products"))) == ["rank0.bp", "rank1.bp", "rank2.bp"]


def test_failed_and_stalled_members_relaunch_or_discard_whole_groups(tmp_path):
    """g0: a member crashes (attempt 0) -> relaunched; g1: a member hangs -> the pool's stall timeout ends it ->
    relaunched; g2: a member crashes in both attempts -> the group is discarded whole.  The statistics equal the
    offline ones over g0 and g1: nothing of a failed attempt is in them."""
    faults = """
        [faults]
        inject = [{member = 1, attempt = 0, args = "--fail-at-step 1"},
                  {member = 6, attempt = 0, args = "--stall-at-step 1"},
                  {member = 8, attempt = 0, args = "--fail-at-step 2"},
                  {member = 10, attempt = 1, args = "--fail-at-step 0"}]
        """
    cfg = write_config(str(tmp_path), samples=3, retries=1, stall_timeout_s=6, faults=faults)
    res = _run(cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    workdir = str(tmp_path / "run_ens")
    s = _summary(workdir)
    assert s["groups_merged"] == 2 and s["members_applied"] == 8
    assert s["groups_discarded"] == [2] and s["groups_given_up"] == 1
    assert s["group_retries"] == 3 and s["members_stalled"] == 1
    reasons = " ".join(d["reason"] for d in s["attempts_discarded"])
    assert len(s["attempts_discarded"]) == 4 and "rc 3" in reasons and "pool's request" in reasons
    _check_against_offline(workdir, {0, 1})


def test_pool_killed_and_resumed_counts_every_group_once(tmp_path):
    cfg = write_config(str(tmp_path), samples=3, checkpoint_every=1)
    workdir = str(tmp_path / "run_ens")
    proc = procs.start([procs.INTRANSIT, "ensemble", "run", cfg], str(tmp_path), "first.log")
    manifest = os.path.join(workdir, "ckpt", "manifest.json")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(manifest):
                with open(manifest) as fh:
                    if len(json.load(fh)["merged"]) >= 1:
                        break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        procs.kill_tree(proc)  # launcher, pool and members at once: a crash, nothing closed
    finally:
        procs.stop(proc)
    with open(manifest) as fh:
        merged_before = json.load(fh)["merged"]
    assert 1 <= len(merged_before) < 3
    assert not os.path.exists(os.path.join(workdir, "stats.products"))
    res = _run(cfg, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    s = _summary(workdir)
    assert s["groups_merged"] == 3 and s["members_applied"] == 12
    # the resumed launcher ran only the groups not merged before
    assert s["members_started"] == 4 * (3 - len(merged_before))
    _check_against_offline(workdir, {0, 1, 2})
