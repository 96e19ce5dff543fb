"""Side channels on isolated segments (issue 20, item 9): a benign segment's
link-layer life over weeks, the signs of a bridge or a rogue laptop injected
with spread parameters, all through the nightly (which learns the segment's
cards) and the four rules; what is caught and the false alerts per 1,000
benign host-days.

    python benchmarks/eval_sidechannels.py [--days 28] [--trials 8] [--seed 1]

The site (Asia/Taipei), seen on one mirror port of a trunk:

* the isolated segment 10.8.40.0/24 on VLAN 40: six computers (10.8.40.11-16)
  and a printer (10.8.40.20) that boot on working days between 07:45 and
  09:15 (RFC 5227: three ARP probes, two announcements; DHCP from the
  segment's own server 10.8.40.2, listed in ``servers``), ask in ARP for the
  file server 10.8.40.5 and the gateway 10.8.40.1 and work with the file
  server through the day, and shut down between 17:00 and 19:30; one or two
  are left on overnight on some days; the file server and the DHCP server are
  up all the time (gratuitous ARP after a restart one day in ten); the gateway
  (one card) answers ARP and delivers the updates of an internal update
  server;
* the office segment 10.8.10.0/24 on VLAN 10 next to it: twelve computers
  with their own DHCP server 10.8.10.2 and an IPv6 router sending
  advertisements every 200 s, ARPing for their gateway and for each other:
  none of it is on the isolated segment.

Injected, each on a day of its own after the baseline, times drawn at random:

* ``laptop``: a card never seen (Apple, Intel, or a random locally administered
  address) joins VLAN 40 for 2-120 minutes, gets an address from the segment's
  server and talks to the file server;
* ``rogue-dhcp``: a small router answers 1-4 DHCP requests with offers of
  192.168.0.x or 10.8.40.x;
* ``router-advert``: a laptop sharing its connection sends 1-6 router
  advertisements (lifetime 0 or 1,800 s);
* ``arp-beyond``: an isolated computer given an on-link route asks for 1-5
  addresses of 198.51.100.0/24, 1-3 times each;
* ``second-gateway``: a laptop routes outside traffic to one isolated computer
  (2-40 frames from 203.0.113.x);
* ``arp-spoof``: a laptop claims the gateway's address with 1-10 gratuitous
  replies.

Frames are written at their full length (DHCP options lie past headers-only
snap lengths) into one pcap per hour, as a sensor rotates them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from gen_traffic import at  # noqa: E402
from scapy.compat import raw  # noqa: E402
from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import ICMPv6ND_RA, IPv6  # noqa: E402
from scapy.layers.l2 import ARP, Dot1Q, Ether  # noqa: E402
from scapy.utils import mac2str  # noqa: E402

from detector.nightly.run import NightlyOptions, run_nightly  # noqa: E402
from detector.policy import parse_policy  # noqa: E402

from gen_cases import write_pcap  # noqa: E402

ZONE = "Asia/Taipei"
POLICY = """\
[site]
name = "side-channels"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]
isolated_peers = ["10.8.50.9/32"]   # the internal update server

[rules.rogue-dhcp-server]
servers = ["10.8.40.2"]
"""
BROADCAST = "ff:ff:ff:ff:ff:ff"
GATEWAY, GW_MAC = "10.8.40.1", "00:1b:17:00:40:01"  # Palo Alto's OUI
FILES, FILES_MAC = "10.8.40.5", "00:25:90:00:40:05"  # Supermicro's
DHCPD, DHCPD_MAC = "10.8.40.2", "00:25:90:00:40:02"
ISOLATED = {f"10.8.40.{10 + i}": f"00:1b:21:00:40:{10 + i:02x}" for i in range(1, 7)}
ISOLATED["10.8.40.20"] = "00:80:77:00:40:20"  # a printer (Brother's OUI)
OFFICE = {f"10.8.10.{20 + i}": f"3c:52:82:00:10:{20 + i:02x}" for i in range(12)}
OFFICE_GW_MAC, OFFICE_DHCP_MAC = "00:1b:17:00:10:01", "00:25:90:00:10:02"
UPDATES = "10.8.50.9"
BEHAVIOURS = ("laptop", "rogue-dhcp", "router-advert", "arp-beyond", "second-gateway",
              "arp-spoof")  # fmt: skip
EXPECTED = {"laptop": "new-device-isolated", "rogue-dhcp": "rogue-dhcp-server",
            "router-advert": "rogue-router", "arp-beyond": "arp-outside-segment",
            "second-gateway": "rogue-router", "arp-spoof": "rogue-router"}  # fmt: skip
S = 1_000_000_000
MIN = 60 * S


class Day:
    """One day's frames (time, bytes), scapy-built once per distinct frame."""

    cache: dict[tuple, bytes] = {}

    def __init__(self, day: dt.date) -> None:
        self.day = day
        self.frames: list[tuple[int, bytes]] = []

    def at(self, hhmm: str) -> int:
        return at(f"{self.day} {hhmm}", ZONE)

    def add(self, ts: int, key: tuple, build) -> None:  # noqa: ANN001
        frame = self.cache.get(key)
        if frame is None:
            frame = self.cache[key] = raw(build())
        self.frames.append((ts, frame))


def _eth(src: str, dst: str, vlan: int):  # noqa: ANN202
    return Ether(src=src, dst=dst) / Dot1Q(vlan=vlan)


def arp(d: Day, ts: int, mac: str, op: int, sender: str, target: str, vlan: int = 40) -> None:
    d.add(ts, ("arp", mac, op, sender, target, vlan),
          lambda: _eth(mac, BROADCAST, vlan) / ARP(op=op, hwsrc=mac, psrc=sender, pdst=target))  # fmt: skip


def dhcp_reply(d: Day, ts: int, server: str, server_mac: str, offered: str, client_mac: str,
               kind: str, router: str, vlan: int = 40) -> None:  # fmt: skip
    d.add(ts, ("dhcp", server, server_mac, offered, client_mac, kind, router, vlan),
          lambda: _eth(server_mac, BROADCAST, vlan) / IP(src=server, dst="255.255.255.255")
          / UDP(sport=67, dport=68) / BOOTP(op=2, yiaddr=offered, chaddr=mac2str(client_mac))
          / DHCP(options=[("message-type", kind), ("server_id", server), ("router", router),
                          "end"]))  # fmt: skip


def tcp(d: Day, ts: int, mac: str, dst_mac: str, src: str, dst: str, port: int,
        vlan: int = 40) -> None:  # fmt: skip
    d.add(ts, ("tcp", mac, dst_mac, src, dst, port, vlan),
          lambda: _eth(mac, dst_mac, vlan) / IP(src=src, dst=dst) / TCP(sport=port, dport=445))  # fmt: skip


def advert(d: Day, ts: int, mac: str, lifetime: int, vlan: int) -> None:
    d.add(ts, ("ra", mac, lifetime, vlan),
          lambda: _eth(mac, "33:33:00:00:00:01", vlan) / IPv6(src="fe80::1", dst="ff02::1")
          / ICMPv6ND_RA(routerlifetime=lifetime))  # fmt: skip


def boot(d: Day, rng: random.Random, ip: str, mac: str, ts: int, vlan: int = 40,
         server: str = DHCPD, server_mac: str = DHCPD_MAC, router: str = GATEWAY) -> None:  # fmt: skip
    """RFC 5227 probes and announcements, a DHCP ACK, ARP for gateway and file server."""
    dhcp_reply(d, ts, server, server_mac, ip, mac, "ack", router, vlan)
    for k in range(3):
        arp(d, ts + (k + 1) * S, mac, 1, "0.0.0.0", ip, vlan)
    for k in range(2):
        arp(d, ts + (k + 5) * S, mac, 1, ip, ip, vlan)
    arp(d, ts + 8 * S, mac, 1, ip, router, vlan)
    if vlan == 40:
        arp(d, ts + 9 * S, mac, 1, ip, FILES, vlan)
        arp(d, ts + 9 * S + 10**6, FILES_MAC, 2, FILES, ip, vlan)


def benign(d: Day, rng: random.Random) -> int:
    """The segment's and the office's ordinary day; returns the isolated hosts active."""
    working = d.day.weekday() < 5
    active = 0
    for ip, mac in ISOLATED.items():
        left_on = rng.random() < 0.15
        if not working and not left_on:
            continue
        active += 1
        start = d.at("00:00") if left_on else d.at(f"0{rng.randint(7, 8)}:{rng.randint(0, 59):02d}")
        end = d.at("23:59") if left_on else d.at(f"{rng.randint(17, 19)}:{rng.randint(0, 59):02d}")
        if not left_on:
            boot(d, rng, ip, mac, start)
        t = start + 10 * S
        while t < end:  # work with the file server every 5-40 minutes
            tcp(d, t, mac, FILES_MAC, ip, FILES, 49152)
            tcp(d, t + S // 10, FILES_MAC, mac, FILES, ip, 445)
            if rng.random() < 0.05:  # the gateway's card brings an update
                tcp(d, t + S, GW_MAC, mac, UPDATES, ip, 80)
            if rng.random() < 0.2:  # ARP cache refresh
                arp(d, t + 2 * S, mac, 1, ip, FILES)
                arp(d, t + 2 * S + 10**6, FILES_MAC, 2, FILES, ip)
            t += rng.randint(5, 40) * MIN
    for server, mac in ((FILES, FILES_MAC), (DHCPD, DHCPD_MAC), (GATEWAY, GW_MAC)):
        if rng.random() < 0.1:  # a restart: gratuitous announcements
            ts = d.at(f"0{rng.randint(0, 5)}:{rng.randint(0, 59):02d}")
            arp(d, ts, mac, 1, server, server)
            arp(d, ts + S, mac, 2, server, server)
        arp(d, d.at("12:00") + rng.randint(0, 3600) * S, mac, 1, server, GATEWAY if
            server != GATEWAY else FILES)  # fmt: skip
    for ip, mac in OFFICE.items():
        if not working:
            continue
        ts = d.at(f"08:{rng.randint(0, 59):02d}")
        boot(d, rng, ip, mac, ts, vlan=10, server="10.8.10.2", server_mac=OFFICE_DHCP_MAC,
             router="10.8.10.1")  # fmt: skip
        for _ in range(rng.randint(2, 10)):
            other = rng.choice(list(OFFICE))
            arp(d, ts + rng.randint(60, 30000) * S, mac, 1, ip, other, vlan=10)
    t = d.at("00:00") + rng.randint(0, 200) * S
    while t < d.at("23:59"):
        advert(d, t, OFFICE_GW_MAC, 1800, vlan=10)
        t += 200 * S
    return active


def inject(d: Day, rng: random.Random, behaviour: str) -> tuple[str, str]:
    """One instance of ``behaviour``; returns its description and the card it
    put on the segment (an alert about that card is a catch, not a false alert)."""
    ts = d.at(f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}")
    # Apple's and Intel's OUIs, or a locally administered (random) address.
    laptop_mac = rng.choice([f"3c:22:fb:{rng.randint(0, 255):02x}:00:01",
                             f"00:1b:21:{rng.randint(0, 255):02x}:99:01",
                             f"02:{rng.randint(0, 255):02x}:00:00:00:77"])  # fmt: skip
    if behaviour == "laptop":
        minutes = rng.randint(2, 120)
        boot(d, rng, "10.8.40.77", laptop_mac, ts)
        for m in range(0, minutes, rng.randint(1, 10)):
            tcp(d, ts + m * MIN + 20 * S, laptop_mac, FILES_MAC, "10.8.40.77", FILES, 50000)
        return f"{laptop_mac} for {minutes} min", laptop_mac
    if behaviour == "rogue-dhcp":
        n = rng.randint(1, 4)
        offered = rng.choice(["192.168.0.", "10.8.40."])
        client_ip, client_mac = rng.choice(list(ISOLATED.items()))
        for k in range(n):
            dhcp_reply(d, ts + k * 30 * S, "192.168.0.1", laptop_mac, f"{offered}{100 + k}",
                       client_mac, "offer", "192.168.0.1")  # fmt: skip
        return f"{n} offers of {offered}x", laptop_mac
    if behaviour == "router-advert":
        n, lifetime = rng.randint(1, 6), rng.choice([0, 1800])
        for k in range(n):
            advert(d, ts + k * 200 * S, laptop_mac, lifetime, vlan=40)
        return f"{n} adverts, lifetime {lifetime}", laptop_mac
    if behaviour == "arp-beyond":
        ip, mac = rng.choice(list(ISOLATED.items()))
        targets = rng.sample(range(2, 250), rng.randint(1, 5))
        repeats = rng.randint(1, 3)
        for i, target in enumerate(targets):
            for k in range(repeats):
                arp(d, ts + (i * 10 + k) * S, mac, 1, ip, f"198.51.100.{target}")
        return f"{len(targets)} targets x {repeats}", mac
    if behaviour == "second-gateway":
        ip, mac = rng.choice(list(ISOLATED.items()))
        n = rng.randint(2, 40)
        for k in range(n):
            tcp(d, ts + k * S, laptop_mac, mac, f"203.0.113.{rng.randint(1, 254)}", ip, 443)
        return f"{n} frames", laptop_mac
    n = rng.randint(1, 10)  # arp-spoof
    for k in range(n):
        arp(d, ts + k * 2 * S, laptop_mac, 2, GATEWAY, GATEWAY)
    return f"{n} claims", laptop_mac


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=28, help="benign baseline days")
    parser.add_argument("--trials", type=int, default=8, help="injected days per behaviour")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    first = dt.date(2026, 3, 2)
    plan = [None] * args.days + [b for b in BEHAVIOURS for _ in range(args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "captures"
        folder.mkdir()
        host_days = 0
        described: dict[dt.date, tuple[str | None, str, str]] = {}
        for i, behaviour in enumerate(plan):
            d = Day(first + dt.timedelta(days=i))
            host_days += benign(d, rng)
            what, card = inject(d, rng, behaviour) if behaviour else ("", "")
            described[d.day] = (behaviour, what, card)
            d.frames.sort(key=lambda f: f[0])
            for hour in range(24):  # rotated hourly, as a sensor's captures are
                begin = at(f"{d.day} {hour:02d}:00", ZONE)
                frames = [f for f in d.frames if begin <= f[0] < begin + 3600 * S]
                if not frames:
                    continue
                path = write_pcap(folder / f"{d.day}-{hour:02d}.pcap", 1, frames)
                written = begin + 3600 * S
                os.utime(path, ns=(written, written))
        options = NightlyOptions(captures=str(folder), state=str(Path(tmp) / "state.db"),
                                 report_dir=str(Path(tmp) / "reports"))  # fmt: skip
        last = first + dt.timedelta(days=len(plan))
        result = run_nightly(options, parse_policy(POLICY, "side-channels.toml"),
                             now_ns=at(f"{last} 06:00", ZONE))  # fmt: skip
    caught: Counter = Counter()
    false: list[str] = []
    for done in result.days:
        behaviour, what, card = described[done.day]
        expected = EXPECTED.get(behaviour or "")
        for alert in done.alerts:
            if alert.rule_id not in set(EXPECTED.values()):
                continue  # the other rules (always-on of computers left on) are not judged here
            cards = {alert.evidence.get("mac"), *alert.evidence.get("macs", ())}
            if alert.rule_id == expected or (card and card in cards):
                continue
            false.append(f"{done.day} ({behaviour or 'benign'}): {alert.rule_id} {alert.message}")
        if behaviour and any(a.rule_id == expected for a in done.alerts):
            caught[behaviour] += 1
        elif behaviour:
            print(f"missed {behaviour} on {done.day}: {what}")
    days = len(result.days)
    print(f"{days} days ({args.days} benign baseline, the first the nightly's learning day; "
          f"{args.trials} per behaviour), {host_days:,} isolated host-days, seed {args.seed}, "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    for behaviour in BEHAVIOURS:
        print(f"  {behaviour:15} caught {caught[behaviour]}/{args.trials} ({EXPECTED[behaviour]})")
    print(f"  false alerts: {len(false)} ({1000 * len(false) / max(host_days, 1):.1f} per 1,000 "
          "isolated host-days)")  # fmt: skip
    for line in false[:20]:
        print("    " + line[:300])


if __name__ == "__main__":
    main()
