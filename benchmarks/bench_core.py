#!/usr/bin/env python3
"""Benchmark the capture core against the floor and against peer tools.

    python benchmarks/bench_core.py                      # generate 2 M packets, full table
    python benchmarks/bench_core.py CAPTURE.pcap         # use an existing capture
    python benchmarks/bench_core.py --quick              # 200 k packets, 1 run, small prefix
    python benchmarks/bench_core.py --threads 1,2        # our rows at 1 and 2 threads
    python benchmarks/bench_core.py --skip-ours          # peers only (API not ready)
    python benchmarks/bench_core.py CAP.pcap --rows cmd,nfstream \
        --peers-python /work/peersvenv/bin/python --peer-runs 1   # nfstream from its own venv

Rows (see benchmarks/README.md): floor (cat), floor (numba record walk), our
decode, our decode + flow table, our whole `egress-detector flows` command,
nfstream, dpkt, scapy (prefix, extrapolated) and tshark. Each row is the median
of `--runs` runs after a warm-up; in-process rows exclude interpreter start and
JIT compile, whole-process rows include everything a user waits for.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
sys.path.insert(0, str(HERE))  # gen_capture, peers

# numba reads NUMBA_NUM_THREADS once, at import: parse the arguments and set it before
# anything imports numba (peers and gen_capture import it lazily; numpy is safe).


@dataclass
class Row:
    key: str
    label: str
    mode: str  # whole-process / in-process
    seconds: float | None = None  # median wall time
    cpu_seconds: float | None = None  # median user + system CPU (all threads/processes)
    packets_in: int | None = None  # packets the rate is computed over
    counted: int | None = None  # packets the tool accounted for
    flows: int | None = None
    maxrss_mib: float | None = None
    check: str = ""
    note: str = ""
    runs: list[float] = field(default_factory=list)
    cpu_runs: list[float] = field(default_factory=list)
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def pps(self) -> float | None:
        if self.seconds and self.packets_in:
            return self.packets_in / self.seconds
        return None

    def pps_cpu(self) -> float | None:
        if self.cpu_seconds and self.packets_in:
            return self.packets_in / self.cpu_seconds
        return None


# ------------------------------------------------------------------------ helpers


def measure(row: Row, runs: int, fn: Callable[[], tuple[float, float, Any]]) -> Any:
    """Call `fn` `runs` times; fn returns (wall s, CPU s, result). Medians go into
    `row`; the last result is returned."""
    result = None
    for _ in range(runs):
        seconds, cpu, result = fn()
        row.runs.append(seconds)
        row.cpu_runs.append(cpu)
    row.seconds = statistics.median(row.runs)
    row.cpu_seconds = statistics.median(row.cpu_runs)
    return result


def load_truth(capture: Path) -> dict[str, Any] | None:
    side = Path(f"{capture}.json")
    return json.loads(side.read_text()) if side.exists() else None


def ensure_capture(args: argparse.Namespace) -> Path:
    """The capture to measure: the one given, or a generated one (reused if present)."""
    if args.capture is not None:
        if not args.capture.exists():
            raise SystemExit(f"bench_core: {args.capture} does not exist")
        return args.capture
    kind = "full" if args.full_payload else f"snap{args.snaplen}"
    path = DATA / f"cap-{args.packets}p-{args.flows}f-{kind}-s{args.seed}.pcap"
    truth = load_truth(path)
    want = {"packets": args.packets, "flows": args.flows, "seed": args.seed}
    if (
        path.exists()
        and truth
        and all(truth["args"].get(k) == v for k, v in want.items())
        and truth["args"]["full_payload"] == args.full_payload
        and (args.full_payload or truth["args"]["snaplen"] == args.snaplen)
        and truth["file_bytes"] == path.stat().st_size
    ):
        print(f"# reusing {path}", file=sys.stderr)
        return path
    import gen_capture

    DATA.mkdir(parents=True, exist_ok=True)
    print(f"# generating {path} ...", file=sys.stderr)
    t0 = time.perf_counter()
    gen_capture.generate(path, args.packets, args.flows, args.snaplen, args.full_payload, args.seed)
    print(f"# generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def warm_page_cache(path: Path) -> None:
    """Read the file once so every row sees the same warm page cache.

    Before each of our rows, not only once: this machine's kernel runs DAMON
    with a "pageout" scheme (/sys/kernel/mm/damon/admin/kdamonds/0) that drops
    file pages it sees idle. Measured with fincore on 2026-11-28: a 232 MB
    capture read with cat kept 89 % of its pages after 60 s, 58 % after 2 min
    and 33 % after 165 s, so a capture last read before a long compile or a
    slow peer row is partly back on disk by the next row."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


class CpuWatch:
    """How much CPU other processes used while we ran (on 2 cores it skews figures).

    Busy jiffies of the whole machine from /proc/stat, minus this process's and its
    reaped children's CPU time from os.times(), over the wall time: the average
    number of cores someone else kept busy.
    """

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return 0.0, 0.0, time.monotonic()
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return busy, own, time.monotonic()

    def others_cores(self) -> float:
        busy0, own0, t0 = self.start
        busy1, own1, t1 = self._snapshot()
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9))


_probe_kernel: Any = None


def compute_probe() -> float:
    """Steps per second of a small hash-and-count loop whose table sits in L2.

    What it answers: was the CPU itself slow during this run? The record walks
    (the floor) are bound by memory, our decode and flow table by the core, and
    on this virtual machine another tenant on the core's second hardware thread
    can slow work of the second kind by half while the first barely moves (seen
    on 2026-11-28: decode + flow table 15.3 -> 9.9 M packets/s within 4 minutes,
    the floor 40.9 -> 38.8 M). The probe is printed before and after the rows;
    compare it with its value in a quiet hour before reading the ratios.
    """
    global _probe_kernel
    if _probe_kernel is None:
        from numba import njit

        @njit(cache=False, nogil=True)
        def probe(table: np.ndarray, steps: int) -> int:
            x = np.uint64(0x9E3779B97F4A7C15)
            mask = np.uint64(table.shape[0] - 1)
            for _ in range(steps):
                x = (x ^ (x >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
                table[np.int64(x & mask)] += 1
            return int(table[0])

        _probe_kernel = probe
        _probe_kernel(np.zeros(1 << 16, dtype=np.int64), 10)
    table = np.zeros(1 << 16, dtype=np.int64)  # 512 KiB: in L2, not L1
    steps = 5_000_000
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        _probe_kernel(table, steps)
        times.append(time.perf_counter() - t0)
    return steps / statistics.median(times)


def environment() -> dict[str, str]:
    info = {
        "python": platform.python_version(),
        "cores": str(os.cpu_count()),
        "machine": platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for mod in ("numpy", "numba", "nfstream", "dpkt", "scapy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing peer is reported, not fatal
            info[mod] = "-"
    return info


# --------------------------------------------------------------------------- ours

API_HINT = (
    "our capture API is not importable yet. bench_core codes against:\n"
    "  from detector.capture import read_packets   # read_packets(paths, chunk_packets=...)\n"
    "  from detector.flows import FlowTable        # FlowTable(idle_timeout=, active_timeout=)\n"
    "Run with --skip-ours to measure the floor and the peers only."
)


def import_ours(chunk: int | None = None) -> tuple[Callable[..., Any], type]:
    """(reader, FlowTable), or exit with a clear message.

    `reader(path)` iterates `read_packets([path], ...)` with the chunk size given
    under whichever keyword this version of the API takes (the contract says
    `chunk_packets`; an earlier draft named it `batch_packets`); None keeps the
    API's default.
    """
    sys.path.insert(0, str(REPO))
    try:
        from detector.capture import read_packets
        from detector.flows import FlowTable
    except Exception as exc:  # noqa: BLE001 - a half-written package can raise anything
        raise SystemExit(f"bench_core: {API_HINT}\n  ({type(exc).__name__}: {exc})") from exc
    kwargs: dict[str, Any] = {}
    if chunk is not None:
        params = inspect.signature(read_packets).parameters
        name = next((n for n in ("chunk_packets", "batch_packets") if n in params), None)
        if name is None:
            raise SystemExit(
                "bench_core: read_packets takes neither chunk_packets nor batch_packets"
            )
        kwargs[name] = chunk

    # Batches are consumed at once: let the reader reuse its arrays (as the
    # flows command does), else every batch pays fresh-page faults.
    if "reuse_batch" in inspect.signature(read_packets).parameters:
        kwargs["reuse_batch"] = True

    def reader(path: Path) -> Any:
        return read_packets([path], **kwargs)

    return reader, FlowTable


def our_command() -> list[str]:
    """The console script if installed, else `python -m detector` from this checkout."""
    exe = shutil.which("egress-detector")
    if exe:
        return [exe]
    return [sys.executable, "-m", "detector"]


def make_warmup_capture(capture: Path, truth: dict[str, Any] | None) -> Path:
    """A small capture of the same shape, so JIT warm-up compiles the same paths."""
    import gen_capture

    args = (truth or {}).get("args", {})
    path = Path(tempfile.gettempdir()) / f"bench-core-warmup-{os.getpid()}.pcap"
    gen_capture.generate(
        path,
        20_000,
        1_000,
        snaplen=args.get("snaplen", 128),
        full_payload=args.get("full_payload", False),
        seed=99,
    )
    return path


def measure_ours(
    capture: Path,
    truth: dict[str, Any] | None,
    threads: list[int],
    runs: int,
    chunk: int | None,
    cmd: list[str],
    rows_wanted: set[str],
) -> list[Row]:
    read_packets, FlowTable = import_ours(chunk)
    import numba

    warm = make_warmup_capture(capture, truth)
    rows: list[Row] = []

    def warm_up_decode() -> None:
        for b in read_packets(warm):
            len(b)

    def warm_up_flows() -> None:
        ft = FlowTable(idle_timeout=120.0, active_timeout=1800.0)
        for b in read_packets(warm):
            ft.ingest(b)
        ft.flush()
        ft.to_frame()

    # JIT compile (or cache load) outside any timing. The API is young: a failure
    # becomes an error row, so the floor and peer rows are still measured.
    broken: dict[str, str] = {}
    for key, warm_up in (("decode", warm_up_decode), ("flows", warm_up_flows)):
        if key in rows_wanted:
            try:
                warm_up()
            except Exception as exc:  # noqa: BLE001
                broken[key] = _short_error(exc)
    try:
        for t in threads:
            # main() set NUMBA_NUM_THREADS to the largest count before importing numba.
            numba.set_num_threads(min(t, int(os.environ.get("NUMBA_NUM_THREADS", t))))
            tag = f" [{t} thr]"
            jobs: list[tuple[str, str, str, Callable[[], Row]]] = [
                ("decode", "ours: decode (read_packets)", "in-process",
                 partial(_ours_decode, read_packets, capture, truth, runs, tag)),
                ("flows", "ours: decode + flow table", "in-process",
                 partial(_ours_flows, read_packets, FlowTable, capture, truth, runs, tag, t)),
                ("cmd", "ours: egress-detector flows", "whole-process",
                 partial(_ours_command, cmd, capture, truth, runs, t, tag)),
                ("scan", "ours: egress-detector scan", "whole-process",
                 partial(_ours_scan, cmd, capture, runs, t, tag)),
            ]  # fmt: skip
            for key, label, mode, job in jobs:
                if key not in rows_wanted:
                    continue
                if key in broken:
                    rows.append(Row(key, label + tag, mode, error=broken[key]))
                    continue
                # Read the capture again first: the compile above can take a
                # minute, and this machine pages out file pages idle that long.
                warm_page_cache(capture)
                try:
                    rows.append(job())
                except Exception as exc:  # noqa: BLE001
                    rows.append(Row(key, label + tag, mode, error=_short_error(exc)))
    finally:
        warm.unlink(missing_ok=True)
        Path(f"{warm}.json").unlink(missing_ok=True)
    return rows


def _short_error(exc: BaseException) -> str:
    """One line for the table: type and the last line of the message (numba's are long)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    for line in lines:  # numba puts the useful part (e.g. a NameError) first
        if "Error" in line:
            text = line
            break
    text = text.replace("\x1b[1m", "").replace("\x1b[0m", "")
    return f"ERROR {type(exc).__name__}: {text[:200]}"


Truth = dict[str, Any] | None


def _ours_decode(
    read_packets: Callable[..., Any], capture: Path, truth: Truth, runs: int, tag: str
) -> Row:
    row = Row("decode", "ours: decode (read_packets)" + tag, "in-process")

    def once() -> tuple[float, float, tuple[int, int, int]]:
        n = ok = wire = 0
        c0, t0 = time.process_time(), time.perf_counter()
        for b in read_packets(capture):
            n += len(b)
            ok += int((b.status == 0).sum())
            wire += int(b.wire_len.sum(dtype="uint64"))
        return time.perf_counter() - t0, time.process_time() - c0, (n, ok, wire)

    n, ok, wire = measure(row, runs, once)
    row.counted = n
    row.note = "incl. status==0 count and wire_len sum per batch"
    row.detail = {"decoded_ok": ok, "wire_bytes": wire}
    if truth:
        good = n == truth["packets"] and wire == truth["wire_bytes"] and ok == n
        row.check = "ok" if good else f"MISMATCH packets {n}/{truth['packets']} ok={ok}"
    return row


def _fused_counter() -> Callable[..., Any] | None:
    try:
        from detector.flows import count_flows
    except ImportError:
        return None
    return count_flows


def _ours_flows(
    read_packets: Callable[..., Any],
    flow_table: type,
    capture: Path,
    truth: Truth,
    runs: int,
    tag: str,
    threads: int = 1,
) -> Row:
    row = Row("flows", "ours: decode + flow table" + tag, "in-process")

    fused = _fused_counter()

    def once() -> tuple[float, float, tuple[int, int, float]]:
        c0, t0 = time.process_time(), time.perf_counter()
        if fused is not None:
            # The flows command's path: decode and count in one pass.
            # [N thr] is the flows command's --threads: 2 runs the decoder in a
            # second thread while this one counts.
            ft = fused([str(capture)], idle_timeout=120.0, active_timeout=1800.0,
                       threads=min(threads, 2))  # fmt: skip
        else:
            ft = flow_table(idle_timeout=120.0, active_timeout=1800.0)
            for b in read_packets(capture):
                ft.ingest(b)
            ft.flush()
        t1 = time.perf_counter()
        cpu = time.process_time() - c0
        cols = ft.columns() if hasattr(ft, "columns") else ft.to_frame()
        t_records = time.perf_counter() - t1
        n = len(cols["bidirectional_packets"])
        return t1 - t0, cpu, (n, int(cols["bidirectional_packets"].sum()), t_records)

    flows, pkts, t_records = measure(row, runs, once)
    row.flows, row.counted = flows, pkts
    row.note = (
        f"fused decode+count; flow records built after: +{t_records:.2f} s (not in rate)"
        if fused is not None
        else f"batches then ingest; records +{t_records:.2f} s"
    )
    if truth:
        want = truth["flows_with_timeouts"]["flows"]
        good = flows == want and pkts == truth["packets"]
        row.check = "ok" if good else f"MISMATCH flows {flows}/{want} packets {pkts}"
    return row


def _ours_command(
    cmd: list[str], capture: Path, truth: Truth, runs: int, threads: int, tag: str
) -> Row:
    import pyarrow.parquet as pq
    from peers import run_timed

    row = Row("cmd", "ours: egress-detector flows" + tag, "whole-process")
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flows.parquet"
        full = [*cmd, "flows", str(capture), "-o", str(out), "--threads", str(min(threads, 2))]
        first = run_timed(full, env=env)  # may compile and write numba's cache
        if first.returncode != 0:
            row.error = f"exit {first.returncode}: {first.stderr.strip()[-300:]}"
            return row
        rss: list[float] = []

        def once() -> tuple[float, float, None]:
            t = run_timed(full, env=env)
            if t.returncode != 0:
                raise RuntimeError(t.stderr[-500:])
            rss.append(t.maxrss_kib / 1024)
            return t.seconds, t.cpu_seconds, None

        measure(row, runs, once)
        table = pq.read_table(out, columns=["bidirectional_packets"])
        row.flows = table.num_rows
        row.counted = int(table.column("bidirectional_packets").to_numpy().sum())
    row.maxrss_mib = max(rss)
    row.note = f"first run {first.seconds:.1f} s (JIT/cache), NUMBA_NUM_THREADS={threads}"
    row.detail = {"command": " ".join(full[:-4] + ["flows", "CAPTURE", "-o", "OUT"])}
    if truth:
        want = truth["flows_with_timeouts"]["flows"]
        good = row.flows == want and row.counted == truth["packets"]
        row.check = "ok" if good else f"MISMATCH flows {row.flows}/{want} packets {row.counted}"
    return row


def _ours_scan(cmd: list[str], capture: Path, runs: int, threads: int, tag: str) -> Row:
    """The whole scan: decode, flows, per-minute activity, features, the five
    rules, alerts as JSON lines (default policy: RFC 1918 internal)."""
    from peers import run_timed

    row = Row("scan", "ours: egress-detector scan" + tag, "whole-process")
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "alerts.jsonl"
        full = [*cmd, "scan", "-q", str(capture), "--format", "jsonl", "-o", str(out),
                "--threads", str(min(threads, 2))]  # fmt: skip
        first = run_timed(full, env=env)
        if first.returncode not in (0, 1):  # 1 = alerts raised
            row.error = f"exit {first.returncode}: {first.stderr.strip()[-300:]}"
            return row
        rss: list[float] = []

        def once() -> tuple[float, float, None]:
            t = run_timed(full, env=env)
            if t.returncode not in (0, 1):
                raise RuntimeError(t.stderr[-500:])
            rss.append(t.maxrss_kib / 1024)
            return t.seconds, t.cpu_seconds, None

        measure(row, runs, once)
        alerts = len(out.read_text().splitlines())
    row.maxrss_mib = max(rss)
    row.note = f"{alerts} alerts; first run {first.seconds:.1f} s (JIT/cache)"
    return row


# -------------------------------------------------------------------------- peers


def measure_peers(
    capture: Path,
    truth: dict[str, Any] | None,
    names: list[str],
    runs: int,
    scapy_prefix: int,
    nfstream_meters: int | None,
) -> list[Row]:
    import peers

    rows: list[Row] = []
    for name in names:
        peer = peers.PEERS[name]
        row = Row(name, peer.label, peer.mode, note=peer.note)
        why = peers.available(name)
        if why:
            row.error = f"skipped: {why}"
            rows.append(row)
            continue
        kwargs: dict[str, Any] = {}
        if name == "scapy":
            kwargs["prefix"] = scapy_prefix
        if name == "nfstream":
            kwargs["n_meters"] = nfstream_meters
        try:
            if peer.mode == "in-process":
                peer.run(capture, **kwargs)  # warm-up: JIT compile, lazy imports, first faults

            def once(peer: Any = peer, kwargs: dict[str, Any] = kwargs) -> tuple[float, float, Any]:
                r = peer.run(capture, **kwargs)
                return r.seconds, r.detail.get("cpu_seconds", float("nan")), r

            res = measure(row, runs, once)
        except Exception as exc:  # noqa: BLE001 - one broken peer must not stop the table
            row.error = _short_error(exc)
            rows.append(row)
            continue
        row.counted, row.flows, row.detail = res.packets, res.flows, dict(res.detail)
        row.maxrss_mib = row.detail.pop("maxrss_mib", None)
        row.detail.pop("cpu_seconds", None)
        row.packets_in = res.packets if peer.prefix else None  # else: the file's count
        if truth:
            row.check = _peer_check(name, res, truth)
        rows.append(row)
    return rows


def _peer_check(name: str, res: Any, truth: dict[str, Any]) -> str:
    """Compare a peer's counts with the generator's truth; explain known differences."""
    if name.startswith("walk"):
        good = res.packets == truth["packets"] and res.detail["wire_bytes"] == truth["wire_bytes"]
        return "ok" if good else f"MISMATCH {res.packets} packets"
    if name == "dpkt":
        good = res.packets == truth["packets"] and res.flows == truth["flows"]
        return "ok (keys)" if good else f"flows {res.flows}/{truth['flows']} keys"
    if name == "tshark":
        good = (
            res.flows == truth["flows_tcp"] and res.detail["conv_packets"] == truth["packets_tcp"]
        )
        return "ok (tcp)" if good else f"tcp convs {res.flows}/{truth['flows_tcp']}"
    if name == "nfstream":
        want = truth["flows_with_timeouts"]["flows"]
        missing = truth["packets"] - res.packets
        v6 = res.detail.get("by_ip_version", {}).get("ipv6", {}).get("packets", 0)
        return (
            f"packets -{missing:,} (ipv6 {v6:,}/{truth['packets_ipv6']:,}), "
            f"flows {res.flows:,}/{want:,}"
        )
    return ""


# -------------------------------------------------------------------------- table


def print_table(rows: list[Row], capture: Path, truth: dict[str, Any] | None, args: Any) -> None:
    size = capture.stat().st_size
    total = truth["packets"] if truth else None
    walks = [r for r in rows if r.key.startswith("walk") and r.counted and r.seconds]
    if total is None and walks:
        total = walks[0].counted
    for r in rows:
        if r.packets_in is None and r.seconds:
            r.packets_in = total
    nf = next((r.pps() for r in rows if r.key == "nfstream" and r.pps()), None)
    floor = max((r.pps() or 0.0 for r in walks), default=0.0) or None

    print(f"\n# capture: {capture} ({size / 1e6:,.1f} MB, {total:,} packets)")
    if truth:
        t = truth
        print(
            f"# truth: {t['flows']:,} keys, {t['flows_with_timeouts']['flows']:,} flows with"
            f" timeouts, {t['packets_ipv6']:,} IPv6 packets ({t['packets_truncated_ipv6']:,}"
            f" truncated), snaplen {'full' if t['args']['full_payload'] else t['args']['snaplen']}"
        )
    env = environment()
    print("# " + ", ".join(f"{k} {v}" for k, v in env.items()))
    print(f"# medians of {args.runs} run(s); x nfstream = pps / nfstream pps;"
          " x floor = pps / the faster numba record walk's pps;\n# cpu s = user + system CPU"
          " of all threads/processes (pkt/cpu-s holds up when other processes compete)\n")  # fmt: skip
    head = (
        f"{'row':44s} {'mode':13s} {'seconds':>9s} {'packets/s':>13s} {'MB/s':>9s}"
        f" {'x nfstream':>10s} {'x floor':>8s} {'cpu s':>8s} {'pkt/cpu-s':>12s}"
        f" {'flows':>9s} {'RSS MiB':>8s}  check / note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.error:
            print(f"{r.label:44s} {r.mode:13s} {r.error}")
            continue
        pps = r.pps()
        cpu_pps = r.pps_cpu() if r.cpu_seconds == r.cpu_seconds else None  # NaN: unknown
        mbs = size / 1e6 / r.seconds if r.seconds else None
        if r.key == "scapy" and pps and total:
            mbs = pps * size / total / 1e6  # prefix: bytes scale with packets
        cols = [
            f"{r.label:44s}",
            f"{r.mode:13s}",
            f"{r.seconds:9.3f}" if r.seconds is not None else f"{'-':>9s}",
            f"{pps:13,.0f}" if pps else f"{'-':>13s}",
            f"{mbs:9,.1f}" if mbs else f"{'-':>9s}",
            f"{pps / nf:10.2f}" if pps and nf else f"{'-':>10s}",
            f"{pps / floor:8.3f}" if pps and floor else f"{'-':>8s}",
            f"{r.cpu_seconds:8.3f}" if cpu_pps else f"{'-':>8s}",
            f"{cpu_pps:12,.0f}" if cpu_pps else f"{'-':>12s}",
            f"{r.flows:9,d}" if r.flows is not None else f"{'-':>9s}",
            f"{r.maxrss_mib:8,.0f}" if r.maxrss_mib else f"{'-':>8s}",
        ]
        note = "; ".join(x for x in (r.check, r.note) if x)
        print(" ".join(cols) + "  " + note)
    cmd_rows = [r for r in rows if r.key == "cmd" and r.maxrss_mib]
    if cmd_rows:
        print()
    for r in cmd_rows:
        print(f"# peak RSS of {r.label.split(': ', 1)[1]}: {r.maxrss_mib:,.0f} MiB")
    nf_row = next((r for r in rows if r.key == "nfstream" and r.seconds and not r.error), None)
    for r in rows:
        if nf_row is None or r.key not in ("cmd", "scan") or not r.seconds or r.error:
            continue
        assert nf_row.seconds is not None
        cpu = ""
        if r.cpu_seconds and nf_row.cpu_seconds and nf_row.cpu_seconds == nf_row.cpu_seconds:
            cpu = (
                f", CPU {nf_row.cpu_seconds:,.1f} / {r.cpu_seconds:.2f} s ="
                f" {nf_row.cpu_seconds / r.cpu_seconds:.1f}x"
            )
        print(
            f"# {r.label.split(': ', 1)[1]} against nfstream in this run: wall"
            f" {nf_row.seconds:,.1f} / {r.seconds:.2f} s = {nf_row.seconds / r.seconds:.1f}x{cpu}"
        )


# --------------------------------------------------------------------------- main

ALL_ROWS = [
    "cat",
    "walk",
    "walk-populate",
    "decode",
    "flows",
    "cmd",
    "scan",
    "nfstream",
    "dpkt",
    "scapy",
    "tshark",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Capture-core benchmark.", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("capture", nargs="?", type=Path, help="pcap to use (default: generate)")
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--snaplen", type=int, default=128)
    ap.add_argument("--full-payload", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="200k packets, 1 run, small prefix")
    ap.add_argument("--runs", type=int, default=3, help="runs per row (median reported)")
    ap.add_argument(
        "--threads",
        default=None,
        help="comma-separated numba thread counts for our rows, e.g. 1,2 (default: 1,<cores>)",
    )
    ap.add_argument(
        "--chunk-packets", type=int, default=None, help="packets per batch (default: the API's)"
    )
    ap.add_argument("--rows", default=",".join(ALL_ROWS), help="subset of: " + ",".join(ALL_ROWS))
    ap.add_argument("--skip-ours", action="store_true", help="floor and peers only")
    ap.add_argument("--scapy-prefix", type=int, default=20_000)
    ap.add_argument("--nfstream-meters", type=int, default=None, help="default: nfstream's")
    ap.add_argument("--cmd", default=None, help="our command (default: egress-detector)")
    ap.add_argument(
        "--peers-python",
        default=None,
        help="interpreter for nfstream and dpkt, e.g. a venv of their own "
        "(default: $BENCH_PEERS_PYTHON, else this one)",
    )
    ap.add_argument(
        "--peer-runs",
        type=int,
        default=None,
        help="runs of the nfstream, dpkt, scapy and tshark rows (default: --runs; "
        "nfstream takes about 5 minutes on the 20M capture)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.packets, args.flows = 200_000, 10_000
        args.runs = 1
        args.scapy_prefix = min(args.scapy_prefix, 5_000)
    cores = os.cpu_count() or 1
    spec = args.threads or ",".join(dict.fromkeys(["1", str(cores)]))
    args.thread_list = [int(x) for x in spec.split(",") if x]
    unknown = set(args.rows.split(",")) - set(ALL_ROWS)
    if unknown:
        ap.error(f"unknown rows: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import peers

    peers.set_peers_python(args.peers_python)
    # Before numba is imported anywhere in this process (see the note at the top).
    os.environ["NUMBA_NUM_THREADS"] = str(max(args.thread_list))
    wanted = set(args.rows.split(","))
    ours_wanted = wanted & {"decode", "flows", "cmd", "scan"}
    if ours_wanted and not args.skip_ours:
        import_ours()  # fail fast, before generating or running peers

    capture = ensure_capture(args)
    truth = load_truth(capture)
    warm_page_cache(capture)
    watch = CpuWatch()
    probe_before = compute_probe()

    rows = measure_peers(capture, truth, [n for n in ("cat", "walk", "walk-populate") if n in wanted], args.runs,
                         args.scapy_prefix, args.nfstream_meters)  # fmt: skip
    if ours_wanted and not args.skip_ours:
        cmd = args.cmd.split() if args.cmd else our_command()
        rows += measure_ours(
            capture, truth, args.thread_list, args.runs, args.chunk_packets, cmd, ours_wanted
        )
    peer_names = [n for n in ("nfstream", "dpkt", "scapy", "tshark") if n in wanted]
    rows += measure_peers(
        capture, truth, peer_names, args.peer_runs or args.runs, args.scapy_prefix,
        args.nfstream_meters,
    )  # fmt: skip
    print_table(rows, capture, truth, args)
    probe_after = compute_probe()
    print(
        f"# compute probe (hash-and-count loop in L2, see compute_probe): "
        f"{probe_before / 1e6:.0f} M steps/s before the rows, {probe_after / 1e6:.0f} M after"
    )
    others = watch.others_cores()
    print(f"# other processes kept {others:.2f} of {os.cpu_count()} cores busy during the run")
    if others > 0.2:
        print("# WARNING: the machine was not idle: figures are low and noisy", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "capture": str(capture),
                    "truth": truth,
                    "environment": environment(),
                    "compute_probe_steps_per_s": [probe_before, probe_after],
                    "rows": [{**r.__dict__, "packets_per_s": r.pps()} for r in rows],
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        sys.exit(f"bench_core: {exc}")
