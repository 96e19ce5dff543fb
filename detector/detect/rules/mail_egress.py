"""mail-egress: mail from an isolated computer, or a large amount of outbound mail
(bulletin No. 2: sensitive papers must not be sent by e-mail over the internet)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...alerts.record import Alert
from ...flows.payload import SMTP_DECLARED_SIZE
from ...networks import address_text
from ...units import MINUTE_NS, human_bytes
from ..declare import BYTES, TRAFFIC, Detection, Ports, Rule, Setting, Severity
from .common import conversation, endpoint, minute_runs, threshold_text

if TYPE_CHECKING:
    import pandas as pd

    from ..context import ScanContext
    from ..packets import PacketContext


DETECTION = Detection(
    rule_id="mail-egress",
    title="Outbound mail from an isolated host, or large outbound mail",
    severity=4,
    severity_shown="critical / medium",
    severity_meaning="Mail sent from an isolated computer, any size.",
    catches="SMTP/submission from an isolated host; ≥ 10 MB of outbound mail from any host",
    why_it_matters=(
        "Sensitive papers must not be sent by e-mail over the internet (bulletin No. 2). "
        "Mail from an isolated computer, or a large amount of outbound mail, may carry "
        "documents out of the site."
    ),
    description="""\
Bulletin No. 2: sensitive papers must not be sent by e-mail over the internet.
A host is a mail client when it talks TCP to one of `ports` (default 25, 465,
587) on the other side.

- from an isolated host, any size: `severity` (default critical). Mail to an
  isolated host or an isolated peer stays inside the isolated zone and does
  not fire;
- from any internal host to a non-allowlisted outside address, at least `min_bytes` (default
  10 000 000) sent in one episode: `large_severity` (default medium).

When the mail client declares the message size (ESMTP `SIZE=`, RFC 1870: the
whole message, attachments included) in the first packets, the alert says so
(`egress.declared_message_bytes`).""",
    settings=(
        Setting("large_severity", Severity(), 2, "Large outbound mail from any computer."),
        Setting("min_bytes", BYTES, 10_000_000, 'What "large" means, in bytes sent.'),
        # SMTP (RFC 5321), submissions over implicit TLS (RFC 8314), submission (RFC 6409)
        Setting(
            "ports",
            Ports(),
            (25, 465, 587),
            "TCP ports that are mail: SMTP (25), submission over TLS (465), submission "
            "(587). Each 1–65535, once.",
        ),
    ),  # fmt: skip
    policy_example="""\
[rules.mail-egress]
min_bytes = 5_000_000        # 5 MB of outbound mail is already large here
ports = [25, 465, 587, 2525] # the provider also accepts mail on 2525""",
)


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_mail_egress(ctx: ScanContext, rule: Rule) -> list[Alert]:
    ports = np.array(sorted(int(p) for p in rule["ports"]), dtype=np.int32)
    threshold = int(rule["min_bytes"])
    f = ctx.traffic.frame
    # The host is the mail client: the well-known port is on the other side.
    # Mail that stays within the isolated zone (to an isolated host or an
    # isolated peer) is the zone's own business and is not egress.
    sel = f[
        (f["proto"].to_numpy() == 6)
        & np.isin(f["peer_port"].to_numpy(), ports)
        & ~f["peer_isolated"].to_numpy()
        & ~f["peer_isolated_peer"].to_numpy()
    ]
    # Only mail from isolated hosts, or to outside addresses adding up to the
    # threshold, can fire: drop the rest before the per-conversation loop.
    keys = ["host_id", "peer_id", "peer_port"]
    group_total = sel.groupby(keys, sort=False)["bytes_out"].transform("sum").to_numpy()
    # Allowlisted destinations never trigger the volume half of the rule.
    sel = sel[
        sel["host_isolated"].to_numpy()
        | (
            sel["peer_external"].to_numpy()
            & ~sel["peer_allowlisted"].to_numpy()
            & (group_total >= threshold)
        )
    ]
    alerts: list[Alert] = []
    for (host, peer, peer_port), rows in sel.groupby(["host_id", "peer_id", "peer_port"],
                                                      sort=False):  # fmt: skip
        isolated = bool(rows["host_isolated"].iloc[0])
        external = bool(rows["peer_external"].iloc[0])
        if not isolated and not external:
            continue
        rows = rows.sort_values("minute_ns", kind="stable")
        runs = minute_runs(rows["minute_ns"].to_numpy(), ctx.gap_ns)
        bounds = np.flatnonzero(np.diff(runs)) + 1
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(rows)], strict=True):
            episode = rows.iloc[start:stop]
            sent = int(episode["bytes_out"].sum())
            if not isolated and sent < threshold:
                continue
            severity = rule.settings.severity if isolated else rule["large_severity"]
            conv = conversation(ctx, int(host), int(peer), episode)
            who = f"{conv.source_ip} (isolated)" if isolated else conv.source_ip
            why = (
                "isolated computers must not send mail"
                if isolated
                else f"over the {threshold_text(threshold)} threshold for outbound mail"
            )
            text = (
                f"{who} sent mail (TCP {int(peer_port)}) to {endpoint(conv)}: "
                f"{human_bytes(sent)} {conv.when(ctx.policy)}; {why}"
            )
            evidence = {"threshold_bytes": threshold,
                        "host_role": "isolated" if isolated else "internal"}  # fmt: skip
            direction = "egress" if external else "internal"
            alert = conv.alert(rule, text, direction, evidence, severity)
            alerts.append(alert)
    return alerts


def annotate_mail_sizes(alerts: list[Alert], facts: pd.DataFrame) -> list[Alert]:
    """``alerts`` with each ``mail-egress`` alert noting the message sizes the mail
    client declared (ESMTP SIZE, RFC 1870: the whole message, attachments included)."""
    sizes = facts[(facts["kind"] == "smtp-size").to_numpy()] if not facts.empty else facts
    if sizes.empty:
        return alerts
    src = [address_text(int(h), int(lo)) for h, lo in zip(sizes["src_hi"], sizes["src_lo"],
                                                          strict=True)]  # fmt: skip
    dst = [address_text(int(h), int(lo)) for h, lo in zip(sizes["dst_hi"], sizes["dst_lo"],
                                                          strict=True)]  # fmt: skip
    table = sizes.assign(src=src, dst=dst)
    ts = table["ts_ns"].to_numpy()
    noted = []
    for alert in alerts:
        noted.append(alert)
        if alert.rule_id != DETECTION.rule_id:
            continue
        mine = table[
            (table["src"] == alert.source_ip).to_numpy()
            & (table["dst"] == alert.destination_ip).to_numpy()
            & (ts >= alert.start_ns - MINUTE_NS)
            & (ts <= alert.end_ns)
        ]
        if mine.empty:
            continue
        declared = [int(v) for v in mine[SMTP_DECLARED_SIZE]]
        noted[-1] = alert.with_note(
            f"{len(declared)} message(s) declared at {human_bytes(sum(declared))} "
            "(attachments included)",
            declared_message_bytes=declared,
        )
    return noted


@DETECTION.watches
def mail_packets(packets: PacketContext) -> set[tuple[Any, ...]]:
    """In a live sensor, at once: an isolated host's packet to a mail port of an
    address outside the isolated zone (host, other side, port); and, for the
    volume half, a (host, outside address, port) whose episode of outbound mail
    reached ``min_bytes`` (with the minute it did)."""
    policy = packets.policy
    settings = policy.rule(DETECTION.rule_id)
    b = packets.batch
    ports = np.array(sorted(int(p) for p in settings["ports"]), dtype=np.int64)
    sightings: set[tuple[Any, ...]] = set()
    if policy.isolated:
        # The isolated host is the mail client: the mail port is on the other side.
        for isolated, port, (h_hi, h_lo, o_hi, o_lo) in (
            (packets.isolated.src, b.dport, (b.src_hi, b.src_lo, b.dst_hi, b.dst_lo)),
            (packets.isolated.dst, b.sport, (b.dst_hi, b.dst_lo, b.src_hi, b.src_lo)),
        ):
            rows = np.flatnonzero(isolated)  # few: the packets of isolated hosts
            rows = rows[(b.proto[rows] == 6) & np.isin(port[rows], ports)]
            zone = policy.isolated.contains(o_hi[rows], o_lo[rows])
            zone |= policy.isolated_peers.contains(o_hi[rows], o_lo[rows])
            rows = rows[~zone]
            columns = (h_hi[rows], h_lo[rows], o_hi[rows], o_lo[rows], port[rows])
            sightings |= set(zip(*(c.tolist() for c in columns), strict=True))
    rows = packets.sent_outside()
    rows = rows[(b.proto[rows] == 6) & np.isin(b.dport[rows], ports)]
    if len(rows):
        keys, minutes, sent = packets.uploads(rows)
        keys = (*keys, b.dport[rows])
        gap_ns = policy.window_minutes * MINUTE_NS  # ScanContext.gap_ns: an episode
        crossed = packets.totals.crossed(DETECTION.rule_id, keys, minutes, sent,
                                         int(settings["min_bytes"]), gap_ns=gap_ns)  # fmt: skip
        sightings |= {(*key[:2], "large", *key[2:], minute) for key, minute in crossed}
    return sightings
