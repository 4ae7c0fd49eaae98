"""Freed heap memory given back between recordings (build_h3wb.memory)."""

import platform
import resource
import sys

import numpy as np
import pytest

from build_h3wb import memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20  # resident pages


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_free_pages_in_the_middle_of_the_heap_are_given_back():
    assert memory.trimming_available()
    # 64 KiB blocks come from the heap (below glibc's mmap threshold); one kept in ten pins the heap, so that what is
    # freed lies between live blocks, where glibc keeps it resident (only the heap's top is trimmed on free)
    blocks = [np.ones(8192) for _ in range(3000)]
    kept = blocks[::10]
    del blocks
    before = _resident_mb()
    assert memory.release_freed_memory()
    after = _resident_mb()
    assert before - after > 50, (before, after)  # about 170 MB freed; its pages, less the chunk headers', go back
    assert all(float(b.sum()) == 8192 for b in kept)  # live blocks untouched


@pytest.mark.skipif(GLIBC, reason="only without glibc")
def test_without_glibc_nothing_happens():  # pragma: no cover - CI runs on glibc
    assert not memory.trimming_available()
    assert memory.release_freed_memory() is False
