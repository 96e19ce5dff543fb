"""Per-host traffic and per-host window features.

Two steps, both vectorised pandas over the per-minute activity table
(detector/flows/activity.py):

* :func:`host_traffic` turns conversations (A, B) into the view of each
  *internal* host: one row per (host, peer, ports, protocol, VLAN, minute) with
  bytes out (host → peer) and in. A conversation between two internal hosts
  appears twice, once for each. The rules work on this view.
* :func:`host_windows` sums that view into windows of ``window_minutes``
  (default 10), aligned in the site's local time: the ``FEATURE_NAMES`` columns.
  Only windows in which a host sent or received something are rows.

Why minutes: a rule such as "50 MB within any 60-minute span" must not be
fooled by where window boundaries fall, so the finest grain kept is the minute
and spans slide over it. Site time zones are whole minutes from UTC, so UTC
minutes are also local minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..arrays import sorted_unique
from ..networks import address_ids, address_text, is_folded
from ..units import DAY_NS, HOUR_NS, MINUTE_NS

if TYPE_CHECKING:
    import pandas as pd

    from ..policy import Policy


# One list, one order: the model (and anything written against --features-out)
# relies on it. Each feature: the words the model's explanations use for it
# ("" where they name the feature itself), and what it counts.
FEATURES: dict[str, tuple[str, str]] = {
    "bytes_out": (
        "bytes out",
        "bytes on the wire the host sent to external addresses",
    ),
    "packets_out": (
        "packets out",
        "packets the host sent to external addresses",
    ),
    "bytes_in": (
        "received",
        "bytes the host received from external addresses",
    ),
    "packets_in": (
        "packets in",
        "packets the host received from external addresses",
    ),
    "flows": (
        "outside conversations",
        "conversations with external addresses active in the window "
        "(peer, ports, protocol and VLAN)",
    ),
    "external_destinations": (
        "outside addresses",
        "distinct external addresses the host exchanged packets with",
    ),
    "external_ports": (
        "outside services",
        "distinct (protocol, port) pairs on the external side",
    ),
    "new_destinations": (
        "new outside addresses",
        "external addresses the host reached for the first time (first time in this scan)",
    ),
    "largest_upload": (
        "largest single upload",
        "most bytes one conversation carried from the host to outside within the window",
    ),
    "upload_download_ratio": (
        "",
        "bytes_out / bytes_in (bytes_in counted as at least 1)",
    ),
    "internal_bytes": (
        "internal traffic",
        "bytes the host exchanged with internal and local-scope addresses, both directions",
    ),
    "internal_packets": (
        "internal packets",
        "packets the host exchanged with internal and local-scope addresses",
    ),
    "off_hours": (
        "",
        "1 when the window starts outside business hours (site time zone, "
        "weekends and holidays included), else 0",
    ),
    "hour_of_week": (
        "",
        "local hour of the window start counted from Monday 00:00 (0–167)",
    ),
}
FEATURE_DOC: dict[str, str] = {name: doc for name, (_, doc) in FEATURES.items()}
FEATURE_LABELS: dict[str, str] = {name: label for name, (label, _) in FEATURES.items() if label}
FEATURE_NAMES: list[str] = list(FEATURE_DOC)


@dataclass
class HostTraffic:
    """The view of each internal host: ``frame`` has one row per (host, peer,
    host_port, peer_port, proto, vlan, minute_ns) with ``bytes_out``,
    ``packets_out``, ``bytes_in``, ``packets_in``, ``first_ns``, ``last_ns`` and
    boolean columns ``host_isolated``, ``peer_external``, ``peer_allowlisted``,
    ``peer_isolated``, ``peer_isolated_peer``, ``peer_local_scope``. Hosts and
    peers are integer ids into ``address_hi``/``address_lo``; ``text`` gives
    an id's address as text (made on demand: a busy site's scan meets millions
    of outside addresses and names only a few of them)."""

    frame: pd.DataFrame
    address_hi: np.ndarray  # id → upper 64 bits
    address_lo: np.ndarray  # id → lower 64 bits
    first_ns: int | None  # first and last packet of the whole scan (any host)
    last_ns: int | None

    def text(self, address_id: int) -> str:
        return address_text(int(self.address_hi[address_id]), int(self.address_lo[address_id]))

    def texts(self, address_ids: np.ndarray) -> np.ndarray:
        """Text of many ids (object array), each distinct address formatted once."""
        unique, inverse = np.unique(np.asarray(address_ids, dtype=np.int64), return_inverse=True)
        names = np.array([self.text(int(i)) for i in unique], dtype=object)
        return names[inverse.reshape(-1)]

    def users_of(
        self, lookup: Callable[[np.ndarray, np.ndarray], pd.DataFrame], peers: np.ndarray
    ) -> pd.DataFrame:
        """Who used given outside addresses of this traffic (``peers``, ids)
        according to ``lookup`` ((peer_hi, peer_lo) arrays -> rows with
        ``host_hi``, ``host_lo``, ``peer_hi``, ``peer_lo``: a model's baseline,
        a first-contact record, a live sensor's other hosts), as (``host_hi``,
        ``host_lo``, ``peer_id``) rows with this traffic's peer ids."""
        import pandas as pd

        peers = sorted_unique(np.asarray(peers, dtype=np.int64))
        scan = pd.DataFrame({"peer_hi": self.address_hi[peers], "peer_lo": self.address_lo[peers],
                             "peer_id": peers})  # fmt: skip
        found = lookup(scan["peer_hi"].to_numpy(), scan["peer_lo"].to_numpy())
        both = found.merge(scan, on=["peer_hi", "peer_lo"], how="inner")
        return both[["host_hi", "host_lo", "peer_id"]]

    def external_pairs(self) -> pd.DataFrame:
        """Each (host, outside peer) pair once: ``host_id``, ``peer_id`` and their
        addresses (``host_hi``, ``host_lo``, ``peer_hi``, ``peer_lo``), for joins
        with histories kept by address."""
        import pandas as pd

        f = self.frame
        ext = f[f["peer_external"].to_numpy()][["host_id", "peer_id"]].drop_duplicates()
        h = ext["host_id"].to_numpy(dtype=np.int64)
        p = ext["peer_id"].to_numpy(dtype=np.int64)
        return pd.DataFrame({
            "host_hi": self.address_hi[h], "host_lo": self.address_lo[h],
            "peer_hi": self.address_hi[p], "peer_lo": self.address_lo[p],
            "host_id": h, "peer_id": p,
        })  # fmt: skip


def host_traffic(
    activity: Mapping[str, np.ndarray],
    policy: Policy,
    also_allowlisted: Iterable[tuple[int, int]] = (),
) -> HostTraffic:
    """Orient per-minute conversations ``activity`` (ACTIVITY_COLUMNS) by internal
    host. ``also_allowlisted``: (hi, lo) addresses sanctioned by name
    (``allowlist.domains``), as if listed in ``allowlist.destinations``."""
    import pandas as pd

    from ..networks import LOCAL_SCOPE

    a_hi = np.asarray(activity["a_hi"], dtype=np.uint64)
    a_lo = np.asarray(activity["a_lo"], dtype=np.uint64)
    b_hi = np.asarray(activity["b_hi"], dtype=np.uint64)
    b_lo = np.asarray(activity["b_lo"], dtype=np.uint64)
    n = len(a_hi)
    first_ns = int(np.min(activity["first_ns"])) if n else None
    last_ns = int(np.max(activity["last_ns"])) if n else None

    ids, hi_of, lo_of = address_ids(np.concatenate([a_hi, b_hi]), np.concatenate([a_lo, b_lo]))
    # Ids in address order, not in order of first appearance: a scan spread
    # over workers analyses each share of the hosts apart (detector/distributed),
    # and any share's ids must order as the whole scan's do. (Sorting the
    # distinct addresses: 134,302 in the 20M capture, about 10 ms.)
    by_address = np.lexsort((lo_of, hi_of))
    rank = np.empty(len(by_address), dtype=np.int64)
    rank[by_address] = np.arange(len(by_address), dtype=np.int64)
    ids, hi_of, lo_of = rank[ids], hi_of[by_address], lo_of[by_address]
    a_id, b_id = ids[:n], ids[n:]
    # Classify each distinct address once, not each row.
    internal = policy.internal.contains(hi_of, lo_of)
    external = policy.is_external(hi_of, lo_of)
    isolated = policy.isolated.contains(hi_of, lo_of)
    isolated_peer = policy.isolated_peers.contains(hi_of, lo_of)
    allowlisted = policy.allowlist_destinations.contains(hi_of, lo_of)
    extra = list(also_allowlisted)
    if extra:
        pairs = {(int(h), int(low)) for h, low in extra}
        allowlisted |= np.array(
            [(int(h), int(low)) in pairs for h, low in zip(hi_of, lo_of, strict=True)], dtype=bool
        )
    local_scope = LOCAL_SCOPE.contains(hi_of, lo_of)
    folded = is_folded(hi_of, lo_of)
    if folded.any():  # outside addresses counted together under a flood: outside, whatever
        internal &= ~folded  # the policy's networks say
        external |= folded
        for flags in (isolated, isolated_peer, allowlisted, local_scope):
            flags &= ~folded

    def side(host_is_a: bool) -> dict[str, np.ndarray]:
        keep = internal[a_id] if host_is_a else internal[b_id]
        h, p = (a_id, b_id) if host_is_a else (b_id, a_id)
        hp, pp = ("a_port", "b_port") if host_is_a else ("b_port", "a_port")
        out, back = ("ab", "ba") if host_is_a else ("ba", "ab")
        return {
            "host_id": h[keep],
            "peer_id": p[keep],
            "host_port": np.asarray(activity[hp])[keep].astype(np.int32),
            "peer_port": np.asarray(activity[pp])[keep].astype(np.int32),
            "proto": np.asarray(activity["proto"])[keep].astype(np.int32),
            "vlan": np.asarray(activity["vlan"])[keep].astype(np.int32),
            "minute_ns": np.asarray(activity["bin_start_ns"])[keep].astype(np.int64),
            "bytes_out": np.asarray(activity[f"bytes_{out}"])[keep].astype(np.int64),
            "packets_out": np.asarray(activity[f"packets_{out}"])[keep].astype(np.int64),
            "bytes_in": np.asarray(activity[f"bytes_{back}"])[keep].astype(np.int64),
            "packets_in": np.asarray(activity[f"packets_{back}"])[keep].astype(np.int64),
            "first_ns": np.asarray(activity["first_ns"])[keep].astype(np.int64),
            "last_ns": np.asarray(activity["last_ns"])[keep].astype(np.int64),
        }

    parts = [side(True), side(False)]
    columns = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    host, peer = columns["host_id"], columns["peer_id"]
    columns["host_isolated"] = isolated[host]
    columns["peer_external"] = external[peer]
    columns["peer_allowlisted"] = allowlisted[peer]
    columns["peer_isolated"] = isolated[peer]
    columns["peer_isolated_peer"] = isolated_peer[peer]
    columns["peer_local_scope"] = local_scope[peer]
    frame = pd.DataFrame(columns)
    frame = frame.sort_values(["minute_ns", "host_id", "peer_id"], kind="stable")
    frame = frame.reset_index(drop=True)
    return HostTraffic(frame, hi_of, lo_of, first_ns, last_ns)


def window_starts(minute_ns: np.ndarray, policy: Policy, window_minutes: int) -> np.ndarray:
    """UTC start of the site-local window holding each instant.

    Windows are aligned on local wall-clock time (10-minute windows start at
    :00, :10, … local), but named by their UTC start, so the hour repeated when
    daylight saving time ends gives two different windows, not one merged one.
    """
    width = window_minutes * MINUTE_NS
    unique, inverse = np.unique(np.asarray(minute_ns, dtype=np.int64), return_inverse=True)
    offset = policy.utc_offset_ns(unique)
    starts = unique - np.mod(unique + offset, width)
    return starts[inverse.reshape(-1)]


def hour_of_week(ts_ns: np.ndarray, policy: Policy) -> np.ndarray:
    """Local hour counted from Monday 00:00 (0–167)."""
    local = np.asarray(ts_ns, dtype=np.int64) + policy.utc_offset_ns(ts_ns)
    days = np.floor_divide(local, DAY_NS)
    weekday = np.mod(days + 3, 7)  # 1970-01-01 was a Thursday (Monday = 0)
    return (weekday * 24 + np.floor_divide(np.mod(local, DAY_NS), HOUR_NS)).astype(np.int64)


def host_window_counts(
    traffic: HostTraffic, policy: Policy, window_minutes: int | None = None
) -> tuple[int, int]:
    """The internal hosts and the rows :func:`host_windows` would give (a row
    per host and window in which it sent or received anything), without
    making the features: what a scan's summary line says."""
    f = traffic.frame
    if f.empty:
        return 0, 0
    minutes = window_minutes or policy.window_minutes
    windows = window_starts(f["minute_ns"].to_numpy(), policy, minutes)
    _, window_code = np.unique(windows, return_inverse=True)
    hosts = f["host_id"].to_numpy(dtype=np.int64)
    pairs = sorted_unique(hosts * (int(window_code.max()) + 1) + window_code.reshape(-1))
    return len(sorted_unique(hosts)), len(pairs)


def host_windows(
    traffic: HostTraffic, policy: Policy, window_minutes: int | None = None
) -> pd.DataFrame:
    """One row per (internal host, window) with traffic: ``host``,
    ``window_start`` and ``window_end`` (site time zone), then ``FEATURE_NAMES``."""
    import pandas as pd

    minutes = window_minutes or policy.window_minutes
    f = traffic.frame
    if f.empty:
        empty = pd.DataFrame({"host": pd.Series([], dtype=object)})
        empty["window_start"] = pd.Series([], dtype=f"datetime64[ns, {policy.timezone}]")
        empty["window_end"] = empty["window_start"]
        for name in FEATURE_NAMES:
            empty[name] = pd.Series([], dtype=np.float64 if name.endswith("ratio") else np.int64)
        return empty
    f = f.assign(window_ns=window_starts(f["minute_ns"].to_numpy(), policy, minutes))
    keys = ["host_id", "window_ns"]
    ext = f[f["peer_external"].to_numpy()]
    by_window = ext.groupby(keys, sort=False)
    table = by_window[["bytes_out", "packets_out", "bytes_in", "packets_in"]].sum()

    conversation = [*keys, "peer_id", "host_port", "peer_port", "proto", "vlan"]
    uploads = ext.groupby(conversation, sort=False)["bytes_out"].sum()
    per_window = uploads.groupby(level=[0, 1], sort=False)
    table["flows"] = per_window.size()
    table["external_destinations"] = by_window["peer_id"].nunique()
    ported = ext[ext["peer_port"].to_numpy() > 0]
    port_keys = ported["proto"].to_numpy().astype(np.int64) * 65536 + ported["peer_port"]
    table["external_ports"] = (
        ported.assign(port_key=port_keys).groupby(keys, sort=False)["port_key"].nunique()
    )
    first_contact = ext.groupby(["host_id", "peer_id"], sort=False)["first_ns"].min()
    first_minute = first_contact.to_numpy() - np.mod(first_contact.to_numpy(), MINUTE_NS)
    first_window = window_starts(first_minute, policy, minutes)
    new = pd.Series(1, index=pd.MultiIndex.from_arrays(
        [first_contact.index.get_level_values(0), first_window], names=keys))  # fmt: skip
    table["new_destinations"] = new.groupby(level=[0, 1]).sum()
    table["largest_upload"] = per_window.max()

    inside = f[~f["peer_external"].to_numpy()]
    inside_sums = inside.groupby(keys, sort=False)[["bytes_out", "bytes_in", "packets_out",
                                                    "packets_in"]].sum()  # fmt: skip
    internal = pd.DataFrame(
        {
            "internal_bytes": inside_sums["bytes_out"] + inside_sums["bytes_in"],
            "internal_packets": inside_sums["packets_out"] + inside_sums["packets_in"],
        }
    )
    table = table.join(internal, how="outer")
    counts = [n for n in FEATURE_NAMES if n not in ("upload_download_ratio", "off_hours",
                                                    "hour_of_week")]  # fmt: skip
    table[counts] = table[counts].fillna(0).astype(np.int64)
    table["upload_download_ratio"] = table["bytes_out"] / np.maximum(table["bytes_in"], 1)
    table = table.reset_index()
    starts = table["window_ns"].to_numpy(dtype=np.int64)
    table["off_hours"] = (~policy.is_business_time(starts)).astype(np.int64)
    table["hour_of_week"] = hour_of_week(starts, policy)
    table = table.sort_values(["window_ns", "host_id"], kind="stable")
    out = pd.DataFrame({"host": traffic.texts(table["host_id"].to_numpy())})
    start = pd.to_datetime(table["window_ns"].to_numpy(), utc=True).tz_convert(policy.timezone)
    out["window_start"] = start
    out["window_end"] = start + pd.Timedelta(minutes=minutes)
    for name in FEATURE_NAMES:
        out[name] = table[name].to_numpy()
    return out
