"""Freed heap memory given back to the system between the recordings of a stage (glibc's ``malloc_trim``).

A stage that loops over recordings allocates and frees arrays of every recording's size, over and over; PyTorch's
threads and numpy take them from glibc's heap, which keeps what is freed for later (fragmented, it is often never
reused). Over the 150 recordings of an H3WB-size build at 4x their length, that left the completion's fill loop
about 500 MB larger than after the first recording (``stage=complete`` peaked at 1,671 MB at 4x against 1,124 MB
at 1x); ``malloc_trim(0)`` after each recording gives the free pages back (1,146 MB at 4x, the same output bit for
bit); alternated with the version before, the stage took no longer than the noise showed (docs/speed.md).
Trimming every eighth recording instead did not keep it flat. Elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys


@functools.cache
def _malloc_trim():
    """The C library's ``malloc_trim`` in this process, or None where that library is not glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this interpreter runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trimming_available() -> bool:
    """Whether :func:`release_freed_memory` can give memory back here (glibc)."""
    return _malloc_trim() is not None


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system; True when some were (always False without glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
