"""Transport benchmark: what intransit costs, in ratios measured side by side in one run.

* ``transport_efficiency`` E = steps/s of ``intransit run`` with the no-op
  analyzer ÷ steps/s of a bare Python SST reader (begin_step, read into a
  preallocated buffer, end_step), each reading its own run of the same writer,
  at 256², 1024², 2048² float64; the median of alternating pairs (each pair's
  ratio in ``transport_efficiency_pairs``).
  ``transport_efficiency_interleaved``: the same ratio at 256² inside one
  reader process that alternates chunks of the bare loop and intransit's
  loop on one stream (the host's drift cancels; what differs is our loop).
* ``copy_efficiency`` = the bare reader's GB/s ÷ a memcpy probe (numpy copy of
  the same array size).
* ``sim_slowdown`` S = median step time of the reference simulation with the
  analytics (detection + tracking) attached under the keep-pace preset ÷ the
  same run with no reader, − 1: the median of alternating pairs
  (``sim_slowdown_pairs``); ``sim_slowdown_full_physics`` the same with the
  turbulence computed at 256² (``--coarse 256``, ten times the compute per
  published byte); ``sim_slowdown_interleaved`` (full run) the same ratio
  inside one simulation run, analytics attaching and leaving in windows.
* ``keep_up`` K = analytics steps/s ÷ simulation steps/s for the full pipeline
  at 512², with ``dropped_fraction``.
* ``scaling``: analytics throughput for M = 1, 2 ranks replaying one BP5 file.
* ``memory``: analytics RSS over a long run (flat = no per-step growth).

``gpu`` (``benchmarks/gpu_section.py``): blob detection on a CUDA device vs the
CPU, and the host→device copy ÷ a pinned-copy probe; ``{"skipped": why}``
without a CUDA device. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.gpu_section import gpu_section  # noqa: E402
from tests import procs  # noqa: E402  (process helpers shared with the integration tests)

PY = sys.executable
NOOP = '[[analyzers]]\ntype = "noop"\n'


# -- roles run as separate processes ----------------------------------------
def role_writer(stream: str, size: int, steps: int, blocks: int, xml: str) -> None:
    """Publish ``steps`` steps of a size² float64 field in ``blocks`` row blocks, as fast as allowed."""
    import adios2
    from adios2 import bindings

    adios = adios2.Adios(xml)
    io = adios.declare_io("SimulationOutput")
    field = np.random.default_rng(0).standard_normal((size, size))
    rows = np.array_split(np.arange(size), blocks)
    var = io.define_variable("density", field, [size, size], [0, 0], [len(rows[0]), size])
    engine = io.open(stream, bindings.Mode.Write)
    parts = [np.ascontiguousarray(field[r[0]:r[-1] + 1]) for r in rows]
    for step in range(steps):
        engine.begin_step()
        for r, part in zip(rows, parts):
            part[0, 0] = step
            var.set_selection([[int(r[0]), 0], [len(r), size]])
            engine.put(var, part, bindings.Mode.Sync)
        engine.end_step()
    engine.close()


def bare_step(engine, io, buf: np.ndarray | None, sync) -> np.ndarray:
    """The bare reader's work in a step it began: the array into a preallocated buffer, then EndStep."""
    var = io.inquire_variable("density")
    if buf is None:
        buf = np.empty(var.shape(), dtype=np.float64)
    var.set_selection([[0, 0], list(buf.shape)])
    engine.get(var, buf, sync)
    engine.end_step()
    return buf


def role_bare_reader(stream: str) -> None:
    """The baseline: the least a Python SST reader can do per step. Prints JSON."""
    import adios2
    from adios2 import bindings

    adios = adios2.Adios(os.path.join(ROOT, "xml_configs", "analytics.xml"))
    io = adios.declare_io("SimulationOutput")
    engine = io.open(stream, bindings.Mode.Read)
    buf = None
    n, t_first, nbytes = 0, None, 0
    while True:
        status = engine.impl.BeginStep(bindings.StepMode.Read, 60.0)
        if status != bindings.StepStatus.OK:
            break
        buf = bare_step(engine, io, buf, bindings.Mode.Sync)
        if t_first is None:
            t_first = time.perf_counter()  # rate from the first step on: excludes the rendezvous
        else:
            n += 1
            nbytes += buf.nbytes
    elapsed = time.perf_counter() - (t_first or time.perf_counter())
    engine.close()
    print(json.dumps({"steps": n, "seconds": elapsed}))


def role_interleaved_reader(stream: str, folder: str, pairs: int, chunk_steps: int) -> None:
    """The bare loop and intransit's loop take turns on one stream, in one process. Prints JSON.

    Separate bare and intransit runs a few seconds apart differ by ±30 % on
    this shared machine, more than the loop's cost.  Here one reader process
    holds one SST reader of one writer and alternates chunks of
    ``chunk_steps`` steps: the bare loop (as ``role_bare_reader``) and
    ``run_job`` with the no-op analyzer and its catalog, on the same engine
    (ABBA order).  What differs between the two is only intransit's loop.
    The first fifth of each chunk is left out of its rate: opening a catalog
    per chunk (a real job opens one) costs a few milliseconds there.
    """
    import logging

    from adios2 import bindings

    from intransit.adapters.reader import AdiosStepReader
    from intransit.service import config
    from intransit.service.allocator import tune_for_streaming
    from intransit.service.comm import SerialComm
    from intransit.service.runner import run_job

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # what `intransit run` logs, by default
    tune_for_streaming()  # as `intransit run` does, so both loops see the same allocator
    reader = AdiosStepReader(stream=stream, xml=os.path.join(ROOT, "xml_configs", "analytics.xml"),
                             io_name="SimulationOutput", open_timeout_s=60)
    engine, io = reader._engine, reader._io  # the bare loop drives the same ADIOS2 engine directly

    class Kept:
        """The reader, shared by every chunk: ``run_job`` closing it ends nothing.

        Its methods are bound once (a ``__getattr__`` forward cost ~0.7 µs per call,
        4–5 calls per step: a bias against intransit in the figure measured).
        """

        def __init__(self) -> None:
            self.begin_step, self.current_step, self.read = reader.begin_step, reader.current_step, reader.read
            self.end_step, self.variable_names = reader.end_step, reader.variable_names
            self.collective_steps = reader.collective_steps

        def close(self) -> None:
            pass

    buf = None
    skip = chunk_steps // 5  # each chunk's first steps: the switch, and run_job opening its catalog

    def bare_chunk() -> float:
        nonlocal buf
        t_from = t_last = 0.0
        for i in range(chunk_steps):
            if engine.impl.BeginStep(bindings.StepMode.Read, 60.0) != bindings.StepStatus.OK:
                raise RuntimeError("the writer ended before the bare chunk")
            buf = bare_step(engine, io, buf, bindings.Mode.Sync)
            t_last = time.perf_counter()
            if i == skip:
                t_from = t_last
        return (chunk_steps - 1 - skip) / (t_last - t_from)

    def intransit_chunk(k: int) -> float:
        cfg = config.from_dict({
            "stream": {"name": stream, "variables": ["density"], "step_timeout_s": 60, "max_steps": chunk_steps},
            "analyzers": [{"type": "noop"}],
            "output": {"catalog": os.path.join(folder, f"interleaved_{k}.bp")},
        })
        done: dict[int, float] = {}

        def on_step(step: int, index: int, results: object) -> None:
            if index == skip or index == chunk_steps - 1:
                done[index] = time.perf_counter()

        run_job(cfg, SerialComm(), reader_factory=lambda *_: kept, on_step=on_step)
        return (chunk_steps - 1 - skip) / (done[chunk_steps - 1] - done[skip])

    kept = Kept()
    bare_chunk()  # warm-up: first steps, buffers, layout
    rates = []
    for k in range(pairs):
        if k % 2 == 0:
            rates.append((bare_chunk(), intransit_chunk(k)))
        else:
            ours = intransit_chunk(k)
            rates.append((bare_chunk(), ours))
    while reader.begin_step(60.0).name == "OK":  # drain to the writer's end
        reader.end_step()
    reader.close()
    print(json.dumps({"pairs": rates}))


# -- helpers ------------------------------------------------------------------
def run_writer(folder: str, stream: str, size: int, steps: int, readers: int, blocks: int = 4) -> subprocess.Popen:
    xml = procs.sim_xml(folder, readers=readers, queue=2, policy="Block")
    return procs.start(pinned([PY, __file__, "--role", "writer", stream, str(size), str(steps), str(blocks), xml], 0),
                       folder, f"writer_{os.path.basename(stream)}.log")


def bare_rate(folder: str, size: int, steps: int) -> float:
    stream = os.path.join(folder, f"bare{size}")
    reader = subprocess.Popen(pinned([PY, __file__, "--role", "bare", stream], 1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    writer = run_writer(folder, stream, size, steps, readers=1)
    out, err = reader.communicate(timeout=600)
    if reader.returncode:
        raise RuntimeError(f"bare reader failed: {err[-2000:]}")
    procs.wait(writer, 60)
    r = json.loads(out.strip().splitlines()[-1])
    return r["steps"] / r["seconds"]


def interleaved_efficiency(folder: str, size: int, pairs: int, chunk_steps: int) -> dict:
    """E from one reader process alternating the bare loop and intransit's (``role_interleaved_reader``)."""
    if chunk_steps < 10:
        raise ValueError(f"chunk_steps must be at least 10 (a fifth is left out of each rate); got {chunk_steps}")
    os.makedirs(folder, exist_ok=True)
    stream = os.path.join(folder, f"inter{size}")
    total = (2 * pairs + 1) * chunk_steps + 5
    reader = subprocess.Popen(pinned([PY, __file__, "--role", "interleaved", stream, folder, str(pairs), str(chunk_steps)], 1),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    writer = run_writer(folder, stream, size, total, readers=1)
    try:
        out, err = reader.communicate(timeout=600)
        if reader.returncode:
            raise RuntimeError(f"interleaved reader failed: {err[-2000:]}")
        procs.wait(writer, 60)
    finally:
        procs.stop(reader)
        procs.stop(writer)  # both ours, by PID; no-ops once they have ended
    rates = json.loads(out.strip().splitlines()[-1])["pairs"]
    ratios = [o / b for b, o in rates]
    return {"transport_efficiency": round(statistics.median(ratios), 3), "pairs": [round(r, 3) for r in ratios],
            "bare_steps_per_s": round(statistics.median(b for b, _ in rates), 1),
            "intransit_steps_per_s": round(statistics.median(o for _, o in rates), 1)}


def job_summary(folder: str, tag: str, stream: str, analyzers: str, ranks: int = 1, engine: str | None = None) -> dict:
    job = procs.write_job(folder, stream, name=f"job_{tag}.toml", catalog=os.path.join(folder, f"cat_{tag}.bp"),
                          analyzers=analyzers, engine=engine, step_timeout_s=120, open_timeout_s=60)
    summary = os.path.join(folder, f"summary_{tag}.json")
    if ranks == 1:
        proc = procs.start(pinned([procs.INTRANSIT, "run", job, "--summary-json", summary], 1), folder,
                           f"analytics_{tag}.log")
    else:
        proc = procs.start_analytics(folder, job, ranks, "--summary-json", summary, log_name=f"analytics_{tag}.log")
    return {"proc": proc, "summary": summary}


def finish(job: dict, timeout: float = 600) -> dict:
    rc = procs.wait(job["proc"], timeout)
    if rc != 0:
        raise RuntimeError(f"analytics failed (exit {rc}); see {job['summary']}")
    with open(job["summary"]) as fh:
        return json.load(fh)


def intransit_rate(folder: str, size: int, steps: int) -> float:
    stream = os.path.join(folder, f"job{size}")
    job = job_summary(folder, f"noop{size}", stream, NOOP)
    writer = run_writer(folder, stream, size, steps, readers=1)
    s = finish(job)
    procs.wait(writer, 60)
    return s["steps_analyzed_steady"] / s["elapsed_seconds"]


def memcpy_gbps(size: int) -> float:
    src = np.random.default_rng(1).standard_normal((size, size))
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(20):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return src.nbytes / best / 1e9


DETECT_TRACK = procs.DETECT_TRACK


def pinned(cmd: list[str], core: int | None) -> list[str]:
    """``cmd`` bound to one core: simulation and analytics each on their own, as on separate nodes."""
    return ["taskset", "-c", str(core), *cmd] if core is not None and CORES >= 2 and TASKSET else cmd


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
TASKSET = os.path.exists("/usr/bin/taskset")


def sim_step_ms(folder: str, tag: str, size: int, steps: int, attach: bool,
                sim_args: Sequence[str] = ()) -> tuple[list[float], dict | None]:
    """Per-step wall times of the reference simulation (keep-pace), with or without analytics.

    With two or more cores the simulation runs on core 0 and the analytics on
    core 1 (``taskset``), so the figure is the cost of attaching, not of two
    programs sharing one core.
    """
    stream = os.path.join(folder, f"sim_{tag}")
    xml = procs.sim_xml(folder, readers=0, queue=3, policy="Discard")
    job = None
    if attach:
        jobfile = procs.write_job(folder, stream, name=f"job_{tag}.toml", catalog=os.path.join(folder, f"cat_{tag}.bp"),
                                  analyzers=DETECT_TRACK, step_timeout_s=120, open_timeout_s=60)
        summary = os.path.join(folder, f"summary_{tag}.json")
        proc = procs.start(pinned([procs.INTRANSIT, "run", jobfile, "--summary-json", summary], 1), folder,
                           f"analytics_{tag}.log")
        job = {"proc": proc, "summary": summary}
        time.sleep(1.0)  # let the analytics start looking for the stream
    timing = os.path.join(folder, f"timing_{tag}.csv")
    sim = procs.start(pinned([PY, procs.SIM, "--xml", xml, "--stream", stream, "--size", str(size), "--steps",
                              str(steps), "--blobs", "6", "--timing-csv", timing, *sim_args], 0), folder, f"sim_{tag}.log")
    rc = procs.wait(sim, 900)
    if rc != 0:
        raise RuntimeError(procs.read_log(folder, f"sim_{tag}.log")[-2000:])
    summary = finish(job) if job else None
    procs.remove_contact_files(folder)
    with open(timing) as fh:
        times = [float(r["step_ms"]) for r in csv.DictReader(fh)]
    return times, summary


def sim_slowdown_interleaved(folder: str, tag: str, size: int, windows: int, window_steps: int,
                             sim_args: Sequence[str] = (), margin: int = 5) -> dict:
    """S inside one simulation run: analytics jobs attach for ``window_steps`` steps, detach, and attach again.

    Separate alone/attached runs on this virtual machine differ by ±20 % from
    run to run (process placement, the host's load), more than the effect
    measured.  Here one simulation process runs throughout; a keep-pace
    analytics job (``max_steps``) attaches, reads its window and leaves, and
    the next starts ~1.5 s later (its start-up), so attached and alone
    stretches alternate within the run.  Each attached window is compared
    with the alone stretch just before it (``margin`` steps around every
    attach and detach are left out); S is the median of those pair ratios.
    """
    stream = os.path.join(folder, f"sim_{tag}")
    xml = procs.sim_xml(folder, readers=0, queue=3, policy="Discard")
    timing = os.path.join(folder, f"timing_{tag}.csv")
    total = 40 * window_steps * windows  # ample: the run ends when the windows are done (see below)
    sim = procs.start(pinned([PY, procs.SIM, "--xml", xml, "--stream", stream, "--size", str(size), "--steps",
                              str(total), "--blobs", "6", "--timing-csv", timing, "--stop-file",
                              os.path.join(folder, f"stop_{tag}"), *sim_args], 0), folder, f"sim_{tag}.log")
    spans: list[tuple[int, int]] = []
    try:
        time.sleep(1.5)  # an alone stretch before the first window
        for k in range(windows):
            jobfile = procs.write_job(folder, stream, name=f"job_{tag}{k}.toml", catalog=os.path.join(folder, f"cat_{tag}{k}.bp"),
                                      analyzers=DETECT_TRACK, step_timeout_s=120, open_timeout_s=60,
                                      max_steps=window_steps)  # one attached window
            summary = os.path.join(folder, f"summary_{tag}{k}.json")
            job = procs.start(pinned([procs.INTRANSIT, "run", jobfile, "--summary-json", summary], 1), folder,
                              f"analytics_{tag}{k}.log")
            s = finish({"proc": job, "summary": summary})
            spans.append((int(s["first_step"]), int(s["last_step"])))
            time.sleep(0.5)
    finally:
        with open(os.path.join(folder, f"stop_{tag}"), "w"):
            pass  # the simulation ends at its next step and writes its timings
        rc = procs.wait(sim, 300)
        procs.remove_contact_files(folder)
    if rc != 0:
        raise RuntimeError(procs.read_log(folder, f"sim_{tag}.log")[-2000:])
    with open(timing) as fh:
        times = {int(r["step"]): float(r["step_ms"]) for r in csv.DictReader(fh)}
    pairs, attached_all, alone_all = [], [], []
    previous_end = 20  # the simulation's first steps warm up
    for first, last in spans:
        alone = [times[i] for i in range(previous_end + margin, first - margin) if i in times]
        attached = [times[i] for i in range(first + margin, last - margin + 1) if i in times]
        if len(alone) >= 20 and len(attached) >= 20:
            pairs.append(statistics.median(attached) / statistics.median(alone) - 1)
            alone_all += alone
            attached_all += attached
        previous_end = last + 1
    if not pairs:
        raise RuntimeError(f"no usable attached/alone windows in {tag}: spans {spans}")
    return {"sim_slowdown": round(statistics.median(pairs), 4), "pairs": [round(x, 4) for x in pairs],
            "step_ms_median": {"alone": round(statistics.median(alone_all), 3),
                               "attached": round(statistics.median(attached_all), 3)},
            "steps": {"alone": len(alone_all), "attached": len(attached_all)}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and sizes: about three minutes")
    p.add_argument("--gpu-device", help="run the GPU section on this torch device (default: CUDA when present, "
                   "else skipped); 'cpu' exercises it on a machine without a GPU (not GPU figures)")
    p.add_argument("--gpu-only", action="store_true", help="only the GPU section")
    p.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.role:
        if a.role[0] == "writer":
            role_writer(a.role[1], int(a.role[2]), int(a.role[3]), int(a.role[4]), a.role[5])
        elif a.role[0] == "interleaved":
            role_interleaved_reader(a.role[1], a.role[2], int(a.role[3]), int(a.role[4]))
        else:
            role_bare_reader(a.role[1])
        return 0
    if a.gpu_only:
        print(json.dumps({"gpu": gpu_section(sizes=(256, 512) if a.quick else (512, 1024, 2048), device=a.gpu_device)}))
        return 0

    # Runs of a few seconds each, bare and intransit alternating; E is the median of
    # the pair ratios (one sub-second run on this shared machine can be 30 % off).
    # (steps per run, pairs): 256² runs last about a second, so they take more pairs.
    sizes = {256: (3000, 3), 1024: (150, 2)} if a.quick else {256: (4000, 9), 1024: (600, 3), 2048: (80, 3)}
    out: dict = {"machine": f"{CORES} cores; simulation and analytics pinned to one core each"
                            if CORES >= 2 and TASKSET else f"{CORES} core(s), not pinned", "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="transport_") as folder:
        for size, (steps, e_pairs) in sizes.items():
            e_runs = []
            for k in range(e_pairs):
                sub = os.path.join(folder, f"e{size}_{k}")
                os.makedirs(sub)
                if k % 2 == 0:  # ABBA order: a drift over the run favours neither side
                    e_runs.append((bare_rate(sub, size, steps), intransit_rate(sub, size, steps)))
                else:
                    ours = intransit_rate(sub, size, steps)
                    e_runs.append((bare_rate(sub, size, steps), ours))
            ratios = [o / b for b, o in e_runs]
            bare = statistics.median(b for b, _ in e_runs)
            ours = statistics.median(o for _, o in e_runs)
            gbs = bare * size * size * 8 / 1e9
            memcpy = memcpy_gbps(size)
            out["sizes"][str(size)] = {
                "bare_steps_per_s": round(bare, 1), "intransit_steps_per_s": round(ours, 1),
                "transport_efficiency": round(statistics.median(ratios), 3),
                "transport_efficiency_pairs": [round(r, 3) for r in ratios],
                "bare_gb_per_s": round(gbs, 3), "memcpy_gb_per_s": round(memcpy, 3),
                "copy_efficiency": round(gbs / memcpy, 3),
            }
            print(f"{size}²: bare {bare:.1f} steps/s, intransit {ours:.1f} steps/s → E = "
                  f"{statistics.median(ratios):.3f} (pairs {[round(r, 3) for r in ratios]})", flush=True)
        out["transport_efficiency"] = min(v["transport_efficiency"] for v in out["sizes"].values())
        inter_pairs, inter_steps = (10, 500) if a.quick else (30, 600)
        inter_e = interleaved_efficiency(os.path.join(folder, "inter"), 256, inter_pairs, inter_steps)
        out["transport_efficiency_interleaved"] = inter_e
        print(f"256², one reader process alternating the bare loop and intransit's ({inter_pairs} pairs of "
              f"{inter_steps} steps): E = {inter_e['transport_efficiency']:.3f} ({inter_e['bare_steps_per_s']} vs "
              f"{inter_e['intransit_steps_per_s']} steps/s)", flush=True)
        out["copy_efficiency"] = min(v["copy_efficiency"] for v in out["sizes"].values())

        # Alone and attached runs alternate, and S is the median over the pairs: one
        # pair on this shared machine swings by ±20 % (docs/performance.md).
        sim_steps, pairs = (150, 3) if a.quick else (400, 5)
        per_pair, medians = [], {"alone": [], "attached": []}
        for k in range(pairs):
            if k % 2 == 0:  # ABBA order, as for E
                alone, _ = sim_step_ms(folder, f"alone{k}", 256, sim_steps, attach=False)
                attached, _ = sim_step_ms(folder, f"attached{k}", 256, sim_steps, attach=True)
            else:
                attached, _ = sim_step_ms(folder, f"attached{k}", 256, sim_steps, attach=True)
                alone, _ = sim_step_ms(folder, f"alone{k}", 256, sim_steps, attach=False)
            medians["alone"].append(statistics.median(alone))
            medians["attached"].append(statistics.median(attached))
            per_pair.append(statistics.median(attached) / statistics.median(alone) - 1)
        out["sim_slowdown"] = round(statistics.median(per_pair), 4)
        out["sim_slowdown_pairs"] = [round(x, 4) for x in per_pair]
        out["sim_step_ms_median"] = {"alone": round(statistics.median(medians["alone"]), 3),
                                     "attached": round(statistics.median(medians["attached"]), 3)}
        print(f"simulation 256² median step: alone {out['sim_step_ms_median']['alone']:.2f} ms, attached "
              f"{out['sim_step_ms_median']['attached']:.2f} ms → S = {out['sim_slowdown']:+.3f} "
              f"(median of {pairs} pairs: {out['sim_slowdown_pairs']})", flush=True)

        if not a.quick:
            inter = sim_slowdown_interleaved(folder, "inter", 256, windows=6, window_steps=250)
            out["sim_slowdown_interleaved"] = inter["sim_slowdown"]
            out["sim_slowdown_interleaved_detail"] = inter
            print(f"simulation 256², analytics attaching and leaving within one run: S = {inter['sim_slowdown']:+.3f} "
                  f"(pairs {inter['pairs']}, medians {inter['step_ms_median']})", flush=True)

        # The same with the turbulence computed at full resolution (hw2d at 256², no
        # upsampling): ten times the compute per published byte, as in production codes.
        per_pair_full, steps_full = [], 60 if a.quick else 150
        for k in range(1 if a.quick else 3):
            alone, _ = sim_step_ms(folder, f"alone_full{k}", 256, steps_full, attach=False, sim_args=["--coarse", "256"])
            attached, _ = sim_step_ms(folder, f"attached_full{k}", 256, steps_full, attach=True,
                                      sim_args=["--coarse", "256"])
            per_pair_full.append((statistics.median(alone), statistics.median(attached)))
        out["sim_slowdown_full_physics"] = round(statistics.median(b / a - 1 for a, b in per_pair_full), 4)
        out["sim_step_ms_median_full_physics"] = {"alone": round(statistics.median(p[0] for p in per_pair_full), 3),
                                                  "attached": round(statistics.median(p[1] for p in per_pair_full), 3)}
        out["sim_attach_cost_ms_per_step"] = round(out["sim_step_ms_median"]["attached"] - out["sim_step_ms_median"]["alone"], 3)
        print(f"simulation 256² with 256² physics: S = {out['sim_slowdown_full_physics']:+.4f} "
              f"({out['sim_step_ms_median_full_physics']})", flush=True)

        ku_size = 512
        ku_times, ku = sim_step_ms(folder, "keepup", ku_size, 60 if a.quick else 300, attach=True)
        sim_rate = 1000.0 / statistics.mean(ku_times)
        analyzed, dropped = ku["steps_analyzed"], ku["steps_dropped"]
        an_rate = ku["steps_analyzed_steady"] / ku["elapsed_seconds"]
        out["keep_up"] = round(an_rate / sim_rate, 3)
        out["dropped_fraction"] = round(dropped / (analyzed + dropped), 4) if analyzed + dropped else 0.0
        out["keep_up_detail"] = {"size": ku_size, "sim_steps_per_s": round(sim_rate, 2),
                                 "analytics_steps_per_s": round(an_rate, 2), "analytics_step_ms_mean":
                                 round(ku["step_seconds_mean"] * 1e3, 3)}
        print(f"keep-up at {ku_size}²: analytics {an_rate:.1f} steps/s vs simulation {sim_rate:.1f} → K = "
              f"{out['keep_up']}, dropped {out['dropped_fraction']:.1%}", flush=True)

        bp = os.path.join(folder, "replay.bp")
        sim = procs.start_sim(folder, bp, procs.sim_xml(folder, engine="BP5"), "--size", "512", "--steps",
                              "40" if a.quick else "120", "--blocks", "4", log_name="sim_bp5.log")
        procs.wait(sim, 600)
        out["scaling"] = {}
        for m in (1, 2):
            s = finish(job_summary(folder, f"scale{m}", bp, DETECT_TRACK, ranks=m, engine="BP5"))
            out["scaling"][str(m)] = round(s["steps_analyzed_steady"] / s["elapsed_seconds"], 2)
        print(f"scaling (512², detection + tracking, BP5 replay): {out['scaling']} steps/s for M = 1, 2", flush=True)

        mem_steps = 2000 if a.quick else 10000
        stream = os.path.join(folder, "mem")
        job = job_summary(folder, "mem", stream, DETECT_TRACK)
        writer = run_writer(folder, stream, 64, mem_steps, readers=1, blocks=2)
        s = finish(job)
        procs.wait(writer, 120)
        rss = s["rss_mb"]
        out["memory"] = {"steps": mem_steps, "rss_mb_samples": rss,
                         "rss_growth_mb": round(rss[-1][1] - rss[1][1], 2) if len(rss) > 2 else None}
        print(f"memory over {mem_steps} steps: RSS samples (index, MB) {rss[:2]} … {rss[-1:]}", flush=True)
    out["gpu"] = gpu_section(sizes=(512, 1024) if a.quick else (512, 1024, 2048), device=a.gpu_device)
    print(f"GPU section: {json.dumps(out['gpu'])}", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
