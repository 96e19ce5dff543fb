#!/usr/bin/env python3
"""Peer tools for the capture benchmark, each run over one pcap.

Every runner returns a `PeerRun(packets, seconds, flows, detail)`:

* `packets` - packets the tool accounted for (its own count; the prefix length for
  scapy; None when the tool does not count packets, like `cat`);
* `seconds` - wall time of what was measured (see `mode` in `PEERS`);
* `flows`   - flows (or conversations) the tool reported, None if it has none;
* `detail`  - tool-specific extras: `cpu_seconds` (user + system CPU of what was
  timed: robust to other processes competing for the cores), peak RSS,
  per-IP-version counts.

Two kinds of measurement, named in `PEERS[name].mode`:

* **whole-process**: a fresh process is timed from spawn to exit, interpreter start
  and imports included, as a user would run the tool (cat, tshark, nfstream, dpkt);
  peak RSS comes from `os.wait4` on that child.
* **in-process**: only the loop is timed, after a warm-up (the numba floor, which
  must not pay its JIT compile, and the scapy prefix, whose import is not its speed).

Run standalone to try peers on a file:

    python benchmarks/peers.py CAPTURE.pcap [--peers dpkt,nfstream] [--scapy-prefix N]

The Python peers (nfstream, dpkt) run in a child process of the interpreter named by
`--peers-python` or `$BENCH_PEERS_PYTHON` (default: this one), so a peer can live in
a venv of its own (nfstream 6.6 pins other numpy and pandas than ours):

    BENCH_PEERS_PYTHON=/work/peersvenv/bin/python python benchmarks/peers.py CAPTURE.pcap
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

HERE = Path(__file__).resolve()
TSHARK = "/usr/bin/tshark"
# The interpreter the Python peers run in (set_peers_python; numpy is all this file
# needs there besides the peer itself).
PEERS_PYTHON = os.environ.get("BENCH_PEERS_PYTHON") or sys.executable


def set_peers_python(python: str | None) -> None:
    """Run the Python peers (nfstream, dpkt) with ``python`` (None: keep the default)."""
    global PEERS_PYTHON
    if python:
        PEERS_PYTHON = python


GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


class PeerRun(NamedTuple):
    packets: int | None
    seconds: float
    flows: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Peer:
    name: str
    label: str
    mode: str  # "whole-process" or "in-process"
    run: Callable[..., PeerRun]
    note: str = ""
    prefix: bool = False  # measured on a prefix of the capture, rate extrapolated


@dataclass
class Timed:
    seconds: float
    returncode: int
    maxrss_kib: int
    cpu_seconds: float
    stdout: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------- process timing


def run_timed(
    cmd: list[str], env: dict[str, str] | None = None, discard_stdout: bool = False
) -> Timed:
    """Run `cmd` to completion; wall time from spawn to reap and the child's peak RSS.

    Peak RSS comes from `/usr/bin/time -f %M`, not from `os.wait4` on our own child:
    Linux carries a process's RSS high-water mark across exec, so a direct child of
    this (large, numpy-loaded) Python would report at least our own RSS. `time` is
    small, so its child's figure is the command's own. Without /usr/bin/time,
    `wait4` is used and the figure is only an upper bound. Output goes to temporary
    files so a chatty child cannot block on a full pipe while we wait.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss,
    ):
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if GNU_TIME else cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            wrapped,
            stdout=subprocess.DEVNULL if discard_stdout else out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        _, status, rusage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
        out.seek(0)
        err.seek(0)
        maxrss_kib = int(rusage.ru_maxrss)  # Linux: kilobytes
        if GNU_TIME:
            # `time` writes "Command exited with non-zero status N" before %M on failure.
            lines = rss.read().split()
            maxrss_kib = int(lines[-1]) if lines and lines[-1].isdigit() else -1
        return Timed(
            seconds=seconds,
            returncode=proc.returncode,
            maxrss_kib=maxrss_kib,
            # The child's and its reaped descendants' CPU (here: time + the command).
            cpu_seconds=rusage.ru_utime + rusage.ru_stime,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def _child(name: str, path: Path, env: dict[str, str] | None = None, **kwargs: Any) -> PeerRun:
    """Run `peers.py --child NAME PATH` as a fresh process and time all of it."""
    cmd = [PEERS_PYTHON, str(HERE), "--child", name, str(path)]
    for k, v in kwargs.items():
        if v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    t = run_timed(cmd, env=env)
    if t.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {t.returncode}):\n{t.stderr[-2000:]}")
    res = json.loads(t.stdout.strip().splitlines()[-1])
    detail = res.get("detail", {})
    detail["maxrss_mib"] = round(t.maxrss_kib / 1024, 1)
    detail["cpu_seconds"] = t.cpu_seconds
    detail["inner_seconds"] = res["inner_seconds"]
    return PeerRun(res["packets"], t.seconds, res["flows"], detail)


# ------------------------------------------------------------------------- floors


def floor_cat(path: Path) -> PeerRun:
    """`cat file > /dev/null` (whole process): the cost of reading the bytes at all."""
    t = run_timed(["cat", str(path)], discard_stdout=True)
    if t.returncode != 0:
        raise RuntimeError(f"cat failed: {t.stderr[-500:]}")
    detail = {"maxrss_mib": round(t.maxrss_kib / 1024, 1), "cpu_seconds": t.cpu_seconds}
    return PeerRun(None, t.seconds, None, detail)


_walk_kernel: Callable[..., Any] | None = None


def _get_walk_kernel() -> Callable[..., Any]:
    """Compile (once per process) the record-header walk; numba imported lazily so
    the caller can set NUMBA_NUM_THREADS first."""
    global _walk_kernel
    if _walk_kernel is None:
        from numba import njit

        @njit(nogil=True, cache=False)
        def walk(buf, big_endian):  # untyped on purpose: numba infers the types
            # Only the 16-byte record headers are read: the floor for any parser
            # that must look at every record of a classic pcap.
            n = 0
            wire = 0
            off = 24
            size = buf.size
            while off + 16 <= size:
                if big_endian:
                    incl = (
                        (np.int64(buf[off + 8]) << 24) | (np.int64(buf[off + 9]) << 16)
                        | (np.int64(buf[off + 10]) << 8) | np.int64(buf[off + 11])
                    )  # fmt: skip
                    orig = (
                        (np.int64(buf[off + 12]) << 24) | (np.int64(buf[off + 13]) << 16)
                        | (np.int64(buf[off + 14]) << 8) | np.int64(buf[off + 15])
                    )  # fmt: skip
                else:
                    incl = (
                        np.int64(buf[off + 8]) | (np.int64(buf[off + 9]) << 8)
                        | (np.int64(buf[off + 10]) << 16) | (np.int64(buf[off + 11]) << 24)
                    )  # fmt: skip
                    orig = (
                        np.int64(buf[off + 12]) | (np.int64(buf[off + 13]) << 8)
                        | (np.int64(buf[off + 14]) << 16) | (np.int64(buf[off + 15]) << 24)
                    )  # fmt: skip
                n += 1
                wire += orig
                off += 16 + incl
            return n, wire, off

        # Warm up on a tiny synthetic file of both byte orders: compile outside timing.
        tiny = np.zeros(24 + 16 + 4, dtype=np.uint8)
        tiny[24 + 8] = 4
        tiny.flags.writeable = False  # a read-only memmap is a distinct numba type
        walk(tiny, False)
        walk(tiny, True)
        _walk_kernel = walk
    return _walk_kernel


def pcap_byte_order(path: Path) -> bool:
    """True for a big-endian classic pcap; raise for anything else (pcapng, gzip)."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return False
    if magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return True
    raise ValueError(f"{path}: not a classic pcap (magic {magic.hex()})")


def floor_numba_walk(path: Path, populate: bool = False) -> PeerRun:
    """numba loop over the record headers of a memory map of the file (in-process).

    Counts records and sums orig_len; the JIT compile happens before timing, the
    mapping inside it. With a plain `np.memmap` most of the time is page faults
    (one per few pages touched); `populate=True` maps with MAP_POPULATE so the
    kernel maps the whole (cached) file in one call, which is the true floor for a
    parser and shows what the faults cost.
    """
    walk = _get_walk_kernel()
    big = pcap_byte_order(path)
    size = os.path.getsize(path)
    c0 = time.process_time()
    t0 = time.perf_counter()
    if populate:
        with open(path, "rb") as fh:
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            mapping = mmap.mmap(fh.fileno(), size, flags=flags, prot=mmap.PROT_READ)
        buf = np.frombuffer(mapping, dtype=np.uint8)
    else:
        # asarray: a plain read-only ndarray view of the mapping, so numba reuses
        # the warm-up's compiled signature instead of compiling for np.memmap.
        buf = np.asarray(np.memmap(path, dtype=np.uint8, mode="r"))
    n, wire, end = walk(buf, big)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    del buf
    if populate:
        mapping.close()
    detail = {"wire_bytes": int(wire), "clean_end": end == size, "cpu_seconds": cpu}
    return PeerRun(int(n), seconds, None, detail)


def floor_numba_walk_populate(path: Path) -> PeerRun:
    return floor_numba_walk(path, populate=True)


# -------------------------------------------------------------------------- tools


def nfstream(path: Path, n_meters: int | None = None) -> PeerRun:
    """nfstream 6.x (whole process), default 120 s idle / 1800 s active timeouts."""
    return _child("nfstream", path, n_meters=n_meters)


def _nfstream_inner(path: Path, n_meters: int | None) -> dict[str, Any]:
    from nfstream import NFStreamer

    kwargs: dict[str, Any] = {"statistical_analysis": False, "n_dissections": 0}
    if n_meters:
        kwargs["n_meters"] = n_meters
    flows = packets = 0
    by_version: dict[str, dict[str, int]] = {}
    by_expiry: dict[str, int] = {}
    for flow in NFStreamer(source=str(path), **kwargs):
        flows += 1
        packets += flow.bidirectional_packets
        v = by_version.setdefault(f"ipv{flow.ip_version}", {"flows": 0, "packets": 0, "bytes": 0})
        v["flows"] += 1
        v["packets"] += flow.bidirectional_packets
        v["bytes"] += flow.bidirectional_bytes
        by_expiry[str(flow.expiration_id)] = by_expiry.get(str(flow.expiration_id), 0) + 1
    return {
        "packets": packets,
        "flows": flows,
        "detail": {"by_ip_version": by_version, "by_expiration_id": by_expiry},
    }


def dpkt_loop(path: Path) -> PeerRun:
    """A plain dpkt loop (whole process): Ethernet/VLAN, IPv4/IPv6, TCP/UDP -> dict."""
    return _child("dpkt", path)


def _canonical(vlan: int, proto: int, a: tuple, b: tuple) -> tuple:
    return (vlan, proto, a, b) if a <= b else (vlan, proto, b, a)


def _dpkt_inner(path: Path) -> dict[str, Any]:
    import dpkt

    flows: dict[tuple, int] = {}
    packets = not_ip = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            packets += 1
            eth = dpkt.ethernet.Ethernet(buf)
            tags = getattr(eth, "vlan_tags", None)
            vlan = tags[0].id if tags else -1
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                l4 = ip.data
                if isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP):
                    sport, dport = l4.sport, l4.dport
                else:
                    sport = dport = 0
                key = _canonical(vlan, ip.p, (ip.src, sport), (ip.dst, dport))
                flows[key] = flows.get(key, 0) + 1
            else:
                not_ip += 1
    return {"packets": packets, "flows": len(flows), "detail": {"not_ip": not_ip}}


def scapy_prefix(path: Path, prefix: int = 20_000) -> PeerRun:
    """scapy RawPcapReader + Ether() dissection of the first `prefix` packets.

    In-process (scapy's ~1 s import is not its speed); the rate is extrapolated
    from the prefix, so the row is labelled as such.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.utils import RawPcapReader

    flows: dict[tuple, int] = {}
    n = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for raw, _meta in RawPcapReader(str(path)):
        pkt = Ether(raw)
        tag = pkt.getlayer(Dot1Q)
        vlan = tag.vlan if tag is not None else -1
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        if ip is not None:
            proto = ip.proto if ip.version == 4 else ip.nh
            l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
            ports = (l4.sport, l4.dport) if l4 is not None else (0, 0)
            key = _canonical(vlan, proto, (ip.src, ports[0]), (ip.dst, ports[1]))
            flows[key] = flows.get(key, 0) + 1
        n += 1
        if n >= prefix:
            break
    seconds = time.perf_counter() - t0
    detail = {"prefix": n, "cpu_seconds": time.process_time() - c0}
    return PeerRun(n, seconds, len(flows), detail)


def tshark_conv(path: Path, stats: str = "conv,tcp") -> PeerRun:
    """`tshark -n -q -z conv,tcp` (whole process); `-z io,stat,0` counts all frames.

    `packets` is the total frames read; `flows` the conversations listed, and
    `detail['conv_packets']` the frames inside them.
    """
    if not os.path.exists(TSHARK):
        raise FileNotFoundError(TSHARK)
    t = run_timed([TSHARK, "-n", "-q", "-r", str(path), "-z", stats, "-z", "io,stat,0"])
    if t.returncode != 0:
        raise RuntimeError(f"tshark failed (exit {t.returncode}): {t.stderr[-2000:]}")
    convs, conv_packets = parse_tshark_conv(t.stdout)
    m = re.search(r"\|\s*[\d.]+\s*<>\s*[\d.]+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", t.stdout)
    frames = int(m.group(1)) if m else None
    detail = {
        "conv_packets": conv_packets,
        "stats": stats,
        "io_bytes": int(m.group(2)) if m else None,
        "maxrss_mib": round(t.maxrss_kib / 1024, 1),
        "cpu_seconds": t.cpu_seconds,
    }
    return PeerRun(frames, t.seconds, convs, detail)


_UNITS = {"bytes", "kB", "MB", "GB", "TB", "B"}


def parse_tshark_conv(text: str) -> tuple[int, int]:
    """(conversations, total frames in them) from tshark's conv table output.

    A row is `A <-> B  f<- b<- f-> b-> ftotal btotal rel_start duration`, where each
    byte count may carry a unit token ("84 kB"), so units are dropped first.
    """
    convs = frames = 0
    for line in text.splitlines():
        if "<->" not in line:
            continue
        tail = line.split("<->", 1)[1].split()[1:]  # drop the B endpoint
        nums = [tok.replace(",", "") for tok in tail if tok not in _UNITS]
        convs += 1
        frames += int(nums[4])
    return convs, frames


# ------------------------------------------------------------------------ registry

PEERS: dict[str, Peer] = {
    "cat": Peer("cat", "floor: cat > /dev/null", "whole-process", floor_cat),
    "walk": Peer("walk", "floor: numba record walk", "in-process", floor_numba_walk,
                 "np.memmap, record headers only"),
    "walk-populate": Peer("walk-populate", "floor: numba walk, MAP_POPULATE", "in-process",
                          floor_numba_walk_populate, "mmap(MAP_POPULATE), record headers only"),
    "nfstream": Peer("nfstream", "nfstream", "whole-process", nfstream,
                     "statistical_analysis=False, n_dissections=0"),
    "dpkt": Peer("dpkt", "dpkt loop + dict", "whole-process", dpkt_loop),
    "scapy": Peer("scapy", "scapy RawPcapReader+Ether (prefix)", "in-process", scapy_prefix,
                  "prefix only, rate extrapolated", prefix=True),
    "tshark": Peer("tshark", "tshark -z conv,tcp", "whole-process", tshark_conv),
}  # fmt: skip


def available(name: str) -> str | None:
    """None when the peer can run here, else why not."""
    if name == "tshark" and not os.path.exists(TSHARK):
        return f"{TSHARK} not found"
    if name == "cat" and shutil.which("cat") is None:
        return "cat not found"
    modules = {
        "nfstream": "nfstream",
        "dpkt": "dpkt",
        "scapy": "scapy",
        "walk": "numba",
        "walk-populate": "numba",
    }
    if name in ("nfstream", "dpkt"):  # run by PEERS_PYTHON
        probe = subprocess.run(
            [PEERS_PYTHON, "-c", f"import {modules[name]}, numpy"], capture_output=True
        )
        if probe.returncode != 0:
            return f"python module {modules[name]} not importable by {PEERS_PYTHON}"
    elif name in modules:
        import importlib.util

        if importlib.util.find_spec(modules[name]) is None:
            return f"python module {modules[name]} not installed (pip install {modules[name]})"
    return None


# ---------------------------------------------------------------------------- CLI


def _child_main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.child == "nfstream":
        res = _nfstream_inner(args.path, args.n_meters)
    elif args.child == "dpkt":
        res = _dpkt_inner(args.path)
    else:
        raise SystemExit(f"unknown child {args.child}")
    res["inner_seconds"] = round(time.perf_counter() - t0, 4)
    print(json.dumps(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run peer tools over a pcap.")
    ap.add_argument("path", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n-meters", type=int, default=None, help="nfstream meters (default auto)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--scapy-prefix", type=int, default=20_000)
    ap.add_argument(
        "--peers-python",
        default=None,
        help="interpreter for nfstream and dpkt (default: $BENCH_PEERS_PYTHON or this one)",
    )
    args = ap.parse_args(argv)
    set_peers_python(args.peers_python)
    if args.child:
        return _child_main(args)
    for name in args.peers.split(","):
        peer = PEERS[name]
        why = available(name)
        if why:
            print(f"{peer.label:40s} skipped: {why}")
            continue
        if name == "scapy":
            run = peer.run(args.path, prefix=args.scapy_prefix)
        elif name == "nfstream":
            run = peer.run(args.path, n_meters=args.n_meters)
        else:
            run = peer.run(args.path)
        rate = f"{run.packets / run.seconds:,.0f} pkt/s" if run.packets else ""
        print(
            f"{peer.label:40s} {peer.mode:13s} {run.seconds:8.3f} s  packets={run.packets}"
            f"  flows={run.flows}  {rate}  {json.dumps(run.detail)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
