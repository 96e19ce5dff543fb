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

import numpy as np

from ..alerts.record import Alert
from ..networks import address_pair
from ..units import MINUTE_NS

if TYPE_CHECKING:
    from ..features.hosts import HostTraffic


def with_traffic_figures(alerts: Sequence[Alert], traffic: HostTraffic) -> list[Alert]:
    """``alerts`` with the bytes a side of an alert with an other side has not
    been given (0) filled in from ``traffic`` (the rest as they are).

    The frame (a busy day: millions of rows) is cut once to the rows of the
    (host, other side) pairs of the alerts to fill and sorted by pair; each
    alert then sums its pair's few rows, found by bisection (a flood day raises
    thousands of payload alerts; benchmarks/bench_alert_figures.py)."""
    wanted = [a for a in alerts
              if a.destination_ip and not (a.source_bytes and a.destination_bytes)]  # fmt: skip
    frame = traffic.frame
    if not wanted or not len(frame):
        return list(alerts)
    ids: dict[tuple[int, int], int] = {
        (int(hi), int(lo)): i
        for i, (hi, lo) in enumerate(zip(traffic.address_hi, traffic.address_lo, strict=True))
    }

    def id_of(address: str | None) -> int | None:
        try:
            return ids.get(address_pair(address)) if address else None
        except ValueError:
            return None

    # (host, other side) as one int64 key: only the rows of the pairs wanted are kept.
    width = np.int64(len(traffic.address_hi))
    keys: dict[int, int] = {}
    for alert in wanted:
        host, peer = id_of(alert.source_ip), id_of(alert.destination_ip)
        if host is not None and peer is not None:
            keys[id(alert)] = int(host) * int(width) + int(peer)
    pair_col = frame["host_id"].to_numpy().astype(np.int64) * width + frame[
        "peer_id"
    ].to_numpy().astype(np.int64)
    kept = np.flatnonzero(np.isin(pair_col, np.array(sorted(set(keys.values())), np.int64)))
    order = kept[np.argsort(pair_col[kept], kind="stable")]
    sorted_keys = pair_col[order]
    minute = frame["minute_ns"].to_numpy()
    columns = {c: frame[c].to_numpy() for c in ("bytes_out", "bytes_in", "packets_in")}
    out = []
    for alert in alerts:
        key = keys.get(id(alert))
        index = None
        if key is not None:
            lo, hi = np.searchsorted(sorted_keys, [key, key + 1])
            index = order[lo:hi] if hi > lo else None
        if index is None:
            out.append(alert)
            continue
        first = alert.start_ns - alert.start_ns % MINUTE_NS
        index = index[(minute[index] >= first) & (minute[index] <= alert.end_ns)]
        sums = {c: int(values[index].sum()) for c, values in columns.items()}
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
