"""Regression captures per rule (issue 19, item 2): for every declared rule with
a check, small captures that must fire it and near-misses that must not.

Each case is a function that writes its capture (classic pcap, built with
scapy and written by ``gen_cases.write_pcap``) into a directory and returns
the paths; the ``@case`` above it gives the rule, FIRE or NEAR_MISS, the policy
text, exactly the alerts of the rule the scan must raise (rule id, host,
destination and the bytes or counts worked out by hand in the docstring), and
every OTHER rule the scan must raise (usually none), so a case also catches a
rule that starts firing where it should not. ``tests/test_rule_cases.py`` runs
them all, from the declarations in ``detector/detect/rules/``: a rule with a
check and no cases fails there.

A near-miss is the fire case's traffic shaped just under the threshold or just
outside the condition (one byte under, one connection fewer, a label one
character shorter, the same upload in business hours, ...).

Traffic cases are headers-only captures (snap length 96, as a mirror port
recording headers records them) whose frames were large on the wire: the
detector counts the wire length, so 50 MB is 1,000 frames of 50,000 bytes
(segments as a host with TCP segmentation offload hands them to its NIC,
captured on the host) and each file stays well under 1 MB.

All times are local to the site's zone (Asia/Taipei, UTC+8, no daylight
saving); Wednesday 2026-02-04 is a working day, business hours 08:30-17:30.

Write every case to a directory (a capture and a policy per case) to replay
one with ``egress-detector scan --policy``::

    python tests/rule_cases.py /tmp/rule-cases
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_traffic import at
from scapy.compat import raw
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_RA, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import mac2str
from test_payload import tw_id

from gen_cases import eth, tcp4, udp4, write_pcap

FIRE = "fire"
NEAR_MISS = "near-miss"
KINDS = (FIRE, NEAR_MISS)

ETHERNET = 1
SNAPLEN = 96  # headers-only: every frame of a traffic case is cut to its headers
SEGMENT = 50_000  # wire bytes of one large frame
ZONE = "Asia/Taipei"
MS = 1_000_000

SITE = """\
[site]
name = "rule-cases"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]
isolated_peers = ["10.8.40.5/32"]
"""

# The gateway chatters all night (it keeps every hour of the night in the
# capture) and is exempt from always-on.
ALWAYS_ON_SITE = SITE + '\n[rules.always-on]\nexempt = ["10.8.0.1/32"]\n'

ISO = "10.8.40.31"  # an isolated computer
ISO_PEER = "10.8.40.5"  # the isolated segment's file server (isolated_peers)
PC = "10.8.10.44"  # an ordinary office computer
PC2 = "10.8.10.45"
GATEWAY = "10.8.0.1"  # the site's gateway and resolver
OUT = "203.0.113.140"  # somewhere outside
NEW_OUT = "198.51.100.77"  # an outside address first reached in the capture
MAIL = "192.0.2.20"  # an outside mail server
BEACON_OUT = "203.0.113.50"
TRACKER = "198.51.100.20"  # a BitTorrent peer
FORMS = "198.51.100.9"  # an outside web form over plain HTTP


# -- what a case is ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """One alert the scan must raise: its rule, host and destination, and the
    alert's ``attributes`` (``source_bytes``, ``start_ns``, ...) and ``evidence``
    entries with their exact values."""

    rule_id: str
    source_ip: str
    destination_ip: str | None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str  # the function's name; the capture is written as <name>.pcap
    rule_id: str
    kind: str  # FIRE or NEAR_MISS
    write: Callable[[Path], list[Path]]  # writes the capture(s) into a directory
    policy: str  # the policy's TOML text
    alerts: tuple[Expect, ...]  # exactly the rule's alerts (none for a near-miss)
    others: frozenset[str]  # every other rule id the scan raises, no more

    @property
    def doc(self) -> str:
        return (self.write.__doc__ or "").strip()


# rule id -> kind -> cases
CASES: dict[str, dict[str, list[Case]]] = {}


def case(
    rule_id: str,
    kind: str,
    *,
    alerts: tuple[Expect, ...] = (),
    others: tuple[str, ...] = (),
    policy: str = SITE,
) -> Callable[[Callable[[Path], list[Path]]], Callable[[Path], list[Path]]]:
    """Register the decorated capture writer as a case of ``rule_id``."""
    assert kind in KINDS, kind
    assert kind == FIRE or not alerts, "a near-miss expects no alert of its rule"
    assert kind == NEAR_MISS or alerts, "a fire case names the alerts it must raise"
    assert rule_id not in others

    def register(write: Callable[[Path], list[Path]]) -> Callable[[Path], list[Path]]:
        entry = Case(write.__name__, rule_id, kind, write, policy, alerts, frozenset(others))
        CASES.setdefault(rule_id, {}).setdefault(kind, []).append(entry)
        return write

    return register


# -- writing captures ----------------------------------------------------------------------

Packet = tuple[int, bytes, int]  # (time ns, captured frame, wire length)


def _pcap(d: Path, name: str, packets: list[Packet], snaplen: int = SNAPLEN) -> list[Path]:
    """One classic pcap (nanosecond, Ethernet), frames in time order, each cut to ``snaplen``."""
    d.mkdir(parents=True, exist_ok=True)
    packets = sorted(packets, key=lambda p: p[0])
    return [write_pcap(d / f"{name}.pcap", ETHERNET, packets, nano=True, snaplen=snaplen)]


def _segments(total: int) -> list[int]:
    """Wire lengths adding up to ``total``: SEGMENT each, the remainder last."""
    whole, rest = divmod(total, SEGMENT)
    return [SEGMENT] * whole + ([rest] if rest else [])


def _upload(frame: bytes, start_ns: int, every_ns: int, total: int) -> list[Packet]:
    """``total`` bytes on the wire in frames of SEGMENT, one every ``every_ns`` from ``start_ns``."""
    return [(start_ns + i * every_ns, frame, w) for i, w in enumerate(_segments(total))]


def _local(text: str) -> int:
    return at(text, ZONE)


def _payload(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    return eth(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA") / Raw(data))


def _question(src: str, name: str, sport: int = 5555) -> bytes:
    """A DNS question (type A) from ``src`` to the site's resolver."""
    question = DNS(rd=1, qd=DNSQR(qname=name, qtype="A"))
    return eth(IP(src=src, dst=GATEWAY) / UDP(sport=sport, dport=53) / question)


# == isolated-egress =======================================================================

ISOLATED_SYN_AT = _local("2026-02-04 10:00:05")


@case("isolated-egress", FIRE, alerts=(
    Expect("isolated-egress", ISO, OUT, {
        "source_bytes": 60, "source_packets": 1, "destination_port": 443, "severity": 4,
        "direction": "egress", "start_ns": ISOLATED_SYN_AT, "end_ns": ISOLATED_SYN_AT}),
))  # fmt: skip
def isolated_syn_to_outside(d: Path) -> list[Path]:
    """The isolated computer 10.8.40.31 sends one TCP SYN to 203.0.113.140:443,
    Wed 10:00:05 (business hours and size do not matter): 1 packet of 60 bytes
    on the wire (54 captured). One critical alert, direction egress."""
    syn = tcp4(ISO, OUT, 49152, 443, "S")
    return _pcap(d, "isolated_syn_to_outside", [(ISOLATED_SYN_AT, syn, 60)])


@case("isolated-egress", NEAR_MISS)
def isolated_syn_to_isolated_peer(d: Path) -> list[Path]:
    """The same SYN, to the isolated segment's file server 10.8.40.5 (listed in
    ``isolated_peers``): the isolated zone's own business. No alert."""
    syn = tcp4(ISO, ISO_PEER, 49152, 443, "S")
    return _pcap(d, "isolated_syn_to_isolated_peer", [(ISOLATED_SYN_AT, syn, 60)])


@case("isolated-egress", NEAR_MISS)
def isolated_mdns_multicast(d: Path) -> list[Path]:
    """One mDNS packet from the isolated computer to 224.0.0.251:5353, Wed
    10:00:05: multicast stays on its wire (``ignore_local_scope``). No alert."""
    mdns = udp4(ISO, "224.0.0.251", 5353, 5353, n=32)
    return _pcap(d, "isolated_mdns_multicast", [(ISOLATED_SYN_AT, mdns, len(mdns))])


# == offhours-bulk-egress ==================================================================

NIGHT = _local("2026-02-04 02:00")
OFFICE = _local("2026-02-04 10:00")
EVERY_600MS = 600 * MS


@case("offhours-bulk-egress", FIRE, alerts=(
    Expect("offhours-bulk-egress", PC, OUT, {
        "source_bytes": 50_000_000, "source_packets": 1_000, "destination_port": 443,
        "start_ns": NIGHT, "end_ns": NIGHT + 999 * EVERY_600MS, "severity": 3},
        {"threshold_bytes": 50_000_000, "span_minutes": 60, "destination_count": 1}),
))  # fmt: skip
def offhours_50mb_at_night(d: Path) -> list[Path]:
    """10.8.10.44 sends 1,000 frames of 50,000 bytes = 50,000,000 bytes (exactly
    the 50 MB threshold) to 203.0.113.140:443, one every 0.6 s from Wed 02:00:00
    to 02:09:59.4 (= 02:00 + 999 x 0.6 s). 50 MB < 100 MB: not a
    bulk-upload-new-destination."""
    seg = tcp4(PC, OUT, 49152, 443, "A")
    return _pcap(d, "offhours_50mb_at_night", _upload(seg, NIGHT, EVERY_600MS, 50_000_000))


@case("offhours-bulk-egress", NEAR_MISS, others=("low-and-slow-egress",))
def offhours_one_byte_under_at_night(d: Path) -> list[Path]:
    """The same night upload one byte short: 999 x 50,000 + 49,999 =
    49,999,999 bytes. No alert of this rule; low-and-slow-egress tells it (one
    transfer of 10 MB or more to an address new to the site)."""
    seg = tcp4(PC, OUT, 49152, 443, "A")
    packets = _upload(seg, NIGHT, EVERY_600MS, 49_999_999)
    return _pcap(d, "offhours_one_byte_under_at_night", packets)


@case("offhours-bulk-egress", NEAR_MISS)
def offhours_50mb_in_business_hours(d: Path) -> list[Path]:
    """The same 50,000,000 bytes at Wed 10:00:00-10:09:59.4, business hours. No alert."""
    seg = tcp4(PC, OUT, 49152, 443, "A")
    return _pcap(d, "offhours_50mb_in_business_hours",
                 _upload(seg, OFFICE, EVERY_600MS, 50_000_000))  # fmt: skip


@case("offhours-bulk-egress", NEAR_MISS)
def offhours_call_to_a_meeting_server_three_others_use(d: Path) -> list[Path]:
    """A video call in the evening: 10.8.10.44 sends 1,000 frames of 50,000
    bytes = 50,000,000 bytes over udp/3478 to 198.51.100.77 from Wed 19:00:00
    to 19:09:59.4 and gets each back 0.3 s later; three other hosts
    (10.8.10.45-47) used the address at 10:00 (``shared_by_hosts`` 3). No
    alert (and 50 MB < bulk-upload-new-destination's 100 MB)."""
    evening = _local("2026-02-04 19:00")
    return _pcap(d, "offhours_call_to_a_meeting_server_three_others_use",
                 _call(evening, 50_000_000, CALLERS))  # fmt: skip


# == bulk-upload-new-destination ===========================================================

UPLOAD = _local("2026-02-04 11:00")
DAY_BEFORE = _local("2026-02-03 11:00")


@case("bulk-upload-new-destination", FIRE, alerts=(
    Expect("bulk-upload-new-destination", PC, NEW_OUT, {
        "source_bytes": 100_000_000, "source_packets": 2_000, "destination_port": 443,
        "start_ns": UPLOAD, "end_ns": UPLOAD + 1_999 * EVERY_600MS, "severity": 3},
        {"threshold_bytes": 100_000_000, "span_minutes": 60, "first_contact": UPLOAD}),
))  # fmt: skip
def upload_100mb_to_new_destination(d: Path) -> list[Path]:
    """10.8.10.44 uploads 2,000 frames of 50,000 bytes = 100,000,000 bytes (exactly
    the threshold) to 198.51.100.77:443, first reached by this upload's first
    frame, one every 0.6 s from Wed 11:00:00 to 11:19:59.4 (business hours: not
    an off-hours upload)."""
    seg = tcp4(PC, NEW_OUT, 49152, 443, "A")
    return _pcap(d, "upload_100mb_to_new_destination",
                 _upload(seg, UPLOAD, EVERY_600MS, 100_000_000))  # fmt: skip


@case("bulk-upload-new-destination", NEAR_MISS)
def upload_one_byte_under_to_new_destination(d: Path) -> list[Path]:
    """The same upload one byte short: 1,999 x 50,000 + 49,999 = 99,999,999 bytes. No alert."""
    seg = tcp4(PC, NEW_OUT, 49152, 443, "A")
    return _pcap(d, "upload_one_byte_under_to_new_destination",
                 _upload(seg, UPLOAD, EVERY_600MS, 99_999_999))  # fmt: skip


@case("bulk-upload-new-destination", NEAR_MISS)
def upload_100mb_to_destination_known_for_24h(d: Path) -> list[Path]:
    """The same 100,000,000 bytes, but 10.8.10.44 first reached 198.51.100.77
    exactly 24 hours before (one 60-byte SYN, Tue 11:00:00): no longer new
    (``new_for_hours`` 24: new while less than 24 h after the first contact). No alert."""
    syn = tcp4(PC, NEW_OUT, 49151, 443, "S")
    seg = tcp4(PC, NEW_OUT, 49152, 443, "A")
    packets = [(DAY_BEFORE, syn, 60), *_upload(seg, UPLOAD, EVERY_600MS, 100_000_000)]
    return _pcap(d, "upload_100mb_to_destination_known_for_24h", packets)


# A video call is as large as an upload and goes to a meeting server new to a
# host that never called; what tells it from an upload whose server echoes the
# data back is that other hosts of the site use the same server.
CALLERS = ["10.8.10.45", "10.8.10.46", "10.8.10.47"]  # other hosts of the office
CALL_AT = _local("2026-02-04 10:00")
ECHO_AFTER = 300 * MS


def _call(start: int, total: int, callers: list[str]) -> list[Packet]:
    """10.8.10.44 sends ``total`` bytes over udp/3478 to 198.51.100.77 in frames
    of 50,000 bytes, one every 0.6 s from ``start``, and 198.51.100.77 sends each
    one back 0.3 s later (as much received as sent); before, at Wed 10:00:00,
    each of ``callers`` sends one 60-byte frame to 198.51.100.77:3478 and gets
    one back 0.3 s later."""
    out = udp4(PC, NEW_OUT, 50000, 3478, n=32)
    back = udp4(NEW_OUT, PC, 3478, 50000, n=32)
    packets = _upload(out, start, EVERY_600MS, total)
    packets += [(t + ECHO_AFTER, back, w) for t, _, w in packets]
    for k, caller in enumerate(callers):
        t = CALL_AT + k * ONE_SECOND
        packets += [(t, udp4(caller, NEW_OUT, 50000, 3478, n=32), 60),
                    (t + ECHO_AFTER, udp4(NEW_OUT, caller, 3478, 50000, n=32), 60)]  # fmt: skip
    return packets


@case("bulk-upload-new-destination", FIRE, alerts=(
    Expect("bulk-upload-new-destination", PC, NEW_OUT, {
        "source_bytes": 100_000_000, "source_packets": 2_000, "destination_port": 3478,
        "destination_bytes": 100_000_000, "destination_packets": 2_000, "transport": "udp",
        "start_ns": UPLOAD, "end_ns": UPLOAD + 1_999 * EVERY_600MS + ECHO_AFTER},
        {"threshold_bytes": 100_000_000, "first_contact": UPLOAD}),
))  # fmt: skip
def upload_100mb_echoed_by_a_server_two_others_use(d: Path) -> list[Path]:
    """The echo dodge: 10.8.10.44 uploads 2,000 frames of 50,000 bytes =
    100,000,000 bytes over udp/3478 to 198.51.100.77 (first reached by the
    upload, Wed 11:00:00 to 11:19:59.4) and the server sends every frame back
    (100,000,000 bytes, 2,000 frames, the last at 11:19:59.7): two-way like a
    call, but only two other hosts (10.8.10.45 and .46, one frame each way at
    10:00:00 and 10:00:01) used the address, one fewer than ``shared_by_hosts``
    (3). The upload counts."""
    return _pcap(d, "upload_100mb_echoed_by_a_server_two_others_use",
                 _call(UPLOAD, 100_000_000, CALLERS[:2]))  # fmt: skip


@case("bulk-upload-new-destination", NEAR_MISS)
def call_100mb_to_a_meeting_server_three_others_use(d: Path) -> list[Path]:
    """The same two-way 100,000,000 bytes each way, with a third other host
    (10.8.10.47, at 10:00:02) using 198.51.100.77: a call to a meeting server
    the office shares (``shared_by_hosts`` 3; the host got back 100 % of what
    it sent, ``two_way_percent`` 50). No alert."""
    return _pcap(d, "call_100mb_to_a_meeting_server_three_others_use",
                 _call(UPLOAD, 100_000_000, CALLERS))  # fmt: skip


# == mail-egress ===========================================================================

MAIL_AT = _local("2026-02-04 10:00")
EVERY_300MS = 300 * MS


def _isolated_mail(to: str) -> list[Packet]:
    frame = tcp4(ISO, to, 40000, 587, "PA")
    return [(MAIL_AT + i * 500 * MS, frame, 1_200) for i in range(10)]


@case("mail-egress", FIRE, others=("isolated-egress",), alerts=(
    Expect("mail-egress", ISO, MAIL, {
        "source_bytes": 12_000, "source_packets": 10, "destination_port": 587, "severity": 4,
        "start_ns": MAIL_AT, "end_ns": MAIL_AT + 9 * 500 * MS},
        {"host_role": "isolated"}),
))  # fmt: skip
def mail_from_isolated_host(d: Path) -> list[Path]:
    """The isolated computer 10.8.40.31 sends mail to 192.0.2.20:587 (submission),
    Wed 10:00:00-10:00:04.5: 10 frames of 1,200 bytes = 12,000 bytes. Any size
    fires (critical); the same packets are also an isolated-egress."""
    return _pcap(d, "mail_from_isolated_host", _isolated_mail(MAIL))


@case("mail-egress", NEAR_MISS)
def mail_from_isolated_host_to_isolated_peer(d: Path) -> list[Path]:
    """The same mail to the isolated segment's server 10.8.40.5:587 (``isolated_peers``):
    it stays inside the isolated zone. No alert of any rule."""
    return _pcap(d, "mail_from_isolated_host_to_isolated_peer", _isolated_mail(ISO_PEER))


@case("mail-egress", FIRE, alerts=(
    Expect("mail-egress", PC, MAIL, {
        "source_bytes": 10_000_000, "source_packets": 200, "destination_port": 25,
        "severity": 2, "start_ns": MAIL_AT, "end_ns": MAIL_AT + 199 * EVERY_300MS},
        {"threshold_bytes": 10_000_000, "host_role": "internal"}),
))  # fmt: skip
def large_mail_10mb(d: Path) -> list[Path]:
    """10.8.10.44 sends 200 frames of 50,000 bytes = 10,000,000 bytes (exactly the
    10 MB threshold) to 192.0.2.20:25, one every 0.3 s from Wed 10:00:00 to
    10:00:59.7: one episode, medium."""
    seg = tcp4(PC, MAIL, 40001, 25, "A")
    return _pcap(d, "large_mail_10mb", _upload(seg, MAIL_AT, EVERY_300MS, 10_000_000))


@case("mail-egress", NEAR_MISS)
def large_mail_one_byte_under(d: Path) -> list[Path]:
    """The same mail one byte short: 199 x 50,000 + 49,999 = 9,999,999 bytes. No alert."""
    seg = tcp4(PC, MAIL, 40001, 25, "A")
    return _pcap(d, "large_mail_one_byte_under",
                 _upload(seg, MAIL_AT, EVERY_300MS, 9_999_999))  # fmt: skip


# == always-on =============================================================================

EVENING = _local("2026-02-03 23:30")
TEN_MINUTES = 600 * 10**9


def _night(quiet: tuple[str, str] | None) -> list[Packet]:
    """10.8.10.44 sends one NTP packet (60 bytes) to 10.8.0.1 every 10 minutes from
    Tue 23:30 to Wed 06:30 (43 packets), except in ``quiet`` (local times);
    the gateway 10.8.0.1 asks 192.0.2.123 the time every 10 minutes from 23:35
    to 06:25 (42 packets), so every hour of the night is in the capture."""
    lo, hi = (_local(quiet[0]), _local(quiet[1])) if quiet else (0, 0)
    pc = udp4(PC, GATEWAY, 123, 123, n=6)
    gw = udp4(GATEWAY, "192.0.2.123", 123, 123, n=6)
    packets = []
    for k in range(43):
        t = EVENING + k * TEN_MINUTES
        if not lo <= t < hi:
            packets.append((t, pc, 60))
    packets += [(EVENING + 5 * 60 * 10**9 + k * TEN_MINUTES, gw, 60) for k in range(42)]
    return packets


@case("always-on", FIRE, policy=ALWAYS_ON_SITE, alerts=(
    Expect("always-on", PC, None, {
        "source_packets": 36, "severity": 1, "start_ns": _local("2026-02-04 00:00"),
        "end_ns": _local("2026-02-04 06:00") - 1},
        {"nights": 1, "night_start": "00:00", "night_end": "06:00"}),
))  # fmt: skip
def on_all_night(d: Path) -> list[Path]:
    """10.8.10.44 sends in every hour of the night Wed 00:00-06:00: the packets
    at 00:00, 00:10, ..., 05:50 are 6 x 6 = 36. The gateway is exempt."""
    return _pcap(d, "on_all_night", _night(None))


@case("always-on", NEAR_MISS, policy=ALWAYS_ON_SITE)
def on_all_night_but_one_silent_hour(d: Path) -> list[Path]:
    """The same night with 10.8.10.44 silent from 03:00 to 03:59 (its 6 packets
    03:00-03:50 left out; the gateway's keep the hour in the capture). No alert."""
    return _pcap(d, "on_all_night_but_one_silent_hour", _night(("2026-02-04 03:00",
                                                                 "2026-02-04 04:00")))  # fmt: skip


# == beacon ================================================================================

BEACON_AT = _local("2026-02-04 09:00")
PERIOD = 200 * 10**9


def _beacons(count: int) -> list[Packet]:
    """``count`` connections from 10.8.10.44 to 203.0.113.50:443, one every 200 s
    from Wed 09:00:00, each a new source port: SYN (60 bytes), SYN-ACK back
    (60, +50 ms), one segment of 1,440 bytes (+100 ms): 1,500 bytes sent each."""
    packets = []
    for i in range(count):
        t, port = BEACON_AT + i * PERIOD, 20000 + i
        packets.append((t, tcp4(PC, BEACON_OUT, port, 443, "S"), 60))
        packets.append((t + 50 * MS, tcp4(BEACON_OUT, PC, 443, port, "SA"), 60))
        packets.append((t + 100 * MS, tcp4(PC, BEACON_OUT, port, 443, "PA"), 1_440))
    return packets


@case("beacon", FIRE, alerts=(
    Expect("beacon", PC, BEACON_OUT, {
        "source_bytes": 30_000, "start_ns": BEACON_AT, "end_ns": BEACON_AT + 19 * PERIOD,
        "severity": 2},
        {"connections": 20, "period_seconds": 200.0, "jitter_seconds": 0.0,
         "beacon_score": 1.0}),
))  # fmt: skip
def beacon_20_connections(d: Path) -> list[Path]:
    """20 connections (the minimum), every 200 s exactly, 1,500 bytes each
    (20 x 1,500 = 30,000 sent), from 09:00:00 to 10:03:20 (19 x 200 s = 3,800 s
    >= 1 hour). Intervals and sizes all equal: score 1.0 (>= 0.80)."""
    return _pcap(d, "beacon_20_connections", _beacons(20))


@case("beacon", NEAR_MISS)
def beacon_19_connections(d: Path) -> list[Path]:
    """The same beacon, 19 connections (09:00:00 to 10:00:00: 18 x 200 s = 3,600 s,
    still 1 hour): one connection under ``min_connections``. No alert."""
    return _pcap(d, "beacon_19_connections", _beacons(19))


# == im-app ================================================================================

APP_AT = _local("2026-02-04 10:00")


def _apps(name: str, telegram: str) -> list[Packet]:
    question = _question(PC, name)
    syn = tcp4(PC2, telegram, 50000, 443, "S")
    return [(APP_AT, question, len(question)), (APP_AT + 10**9, syn, 60)]


@case("im-app", FIRE, alerts=(
    Expect("im-app", PC, None, {"severity": 2, "start_ns": APP_AT},
           {"app": "line", "seen": ["obs.line-apps.com"]}),
    Expect("im-app", PC2, None, {"severity": 2, "start_ns": APP_AT + 10**9},
           {"app": "telegram", "seen": ["149.154.175.254"]}),
))  # fmt: skip
def line_name_and_telegram_range(d: Path) -> list[Path]:
    """Wed 10:00:00 10.8.10.44 asks DNS for obs.line-apps.com (under LINE's
    line-apps.com); 10:00:01 10.8.10.45 sends a SYN to 149.154.175.254:443, the
    last address of Telegram's 149.154.160.0/20. Two alerts, one per (host, app)."""
    return _pcap(d, "line_name_and_telegram_range",
                 _apps("obs.line-apps.com", "149.154.175.254"), snaplen=65535)  # fmt: skip


@case("im-app", NEAR_MISS)
def lookalike_name_and_address_past_the_range(d: Path) -> list[Path]:
    """The same two, just outside: obs.offline-apps.com (ends in the letters
    "line-apps.com" but is another domain) and 149.154.176.1 (first past the
    /20). No alert."""
    return _pcap(d, "lookalike_name_and_address_past_the_range",
                 _apps("obs.offline-apps.com", "149.154.176.1"), snaplen=65535)  # fmt: skip


# == p2p ===================================================================================

P2P_AT = _local("2026-02-04 10:00")
HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + b"i" * 20 + b"p" * 20  # BEP 3, 68 bytes


def _one(name: str, frame: bytes) -> Callable[[Path], list[Path]]:
    def write(d: Path) -> list[Path]:
        return _pcap(d, name, [(P2P_AT, frame, len(frame))], snaplen=65535)

    return write


@case("p2p", FIRE, alerts=(
    Expect("p2p", PC, TRACKER, {"source_packets": 1, "transport": "tcp", "direction": "egress",
                                "start_ns": P2P_AT, "severity": 3},
           {"signatures": ["BitTorrent handshake"], "peers": 1, "packets_matched": 1}),
))  # fmt: skip
def bittorrent_handshake(d: Path) -> list[Path]:
    """10.8.10.44:50000 sends the 68-byte BitTorrent handshake (0x13 "BitTorrent
    protocol", 8 reserved bytes, info hash, peer id) to 198.51.100.20:6881, Wed
    10:00: one signature, one peer, one packet."""
    return _one("bittorrent_handshake", _payload(PC, TRACKER, 50000, 6881, HANDSHAKE))(d)


@case("p2p", NEAR_MISS)
def bittorrent_handshake_wrong_length_byte(d: Path) -> list[Path]:
    """The same handshake whose first byte (the protocol name's length, 19) is 18:
    one byte off the signature. No alert."""
    frame = _payload(PC, TRACKER, 50000, 6881, b"\x12" + HANDSHAKE[1:])
    return _one("bittorrent_handshake_wrong_length_byte", frame)(d)


@case("p2p", NEAR_MISS)
def bittorrent_handshake_between_outside_peers(d: Path) -> list[Path]:
    """The exact handshake, from 198.51.100.30 to 198.51.100.20: traffic passing the
    mirror port with no internal host in it. No alert."""
    frame = _payload("198.51.100.30", TRACKER, 50000, 6881, HANDSHAKE)
    return _one("bittorrent_handshake_between_outside_peers", frame)(d)


# == cleartext-pii =========================================================================

FORM_AT = _local("2026-02-04 10:00")
NATIONAL_ID = tw_id("A12345678")  # A123456789, the textbook example


def _form(number: str) -> bytes:
    body = f"name=chen&id={number}".encode()
    head = f"POST /apply HTTP/1.1\r\nHost: forms.example\r\nContent-Length: {len(body)}\r\n\r\n"
    return _payload(PC, FORMS, 40001, 80, head.encode() + body)


@case("cleartext-pii", FIRE, alerts=(
    Expect("cleartext-pii", PC, FORMS, {"source_packets": 1, "destination_port": 80,
                                        "start_ns": FORM_AT, "severity": 3},
           {"pii_count": 1, "pii_masked": ["A12*****89"]}),
))  # fmt: skip
def id_number_in_http_post(d: Path) -> list[Path]:
    """10.8.10.44 posts a form with the national ID A123456789 (valid check digit)
    to 198.51.100.9:80 in plain HTTP, Wed 10:00: one number, shown masked."""
    return _one("id_number_in_http_post", _form(NATIONAL_ID))(d)


@case("cleartext-pii", NEAR_MISS)
def id_number_with_wrong_check_digit(d: Path) -> list[Path]:
    """The same form with A123456788: the check digit of A12345678 is 9, not 8,
    so it is not an ID number. No alert."""
    assert NATIONAL_ID[-1] != "8"
    return _one("id_number_with_wrong_check_digit", _form(NATIONAL_ID[:-1] + "8"))(d)


# == dns-tunnel ============================================================================

TUNNEL_AT = _local("2026-02-04 10:00")
# 30 bytes of a document in base32, lower case: a 48-character label of host-name bytes.
LABEL_48 = base64.b32encode(b"page 1 of 26: classified memo.").decode().lower()
assert len(LABEL_48) == 48 and "=" not in LABEL_48


@case("dns-tunnel", FIRE, alerts=(
    Expect("dns-tunnel", PC, None, {"source_packets": 1, "start_ns": TUNNEL_AT, "severity": 3},
           {"domains": ["example.net"], "queries": 1, "unique_subdomains": 1,
            "name_bytes": 48 + len(".example.net"), "txt_null_queries": 0}),
))  # fmt: skip
def dns_label_of_48(d: Path) -> list[Path]:
    """10.8.10.44 asks the resolver 10.8.0.1 for <48 base32 characters>.example.net
    (type A), Wed 10:00: one label of ``min_label_length`` (48) is encoded data.
    One question, one domain, a 60-character name."""
    question = _question(PC, f"{LABEL_48}.example.net")
    return _pcap(d, "dns_label_of_48", [(TUNNEL_AT, question, len(question))], snaplen=65535)


@case("dns-tunnel", NEAR_MISS)
def dns_label_of_47(d: Path) -> list[Path]:
    """The same question with the label one character shorter (47). No alert."""
    question = _question(PC, f"{LABEL_48[:47]}.example.net")
    return _pcap(d, "dns_label_of_47", [(TUNNEL_AT, question, len(question))], snaplen=65535)


# == low-and-slow-egress ===================================================================

SLOW_FROM = _local("2026-02-04 00:00")
HALF_HOUR = 1_800 * 10**9
SLOW_OUT = "203.0.113.77"  # a new outside address


def _slow(frame: bytes, last_transfer: int) -> list[Packet]:
    """8 transfers from 10.8.10.44, one every 30 minutes from Wed 00:00:00 to
    03:30:00, each 25 frames of 50,000 bytes (1,250,000 bytes) one every 0.6 s,
    the last ``last_transfer`` bytes."""
    packets: list[Packet] = []
    for k in range(8):
        total = 1_250_000 if k < 7 else last_transfer
        packets += _upload(frame, SLOW_FROM + k * HALF_HOUR, EVERY_600MS, total)
    return packets


@case("low-and-slow-egress", FIRE, alerts=(
    Expect("low-and-slow-egress", PC, SLOW_OUT, {
        "source_bytes": 10_000_000, "source_packets": 200, "destination_port": 443,
        "transport": "udp", "start_ns": SLOW_FROM,
        "end_ns": SLOW_FROM + 7 * HALF_HOUR + 24 * EVERY_600MS, "severity": 3},
        {"threshold_bytes": 10_000_000, "transfers": 8, "span_minutes": 210,
         "largest_transfer_bytes": 1_250_000,
         "transfer_starts": ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00",
                             "03:30"]}),
))  # fmt: skip
def slow_udp443_through_the_night(d: Path) -> list[Path]:
    """10.8.10.44 sends 8 x 1,250,000 = 10,000,000 bytes (exactly ``min_bytes``)
    over UDP (QUIC's udp/443) to 203.0.113.77, one transfer of 25 frames every
    30 minutes from Wed 00:00:00 to 03:30:14.4 (= 03:30 + 24 x 0.6 s): 8
    transfers (``min_transfers`` 2), nothing received. No 60 minutes hold more
    than 2,500,000 bytes (offhours-bulk-egress needs 50 MB); every silence is
    longer than 15 minutes, so there is no long connection either."""
    frame = udp4(PC, SLOW_OUT, 50000, 443, n=32)
    return _pcap(d, "slow_udp443_through_the_night", _slow(frame, 1_250_000))


@case("low-and-slow-egress", NEAR_MISS)
def slow_upload_one_byte_under(d: Path) -> list[Path]:
    """The same night with the last transfer one byte short: 7 x 1,250,000 +
    1,249,999 = 9,999,999 bytes. No alert."""
    frame = udp4(PC, SLOW_OUT, 50000, 443, n=32)
    return _pcap(d, "slow_upload_one_byte_under", _slow(frame, 1_249_999))


@case("low-and-slow-egress", NEAR_MISS)
def slow_upload_in_business_hours(d: Path) -> list[Path]:
    """The same 10,000,000 bytes from Wed 09:00:00 to 12:30:14.4: business hours. No alert."""
    frame = udp4(PC, SLOW_OUT, 50000, 443, n=32)
    shift = _local("2026-02-04 09:00") - SLOW_FROM
    packets = [(t + shift, f, w) for t, f, w in _slow(frame, 1_250_000)]
    return _pcap(d, "slow_upload_in_business_hours", packets)


@case("low-and-slow-egress", NEAR_MISS)
def slow_upload_in_one_transfer(d: Path) -> list[Path]:
    """The same 10,000,000 bytes to 203.0.113.77 in one go, 200 frames one every
    0.6 s from Wed 00:00:00 (to 00:01:59.4), to an address 10.8.10.44 first
    reached exactly 24 hours before (one 60-byte frame, Tue 00:00:00: no longer
    new, ``new_for_hours`` 24): one transfer, under ``min_transfers`` (2), and
    under offhours-bulk-egress's 50 MB. No alert."""
    frame = udp4(PC, SLOW_OUT, 50000, 443, n=32)
    first = (SLOW_FROM - 24 * 3_600 * 10**9, udp4(PC, SLOW_OUT, 50001, 443, n=18), 60)
    return _pcap(d, "slow_upload_in_one_transfer",
                 [first, *_upload(frame, SLOW_FROM, EVERY_600MS, 10_000_000)])  # fmt: skip


@case("low-and-slow-egress", FIRE, alerts=(
    Expect("low-and-slow-egress", PC, SLOW_OUT, {
        "source_bytes": 10_000_000, "source_packets": 200, "destination_port": 443,
        "transport": "udp", "start_ns": SLOW_FROM, "end_ns": SLOW_FROM + 199 * EVERY_600MS},
        {"threshold_bytes": 10_000_000, "transfers": 1, "largest_transfer_bytes": 10_000_000,
         "transfer_starts": ["00:00"]}),
))  # fmt: skip
def one_upload_to_an_address_new_to_the_site(d: Path) -> list[Path]:
    """The same 10,000,000 bytes in one go (Wed 00:00:00 to 00:01:59.4) to
    203.0.113.77, which 10.8.10.44 first reached with this upload and no other
    host used: one transfer is enough to an address new to the site (issue 20,
    item 7: the udp/443 upload beside a nightly backup)."""
    frame = udp4(PC, SLOW_OUT, 50000, 443, n=32)
    return _pcap(d, "one_upload_to_an_address_new_to_the_site",
                 _upload(frame, SLOW_FROM, EVERY_600MS, 10_000_000))  # fmt: skip


# == spread-egress =========================================================================

SPREAD_AT = _local("2026-02-04 11:00")
SPREAD_TO = ["198.51.100.101", "198.51.100.102", "198.51.100.103", "198.51.100.104"]
FIVE_MINUTES = 300 * 10**9


def _spread(sizes: list[int]) -> list[Packet]:
    """10.8.10.44 uploads ``sizes[k]`` bytes to 198.51.100.10(k+1):443, each
    upload starting 5 minutes after the one before from Wed 11:00:00, in frames
    of 50,000 bytes one every 0.6 s."""
    packets: list[Packet] = []
    for k, size in enumerate(sizes):
        frame = tcp4(PC, SPREAD_TO[k], 40000 + k, 443, "A")
        packets += _upload(frame, SPREAD_AT + k * FIVE_MINUTES, EVERY_600MS, size)
    return packets


@case("spread-egress", FIRE, alerts=(
    Expect("spread-egress", PC, SPREAD_TO[0], {
        "source_bytes": 10_000_000, "source_packets": 200, "severity": 3,
        "start_ns": SPREAD_AT, "end_ns": SPREAD_AT + 3 * FIVE_MINUTES + 49 * EVERY_600MS},
        {"threshold_bytes": 10_000_000, "span_minutes": 30, "destination_count": 4,
         "networks": ["198.51.100.0/24"],
         "destinations": [{"ip": ip, "bytes": 2_500_000} for ip in SPREAD_TO]}),
))  # fmt: skip
def spread_over_four_new_addresses(d: Path) -> list[Path]:
    """10.8.10.44 sends 2,500,000 bytes (50 frames) to each of four addresses of
    198.51.100.0/24 it never reached before, at 11:00, 11:05, 11:10 and 11:15
    (the last ends 11:15:29.4): 10,000,000 bytes (exactly ``min_bytes``) to 4
    destinations (``min_destinations``) within 30 minutes. Each is far under
    bulk-upload-new-destination's 100 MB."""
    return _pcap(d, "spread_over_four_new_addresses", _spread([2_500_000] * 4))


@case("spread-egress", NEAR_MISS)
def spread_over_three_new_addresses(d: Path) -> list[Path]:
    """The same 10,000,000 bytes over three new addresses (3,350,000 + 3,350,000
    + 3,300,000): one destination fewer than ``min_destinations``. No alert."""
    return _pcap(d, "spread_over_three_new_addresses",
                 _spread([3_350_000, 3_350_000, 3_300_000]))  # fmt: skip


@case("spread-egress", NEAR_MISS)
def spread_with_one_destination_under_500kb(d: Path) -> list[Path]:
    """Four new addresses: the first three receive 3,333,334 bytes each
    (10,000,002, over ``min_bytes``), the fourth 499,999, one byte under
    ``min_bytes_each``: only three destinations count. No alert."""
    return _pcap(d, "spread_with_one_destination_under_500kb",
                 _spread([3_333_334, 3_333_334, 3_333_334, 499_999]))  # fmt: skip


# == quiet-protocol-volume =================================================================

ICMP_AT = _local("2026-02-04 04:00")
ONE_SECOND = 10**9


def _echoes(total: int) -> list[Packet]:
    """ICMP echo requests of 1,000 bytes on the wire from 10.8.10.44 to
    203.0.113.140, one a second from Wed 04:00:00, adding up to ``total``."""
    frame = eth(IP(src=PC, dst=OUT) / ICMP(type=8, id=7, seq=1) / (b"x" * 32))
    sizes = [1_000] * (total // 1_000) + ([total % 1_000] if total % 1_000 else [])
    return [(ICMP_AT + k * ONE_SECOND, frame, w) for k, w in enumerate(sizes)]


@case("quiet-protocol-volume", FIRE, alerts=(
    Expect("quiet-protocol-volume", PC, OUT, {
        "source_bytes": 1_000_000, "source_packets": 1_000, "transport": "icmp",
        "start_ns": ICMP_AT, "end_ns": ICMP_AT + 999 * ONE_SECOND, "severity": 3},
        {"protocol": "ICMP", "threshold_bytes": 1_000_000, "span_minutes": 60,
         "protocol_bytes": 1_000_000, "protocol_packets": 1_000, "destination_count": 1}),
))  # fmt: skip
def icmp_echo_tunnel_1mb(d: Path) -> list[Path]:
    """10.8.10.44 sends 1,000 ICMP echo requests of 1,000 bytes = 1,000,000 bytes
    (exactly ``icmp_min_bytes``) to 203.0.113.140, one a second from Wed 04:00:00
    to 04:16:39."""
    return _pcap(d, "icmp_echo_tunnel_1mb", _echoes(1_000_000))


@case("quiet-protocol-volume", NEAR_MISS)
def icmp_echo_one_byte_under(d: Path) -> list[Path]:
    """The same pings, the last one byte short: 999,999 bytes. No alert."""
    return _pcap(d, "icmp_echo_one_byte_under", _echoes(999_999))


SLOW_ICMP_AT = _local("2026-02-04 00:00")
HOUR = 3_600 * 10**9


def _slow_echoes(last: int) -> list[Packet]:
    """8 bursts of ICMP echo requests from 10.8.10.44 to 203.0.113.140, one an
    hour from Wed 00:00:00 to 07:00:00, each 500 frames of 1,000 bytes one a
    second (500,000 bytes, 00:00:00-00:08:19), the last burst ``last`` bytes."""
    packets: list[Packet] = []
    for k in range(8):
        burst = _echoes(500_000 if k < 7 else last)
        packets += [(t - ICMP_AT + SLOW_ICMP_AT + k * HOUR, f, w) for t, f, w in burst]
    return packets


@case("quiet-protocol-volume", FIRE, others=("always-on",), alerts=(
    Expect("quiet-protocol-volume", PC, OUT, {
        "source_bytes": 4_000_000, "source_packets": 4_000, "transport": "icmp",
        "start_ns": SLOW_ICMP_AT, "end_ns": SLOW_ICMP_AT + 7 * HOUR + 499 * ONE_SECOND},
        {"protocol": "ICMP", "threshold_bytes": 4_000_000, "off_hours_period": True,
         "protocol_bytes": 4_000_000, "protocol_packets": 4_000}),
))  # fmt: skip
def icmp_half_a_megabyte_an_hour_all_night(d: Path) -> list[Path]:
    """10.8.10.44 pings 203.0.113.140 with 500,000 bytes an hour for 8 hours, Wed
    00:00-07:08:19 (before business hours at 08:30): no 60 minutes hold 1 MB, but
    the night adds up to 4,000,000 bytes, ``off_hours_multiple`` (4) times
    ``icmp_min_bytes``. Sending in every hour of 00:00-06:00, the host is also
    an always-on."""
    return _pcap(d, "icmp_half_a_megabyte_an_hour_all_night", _slow_echoes(500_000))


@case("quiet-protocol-volume", NEAR_MISS, others=("always-on",))
def icmp_all_night_one_byte_under(d: Path) -> list[Path]:
    """The same night with the last burst one byte short: 3,999,999 bytes. No alert."""
    return _pcap(d, "icmp_all_night_one_byte_under", _slow_echoes(499_999))


# == pivot-chain ===========================================================================

PIVOT_AT = _local("2026-02-04 02:00")
PIVOT_OUT = "198.51.100.66"


def _pivot(second_leg: int, after_ns: int = 600 * 10**9, at: int = PIVOT_AT) -> list[Packet]:
    """10.8.40.31 (isolated) sends 1,000,000 bytes (20 frames of 50,000, one every
    0.6 s) to 10.8.10.44:445 from ``at`` (Wed 02:00:00); ``after_ns`` later (10
    minutes) 10.8.10.44 sends ``second_leg`` bytes to 198.51.100.66:443 the same way."""
    first = tcp4(ISO, PC, 49800, 445, "A")
    second = tcp4(PC, PIVOT_OUT, 49900, 443, "A")
    return [*_upload(first, at, EVERY_600MS, 1_000_000),
            *_upload(second, at + after_ns, EVERY_600MS, second_leg)]  # fmt: skip


@case("pivot-chain", FIRE, alerts=(
    Expect("pivot-chain", ISO, PIVOT_OUT, {
        "source_bytes": 1_000_000, "source_packets": 20, "destination_bytes": 500_000,
        "destination_packets": 10, "start_ns": PIVOT_AT,
        "end_ns": PIVOT_AT + 600 * 10**9 + 9 * EVERY_600MS, "severity": 4,
        "direction": "egress"},
        {"chain": [ISO, PC, PIVOT_OUT], "within_minutes": 60}),
))  # fmt: skip
def isolated_to_bridge_to_outside(d: Path) -> list[Path]:
    """The isolated computer hands 1,000,000 bytes (exactly ``min_bytes``) to the
    internet computer 10.8.10.44 over SMB, 02:00:00-02:00:11.4; ten minutes
    later 10.8.10.44 sends 500,000 bytes (50 %, exactly ``min_percent``) to
    198.51.100.66:443. One critical chain alert; the first leg's isolated-egress
    alert is folded into it as a note."""
    return _pcap(d, "isolated_to_bridge_to_outside", _pivot(500_000))


@case("pivot-chain", FIRE, alerts=(
    Expect("pivot-chain", ISO, PIVOT_OUT, {
        "source_bytes": 1_000_000, "destination_bytes": 500_000,
        "start_ns": PIVOT_AT + 5 * 10**9, "end_ns": PIVOT_AT + 25 * 10**9 + 9 * EVERY_600MS,
        "severity": 4},
        {"chain": [ISO, PC, PIVOT_OUT]}),
))  # fmt: skip
def isolated_to_bridge_to_outside_in_one_minute(d: Path) -> list[Path]:
    """The same chain within one minute: the first leg 02:00:05-02:00:16.4, the
    second 20 s after it began (02:00:25-02:00:30.4). The minute bin of the
    second leg (02:00:00) starts before the first leg: the second leg is found
    by its packets' times, not its minute. One chain alert."""
    return _pcap(d, "isolated_to_bridge_to_outside_in_one_minute",
                 _pivot(500_000, after_ns=20 * 10**9, at=PIVOT_AT + 5 * 10**9))  # fmt: skip


@case("pivot-chain", NEAR_MISS, others=("isolated-egress",))
def isolated_to_bridge_less_than_half_out(d: Path) -> list[Path]:
    """The same, with the second leg one byte short of half: 499,999 bytes.
    No chain; the first leg stays an isolated-egress alert of its own."""
    return _pcap(d, "isolated_to_bridge_less_than_half_out", _pivot(499_999))


# == long-connection =======================================================================

HELD_FROM = _local("2026-02-04 00:00")


def _held(every_minutes: int, count: int) -> list[Packet]:
    """One connection 10.8.10.44:51000 -> 203.0.113.140:443: a 100-byte segment
    every ``every_minutes`` from Wed 00:00:00, ``count`` of them."""
    frame = tcp4(PC, OUT, 51000, 443, "PA", n=20)
    return [(HELD_FROM + k * every_minutes * 60 * 10**9, frame, 100) for k in range(count)]


@case("long-connection", FIRE, alerts=(
    Expect("long-connection", PC, OUT, {
        "source_bytes": 1_900, "source_packets": 19, "destination_port": 443,
        "start_ns": HELD_FROM, "end_ns": HELD_FROM + 3 * 3_600 * 10**9, "severity": 1},
        {"kind": "long", "longest_seconds": 10_800, "cumulative_seconds": 10_800,
         "connections": 1, "max_idle_minutes": 15}),
))  # fmt: skip
def connection_held_three_hours(d: Path) -> list[Path]:
    """A keep-alive every 10 minutes on one connection from Wed 00:00 to 03:00:
    19 segments of 100 bytes, active exactly 3 hours (``min_hours``), never
    silent for more than 15 minutes."""
    return _pcap(d, "connection_held_three_hours", _held(10, 19))


@case("long-connection", NEAR_MISS)
def connection_silent_16_minutes_between(d: Path) -> list[Path]:
    """The same connection with a segment every 16 minutes, 00:00 to 03:12 (13
    segments): each silence is longer than ``max_idle_minutes``, so every
    segment is a connection of its own, 0 s long. No alert."""
    return _pcap(d, "connection_silent_16_minutes_between", _held(16, 13))


# == side channels on isolated segments (issue 20, item 9) ===================================
# Link-layer cases: frames at their full length (DHCP options lie past a headers-only
# snap length), Wed 2026-02-04 10:00 local; the isolated computer's card is ISO_MAC.

ISO_MAC = "02:08:0a:08:28:1f"
LAPTOP_MAC = "3c:22:fb:12:34:56"  # Apple's OUI: a laptop plugged into the isolated segment
PI_MAC = "b8:27:eb:00:00:99"  # Raspberry Pi Foundation's: a small computer as a DHCP server
GW_MAC = "02:08:0a:08:00:01"  # the site's gateway
LAPTOP = "10.8.40.77"
SIDE_AT = _local("2026-02-04 10:00")
KNOWN_SITE = SITE + f'\n[rules.new-device-isolated]\nknown_devices = ["{ISO_MAC}", "{GW_MAC}"]\n'


def _link(d: Path, name: str, frames: list[bytes]) -> list[Path]:
    """``frames`` one second apart from SIDE_AT, captured whole."""
    return _pcap(d, name, [(SIDE_AT + i * 1_000 * MS, f, len(f)) for i, f in enumerate(frames)],
                 snaplen=65535)  # fmt: skip


def _arp(src_mac: str, op: int, sender: str, target: str) -> bytes:
    return raw(Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff")
               / ARP(op=op, hwsrc=src_mac, psrc=sender, pdst=target))  # fmt: skip


def _laptop_arrives() -> list[bytes]:
    return [
        eth(IP(src=ISO, dst=ISO_PEER) / TCP(sport=49152, dport=445, flags="S"), src=ISO_MAC),
        eth(IP(src=LAPTOP, dst=ISO_PEER) / TCP(sport=50000, dport=445, flags="S"), src=LAPTOP_MAC),
        _arp(LAPTOP_MAC, 1, LAPTOP, ISO_PEER),
    ]


@case("new-device-isolated", FIRE, policy=KNOWN_SITE, alerts=(
    Expect("new-device-isolated", LAPTOP, None, {
        "start_ns": SIDE_AT + 1_000 * MS, "end_ns": SIDE_AT + 2_000 * MS, "severity": 3},
        {"mac": LAPTOP_MAC, "vendor": "Apple", "network": "10.8.40.0/24", "addresses": [LAPTOP]}),
))  # fmt: skip
def laptop_on_isolated_segment(d: Path) -> list[Path]:
    """The isolated computer (a known card) opens SMB to its file server at
    10:00:00; at 10:00:01 a card with Apple's OUI, 10.8.40.77, does the same
    and at 10:00:02 asks in ARP for the file server: one alert for that card,
    from 10:00:01 (its SYN) to 10:00:02 (its ARP request), vendor Apple."""
    return _link(d, "laptop_on_isolated_segment", _laptop_arrives())


@case("new-device-isolated", NEAR_MISS,
      policy=KNOWN_SITE.replace(f'"{GW_MAC}"]', f'"{GW_MAC}", "{LAPTOP_MAC.upper()}"]'))  # fmt: skip
def laptop_listed_in_known_devices(d: Path) -> list[Path]:
    """The same frames, with the laptop's card in ``known_devices`` (written in
    capitals: MACs compare in any case). No alert."""
    return _link(d, "laptop_listed_in_known_devices", _laptop_arrives())


def _dhcp_reply(message: str, server: str, offered: str, client_mac: str, src_mac: str) -> bytes:
    return raw(
        Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src=server, dst="255.255.255.255")
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, yiaddr=offered, chaddr=mac2str(client_mac))
        / DHCP(options=[("message-type", message), ("server_id", server), ("router", server),
                        "end"])
    )  # fmt: skip


def _rogue_dhcp() -> list[bytes]:
    return [
        _dhcp_reply("offer", "10.8.40.99", "10.8.40.150", ISO_MAC, PI_MAC),
        _dhcp_reply("ack", "10.8.40.99", "10.8.40.150", ISO_MAC, PI_MAC),
    ]


@case("rogue-dhcp-server", FIRE, alerts=(
    Expect("rogue-dhcp-server", "10.8.40.99", None, {
        "source_packets": 2, "start_ns": SIDE_AT, "end_ns": SIDE_AT + 1_000 * MS,
        "severity": 4, "source_port": 67},
        {"mac": PI_MAC, "vendor": "Raspberry Pi Foundation", "offered": ["10.8.40.150"],
         "routers": ["10.8.40.99"], "clients": [ISO_MAC]}),
))  # fmt: skip
def dhcp_server_on_isolated_segment(d: Path) -> list[Path]:
    """A Raspberry Pi (10.8.40.99) answers the isolated computer's DHCP request:
    an OFFER at 10:00:00 and an ACK at 10:00:01 of 10.8.40.150, naming itself
    as router. The policy names no DHCP server: one critical alert, 2 replies."""
    return _link(d, "dhcp_server_on_isolated_segment", _rogue_dhcp())


@case("rogue-dhcp-server", NEAR_MISS,
      policy=SITE + '\n[rules.rogue-dhcp-server]\nservers = ["10.8.40.99"]\n')  # fmt: skip
def dhcp_server_named_in_policy(d: Path) -> list[Path]:
    """The same replies from the server the policy names in ``servers``. No alert."""
    return _link(d, "dhcp_server_named_in_policy", _rogue_dhcp())


@case("rogue-dhcp-server", NEAR_MISS)
def dhcp_server_on_office_segment(d: Path) -> list[Path]:
    """An OFFER and an ACK on the office segment (server 10.8.10.2, offering
    10.8.10.150 to an office card): not an isolated segment. No alert."""
    return _link(d, "dhcp_server_on_office_segment", [
        _dhcp_reply("offer", "10.8.10.2", "10.8.10.150", "02:08:0a:08:0a:2c", PI_MAC),
        _dhcp_reply("ack", "10.8.10.2", "10.8.10.150", "02:08:0a:08:0a:2c", PI_MAC),
    ])  # fmt: skip


def _advert(src_mac: str, lifetime: int) -> bytes:
    return raw(Ether(src=src_mac, dst="33:33:00:00:00:01")
               / IPv6(src="fe80::3e22:fbff:fe12:3456", dst="ff02::1")
               / ICMPv6ND_RA(routerlifetime=lifetime))  # fmt: skip


def _advert_and_claims() -> list[bytes]:
    return [
        eth(IP(src=ISO, dst=ISO_PEER) / TCP(sport=49152, dport=445, flags="S"), src=LAPTOP_MAC),
        _advert(LAPTOP_MAC, 1800),
        _arp(GW_MAC, 2, "10.8.40.1", ISO),
        _arp(LAPTOP_MAC, 2, "10.8.40.1", ISO),
    ]


@case("rogue-router", FIRE, alerts=(
    Expect("rogue-router", "fe80::3e22:fbff:fe12:3456", None, {
        "source_packets": 1, "start_ns": SIDE_AT + 1_000 * MS, "severity": 4},
        {"sign": "router-advertisement", "mac": LAPTOP_MAC, "vendor": "Apple",
         "router_lifetime_s": 1800}),
    Expect("rogue-router", "10.8.40.1", None, {
        "source_packets": 2, "start_ns": SIDE_AT + 3_000 * MS, "end_ns": SIDE_AT + 3_000 * MS},
        {"sign": "address-claimed-twice", "macs": [GW_MAC, LAPTOP_MAC],
         "vendors": ["locally administered (random or virtual, no vendor)", "Apple"]}),
))  # fmt: skip
def router_advert_and_gateway_claimed_twice(d: Path) -> list[Path]:
    """A laptop card (Apple) sends from an isolated address at 10:00:00 (so it
    is on the segment), a router advertisement (lifetime 1,800 s) at 10:00:01,
    and at 10:00:03 answers ARP for the gateway 10.8.40.1, which the gateway's
    own card answered at 10:00:02: two alerts, the advertisement and the
    address claimed by two cards from 10:00:03 (the second card's claim)."""
    return _link(d, "router_advert_and_gateway_claimed_twice", _advert_and_claims())


@case("rogue-router", FIRE, others=("isolated-egress",), alerts=(
    Expect("rogue-router", OUT, None, {"start_ns": SIDE_AT + 1_000 * MS, "direction": "inbound"},
           {"sign": "second-gateway", "mac": LAPTOP_MAC, "gateways": [GW_MAC, LAPTOP_MAC],
            "sources": [OUT]}),
))  # fmt: skip
def second_gateway_into_isolated_segment(d: Path) -> list[Path]:
    """203.0.113.140 answers the isolated computer through the gateway's card
    at 10:00:00, then through the laptop's at 10:00:01: a second card delivers
    traffic from beyond the segment (and isolated-egress fires for the
    exchange itself). One alert, the laptop's card."""
    synack = IP(src=OUT, dst=ISO) / TCP(sport=443, dport=49152, flags="SA")
    return _link(d, "second_gateway_into_isolated_segment",
                 [eth(synack, src=GW_MAC), eth(synack, src=LAPTOP_MAC)])  # fmt: skip


@case("rogue-router", NEAR_MISS, others=("isolated-egress",),
      policy=SITE + f'\n[rules.rogue-router]\nrouters = ["{LAPTOP_MAC}"]\n'
      f'gateways = ["{GW_MAC}", "{LAPTOP_MAC}"]\n')  # fmt: skip
def routers_named_in_policy(d: Path) -> list[Path]:
    """The advertisement from a card named in ``routers``, the gateway's address
    answered twice by its own card only, and traffic from outside delivered by
    the two cards named in ``gateways``. No alert."""
    synack = IP(src=OUT, dst=ISO) / TCP(sport=443, dport=49152, flags="SA")
    return _link(d, "routers_named_in_policy", [
        *_advert_and_claims()[:3], _arp(GW_MAC, 2, "10.8.40.1", ISO),
        eth(synack, src=GW_MAC), eth(synack, src=LAPTOP_MAC),
    ])  # fmt: skip


@case("rogue-router", NEAR_MISS)
def address_handed_to_another_card_later(d: Path) -> list[Path]:
    """10.8.40.60 claimed in ARP by one card at 10:00 and by another at 11:01
    (61 minutes later, past ``claim_minutes``: a lease handed to another
    computer), neither of them a gateway. No alert."""
    first = _arp(ISO_MAC, 1, "10.8.40.60", ISO_PEER)
    later = _arp(LAPTOP_MAC, 1, "10.8.40.60", ISO_PEER)
    return _pcap(d, "address_handed_to_another_card_later",
                 [(SIDE_AT, first, len(first)), (SIDE_AT + 61 * 60_000 * MS, later, len(later))],
                 snaplen=65535)  # fmt: skip


@case("arp-outside-segment", FIRE, alerts=(
    Expect("arp-outside-segment", ISO, "8.8.8.8", {
        "source_packets": 4, "start_ns": SIDE_AT, "end_ns": SIDE_AT + 3_000 * MS, "severity": 3},
        {"mac": ISO_MAC, "targets": ["8.8.8.8", PC], "requests": 4}),
))  # fmt: skip
def isolated_host_arps_beyond_segment(d: Path) -> list[Path]:
    """The isolated computer asks in ARP for 8.8.8.8 at 10:00:00, 10:00:01 and
    10:00:03, and for the office computer 10.8.10.44 at 10:00:02: one alert,
    4 requests, 8.8.8.8 first."""
    return _link(d, "isolated_host_arps_beyond_segment", [
        _arp(ISO_MAC, 1, ISO, "8.8.8.8"), _arp(ISO_MAC, 1, ISO, "8.8.8.8"),
        _arp(ISO_MAC, 1, ISO, PC), _arp(ISO_MAC, 1, ISO, "8.8.8.8"),
    ])  # fmt: skip


@case("arp-outside-segment", NEAR_MISS)
def isolated_host_arps_on_segment(d: Path) -> list[Path]:
    """The isolated computer asks for its file server and the gateway 10.8.40.1,
    announces itself (sender and target its own address) and asks for a
    link-local 169.254.1.1; an office computer asks for 8.8.8.8. No alert."""
    return _link(d, "isolated_host_arps_on_segment", [
        _arp(ISO_MAC, 1, ISO, ISO_PEER), _arp(ISO_MAC, 1, ISO, "10.8.40.1"),
        _arp(ISO_MAC, 1, ISO, ISO), _arp(ISO_MAC, 1, ISO, "169.254.1.1"),
        _arp("02:08:0a:08:0a:2c", 1, PC, "8.8.8.8"),
    ])  # fmt: skip


# -- writing them all ------------------------------------------------------------------------


def write_all(root: Path) -> list[tuple[Case, list[Path], Path]]:
    """Every case's capture(s) and policy under ``root/<rule>/<kind>/``."""
    written = []
    for rule_id, kinds in CASES.items():
        for kind, cases in kinds.items():
            for c in cases:
                d = root / rule_id / kind
                paths = c.write(d)
                policy = d / f"{c.name}.toml"
                policy.write_text(c.policy)
                written.append((c, paths, policy))
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/rule_cases.py DIRECTORY")
    for c, paths, policy in write_all(Path(sys.argv[1])):
        size = sum(p.stat().st_size for p in paths)
        print(f"{c.rule_id:28} {c.kind:9} {size:8,} B  egress-detector scan --policy {policy} "
              + " ".join(str(p) for p in paths))  # fmt: skip
