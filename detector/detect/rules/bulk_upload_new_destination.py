"""bulk-upload-new-destination: a large upload to an outside address the host
had not used before (documents copied to a new cloud account look like this)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...alerts.record import Alert
from ...units import human_bytes
from ..declare import BYTES, HOURS, MINUTES, TRAFFIC, Detection, Rule, Setting
from .common import (
    SHARED_CALL_SETTINGS,
    conversation,
    endpoint,
    local_datetime,
    new_destination_rows,
    outside_rows,
    threshold_phrase,
    upload_episodes,
)

if TYPE_CHECKING:
    from ..context import ScanContext
    from ..packets import PacketContext


DETECTION = Detection(
    rule_id="bulk-upload-new-destination",
    title="Large upload to a new destination",
    severity=3,
    catches="≥ 100 MB within 60 minutes to an outside address first reached < 24 h before",
    why_it_matters=(
        "A large upload went to an outside address the computer had not used before: "
        "documents copied to a new cloud account or file-sharing site look like this."
    ),
    description="""\
A large upload to somewhere the host had never used: fires when a host sends at
least `min_bytes` (default 100 000 000) within `span_minutes` (default 60) to a
non-allowlisted external address it first reached less than `new_for_hours`
(default 24) before. Any hour, business hours included. "First reached" means
first seen **in this scan** (with a trained model, in its baseline too; in
the nightly, an address the host sent `min_bytes` to within `span_minutes` on
one of the 28 days before is not new either): a destination already in use
when the capture starts looks new, so scans of short captures can fire on a
routine destination; allowlist it.

A call is not an upload: a conversation (minutes closer than a feature
window) in which the host got back at least `two_way_percent` (default 50) %
of what it sent, with an address that at least `shared_by_hosts` (default 3)
other hosts used in the scan (with `scan --model`, in the model's baseline
too; in a live sensor, in what it saw before; in the nightly, the hosts that
called it, two-way with at least 1 MB sent, on the 28 days before: see
docs/nightly.md), is not counted: a video call to the meeting service the
office shares.
Both, because either alone is cheap to fake: a server can echo an upload
back, and a popular cloud service takes uploads one way; an upload echoed by
a server the rest of the site does not use still fires.

Measured (`benchmarks/eval_adversary.py`, seeds 1 and 2, 16 test weeks each,
2,487 benign host-days, 2026-12-06): the video calls to meeting servers new
to the host that made 53 and 60 false alerts before raise none; uploads of
120 and 300 MB by day over udp/3478 with 100–150 % echoed back by a new
address: 16/16 each. `benchmarks/eval_model.py` (seeds 1 and 2, 16 test weeks):
false alerts of the rules 94 and 107 → 0, every 100 and 200 MB upload still
caught. Without a model a weekly scan knows fewer of a meeting service's
users: counting only the week's callers, 20 false alerts on seed 1 (servers
fewer than three other hosts called that week). The nightly remembers who
called (`eval_adversary.py --test-weeks 4 --nightly DIR`, seeds 1 and 2,
each day its own pcap after four baseline weeks, 301 and 319 benign
host-days, 2026-12-06): 41 and 38 false alerts of this rule with each day
scanned alone, 0 and 0 with the days before; the echoed uploads of 120 and
300 MB still 4/4 each. Days of a few
kB to a server (a planted "habit") make no call and no upload: its first big
upload is still new and fires.""",
    settings=(
        Setting("min_bytes", BYTES, 100_000_000, "Bytes sent to one new external destination …"),
        Setting("span_minutes", MINUTES, 60, "… within this many minutes, at any hour."),
        Setting(
            "new_for_hours",
            HOURS,
            24,
            "How long after a host first reached a destination it still counts as new.",
        ),
        *SHARED_CALL_SETTINGS,
    ),  # fmt: skip
    false_positives=(
        "a call to a meeting server fewer than `shared_by_hosts` other hosts used (a "
        "weekly scan without `--model` knows only that week's callers); a first upload to "
        "a new cloud service: allowlist sanctioned services."
    ),
    policy_example="""\
[rules.bulk-upload-new-destination]
min_bytes = 250_000_000   # 250 MB in an hour to a destination first used in the last 3 days
new_for_hours = 72""",
)


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_bulk_upload_new_destination(ctx: ScanContext, rule: Rule) -> list[Alert]:
    threshold = int(rule["min_bytes"])
    new_for_ns = rule.ns("new_for_hours")
    sel = new_destination_rows(ctx, outside_rows(ctx), new_for_ns)
    alerts: list[Alert] = []
    for (host, peer), episode in upload_episodes(ctx, rule, sel, ["host_id", "peer_id"]):
        first_contact = int(episode["first_contact"].to_numpy()[0])
        conv = conversation(ctx, host, peer, episode)
        first_local = local_datetime(first_contact, ctx.policy)
        text = (
            f"{conv.source_ip} uploaded {human_bytes(conv.source_bytes)} to "
            f"{endpoint(conv)}, a destination it first reached at "
            f"{first_local:%H:%M} local time ({first_local:%a %Y-%m-%d}) in this scan"
            f"{'' if ctx.known_destinations is None else ' (not in the model baseline)'}, "
            f"{conv.when_and_hours(ctx.policy)} "
            + threshold_phrase(threshold, rule["span_minutes"])
        )
        evidence = {"threshold_bytes": threshold, "span_minutes": int(rule["span_minutes"]),
                    "first_contact": first_contact}  # fmt: skip
        alerts.append(conv.alert(rule, text, "egress", evidence))
    return alerts


@DETECTION.watches
def new_destination_uploads(packets: PacketContext) -> list[tuple[Any, ...]]:
    """In a live sensor, as soon as it happens: a (host, outside address) pair
    whose bytes reached ``min_bytes`` within ``span_minutes`` (with the minute it
    did); whether the address is new the analysis then decides."""
    settings = packets.policy.rule(DETECTION.rule_id)
    rows = packets.sent_outside()
    if not len(rows):
        return []
    keys, minutes, sent = packets.uploads(rows)
    crossed = packets.totals.crossed(DETECTION.rule_id, keys, minutes, sent,
                                     int(settings["min_bytes"]),
                                     span_minutes=int(settings["span_minutes"]))  # fmt: skip
    return [(*pair, minute) for pair, minute in crossed]
