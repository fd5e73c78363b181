"""The markers the README names (`mpi`, `sst`, `slow`, `gpu`) select what they say, checked on pytest's own collection.

* every test that needs the compiled C++ example (its module fixture builds it) is `slow`;
* `gpu` selects tests, each of which needs CUDA (they skip, saying so, without it);
* a few single-process tests once marked `mpi` are not.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests import procs


def collect(*args: str) -> list[str]:
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=procs.ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode in (0, 5), res.stdout[-3000:] + res.stderr[-3000:]  # 5: nothing selected
    return [line for line in res.stdout.splitlines() if "::" in line]


def test_every_cpp_example_test_is_slow():
    everything = collect("tests/test_cpp_example.py")
    assert len(everything) >= 5
    assert collect("-m", "not slow", "tests/test_cpp_example.py") == []


def test_gpu_selects_the_cuda_tests_only():
    gpu = collect("-m", "gpu", "tests")
    assert gpu, "no test carries the gpu marker"
    for node in gpu:
        assert "cuda" in node.lower(), node


def test_single_process_tests_are_not_marked_mpi():
    mpi = set(collect("-m", "mpi", "tests/test_mpi_adios2.py", "tests/test_sst_integration.py",
                      "tests/test_default_pipeline_sst.py"))
    for name in ("test_the_cohort_sees_the_mpi_build", "test_missing_stream_times_out_naming_it",
                 "test_unknown_variable_is_named_with_what_exists", "test_bad_config_is_a_clear_error",
                 "test_stalled_writer_is_a_timeout_not_an_end",
                 "test_the_score_is_perfect_on_the_truth_and_drops_with_errors"):
        assert not [n for n in mpi if re.search(rf"::{name}\b", n)], name
    assert any("test_same_catalog_for_any_ranks_and_blocks" in n for n in mpi)  # the multi-rank ones still are
