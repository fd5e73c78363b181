"""The ``intransit`` command: ``run`` a job (under mpiexec or alone), ``report`` a catalog."""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import logging
import math
import os
import sys
import traceback
from typing import TYPE_CHECKING, Sequence

from intransit.service import config as job_config
from intransit.service.catalog import CatalogError
from intransit.service.errors import OutputPathError

if TYPE_CHECKING:
    from intransit.service.accounting import RunSummary

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _positive_seconds(text: str) -> float:
    """A finite number of seconds > 0 (argparse turns the ValueError into a usage error, exit 2)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="intransit", description="In-transit analytics for ADIOS2 simulations.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an analytics job (mpiexec -n M intransit run JOB.toml)")
    r.add_argument("job", help="job config (TOML)")
    r.add_argument("--stream", help="override [stream] name (e.g. a BP5 file to replay)")
    r.add_argument("--engine", help="override the engine the XML selects (SST, BP5)")
    r.add_argument("--catalog", help="override [output] catalog path")
    r.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override [output] log_level")
    r.add_argument("--summary-json", help="write the run summary as JSON here (rank 0)")
    r.add_argument("--debug", action="store_true", help="log at debug level and show the traceback of an error")
    c = sub.add_parser("report", help="summarise a catalog and export CSV")
    c.add_argument("catalog", help="catalog written by intransit run (a .bp folder)")
    c.add_argument("--csv", metavar="DIR", help="write one CSV per analyzer and steps.csv into DIR")
    c.add_argument("--timeout", type=_positive_seconds, default=120.0, metavar="SECONDS",
                   help="give up on a damaged catalog after this long (default 120)")
    c.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


#: Set by ``--debug``: an error is shown with its traceback.
_DEBUG = False


def _fail(message: str, code: int) -> int:
    """One paragraph on stderr (with ``--debug``, the traceback of the exception being handled before it)."""
    if _DEBUG and sys.exc_info()[0] is not None:
        traceback.print_exc()
    sys.stderr.write(f"intransit: error: {message}\n")
    return code


#: Replays that must be whole before ADIOS2 opens them (FileStream waits for its writer by design; SST is live).
_REPLAY_ENGINES = ("bp5", "bp4", "bpfile")


def _preflight(cfg: job_config.JobConfig, args: argparse.Namespace) -> None:
    """Refuse, before any stream opens, outputs that cannot be written and replays that are not whole.

    Deterministic checks, so every rank of an MPI job refuses alike: the
    catalog's folder (and what is at the catalog path), the summary, the
    checkpoint and products folders; a BP replay that is a plain file, an
    empty folder or lacks md.idx/md.0 (BP5 would wait for them forever).
    """
    from intransit.adapters.reader import StreamError
    from intransit.service.catalog import check_catalog_target, check_writable, replay_problem

    check_catalog_target(cfg.output.catalog)
    if args.summary_json:
        check_writable(args.summary_json, "--summary-json summary file")
    if cfg.output.metrics:
        check_writable(cfg.output.metrics, "[output] metrics summary file")
    if cfg.output.checkpoint:
        check_writable(cfg.output.checkpoint, "[output] checkpoint")
    if cfg.output.products:
        check_writable(cfg.output.products, "[output] products folder", folder=True)
    engine = job_config.effective_engine(cfg.stream)
    if engine.lower() in _REPLAY_ENGINES:
        problem = replay_problem(cfg.stream.name, engine)
        if problem:
            raise StreamError(problem)


def _run(args: argparse.Namespace) -> int:
    from intransit.adapters.reader import StreamError
    from intransit.service.allocator import tune_for_streaming
    from intransit.service.comm import world
    from intransit.service.runner import SetupError, StepTimeout, run_job

    try:
        cfg = job_config.load(args.job)
    except job_config.ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    if args.stream:
        cfg.stream.name = args.stream
    if args.engine:
        if args.engine not in job_config.ENGINES:
            return _fail(f"--engine {args.engine!r} is not an engine intransit reads; give one of "
                         f"{', '.join(job_config.ENGINES)} (or leave it out: the XML's engine is used)", EXIT_CONFIG)
        cfg.stream.engine = args.engine
    if args.catalog:
        cfg.output.catalog = os.path.abspath(args.catalog)
    try:
        _preflight(cfg, args)
    except OutputPathError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except StreamError as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    level = "DEBUG" if args.debug else (args.log_level or cfg.output.log_level).upper()
    comm = world()
    rank = comm.Get_rank()
    logging.basicConfig(
        level=getattr(logging, level),
        format=f"%(asctime)s intransit[{rank}] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if rank != 0:
        logging.getLogger().setLevel(max(logging.WARNING, getattr(logging, level)))
    log = logging.getLogger("intransit")
    if rank == 0:
        log.info("job %s: stream %r, %d analytics rank(s), analyzers %s", cfg.path, cfg.stream.name, comm.Get_size(),
                 ", ".join(a.name for a in cfg.analyzers))
    tune_for_streaming()
    try:
        summary = run_job(cfg, comm)
    except (StreamError, SetupError, StepTimeout) as exc:
        stopped = getattr(exc, "summary", None)  # the writer vanished or stalled mid-run: its summary still counts
        if rank == 0 and stopped is not None and (args.summary_json or cfg.output.metrics):
            _write_summary(args.summary_json or cfg.output.metrics, stopped)
        return _fail(str(exc), EXIT_RUNTIME) if rank == 0 else EXIT_RUNTIME
    if rank == 0:
        log.info(
            "done (%s): %d steps analyzed, %d dropped, %.1f steps/s, mean step %.2f ms; catalog %s",
            summary.end_reason, summary.steps_analyzed, summary.steps_dropped, summary.steps_per_second,
            summary.step_seconds_mean * 1e3, summary.catalog,
        )
        out = args.summary_json or cfg.output.metrics
        if out:
            _write_summary(out, summary)
    return _every_step_failed(summary, rank)


def _every_step_failed(summary: "RunSummary", rank: int) -> int:
    """EXIT_RUNTIME when an analyzer failed on every step analyzed (its part of the catalog is empty), else 0."""
    always = [name for name, n in summary.failures.items() if summary.steps_analyzed and n >= summary.steps_analyzed]
    if not always:
        return 0
    if rank != 0:
        return EXIT_RUNTIME
    return _fail(f"analyzer(s) {', '.join(always)} failed on every one of the {summary.steps_analyzed} step(s) "
                 f"analyzed, so nothing of theirs is in the catalog; their errors are logged above: fix what they "
                 f"say (their params in the job file, or the variable they read) and run again", EXIT_RUNTIME)


def _write_summary(out: str, summary: object) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(dataclasses.asdict(summary), fh, indent=2, sort_keys=True, default=float)  # type: ignore[arg-type]


def _report(args: argparse.Namespace) -> int:
    from intransit.service.report import report

    try:
        lines, paths = report(args.catalog, csv_dir=args.csv, timeout_s=args.timeout)
    except (FileNotFoundError, CatalogError, OutputPathError) as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    sys.stdout.write("\n".join(lines) + "\n")
    for p in paths:
        sys.stdout.write(f"wrote {p}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    if (list(sys.argv[1:]) if argv is None else list(argv))[:1] == ["ensemble"]:
        from intransit.service.ensemble_cli import main as ensemble_main  # `intransit ensemble plan|run|slurm`

        return ensemble_main((list(sys.argv[1:]) if argv is None else list(argv))[1:])
    global _DEBUG
    args = _parser().parse_args(argv)
    _DEBUG = bool(getattr(args, "debug", False))
    try:
        if args.command == "run":
            # A crash inside ADIOS2/MPI C code kills the rank with no Python error;
            # faulthandler at least prints where in our code it happened.
            if not faulthandler.is_enabled():
                faulthandler.enable()
            return _run(args)
        return _report(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # a case no check foresaw: one line, the traceback with --debug
        return _fail(f"{type(exc).__name__}: {exc} (an error intransit does not explain yet: run again with "
                     f"--debug for the traceback, and report it)", EXIT_RUNTIME)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
