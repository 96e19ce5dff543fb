"""A classic BPF interpreter: a pcap filter (compiled by libpcap) run over
records in a capture buffer, as libpcap's ``bpf_filter`` runs it
(``bpf_filter.c``: unsigned 32-bit A and X, 16 scratch words, a load past the
captured bytes rejects the packet, division by zero rejects it).

``programs`` holds every program's instructions, one row each: code, jt, jf, k.
"""

import numpy as np
from numba import njit

from .._jit import HOT_LOOP, INLINE

# <pcap/bpf.h>: instruction classes, sizes, modes, operations, sources
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = 0, 1, 2, 3, 4, 5, 6, 7
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR = 0x60, 0x70, 0x80, 0x90, 0xA0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_X = 0x08
BPF_RVAL_A = 0x10
BPF_TXA = 0x80
MASK32 = np.int64(0xFFFFFFFF)


@njit(**INLINE)
def _load(buf, data, caplen, at, size):
    """The big-endian value of ``size`` bytes at packet offset ``at``; -1 past the end."""
    if at < 0 or at + size > caplen:
        return np.int64(-1)
    p = data + at
    if size == 4:
        return (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (
            np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])  # fmt: skip
    if size == 2:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    return np.int64(buf[p])


@njit(**INLINE)
def run_program(programs, start, length, buf, data, caplen, wirelen, mem):
    """Run the program ``programs[start:start+length]`` on the packet at
    ``buf[data:data+caplen]`` with ``mem`` (16 int64) as its scratch words;
    returns its result (0: rejected)."""
    a = np.int64(0)
    x = np.int64(0)
    for j in range(16):
        mem[j] = 0
    pc = 0
    while 0 <= pc < length:
        code = programs[start + pc, 0]
        jt = programs[start + pc, 1]
        jf = programs[start + pc, 2]
        k = programs[start + pc, 3]
        pc += 1
        cls = code & 0x07
        if cls == BPF_RET:
            return a if (code & 0x18) == BPF_RVAL_A else k
        if cls == BPF_LD or cls == BPF_LDX:
            mode = code & 0xE0
            size = 4 if (code & 0x18) == BPF_W else (2 if (code & 0x18) == BPF_H else 1)
            if mode == BPF_IMM:
                value = k
            elif mode == BPF_LEN:
                value = np.int64(wirelen)
            elif mode == BPF_MEM:
                value = mem[k & 15]
            elif mode == BPF_ABS:
                value = _load(buf, data, caplen, k, size)
                if value < 0:
                    return 0
            elif mode == BPF_IND:
                value = _load(buf, data, caplen, (x + k) & MASK32, size)
                if value < 0:
                    return 0
            elif mode == BPF_MSH:
                value = _load(buf, data, caplen, k, 1)
                if value < 0:
                    return 0
                value = (value & 0x0F) << 2
            else:
                return 0
            if cls == BPF_LD:
                a = value
            else:
                x = value
        elif cls == BPF_ST:
            mem[k & 15] = a
        elif cls == BPF_STX:
            mem[k & 15] = x
        elif cls == BPF_ALU:
            op = code & 0xF0
            v = x if code & BPF_X else k
            if op == BPF_ADD:
                a = (a + v) & MASK32
            elif op == BPF_SUB:
                a = (a - v) & MASK32
            elif op == BPF_MUL:
                a = (a * v) & MASK32
            elif op == BPF_DIV:
                if v == 0:
                    return 0
                a = a // v
            elif op == BPF_MOD:
                if v == 0:
                    return 0
                a = a % v
            elif op == BPF_OR:
                a = a | v
            elif op == BPF_AND:
                a = a & v
            elif op == BPF_XOR:
                a = a ^ v
            elif op == BPF_LSH:
                a = (a << v) & MASK32 if v < 32 else np.int64(0)
            elif op == BPF_RSH:
                a = a >> v if v < 32 else np.int64(0)
            elif op == BPF_NEG:
                a = (-a) & MASK32
            else:
                return 0
        elif cls == BPF_JMP:
            op = code & 0xF0
            v = x if code & BPF_X else k
            if op == BPF_JA:
                pc += k
            elif op == BPF_JEQ:
                pc += jt if a == v else jf
            elif op == BPF_JGT:
                pc += jt if a > v else jf
            elif op == BPF_JGE:
                pc += jt if a >= v else jf
            elif op == BPF_JSET:
                pc += jt if (a & v) != 0 else jf
            else:
                return 0
        else:  # BPF_MISC
            if code & 0xF8 == BPF_TXA:
                a = x
            else:
                x = a
    return 0


@njit(**HOT_LOOP)
def filter_rows(programs, starts, lengths, which, buf, data, caplen, wirelen, mem, out):
    """``out[i]`` = whether row ``i``'s packet (at ``buf[data[i]:]``, ``caplen[i]``
    bytes captured of ``wirelen[i]``) passes program ``which[i]`` (-1: no
    program for its link type: rejected); ``mem`` is the scratch (16 int64)."""
    for i in range(data.shape[0]):
        w = which[i]
        if w < 0:
            out[i] = False
            continue
        out[i] = (
            run_program(programs, starts[w], lengths[w], buf, data[i], caplen[i], wirelen[i], mem)
            != 0
        )
