"""isolated-egress: an isolated computer exchanging packets with anything outside
its own segment (bulletin No. 3: the bridge that leaked 26 documents)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ...networks import LOCAL_SCOPE
from ...units import human_bytes
from ..declare import TRAFFIC, Boolean, Detection, Rule, Setting, Severity
from .common import conversation, services_phrase

if TYPE_CHECKING:
    from ..context import ScanContext
    from ..packets import PacketContext


DETECTION = Detection(
    rule_id="isolated-egress",
    title="Isolated host talked to a non-isolated address",
    severity=4,
    severity_shown="critical (outside) / high (internal)",
    severity_meaning="When the other side is external.",
    catches="an isolated host exchanging any packet with a non-isolated address",
    why_it_matters=(
        "An isolated computer must never exchange packets with anything but its own "
        "segment. A packet to the outside means the isolated network is bridged to "
        "the internet: the leak of bulletin No. 3 (26 classified documents) went this way."
    ),
    why_by_direction={
        # The other side is internal: an internet computer reaching into the isolated one.
        "internal": (
            "An isolated computer must never exchange packets with anything but its own "
            "segment. Traffic with an internet computer means someone connected the two "
            "networks (in bulletin No. 3 an employee did, 'to update the antivirus'); the "
            "internet side can now reach the isolated one."
        ),
    },
    description="""\
Bulletin No. 3: an isolated computer must never reach the internet, and must
never be connected to the internet side. The rule fires when a host in
`networks.isolated` exchanges **any** packet, in either direction, at any hour
and of any size, with an address that is neither isolated nor in
`networks.isolated_peers`.

- other side outside (external): `severity` (default critical), direction `egress`;
- other side internal (an internet computer, a printer on the other
  segment): `internal_severity` (default high), direction `internal`. This is
  how a bridge shows: the internet computer reaching into the isolated one
  over SMB or RDP.

`ignore_local_scope` (default `true`): multicast, broadcast, link-local,
loopback and unspecified addresses are not "another host" (DHCP, mDNS and
neighbour discovery stay on the wire they start on), so they do not fire.""",
    false_positives=(
        "an isolated-segment service missing from `isolated_peers` (an internal "
        "update server, a domain controller): add it."
    ),
    settings=(
        Setting(
            "internal_severity",
            Severity(),
            3,
            "When the other side is another internal computer (a bridge shows this way).",
        ),
        Setting(
            "ignore_local_scope",
            Boolean(),
            True,
            "Do not count local-scope addresses (multicast, broadcast, link-local, "
            'unspecified, loopback) as "another host".',
        ),
    ),  # fmt: skip
    policy_example="""\
[rules.isolated-egress]
internal_severity = "critical"   # at this site an internal contact is as bad as an outside one""",
)


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_isolated_egress(ctx: ScanContext, rule: Rule) -> list[Alert]:
    f = ctx.traffic.frame
    mask = (
        f["host_isolated"].to_numpy()
        & ~f["peer_isolated"].to_numpy()
        & ~f["peer_isolated_peer"].to_numpy()
    )
    if rule["ignore_local_scope"]:
        mask &= ~f["peer_local_scope"].to_numpy()
    alerts: list[Alert] = []
    # Columns as numpy arrays sorted by (host, peer, minute), cut into episodes
    # by index: a flood day has thousands, and pandas per episode took minutes.
    sel = f[mask]
    names = ["host_id", "peer_id", "minute_ns", "first_ns", "last_ns", "bytes_out",
             "packets_out", "bytes_in", "packets_in", "peer_port", "host_port", "proto",
             "peer_external"]  # fmt: skip
    order = np.lexsort(
        (sel["minute_ns"].to_numpy(), sel["peer_id"].to_numpy(), sel["host_id"].to_numpy())
    )
    cols = {name: sel[name].to_numpy()[order] for name in names}
    host_ids, peer_ids, minutes = cols["host_id"], cols["peer_id"], cols["minute_ns"]
    new_episode = np.ones(len(order), dtype=bool)
    new_episode[1:] = (
        (host_ids[1:] != host_ids[:-1])
        | (peer_ids[1:] != peer_ids[:-1])
        | (np.diff(minutes) > ctx.gap_ns)
    )
    starts = np.flatnonzero(new_episode)
    stops = [*starts[1:].tolist(), len(order)] if len(order) else []
    for start, stop in zip(starts.tolist(), stops, strict=True):
        episode = {name: values[start:stop] for name, values in cols.items()}
        host, peer = int(host_ids[start]), int(peer_ids[start])
        external = bool(episode["peer_external"][0])
        severity = rule.settings.severity if external else rule["internal_severity"]
        conv = conversation(ctx, host, peer, episode)
        kind = "outside address" if external else "internal host (not isolated)"
        text = (
            f"{conv.source_ip} (isolated) exchanged packets with {kind} "
            f"{conv.destination_ip}{services_phrase(episode)}: sent "
            f"{human_bytes(conv.source_bytes)}, received "
            f"{human_bytes(conv.destination_bytes)} "
            f"{conv.when_and_hours(ctx.policy)}"
        )
        if not external:
            text += "; a bridge between the isolated and the internet side?"
        direction = "egress" if external else "internal"
        alert = conv.alert(rule, text, direction, {"host_role": "isolated"}, severity)
        alerts.append(alert)
    return alerts


@DETECTION.watches
def isolated_packets(packets: PacketContext) -> set[tuple[int, int, int, int]]:
    """In a live sensor, at once: (isolated host, other side) of each packet
    between an isolated host and an address it may not reach (the check's own
    condition, on the packet)."""
    policy = packets.policy
    if not policy.isolated:
        return set()
    b = packets.batch
    src, dst = packets.isolated
    either = src ^ dst
    if not either.any():
        return set()
    rows = np.flatnonzero(either)
    other_hi = np.where(src[rows], b.dst_hi[rows], b.src_hi[rows])
    other_lo = np.where(src[rows], b.dst_lo[rows], b.src_lo[rows])
    allowed = policy.isolated_peers.contains(other_hi, other_lo)
    if policy.rule(DETECTION.rule_id)["ignore_local_scope"]:
        allowed |= LOCAL_SCOPE.contains(other_hi, other_lo)
    rows, other_hi, other_lo = rows[~allowed], other_hi[~allowed], other_lo[~allowed]
    host_hi = np.where(src[rows], b.src_hi[rows], b.dst_hi[rows])
    host_lo = np.where(src[rows], b.src_lo[rows], b.dst_lo[rows])
    return set(zip(host_hi.tolist(), host_lo.tolist(), other_hi.tolist(), other_lo.tolist(),
                   strict=True))  # fmt: skip
