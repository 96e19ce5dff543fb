"""low-and-slow-egress: many small uploads to one outside address through a
night, a weekend or a holiday, each too small for any hourly threshold
(issue 20, behaviour 1: the insider who has read docs/rules.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...alerts.record import Alert
from ...units import MINUTE_NS, human_bytes
from ..declare import BYTES, COUNT, HOURS, TRAFFIC, Detection, Rule, Setting
from . import offhours_bulk_egress
from .common import (
    conversation,
    endpoint,
    groups_reaching,
    ids,
    local_datetime,
    minute_runs,
    new_destination_rows,
    off_hours_rows,
    outside_rows,
    site_users,
    threshold_text,
)

if TYPE_CHECKING:
    from ..context import ScanContext


DETECTION = Detection(
    rule_id="low-and-slow-egress",
    title="Upload accumulated over a night to one outside address",
    severity=3,
    catches="≥ 10 MB in ≥ 2 transfers (one, to an address new to the site) to one "
    "non-allowlisted outside address over one off-hours period (a night, a weekend, a "
    "holiday), however slowly",
    why_it_matters=(
        "A computer kept sending to one outside address while nobody should be working, "
        "in pieces small enough to pass an hourly threshold: the shape of a careful leak. "
        "Check who uses the computer and what runs on it at night; a sanctioned backup "
        "or sync service belongs in the allowlist."
    ),
    description="""\
The careful insider who has read this page sends a few MB every half hour,
never 50 MB within an hour. This rule adds up what each host sent to each
**non-allowlisted outside** address over a whole **off-hours period**: from
the end of one business day to the start of the next, so a night, a weekend
(Friday evening to Monday morning) or a holiday run is one period. It fires
when one destination received at least `min_bytes` (default 10 000 000) in
one period, in at least `min_transfers` (default 2) transfers, and more than
the host received from it (an upload; a call or a remote session moves as
much each way), whatever the spacing and whatever the protocol (TCP, UDP
such as QUIC on udp/443, ICMP: every protocol's bytes count). One upload
below `offhours-bulk-egress`'s threshold counts too when it went to an
address new to the host (first reached less than `new_for_hours`, default
24, before; with `scan --model`, not in the model's baseline) that no other
host of the site used (in the scan, or in the model's baseline; in the
nightly, on the 28 days before: docs/nightly.md): a server
that uploads its sanctioned backup every night and, beside it, 10 MB over
udp/443 to an address it never used (issue 20, item 7; `min_transfers = 1`
makes every single upload count).

One alert per (host, destination, period), however many transfers: it gives
the total, the span (start and end), the number of transfers (bursts more
than one feature window apart), the largest and the local start of each
(`egress.transfer_starts`, the first 48). When one destination alone also
reaches `offhours-bulk-egress` (its bytes within its span), that rule's alert
tells the incident and this one is not raised. With `scan --model`, the
alert also says what the host's baseline sent at most in the same hours of
earlier nights (`egress.baseline_bytes`, docs/model.md).

Measured (`benchmarks/eval_adversary.py`, seeds 1 and 2, 16 test weeks each, 2,644 benign
host-days, 2026-12-06): transfers of 1 MB every 30 minutes for 8 hours
(16 MB), 2 MB every 60 minutes (16 MB) and anything larger caught 16/16,
one alert each; 0.5 MB every 30 or 60 minutes and 1 MB every 60 minutes
(8 MB a night) are under `min_bytes` (the model caught them, 16/16). No
false alert. The longest spacing caught is any spacing: the night is one
period. One upload over udp/443 in 20–60 minutes from the backup server,
during or near its allowlisted nightly backup, to a new address: 10, 15 and
30 MB 16/16 each (5 MB is under `min_bytes`; the model caught it, 16/16);
`benchmarks/eval_model.py`'s 20 MB night upload in 5–15 minutes: 32/32
(seeds 1 and 2, 16 test weeks; before, 0/32). No false alert: a first
upload to the cloud service the office uses, just after 17:30, is to an
address other hosts use (it made 5 false alerts on seed 1 when one transfer
to any address new to the host counted).""",
    false_positives=(
        "a cloud sync or backup client left running at night to an address not in "
        "`allowlist.destinations`; a server that serves outside clients all night "
        "(put its clients' networks in the allowlist, or raise `min_bytes`)."
    ),
    settings=(
        Setting(
            "min_bytes",
            BYTES,
            10_000_000,
            "Bytes one host must send to one non-allowlisted outside address within "
            "one off-hours period (night, weekend, holiday) …",
        ),
        Setting(
            "min_transfers",
            COUNT,
            2,
            "… in at least this many transfers (bursts more than one feature window "
            "apart; one, to an address new to the host that no other host used); `1` counts a "
            "single upload too.",
        ),
        Setting(
            "new_for_hours",
            HOURS,
            24,
            "An outside address is new to a host (one transfer to it is enough, if no other "
            "host used it) for this many hours after the first packet between them.",
        ),
    ),
    policy_example="""\
[rules.low-and-slow-egress]
min_bytes = 5_000_000   # 5 MB to one outside address over a night
min_transfers = 1       # a single upload counts too""",
)


def _new_to_the_site(
    ctx: ScanContext, outside: pd.DataFrame, sel: pd.DataFrame, new_for_ns: int
) -> pd.Index:
    """The rows of ``sel`` (off-hours uploads) to an address new to the host
    (its first contact, at any hour, less than ``new_for_ns`` before; not in
    the model's baseline) that no other host of the site used."""
    if sel.empty:
        return sel.index
    pair = ["host_id", "peer_id"]
    peers = sel["peer_id"].to_numpy(dtype=np.int64)
    users = site_users(ctx, peers)
    alone = users.index.to_numpy()[users.to_numpy() == 1]
    if ctx.earlier_contacts is not None and len(alone):
        # The nightly: another host that used the address on an earlier day.
        traffic = ctx.traffic
        mine = sel[np.isin(peers, alone)].drop_duplicates("peer_id")
        host = mine["host_id"].to_numpy(dtype=np.int64)
        user = pd.DataFrame({"peer_id": mine["peer_id"].to_numpy(dtype=np.int64),
                             "hi": traffic.address_hi[host],
                             "lo": traffic.address_lo[host]})  # fmt: skip
        earlier = ctx.earlier_contacts(alone).merge(user, on="peer_id")
        other = (earlier["host_hi"].to_numpy() != earlier["hi"].to_numpy()) | (
            earlier["host_lo"].to_numpy() != earlier["lo"].to_numpy())  # fmt: skip
        alone = np.setdiff1d(alone, earlier["peer_id"].to_numpy(dtype=np.int64)[other])
    # Every row of those pairs, business hours included: the first contact may be there.
    theirs = outside[np.isin(outside["peer_id"].to_numpy(dtype=np.int64), alone)]
    theirs = theirs[pd.MultiIndex.from_frame(theirs[pair]).isin(
        pd.MultiIndex.from_frame(sel[pair]))]  # fmt: skip
    return new_destination_rows(ctx, theirs, new_for_ns).index.intersection(sel.index)


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_low_and_slow(ctx: ScanContext, rule: Rule) -> list[Alert]:
    threshold = int(rule["min_bytes"])
    min_transfers = int(rule["min_transfers"])
    outside = outside_rows(ctx)
    if outside.empty:
        return []
    sel = off_hours_rows(ctx.policy, outside)
    if sel.empty:
        return []
    key = ["host_id", "peer_id", "period"]
    grouped = sel.groupby(key, sort=False)
    sent = grouped["bytes_out"].transform("sum").to_numpy()
    received = grouped["bytes_in"].transform("sum").to_numpy()
    # An upload: more out than in. A call or a remote desktop session moves
    # as much each way and is not what this rule is about.
    sel = sel[(sent >= threshold) & (sent > received) & (sel["bytes_out"].to_numpy() > 0)]
    bulk = ctx.policy.rule(offhours_bulk_egress.DETECTION.rule_id)
    if bulk.enabled and not sel.empty:
        # What offhours-bulk-egress reports already (this destination alone
        # reaching its threshold) is not told twice.
        loud = groups_reaching(
            sel, key, "bytes_out", int(bulk["span_minutes"]) * MINUTE_NS, int(bulk["min_bytes"])
        )
        sel = sel.drop(index=loud.index)
    # One transfer is enough to an address new to the host that no other host
    # of the site uses (issue 20, item 7); a first upload to the cloud service
    # the office uses, at 17:40, is not.
    fresh = _new_to_the_site(ctx, outside, sel, rule.ns("new_for_hours"))
    alerts: list[Alert] = []
    for group, rows in sel.groupby(key, sort=False):
        host, peer, _ = ids(group)
        per_minute = rows.groupby("minute_ns", sort=True)["bytes_out"].sum()
        minutes = per_minute.index.to_numpy()
        runs = minute_runs(minutes, ctx.gap_ns)
        per_transfer = np.bincount(runs, weights=per_minute.to_numpy()).astype(np.int64)
        starts = minutes[np.flatnonzero(np.diff(runs, prepend=-1))]
        transfers = len(per_transfer)
        if transfers < min_transfers and not rows.index.isin(fresh).all():
            continue
        conv = conversation(ctx, host, peer, rows)
        span_minutes = int((conv.end_ns - conv.start_ns) // MINUTE_NS)
        evidence = {
            "threshold_bytes": threshold,
            "transfers": transfers,
            "span_minutes": span_minutes,
            "largest_transfer_bytes": int(per_transfer.max()),
            "transfer_starts": [
                f"{local_datetime(int(t), ctx.policy):%H:%M}" for t in starts[:48].tolist()
            ],
        }
        pieces = (
            f"in {transfers:,} transfers (the largest {human_bytes(int(per_transfer.max()))})"
            if transfers > 1
            else "in one transfer"
        )
        text = (
            f"{conv.source_ip} sent {human_bytes(conv.source_bytes)} to {endpoint(conv)} "
            f"{pieces} {conv.when(ctx.policy)}, all outside business hours: "
            f"{threshold_text(threshold)} or more to one outside address in one "
            "night, weekend or holiday, however slowly"
        )
        alerts.append(conv.alert(rule, text, "egress", evidence))
    return alerts
