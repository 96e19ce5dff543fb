"""Network namespaces on one bridge with a mirror port, for replays on real
stacks (tests/test_adversary_lab.py, benchmarks/replay_stacks.py).

The lab: one namespace per host, each with an ``eth0`` whose other end is a
port of the bridge ``br0`` in the monitor namespace; every frame entering the
bridge from a host port is mirrored once (tc mirred on the port's ingress) to
``span0``, whose peer ``span1`` is the mirror (SPAN) port tcpdump records.
Every address is on the one wire (routes to the lab's networks point at
``eth0``), as hosts on one segment. No IPv6 (its router solicitations would
add traffic at random times). Root, ``ip netns``, ``tc`` and tcpdump are needed.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=120)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def missing_tools() -> str | None:
    """Why a lab cannot be built here (None: it can)."""
    import os

    if os.geteuid() != 0:
        return "namespace replays need root (CI runs as root)"
    for tool in ("ip", "tc", "tcpdump"):
        if shutil.which(tool) is None:
            return f"namespace replays need {tool}"
    return None


def teardown(namespaces: Sequence[str]) -> None:
    for ns in namespaces:
        sh("ip", "netns", "del", ns, check=False)


@contextlib.contextmanager
def bridge_lab(
    hosts: Mapping[str, Sequence[str]], monitor: str, routes: Sequence[str], prefix: int = 8
) -> Iterator[None]:
    """The lab of the module docstring: ``hosts`` maps each namespace to its
    addresses (each ``/prefix`` on eth0), ``routes`` the networks every host
    reaches on the wire; torn down on leaving."""
    namespaces = [*hosts, monitor]
    teardown(namespaces)
    try:
        for ns in namespaces:
            sh("ip", "netns", "add", ns)
            for key in ("all", "default"):
                sh(*in_ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"))
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", monitor, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", monitor, "link", "add", "span0", "type", "veth", "peer", "name", "span1")
        for dev in ("br0", "span0", "span1"):
            sh("ip", "-n", monitor, "link", "set", dev, "up")
        for k, (ns, addresses) in enumerate(hosts.items()):
            port = f"p{k}"
            sh("ip", "-n", monitor, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            sh("ip", "-n", monitor, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            for address in addresses:
                sh("ip", "-n", ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
            # Each frame enters the bridge through one port: mirrored once.
            sh("tc", "-n", monitor, "qdisc", "add", "dev", port, "clsact")
            sh("tc", "-n", monitor, "filter", "add", "dev", port, "ingress", "protocol", "all",
               "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev",
               "span0")  # fmt: skip
        for ns in hosts:
            for network in routes:
                sh("ip", "-n", ns, "route", "add", network, "dev", "eth0", check=False)
        yield
    finally:
        teardown(namespaces)


@contextlib.contextmanager
def recording(
    monitor: str, pcap: Path, snaplen: int = 128, expression: str = "ip"
) -> Iterator[None]:
    """tcpdump on the mirror port into ``pcap`` (nanosecond times) while inside."""
    tcpdump = subprocess.Popen(
        in_ns(monitor, "tcpdump", "-i", "span1", "-n", "-U", "-s", str(snaplen), "-B", "65536",
              "--time-stamp-precision", "nano", "-w", str(pcap), expression),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert tcpdump.stderr is not None
        deadline = time.monotonic() + 30
        while "listening on" not in tcpdump.stderr.readline():
            if time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not start")
        yield
        time.sleep(1)  # the last frames through the mirror
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=30)
