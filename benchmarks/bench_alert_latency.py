#!/usr/bin/env python3
"""Alert latency of a live sensor on a real bridge: per rule, the time from the
packet on the wire to the alert written (issue 22, section 2: within 2 s).

The lab of tests/test_live.py (network namespaces: an isolated host 10.8.40.31
and an outside host on a bridge, the isolated host's port mirrored to the
SPAN port ``span1``) runs ``egress-detector live -i span1`` with its default
10-minute windows, writing JSON lines to standard output; this script reads
them as they come. The isolated host then does, one after the other, each to
an outside address of its own (so each is new to the sensor):

* ``isolated-egress``: a 2,000-byte upload to port 443;
* ``mail-egress``: 5,000 bytes of "mail" to port 587 (an isolated host sends no mail);
* ``p2p``: a BitTorrent handshake (BEP 3) to port 6881;
* ``im-app``: a DNS question for ``obs.line-apps.com`` (LINE);
* ``offhours-bulk-egress``: 3.5 MB to port 443, the policy's threshold 3 MB
  (every day of the run is a holiday: off hours);
* ``bulk-upload-new-destination``: 4.5 MB to a new address, threshold 4 MB.

For each rule: from the first packet of its traffic on the wire (the alert's
``event.start``, the kernel's time stamp of that packet: same clock as this
script's) to the moment its first document was read; for the two volume
rules also from the moment the client had handed its last byte to its
socket (the threshold is crossed at or before it: an upper bound of the
latency from the crossing). Needs root and ``ip netns``. Run:

    python benchmarks/bench_alert_latency.py --runs 3

What the looks cost a worker (``--look-cost CAPTURE``, no root): every rule's
look on the packet over a capture's packets in batches of the ring's size
(32,768 rows, what a busy link fills) and of 4,096, with the bundled sample
policy (isolated networks, so every look runs) and the generated clients
inside; CPU seconds per rule, packets per CPU-second of all of them, and
what the running totals hold at the end:

    python benchmarks/bench_alert_latency.py --look-cost benchmarks/data/cap2m.pcap

What an analysis asked for by a sighting costs (``--analysis-cost CAPTURE``,
no root; the sample policy with the generated clients, 10/8 and fc00::/7,
inside): a whole analysis, over all the history the sensor keeps, against the
one a sighting asks for (one host, the busiest). The
capture's packets are counted into a live engine's tables (as a worker would,
the engine's clock at the last packet), then one analysis is timed, three
times (wall seconds):

    python benchmarks/bench_alert_latency.py --analysis-cost benchmarks/data/cap2m.pcap
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_live as lab  # noqa: E402  (the lab's helpers: tests/test_live.py)

SERVER = """
import socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", int(sys.argv[1])))
listener.listen(8)
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    while conn.recv(1 << 16):
        pass
    conn.close()
"""

# Sends the bytes of argv[3] (hex) repeated to argv[4] bytes; prints the wall time at
# which the last byte was handed to the socket.
CLIENT = """
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
head, size = bytes.fromhex(sys.argv[3]), int(sys.argv[4])
conn.sendall(head + b"u" * max(0, size - len(head)))
print(time.time(), flush=True)
conn.shutdown(socket.SHUT_WR)
while conn.recv(1 << 16):
    pass
"""

DNS_CLIENT = """
import socket, sys, time
# A DNS question (RFC 1035): id, flags RD, one question, obs.line-apps.com A IN.
name = b"".join(bytes([len(p)]) + p.encode() for p in "obs.line-apps.com".split(".")) + b"\\0"
query = bytes.fromhex("123401000001000000000000") + name + bytes.fromhex("00010001")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(query, (sys.argv[1], 53))
print(time.time(), flush=True)
"""

HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + b"i" * 20 + b"p" * 20  # BEP 3

POLICY_RULES = """
[rules.offhours-bulk-egress]
min_bytes = 3_000_000

[rules.bulk-upload-new-destination]
min_bytes = 4_000_000
"""

# rule, port, payload head, bytes; each to its own outside address (lab.MORE_OUT)
SCENARIOS = [
    ("isolated-egress", 443, b"", 2_000),
    ("mail-egress", 587, b"EHLO host\r\n", 5_000),
    ("p2p", 6881, HANDSHAKE, len(HANDSHAKE)),
    ("im-app", 53, b"", 0),
    ("offhours-bulk-egress", 443, b"", 3_500_000),
    ("bulk-upload-new-destination", 443, b"", 4_500_000),
]
VOLUME = {"offhours-bulk-egress", "bulk-upload-new-destination"}


def policy_text() -> str:
    # The lab's (holidays around today, the isolated network) without its own
    # offhours threshold, and ours.
    text = lab.policy_text().replace("[rules.offhours-bulk-egress]\nmin_bytes = 3_000_000\n", "")
    return text + POLICY_RULES


def one_run(workdir: Path) -> dict[str, dict[str, float]]:
    policy = workdir / "policy.toml"
    policy.write_text(policy_text())
    servers = [
        subprocess.Popen(
            lab.in_ns(lab.DST, sys.executable, "-c", SERVER, str(port)),
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for port in (443, 587, 6881)
    ]
    for server in servers:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    live = subprocess.Popen(
        lab.in_ns(lab.MON, sys.executable, "-m", "detector", "live", "-i", "span1", "--policy",
                  str(policy), "--format", "jsonl", "--bpf", lab.FILTER),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert live.stdout is not None and live.stderr is not None
    seen: dict[str, float] = {}  # rule → when its first document was read
    docs: dict[str, dict] = {}
    sent_at: dict[str, float] = {}
    buffer = b""

    def read_alerts(until: float) -> None:
        nonlocal buffer
        while True:
            left = until - time.time()
            if left <= 0:
                return
            ready, _, _ = select.select([live.stdout], [], [], left)
            if not ready:
                return
            chunk = os.read(live.stdout.fileno(), 1 << 16)
            now = time.time()
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                doc = json.loads(line)
                rule = doc["rule"]["id"]
                if rule not in seen and doc["event"]["action"] == "alert-raised":
                    seen[rule], docs[rule] = now, doc

    try:
        said = b""
        while b"capturing on" not in said:
            line = live.stderr.readline()
            assert line, said
            said += line
        for i, (rule, port, head, size) in enumerate(SCENARIOS):
            to = lab.MORE_OUT[i]
            if rule == "im-app":
                code = [sys.executable, "-c", DNS_CLIENT, to]
            else:
                code = [sys.executable, "-c", CLIENT, to, str(port), head.hex(), str(size)]
            done = subprocess.run(lab.in_ns(lab.SRC, *code), capture_output=True, text=True,
                                  timeout=60, check=True)  # fmt: skip
            sent_at[rule] = float(done.stdout.split()[0])
            read_alerts(time.time() + 5)  # well past the 2 s the issue asks for
            if rule not in seen:
                read_alerts(time.time() + 30)
    finally:
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=120)
        for server in servers:
            server.kill()
            server.wait()
    figures: dict[str, dict[str, float]] = {}
    for rule, _, _, _ in SCENARIOS:
        if rule not in seen:
            figures[rule] = {}
            continue
        figures[rule] = {"from_first_packet": seen[rule] - _start_seconds(docs[rule])}
        if rule in VOLUME:
            figures[rule]["from_last_byte_sent"] = seen[rule] - sent_at[rule]
    return figures


def _start_seconds(doc: dict) -> float:
    """event.start (ISO 8601 with milliseconds and offset) as UNIX seconds."""
    import datetime as dt

    return dt.datetime.fromisoformat(doc["event"]["start"]).timestamp()


def busy_policy():  # noqa: ANN201
    """The bundled sample's policy with the generator's clients inside (10/8 and
    the ULA they use): every conversation has an internal host, as on a busy
    site's egress link."""
    from detector.policy import parse_policy

    text = (ROOT / "captures" / "sample-policy.toml").read_text()
    text = text.replace('internal = ["10.8.0.0/16"]', 'internal = ["10.0.0.0/8", "fc00::/7"]')
    assert "10.0.0.0/8" in text
    return parse_policy(text, "sample-policy.toml (clients in 10/8)")


def look_cost(capture: Path, limit: int | None = None) -> None:
    from detector.capture import read_packets
    from detector.capture.batch import PacketBatch
    from detector.detect.packets import PacketContext, RunningTotals
    from detector.pipelines.live import WATCHING

    policy = busy_policy()
    batches, packets = [], 0
    for batch in read_packets([capture]):
        batches.append(batch.copy())
        packets += len(batch)
        if limit is not None and packets >= limit:
            break
    for rows in (32_768, 4_096):
        cut = [PacketBatch(*(a[i : i + rows] for a in b.arrays()))
               for b in batches for i in range(0, len(b), rows)]  # fmt: skip
        totals, memo = RunningTotals(), {}
        cost = {d.rule_id: 0.0 for d in WATCHING}
        for batch in cut:
            packets_seen = PacketContext(policy, batch, None, totals, memo)
            for detection in WATCHING:
                assert detection.on_packets is not None
                began = time.process_time()
                list(detection.on_packets(packets_seen))
                cost[detection.rule_id] += time.process_time() - began
        total = sum(cost.values())
        held = ", ".join(f"{name} {count:,}" for name, count in totals.keys_held().items())
        size = totals.memory_bytes()
        print(f"  running totals at the end: {held} keys, about {size / 2**20:.1f} MiB")
        each = ", ".join(f"{rule} {seconds:.3f}" for rule, seconds in cost.items())
        print(f"batches of {rows:,}: {packets:,} packets, {total:.2f} CPU-s, "
              f"{packets / total / 1e6:.2f} M packets per CPU-second ({each})")  # fmt: skip


def analysis_cost(capture: Path) -> None:
    from detector.capture import read_packets
    from detector.capture.live import SourceStats
    from detector.pipelines.live import LiveDetector, LiveOptions

    class Clock:  # no packets of its own: they are counted in below
        name, batch_rows, finished, now = "hand", 1024, False, 0

        def clock_ns(self) -> int:
            return self.now

        def read(self, batch, timeout, inspector=None) -> int:  # noqa: ANN001
            return 0

        def wait(self, timeout: float) -> None:
            pass

        def stats(self) -> SourceStats:
            return SourceStats()

        def close(self) -> None:
            pass

    policy = busy_policy()
    clock = Clock()
    engine = LiveDetector([clock], policy, LiveOptions(), emit=lambda alerts: None)
    worker, packets = engine.workers[0], 0
    for batch in read_packets([capture]):
        worker.flows.ingest(batch)
        worker.activity.ingest(batch)
        packets += len(batch)
        clock.now = int(batch.ts_ns[-1])
    rows = worker.activity.merged_columns().shape[1]
    for run in range(3):
        began = time.perf_counter()
        engine._analyse(final=False)
        print(f"analysis {run + 1}: {time.perf_counter() - began:.2f} s over {packets:,} packets "
              f"({rows:,} conversation-minutes)")  # fmt: skip
    # What a sighting asks for: the analysis of one host, the busiest internal one.
    columns = worker.activity.columns()
    inside = policy.internal.contains(columns["a_hi"], columns["a_lo"])
    pairs, counts = np.unique(np.stack([columns["a_hi"][inside], columns["a_lo"][inside]]),
                              axis=1, return_counts=True)  # fmt: skip
    busiest = pairs[:, int(np.argmax(counts))]
    host = (int(busiest[0]), int(busiest[1]))
    mine = worker.activity.with_hosts([host]).merged_columns().shape[1]
    for run in range(3):
        began = time.perf_counter()
        engine._analyse(final=False, sighted={"isolated-egress": {host}})
        print(f"one host's analysis {run + 1}: {time.perf_counter() - began:.2f} s "
              f"({mine:,} of the {rows:,} conversation-minutes)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--look-cost", type=Path, metavar="CAPTURE",
                        help="time the rules' looks on this capture's packets instead")  # fmt: skip
    parser.add_argument("--analysis-cost", type=Path, metavar="CAPTURE",
                        help="time a live analysis over this capture's traffic instead")  # fmt: skip
    args = parser.parse_args()
    if args.look_cost is not None:
        look_cost(args.look_cost)
        return 0
    if args.analysis_cost is not None:
        analysis_cost(args.analysis_cost)
        return 0
    if os.geteuid() != 0:
        print("bench_alert_latency: needs root (network namespaces)", file=sys.stderr)
        return 2
    results: list[dict[str, dict[str, float]]] = []
    with lab.bridge_lab(), tempfile.TemporaryDirectory(prefix="ed-latency-") as tmp:
        for run in range(args.runs):
            figures = one_run(Path(tmp))
            results.append(figures)
            print(f"run {run + 1}: " + json.dumps(figures), file=sys.stderr)
    print(f"{'rule':<30} {'from first packet (s)':<34} {'from last byte sent (s)':<24}")
    for rule, _, _, _ in SCENARIOS:
        firsts = [r[rule]["from_first_packet"] for r in results if r[rule]]
        lasts = [r[rule]["from_last_byte_sent"] for r in results
                 if "from_last_byte_sent" in r[rule]]  # fmt: skip
        missing = sum(1 for r in results if not r[rule])

        def shown(values: list[float]) -> str:
            if not values:
                return "-"
            each = " / ".join(f"{v:.2f}" for v in values)
            return f"median {statistics.median(values):.2f} ({each})"

        note = f"  ({missing} run(s) without the alert within 35 s)" if missing else ""
        print(f"{rule:<30} {shown(firsts):<34} {shown(lasts):<24}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
