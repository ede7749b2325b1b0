"""The stages' processes keep their freed heap: a re-allocated block costs no page faults; a user's allocator wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from lambda_repro.process_heap import _glibc, keep_heap, user_chose_allocator

# A child that frees and re-allocates a 64 MiB tensor, as a training step frees and re-allocates its activations,
# and counts the page faults of the later rounds.
CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from lambda_repro.process_heap import heap_kept, keep_heap
    done = keep_heap() if sys.argv[1] == "keep" else {"heap": "default"}
    recorded = heap_kept()
    for warm_up in range(16):  # glibc settles its free blocks (memalign slack) within a few rounds
        torch.ones(16 * 2**20).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for round in range(8):
        torch.ones(16 * 2**20).sum()  # 64 MiB, freed at once
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"done": done, "faults_per_round": faults / 8, "recorded": recorded}))
    """
)
PAGES_64_MIB = 64 * 2**20 // 4096

needs_glibc = pytest.mark.skipif(_glibc() is None, reason="glibc's mallopt only")


def run_child(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True, env=environ, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_a_kept_heap_reuses_freed_blocks_without_page_faults():
    default, kept = run_child("default"), run_child("keep")
    assert default["done"] == {"heap": "default"} and kept["done"] == {"heap": "kept"}
    assert (default["recorded"], kept["recorded"]) == (False, True)  # what the spectral layer asks (heap_kept)
    # glibc hands the 64 MiB block back on free: every round faults it in again
    assert default["faults_per_round"] >= 0.9 * PAGES_64_MIB
    assert kept["faults_per_round"] < 0.1 * PAGES_64_MIB  # none once settled; a late re-split at most


@needs_glibc
def test_a_users_malloc_setting_is_left_alone():
    child = run_child("keep", MALLOC_ARENA_MAX="2")
    assert child["done"] == {"heap": "left to MALLOC_ARENA_MAX"} and child["recorded"] is False
    assert child["faults_per_round"] >= 0.9 * PAGES_64_MIB  # glibc's own behaviour, untouched


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({}, None),
        ({"PATH": "/bin", "LD_PRELOAD": ""}, None),
        ({"MALLOC_TRIM_THRESHOLD_": "0"}, "MALLOC_TRIM_THRESHOLD_"),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}, "GLIBC_TUNABLES"),
        ({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"}, None),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD"),
        ({"LD_PRELOAD": "libtcmalloc_minimal.so.4"}, "LD_PRELOAD"),
    ],
)
def test_what_counts_as_the_users_choice_of_allocator(environ, reason):
    assert user_chose_allocator(environ) == reason
    if reason:
        assert keep_heap(environ) == {"heap": f"left to {reason}"}  # and nothing is called
