#!/usr/bin/env python3
"""Write the bundled demo capture ``captures/sample-incident.pcap.gz``.

One night and the following morning at a small overseas mission, local time
Asia/Taipei (UTC+8, no daylight saving): Wednesday 2026-02-04 00:00 to 10:00 local,
i.e. 2026-02-03 16:00Z to 2026-02-04 02:00Z. It re-enacts bulletin No. 3: outside
working hours an isolated computer (10.8.40.31) uploads about 60 MB to one outside
address (203.0.113.140:443), shortly after the internet computer of the same
employee (10.8.10.44) reached into it over SMB and RDP. See captures/README.md.

The file is a gzip-compressed classic pcap (little-endian, microseconds, link type 1
Ethernet, snap length 96: headers only, as seen on a mirror port). Everything is
derived from one fixed seed, so running the script again gives a byte-identical file
(given the same zlib). Records are built column-wise with numpy, not packet by packet.

    python captures/make_sample.py            # write the file, print the summary
    python captures/make_sample.py --verify   # ... then read it back and check it
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import ipaddress
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

try:
    from zoneinfo import ZoneInfo

    SITE_TZ: timezone | ZoneInfo = ZoneInfo("Asia/Taipei")
except Exception:  # no tz database: Taiwan has had no DST since 1979
    SITE_TZ = timezone(timedelta(hours=8), "Asia/Taipei")

SEED = 20260204
HERE = Path(__file__).resolve().parent
OUT = HERE / "sample-incident.pcap.gz"
SNAPLEN = 96
LINKTYPE_ETHERNET = 1

# --------------------------------------------------------------------------------------
# the site
# --------------------------------------------------------------------------------------


def ip(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def ipstr(v: int) -> str:
    return str(ipaddress.IPv4Address(int(v)))


GATEWAY = ip("10.8.0.1")  # default gateway and DNS resolver of the mission
UPSTREAM_DNS = ip("192.0.2.53")  # the resolver's upstream
NTP_SERVER = ip("192.0.2.123")
MIRROR = ip("198.51.100.25")  # allowlisted backup / update mirror
DROP = ip("203.0.113.140")  # where the documents went
ISO_PC = ip("10.8.40.31")  # the employee's isolated computer
ISO_PC2 = ip("10.8.40.32")
ISO_FS = ip("10.8.40.5")  # isolated file server
BRIDGE_PC = ip("10.8.10.44")  # the same employee's internet computer
BACKUP_PC = ip("10.8.10.20")  # runs the nightly backup upload
INTERNET_PCS = [ip(f"10.8.10.{i}") for i in range(11, 22)] + [BRIDGE_PC]  # a dozen
INTERNAL = ipaddress.IPv4Network("10.8.0.0/16")
OUTSIDE_RANGES = [
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]

DAY0 = datetime(2026, 2, 4, 0, 0, tzinfo=SITE_TZ)  # Wednesday, local midnight
T0 = int(DAY0.timestamp()) * 1_000_000  # µs since the epoch, = 2026-02-03T16:00:00Z
T_END = T0 + 10 * 3600 * 1_000_000  # 10:00 local


def local(hh: int, mm: int, ss: float = 0.0) -> int:
    """µs timestamp of hh:mm:ss local time on 2026-02-04."""
    return T0 + int(round(((hh * 60 + mm) * 60 + ss) * 1e6))


def fmt_local(ts_us: int) -> str:
    d = datetime.fromtimestamp(ts_us // 1_000_000, tz=SITE_TZ)
    return d.strftime("%Y-%m-%d %H:%M:%S") + f".{ts_us % 1_000_000:06d} (UTC+8)"


def fmt_utc(ts_us: int) -> str:
    d = datetime.fromtimestamp(ts_us // 1_000_000, tz=UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_us % 1_000_000:06d}Z"


# web sites of the morning: name -> address (documentation ranges only). The drop
# address, the mirror, the upstream resolver and the NTP server are never among them.
SITES = {
    "www.example.com": "192.0.2.10",
    "static.example.com": "192.0.2.11",
    "mail.example.com": "192.0.2.20",
    "news.example.org": "198.51.100.40",
    "img.example.org": "198.51.100.41",
    "docs.example.net": "203.0.113.15",
    "cdn.example.net": "203.0.113.16",
    "search.example.org": "198.51.100.60",
    "maps.example.com": "192.0.2.70",
    "tiles.example.com": "192.0.2.71",
    "weather.example.net": "203.0.113.30",
    "travel.example.org": "198.51.100.77",
    "portal.example.net": "203.0.113.44",
    "api.example.net": "203.0.113.45",
    "video.example.com": "192.0.2.90",
    "forum.example.org": "198.51.100.88",
    "gov.example.org": "198.51.100.101",
    "bank.example.com": "192.0.2.150",
}
# (main name, asset names, popularity)
PAGES = [
    ("www.example.com", ["static.example.com"], 8),
    ("mail.example.com", ["static.example.com"], 10),
    ("news.example.org", ["img.example.org", "cdn.example.net"], 7),
    ("docs.example.net", ["cdn.example.net"], 5),
    ("search.example.org", [], 6),
    ("maps.example.com", ["tiles.example.com"], 2),
    ("weather.example.net", ["cdn.example.net"], 3),
    ("travel.example.org", ["img.example.org"], 2),
    ("portal.example.net", ["api.example.net"], 5),
    ("video.example.com", ["static.example.com"], 1),
    ("forum.example.org", ["img.example.org"], 2),
    ("gov.example.org", [], 4),
    ("bank.example.com", [], 1),
]
MORE_NAMES = {"update.example.net": MIRROR, "backup.example.net": MIRROR}

# --------------------------------------------------------------------------------------
# packet table
# --------------------------------------------------------------------------------------

F_FIN, F_SYN, F_RST, F_PSH, F_ACK = 1, 2, 4, 8, 16
C, S = 0, 1  # the two sides of a TCP connection: client (initiator), server
MSS = 1448  # 1514-byte frames: 14 Ethernet + 20 IPv4 + 32 TCP (timestamps) + 1448
PAYLOAD_W = 64  # widest captured payload is 96 - 42 (UDP) = 54 bytes
COLS = (
    "ts",
    "src",
    "dst",
    "proto",
    "sport",
    "dport",
    "seq",
    "ack",
    "flags",
    "win",
    "thl",
    "tsval",
    "tsecr",
    "plen",
    "pid",
)


class Capture:
    """Collects packets as columns; ``finish`` sorts them and fills in IP ids."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._rows: list[tuple[int, ...]] = []
        self._chunks: list[list[np.ndarray]] = []
        self.table: list[bytes] = []
        self._pid: dict[bytes, int] = {}
        self._clock: dict[int, int] = {}
        self._eph: dict[int, int] = {}
        self.pool = [self.pid(self.rng.bytes(PAYLOAD_W)) for _ in range(48)]
        self.dns_cache: dict[str, int] = {}  # the resolver's cache: name -> expiry

    # payload prefixes (only the captured bytes matter) are interned in a table
    def pid(self, data: bytes) -> int:
        data = bytes(data[:PAYLOAD_W])
        if data not in self._pid:
            self._pid[data] = len(self.table)
            self.table.append(data)
        return self._pid[data]

    def pool_bytes(self, k: int) -> bytes:
        return self.table[self.pool[k % len(self.pool)]]

    def app_pid(self, reclen: int) -> int:
        """A segment that starts with a TLS application-data record header."""
        reclen = max(1, min(reclen, 16401))
        return self.pid(b"\x17\x03\x03" + reclen.to_bytes(2, "big") + self.pool_bytes(reclen))

    def clock(self, host: int, t):
        """TCP timestamp clock of a host (ms), as seen in TSval."""
        if host not in self._clock:
            self._clock[host] = int(self.rng.integers(1 << 20, 1 << 31))
        return (self._clock[host] + np.asarray(t) // 1000) & 0xFFFFFFFF

    def eph(self, host: int) -> int:
        """Next ephemeral port of a Windows host (sequential, with gaps)."""
        if host not in self._eph:
            self._eph[host] = int(self.rng.integers(49700, 60000))
        p = self._eph[host] + int(self.rng.integers(1, 4))
        if p > 65535:
            p = 49152
        self._eph[host] = p
        return p

    def add(
        self,
        ts,
        src,
        dst,
        proto,
        sport,
        dport,
        seq=0,
        ack=0,
        flags=0,
        win=0,
        thl=0,
        tsval=0,
        tsecr=0,
        plen=0,
        pid=-1,
    ) -> None:
        self._rows.append(
            (
                int(ts),
                src,
                dst,
                proto,
                sport,
                dport,
                seq,
                ack,
                flags,
                win,
                thl,
                int(tsval),
                int(tsecr),
                plen,
                pid,
            )
        )

    def add_arrays(self, n: int, **cols) -> None:
        self._flush()
        self._chunks.append(
            [np.broadcast_to(np.asarray(cols[c], dtype=np.int64), (n,)).copy() for c in COLS]
        )

    def _flush(self) -> None:
        if self._rows:
            a = np.array(self._rows, dtype=np.int64)
            self._chunks.append([a[:, i].copy() for i in range(len(COLS))])
            self._rows = []

    def finish(self) -> dict[str, np.ndarray]:
        self._flush()
        cols = {c: np.concatenate([ch[i] for ch in self._chunks]) for i, c in enumerate(COLS)}
        keep = (cols["ts"] >= T0) & (cols["ts"] < T_END)
        order = np.argsort(cols["ts"][keep], kind="stable")
        p = {c: v[keep][order] for c, v in cols.items()}
        for c in ("seq", "ack", "tsval", "tsecr"):
            p[c] &= 0xFFFFFFFF
        tcp = p["proto"] == 6
        l4 = np.where(tcp, p["thl"], 8)
        p["wire"] = 14 + 20 + l4 + p["plen"]
        p["caplen"] = np.minimum(p["wire"], SNAPLEN)
        # IP identification: one counter per sending host, incremented per packet
        n = len(p["ts"])
        hosts, inv = np.unique(p["src"], return_inverse=True)
        start = self.rng.integers(0, 1 << 16, len(hosts))
        by = np.argsort(inv, kind="stable")
        first = np.searchsorted(inv[by], np.arange(len(hosts)))
        rank = np.empty(n, np.int64)
        rank[by] = np.arange(n) - first[inv[by]]
        p["ipid"] = (start[inv] + rank) & 0xFFFF
        return p


# --------------------------------------------------------------------------------------
# TCP connections, seen from a mirror port next to the internal hosts
# --------------------------------------------------------------------------------------


class Tcp:
    """One TCP connection with real sequence, acknowledgement and timestamp numbers.

    ``remote_server``: the server is across the WAN, so everything it sends in
    reaction to a packet reaches the mirror one round trip (``rtt_ms``) later;
    otherwise both ends are on the LAN next to the mirror.
    """

    def __init__(
        self,
        cap: Capture,
        cli: int,
        srv: int,
        dport: int,
        rtt_ms: float,
        remote_server: bool = True,
    ) -> None:
        self.cap = cap
        r = cap.rng
        self.ip = (cli, srv)
        self.port = (cap.eph(cli), dport)
        self.nxt = [int(r.integers(0, 1 << 32)), int(r.integers(0, 1 << 32))]
        self.win = [int(r.integers(500, 520)), int(r.integers(480, 2050))]  # wscale 7
        self.rtt = rtt_ms * 1000.0
        self.remote = (False, remote_server)
        self.last_ts = [0, 0]
        self.t = 0
        # what the captured first bytes of a mid-stream segment show: one block of
        # "ciphertext" per direction (random blocks per segment would cost ~10% more
        # compressed size for nothing a header-level detector can see)
        self.block = [cap.pool[int(r.integers(len(cap.pool)))] for _ in (C, S)]

    def after(self, side: int, t: float, proc_us: float = 0.0) -> int:
        """Mirror time of a packet that `side` sends on seeing one at time t."""
        r = self.cap.rng
        lat = (
            self.rtt * (1 + 0.03 * abs(r.standard_normal()))
            if self.remote[side]
            else (r.uniform(60, 250))
        )
        return int(t + lat + proc_us) + 1

    def pkt(self, side: int, t: int, flags: int, plen: int = 0, pid: int = -1) -> int:
        o = 1 - side
        syn = bool(flags & F_SYN)
        tsval = int(self.cap.clock(self.ip[side], t))
        self.cap.add(
            t,
            self.ip[side],
            self.ip[o],
            6,
            self.port[side],
            self.port[o],
            seq=self.nxt[side],
            ack=self.nxt[o] if flags & F_ACK else 0,
            flags=flags,
            win=64240 if syn else self.win[side],
            thl=40 if syn else 32,
            tsval=tsval,
            tsecr=self.last_ts[o] if flags & F_ACK else 0,
            plen=plen,
            pid=pid,
        )
        self.nxt[side] += plen + (1 if flags & (F_SYN | F_FIN) else 0)
        self.last_ts[side] = tsval
        self.t = max(self.t, t)
        return t

    def open(self, t: int) -> int:
        t = self.pkt(C, t, F_SYN)
        t = self.pkt(S, self.after(S, t), F_SYN | F_ACK)
        return self.pkt(C, self.after(C, t), F_ACK)

    def close(self, t: int, side: int = C) -> int:
        t = self.pkt(side, max(t, self.t + 1), F_FIN | F_ACK)
        t = self.pkt(1 - side, self.after(1 - side, t, 50), F_FIN | F_ACK)
        return self.pkt(side, self.after(side, t), F_ACK)

    def msg(self, side: int, t: int, plen: int, pid: int) -> int:
        """A small message (one segment, PSH)."""
        return self.pkt(side, max(t, self.t + 1), F_PSH | F_ACK, plen, pid)

    def send(
        self,
        side: int,
        t: int,
        nbytes: int,
        rate_bps: float,
        first: int | None = None,
        final_ack: bool = True,
        psh_every: int = 0,
        wander: float = 0.0,
        ack_delay_us: float | None = None,
    ) -> tuple[int, int]:
        """Send nbytes from `side` as full-sized segments paced at rate_bps (wire
        rate); the receiver ACKs every second segment (and the last one if
        final_ack). Returns (time of the last segment, time of the last ACK)."""
        cap, r, o = self.cap, self.cap.rng, 1 - side
        if nbytes <= MSS:
            t = self.pkt(
                side,
                max(t, self.t + 1),
                F_PSH | F_ACK,
                nbytes,
                self.block[side] if first is None else first,
            )
            if final_ack:
                self.pkt(o, self._ack_time(o, t, ack_delay_us), F_ACK)
            return t, self.t
        n = -(-nbytes // MSS)
        sizes = np.full(n, MSS, np.int64)
        sizes[-1] = nbytes - MSS * (n - 1)
        gaps = (sizes + 66) * 8 / rate_bps * 1e6
        if wander:  # slow drifts of the rate around its mean, as on a shared uplink
            k = 256
            coarse = r.standard_normal(n // k + 2) * wander
            f = np.exp(np.interp(np.arange(n) / k, np.arange(len(coarse)), coarse))
            gaps *= f / f.mean()
        gaps *= np.clip(1 + 0.1 * r.standard_normal(n), 0.5, 2.0)
        gaps[0] = 0
        t0 = max(t, self.t + 1)
        times = t0 + np.cumsum(np.maximum(np.rint(gaps), 1)).astype(np.int64) - 1
        seq = self.nxt[side] + np.cumsum(sizes) - sizes
        idx = np.arange(1, n, 2)
        if final_ack and n % 2 == 1:
            idx = np.append(idx, n - 1)
        if ack_delay_us is not None:
            delay = ack_delay_us + r.uniform(0, 200, len(idx))
        elif self.remote[o]:
            delay = self.rtt * (1 + np.abs(r.normal(0, 0.03, len(idx))))
        else:
            delay = r.uniform(40, 250, len(idx))
        ack_t = times[idx] + np.rint(delay).astype(np.int64)
        i = np.arange(len(idx))
        ack_t = np.maximum.accumulate(ack_t - i) + i  # strictly increasing
        tsv = cap.clock(self.ip[side], times)
        ack_tsv = cap.clock(self.ip[o], ack_t)
        lag = int(self.rtt) if self.remote[side] else 0
        seen = np.searchsorted(ack_t + lag, times, side="right") - 1
        tsecr = np.where(seen >= 0, ack_tsv[np.maximum(seen, 0)], self.last_ts[o])
        flags = np.full(n, F_ACK, np.int64)
        flags[-1] |= F_PSH
        if psh_every:
            flags[psh_every - 1 :: psh_every] |= F_PSH
        pids = np.full(n, self.block[side], np.int64)
        if first is not None:
            pids[0] = first
        cap.add_arrays(
            n,
            ts=times,
            src=self.ip[side],
            dst=self.ip[o],
            proto=6,
            sport=self.port[side],
            dport=self.port[o],
            seq=seq,
            ack=self.nxt[o],
            flags=flags,
            win=self.win[side],
            thl=32,
            tsval=tsv,
            tsecr=tsecr,
            plen=sizes,
            pid=pids,
        )
        if len(idx):
            cap.add_arrays(
                len(idx),
                ts=ack_t,
                src=self.ip[o],
                dst=self.ip[side],
                proto=6,
                sport=self.port[o],
                dport=self.port[side],
                seq=self.nxt[o],
                ack=seq[idx] + sizes[idx],
                flags=F_ACK,
                win=self.win[o],
                thl=32,
                tsval=ack_tsv,
                tsecr=tsv[idx],
                plen=0,
                pid=-1,
            )
            self.last_ts[o] = int(ack_tsv[-1])
        self.nxt[side] += nbytes
        self.last_ts[side] = int(tsv[-1])
        last_ack = int(ack_t[-1]) if len(idx) else int(times[-1])
        self.t = max(self.t, int(times[-1]), last_ack)
        return int(times[-1]), last_ack

    def _ack_time(self, o: int, t: int, ack_delay_us: float | None) -> int:
        if ack_delay_us is not None:
            return int(t + ack_delay_us + self.cap.rng.uniform(0, 200)) + 1
        return self.after(o, t)


# --------------------------------------------------------------------------------------
# protocols: just enough of their first bytes to look right within 96 bytes
# --------------------------------------------------------------------------------------


def client_hello(cap: Capture) -> tuple[int, int]:
    plen = 517
    k = int(cap.rng.integers(0, 48))
    b = b"\x16\x03\x01" + (plen - 5).to_bytes(2, "big") + b"\x01" + (plen - 9).to_bytes(3, "big")
    return plen, cap.pid(b + b"\x03\x03" + cap.pool_bytes(k)[:32])


def server_hello(cap: Capture) -> int:
    k = int(cap.rng.integers(0, 48))
    return cap.pid(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03" + cap.pool_bytes(k)[:32])


def tls_open(conn: Tcp, t: int, down_bps: float) -> int:
    """TCP + TLS 1.3 handshake; returns the time the client may send data."""
    cap, r = conn.cap, conn.cap.rng
    t = conn.open(t)
    plen, pid = client_hello(cap)
    t = conn.msg(C, t + int(r.uniform(200, 2000)), plen, pid)
    flight = int(r.integers(2600, 5200))
    last, _ = conn.send(
        S,
        conn.after(S, t, r.uniform(500, 4000)),
        flight,
        down_bps,
        first=server_hello(cap),
        final_ack=False,
    )
    fin = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35" + cap.pool_bytes(int(r.integers(48)))
    return conn.msg(C, conn.after(C, last, r.uniform(500, 3000)), 64, cap.pid(fin))


def https(conn: Tcp, t: int, req: int, resp: int, down_bps: float) -> int:
    """One request / response over an open TLS connection; returns the end time."""
    r = conn.cap.rng
    t = conn.msg(C, t, req, conn.cap.app_pid(req - 5))
    start = conn.after(S, t, r.uniform(2000, 60000))
    _, last = conn.send(S, start, resp, down_bps, first=conn.cap.app_pid(resp - 5))
    return last


def dns_name(name: str) -> bytes:
    return b"".join(len(x).to_bytes(1, "big") + x.encode() for x in name.split(".")) + b"\0"


def dns_msg(qid: int, name: str, addr: int | None) -> bytes:
    q = dns_name(name) + b"\x00\x01\x00\x01"
    if addr is None:
        return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + q
    ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + addr.to_bytes(4, "big")
    return qid.to_bytes(2, "big") + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q + ans


def resolve(cap: Capture, t: int, host: int, name: str) -> tuple[int, int]:
    """A-record lookup through the gateway's resolver; returns (time, address)."""
    r = cap.rng
    addr = ip(SITES[name]) if name in SITES else MORE_NAMES[name]
    sport, qid = cap.eph(host), int(r.integers(0, 1 << 16))
    q = dns_msg(qid, name, None)
    cap.add(t, host, GATEWAY, 17, sport, 53, plen=len(q), pid=cap.pid(q))
    t1 = t + int(r.uniform(80, 300))
    if cap.dns_cache.get(name, 0) < t:  # miss: ask upstream
        up_port, up_id = int(r.integers(1024, 65536)), int(r.integers(0, 1 << 16))
        uq, ua = dns_msg(up_id, name, None), dns_msg(up_id, name, addr)
        cap.add(t1, GATEWAY, UPSTREAM_DNS, 17, up_port, 53, plen=len(uq), pid=cap.pid(uq))
        t2 = t1 + int(r.uniform(18000, 45000))
        cap.add(t2, UPSTREAM_DNS, GATEWAY, 17, 53, up_port, plen=len(ua), pid=cap.pid(ua))
        t1 = t2 + int(r.uniform(60, 200))
        cap.dns_cache[name] = t2 + 300_000_000
    a = dns_msg(qid, name, addr)
    cap.add(t1, GATEWAY, host, 17, 53, sport, plen=len(a), pid=cap.pid(a))
    return t1, addr


def ntp_ts(t_us: int) -> bytes:
    sec = t_us // 1_000_000 + 2_208_988_800
    frac = ((t_us % 1_000_000) << 32) // 1_000_000
    return sec.to_bytes(4, "big") + frac.to_bytes(4, "big")


def ntp_poll(cap: Capture, t: int) -> None:
    r = cap.rng
    port = int(r.integers(1024, 65536))  # chrony-style random source port
    req = b"\x23\x00\x0a\xe9" + bytes(32) + ntp_ts(t + int(r.integers(0, 1 << 20)))
    cap.add(t, GATEWAY, NTP_SERVER, 17, port, 123, plen=48, pid=cap.pid(req))
    t2 = t + int(r.uniform(17000, 21000))
    rx = ntp_ts(t + 9000)
    resp = (
        b"\x24\x02\x0a\xe8\x00\x00\x01\x10\x00\x00\x02\x30"
        + bytes([198, 51, 100, 7])
        + ntp_ts(t - 400_000_000)
        + req[40:48]
        + rx
        + ntp_ts(t + 9050)
    )
    cap.add(t2, NTP_SERVER, GATEWAY, 17, 123, port, plen=48, pid=cap.pid(resp))


SMB_NEGOTIATE, SMB_SESSION_SETUP, SMB_LOGOFF, SMB_TREE_CONNECT, SMB_TREE_DISCONNECT = 0, 1, 2, 3, 4
SMB_CREATE, SMB_CLOSE, SMB_READ, SMB_WRITE = 5, 6, 8, 9


class Smb:
    """An SMB2 session over a Tcp connection to port 445 (NetBIOS framing)."""

    def __init__(self, conn: Tcp) -> None:
        self.conn, self.mid = conn, 0

    def _pid(self, cmd: int, msg_len: int, resp: bool, status: int = 0) -> int:
        hdr = (
            b"\x00"
            + (msg_len - 4).to_bytes(3, "big")
            + b"\xfeSMB\x40\x00\x01\x00"
            + status.to_bytes(4, "little")
            + cmd.to_bytes(2, "little")
            + (1 if resp else 31).to_bytes(2, "little")
            + (1 if resp else 0).to_bytes(4, "little")
            + bytes(4)
            + self.mid.to_bytes(8, "little")
        )
        return self.conn.cap.pid(hdr)

    def call(
        self,
        t: int,
        cmd: int,
        req: int,
        resp: int,
        status: int = 0,
        proc_us: float = 150.0,
        lan_bps: float = 400e6,
    ) -> int:
        """Request of req bytes, response of resp bytes; returns the end time."""
        c = self.conn
        if req <= MSS:
            t = c.msg(C, t, req, self._pid(cmd, req, False))
        else:
            t, _ = c.send(C, t, req, lan_bps, first=self._pid(cmd, req, False), final_ack=False)
        t2 = c.after(S, t, proc_us)
        if resp <= MSS:
            t = c.msg(S, t2, resp, self._pid(cmd, resp, True, status))
        else:
            _, t = c.send(
                S, t2, resp, lan_bps, first=self._pid(cmd, resp, True, status), final_ack=False
            )
        self.mid += 1
        return t

    def login(self, t: int, r: np.random.Generator) -> int:
        t = self.call(t, SMB_NEGOTIATE, 256, 320)
        t = self.call(t + int(r.uniform(300, 900)), SMB_SESSION_SETUP, 166, 309, 0xC0000016)
        t = self.call(t + int(r.uniform(300, 900)), SMB_SESSION_SETUP, 602, 145, 0, 2500)
        return self.call(t + int(r.uniform(200, 600)), SMB_TREE_CONNECT, 112, 84)

    def read_file(self, t: int, size: int, r: np.random.Generator) -> int:
        t = self.call(t + int(r.uniform(300, 3000)), SMB_CREATE, 256, 240, proc_us=600)
        off = 0
        while off < size:
            chunk = min(65536, size - off)
            t = self.call(t + int(r.uniform(60, 300)), SMB_READ, 117, 84 + chunk, proc_us=300)
            off += chunk
        return self.call(t + int(r.uniform(100, 600)), SMB_CLOSE, 92, 128)

    def write_file(self, t: int, size: int, r: np.random.Generator) -> int:
        t = self.call(t + int(r.uniform(300, 3000)), SMB_CREATE, 256, 240, proc_us=800)
        off = 0
        while off < size:
            chunk = min(65536, size - off)
            t = self.call(t + int(r.uniform(60, 300)), SMB_WRITE, 116 + chunk, 84, proc_us=400)
            off += chunk
        return self.call(t + int(r.uniform(100, 600)), SMB_CLOSE, 92, 128)

    def logout(self, t: int) -> int:
        t = self.call(t + 200, SMB_TREE_DISCONNECT, 72, 72)
        return self.call(t + 200, SMB_LOGOFF, 72, 72)


# --------------------------------------------------------------------------------------
# the scenario
# --------------------------------------------------------------------------------------


def night(cap: Capture) -> None:
    r = cap.rng
    # NTP: the gateway polls its server every 1024 s, all night and morning
    t = local(0, 3, 17.25)
    while t < T_END:
        ntp_poll(cap, t)
        t += 1024_000_000 + int(r.integers(-2_000_000, 2_000_000))

    # 01:00 nightly backup: 10.8.10.20 uploads ~30 MB to the allowlisted mirror
    t, addr = resolve(cap, local(0, 59, 58.204), BACKUP_PC, "backup.example.net")
    conn = Tcp(cap, BACKUP_PC, addr, 443, rtt_ms=61)
    t = tls_open(conn, local(1, 0, 0.312), 30e6)
    t = conn.msg(C, t + 900, 412, cap.app_pid(407))  # upload request header
    last, t = conn.send(
        C, t + 300, 30_000_000, 4.0e6, first=cap.app_pid(16401), psh_every=45, wander=0.10
    )
    t = conn.msg(S, conn.after(S, last, 35000), 310, cap.app_pid(305))
    t = conn.pkt(C, conn.after(C, t), F_ACK)
    conn.close(t + 1_200_000)


def incident(cap: Capture) -> None:
    r = cap.rng
    # 02:05 the bridge: the internet computer writes a "signature update" onto a share
    # of the isolated computer (SMB), then remote-controls it over RDP
    conn = Tcp(cap, BRIDGE_PC, ISO_PC, 445, rtt_ms=0.3, remote_server=False)
    t = conn.open(local(2, 5, 10.418))
    smb = Smb(conn)
    t = smb.login(t + 400, r)
    t = smb.write_file(t, 1_184_768, r)
    t = smb.logout(t + 3000)
    conn.close(t + 2_000_000)

    rdp = Tcp(cap, BRIDGE_PC, ISO_PC, 3389, rtt_ms=0.3, remote_server=False)
    t = rdp.open(local(2, 7, 31.093))
    cr = b"\x03\x00\x00\x2b\x26\xe0\x00\x00\x00\x00\x00Cookie: mstshash=OPS44\r\n"
    cr += b"\x01\x00\x08\x00\x03\x00\x00\x00"  # RDP_NEG_REQ
    assert len(cr) == 43
    t = rdp.msg(C, t + 300, 43, cap.pid(cr))
    cc = b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00\x02\x00\x00\x00"
    t = rdp.msg(S, rdp.after(S, t, 900), 19, cap.pid(cc))
    t = tls_open_existing(rdp, t)
    # user activity: lively before and after the upload, quiet while it runs
    end = local(2, 21, 40.5)
    while True:
        busy = not (local(2, 13, 50) < t < local(2, 19, 5))
        t += int(r.exponential(0.9e6 if busy else 7e6)) + 2000
        if t > end:
            break
        t = rdp.msg(C, t, int(r.integers(40, 160)), cap.app_pid(int(r.integers(35, 155))))
        if r.random() < (0.75 if busy else 0.4):  # a screen update
            size = int(np.clip(r.lognormal(np.log(1800), 1.0), 120, 120_000))
            _, t = rdp.send(
                S,
                rdp.after(S, t, r.uniform(2000, 15000)),
                size,
                60e6,
                first=cap.app_pid(size - 5),
                ack_delay_us=r.uniform(200, 30000),
            )
        else:  # nothing to redraw: a delayed ACK
            t = rdp.pkt(S, rdp.after(S, t, r.uniform(1000, 40000)), F_ACK)
    rdp.close(end + 400_000)

    # 02:13:40 the upload: isolated computer -> 203.0.113.140:443, about 60 MB
    up = Tcp(cap, ISO_PC, DROP, 443, rtt_ms=87.5)
    t = tls_open(up, local(2, 13, 40.127), 8e6)
    t = up.msg(C, t + 700, 498, cap.app_pid(493))  # PUT/POST header
    last, t = up.send(
        C, t + 400, 60_000_000, 1.5e6, first=cap.app_pid(16401), psh_every=45, wander=0.18
    )
    t = up.msg(S, up.after(S, last, 60000), 287, cap.app_pid(282))
    t = up.pkt(C, up.after(C, t), F_ACK)
    up.close(t + 350_000)


def tls_open_existing(conn: Tcp, t: int) -> int:
    """TLS handshake on an already-open TCP connection (RDP after X.224)."""
    r = conn.cap.rng
    plen, pid = client_hello(conn.cap)
    t = conn.msg(C, conn.after(C, t, 400), plen, pid)
    last, _ = conn.send(
        S,
        conn.after(S, t, 1500),
        int(r.integers(1400, 2600)),
        300e6,
        first=server_hello(conn.cap),
        final_ack=False,
    )
    fin = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35" + conn.cap.pool_bytes(7)
    t = conn.msg(C, conn.after(C, last, 800), 64, conn.cap.pid(fin))
    # CredSSP / NLA and the RDP capability exchange: a few records each way
    for _ in range(6):
        t = conn.msg(
            C,
            conn.after(C, t, r.uniform(300, 3000)),
            int(r.integers(90, 900)),
            conn.cap.app_pid(int(r.integers(85, 895))),
        )
        t = conn.msg(
            S,
            conn.after(S, t, r.uniform(300, 3000)),
            int(r.integers(60, 1200)),
            conn.cap.app_pid(int(r.integers(55, 1195))),
        )
    return t


def browse_visit(cap: Capture, t: int, host: int, known: dict[str, int]) -> None:
    r = cap.rng
    weights = np.array([p[2] for p in PAGES], float)
    main, assets, _ = PAGES[int(r.choice(len(PAGES), p=weights / weights.sum()))]
    for j, name in enumerate([main] + list(assets)):
        t += int(r.uniform(2000, 40000)) if j else 0
        if known.get(name, 0) < t:  # the Windows DNS client caches answers too
            t, _ = resolve(cap, t, host, name)
            known[name] = t + 300_000_000
        addr = ip(SITES[name])
        rtt = 25 + (addr % 97) * 2.2
        conn = Tcp(cap, host, addr, 443, rtt_ms=rtt)
        down = float(r.uniform(15e6, 45e6))
        tt = tls_open(conn, t + int(r.uniform(100, 900)), down)
        mu, sd, lo, hi = (
            (np.log(16_000), 0.9, 1500, 400_000) if j == 0 else (np.log(6_000), 0.9, 400, 150_000)
        )
        for k in range(1 + (r.random() < 0.35) + (r.random() < 0.15)):
            resp = int(np.clip(r.lognormal(mu - 0.8 * (k > 0), sd), lo, hi))
            tt = https(
                conn,
                tt + int(r.uniform(300, 400_000)) * (k > 0) + 300,
                int(r.integers(300, 1100)),
                resp,
                down,
            )
        conn.close(tt + int(r.uniform(4e6, 65e6)))


def update_check(cap: Capture, t: int, host: int, known: dict[str, int]) -> None:
    r = cap.rng
    t, addr = resolve(cap, t, host, "update.example.net")
    known["update.example.net"] = t + 300_000_000
    conn = Tcp(cap, host, addr, 443, rtt_ms=61)
    tt = tls_open(conn, t + 400, 20e6)
    tt = https(conn, tt + 200, int(r.integers(400, 700)), int(r.integers(2500, 24000)), 20e6)
    conn.close(tt + int(r.uniform(1e6, 15e6)))


def morning(cap: Capture) -> None:
    r = cap.rng
    # internet computers: staff arrive 08:30-09:10, browse until 10:00
    for i, host in enumerate(INTERNET_PCS):
        arrive = (
            local(8, 30, 20) + int(r.uniform(0, 40 * 60e6))
            if host != BRIDGE_PC
            else (local(8, 41, 12.5))
        )
        known: dict[str, int] = {}
        update_check(cap, arrive + int(r.uniform(40e6, 120e6)), host, known)
        t = arrive + int(r.uniform(60e6, 200e6))
        while t < T_END - 90_000_000:
            browse_visit(cap, t, host, known)
            t += int(r.exponential(330e6 if i % 3 else 480e6)) + 20_000_000
    # isolated computers: documents from the isolated file server over SMB
    for host, arrive in ((ISO_PC2, local(8, 36, 4.2)), (ISO_PC, local(8, 47, 31.7))):
        t = arrive + int(r.uniform(60e6, 180e6))
        while t < T_END - 60_000_000:
            conn = Tcp(cap, host, ISO_FS, 445, rtt_ms=0.3, remote_server=False)
            smb = Smb(conn)
            tt = smb.login(conn.open(t) + 300, r)
            for _ in range(int(r.integers(1, 4))):
                size = int(np.clip(r.lognormal(np.log(45_000), 0.8), 6_000, 600_000))
                tt = smb.read_file(tt + int(r.uniform(0.2e6, 8e6)), size, r)
            if r.random() < 0.4:  # save an edited document back
                tt = smb.write_file(
                    tt + int(r.uniform(10e6, 50e6)), int(r.integers(20_000, 160_000)), r
                )
            tt = smb.logout(tt + int(r.uniform(2e6, 20e6)))
            conn.close(tt + int(r.uniform(1e6, 10e6)))
            t += int(r.uniform(6 * 60e6, 16 * 60e6))


def build(seed: int = SEED) -> tuple[dict[str, np.ndarray], Capture]:
    cap = Capture(seed)
    night(cap)
    incident(cap)
    morning(cap)
    return cap.finish(), cap


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def serialize(p: dict[str, np.ndarray], table: list[bytes]) -> bytes:
    n = len(p["ts"])
    rec = np.zeros((n, 16 + SNAPLEN), np.uint8)

    def put(off: int, arr: np.ndarray, dt: str, rows=slice(None)) -> None:
        b = np.ascontiguousarray(arr[rows]).astype(dt).view(np.uint8)
        b = b.reshape(-1, np.dtype(dt).itemsize)
        rec[rows, off : off + b.shape[1]] = b

    ts = p["ts"]
    put(0, ts // 1_000_000, "<u4")
    put(4, ts % 1_000_000, "<u4")
    put(8, p["caplen"], "<u4")
    put(12, p["wire"], "<u4")
    e = 16  # Ethernet: locally administered MACs 02:08:<IPv4 address>; the gateway's
    gw = np.int64(GATEWAY)  # MAC for anything outside the site
    inside = lambda a: (a >> 16) == 0x0A08  # noqa: E731
    rec[:, e + 0], rec[:, e + 1], rec[:, e + 6], rec[:, e + 7] = 2, 8, 2, 8
    put(e + 2, np.where(inside(p["dst"]), p["dst"], gw), ">u4")
    put(e + 8, np.where(inside(p["src"]), p["src"], gw), ">u4")
    rec[:, e + 12] = 0x08
    i = e + 14  # IPv4, checksum left zero
    tcp = p["proto"] == 6
    rec[:, i] = 0x45
    put(i + 2, p["wire"] - 14, ">u2")
    put(i + 4, p["ipid"], ">u2")
    put(i + 6, np.where(tcp, 0x4000, 0), ">u2")  # DF on TCP
    src = p["src"]
    ttl = np.where(inside(src), np.where(src == GATEWAY, 64, 128), 64 - 7 - (src % 13))
    rec[:, i + 8] = ttl
    rec[:, i + 9] = p["proto"]
    put(i + 12, src, ">u4")
    put(i + 16, p["dst"], ">u4")
    tt = i + 20  # TCP / UDP, checksums left zero
    put(tt, p["sport"], ">u2")
    put(tt + 2, p["dport"], ">u2")
    udp = ~tcp
    put(tt + 4, p["plen"] + 8, ">u2", udp)
    put(tt + 4, p["seq"], ">u4", tcp)
    put(tt + 8, p["ack"], ">u4", tcp)
    rec[tcp, tt + 12] = (p["thl"][tcp] // 4) << 4
    rec[tcp, tt + 13] = p["flags"][tcp]
    put(tt + 14, p["win"], ">u2", tcp)
    o = tt + 20
    ts32, syn = tcp & (p["thl"] == 32), tcp & (p["thl"] == 40)
    rec[ts32, o : o + 4] = (1, 1, 8, 10)  # NOP NOP TS
    put(o + 4, p["tsval"], ">u4", ts32)
    put(o + 8, p["tsecr"], ">u4", ts32)
    rec[syn, o : o + 8] = (2, 4, 5, 0xB4, 4, 2, 8, 10)  # MSS 1460, SACK ok, TS
    put(o + 8, p["tsval"], ">u4", syn)
    put(o + 12, p["tsecr"], ">u4", syn)
    rec[syn, o + 16 : o + 20] = (1, 3, 3, 7)  # NOP, window scale 7
    # payload prefixes
    tab = np.zeros((len(table), PAYLOAD_W), np.uint8)
    for k, b in enumerate(table):
        tab[k, : len(b)] = np.frombuffer(b, np.uint8)
    fo = 14 + 20 + np.where(tcp, p["thl"], 8)  # payload offset in the frame
    for off in np.unique(fo):
        rows = np.flatnonzero((fo == off) & (p["pid"] >= 0))
        w = SNAPLEN - off
        if not len(rows) or w <= 0:
            continue
        chunk = tab[p["pid"][rows], :w].copy()
        chunk[np.arange(w)[None, :] >= p["plen"][rows][:, None]] = 0
        rec[rows, 16 + off : 16 + SNAPLEN] = chunk
    mask = np.arange(16 + SNAPLEN)[None, :] < (16 + p["caplen"])[:, None]
    header = (
        b"\xd4\xc3\xb2\xa1"
        + (2).to_bytes(2, "little")
        + (4).to_bytes(2, "little")
        + bytes(8)
        + SNAPLEN.to_bytes(4, "little")
        + LINKTYPE_ETHERNET.to_bytes(4, "little")
    )
    return header + rec[mask].tobytes()


def write_gz(raw: bytes, path: Path) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


# --------------------------------------------------------------------------------------
# summary (from the arrays that were written) and independent verification
# --------------------------------------------------------------------------------------

# (client, server, server port, from, to): the two big uploads of the night. The
# backup window excludes the morning's update checks of 10.8.10.20 to the same mirror.
INCIDENT = (ISO_PC, DROP, 443, T0, T_END)
BACKUP = (BACKUP_PC, MIRROR, 443, T0, local(6, 0))


def summarize(p: dict[str, np.ndarray]) -> dict[str, object]:
    """The expected-summary numbers, computed column-wise from the packet arrays."""
    s: dict[str, object] = {}
    s["packets"] = int(len(p["ts"]))
    s["wire bytes"] = int(p["wire"].sum())
    s["captured bytes"] = int(p["caplen"].sum())
    s["first packet"] = int(p["ts"][0])
    s["last packet"] = int(p["ts"][-1])
    a = (p["src"] << 16) | p["sport"]
    b = (p["dst"] << 16) | p["dport"]
    key = np.stack([p["proto"], np.minimum(a, b), np.maximum(a, b)], axis=1)
    flows, finv = np.unique(key, axis=0, return_inverse=True)
    finv = finv.reshape(-1)
    s["flows"] = int(len(flows))
    s["tcp flows"] = int((flows[:, 0] == 6).sum())
    s["udp flows"] = int((flows[:, 0] == 17).sum())
    s["hosts"] = int(len(np.unique(np.concatenate([p["src"], p["dst"]]))))
    for label, (cli, srv, port, t_from, t_to) in (("incident", INCIDENT), ("backup", BACKUP)):
        window = (p["ts"] >= t_from) & (p["ts"] < t_to)
        out = (p["src"] == cli) & (p["dst"] == srv) & (p["dport"] == port) & window
        back = (p["src"] == srv) & (p["dst"] == cli) & (p["sport"] == port) & window
        both = out | back
        s[f"{label} flows"] = int(len(np.unique(finv[both])))
        s[f"{label} out packets"] = int(out.sum())
        s[f"{label} out wire bytes"] = int(p["wire"][out].sum())
        s[f"{label} out payload bytes"] = int(p["plen"][out].sum())
        s[f"{label} in packets"] = int(back.sum())
        s[f"{label} in wire bytes"] = int(p["wire"][back].sum())
        s[f"{label} in payload bytes"] = int(p["plen"][back].sum())
        s[f"{label} first"] = int(p["ts"][both][0])
        s[f"{label} last"] = int(p["ts"][both][-1])
    for port in (445, 3389):
        m = ((p["src"] == BRIDGE_PC) & (p["dst"] == ISO_PC) & (p["dport"] == port)) | (
            (p["src"] == ISO_PC) & (p["dst"] == BRIDGE_PC) & (p["sport"] == port)
        )
        s[f"bridge {port} packets"] = int(m.sum())
        s[f"bridge {port} wire bytes"] = int(p["wire"][m].sum())
        s[f"bridge {port} first"] = int(p["ts"][m][0])
        s[f"bridge {port} last"] = int(p["ts"][m][-1])
    return s


def show(s: dict[str, object]) -> str:
    lines = []
    for k, v in s.items():
        if isinstance(v, int) and (
            k.endswith(" first") or k.endswith(" last") or k in ("first packet", "last packet")
        ):
            v = f"{fmt_local(v)} = {fmt_utc(v)}"
        elif isinstance(v, int):
            v = f"{v:,}"
        lines.append(f"  {k:<28} {v}")
    return "\n".join(lines)


NATIONAL_ID = re.compile(rb"[A-Z][12][0-9]{8}")


def verify(path: Path, expected: dict[str, object]) -> list[str]:
    """Read the file back with scapy's RawPcapReader (records) and dpkt (headers),
    recompute the summary with plain per-packet Python, and check the headers."""
    import dpkt
    from scapy.utils import RawPcapReader

    problems: list[str] = []

    def check(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    gzdata = path.read_bytes()
    check(gzdata[:2] == b"\x1f\x8b" and gzdata[4:8] == bytes(4), "gzip header: mtime not 0")
    raw = gzip.decompress(gzdata)
    check(raw[:4] == b"\xd4\xc3\xb2\xa1", "not little-endian microsecond pcap")
    check(raw[4:8] == b"\x02\x00\x04\x00", "pcap version is not 2.4")
    check(int.from_bytes(raw[16:20], "little") == SNAPLEN, "snaplen is not 96")
    check(int.from_bytes(raw[20:24], "little") == LINKTYPE_ETHERNET, "link type is not 1")

    allowed = [INTERNAL, *OUTSIDE_RANGES]
    n = wire_total = cap_total = 0
    prev_ts = -1
    first_ts = last_ts = 0
    flows: dict[tuple, list] = {}  # canonical 5-tuple -> packet times
    last_id: dict[int, int] = {}
    nxt: dict[tuple, int] = {}  # (flow, sender) -> next expected seq
    top_ack: dict[tuple, int] = {}
    stat: dict[str, int] = defaultdict(int)
    firsts: dict[str, int] = {}
    lasts: dict[str, int] = {}
    tcp_first: dict[tuple, list] = {}
    ids_found = 0
    addrs: set[int] = set()
    reader = RawPcapReader(str(path))
    try:
        for buf, meta in reader:
            n += 1
            ts = meta.sec * 1_000_000 + meta.usec
            check(ts >= prev_ts, f"packet {n}: timestamp goes backwards")
            prev_ts = ts
            first_ts = first_ts or ts
            last_ts = ts
            check(
                meta.caplen == min(meta.wirelen, SNAPLEN) == len(buf),
                f"packet {n}: cap_len {meta.caplen} wire_len {meta.wirelen}",
            )
            wire_total += meta.wirelen
            cap_total += meta.caplen
            eth = dpkt.ethernet.Ethernet(buf)
            pkt = eth.data
            if not isinstance(pkt, dpkt.ip.IP):
                problems.append(f"packet {n}: not IPv4")
                continue
            check(pkt.len == meta.wirelen - 14, f"packet {n}: IP length vs wire length")
            src, dst = int.from_bytes(pkt.src, "big"), int.from_bytes(pkt.dst, "big")
            addrs.update((src, dst))
            for a in (src, dst):
                check(
                    any(ipaddress.IPv4Address(a) in net for net in allowed),
                    f"packet {n}: address {ipstr(a)} outside the allowed ranges",
                )
            if src in last_id:
                check(pkt.id == (last_id[src] + 1) & 0xFFFF, f"packet {n}: IP id of {ipstr(src)}")
            last_id[src] = pkt.id
            l4 = pkt.data
            if isinstance(l4, dpkt.tcp.TCP):
                sport, dport, proto = l4.sport, l4.dport, 6
                plen = pkt.len - pkt.hl * 4 - l4.off * 4
                payload = bytes(l4.data)
            elif isinstance(l4, dpkt.udp.UDP):
                sport, dport, proto = l4.sport, l4.dport, 17
                check(l4.ulen == pkt.len - 20, f"packet {n}: UDP length")
                plen = l4.ulen - 8
                payload = bytes(l4.data)
            else:
                problems.append(f"packet {n}: neither TCP nor UDP")
                continue
            if NATIONAL_ID.search(payload):
                ids_found += 1
            ea, eb = (src, sport), (dst, dport)
            fk = (proto, min(ea, eb), max(ea, eb))
            flows.setdefault(fk, []).append(ts)
            if proto == 6:
                syn, fin = bool(l4.flags & dpkt.tcp.TH_SYN), bool(l4.flags & dpkt.tcp.TH_FIN)
                d = (fk, ea)
                seen = tcp_first.setdefault(fk, [])
                if len(seen) < 2:
                    seen.append((ea, l4.flags))
                if d in nxt:
                    check(l4.seq == nxt[d], f"packet {n}: TCP seq gap/overlap in {fk}")
                nxt[d] = (l4.seq + plen + syn + fin) & 0xFFFFFFFF
                if l4.flags & dpkt.tcp.TH_ACK:
                    peer = (fk, eb)
                    check(
                        peer in nxt and ((nxt[peer] - l4.ack) & 0xFFFFFFFF) < 1 << 30,
                        f"packet {n}: ACK of unseen data in {fk}",
                    )
                    check(
                        ((l4.ack - top_ack.get(d, l4.ack)) & 0xFFFFFFFF) < 1 << 30,
                        f"packet {n}: ACK goes backwards in {fk}",
                    )
                    top_ack[d] = l4.ack
            for label, (cli, srv, port, t_from, t_to) in (
                ("incident", INCIDENT),
                ("backup", BACKUP),
            ):
                if not t_from <= ts < t_to:
                    continue
                for direction, match in (
                    ("out", src == cli and dst == srv and dport == port),
                    ("in", src == srv and dst == cli and sport == port),
                ):
                    if match:
                        stat[f"{label} {direction} packets"] += 1
                        stat[f"{label} {direction} wire bytes"] += meta.wirelen
                        stat[f"{label} {direction} payload bytes"] += plen
                        firsts.setdefault(label, ts)
                        lasts[label] = ts
            for port in (445, 3389):
                if (src, dst, dport) == (BRIDGE_PC, ISO_PC, port) or (
                    (src, dst, sport) == (ISO_PC, BRIDGE_PC, port)
                ):
                    stat[f"bridge {port} packets"] += 1
                    stat[f"bridge {port} wire bytes"] += meta.wirelen
                    firsts.setdefault(f"bridge {port}", ts)
                    lasts[f"bridge {port}"] = ts
    finally:
        reader.close()

    for fk, seen in tcp_first.items():
        ok = (
            len(seen) == 2
            and seen[0][1] == dpkt.tcp.TH_SYN
            and seen[1][1] == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
            and seen[0][0] != seen[1][0]
        )
        check(ok, f"TCP flow {fk} does not start with SYN, SYN-ACK")
    check(ids_found == 0, f"{ids_found} payloads look like national ID numbers")

    # flows as docs/flows.md counts them: idle timeout 120 s, active timeout 1800 s
    split = 0
    for times in flows.values():
        start = last = times[0]
        split += 1
        for t in times[1:]:
            if t - last > 120_000_000 or t - start > 1_800_000_000:
                split += 1
                start = t
            last = t
    check(split == len(flows), f"flows split by timeouts: {split} != {len(flows)} 5-tuples")

    got: dict[str, object] = {
        "packets": n,
        "wire bytes": wire_total,
        "captured bytes": cap_total,
        "first packet": first_ts,
        "last packet": last_ts,
        "flows": len(flows),
        "tcp flows": sum(1 for k in flows if k[0] == 6),
        "udp flows": sum(1 for k in flows if k[0] == 17),
        "hosts": len(addrs),
    }
    for label, (cli, srv, port, t_from, t_to) in (("incident", INCIDENT), ("backup", BACKUP)):
        got[f"{label} flows"] = sum(
            1
            for k, times in flows.items()
            if k[0] == 6
            and (srv, port) in k[1:]
            and cli in (k[1][0], k[2][0])
            and t_from <= times[0] < t_to
        )
        for d in ("out", "in"):
            for m in ("packets", "wire bytes", "payload bytes"):
                got[f"{label} {d} {m}"] = stat[f"{label} {d} {m}"]
        got[f"{label} first"], got[f"{label} last"] = firsts[label], lasts[label]
    for port in (445, 3389):
        got[f"bridge {port} packets"] = stat[f"bridge {port} packets"]
        got[f"bridge {port} wire bytes"] = stat[f"bridge {port} wire bytes"]
        got[f"bridge {port} first"] = firsts[f"bridge {port}"]
        got[f"bridge {port} last"] = lasts[f"bridge {port}"]
    for k, v in expected.items():
        check(got.get(k) == v, f"summary '{k}': file says {got.get(k)!r}, generator {v!r}")
    check(set(got) == set(expected), "summary keys differ")
    # the story's own constraints
    inc_first, inc_last = got["incident first"], got["incident last"]
    check(local(2, 13, 40) <= inc_first < local(2, 13, 41), "upload does not start 02:13:40")
    check(local(2, 19) <= inc_last < local(2, 20), "upload does not end at 02:19:xx")
    check(55e6 <= got["incident out payload bytes"] <= 65e6, "upload is not ~60 MB")
    check(28e6 <= got["backup out payload bytes"] <= 32e6, "backup is not ~30 MB")
    print(
        f"verify: {n:,} packets, {len(flows):,} flows read back with RawPcapReader + dpkt; "
        f"{split:,} flows with the 120 s / 1800 s timeouts of docs/flows.md"
    )
    return problems


def tshark_check(path: Path, expected: dict[str, object]) -> list[str]:
    exe = shutil.which("tshark")
    if not exe and Path("/usr/bin/tshark").exists():
        exe = "/usr/bin/tshark"
    if not exe:
        print("tshark: not installed, cross-check skipped")
        return []
    problems = []
    out = subprocess.run(
        [exe, "-n", "-r", str(path), "-q", "-z", "conv,ip"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    print("tshark -q -z conv,ip (the first rows):")
    rows = out.splitlines()
    print("\n".join(rows[:14]))
    pair = {ipstr(ISO_PC), ipstr(DROP)}
    line = next((x for x in rows if "<->" in x and set(x.split()[0:3:2]) == pair), None)
    if line is None:
        return ["tshark: no conversation 10.8.40.31 <-> 203.0.113.140"]
    # "A <-> B  frames bytes  frames bytes  frames bytes  start duration" (bytes
    # may carry a unit: "62 MB"); keep the three frame counts
    counts = re.findall(r"(?<![\w.])(\d[\d,]*) +[\d,.]+ ?(?:[kMG]B|bytes)", line)
    frames = [int(x.replace(",", "")) for x in counts]
    want = expected["incident out packets"] + expected["incident in packets"]
    if want not in frames:
        problems.append(f"tshark: incident conversation frames {frames}, expected total {want}")
    total = sum(1 for x in rows if "<->" in x)
    print(f"tshark: {total} IP conversations; incident conversation frame counts {frames}")
    exp = subprocess.run(
        [exe, "-n", "-r", str(path), "-q", "-z", "expert,warn"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    bad = re.compile(r"(?i)not captured|unseen|retrans|out.of.order|dup|zero window|lost")
    seq_warn = [x.strip() for x in exp.splitlines() if bad.search(x)]
    print("tshark -z expert,warn: " + ("; ".join(seq_warn) or "no TCP sequence-analysis warnings"))
    if seq_warn:
        problems.append("tshark reports TCP sequence-analysis warnings")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--verify",
        action="store_true",
        help="read the written file back (scapy + dpkt, tshark if present) and check it",
    )
    ap.add_argument("-o", "--output", type=Path, default=OUT, help=f"default: {OUT}")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    packets, cap = build()
    raw = serialize(packets, cap.table)
    data = write_gz(raw, args.output)
    elapsed = time.perf_counter() - t_start
    summary = summarize(packets)
    print(
        f"wrote {args.output}: {len(data):,} bytes gzip ({len(raw):,} bytes pcap), "
        f"sha256 {hashlib.sha256(data).hexdigest()[:16]}..., {elapsed:.1f} s"
    )
    print(show(summary))
    d = (summary["incident last"] - summary["incident first"]) / 1e6
    print(
        f"  {'incident duration':<28} {d:.1f} s, "
        f"{summary['incident out wire bytes'] * 8 / d / 1e6:.2f} Mbit/s out on the wire"
    )
    if len(data) >= 2_000_000:
        print("error: the compressed capture must stay below 2 MB", file=sys.stderr)
        return 1
    if args.verify:
        problems = verify(args.output, summary) + tshark_check(args.output, summary)
        for msg in problems[:50]:
            print("PROBLEM:", msg, file=sys.stderr)
        if problems:
            print(f"verify: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        print("verify: OK (records, headers, TCP sequence numbers, IP ids, summary)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
