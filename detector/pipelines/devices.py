"""The cards seen on isolated segments, as the policy's baseline of known devices.

    python -m detector.pipelines.devices --policy site.toml normal-day-1.pcap ...

prints a ``[rules.new-device-isolated]`` table listing every network card that
sent from an isolated address (or claimed one in ARP) in the captures, each
with its vendor and addresses as a comment, to paste into the policy after
checking that each card belongs there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..detect.rules.segment import address
from ..errors import DetectorError
from ..flows.link import LinkInspector
from ..flows.table import count_flows
from ..oui import mac_text, parse_mac, vendor

if TYPE_CHECKING:
    import pandas as pd

    from ..policy import Policy


def isolated_devices(facts: pd.DataFrame, policy: Policy) -> dict[str, list[str]]:
    """The cards on isolated segments in link ``facts`` (detector/flows/link.py):
    MAC address (text) -> the isolated addresses it sent from or claimed in ARP."""
    kinds = facts["kind"].to_numpy()
    arp = kinds == "arp"
    claims = arp & policy.isolated.contains(
        facts["a_hi"].to_numpy(np.uint64), facts["a_lo"].to_numpy(np.uint64)
    )
    macs = np.where(arp, facts["other_mac"], facts["mac"]).astype(np.int64)
    rows = (kinds == "device") | claims
    cards: dict[int, list[str]] = {}
    for mac, hi, lo in zip(macs[rows], facts["a_hi"][rows], facts["a_lo"][rows], strict=True):
        cards.setdefault(int(mac), [])
        shown = address(hi, lo)
        if shown not in cards[int(mac)]:
            cards[int(mac)].append(shown)
    return {mac_text(mac): cards[mac] for mac in sorted(cards)}


def learned_cards(facts: pd.DataFrame, policy: Policy) -> list[str]:
    """The cards a baseline (the nightly's earlier days, train's captures)
    teaches the side-channel rules, as MAC text: those on isolated segments
    (:func:`isolated_devices`) and those delivering traffic from beyond the
    segment (a gateway that never shows an isolated address of its own)."""
    forwarders = facts["mac"][facts["kind"].to_numpy() == "forwarder"].to_numpy(np.int64)
    return sorted(set(isolated_devices(facts, policy)) | {mac_text(int(m)) for m in forwarders})


def known_devices(paths: Sequence[str], policy_path: str) -> str:
    """The TOML table of the cards seen on isolated segments in ``paths``."""
    from ..policy import load_policy

    policy = load_policy(policy_path)
    if not policy.isolated:
        raise DetectorError(f"{policy_path}: networks.isolated: none given (no isolated segment)")
    link = LinkInspector(policy.isolated)
    count_flows(paths, inspector=link)
    lines = ["[rules.new-device-isolated]", "known_devices = ["]
    for mac, addresses in isolated_devices(link.frame(), policy).items():
        shown = vendor(parse_mac(mac) or 0)
        lines.append(f'  "{mac}",  # {shown}: {", ".join(addresses[:4])}')
    lines.append("]")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.pipelines.devices",
        description="List the network cards seen on isolated segments as known_devices.",
    )
    parser.add_argument("--policy", required=True, help="the site policy (TOML)")
    parser.add_argument("captures", nargs="+", help="captures of normal days")
    args = parser.parse_args(argv)
    try:
        print(known_devices(args.captures, args.policy))
    except DetectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
