"""What the days before a scan taught it: one record the nightly builds from
its state (detector/nightly/history.py), a live sensor from what it saw
earlier, and a scan hands to the rules (``ScanContext``), in one process or
on a cluster's shares of hosts (detector/distributed/shares.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# (host_hi, host_lo, peer_hi, peer_lo): a host and an outside address it used.
FIRST_CONTACT_KEY = ["host_hi", "host_lo", "peer_hi", "peer_lo"]

# (peer_hi, peer_lo) -> the FIRST_CONTACT_KEY rows of hosts that used those addresses.
Users = Callable[[np.ndarray, np.ndarray], "pd.DataFrame"]


@dataclass(frozen=True)
class Before:
    """Each part optional:

    - ``learned_devices``: the network cards seen on isolated segments before
      (new-device-isolated's baseline besides the policy's);
    - ``first_contacts``: when each host first reached each outside address
      before (``first_contacts`` in pipelines/scan.py records them): for
      traffic whose early minutes were dropped, and a count of the address's
      users;
    - ``other_users``: the hosts that reached outside addresses in traffic not
      scanned here (a live sensor's look at a few hosts has the others'; the
      nightly's callers of an address): the call exemption's users;
    - ``habits``: (FIRST_CONTACT_KEY) pairs a host beat to on earlier days:
      beacon's habits, as the model's baseline pairs are;
    - ``earlier_users``: as ``other_users``, the hosts that used the addresses
      at all on earlier days, for "no other host used it" only, never the call
      exemption."""

    learned_devices: frozenset[str] = frozenset()
    first_contacts: pd.DataFrame | None = None
    other_users: Users | None = None
    habits: pd.DataFrame | None = None
    earlier_users: Users | None = None

    def __bool__(self) -> bool:
        """Whether it records any traffic (the cards aside)."""
        return any(
            part is not None
            for part in (self.first_contacts, self.other_users, self.habits, self.earlier_users)
        )

    def users(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """The (host, address) ``pairs`` (FIRST_CONTACT_KEY columns) recorded
        as users before: hosts a scan counts as the address's users already,
        whatever share of hosts they are in (``scan_activity`` counts the
        first-contact record's hosts and ``other_users``')."""
        import pandas as pd

        peers = pairs[["peer_hi", "peer_lo"]].drop_duplicates()
        found = []
        if self.first_contacts is not None and len(self.first_contacts):
            found.append(self.first_contacts[FIRST_CONTACT_KEY])
        if self.other_users is not None:
            rows = self.other_users(peers["peer_hi"].to_numpy(), peers["peer_lo"].to_numpy())
            found.append(rows[FIRST_CONTACT_KEY])
        if not found:
            return pairs[:0]
        recorded = pd.concat(found, ignore_index=True).astype(np.uint64).drop_duplicates()
        return pairs.merge(recorded, on=FIRST_CONTACT_KEY, how="inner")


NOTHING_BEFORE = Before()
