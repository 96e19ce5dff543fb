"""quiet-protocol-volume: a protocol that should carry little (ICMP, DNS, NTP)
carrying a lot: data hidden in echo payloads, in queries or in time packets
(issue 20, behaviour 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ...networks import NetworkSet
from ...units import MINUTE_NS, human_bytes
from ..declare import BYTES, COUNT, MINUTES, TRAFFIC, Detection, Networks, Rule, Setting
from .common import (
    conversation,
    episodes,
    groups_reaching,
    ids,
    off_hours_rows,
    threshold_phrase,
    threshold_text,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..context import ScanContext

ICMP, ICMPV6, TCP, UDP = 1, 58, 6, 17
NIGHT_HOURS = 12  # the slow test's span: one night, not a whole weekend
NIGHT_NS = NIGHT_HOURS * 60 * MINUTE_NS
DNS_PORT = 53  # RFC 1035
NTP_PORT = 123  # RFC 5905

# Each protocol: its name in alerts, and the setting holding its threshold.
PROTOCOLS = {
    0: ("ICMP", "icmp_min_bytes"),
    1: ("DNS", "dns_min_bytes"),
    2: ("NTP", "ntp_min_bytes"),
}


DETECTION = Detection(
    rule_id="quiet-protocol-volume",
    title="Bulk data over ICMP, DNS or NTP",
    severity=3,
    catches="≥ 1 MB of ICMP or DNS, or ≥ 100 kB of NTP, sent by one host within 60 minutes "
    "(or 4 times that over one night)",
    why_it_matters=(
        "ICMP, DNS and NTP carry a few small packets; a host sending megabytes over one "
        "of them is almost always a tunnel that carries data past the firewall's rules "
        "for web traffic. Find the program on the host that sends it."
    ),
    description="""\
Pings, name look-ups and time queries are small: a busy computer sends a few
hundred kB of DNS in an hour, and ICMP and NTP much less. Data smuggled in
ICMP echo payloads, in DNS queries (encoded labels, TXT/NULL look-ups) or in
NTP packets makes one of them carry a lot. Fires when a host sends, within any
`span_minutes` (default 60):

- at least `icmp_min_bytes` (default 1 000 000) of ICMP or ICMPv6 to outside
  addresses (echo requests and replies alike: a reply can carry data too);
- at least `dns_min_bytes` (default 1 000 000) to port 53 (UDP or TCP) of any
  address, the site's resolver included: a DNS tunnel passes through it;
- at least `ntp_min_bytes` (default 100 000) to udp/123 of outside addresses.

It also fires when, within any 12 hours of one **off-hours period** (from
the end of one business day to the start of the next: a night, a weekend, a
holiday), the host sent `off_hours_multiple` (default 4) times that
threshold however slowly (4 MB of ICMP in a night, at 0.5 MB an hour;
`egress.off_hours_period` true), unless a 60-minute alert in that period
already told it. Twelve hours, not the whole period: a server's time queries
add up over a 60-hour weekend without being a tunnel.

The alert names the protocol (`egress.protocol`), the bytes and packets, the
average packet size and the address that received most. Spans slide minute
by minute as in `offhours-bulk-egress`; consecutive spans are one alert.
`dns-tunnel` looks at the names themselves; this rule at the volume only, so
a tunnel with short labels is still seen.

Measured (`benchmarks/eval_adversary.py`, seeds 1 and 2, 16 test weeks each, 2,644 benign
host-days with DNS through the site's resolver and NTP all night,
2026-12-06): ICMP tunnels of 1, 3 and 12 MB in 20–60 minutes 16/16; 0.5 MB
is under the threshold. DNS at volume: 5 MB in 30–120 minutes 16/16, 1.5 MB
13/16 (missed when spread over more than about 90 minutes: no 60 minutes
held 1 MB). No false alert with the resolver in `exempt`; without it, the
resolver's own alerts were the tunnels it forwarded, none on ordinary
look-ups.""",
    false_positives=(
        "the site's own resolver forwarding everyone's look-ups, and a monitoring "
        "server pinging many hosts: list them in `exempt`."
    ),
    settings=(
        Setting(
            "icmp_min_bytes",
            BYTES,
            1_000_000,
            "ICMP/ICMPv6 bytes a host must send to outside addresses …",
        ),
        Setting(
            "dns_min_bytes",
            BYTES,
            1_000_000,
            "DNS bytes (to port 53 of any address) a host must send …",
        ),
        Setting(
            "ntp_min_bytes",
            BYTES,
            100_000,
            "NTP bytes (to udp/123 of outside addresses) a host must send …",
        ),
        Setting("span_minutes", MINUTES, 60, "… within this many minutes, …"),
        Setting(
            "off_hours_multiple",
            COUNT,
            4,
            "… or this many times the threshold within any 12 hours of one off-hours "
            "period (a night, a weekend, a holiday), however slowly.",
        ),
        Setting(
            "exempt",
            Networks(),
            (),
            "Hosts whose job it is (resolvers, NTP servers, monitoring): never reported.",
        ),
    ),
    policy_example="""\
[rules.quiet-protocol-volume]
dns_min_bytes = 2_000_000
exempt = ["10.8.0.1/32"]   # the resolver forwards everyone's look-ups""",
)


def _protocol_of(f: pd.DataFrame) -> np.ndarray:
    """0 ICMP (to outside), 1 DNS (queries to any resolver, the site's own
    included: a tunnel passes through it), 2 NTP (to outside), -1 anything else."""
    proto = f["proto"].to_numpy()
    peer_port = f["peer_port"].to_numpy()
    external = f["peer_external"].to_numpy()
    kind = np.full(len(f), -1, dtype=np.int64)
    kind[external & ((proto == ICMP) | (proto == ICMPV6))] = 0
    kind[((proto == UDP) | (proto == TCP)) & (peer_port == DNS_PORT)
         & ~f["peer_local_scope"].to_numpy()] = 1  # fmt: skip
    kind[external & (proto == UDP) & (peer_port == NTP_PORT)] = 2
    return kind


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_quiet_protocol(ctx: ScanContext, rule: Rule) -> list[Alert]:
    span_minutes, span_ns = int(rule["span_minutes"]), rule.ns("span_minutes")
    multiple = int(rule["off_hours_multiple"])
    exempt = NetworkSet(rule["exempt"])
    f = ctx.traffic.frame
    f = f[f["bytes_out"].to_numpy() > 0]
    kind = _protocol_of(f)
    sel = f[kind >= 0].assign(protocol=kind[kind >= 0])
    sel = off_hours_rows(ctx.policy, sel, keep_all=True)
    alerts: list[Alert] = []
    for code, (name, key) in PROTOCOLS.items():
        threshold = int(rule[key])
        of_protocol = sel[sel["protocol"].to_numpy() == code]
        reported: set[tuple[int, int]] = set()  # (host, off-hours period) already told
        fast = groups_reaching(of_protocol, ["host_id"], "bytes_out", span_ns, threshold)
        for host_key, rows in fast.groupby("host_id", sort=False):
            host = ids([host_key])[0]
            if exempt and exempt.contains_text(ctx.traffic.text(host)):
                continue
            for episode in episodes(rows, span_ns, threshold, ctx.gap_ns):
                reported.update((host, int(p)) for p in np.unique(episode["period"]) if p >= 0)
                phrase = threshold_phrase(threshold, span_minutes)
                alerts.append(_alert(ctx, rule, host, name, episode, phrase, {
                    "threshold_bytes": threshold, "span_minutes": span_minutes}))  # fmt: skip
        # Slowly: the same protocol through a night adding up to
        # `off_hours_multiple` times the threshold within NIGHT_HOURS of
        # off-hours minutes (a weekend is not one long sum: a server's time
        # queries add up over 60 hours).
        if of_protocol.empty:
            continue
        slow = of_protocol[of_protocol["off"].to_numpy()]
        goal = multiple * threshold
        slow = groups_reaching(slow, ["host_id", "period"], "bytes_out", NIGHT_NS, goal)
        for group, rows in slow.groupby(["host_id", "period"], sort=False):
            host, period_of = ids(group)
            if (host, period_of) in reported:
                continue
            if exempt and exempt.contains_text(ctx.traffic.text(host)):
                continue
            for episode in episodes(rows, NIGHT_NS, goal, ctx.gap_ns):
                phrase = f"(threshold {threshold_text(goal)} within {NIGHT_HOURS} off-hours hours)"
                alerts.append(_alert(ctx, rule, host, name, episode, phrase, {
                    "threshold_bytes": goal, "off_hours_period": True}))  # fmt: skip
    return alerts


def _alert(
    ctx: ScanContext,
    rule: Rule,
    host: int,
    name: str,
    episode: pd.DataFrame,
    phrase: str,
    evidence: dict[str, object],
) -> Alert:
    by_peer = episode.groupby("peer_id", sort=False)["bytes_out"].sum().sort_values(ascending=False)
    top = int(by_peer.index.to_numpy()[0])
    conv = conversation(ctx, host, top, episode[episode["peer_id"].to_numpy() == top])
    sent = int(episode["bytes_out"].sum())
    packets = int(episode["packets_out"].sum())
    others = len(by_peer) - 1
    to = (
        f"to {conv.destination_ip}"
        if not others
        else f"to {others + 1} addresses (most to {conv.destination_ip})"
    )
    text = (
        f"{conv.source_ip} sent {human_bytes(sent)} of {name} {to} in {packets:,} packets "
        f"(average {sent // max(packets, 1):,} bytes) {conv.when_and_hours(ctx.policy)}; "
        f"{name} should carry little {phrase}"
    )
    evidence = {
        "protocol": name,
        **evidence,
        "protocol_bytes": sent,
        "protocol_packets": packets,
        "destination_count": len(by_peer),
    }
    return conv.alert(rule, text, "egress", evidence)
