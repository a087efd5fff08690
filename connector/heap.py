"""Handing the C heap's free pages back to the system (glibc's ``malloc_trim``).

Python returns its own small-object arenas to the system when they empty, but the C heap (where larger
objects, and the language models' Rust code, allocate) keeps freed pages resident until it is trimmed. A
process that loaded something large and is about to be forked from trims once, so that neither it nor its
children keep what loading left behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def trim_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``); False where there is none.

    Loading the language models leaves about a hundred megabytes of freed buffers (the models unpacked) in
    the C heap, still resident: trimmed, they are no longer kept by the process or by its forks.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to hand back this way
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
