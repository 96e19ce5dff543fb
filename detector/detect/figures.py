"""What a payload rule's alert sent and received, from the host's traffic.

Payload rules find a packet (a P2P handshake, an ID number, a messaging
app's name) and know the host, the other side and when, but not how much went
between them: their alerts had ``source.bytes: 0``. :func:`with_traffic_figures`
fills the bytes each side sent (and the packets the other side sent) from the
per-minute traffic of that host and that other side, over the minutes the
alert spans, the same rows the traffic rules sum. ``source_packets`` stays what
the rule counted (the packets it matched), as its message says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..alerts.record import Alert
from ..networks import address_pair
from ..units import MINUTE_NS

if TYPE_CHECKING:
    from ..features.hosts import HostTraffic


def with_traffic_figures(alerts: Sequence[Alert], traffic: HostTraffic) -> list[Alert]:
    """``alerts`` with the bytes a side of an alert with an other side has not
    been given (0) filled in from ``traffic`` (the rest as they are)."""
    frame = traffic.frame
    if not len(frame):
        return list(alerts)
    host_col = frame["host_id"].to_numpy()
    peer_col = frame["peer_id"].to_numpy()
    minute = frame["minute_ns"].to_numpy()
    ids: dict[tuple[int, int], int] = {
        (int(hi), int(lo)): i
        for i, (hi, lo) in enumerate(zip(traffic.address_hi, traffic.address_lo, strict=True))
    }
    out = []
    for alert in alerts:
        if (alert.source_bytes and alert.destination_bytes) or not alert.destination_ip:
            out.append(alert)
            continue
        try:
            host = ids.get(address_pair(alert.source_ip))
            peer = ids.get(address_pair(alert.destination_ip))
        except ValueError:
            host = peer = None
        if host is None or peer is None:
            out.append(alert)
            continue
        first = alert.start_ns - alert.start_ns % MINUTE_NS
        rows = (host_col == host) & (peer_col == peer) & (minute >= first)
        rows &= minute <= alert.end_ns
        sums = {c: int(frame[c].to_numpy()[rows].sum()) for c in
                ("bytes_out", "bytes_in", "packets_in")}  # fmt: skip
        out.append(
            replace(
                alert,
                source_bytes=alert.source_bytes or sums["bytes_out"],
                destination_bytes=alert.destination_bytes or sums["bytes_in"],
                destination_packets=alert.destination_packets or sums["packets_in"],
            )
        )
    return out


__all__ = ["with_traffic_figures"]
