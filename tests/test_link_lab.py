"""Side channels on an isolated segment (issue 20, item 9) from real network
stacks: two network namespaces on one veth pair are the segment, the isolated
computer 10.8.40.31 (``el-iso-PID``) and a laptop someone plugged in,
10.8.40.77 with an Apple card (``el-lap-PID``). tcpdump records on the isolated
computer's port; the capture is scanned.

What happens on the wire:

- the isolated computer sends a datagram to the laptop (its kernel ARPs for
  it, the laptop's kernel answers): the laptop's card is on the segment;
- the isolated computer has been given an on-link route to 198.51.100.0/24
  (a documentation range standing for the internet side) and sends a
  datagram to 198.51.100.7: its kernel ARPs for an address beyond the segment;
- the laptop sends, with scapy, a DHCP OFFER of 10.8.40.150 naming itself as
  router, and an IPv6 router advertisement (lifetime 1,800 s).

The figures the alerts must carry (how many ARP requests, which addresses) are
read from the capture by scapy, an independent reader. Root, ``ip netns`` and
tcpdump are needed; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy

ISO_NS, LAPTOP_NS = (f"el-{role}-{os.getpid()}" for role in ("iso", "lap"))
ISO, LAPTOP, BEYOND = "10.8.40.31", "10.8.40.77", "198.51.100.7"
ISO_MAC, LAPTOP_MAC = "02:08:0a:08:28:1f", "3c:22:fb:12:34:56"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="namespace replays need root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="namespace replays need `ip netns`"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="namespace replays need tcpdump"),
]

POLICY = f"""\
[site]
name = "link-lab"
timezone = "UTC"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]

[rules.new-device-isolated]
known_devices = ["{ISO_MAC}"]
"""

SEND = f"""
from scapy.all import BOOTP, DHCP, ICMPv6ND_RA, IP, UDP, Ether, IPv6, mac2str, sendp
offer = (Ether(src="{LAPTOP_MAC}", dst="ff:ff:ff:ff:ff:ff")
         / IP(src="{LAPTOP}", dst="255.255.255.255") / UDP(sport=67, dport=68)
         / BOOTP(op=2, yiaddr="10.8.40.150", chaddr=mac2str("{ISO_MAC}"))
         / DHCP(options=[("message-type", "offer"), ("server_id", "{LAPTOP}"),
                         ("router", "{LAPTOP}"), "end"]))
advert = (Ether(src="{LAPTOP_MAC}", dst="33:33:00:00:00:01")
          / IPv6(src="fe80::3e22:fbff:fe12:3456", dst="ff02::1")
          / ICMPv6ND_RA(routerlifetime=1800))
sendp([offer, advert], iface="eth0", verbose=False)
"""


UDP_TO = """
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("{}", 9))
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def _teardown() -> None:
    for ns in (ISO_NS, LAPTOP_NS):
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory):
    _teardown()
    path = tmp_path_factory.mktemp("link-lab") / "segment.pcap"
    try:
        for ns in (ISO_NS, LAPTOP_NS):
            sh("ip", "netns", "add", ns)
            for key in ("all", "default"):  # no IPv6 chatter of the kernels themselves
                sh(*in_ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"))
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ISO_NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", LAPTOP_NS)  # fmt: skip
        for ns, address, mac in ((ISO_NS, ISO, ISO_MAC), (LAPTOP_NS, LAPTOP, LAPTOP_MAC)):
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        # The bridge's first step: an on-link route to the internet side.
        sh("ip", "-n", ISO_NS, "route", "add", "198.51.100.0/24", "dev", "eth0")
        dump = subprocess.Popen(
            in_ns(ISO_NS, "tcpdump", "-i", "eth0", "-U", "-s", "0", "-w", str(path)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for _ in range(50):  # tcpdump says "listening on" once it captures
            time.sleep(0.1)
            if path.exists():
                break
        time.sleep(0.5)
        # A datagram to each (no ping here): the kernel ARPs before sending; the
        # laptop answers with its own card (ICMP port unreachable), 198.51.100.7
        # never does (the kernel asks 3 times, a second apart, then gives up).
        sh(*in_ns(ISO_NS, sys.executable, "-c", UDP_TO.format(LAPTOP)))
        sh(*in_ns(ISO_NS, sys.executable, "-c", UDP_TO.format(BEYOND)))
        sh(*in_ns(LAPTOP_NS, sys.executable, "-c", SEND))
        time.sleep(4.0)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
        yield path
    finally:
        _teardown()


def _truth(path: Path) -> dict[str, int]:
    """What scapy reads in the capture."""
    from scapy.all import ARP, BOOTP, ICMPv6ND_RA, rdpcap

    packets = rdpcap(str(path))
    return {
        "arp_beyond": sum(
            1
            for p in packets
            if ARP in p
            and p[ARP].op == 1
            and p[ARP].pdst == BEYOND
            and p[ARP].psrc == ISO  # fmt: skip
        ),
        "offers": sum(1 for p in packets if BOOTP in p and p[BOOTP].op == 2),
        "adverts": sum(1 for p in packets if ICMPv6ND_RA in p),
        "laptop_frames": sum(1 for p in packets if p.src == LAPTOP_MAC),
    }


def test_rogue_laptop_on_isolated_segment(capture: Path) -> None:
    truth = _truth(capture)
    assert truth["arp_beyond"] >= 1 and truth["offers"] == 1 and truth["adverts"] == 1
    result = scan_captures([capture], parse_policy(POLICY, "link-lab.toml"))
    by_rule = {a.rule_id: a for a in result.alerts}
    assert sorted(by_rule) == [
        "arp-outside-segment", "new-device-isolated", "rogue-dhcp-server", "rogue-router",
    ]  # fmt: skip
    device = by_rule["new-device-isolated"]
    assert (device.source_ip, device.evidence["mac"], device.evidence["vendor"]) == (
        LAPTOP, LAPTOP_MAC, "Apple")  # fmt: skip
    assert device.evidence["addresses"] == [LAPTOP]
    arp = by_rule["arp-outside-segment"]
    assert (arp.source_ip, arp.destination_ip, arp.source_packets) == (
        ISO, BEYOND, truth["arp_beyond"])  # fmt: skip
    assert arp.evidence["mac"] == ISO_MAC and arp.evidence["targets"] == [BEYOND]
    dhcp = by_rule["rogue-dhcp-server"]
    assert (dhcp.source_ip, dhcp.source_packets) == (LAPTOP, truth["offers"])
    assert dhcp.evidence == {"mac": LAPTOP_MAC, "vendor": "Apple", "offered": ["10.8.40.150"],
                             "routers": [LAPTOP], "clients": [ISO_MAC]}  # fmt: skip
    router = by_rule["rogue-router"]
    assert (router.source_ip, router.source_packets) == ("fe80::3e22:fbff:fe12:3456", 1)
    assert router.evidence["sign"] == "router-advertisement"
    assert router.evidence["router_lifetime_s"] == 1800
