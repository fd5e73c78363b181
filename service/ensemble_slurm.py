"""The Slurm launcher: a pool job and a member job array, from the templates in ``deploy/``.

``write_scripts(cfg)`` fills ``deploy/ensemble_pool.sbatch`` and
``deploy/ensemble_members.sbatch`` into ``<workdir>/slurm/`` with, per
group, the members' command lines for every attempt (``g<group>.cmds``:
attempt, member tag, command; tab-separated) and ``groups.txt`` (one group
per array task).  The array runs at most ``max_concurrent // group_size``
groups at once.  Both jobs share only the run folder with the pool, exactly
as the local launcher does (adapters/members.py).  Tested by generating and
checking the scripts; ``intransit ensemble run`` submits them with ``sbatch``.
"""

from __future__ import annotations

import os
import shlex
import sys

from intransit.adapters import members as mem
from intransit.service.ensemble_config import EnsembleConfig
from intransit.service.ensemble_launch import ROOT, member_command
from intransit.service.ensemble_plan import read_table

TEMPLATES = {"pool.sbatch": "ensemble_pool.sbatch", "members.sbatch": "ensemble_members.sbatch"}


def _extra(cfg: EnsembleConfig) -> str:
    lines = []
    if cfg.slurm_partition:
        lines.append(f"#SBATCH --partition={cfg.slurm_partition}")
    if cfg.slurm_account:
        lines.append(f"#SBATCH --account={cfg.slurm_account}")
    return "\n".join(lines)


def write_scripts(cfg: EnsembleConfig, *, python: str = sys.executable) -> list[str]:
    """``pool.sbatch`` and ``members.sbatch`` (plus the per-group command files); returns the two script paths."""
    folder = os.path.join(cfg.workdir, "slurm")
    os.makedirs(folder, exist_ok=True)
    rows = read_table(cfg.workdir)
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(int(r["group"]), []).append(r)
    given_up = mem.discarded_groups(cfg.workdir)
    todo = [g for g in sorted(groups) if g not in given_up]
    for g in todo:
        lines = []
        for attempt in range(cfg.retries + 1):
            for r in groups[g]:
                who = mem.MemberAttempt(int(r["member"]), attempt)
                cmd = " ".join(shlex.quote(a) for a in member_command(cfg, r, attempt, python=python))
                lines.append(f"{attempt}\t{who.tag}\t{cmd}\n")
        with open(os.path.join(folder, f"g{g:05d}.cmds"), "w") as fh:
            fh.writelines(lines)
    with open(os.path.join(folder, "groups.txt"), "w") as fh:
        fh.writelines(f"{g:05d}\n" for g in todo)
    values = {
        "JOBNAME": os.path.basename(os.path.normpath(cfg.workdir)) or "ensemble",
        "WORKDIR": shlex.quote(cfg.workdir), "CONFIG": shlex.quote(cfg.path), "PYTHON": shlex.quote(python),
        "POOL_RANKS": str(cfg.pool_ranks), "LAST_TASK": str(max(len(todo) - 1, 0)),
        "PARALLEL": str(max(1, cfg.max_concurrent // cfg.group_size)), "GROUP_SIZE": str(cfg.group_size),
        "TIME": cfg.slurm_time, "RETRIES": str(cfg.retries), "TIMEOUT_S": str(int(round(cfg.timeout_s))),
        "SBATCH_EXTRA": _extra(cfg),
    }
    out = []
    for name, template in TEMPLATES.items():
        with open(os.path.join(ROOT, "deploy", template)) as fh:
            text = fh.read()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        path = os.path.join(folder, name)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o755)
        out.append(path)
    return out
