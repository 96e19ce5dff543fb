"""A benign fortnight and a careful adversary's day on real network stacks
(issue 20, "Measured, not hoped"): every session is run for real between
network namespaces (tests/netlab.py: veth pairs on one bridge, a mirror port
recorded by tcpdump, documentation addresses outside), then laid onto its
scheduled time of a fortnight; the first week trains the model, the second
week and the adversary's days are scanned with it (about 3 minutes).

    sudo python benchmarks/replay_stacks.py [--seed 1] [--attack-days 4] [--out DIR]

The site (Asia/Taipei, Mon-Fri 08:30-17:30): five workstations
10.8.10.11-15, a backup server 10.8.10.20, a web server 10.8.10.30 that is
up all night, the site's DNS resolver 10.8.10.250 (listed in
quiet-protocol-volume's ``exempt``, as a site lists its resolver), and on
the isolated segment 10.8.40.0/24 a computer 10.8.40.31 and its file server
10.8.40.5 (``isolated_peers``). Outside, one namespace holds every address:
web sites 203.0.113.10-29, an update server 198.51.100.80, the allowlisted
backup target 198.51.100.25, time servers 198.51.100.123-124, the upstream
resolver 203.0.113.53, a monitoring service 203.0.113.99, and the
adversary's never-seen addresses in 192.0.2.0/24.

Sessions (sizes and times drawn with the seed):

* browsing: on working days each workstation arrives 07:45-09:30 and leaves
  17:00-19:00 and, every 4-25 minutes, asks the resolver for a site's name
  (a real query the resolver forwards upstream) and fetches a page (1-20 kB
  up, 30 kB-3 MB down over tcp/443); one in six is left on some nights
  and weekends with a fetch an hour;
* updates: each workstation downloads 20-150 MB from the update server one
  day a week; the servers fetch 20-300 MB at night one night in four (the
  big night download);
* the nightly backup: 60-200 MB from the backup server to the allowlisted
  target over tcp/873 between 01:00 and 02:30, 20-40 minutes;
* NTP: the servers and the resolver ask a time server every 17-34 minutes,
  day and night (udp/123, 48 bytes each way);
* the server up all night: the monitoring service fetches 5-20 kB from it
  every 5-10 minutes, around the clock;
* the isolated computer works with its file server in business hours.

The adversary's days (every other day after the fortnight, on top of their
benign traffic), the behaviours of issue 20's table, each day's parameters
drawn afresh: low and slow (1-4 MB to one new address every 25-60 minutes
from about 22:00 to 07:00), spread (5-20 MB over 4 or 8 new addresses in 20
minutes at night), a DNS tunnel (0.3-1.5 MB of TXT queries with 60-letter
labels to one zone through the resolver, 45 minutes), an ICMP echo tunnel
(0.5-12 MB at 04:00), an upload by day (10-60 MB to a never-seen address),
a pivot (the isolated computer sends 5-30 MB to a workstation over SMB,
which sends 90-110 % of it outside 10 minutes later), and a udp/443 upload
(3-15 MB) from the backup server during its backup; the traps are that
night's backup and a 300 MB night download.

Each session runs once, in turn, as fast as the stacks go (its real
packets, its real sizes); tcpdump records the mirror (headers only, 128
bytes, nanosecond times). A session's packets are those recorded from its
start to the next session's start; they are laid onto the session's
scheduled start with their offsets stretched to its scheduled duration (in
order), and each day's packets, sorted by time (a session's own order
kept), are written to one pcap per day. An incident is caught when an alert
names its host (for the pivot: either host) and overlaps its span (+- one
window); every other alert on the second week and on the adversary's days is
a false alert (always-on left out, as in eval_model.py), counted per 1,000
benign host-days (hosts with traffic, per day).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from netlab import bridge_lab, in_ns, missing_tools, recording  # noqa: E402

from gen_cases import write_pcap  # noqa: E402

ZONE = ZoneInfo("Asia/Taipei")
S = 1_000_000_000
MIN = 60 * S
POLICY = """
[site]
name = "replay-stacks"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]
isolated_peers = ["10.8.40.5/32"]

[allowlist]
destinations = ["198.51.100.25/32"]

[rules.quiet-protocol-volume]
exempt = ["10.8.10.250/32"]
"""
PID = os.getpid()
WORKSTATIONS = {f"rs-ws{k}-{PID}": f"10.8.10.{10 + k}" for k in range(1, 6)}
BACKUP, SERVER, RESOLVER = "10.8.10.20", "10.8.10.30", "10.8.10.250"
ISO, FILES = "10.8.40.31", "10.8.40.5"
HOSTS = {
    **WORKSTATIONS,
    f"rs-backup-{PID}": BACKUP,
    f"rs-server-{PID}": SERVER,
    f"rs-dns-{PID}": RESOLVER,
    f"rs-iso-{PID}": ISO,
    f"rs-files-{PID}": FILES,
}
NS_OF = {address: ns for ns, address in HOSTS.items()}
OUT_NS, MON = f"rs-out-{PID}", f"rs-mon-{PID}"
WEB = [f"203.0.113.{k}" for k in range(10, 30)]
UPDATES, BACKUP_TARGET, UPSTREAM, MONITOR = (
    "198.51.100.80",
    "198.51.100.25",
    "203.0.113.53",
    "203.0.113.99",
)
NTP = ["198.51.100.123", "198.51.100.124"]
NEW = {"slow": "192.0.2.10", "spread": [f"192.0.2.{20 + k}" for k in range(8)],
       "icmp": "192.0.2.30", "day": "192.0.2.40", "pivot": "192.0.2.50", "udp": "192.0.2.60"}  # fmt: skip
OUTSIDE = [*WEB, UPDATES, BACKUP_TARGET, UPSTREAM, MONITOR, *NTP, NEW["slow"], *NEW["spread"],
           NEW["icmp"], NEW["day"], NEW["pivot"], NEW["udp"]]  # fmt: skip

# One agent per namespace: listeners for the services it offers, and the
# sessions it is told to run (a JSON line each on stdin; "done" when over).
AGENT = r"""
import json, socket, struct, sys, threading, time
role = sys.argv[1]

def serve_tcp(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()

def answer(conn):
    head = b""
    while len(head) < 8:
        chunk = conn.recv(8 - len(head))
        if not chunk:
            return
        head += chunk
    down = struct.unpack("!Q", head)[0]
    while conn.recv(1 << 16):
        pass
    block = b"d" * 65536
    while down > 0:
        conn.sendall(block[:min(down, 65536)])
        down -= 65536
    conn.close()

def serve_udp(port, upstream):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if upstream else None
    if out is not None:
        out.settimeout(2)
    while True:
        data, peer = sock.recvfrom(65535)
        if port == 123:
            sock.sendto(b"\x24" + b"\0" * 47, peer)
        elif port == 53 and out is not None:  # the site's resolver: asks upstream
            out.sendto(data, (upstream, 53))
            try:
                reply, _ = out.recvfrom(65535)
            except OSError:
                continue
            sock.sendto(reply, peer)
        elif port == 53:  # the upstream resolver: one TXT answer of 40 bytes
            flags = struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, 41) + b"\x28" + b"a" * 40
            sock.sendto(data[:2] + flags + data[12:] + answer, peer)

def query(name, qtype):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", int(time.time() * 1000) & 0xFFFF, 0x0100, 1, 0, 0, 0) \
        + labels + struct.pack("!HH", qtype, 1)

def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

def run(cmd):
    op = cmd["op"]
    if op == "tcp":
        source = (cmd["src"], 0) if cmd.get("src") else None
        conn = socket.create_connection((cmd["dst"], cmd["port"]), timeout=60,
                                        source_address=source)
        conn.sendall(struct.pack("!Q", cmd["down"]))
        left, block = cmd["up"], b"u" * 65536
        while left > 0:
            conn.sendall(block[:min(left, 65536)])
            left -= 65536
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(1 << 16):
            pass
        conn.close()
    elif op == "dns":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        for name in cmd["names"]:
            sock.sendto(query(name, cmd.get("qtype", 1)), (cmd["dst"], 53))
            try:
                sock.recvfrom(65535)
            except OSError:
                pass
    elif op == "ntp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        sock.sendto(b"\x23" + b"\0" * 47, (cmd["dst"], 123))
        try:
            sock.recvfrom(512)
        except OSError:
            pass
    elif op == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(cmd["count"]):
            sock.sendto(b"q" * cmd["size"], (cmd["dst"], cmd["port"]))
            if i % 50 == 49:
                time.sleep(0.002)
    elif op == "ping":
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        payload = b"p" * cmd["size"]
        for seq in range(cmd["count"]):
            header = struct.pack("!BBHHH", 8, 0, 0, 7, seq & 0xFFFF)
            header = struct.pack("!BBHHH", 8, 0, checksum(header + payload), 7, seq & 0xFFFF)
            sock.sendto(header + payload, (cmd["dst"], 0))
            if seq % 20 == 19:
                time.sleep(0.002)

for port in (80, 443, 445, 873, 8443):
    threading.Thread(target=serve_tcp, args=(port,), daemon=True).start()
for port in (53, 123):
    upstream = sys.argv[2] if role == "resolver" and port == 53 else None
    threading.Thread(target=serve_udp, args=(port, upstream), daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    try:
        run(json.loads(line))
        print("done", flush=True)
    except Exception as exc:
        print("failed " + repr(exc), flush=True)
"""


@dataclass
class Session:
    """One session: who runs it (its address), what (an agent command), and
    where it goes in the fortnight (local start, duration; None: as it ran)."""

    host: str
    command: dict
    start_ns: int
    seconds: float | None = None
    incident: str = ""  # the adversary's behaviour it belongs to ("": benign)


@dataclass
class Plan:
    sessions: list[Session] = field(default_factory=list)
    incidents: dict[str, tuple[list[str], int, int]] = field(default_factory=dict)
    described: dict[str, str] = field(default_factory=dict)  # each incident's parameters

    def add(self, host: str, command: dict, start: int, seconds: float | None = None,
            incident: str = "") -> None:  # fmt: skip
        self.sessions.append(Session(host, command, start, seconds, incident))
        if incident:
            hosts, first, last = self.incidents.get(incident, ([], start, start))
            end = start + int((seconds or 1) * S)
            self.incidents[incident] = (sorted({*hosts, host}), min(first, start), max(last, end))


def local(day: dt.date, hour: float) -> int:
    moment = dt.datetime.combine(day, dt.time()) + dt.timedelta(hours=hour)
    return int(moment.replace(tzinfo=ZONE).timestamp()) * S


def tcp(dst: str, port: int, up: int, down: int) -> dict:
    return {"op": "tcp", "dst": dst, "port": port, "up": up, "down": down}


def benign_day(plan: Plan, day: dt.date, rng: random.Random) -> None:
    working = day.weekday() < 5
    for k, ws in enumerate(WORKSTATIONS.values()):
        left_on = rng.random() < 1 / 6
        if working:
            t, leave = rng.uniform(7.75, 9.5), rng.uniform(17, 19)
            while t < leave:
                site = rng.choice(WEB)
                plan.add(ws, {"op": "dns", "dst": RESOLVER, "names": [f"www{WEB.index(site)}.example.com"]},
                         local(day, t))  # fmt: skip
                plan.add(ws, tcp(site, 443, rng.randint(1_000, 20_000), rng.randint(30_000, 1_500_000)),
                         local(day, t) + S // 10, rng.uniform(5, 90))  # fmt: skip
                t += rng.uniform(4, 25) / 60
            if day.weekday() == k % 5:  # the weekly updates
                plan.add(ws, tcp(UPDATES, 80, 2_000, rng.randint(20, 150) * 1_000_000),
                         local(day, rng.uniform(10, 16)), rng.uniform(120, 600))  # fmt: skip
        if left_on:  # some nights and weekends: a fetch an hour while nobody is there
            for hour in range(24):
                if working and 7 <= hour < 19:
                    continue
                plan.add(ws, tcp(rng.choice(WEB[:5]), 443, 800, rng.randint(2_000, 40_000)),
                         local(day, hour + rng.random()), rng.uniform(1, 10))  # fmt: skip
    # The nightly backup (allowlisted), NTP, the server up all night, night updates.
    plan.add(BACKUP, tcp(BACKUP_TARGET, 873, rng.randint(60, 200) * 1_000_000, 20_000),
             local(day, rng.uniform(1, 2.5)), rng.uniform(1200, 2400), "backup")  # fmt: skip
    for host in (BACKUP, SERVER, RESOLVER):
        t = rng.uniform(0, 0.5)
        while t < 24:
            plan.add(host, {"op": "ntp", "dst": rng.choice(NTP)}, local(day, t))
            t += rng.uniform(17, 34) / 60
        if rng.random() < 0.25:
            plan.add(host, tcp(UPDATES, 80, 2_000, rng.randint(20, 300) * 1_000_000),
                     local(day, rng.uniform(2, 5)), rng.uniform(300, 1500))  # fmt: skip
    t = rng.uniform(0, 0.2)
    while t < 24:
        fetch = {**tcp(SERVER, 443, 300, rng.randint(5_000, 20_000)), "src": MONITOR}
        plan.sessions.append(Session(MONITOR, fetch, local(day, t), rng.uniform(0.5, 3)))
        t += rng.uniform(5, 10) / 60
    if working:
        t = rng.uniform(8, 9)
        while t < 17:
            plan.add(ISO, tcp(FILES, 445, rng.randint(10_000, 2_000_000), rng.randint(10_000, 3_000_000)),
                     local(day, t), rng.uniform(5, 60))  # fmt: skip
            t += rng.uniform(10, 40) / 60


def adversary_day(plan: Plan, day: dt.date, rng: random.Random) -> None:
    """The careful adversary's behaviours on ``day`` (and the night after), each
    with its parameters drawn afresh; incidents are named ``behaviour@day``."""
    ws = list(WORKSTATIONS.values())

    def add(host: str, command: dict, start: int, seconds: float, name: str) -> None:
        plan.add(host, command, start, seconds, f"{name}@{day}")

    size, every = rng.choice([1, 2, 3, 4]), rng.choice([25, 30, 45, 60])
    t = rng.uniform(21.5, 22.5)  # low and slow, through the night
    while t < 31:
        add(ws[2], tcp(NEW["slow"], 443, size * 1_000_000, 5_000), local(day, t),
            rng.uniform(30, 120), "low-and-slow")  # fmt: skip
        t += rng.uniform(every - 3, every + 3) / 60
    plan.described[f"low-and-slow@{day}"] = f"{size} MB every {every} min, 22:00-07:00"
    total, spread = rng.choice([5, 10, 16, 20]), rng.choice([4, 8])
    start = rng.uniform(0.5, 2)
    for k, address in enumerate(NEW["spread"][:spread]):  # over new addresses in 20 min
        add(ws[3], tcp(address, 443, total * 1_000_000 // spread, 4_000),
            local(day, start + k * 20 / spread / 60), rng.uniform(20, 90), "spread")  # fmt: skip
    plan.described[f"spread@{day}"] = f"{total} MB over {spread} new addresses in 20 min"
    size, start = rng.choice([300, 600, 1000, 1500]), rng.uniform(1, 3)
    names: list[str] = []
    while sum(len(n) + 18 for n in names) < size * 1000:  # DNS tunnel through the resolver
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(60))
        names.append(f"{label}.{len(names)}.x7.example-tunnel.net")
    for k in range(0, len(names), 500):
        add(ws[4], {"op": "dns", "dst": RESOLVER, "names": names[k : k + 500], "qtype": 16},
            local(day, start + k / len(names) * 0.75), 60, "dns-tunnel")  # fmt: skip
    # The tunnel leaves through the resolver, which forwards it: an alert on the
    # resolver's upstream traffic then is the tunnel's too (as a pivot's bridge).
    hosts, first, last = plan.incidents[f"dns-tunnel@{day}"]
    plan.incidents[f"dns-tunnel@{day}"] = ([*hosts, RESOLVER], first, last)
    plan.described[f"dns-tunnel@{day}"] = f"{size / 1000:g} MB of TXT queries in 45 min"
    size = rng.choice([0.5, 1, 3, 6, 12])  # ICMP echo tunnel at 04:00
    add(ws[0], {"op": "ping", "dst": NEW["icmp"], "count": int(size * 1e6) // 1442, "size": 1400},
        local(day, 28 + rng.uniform(0, 0.5)), rng.uniform(1200, 2400), "icmp-tunnel")  # fmt: skip
    plan.described[f"icmp-tunnel@{day}"] = f"{size:g} MB of echo requests at 04:00"
    size = rng.choice([10, 20, 40, 60])
    add(ws[1], tcp(NEW["day"], 443, size * 1_000_000, 20_000), local(day, rng.uniform(13, 15.5)),
        rng.uniform(600, 1200), "day-upload")  # fmt: skip
    plan.described[f"day-upload@{day}"] = f"{size} MB by day to a never-seen address"
    size, start = rng.choice([5, 10, 20, 30]), rng.uniform(20.5, 21.5)
    add(ISO, tcp(ws[1], 445, size * 1_000_000, 10_000), local(day, start), rng.uniform(120, 300),
        "pivot")  # fmt: skip
    add(ws[1], tcp(NEW["pivot"], 443, int(size * 1e6 * rng.uniform(0.9, 1.1)), 10_000),
        local(day, start + 10 / 60), rng.uniform(200, 400), "pivot")  # fmt: skip
    plan.described[f"pivot@{day}"] = f"{size} MB isolated -> workstation -> outside, 10 min apart"
    backup = next(s for s in plan.sessions if s.incident == "backup" and
                  s.start_ns >= local(day, 0))  # fmt: skip
    size = rng.choice([3, 5, 10, 15])
    add(BACKUP, {"op": "udp", "dst": NEW["udp"], "port": 443, "count": size * 1_000_000 // 1242,
                 "size": 1200}, backup.start_ns + int(rng.uniform(60, 600) * S),
        rng.uniform(600, 1200), "udp443")  # fmt: skip
    plan.described[f"udp443@{day}"] = f"{size} MB over udp/443 beside the allowlisted backup"
    plan.add(ws[0], tcp(UPDATES, 80, 2_000, 300_000_000), local(day, 26.5), 900, "trap-download")


def read_pcap(path: Path) -> list[tuple[int, bytes, int]]:
    """(time ns, captured bytes, wire length) of each record of tcpdump's
    nanosecond pcap."""
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\x4d\x3c\xb2\xa1" else ">"
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, nsec, cap, wire = struct.unpack_from(endian + "IIII", data, pos)
        out.append((sec * S + nsec, data[pos + 16 : pos + 16 + cap], wire))
        pos += 16 + cap
    return out


def run_sessions(plan: Plan, pcap: Path) -> list[tuple[int, int]]:
    """Run every session in turn in the lab while tcpdump records; each
    session's (start ns, end ns) as it ran."""
    agents = {}
    for ns, address in [*HOSTS.items(), (OUT_NS, "outside")]:
        role = "resolver" if address == RESOLVER else "host"
        agents[address] = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", AGENT, role, UPSTREAM),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
    for agent in agents.values():
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
    spans = []
    try:
        with recording(MON, pcap, snaplen=128):
            for k, session in enumerate(plan.sessions):
                agent = agents[session.host if session.host in agents else "outside"]
                assert agent.stdin is not None and agent.stdout is not None
                started = time.time_ns()
                agent.stdin.write(json.dumps(session.command) + "\n")
                agent.stdin.flush()
                said = agent.stdout.readline().strip()
                if said != "done":
                    raise RuntimeError(f"session {k} {session.command}: {said}")
                spans.append((started, time.time_ns()))
                time.sleep(0.003)  # its last frames through the mirror before the next starts
    finally:
        for agent in agents.values():
            agent.kill()
    return spans


def lay_out(plan: Plan, spans: list[tuple[int, int]], packets: list[tuple[int, bytes, int]],
            folder: Path) -> list[Path]:  # fmt: skip
    """Each session's recorded packets on its scheduled time, one pcap per local day."""
    import bisect

    starts = [s for s, _ in spans]
    by_day: dict[dt.date, list[tuple[int, int, bytes, int]]] = {}
    owned: list[list[tuple[int, bytes, int]]] = [[] for _ in spans]
    for ts, frame, wire in packets:
        k = bisect.bisect_right(starts, ts) - 1
        if k >= 0:
            owned[k].append((ts, frame, wire))
    order = 0
    for session, (started, _), mine in zip(plan.sessions, spans, owned, strict=True):
        if not mine:
            continue
        span = max(mine[-1][0] - started, 1)
        stretch = 1.0 if session.seconds is None else max(session.seconds * S / span, 1.0)
        for ts, frame, wire in mine:
            at = session.start_ns + int((ts - started) * stretch)
            day = dt.datetime.fromtimestamp(at / S, ZONE).date()
            by_day.setdefault(day, []).append((at, order, frame, wire))
            order += 1
    paths = []
    for day in sorted(by_day):
        rows = sorted(by_day[day])
        path = folder / f"{day}.pcap"
        write_pcap(path, 1, [(at, frame, wire) for at, _, frame, wire in rows], nano=True,
                   snaplen=128)  # fmt: skip
        paths.append(path)
    return paths


NOT_INCIDENTS = ("backup", "trap-download")  # the traps: sanctioned or benign


def judge(alerts: list, plan: Plan, window_ns: int) -> tuple[set[str], list]:
    """Which incidents an alert caught, and the other alerts (false)."""
    caught, false = set(), []
    for alert in alerts:
        if alert.rule_id == "always-on":
            continue
        hit = False
        for name, (hosts, first, last) in plan.incidents.items():
            if name in NOT_INCIDENTS:
                continue
            names = {alert.source_ip, alert.destination_ip}
            if names & set(hosts) and alert.start_ns <= last + window_ns and \
                    alert.end_ns >= first - window_ns:  # fmt: skip
                caught.add(name)
                hit = True
        if not hit:
            false.append(alert)
    return caught, false


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--attack-days", type=int, default=4,
                        help="adversary days after the fortnight, every other day (default 4)")
    parser.add_argument("--out", help="keep the day captures (and week1.model) here "
                        "(default: a temporary folder)")  # fmt: skip
    args = parser.parse_args()
    why = missing_tools()
    if why:
        sys.exit(f"replay_stacks: {why}")
    from detector.pipelines.scan import scan_captures
    from detector.pipelines.train import train_model
    from detector.policy import parse_policy

    rng = random.Random(args.seed)
    first = dt.date(2026, 11, 16)  # a Monday
    days = [first + dt.timedelta(days=d) for d in range(14 + 2 * args.attack_days)]
    attacks = days[14::2]
    plan = Plan()
    for day in days:
        benign_day(plan, day, rng)
    for day in attacks:
        adversary_day(plan, day, rng)
    plan.sessions.sort(key=lambda s: s.start_ns)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out) if args.out else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        raw = Path(tmp) / "mirror.pcap"
        addresses = {ns: [a] for ns, a in HOSTS.items()}
        addresses[OUT_NS] = OUTSIDE
        with bridge_lab(addresses, MON, ["203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24",
                                         "10.8.0.0/16"]):  # fmt: skip
            spans = run_sessions(plan, raw)
        ran = time.perf_counter() - started
        packets = read_pcap(raw)
        paths = lay_out(plan, spans, packets, folder)
        laid = time.perf_counter() - started - ran
        policy = parse_policy(POLICY, "replay-stacks.toml")
        by_day = {dt.date.fromisoformat(p.stem): p for p in paths}
        model = train_model([by_day[d] for d in days[:7]], policy).model
        if args.out:
            from detector.detect.model import save_model

            save_model(model, folder / "week1.model", policy)
        trained = time.perf_counter() - started - ran - laid
        window = policy.window_minutes * MIN
        results = {}
        for label, use in (("rules only", None), ("rules + model", model)):
            benign_false, host_days = [], 0
            for day in days[7:14]:
                scan = scan_captures([by_day[day]], policy, model=use)
                host_days += int(scan.traffic.frame["host_id"].nunique())
                benign_false += [(day, a) for a in judge(scan.alerts, plan, window)[1]]
            caught: set[str] = set()
            attack_false = []
            for day in attacks:
                # The adversary's night runs into the next morning: the two days, one scan.
                night = [by_day[d] for d in (day, day + dt.timedelta(days=1)) if d in by_day]
                found, false = judge(scan_captures(night, policy, model=use).alerts, plan, window)
                caught |= found
                attack_false += [(day, a) for a in false]
            results[label] = (caught, benign_false, attack_false)
        scanned = time.perf_counter() - started - ran - laid - trained
    print(f"{len(plan.sessions):,} sessions run for real in {ran:.0f} s ({len(packets):,} packets "
          f"recorded), laid onto {len(paths)} days in {laid:.0f} s, trained on week 1 in "
          f"{trained:.0f} s, scanned in {scanned:.0f} s; seed {args.seed}; the model: "
          f"{model.n_host_days_} host-days, {model.n_calibration_days_} above usual, "
          f"threshold {model.threshold_:.3f}")  # fmt: skip
    print("| behaviour | hosts | parameters | rules only | rules + model |")
    print("|---|---|---|---|---|")
    for name in sorted(plan.described):
        hosts = plan.incidents[name][0]
        cells = ["caught" if name in results[label][0] else "missed" for label in results]
        print(f"| {name} | {', '.join(hosts)} | {plan.described[name]} | {' | '.join(cells)} |")
    for label, (_, benign_false, attack_false) in results.items():
        per = 1000 * len(benign_false) / max(host_days, 1)
        print(f"{label}: {len(benign_false)} false alerts on week 2's {host_days} benign "
              f"host-days ({per:.1f} per 1,000), {len(attack_false)} on the "
              f"{len(attacks)} adversary days (benign hosts, traps)")  # fmt: skip
        for day, alert in (benign_false + attack_false)[:12]:
            print(f"    {day} {alert.rule_id} {alert.source_ip}: {alert.message[:160]}")


if __name__ == "__main__":
    main()
