"""offhours-bulk-egress: a large upload while nobody should be working (the
modelled incident: 26 classified documents sent out at night)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...alerts.record import Alert
from ...units import human_bytes
from ..declare import BYTES, MINUTES, TRAFFIC, Detection, Rule, Setting
from .common import (
    SHARED_CALL_SETTINGS,
    conversation,
    endpoint,
    outside_rows,
    threshold_phrase,
    upload_episodes,
)

if TYPE_CHECKING:
    from ..context import ScanContext
    from ..packets import PacketContext


DETECTION = Detection(
    rule_id="offhours-bulk-egress",
    title="Bulk upload outside business hours",
    severity=3,
    catches="≥ 50 MB to non-allowlisted outside addresses within any 60 minutes outside "
    "business hours",
    why_it_matters=(
        "A large volume left the site while nobody should be working: the pattern of "
        "the modelled leak (26 classified documents sent out at night). Check who "
        "uses the computer and what it sent; a backup or update mirror belongs in "
        "the allowlist."
    ),
    description="""\
The modelled incident: outside working hours, a large volume of packets went
to one outside address. Fires when a host sends at least `min_bytes` (default
50 000 000) to **non-allowlisted external** addresses within any
`span_minutes` (default 60) of off-hours minutes (outside
`business_hours`, on a day not in `business_hours.days`, or on a holiday).

Spans slide minute by minute, so neither window nor hour boundaries can split a
transfer into harmless halves: 30 MB at 02:55–02:59 and 30 MB at 03:00–03:04
are 60 MB within 60 minutes. A span counts whole minutes (a span ending at
03:04 covers 02:05:00–03:04:59). The alert names the host, the outside address
that received most (and, in `egress.destinations`, the top five), the total,
and the local start and end.

An evening or weekend video call is not bulk egress: as in
`bulk-upload-new-destination`, a conversation in which the host got back at
least `two_way_percent` (default 50) % of what it sent, with an address at
least `shared_by_hosts` (default 3) other hosts used (in the scan, or with
`scan --model` in the model's baseline; in the nightly, the hosts that called
it on the 28 days before: docs/nightly.md), is not counted. An upload echoed
back by a server no other host uses still counts. Measured
(`benchmarks/eval_adversary.py`, seeds 1 and 2, 16 test weeks each,
2026-12-06): the 13 and 14 false alerts on calls after 17:30 and on weekends
are gone; 60 MB at night echoed back by a new address: 16/16. The nightly
without a model (`--nightly`, seeds 1 and 2, 4 test weeks, 2026-12-06): 3
and 3 false alerts on calls with each day alone, 0 and 0 with the days
before; 60 MB echoed at night still 4/4.""",
    false_positives=(
        "nightly backups and update mirrors (put them in `allowlist.destinations`); "
        "cloud sync clients left running; a call to a meeting server fewer than "
        "`shared_by_hosts` other hosts used."
    ),
    settings=(
        Setting(
            "min_bytes",
            BYTES,
            50_000_000,
            "Bytes a host must send to non-allowlisted external addresses …",
        ),
        Setting("span_minutes", MINUTES, 60, "… within this many off-hours minutes."),
        *SHARED_CALL_SETTINGS,
    ),  # fmt: skip
    policy_example="""\
[rules.offhours-bulk-egress]
min_bytes = 20_000_000   # 20 MB within 30 minutes outside business hours
span_minutes = 30""",
    # One incident per host: the address named is the busiest of its span, which can change.
    incident=lambda alert: None,
)


def _off_hours_rows(ctx: ScanContext, rows: pd.DataFrame) -> np.ndarray:
    minutes = rows["minute_ns"].to_numpy()
    unique, inverse = np.unique(minutes, return_inverse=True)
    return ~ctx.policy.is_business_time(unique)[inverse.reshape(-1)]


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_offhours_bulk_egress(ctx: ScanContext, rule: Rule) -> list[Alert]:
    threshold = int(rule["min_bytes"])
    sel = outside_rows(ctx, sending=True)
    sel = sel[_off_hours_rows(ctx, sel)]
    alerts: list[Alert] = []
    # An evening or weekend video call to the office's meeting service is not bulk egress.
    for (host,), episode in upload_episodes(ctx, rule, sel, ["host_id"]):
        by_peer = (
            episode.groupby("peer_id", sort=False)["bytes_out"].sum().sort_values(ascending=False)
        )
        top = int(by_peer.index.to_numpy()[0])
        top_rows = episode[episode["peer_id"].to_numpy() == top]
        # The rule is about everything the host sent out in the span.
        conv = replace(
            conversation(ctx, host, top, top_rows),
            start_ns=int(episode["first_ns"].min()),
            end_ns=int(episode["last_ns"].max()),
            source_bytes=int(episode["bytes_out"].sum()),
            source_packets=int(episode["packets_out"].sum()),
        )
        destinations = [
            {"ip": ctx.traffic.text(int(p)), "bytes": int(b)}
            for p, b in zip(by_peer.index[:5], by_peer.to_numpy()[:5], strict=True)
        ]
        evidence = {
            "threshold_bytes": threshold,
            "span_minutes": int(rule["span_minutes"]),
            "destinations": destinations,
            "destination_count": len(by_peer),
        }
        others = len(by_peer) - 1
        text = (
            f"{conv.source_ip} sent {human_bytes(conv.source_bytes)} to "
            + (
                f"{endpoint(conv)}"
                if not others
                else f"{others + 1:,} outside addresses (most to {endpoint(conv)}, "
                f"{human_bytes(int(by_peer.iloc[0]))})"
            )  # fmt: skip
            + f" {conv.when(ctx.policy)}, outside business hours "
            + threshold_phrase(threshold, rule["span_minutes"])
        )
        alert = conv.alert(rule, text, "egress", evidence)
        alerts.append(alert)
    return alerts


@DETECTION.watches
def offhours_uploads(packets: PacketContext) -> list[tuple[Any, ...]]:
    """In a live sensor, as soon as it happens: a host whose bytes to
    non-allowlisted outside addresses in off-hours minutes reached ``min_bytes``
    within ``span_minutes`` (the host and the minute it did)."""
    settings = packets.policy.rule(DETECTION.rule_id)
    rows = packets.sent_outside()
    if not len(rows):
        return []
    minutes = packets.minute_ns[rows]
    unique, inverse = np.unique(minutes, return_inverse=True)
    rows = rows[~packets.policy.is_business_time(unique)[inverse.reshape(-1)]]
    keys, minutes, sent = packets.uploads(rows)
    crossed = packets.totals.crossed(DETECTION.rule_id, keys[:2], minutes, sent,
                                     int(settings["min_bytes"]),
                                     span_minutes=int(settings["span_minutes"]))  # fmt: skip
    return [(*host, minute) for host, minute in crossed]
