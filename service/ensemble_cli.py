"""``intransit ensemble plan|run|slurm ENSEMBLE.toml``: the ensemble subcommands (docs/ensemble.md).

Reached from ``intransit ensemble ...`` (service/cli.py hands the arguments
after ``ensemble`` to ``main`` here).  Exit status 2 for a bad config or
usage, 1 when the run could not finish, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from typing import Sequence

from intransit.service.config import ConfigError

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="intransit ensemble",
                                description="Ensembles: many runs of one code into one analytics pool, nothing stored.")
    sub = p.add_subparsers(dest="action", required=True)
    pl = sub.add_parser("plan", help="write the member table (design of experiments) into the workdir")
    pl.add_argument("config", help="ENSEMBLE.toml")
    r = sub.add_parser("run", help="run the pool and the members (local processes, or Slurm scripts submitted)")
    r.add_argument("config", help="ENSEMBLE.toml")
    r.add_argument("--resume", action="store_true", help="restore the pool checkpoint; merged groups are not rerun")
    r.add_argument("--no-submit", action="store_true", help="launcher slurm: write the scripts, do not sbatch them")
    r.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s = sub.add_parser("slurm", help="write the Slurm scripts (pool job and member job array) without submitting")
    s.add_argument("config", help="ENSEMBLE.toml")
    return p


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"intransit ensemble: error: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from intransit.service import ensemble_config
    from intransit.service.ensemble_launch import LaunchError, prepare, run
    from intransit.service.ensemble_plan import plan, write_table
    from intransit.service.ensemble_slurm import write_scripts

    logging.basicConfig(level=getattr(logging, getattr(args, "log_level", "info").upper()),
                        format="%(asctime)s intransit-ensemble %(levelname)s %(message)s", stream=sys.stderr)
    try:
        cfg = ensemble_config.load(args.config)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    if args.action == "plan":
        rows = plan(cfg)
        csv_path, json_path = write_table(cfg, rows)
        sys.stdout.write(f"{len(rows)} members in {cfg.samples} groups of {cfg.group_size} ({cfg.design}"
                         f"{', pick-freeze' if cfg.sobol_indices else ''}): wrote {csv_path} and {json_path}\n")
        return 0
    if args.action == "slurm" or cfg.launcher == "slurm":
        prepare(cfg, resume=getattr(args, "resume", False))
        scripts = write_scripts(cfg)
        for path in scripts:
            sys.stdout.write(f"wrote {path}\n")
        if args.action == "slurm" or args.no_submit:
            return 0
        if shutil.which("sbatch") is None:
            return _fail("launcher = \"slurm\" but sbatch is not on PATH; submit the scripts above yourself, or "
                         "use launcher = \"local\"", EXIT_RUNTIME)
        for path in scripts:
            subprocess.run(["sbatch", path], check=True)
        return 0
    try:
        summary = run(cfg, resume=args.resume, log_level=args.log_level)
    except LaunchError as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    sys.stdout.write(json.dumps({k: summary[k] for k in ("members", "groups_merged", "members_applied",
                                                         "members_failed", "group_retries", "groups_given_up",
                                                         "products")}) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
