"""sensor-drops and sensor-blind: news about the live sensor itself, raised by the
live engine (detector/pipelines/live.py) when its capture ring overflowed;
sensor-flood: a scan or live sensor under a flood folded outside addresses. Declared
like the rules so alerts, the report and the docs take their words from here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ...flows.fold import FOLD_PACKETS
from ...networks import FOLDED_ADDRESS, address_text, is_folded
from ...units import human_bytes
from ..declare import SENSOR, Detection
from .common import minute_runs

if TYPE_CHECKING:
    from ...alerts.record import Alert
    from ...features.hosts import HostTraffic
    from ...flows.payload import FactOverflow

# About the sensor itself: raised by the live sensor or a scan, not by a check,
# and with no [rules.<id>] table in the policy.
about_the_sensor = partial(Detection, stage=SENSOR, in_policy=False)

DROPS = about_the_sensor(
    rule_id="sensor-drops",
    title="Sensor dropped packets",
    severity=2,
    catches="live only: the capture ring overflowed and packets were lost",
    why_it_matters=(
        "The sensor could not keep up and lost packets: traffic in this span is "
        "under-counted, so a transfer in it may be larger than the alerts say."
    ),
    description="""\
Live capture only (docs/live.md). A window in which the kernel reported
packets dropped (the ring was full) raises one alert about the sensor, with no
host: `observer.hostname` and `observer.ingress.interface.name` say which
sensor, `egress.sensor_dropped_packets` how many packets were lost. Alerts
overlapping the span carry the count too. Raise `--block-count` or `--workers`.""",
)

BLIND = about_the_sensor(
    rule_id="sensor-blind",
    title="Sensor blind outside business hours",
    severity=3,
    catches="live only: packets dropped outside business hours while isolated networks are watched",
    why_it_matters=(
        "The sensor lost packets while nobody was working and it was watching isolated "
        "networks: it cannot vouch that they sent nothing outside in that time."
    ),
    description="""\
Live capture only. When the policy has isolated networks and a span of
dropped packets is not wholly inside business hours, the sensor also raises
this alert: it cannot vouch that the isolated networks sent nothing outside in
that time (`egress.isolated_networks`).""",
)

FLOOD = about_the_sensor(
    rule_id="sensor-flood",
    title="Flood of few-packet outside addresses",
    severity=2,
    catches=(
        "a flood of outside addresses that sent a few packets each (spoofed sources), "
        "or of names past payload inspection's budget"
    ),
    why_it_matters=(
        "A flood of forged outside addresses is the cheapest way to blind a sensor before "
        "an upload. The detector kept counting every byte, but in this span it counted "
        "few-packet outside addresses together, so it cannot say which of them a host "
        "talked to; look at the hosts it names and at what else they did in the span."
    ),
    description="""\
Scans, nightly and live. When the per-minute traffic held passes its budget
(a million conversation-minutes), the detector counts every outside address
that carried at most four packets together as the one address `100::`
(RFC 6666's discard-only prefix), so its memory stays bounded whatever the
flood (docs/architecture.md, "Memory under a flood"). Packets and bytes are
kept exactly per host and minute, so volume rules still see every byte a host
sent, to `100::` among others; only the identity of those few-packet outside
addresses is lost. Each span of minutes in which addresses were folded (gaps
up to one feature window) raises one alert about the sensor, with no host:
`egress.folded_sources` (outside addresses counted together),
`egress.folded_packets` and `egress.folded_bytes` (their packets and bytes,
both directions), and `egress.busiest_destinations` (the hosts they sent the
most packets to).

Payload inspection holds its facts (DNS questions and answers, TLS server
names, HTTP Hosts, ...) up to a budget of about 500,000. Past it, repeats of a
name are dropped and each host keeps at most an equal share of the rest, its
earliest; a host that floods names (a DNS tunnel at full speed, forged
answers) loses its later ones. One more alert about the sensor then says so:
`egress.folded_facts` (facts counted, not kept), `egress.folded_fact_kinds`
(by kind) and `egress.busiest_sources` (the hosts with the most). The name
rules (`dns-tunnel`, `im-app`, the names in alerts) did not see those facts;
the flooding host's earliest names are kept, so its tunnel is still found.

A flood inside the site (a new port a packet between the site's own
addresses) folds no address; when the rows are still over the budget, the
client's port (the higher) of every conversation of at most four packets is
dropped where a hundred such conversations or more reach one pair of
addresses and one service (a scan or a flood, not a browser's dozen), so
their rows of one minute are one.
One alert per span says how many: `egress.folded_conversations`.

The link layer of isolated segments is held up to about 260,000 distinct
facts. A flood of forged network cards (macof fills a switch's table with a
new source address a frame) passes that; the facts of cards seen within one
minute only are then dropped and counted, and one alert (high: someone is
forging cards on an isolated segment) says how many per span:
`egress.folded_cards`. Cards that talk over minutes keep their facts.""",
)


def spans_of(
    per_bin: Mapping[int, int], bin_ns: int, gap_ns: int
) -> Iterator[tuple[int, int, int]]:
    """(first ns, last ns, total) of each span of the bins of ``per_bin``
    (bin → how many), bins closer than ``gap_ns`` in one span."""
    bins = np.array(sorted(per_bin), dtype=np.int64)
    counts = np.array([per_bin[b] for b in bins.tolist()], dtype=np.int64)
    starts = bins * np.int64(bin_ns)
    runs = minute_runs(starts, gap_ns)
    for run in np.unique(runs).tolist():
        inside = runs == run
        yield (
            int(starts[inside][0]),
            int(starts[inside][-1]) + bin_ns - 1,
            int(counts[inside].sum()),
        )


def flood_alerts(
    folded_sources: Mapping[int, int], bin_ns: int, traffic: HostTraffic, gap_ns: int
) -> list[Alert]:
    """One ``sensor-flood`` alert per span of bins in which the activity table
    folded outside addresses (``folded_sources``: bin → addresses folded),
    spans closer than ``gap_ns`` merged; figures from ``traffic``'s rows whose
    peer is the folded stand-in."""
    if not folded_sources:
        return []
    frame = traffic.frame
    folded_ids = np.flatnonzero(is_folded(traffic.address_hi, traffic.address_lo))
    rows = frame[np.isin(frame["peer_id"].to_numpy(), folded_ids)]
    minute = rows["minute_ns"].to_numpy()
    alerts: list[Alert] = []
    for start, end, sources in spans_of(folded_sources, bin_ns, gap_ns):
        span = rows[(minute >= start) & (minute <= end)]
        packets = int(span["packets_in"].sum() + span["packets_out"].sum())
        size = int(span["bytes_in"].sum() + span["bytes_out"].sum())
        by_host = (span["packets_in"] + span["packets_out"]).groupby(span["host_id"]).sum()
        by_host = by_host.sort_values(ascending=False, kind="stable").head(5)
        hosts, counts_of = by_host.index.to_numpy(np.int64), by_host.to_numpy(np.int64)
        busiest = [
            {"ip": traffic.text(int(h)), "packets": int(n)}
            for h, n in zip(hosts.tolist(), counts_of.tolist(), strict=True)
        ]
        named = ", ".join(f"{b['ip']} ({b['packets']:,} packets)" for b in busiest)
        text = (
            f"a flood: {sources:,} outside addresses sent or received at most "
            f"{FOLD_PACKETS} packets each ({packets:,} packets, {human_bytes(size)}); the "
            f"detector counted them together as {FOLDED_ADDRESS} to keep its memory "
            f"bounded, so it cannot say which of them a host talked to in this span"
            + (f"; busiest destinations: {named}" if named else "")
        )
        evidence = {
            "folded_sources": sources,
            "folded_packets": packets,
            "folded_bytes": size,
            "busiest_destinations": busiest,
        }
        alerts.append(FLOOD.alert(FLOOD.severity, start, end, "", text, evidence=evidence))
    return alerts


def fact_flood_alerts(overflow: FactOverflow | None) -> list[Alert]:
    """One ``sensor-flood`` alert when payload inspection counted facts past
    its budget without keeping them (``FactOverflow``), naming the hosts with
    the most."""
    if overflow is None or not len(overflow):
        return []
    total = overflow.total
    kinds: dict[str, int] = {}
    hosts: dict[tuple[int, int], int] = {}
    rows = zip(overflow.hi.tolist(), overflow.lo.tolist(), overflow.kind.tolist(),
               overflow.facts.tolist(), strict=True)  # fmt: skip
    for hi, lo, kind, n in rows:
        kinds[str(kind)] = kinds.get(str(kind), 0) + int(n)
        hosts[(hi, lo)] = hosts.get((hi, lo), 0) + int(n)
    busiest = [
        {"ip": address_text(hi, lo) if (hi, lo) != (0, 0) else "other hosts", "facts": n}
        for (hi, lo), n in sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    ]
    by_kind = ", ".join(f"{k}: {n:,}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    named = ", ".join(f"{b['ip']} ({b['facts']:,})" for b in busiest)
    text = (
        f"a flood of names: payload inspection counted {total:,} facts ({by_kind}) past its "
        f"budget without keeping them, so the name rules (dns-tunnel, im-app, the names in "
        f"alerts) did not see them; each host kept its earliest; busiest: {named}"
    )
    evidence = {
        "folded_facts": total,
        "folded_fact_kinds": dict(sorted(kinds.items())),
        "busiest_sources": busiest,
    }
    start, end = int(overflow.first_ns.min()), int(overflow.last_ns.max())
    return [FLOOD.alert(FLOOD.severity, start, end, "", text, evidence=evidence)]


def card_flood_alerts(folded_cards: Mapping[int, int] | None, gap_ns: int) -> list[Alert]:
    """One ``sensor-flood`` alert (high) per span of minutes in which the link
    inspector dropped the facts of fleeting cards (``folded_cards``: minute →
    cards), spans closer than ``gap_ns`` merged."""
    alerts: list[Alert] = []
    # folded_cards is by minute start (ns): bins of 1 ns, spans to their minute's end.
    for start, last, cards in spans_of(folded_cards or {}, 1, gap_ns):
        end = last + 60_000_000_000 - 1
        text = (
            f"a flood of network cards on isolated segments: {cards:,} Ethernet addresses "
            "each seen within one minute (forged, as macof sends to fill a switch's table) "
            "were counted, not kept, to keep memory bounded; new-device-isolated and the "
            "ARP rules did not see them: look for the port they came in on"
        )
        alerts.append(FLOOD.alert(3, start, end, "", text, evidence={"folded_cards": cards}))
    return alerts


def port_flood_alerts(
    folded_conversations: Mapping[int, int] | None, bin_ns: int, gap_ns: int
) -> list[Alert]:
    """One ``sensor-flood`` alert per span of bins in which the activity table
    dropped the ports of few-packet conversations (``folded_conversations``:
    bin → conversation-minutes), spans closer than ``gap_ns`` merged."""
    alerts: list[Alert] = []
    for start, end, conversations in spans_of(folded_conversations or {}, bin_ns, gap_ns):
        text = (
            f"a flood of conversations: {conversations:,} conversation-minutes of at most "
            f"{FOLD_PACKETS} packets each were counted per pair of addresses and service, "
            "without their client port, to keep memory bounded (packets and bytes are exact; "
            "which client ports they used is lost): a flood from a new port a packet"
        )
        evidence = {"folded_conversations": conversations}
        alerts.append(FLOOD.alert(FLOOD.severity, start, end, "", text, evidence=evidence))
    return alerts
