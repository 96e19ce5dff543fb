"""long-connection: one connection to an outside address kept open for hours,
or many connections to one outside address adding up to hours over a night
(issue 20, behaviour 5; RITA's long and cumulative connections)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...alerts.record import Alert
from ...units import HOUR_NS, MINUTE_NS, human_bytes
from ..declare import HOURS, MINUTES, TRAFFIC, Detection, Rule, Setting
from .common import (
    conversation,
    endpoint,
    group_codes,
    ids,
    off_hours_rows,
    outside_rows,
)

if TYPE_CHECKING:
    from ..context import ScanContext

CONNECTION = ["host_id", "peer_id", "host_port", "peer_port", "proto"]
TCP, UDP = 6, 17
QUIET_PORTS = (53, 123)  # DNS (RFC 1035), NTP (RFC 5905)


DETECTION = Detection(
    rule_id="long-connection",
    title="Connection to one outside address held for hours at night",
    severity=1,
    catches="off-hours: one connection to a non-allowlisted outside address active for "
    "≥ 3 h, or connections to one such address adding up to ≥ 6 h",
    why_it_matters=(
        "A computer kept a channel to one outside address open through the night: how "
        "remote-control tools and command-and-control beacons that keep one connection "
        "work. Check which program holds it; a sanctioned service belongs in the "
        "allowlist."
    ),
    description="""\
A beacon that keeps one connection open is not a series of connections, so
`beacon` does not see it. This rule, after RITA's long and cumulative
connections, looks at **off-hours** TCP and UDP traffic to **non-allowlisted
outside** addresses, except DNS (port 53) and NTP (udp/123), which repeat all
night by design (`quiet-protocol-volume` judges their volume). A connection
(host, outside address, ports, protocol) is active from its first to its last
packet as long as it is never silent for more than `max_idle_minutes`
(default 15). Fires, once per (host, outside address,
off-hours period), when

- one connection stayed active for at least `min_hours` (default 3), or
- the connections to that address add up to at least `cumulative_hours`
  (default 6) in one off-hours period (parallel connections count each).

The alert gives the longest connection, the total and the number of
connections (`egress.longest_seconds`, `egress.cumulative_seconds`,
`egress.connections`, `egress.kind` "long" or "cumulative").

Measured (`benchmarks/eval_adversary.py`, seeds 1 and 2, 16 test weeks each, 2,644 benign
host-days with push channels held all night at a heartbeat every 25–30
minutes, 2026-12-06): one connection with a keep-alive every 5 or 14 minutes
for 4 or 8 hours at night 16/16, one alert each; 2 hours is under
`min_hours`. No false alert. A keep-alive rarer than `max_idle_minutes` is
not seen as one connection (`beacon` and `low-and-slow-egress` look at
those).""",
    false_positives=(
        "VPN clients, remote-support tools and chat or push-notification channels that "
        "send a keep-alive more often than `max_idle_minutes`: allowlist the service "
        "or raise the hours. Low severity for that reason."
    ),
    settings=(
        Setting("min_hours", HOURS, 3, "Hours one connection must stay active …"),
        Setting(
            "cumulative_hours",
            HOURS,
            6,
            "… or hours the connections to one outside address must add up to in one "
            "off-hours period.",
        ),
        Setting(
            "max_idle_minutes",
            MINUTES,
            15,
            "A connection silent for longer than this has ended; the next packet starts another.",
        ),
    ),
)


def _hours(ns: int) -> str:
    return f"{ns / HOUR_NS:.1f} h"


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_long_connection(ctx: ScanContext, rule: Rule) -> list[Alert]:
    idle_ns = rule.ns("max_idle_minutes")
    long_ns = rule.ns("min_hours")
    cumulative_ns = rule.ns("cumulative_hours")
    sel = outside_rows(ctx)
    proto, peer_port = sel["proto"].to_numpy(), sel["peer_port"].to_numpy()
    sel = sel[
        ((proto == TCP) | (proto == UDP))
        # Time and name queries repeat all night by design (NTP's 123-to-123
        # "connection" lasts as long as the host is on); quiet-protocol-volume
        # judges what they carry.
        & ~np.isin(peer_port, QUIET_PORTS)
        # Under a flood the client port of few-packet conversations is dropped
        # (flows/fold.py, fold_ports): such a row is many short connections to
        # a service, not one that lasts.
        & (sel["host_port"].to_numpy() != 0)
        & (peer_port != 0)
    ]
    if sel.empty:
        return []
    sel = off_hours_rows(ctx.policy, sel)
    if sel.empty:
        return []
    # A session of k minute rows lasts at most (k - 1) idle gaps and a minute, so a
    # (host, address, period) with n rows has sessions of n * (idle + 1 min) at
    # most in all: the pairs that cannot reach either bar are not sorted (most of
    # a busy day's, which meet an address for a minute or two).
    pair = group_codes(sel, ["host_id", "peer_id", "period"])
    rows_of_pair = np.bincount(pair)
    sel = sel[rows_of_pair[pair] * (idle_ns + MINUTE_NS) >= min(long_ns, cumulative_ns)]
    if sel.empty:
        return []
    # Sessions: the rows of one connection (5-tuple) with no silence longer
    # than max_idle_minutes, within one off-hours period.
    sel = sel.sort_values([*CONNECTION, "period", "minute_ns"], kind="stable")
    cols = {c: sel[c].to_numpy() for c in [*CONNECTION, "period", "minute_ns"]}
    new = np.ones(len(sel), dtype=bool)
    same = np.ones(len(sel) - 1, dtype=bool)
    for c in [*CONNECTION, "period"]:
        same &= cols[c][1:] == cols[c][:-1]
    new[1:] = ~same | (np.diff(cols["minute_ns"]) > idle_ns)
    session = np.cumsum(new) - 1
    sel = sel.assign(session=session)
    first = sel.groupby("session", sort=True)["first_ns"].min().to_numpy()
    last = sel.groupby("session", sort=True)["last_ns"].max().to_numpy()
    length = last - first
    sel = sel.assign(session_ns=length[session])
    # Judged per (host, address, period) on one row a session, vectorised: a
    # flood of spoofed addresses makes hundreds of thousands of pairs, and a
    # Python loop over them took minutes; only the pairs that fire are looped.
    starts = np.flatnonzero(new)
    per_session = pd.DataFrame({
        "host_id": cols["host_id"][starts], "peer_id": cols["peer_id"][starts],
        "period": cols["period"][starts], "length": length,
    })  # fmt: skip
    pairs = per_session.groupby(["host_id", "peer_id", "period"], sort=False)["length"].agg(
        ["max", "sum", "size"]
    )
    pairs = pairs[(pairs["max"].to_numpy() >= long_ns) | (pairs["sum"].to_numpy() >= cumulative_ns)]
    if pairs.empty:
        return []
    keyed = pd.MultiIndex.from_frame(sel[["host_id", "peer_id", "period"]])
    sel = sel[keyed.isin(pairs.index)]
    alerts: list[Alert] = []
    for key, rows in sel.groupby(["host_id", "peer_id", "period"], sort=False):
        host, peer, _ = ids(key)
        sessions = np.unique(rows["session"].to_numpy())
        lengths = length[sessions]
        longest, total = int(lengths.max()), int(lengths.sum())
        conv = conversation(ctx, host, peer, rows)
        kind = "long" if longest >= long_ns else "cumulative"
        evidence = {
            "kind": kind,
            "longest_seconds": longest // 10**9,
            "cumulative_seconds": total // 10**9,
            "connections": len(sessions),
            "max_idle_minutes": int(rule["max_idle_minutes"]),
        }
        what = (
            f"kept one connection to {endpoint(conv)} open for {_hours(longest)}"
            if kind == "long"
            else f"held {len(sessions):,} connections to {endpoint(conv)} for "
            f"{_hours(total)} in all (the longest {_hours(longest)})"
        )
        text = (
            f"{conv.source_ip} {what} {conv.when(ctx.policy)}, outside business hours, "
            f"sending {human_bytes(conv.source_bytes)} and receiving "
            f"{human_bytes(conv.destination_bytes)}: a channel kept open to one outside "
            "address, as remote-control software keeps it"
        )
        alerts.append(conv.alert(rule, text, "egress", evidence))
    return alerts
