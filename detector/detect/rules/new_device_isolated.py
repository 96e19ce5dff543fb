"""new-device-isolated: a network card never seen before on an isolated segment
(issue 20, item 9: a rogue laptop or a bridge shows on the wire before a packet leaves)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ..declare import TRAFFIC, Detection, Rule, Setting
from .common import when
from .segment import (
    ARP_REQUEST,
    Macs,
    Segments,
    address,
    card,
    listed,
    mac_phrase,
    mac_values,
    network_of,
    over_segments,
)

if TYPE_CHECKING:
    from ..context import ScanContext

DETECTION = Detection(
    rule_id="new-device-isolated",
    title="New device on an isolated segment",
    severity=3,
    catches="a network card (MAC) on an isolated segment that is not one of its known devices",
    why_it_matters=(
        "Only the site's own isolated computers belong on an isolated segment. A network "
        "card never seen there before is a laptop, a wireless router or a USB adapter "
        "someone plugged in: the way an isolated network gets bridged to the internet "
        "(bulletin No. 3), seen before any packet leaves."
    ),
    description="""\
Compares the network cards seen on isolated segments with the segment's known
devices, `known_devices` (their MAC addresses). A card is on an isolated
segment when it sends a frame from an address in `networks.isolated`, or
claims or probes for one in ARP (RFC 826, RFC 5227). Each card not in
`known_devices` is one alert, with its vendor from the IEEE OUI registry
(a table shipped with the detector, built from Wireshark's `manuf` file:
`python -m detector.oui`), the isolated addresses it used, and when it was
first and last seen (to the minute). A locally administered address (a randomised
"private" address of a phone or laptop, a virtual machine) is named as such.

The baseline is `known_devices` and, in `egress-detector nightly`, every card
seen on an isolated segment on an earlier day (kept in its state file): a card
is alerted on the first day it appears, and known from the next. With `scan
--model` (and `live`, `nightly` with a model), the cards of the model's
baseline are known too (`train` stores them: docs/model.md). With none of
these (a scan with no `known_devices` and no model, the nightly's first day)
the rule does not fire: every card would be new. List the segment's cards once from captures of
normal days:

```sh
python -m detector.pipelines.devices --policy site.toml monday.pcap tuesday.pcap
```

prints the `[rules.new-device-isolated]` table with every card seen on the
isolated segments (vendor and addresses as comments): check each, paste it
into the policy, and add a card when one is installed.

Only Ethernet captures carry MAC addresses (not raw IP, Linux cooked or
loopback captures).

Measured (`benchmarks/eval_sidechannels.py`, 2026-12-06, seeds 1 and 2 through the
nightly: 56 baseline days and 811 isolated host-days of boots (RFC 5227
probes, DHCP from the segment's server), ARP refreshes, file-server work,
computers left on, server restarts, with an office VLAN beside it (its own
DHCP server, IPv6 router advertisements every 200 s)):
16 of 16 laptops caught (Apple, Intel or random
addresses, present 2–120 minutes; the shortest showed only its boot and one
SMB connection), no false alert.""",
    false_positives=(
        "a replaced network card or a new computer installed on the segment: add its "
        "MAC to `known_devices`; a computer whose system randomises its MAC per "
        "network (turn that off for isolated computers)."
    ),
    settings=(
        Setting(
            "known_devices",
            Macs(),
            (),
            "The MAC addresses of the cards that belong on the isolated segments (the "
            "baseline; the nightly adds the cards of earlier days). Empty, and no earlier "
            "day: the rule does not fire.",
        ),
    ),
    policy_example="""\
[rules.new-device-isolated]
known_devices = ["02:08:0a:08:28:1f", "02:08:0a:08:28:05", "02:08:0a:08:28:20"]""",
)


@DETECTION.checks(over=TRAFFIC)
@over_segments
def check_new_device_isolated(ctx: ScanContext, rule: Rule, seen: Segments) -> list[Alert]:
    known = mac_values(rule["known_devices"]) | mac_values(tuple(ctx.learned_devices))
    if not known:
        return []
    policy = ctx.policy
    rows = seen.of("device")
    device_rows = {
        "mac": rows["mac"].to_numpy(np.int64),
        "hi": rows["a_hi"].to_numpy(np.uint64),
        "lo": rows["a_lo"].to_numpy(np.uint64),
        "first": rows["first_ns"].to_numpy(np.int64),
        "last": rows["last_ns"].to_numpy(np.int64),
    }
    # ARP: a card claiming an isolated address (sender), or probing for one (RFC 5227:
    # sender 0.0.0.0, the address it wants as target).
    arp = seen.of("arp")
    sender_in = seen.isolated_at(policy, arp, "a")
    probe = (arp["a_lo"].to_numpy(np.uint64) == np.uint64(0xFFFF_0000_0000)) & (
        arp["code"].to_numpy(np.int64) == ARP_REQUEST
    )
    target_in = seen.isolated_at(policy, arp, "b")
    claim = sender_in | (probe & target_in)
    arp = arp[claim]
    use_target = ~sender_in[claim]
    arp_rows = {
        "mac": arp["other_mac"].to_numpy(np.int64),
        "hi": np.where(use_target, arp["b_hi"], arp["a_hi"]).astype(np.uint64),
        "lo": np.where(use_target, arp["b_lo"], arp["a_lo"]).astype(np.uint64),
        "first": arp["first_ns"].to_numpy(np.int64),
        "last": arp["last_ns"].to_numpy(np.int64),
    }
    both = {k: np.concatenate([device_rows[k], arp_rows[k]]) for k in device_rows}
    alerts: list[Alert] = []
    for mac in sorted(set(both["mac"].tolist()) - known):
        mine = both["mac"] == mac
        order = np.argsort(both["first"][mine], kind="stable")
        addresses = list(dict.fromkeys(
            address(h, lo) for h, lo in zip(both["hi"][mine][order], both["lo"][mine][order],
                                            strict=True)
        ))  # fmt: skip
        start = int(both["first"][mine].min())
        end = int(both["last"][mine].max())
        network = network_of(policy, addresses[0])
        used = listed(addresses, 5)
        text = (
            f"a network card never seen before on the isolated segment {network}: MAC "
            f"{mac_phrase(mac)}, using {used}, {when(start, end, policy)}; not one of the "
            f"segment's "
            f"{len(known)} known device{'s' if len(known) != 1 else ''}"
        )
        alerts.append(
            rule.alert(
                start, end, addresses[0], text,
                direction="internal",
                evidence={**card(mac), "network": network,
                          "addresses": addresses[:20]},
            )
        )  # fmt: skip
    return alerts
