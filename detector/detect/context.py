"""What a detection's check is given: the site policy and one scan's traffic.

Rules over per-minute traffic read ``traffic``; rules over payload read
``facts`` (what inspection found in the first packets of each flow), ``names``
(what outside addresses are called) and ``flows`` (the flow records); the
side-channel rules read ``link`` (what the link layer of isolated segments showed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..units import MINUTE_NS

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd

    from ..features.hosts import HostTraffic
    from ..policy import Policy
    from .names import Names


@dataclass
class ScanContext:
    policy: Policy
    traffic: HostTraffic
    window_minutes: int
    # (host_id, peer_id) pairs known from a trained model's baseline: never "new"
    # to bulk-upload-new-destination (None: first contact in this scan decides).
    known_destinations: pd.MultiIndex | None = None
    # First contacts recorded before this traffic's earliest minutes (a live
    # sensor forgets old minutes but not when a host first reached an
    # address): first_ns by (host_id, peer_id); the earlier time wins.
    first_contacts: pd.Series | None = None
    # Which hosts of a trained model's baseline used given outside addresses of
    # this traffic: peer ids -> (host_hi, host_lo, peer_id) rows. With this
    # traffic's own users, how many hosts of the site share an address.
    baseline_users: Callable[[np.ndarray], pd.DataFrame] | None = None
    # How many hosts not in this traffic used given outside addresses (a share
    # of the hosts analysed on a worker: the other shares' hosts, which none of
    # this traffic's are): peer ids -> counts by peer id, added to the above.
    users_elsewhere: Callable[[np.ndarray], pd.Series] | None = None
    facts: pd.DataFrame | None = None  # payload facts (detector/flows/payload.py)
    names: Names | None = None
    flows: Any = None  # the FlowTable (its exported flow records)
    # Link-layer facts of isolated segments (detector/flows/link.py): devices,
    # gateways, ARP, DHCP replies, router advertisements; None when not looked at.
    link: pd.DataFrame | None = None
    # Network cards (MAC addresses as text) seen on isolated segments before this
    # traffic (the nightly's state): known to new-device-isolated like its list.
    learned_devices: frozenset[str] = frozenset()
    # Which hosts exchanged any packet with given outside addresses on earlier
    # days (the nightly's record): peer ids -> (host_hi, host_lo, peer_id) rows.
    # Only for "no other host of the site used it" (low-and-slow-egress's one
    # upload), never for the call exemption, which counts callers.
    earlier_contacts: Callable[[np.ndarray], pd.DataFrame] | None = None

    @property
    def gap_ns(self) -> int:
        """Minutes closer than this belong to the same alert."""
        return self.window_minutes * MINUTE_NS
