"""Launching an ensemble on one machine: the analytics pool and the members, at most K members at once.

``intransit ensemble run ENSEMBLE.toml`` (service/ensemble_cli.py) calls
``run``: it writes the member table if there is none, the members' SST
writer XML (``member.xml``: ``RendezvousReaderCount`` = the pool's ranks, so
a member's first step waits for the pool; ``QueueLimit``, Block), starts the
pool (``mpiexec -n M python -m intransit.service.ensemble_pool``, or one
process) and then the members' groups from the command template, a whole
group at a time, while at most ``max_concurrent`` members run.

Faults: a member that exits non-zero, runs past ``timeout_s``, or that the
pool asks to end (its stream stalled: ``status/*.kill``) fails its group
attempt: the group's other members are ended too, and the group is launched
again as a new attempt (new stream names) up to ``retries`` times, else
given up (``status/g<group>.discarded``).  The pool drops a failed
attempt's partial statistics whole (service/ensemble_pool.py).

Resume (``--resume``): the pool restores its checkpoint and the groups it had
merged are not launched again; groups in flight when the run died start
afresh (their partials were never merged), so nothing is counted twice.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types
from typing import Any

from intransit.adapters import members as mem
from intransit.service.ensemble_config import EnsembleConfig
from intransit.service.ensemble_plan import plan, read_table, write_table
from intransit.service.ensemble_pool import read_manifest, write_reader_xml

log = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: How long the pool may take to finish (write its products) after the last member ended.
POOL_FINISH_S = 120.0


class LaunchError(RuntimeError):
    """The ensemble could not run to its end (the pool died, a template is wrong); the message says why."""


def member_xml(cfg: EnsembleConfig) -> str:
    return os.path.join(cfg.workdir, "member.xml")


def write_member_xml(cfg: EnsembleConfig) -> str:
    """The members' writer XML: SST, waiting for every pool rank, lossless (Block) with a bounded queue."""
    params = {"RendezvousReaderCount": cfg.pool_ranks, "QueueLimit": cfg.queue_limit, "QueueFullPolicy": "Block",
              "DataTransport": "WAN", "OpenTimeoutSecs": 60}
    body = "".join(f'\n      <parameter key="{k}" value="{v}"/>' for k, v in params.items())
    path = member_xml(cfg)
    mem.write_atomic(path, f'<?xml version="1.0"?>\n<adios-config>\n  <io name="{cfg.io}">\n'
                     f'    <engine type="SST">{body}\n    </engine>\n  </io>\n</adios-config>\n')
    return path


def member_command(cfg: EnsembleConfig, row: dict[str, Any], attempt: int, *, python: str = sys.executable) -> list[str]:
    """The member's command line from the template: ``{stream}``, ``{xml}``, ``{param.NAME}``, ..."""
    who = mem.MemberAttempt(int(row["member"]), attempt)
    values = {
        "stream": mem.stream_path(cfg.workdir, who), "xml": member_xml(cfg), "member": who.member,
        "attempt": attempt, "group": row["group"], "role": row["role"], "python": python, "root": ROOT,
        "steps": cfg.steps, "workdir": cfg.workdir,
        "param": types.SimpleNamespace(**{p.name: repr(float(row[p.name])) for p in cfg.parameters}),
    }
    try:
        text = cfg.command.format(**values)
    except (KeyError, AttributeError, IndexError, ValueError) as exc:
        raise LaunchError(f"[member] command template {cfg.command!r}: cannot fill {exc}; placeholders: "
                          f"{', '.join('{' + k + '}' for k in values if k != 'param')}, "
                          f"{', '.join('{param.' + p.name + '}' for p in cfg.parameters)}") from None
    args = shlex.split(text)
    for inj in cfg.faults:
        if inj.member == who.member and inj.attempt == attempt:
            args += shlex.split(inj.args)
    return args


def pool_command(cfg: EnsembleConfig, *, resume: bool, python: str = sys.executable, launcher_pid: int = 0,
                 log_level: str = "info") -> list[str]:
    cmd = [python, "-m", "intransit.service.ensemble_pool", cfg.path, "--log-level", log_level]
    if resume:
        cmd.append("--resume")
    if launcher_pid:
        cmd += ["--launcher-pid", str(launcher_pid)]
    if cfg.pool_ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(python) + os.pathsep + os.environ.get("PATH", ""))
        if mpiexec is None:
            raise LaunchError(f"pool_ranks = {cfg.pool_ranks} needs mpiexec (not found beside {python} or on PATH)")
        cmd = [mpiexec, "-n", str(cfg.pool_ranks)] + cmd
    return cmd


def prepare(cfg: EnsembleConfig, *, resume: bool) -> list[dict[str, Any]]:
    """The run folder ready for a (fresh or resumed) run; returns the member table."""
    os.makedirs(cfg.workdir, exist_ok=True)
    if not os.path.exists(os.path.join(cfg.workdir, "members.json")):
        write_table(cfg, plan(cfg))
    rows = read_table(cfg.workdir)
    # Streams and member statuses belong to processes of an earlier run, all gone now.
    for path in glob.glob(os.path.join(glob.escape(mem.stream_dir(cfg.workdir)), "*")):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    for path in glob.glob(os.path.join(glob.escape(mem.status_dir(cfg.workdir)), "m*")):
        os.remove(path)
    if not resume:
        for path in (os.path.join(cfg.workdir, "ckpt"), cfg.product_folder()):
            shutil.rmtree(path, ignore_errors=True)
        for path in glob.glob(os.path.join(glob.escape(mem.status_dir(cfg.workdir)), "g*.discarded")):
            os.remove(path)
        for name in ("pool_summary.json", "ensemble_summary.json", "pool.ready"):
            if os.path.exists(os.path.join(cfg.workdir, name)):
                os.remove(os.path.join(cfg.workdir, name))
    for sub in (mem.stream_dir(cfg.workdir), mem.status_dir(cfg.workdir), os.path.join(cfg.workdir, "logs")):
        os.makedirs(sub, exist_ok=True)
    if os.path.exists(os.path.join(cfg.workdir, "pool.ready")):
        os.remove(os.path.join(cfg.workdir, "pool.ready"))
    write_member_xml(cfg)
    write_reader_xml(cfg)
    return rows


@dataclasses.dataclass
class _Running:
    who: mem.MemberAttempt
    group: int
    proc: subprocess.Popen
    started: float


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _has_opened(cfg: EnsembleConfig, r: _Running, wait_s: float = 30.0) -> bool:
    """The member has published its stream (or ended, or took longer than ``wait_s`` to start)."""
    return (os.path.exists(mem.stream_path(cfg.workdir, r.who) + ".sst") or r.proc.poll() is not None
            or time.monotonic() - r.started > wait_s)


def _stop_pool(proc: subprocess.Popen) -> None:
    """SIGTERM first (mpiexec forwards it to its ranks, which call setsid), SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            _kill(proc)


def run(cfg: EnsembleConfig, *, resume: bool = False, python: str = sys.executable, log_level: str = "info",
        pool_finish_s: float = POOL_FINISH_S) -> dict[str, Any]:
    """Run the whole ensemble here; returns the summary (also ``<workdir>/ensemble_summary.json``)."""
    rows = prepare(cfg, resume=resume)
    by_group: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_group.setdefault(int(r["group"]), []).append(r)
    manifest = read_manifest(cfg) if resume else None
    merged_before = {int(g) for g in (manifest or {}).get("merged", {})}
    given_up = mem.discarded_groups(cfg.workdir)
    queue = [g for g in sorted(by_group) if g not in merged_before and g not in given_up]
    attempts = {g: 0 for g in queue}
    logs = os.path.join(cfg.workdir, "logs")
    pool_log = open(os.path.join(logs, "pool.log"), "a")
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    pool = subprocess.Popen(pool_command(cfg, resume=resume, python=python, launcher_pid=os.getpid(),
                                         log_level=log_level),
                            cwd=cfg.workdir, stdout=pool_log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env)
    running: list[_Running] = []
    counts = {"members_started": 0, "members_failed": 0, "members_timed_out": 0, "members_stalled": 0,
              "members_killed_with_group": 0, "group_retries": 0, "groups_given_up": 0}
    t0 = time.monotonic()
    log.info("ensemble %s: %d groups of %d to run (%d merged before), K = %d, pool of %d rank(s)", cfg.path,
             len(queue), cfg.group_size, len(merged_before), cfg.max_concurrent, cfg.pool_ranks)

    def end_attempt(run_: _Running, rc: int | None, reason: str) -> None:
        mem.write_status(cfg.workdir, run_.who, rc, reason)
        running.remove(run_)

    def fail_group(group: int, attempt: int) -> None:
        for i in range(len(to_start) - 1, -1, -1):  # its members still waiting to start: never started
            g, a, r = to_start[i]
            if g == group and a == attempt:
                mem.write_status(cfg.workdir, mem.MemberAttempt(int(r["member"]), a), -9,
                                 "not started: its group attempt failed")
                del to_start[i]
        for other in [r for r in running if r.group == group and r.who.attempt == attempt]:
            _kill(other.proc)
            end_attempt(other, -9, "killed: its group attempt failed")
            counts["members_killed_with_group"] += 1
        if attempts[group] < cfg.retries:
            attempts[group] += 1
            counts["group_retries"] += 1
            queue.insert(0, group)
            log.warning("group %d attempt %d failed: launching attempt %d", group, attempt, attempts[group])
        else:
            mem.mark_discarded(cfg.workdir, group, f"attempt {attempt} failed; retries ({cfg.retries}) spent")
            counts["groups_given_up"] += 1
            log.warning("group %d given up after %d attempt(s)", group, attempt + 1)

    pool_ready = False
    to_start: list[tuple[int, int, dict[str, Any]]] = []
    last: _Running | None = None
    try:
        while queue or running or to_start:
            if pool.poll() is not None:
                raise LaunchError(f"the analytics pool exited with status {pool.returncode} while members were "
                                  f"still to run (log: {os.path.join(logs, 'pool.log')}); resume with --resume")
            if not pool_ready:
                pool_ready = os.path.exists(os.path.join(cfg.workdir, "pool.ready"))
            if pool_ready and not to_start and queue and len(running) + len(by_group[queue[0]]) <= cfg.max_concurrent:
                group = queue.pop(0)
                to_start.extend((group, attempts[group], r) for r in by_group[group])
            if to_start and (last is None or _has_opened(cfg, last)):
                # One member at a time, each once the one before has opened its stream: pids and open seconds
                # then increase together and no two members share an EVPath connection id (ensemble_pool.py).
                group, attempt, r = to_start.pop(0)
                who = mem.MemberAttempt(int(r["member"]), attempt)
                cmd = member_command(cfg, r, attempt, python=python)
                out = open(os.path.join(logs, who.tag + ".log"), "w")
                proc = subprocess.Popen(cmd, cwd=cfg.workdir, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=env)
                out.close()
                last = _Running(who, group, proc, time.monotonic())
                running.append(last)
                counts["members_started"] += 1
            kills = mem.kill_requests(cfg.workdir)
            now = time.monotonic()
            for r in list(running):
                if r not in running:
                    continue  # ended with its group just now
                rc = r.proc.poll()
                if rc is None and now - r.started > cfg.timeout_s:
                    _kill(r.proc)
                    rc, reason = -9, f"timeout: ran past {cfg.timeout_s:g} s"
                    counts["members_timed_out"] += 1
                elif rc is None and r.who in kills:
                    _kill(r.proc)
                    rc, reason = -9, f"ended at the pool's request ({kills[r.who]})"
                    counts["members_stalled"] += 1
                elif rc is None:
                    continue
                else:
                    reason = "exit"
                end_attempt(r, rc, reason)
                if rc != 0:
                    counts["members_failed"] += 1
                    fail_group(r.group, r.who.attempt)
            time.sleep(0.05)
        try:
            rc_pool = pool.wait(timeout=pool_finish_s)
        except subprocess.TimeoutExpired:
            raise LaunchError(f"the pool did not finish within {pool_finish_s:g} s of the last member "
                              f"(log: {os.path.join(logs, 'pool.log')})") from None
        if rc_pool != 0:
            raise LaunchError(f"the analytics pool exited with status {rc_pool} (log: {os.path.join(logs, 'pool.log')})")
    finally:
        for r in running:
            _kill(r.proc)
        _stop_pool(pool)
        pool_log.close()
    with open(os.path.join(cfg.workdir, "pool_summary.json")) as fh:
        summary = json.load(fh)
    summary.update(counts)
    summary["launcher_wall_s"] = time.monotonic() - t0
    summary["members"] = len(rows)
    mem.write_atomic(os.path.join(cfg.workdir, "ensemble_summary.json"), json.dumps(summary, indent=1, default=float))
    return summary
