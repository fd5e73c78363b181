"""The analytics process's allocator settings: applied on glibc, a user's own left alone."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import ctypes, json, os
from intransit.service.allocator import tune_for_streaming
applied = tune_for_streaming()
# glibc has no call that reads the thresholds back; observe the effect instead: a
# 64 MiB block lies inside the brk heap only when the mmap threshold was raised.
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
p = libc.malloc(64 << 20)
with open("/proc/self/maps") as fh:
    heap = [line.split()[0].split("-") for line in fh if line.rstrip().endswith("[heap]")]
in_heap = any(int(lo, 16) <= p < int(hi, 16) for lo, hi in heap)
libc.free(p)
print(json.dumps({"applied": applied, "new_mapping": not in_heap}))
"""


def run(env_extra: dict[str, str]) -> dict:
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_blocks_stay_in_the_heap_when_tuned():
    r = run({})
    assert r["applied"] is True
    assert r["new_mapping"] is False, "a 64 MiB block should come from the heap after tuning"


def test_a_users_own_malloc_settings_are_kept():
    r = run({"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert r["applied"] is False
    assert r["new_mapping"] is True, "the user's 128 KiB threshold still sends 64 MiB blocks to mmap"
