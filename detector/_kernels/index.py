"""Indexes of capture files: where a big file can be cut into parts.

A pcapng file cannot be cut at a blind offset: a part needs the section header
and the interface descriptions in force where it starts, and those may appear
anywhere (a second section, an interface added mid-capture). One pass over
the block headers (a few bytes per block; the file is mapped, not copied)
finds the packet block at or after each wanted offset and where every section
header (SHB) and interface description (IDB) block lies.
"""

import numpy as np
from numba import njit

from .._jit import KERNEL
from .records import PCAPNG_BYTE_ORDER_MAGIC as BYTE_ORDER_MAGIC
from .records import PCAPNG_EPB, PCAPNG_IDB, PCAPNG_PB, PCAPNG_SHB, _u32

MIN_BLOCK = 12  # type, length, trailing length

INDEX_OK = 0  # walked to exactly the end of the buffer
INDEX_DAMAGED = 1  # a block that cannot be (bad length or byte order): stopped there
INDEX_TOO_MANY_MARKS = 2  # more SHB/IDB blocks than ``marks`` holds: stopped there


@njit(**KERNEL)
def index_pcapng(buf, wanted, cuts, marks):
    """Walk the pcapng blocks of ``buf`` (a whole file) from offset 0.

    ``wanted``: increasing offsets; ``cuts[i]`` becomes the offset of the first
    Enhanced (or obsolete) Packet Block at or after ``wanted[i]`` (-1: none
    before the walk stopped). Never a Simple Packet Block: it carries no time
    and takes the one of the packet before it, which a part cut there lacks.
    ``marks[k]`` = (offset, length, type) of the k-th SHB or IDB block.
    Returns ``(n_marks, stopped_at, status)`` with status INDEX_*.
    """
    n = buf.shape[0]
    for i in range(wanted.shape[0]):
        cuts[i] = -1
    pos = np.int64(0)
    big = False
    n_marks = 0
    w = 0
    while pos < n:
        if pos + MIN_BLOCK > n:
            return n_marks, pos, INDEX_DAMAGED
        block = _u32(buf, pos, False)
        if block == PCAPNG_SHB:
            if pos + 16 > n:
                return n_marks, pos, INDEX_DAMAGED
            if _u32(buf, pos + 8, False) == BYTE_ORDER_MAGIC:
                big = False
            elif _u32(buf, pos + 8, True) == BYTE_ORDER_MAGIC:
                big = True
            else:
                return n_marks, pos, INDEX_DAMAGED
        else:
            block = _u32(buf, pos, big)
        length = _u32(buf, pos + 4, big)
        if length < MIN_BLOCK or length % 4 != 0 or pos + length > n:
            return n_marks, pos, INDEX_DAMAGED
        if _u32(buf, pos + length - 4, big) != length:
            return n_marks, pos, INDEX_DAMAGED
        if block == PCAPNG_SHB or block == PCAPNG_IDB:
            if n_marks >= marks.shape[0]:
                return n_marks, pos, INDEX_TOO_MANY_MARKS
            marks[n_marks, 0] = pos
            marks[n_marks, 1] = length
            marks[n_marks, 2] = block
            n_marks += 1
        elif block == PCAPNG_EPB or block == PCAPNG_PB:
            while w < wanted.shape[0] and wanted[w] <= pos:
                cuts[w] = pos
                w += 1
        pos += length
    return n_marks, pos, INDEX_OK
