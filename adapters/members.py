"""Member stream discovery: which members of an ensemble have a live stream, and how each one ended.

The run folder (``[ensemble] workdir``) is the only thing the analytics pool,
the launcher (local processes or Slurm) and the members share:

* ``streams/m<member>_a<attempt>``: each member attempt's SST stream; the
  writer's contact file ``<stream>.sst`` appearing is how the pool discovers it;
* ``status/m<member>_a<attempt>.json``: written once the member attempt ended,
  ``{"rc": exit status, "reason": "exit" | "timeout" | "stall" | "killed" | ...}``;
* ``status/m<member>_a<attempt>.kill``: the pool asks the launcher to end a member
  attempt (its stream stalled, or could not be read); the text says why;
* ``status/g<group>.discarded``: the launcher gave the group up (retries spent).

Every file is written to a temporary name and renamed, so a reader never sees
half of one.  Nothing here imports MPI.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import Any

_STREAM = re.compile(r"m(\d+)_a(\d+)$")


@dataclasses.dataclass(frozen=True, order=True)
class MemberAttempt:
    member: int
    attempt: int

    @property
    def tag(self) -> str:
        return f"m{self.member:05d}_a{self.attempt}"


def stream_dir(workdir: str) -> str:
    return os.path.join(workdir, "streams")


def status_dir(workdir: str) -> str:
    return os.path.join(workdir, "status")


def stream_path(workdir: str, who: MemberAttempt) -> str:
    return os.path.join(stream_dir(workdir), who.tag)


def parse_tag(name: str) -> MemberAttempt | None:
    m = _STREAM.search(name)
    return MemberAttempt(int(m.group(1)), int(m.group(2))) if m else None


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def live_streams(workdir: str) -> dict[MemberAttempt, str]:
    """Member attempts whose SST writer has published its contact file, with the stream path."""
    out = {}
    for contact in glob.glob(os.path.join(glob.escape(stream_dir(workdir)), "m*_a*.sst")):
        stream = contact[:-4]
        who = parse_tag(os.path.basename(stream))
        if who is not None:
            out[who] = stream
    return out


def write_status(workdir: str, who: MemberAttempt, rc: int | None, reason: str) -> None:
    os.makedirs(status_dir(workdir), exist_ok=True)
    write_atomic(os.path.join(status_dir(workdir), who.tag + ".json"), json.dumps({"rc": rc, "reason": reason}))


def statuses(workdir: str) -> dict[MemberAttempt, dict[str, Any]]:
    """Every member attempt that has ended: ``{"rc": ..., "reason": ...}``."""
    out = {}
    for path in glob.glob(os.path.join(glob.escape(status_dir(workdir)), "m*_a*.json")):
        who = parse_tag(os.path.basename(path)[:-5])
        if who is None:
            continue
        try:
            with open(path) as fh:
                out[who] = json.load(fh)
        except (OSError, ValueError):
            continue  # being replaced right now: seen next time
    return out


def request_kill(workdir: str, who: MemberAttempt, why: str) -> None:
    os.makedirs(status_dir(workdir), exist_ok=True)
    write_atomic(os.path.join(status_dir(workdir), who.tag + ".kill"), why)


def kill_requests(workdir: str) -> dict[MemberAttempt, str]:
    out = {}
    for path in glob.glob(os.path.join(glob.escape(status_dir(workdir)), "m*_a*.kill")):
        who = parse_tag(os.path.basename(path)[:-5])
        if who is not None:
            try:
                with open(path) as fh:
                    out[who] = fh.read().strip()
            except OSError:
                continue
    return out


def mark_discarded(workdir: str, group: int, why: str) -> None:
    os.makedirs(status_dir(workdir), exist_ok=True)
    write_atomic(os.path.join(status_dir(workdir), f"g{group:05d}.discarded"), why)


def discarded_groups(workdir: str) -> set[int]:
    out = set()
    for path in glob.glob(os.path.join(glob.escape(status_dir(workdir)), "g*.discarded")):
        m = re.search(r"g(\d+)\.discarded$", path)
        if m:
            out.add(int(m.group(1)))
    return out
