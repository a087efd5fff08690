"""The C heap's free pages handed back (:func:`connector.heap.trim_heap`: after the language models load, and
before the worker and the web server fork): freed buffers in the middle of the heap stop being resident."""

from __future__ import annotations

import pytest

from connector.heap import trim_heap
from connector.supervisor import rss_bytes

MB = 2**20


def test_freed_buffers_in_the_middle_of_the_heap_stop_being_resident() -> None:
    if rss_bytes() is None:
        pytest.skip("no /proc here to read the resident memory from")
    # 200 MB in 64 KB buffers (below glibc's mmap threshold: on the heap), written to, then all freed but every
    # tenth: the free space sits between kept buffers, where freeing alone never returns it
    buffers = [bytearray(b"x" * (64 * 1024)) for _ in range(3200)]
    kept = buffers[::10]
    del buffers
    before = rss_bytes()
    if not trim_heap():
        pytest.skip("not glibc: no malloc_trim")
    after = rss_bytes()
    assert before is not None and after is not None
    assert before - after > 100 * MB, (before // MB, after // MB)
    assert all(b[:1] == b"x" for b in kept)  # what is kept is untouched
