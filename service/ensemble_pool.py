"""The analytics pool of an ensemble: every rank reads its spatial share of every member's stream.

``python -m intransit.service.ensemble_pool ENSEMBLE.toml`` (under ``mpiexec
-n M`` or ``srun``), started by ``intransit ensemble run`` or a Slurm job.
The pool discovers member streams in the run folder (adapters/members.py),
opens each when its contact file appears and closes it at its end, and
updates the statistics per complete time step: a member's step is held until
every member of its group (the p + 2 of a pick-freeze group, or itself) has
that step, then the whole group is applied to the *group's partial state*.
Only when every member of the group attempt has exited 0 and delivered all
``steps`` steps on every rank is the partial merged (Pébay's pairwise merge)
into the pool's statistics; a failed attempt's partial is dropped whole.  So
a failed member never leaves half a contribution, and memory is the
statistics (steps × points) plus the groups in flight, never the number of
members.

Loop, on every rank: poll every open stream (zero-timeout ``BeginStep``),
then one ``gather`` of small events (streams ended, errors) to rank 0, which
looks at the run folder (new streams, member statuses, discarded groups)
and broadcasts the decisions (open, merge, discard, checkpoint, finish) that
every rank applies alike.  Rank 0 also asks the launcher to kill a member
whose stream stalled (``stall_timeout_s`` without a step).

Checkpoint (``<workdir>/ckpt``): every rank its statistics in
``rank<r>.v<V>.npz``, then rank 0 the manifest (version, merged groups,
discarded attempts); a restarted pool loads the manifest's version, and the
launcher skips the merged groups, so nothing is counted twice.  At the end
every rank writes its share of every statistic and step as products
(service/products.py), rank 0 ``pool_summary.json``, and the checkpoint
is removed (the products are the result; a ``--resume`` after a completed
run starts afresh).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from typing import Any

import numpy as np

from intransit.adapters import members as mem
from intransit.adapters.reader import AdiosStepReader, StepStatus, StreamError
from intransit.analyzers.ensemble import EnsembleStats
from intransit.analyzers.product import Product
from intransit.service.accounting import rss_mb
from intransit.service.comm import world
from intransit.service.ensemble_config import EnsembleConfig, load
from intransit.service.ensemble_plan import read_table
from intransit.service.products import ProductSink

log = logging.getLogger(__name__)

#: Most steps read from one stream per pass over the streams (fairness between members).
STEPS_PER_PASS = 4
#: Name of the products' analyzer part: ``ensemble/<statistic>``.
PRODUCT_PREFIX = "ensemble"

Attempt = tuple[int, int]  # (group, attempt)


def reader_xml(cfg: EnsembleConfig) -> str:
    return os.path.join(cfg.workdir, "pool.xml")


def write_reader_xml(cfg: EnsembleConfig) -> str:
    path = reader_xml(cfg)
    os.makedirs(cfg.workdir, exist_ok=True)
    mem.write_atomic(path, '<?xml version="1.0"?>\n<adios-config>\n'
                     f'  <io name="{cfg.io}">\n    <engine type="SST">\n'
                     '      <parameter key="DataTransport" value="WAN"/>\n'
                     '      <parameter key="OpenTimeoutSecs" value="30"/>\n'
                     '    </engine>\n  </io>\n</adios-config>\n')
    return path


def ckpt_dir(cfg: EnsembleConfig) -> str:
    return os.path.join(cfg.workdir, "ckpt")


def read_manifest(cfg: EnsembleConfig) -> dict[str, Any] | None:
    path = os.path.join(ckpt_dir(cfg), "manifest.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


@dataclasses.dataclass
class _Member:
    who: mem.MemberAttempt
    row: int  # its row in the group (A, B, C_1.. order)
    reader: Any = None
    steps: int = 0
    ended: bool = False
    last_progress: float = dataclasses.field(default_factory=time.monotonic)


class _GroupAttempt:
    """One group attempt on this rank: its members' readers, steps waiting for the group, its partial statistics."""

    def __init__(self, key: Attempt, members: list[int]) -> None:
        self.key = key
        self.members = members  # member ids in row order
        self.open: dict[int, _Member] = {}
        self.pending: dict[int, dict[int, np.ndarray]] = {}
        self.partial: EnsembleStats | None = None

    def close(self) -> None:
        for m in self.open.values():
            if m.reader is not None:
                m.reader.close()
                m.reader = None


class Pool:
    def __init__(self, cfg: EnsembleConfig, comm: Any, *, resume: bool = False, launcher_pid: int | None = None) -> None:
        self.cfg = cfg
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.launcher_pid = launcher_pid
        table = read_table(cfg.workdir)
        self.groups: dict[int, list[int]] = {}
        self.member_group: dict[int, tuple[int, int]] = {}
        for row in table:
            ids = self.groups.setdefault(int(row["group"]), [])
            self.member_group[int(row["member"])] = (int(row["group"]), len(ids))
            ids.append(int(row["member"]))
        self.param_names = [p.name for p in cfg.parameters]
        self.stats: EnsembleStats | None = None
        self.layout: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] | None = None
        self.global_shape: tuple[int, ...] | None = None
        self.active: dict[Attempt, _GroupAttempt] = {}
        self.merged: dict[int, int] = {}  # group -> attempt merged
        self.discarded: list[dict[str, Any]] = []  # attempts dropped, with reasons
        self.events: list[tuple[str, Any]] = []
        self.ckpt_version = 0
        self.since_ckpt = 0
        self.bytes_read = 0
        self.steps_read = 0
        self.ckpt_bytes = 0
        self.ingest_s = 0.0  # time spent reading member steps and applying them (per rank)
        self.rss_start = rss_mb()
        self.rss_peak = self.rss_start
        self.rss_trace: list[tuple[int, float]] = []  # (members merged so far, this rank's RSS in MB)
        self.t_start = time.monotonic()
        # rank 0's view of the run folder
        self.announced: set[mem.MemberAttempt] = set()
        self.ends: dict[mem.MemberAttempt, list[int]] = {}
        self.kills_sent: set[mem.MemberAttempt] = set()
        self.resolved: set[Attempt] = set()
        self.exited_at: dict[Attempt, float] = {}  # when every member of the attempt had exited 0
        if resume:
            self._restore()
        self._probe: Any = None
        self._hold_connection_id()

    def _hold_connection_id(self) -> None:
        """Take this process's EVPath connection id now, before any member opens, and keep it.

        EVPath seeds a process's connection id with pid + the second of its first
        SST open (adapters/sst_open.py); two processes with the same id get each
        other's data.  Members are started one after another with increasing pids,
        each once the one before has opened (service/ensemble_launch.py), so their
        pid + second increase.  The pool's ranks start before every member: they
        open a writer-side SST stream nobody reads (RendezvousReaderCount 0) at
        start-up, in seconds agreed between ranks, and keep it open, so their ids
        are taken before, and differ from, every member's.
        """
        import adios2
        from adios2 import bindings

        from intransit.adapters.sst_open import agree_open_seconds, wait_for_slot

        if self.size > 1:
            wait_for_slot(agree_open_seconds(self.comm))
        self._probe_adios = adios2.Adios()
        io = self._probe_adios.declare_io(f"intransit_pool_probe_{self.rank}")
        io.set_engine("SST")
        io.set_parameters({"RendezvousReaderCount": "0", "QueueLimit": "1", "QueueFullPolicy": "Discard",
                           "DataTransport": "WAN"})
        self._probe = io.open(os.path.join(self.cfg.workdir, f"pool_probe_r{self.rank}"), bindings.Mode.Write)
        self.comm.gather(True, root=0)
        if self.rank == 0:
            mem.write_atomic(os.path.join(self.cfg.workdir, "pool.ready"), str(os.getpid()))

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # --- checkpoint --------------------------------------------------------------------------------------------
    def _restore(self) -> None:
        manifest = read_manifest(self.cfg) if self.rank == 0 else None
        manifest = self.comm.bcast(manifest, root=0)
        if manifest is None:
            return
        if int(manifest["ranks"]) != self.size:
            raise SystemExit(f"the checkpoint in {ckpt_dir(self.cfg)} was written by {manifest['ranks']} pool ranks; "
                             f"resume with the same pool_ranks (now {self.size})")
        self.ckpt_version = int(manifest["version"])
        self.merged = {int(g): int(a) for g, a in manifest["merged"].items()}
        self.discarded = list(manifest["discarded"])
        path = os.path.join(ckpt_dir(self.cfg), f"rank{self.rank}.v{self.ckpt_version}.npz")
        with np.load(path) as z:
            state = {k: z[k] for k in z.files}
        if "layout/starts" in state:
            starts, counts = state.pop("layout/starts"), state.pop("layout/counts")
            self.layout = tuple((tuple(int(v) for v in s), tuple(int(v) for v in c)) for s, c in zip(starts, counts))
            self.global_shape = tuple(int(v) for v in state.pop("layout/global_shape"))
            self.stats = EnsembleStats.from_state_dict(state)
        log.info("rank %d: restored checkpoint v%d (%d groups merged)", self.rank, self.ckpt_version, len(self.merged))

    def _save(self) -> None:
        version = self.ckpt_version + 1
        folder = ckpt_dir(self.cfg)
        os.makedirs(folder, exist_ok=True)
        state: dict[str, np.ndarray] = {}
        if self.stats is not None and self.layout is not None and self.global_shape is not None:
            state = dict(self.stats.state_dict())
            state["layout/starts"] = np.array([s for s, _ in self.layout], dtype=np.int64)
            state["layout/counts"] = np.array([c for _, c in self.layout], dtype=np.int64)
            state["layout/global_shape"] = np.array(self.global_shape, dtype=np.int64)
        path = os.path.join(folder, f"rank{self.rank}.v{version}.npz")
        np.savez(path + ".tmp.npz", **state)
        os.replace(path + ".tmp.npz", path)
        self.comm.gather(True, root=0)  # every rank's file is in place before the manifest names it
        if self.rank == 0:
            mem.write_atomic(os.path.join(folder, "manifest.json"), json.dumps(
                {"version": version, "ranks": self.size, "merged": {str(g): a for g, a in self.merged.items()},
                 "discarded": self.discarded}, indent=1))
        self.comm.bcast(None, root=0)
        old = os.path.join(folder, f"rank{self.rank}.v{self.ckpt_version}.npz")
        if os.path.exists(old):
            os.remove(old)
        self.ckpt_version = version
        self.since_ckpt = 0

    # --- ingest (every rank, no collectives) ------------------------------------------------------------------
    def _open(self, who: mem.MemberAttempt, path: str) -> None:
        group, row = self.member_group[who.member]
        key = (group, who.attempt)
        ga = self.active.get(key)
        if ga is None:
            ga = self.active[key] = _GroupAttempt(key, self.groups[group])
        m = ga.open[who.member] = _Member(who, row)
        # This process's EVPath id was taken at start-up (_hold_connection_id): every open is this rank's own.
        try:
            m.reader = AdiosStepReader(stream=path, xml=reader_xml(self.cfg), io_name=self.cfg.io, rank=self.rank,
                                       n_ranks=self.size, engine="SST", open_timeout_s=10.0,
                                       comm=None)
        except StreamError as exc:
            m.reader, m.ended = None, True
            self.events.append(("error", (who.member, who.attempt, f"cannot open its stream: {exc}")))
        m.last_progress = time.monotonic()

    def _ingest(self) -> bool:
        busy = False
        for ga in list(self.active.values()):
            for m in ga.open.values():
                if m.reader is None or m.ended:
                    continue
                for _ in range(STEPS_PER_PASS):
                    t_step = time.perf_counter()
                    try:
                        status = m.reader.begin_step(0.0)
                        if status is StepStatus.TIMEOUT:
                            break
                        if status is StepStatus.END:
                            m.ended = True
                            m.reader.close()
                            m.reader = None
                            self.events.append(("end", (m.who.member, m.who.attempt, m.steps)))
                            break
                        t = m.reader.current_step()
                        _shape, blocks = m.reader.read(self.cfg.variable)
                        data = np.concatenate([np.asarray(b.data, dtype=np.float64).ravel() for b in blocks])
                        layout = tuple((tuple(int(v) for v in b.start), tuple(int(v) for v in b.count))
                                       for b in blocks)
                        m.reader.end_step()
                    except (StreamError, RuntimeError, ValueError) as exc:
                        m.ended = True
                        self.events.append(("error", (m.who.member, m.who.attempt, f"read failed: {exc}")))
                        break
                    busy = True
                    m.steps += 1
                    m.last_progress = time.monotonic()
                    self.steps_read += 1
                    self.bytes_read += data.nbytes
                    if self.layout is None:
                        self.layout, self.global_shape = layout, tuple(int(v) for v in _shape)
                    elif layout != self.layout:
                        m.ended = True
                        why = f"its blocks {layout} differ from the other members' {self.layout}"
                        self.events.append(("error", (m.who.member, m.who.attempt, why)))
                        break
                    self._hold(ga, m.row, int(t), data)
                    self.ingest_s += time.perf_counter() - t_step
        return busy

    def _hold(self, ga: _GroupAttempt, row: int, t: int, data: np.ndarray) -> None:
        """Keep one member's step until the whole group has it, then apply the group to its partial."""
        waiting = ga.pending.setdefault(t, {})
        waiting[row] = data
        if len(waiting) < len(ga.members):
            return
        del ga.pending[t]
        if ga.partial is None:
            ga.partial = EnsembleStats((data.size,), thresholds=self.cfg.thresholds, levels=self.cfg.quantiles,
                                       p=len(self.cfg.parameters) if self.cfg.sobol_indices else 0)
        if self.cfg.sobol_indices:
            ga.partial.add_group(t, np.stack([waiting[r] for r in range(len(ga.members))]))
        else:
            ga.partial.add_member(t, waiting[0])

    # --- decisions (rank 0) ---------------------------------------------------------------------------------------
    def _decide(self, reports: list[list[tuple[str, Any]]]) -> dict[str, Any]:
        cfg = self.cfg
        now = time.monotonic()
        for events in reports:
            for kind, info in events:
                who = mem.MemberAttempt(info[0], info[1])
                if kind == "end":
                    self.ends.setdefault(who, []).append(int(info[2]))
                elif kind == "error" and who not in self.kills_sent:
                    log.warning("member %d attempt %d: %s; asking the launcher to end it", who.member, who.attempt,
                                info[2])
                    mem.request_kill(cfg.workdir, who, info[2])
                    self.kills_sent.add(who)
        status = mem.statuses(cfg.workdir)
        given_up = mem.discarded_groups(cfg.workdir)
        decisions: dict[str, Any] = {"open": [], "merge": [], "discard": [], "checkpoint": False, "finish": False,
                                     "abort": None}
        for who, path in live_streams_sorted(cfg.workdir):
            if who in self.announced or who.member not in self.member_group:
                continue
            group = self.member_group[who.member][0]
            if (group, who.attempt) in self.resolved or group in self.merged:
                continue
            if who in status and status[who].get("rc") != 0:
                continue
            self.announced.add(who)
            decisions["open"].append((who.member, who.attempt, path))
        # every group attempt we know of: announced streams, or statuses of attempts never seen
        keys: set[Attempt] = {(self.member_group[w.member][0], w.attempt) for w in self.announced}
        keys |= {(self.member_group[w.member][0], w.attempt) for w in status if w.member in self.member_group}
        for key in sorted(keys - self.resolved):
            group, attempt = key
            if group in self.merged:
                self.resolved.add(key)
                continue
            whos = [mem.MemberAttempt(m, attempt) for m in self.groups[group]]
            failed = [(w, status[w]) for w in whos if w in status and status[w].get("rc") != 0]
            if failed:
                w, st = failed[0]
                reason = f"member {w.member} {st.get('reason', 'exit')} (rc {st.get('rc')})"
                decisions["discard"].append((group, attempt, reason))
                self.resolved.add(key)
                continue
            if not all(w in status for w in whos):
                for w in whos:  # stall: an open stream with no step for stall_timeout_s
                    ga = self.active.get(key)
                    m = ga.open.get(w.member) if ga is not None else None
                    if (m is not None and not m.ended and w not in self.kills_sent
                            and now - m.last_progress > cfg.stall_timeout_s):
                        log.warning("member %d attempt %d: no step for %.0f s; asking the launcher to end it",
                                    w.member, attempt, now - m.last_progress)
                        mem.request_kill(cfg.workdir, w, f"stall: no step for {cfg.stall_timeout_s:g} s")
                        self.kills_sent.add(w)
                continue
            counts = [self.ends.get(w, []) for w in whos]
            if not all(len(c) == self.size for c in counts):
                exited = self.exited_at.setdefault(key, now)
                if all(w in self.announced for w in whos) and now - exited < cfg.stall_timeout_s:
                    continue  # every member exited 0: their ends are on the way
                why = ("a member exited 0 without a stream" if not all(w in self.announced for w in whos) else
                       f"every member exited 0 but some rank saw no end of stream within {cfg.stall_timeout_s:g} s")
                decisions["discard"].append((group, attempt, why))
                self.resolved.add(key)
                continue
            if all(n == cfg.steps for c in counts for n in c):
                decisions["merge"].append((group, attempt))
            else:
                decisions["discard"].append((group, attempt, f"incomplete: steps {counts}, expected {cfg.steps}"))
            self.resolved.add(key)
        done = len(decisions["merge"]) + len(decisions["discard"])
        if done and self.since_ckpt + done >= cfg.checkpoint_every:
            decisions["checkpoint"] = True
        finished = set(self.merged) | {g for g, _ in decisions["merge"]} | given_up
        if finished >= set(self.groups) and not (set(self.active) - {(g, a) for g, a in decisions["merge"]}
                                                  - {(g, a) for g, a, _ in decisions["discard"]}):
            decisions["finish"] = True
        if self.launcher_pid and not _alive(self.launcher_pid):
            decisions["abort"] = f"the launcher (pid {self.launcher_pid}) is gone"
        return decisions

    def _apply(self, d: dict[str, Any]) -> None:
        for member, attempt, path in d["open"]:
            self._open(mem.MemberAttempt(member, attempt), path)
        for group, attempt in d["merge"]:
            ga = self.active.pop((group, attempt), None)
            if ga is not None:
                ga.close()
                if ga.pending:
                    raise RuntimeError(f"group {group} attempt {attempt}: merged with steps {sorted(ga.pending)} "
                                       "still waiting (a bug)")
                if ga.partial is not None:
                    if self.stats is None:
                        self.stats = ga.partial
                    else:
                        self.stats.merge(ga.partial)
            self.merged[group] = attempt
            self.since_ckpt += 1
        for group, attempt, reason in d["discard"]:
            ga = self.active.pop((group, attempt), None)
            if ga is not None:
                ga.close()
            self.discarded.append({"group": group, "attempt": attempt, "reason": reason})
            self.since_ckpt += 1
            if self.rank == 0:
                log.warning("group %d attempt %d discarded whole: %s", group, attempt, reason)
        if d["checkpoint"]:
            self._save()
        now_rss = rss_mb()
        self.rss_peak = max(self.rss_peak, now_rss)
        if d["merge"]:
            self.rss_trace.append((sum(len(self.groups[g]) for g in self.merged), now_rss))

    # --- the loop -------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        while True:
            busy = self._ingest()
            events, self.events = self.events, []
            reports = self.comm.gather(events, root=0)
            decisions = self._decide(reports) if self.rank == 0 else None
            decisions = self.comm.bcast(decisions, root=0)
            if decisions["abort"]:
                for ga in self.active.values():
                    ga.close()
                raise SystemExit(f"ensemble pool stops: {decisions['abort']} (the checkpoint stays for a resume)")
            self._apply(decisions)
            if decisions["finish"]:
                break
            if not busy and not decisions["open"]:
                time.sleep(0.01)
        if self.since_ckpt:
            self._save()
        written = self._write_products()
        # The products are the result now: the checkpoint (about their size again) has served; its size is kept.
        folder = ckpt_dir(self.cfg)
        self.ckpt_bytes = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) \
            if os.path.isdir(folder) else 0
        self.comm.gather(True, root=0)
        if self.rank == 0:
            shutil.rmtree(folder, ignore_errors=True)
        return self._summary(written)

    def _write_products(self) -> list[str]:
        if self.stats is None or self.layout is None or self.global_shape is None:
            log.warning("no group was merged: no products")
            return []
        folder = self.cfg.product_folder()
        sink = ProductSink(folder, self.rank, self.size)
        sizes = [int(np.prod(c)) for _, c in self.layout]
        names: list[str] = []
        try:
            steps = sorted(self.stats.steps)
            for t in steps[-1:] if self.cfg.product_steps == "last" else steps:
                fields = self.stats.steps[t].fields(self.param_names)
                names = sorted(fields)
                products = []
                for name in names:
                    flat, blocks, pos = fields[name], [], 0
                    for (start, count), n in zip(self.layout, sizes):
                        blocks.append((start, np.ascontiguousarray(flat[pos:pos + n].reshape(count))))
                        pos += n
                    products.append((PRODUCT_PREFIX, Product(name, self.global_shape, blocks)))
                sink.write(t, products)
        finally:
            sink.close()
        return names

    def _summary(self, names: list[str]) -> dict[str, Any]:
        # field-wide summaries: the mean over all points of every statistic, per step (sums of shares)
        sums: dict[str, dict[int, tuple[float, int]]] = {}
        if self.stats is not None:
            for t, s in self.stats.steps.items():
                for name, v in s.fields(self.param_names).items():
                    ok = np.isfinite(v)
                    sums.setdefault(name, {})[t] = (float(v[ok].sum()), int(ok.sum()))
        local = {"sums": sums, "rss_start": self.rss_start, "rss_end": rss_mb(), "rss_peak": self.rss_peak,
                 "rss_trace": self.rss_trace, "bytes_read": self.bytes_read, "steps_read": self.steps_read,
                 "ingest_s": self.ingest_s}
        every = self.comm.gather(local, root=0)
        if self.rank != 0:
            return {}
        field_means: dict[str, dict[str, float]] = {}
        for name in names:
            for t in sorted(every[0]["sums"].get(name, {})):
                tot = sum(r["sums"].get(name, {}).get(t, (0.0, 0))[0] for r in every)
                cnt = sum(r["sums"].get(name, {}).get(t, (0.0, 0))[1] for r in every)
                field_means.setdefault(name, {})[str(t)] = tot / cnt if cnt else float("nan")
        members_applied = sum(len(self.groups[g]) for g in self.merged)
        return {
            "groups": len(self.groups), "groups_merged": len(self.merged), "members_applied": members_applied,
            "attempts_discarded": self.discarded,
            "groups_discarded": sorted(set(self.groups) - set(self.merged)),
            "pool_ranks": self.size, "steps": sorted(self.stats.steps) if self.stats else [],
            "rss_mb_start": max(r["rss_start"] for r in every), "rss_mb_end": max(r["rss_end"] for r in every),
            "rss_mb_peak": max(r["rss_peak"] for r in every), "rss_trace_rank0": every[0]["rss_trace"],
            "bytes_read": sum(r["bytes_read"] for r in every), "steps_read": sum(r["steps_read"] for r in every),
            "ingest_s_per_member_step": max(r["ingest_s"] / max(r["steps_read"], 1) for r in every),
            "wall_s": time.monotonic() - self.t_start, "products": self.cfg.product_folder(),
            "statistics": names, "field_means": field_means, "checkpoint_version": self.ckpt_version,
            "checkpoint_bytes_at_end": self.ckpt_bytes,
        }


def live_streams_sorted(workdir: str) -> list[tuple[mem.MemberAttempt, str]]:
    return sorted(mem.live_streams(workdir).items(), key=lambda kv: (kv[0].member, kv[0].attempt))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="intransit.service.ensemble_pool", description="The ensemble analytics pool.")
    p.add_argument("config", help="ENSEMBLE.toml")
    p.add_argument("--resume", action="store_true", help="restore the pool checkpoint of the run folder")
    p.add_argument("--launcher-pid", type=int, default=0, help="stop (checkpoint kept) when this process is gone")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    a = p.parse_args(argv)
    comm = world()
    rank = comm.Get_rank()
    logging.basicConfig(level=getattr(logging, a.log_level.upper()),
                        format=f"%(asctime)s ensemble-pool[{rank}] %(levelname)s %(message)s", stream=sys.stderr)
    cfg = load(a.config)
    pool = Pool(cfg, comm, resume=a.resume, launcher_pid=a.launcher_pid or None)
    try:
        summary = pool.run()
    finally:
        pool.close()
    if rank == 0:
        mem.write_atomic(os.path.join(cfg.workdir, "pool_summary.json"), json.dumps(summary, indent=1, default=float))
        log.info("pool done: %d of %d groups merged (%d members), %d attempts discarded; products in %s",
                 summary["groups_merged"], summary["groups"], summary["members_applied"],
                 len(summary["attempts_discarded"]), summary["products"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
