"""The nightly learns the cards of its isolated segments (new-device-isolated's
baseline, issue 20 item 9): a card is alerted on the first day it appears, and
known from the next; on the nightly's first day nothing is new."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from gen_traffic import at
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from detector.nightly.run import NightlyOptions, run_nightly
from detector.nightly.state import NightlyState
from detector.policy import parse_policy

from gen_cases import write_pcap

ZONE = "Asia/Taipei"
POLICY = """\
[site]
name = "nightly-devices"
timezone = "Asia/Taipei"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]
isolated_peers = ["10.8.50.9/32"]   # an internal update server, through the gateway
"""
ISO_MAC, SERVER_MAC, LAPTOP_MAC = "02:08:0a:08:28:1f", "02:08:0a:08:28:05", "3c:22:fb:12:34:56"
GW_MAC, OTHER_GW_MAC = "02:08:0a:08:00:01", "00:1b:21:00:00:99"
DAYS = [dt.date(2026, 2, 3), dt.date(2026, 2, 4), dt.date(2026, 2, 5)]


def _day_frames(day: dt.date, laptop: bool, gateway: str) -> list[tuple[int, bytes]]:
    """10:00: the isolated computer asks for its file server, which answers;
    10:30: the ``gateway`` card delivers the update server's answer (it never
    shows an isolated address of its own); 11:00 (``laptop``): a card with
    Apple's OUI opens SMB to the file server."""
    ten = at(f"{day} 10:00", ZONE)
    frames = [
        (ten, raw(Ether(src=ISO_MAC, dst="ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=ISO_MAC, psrc="10.8.40.31", pdst="10.8.40.5"))),
        (ten + 10**9, raw(Ether(src=SERVER_MAC, dst=ISO_MAC)
                          / ARP(op=2, hwsrc=SERVER_MAC, psrc="10.8.40.5", pdst="10.8.40.31"))),
    ]  # fmt: skip
    update = IP(src="10.8.50.9", dst="10.8.40.31") / TCP(sport=80, dport=49152, flags="SA")
    frames.append((at(f"{day} 10:30", ZONE), raw(Ether(src=gateway, dst=ISO_MAC) / update)))
    if laptop:
        syn = IP(src="10.8.40.77", dst="10.8.40.5") / TCP(sport=50000, dport=445, flags="S")
        frames.append((at(f"{day} 11:00", ZONE), raw(Ether(src=LAPTOP_MAC, dst=SERVER_MAC) / syn)))
    return frames


def test_the_nightly_learns_the_cards_of_isolated_segments(tmp_path: Path) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    # Day 3: another card delivers the update server's traffic.
    plan = ((False, GW_MAC), (True, GW_MAC), (True, OTHER_GW_MAC))
    for day, (laptop, gateway) in zip(DAYS, plan, strict=True):
        path = write_pcap(folder / f"{day}.pcap", 1, _day_frames(day, laptop, gateway))
        written = at(f"{day} 23:59", ZONE)
        os.utime(path, ns=(written, written))
    options = NightlyOptions(captures=str(folder), state=str(tmp_path / "state.db"),
                             report_dir=str(tmp_path / "reports"))  # fmt: skip
    policy = parse_policy(POLICY, "nightly-devices.toml")
    result = run_nightly(options, policy, now_ns=at("2026-02-06 03:00", ZONE))
    assert [d.day for d in result.days] == DAYS
    alerts = {d.day: [(a.rule_id, a.source_ip, a.evidence.get("mac")) for a in d.alerts]
              for d in result.days}  # fmt: skip
    # Day 1: the first day, no baseline yet; day 2: the laptop's card is new;
    # day 3: it was seen on day 2, but the gateway's card is not the one of days
    # 1 and 2 (a new gateway: rogue-router, the update server's address as source).
    assert alerts == {
        DAYS[0]: [],
        DAYS[1]: [("new-device-isolated", "10.8.40.77", LAPTOP_MAC)],
        DAYS[2]: [("rogue-router", "10.8.50.9", OTHER_GW_MAC)],
    }
    state = NightlyState(options.state)
    try:
        assert state.devices_before(str(DAYS[1])) == {ISO_MAC, SERVER_MAC, GW_MAC}
        assert state.devices_before(str(DAYS[2])) == {ISO_MAC, SERVER_MAC, GW_MAC, LAPTOP_MAC}
    finally:
        state.close()
