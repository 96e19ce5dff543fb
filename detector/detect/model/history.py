"""The history: what the baseline looked like, per host and for the whole
site (the usual and the records the candidate test and the explanations
compare with), and the (host, outside address) pairs it knew."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .constants import COUNT_FEATURES
from .frames import complete_features

if TYPE_CHECKING:
    import pandas as pd

    from ...features.hosts import HostTraffic


@dataclass
class History:
    """Per-host and site-wide baseline statistics (raw feature units).

    ``host_quantiles[h, f]`` = (median, 95th percentile, highest) of
    ``COUNT_FEATURES[f]`` over host ``hosts[h]``'s baseline windows;
    ``host_hour[h, d]`` = (median, 95th percentile, windows, highest) of its
    bytes out in windows starting at local
    hour ``d`` (or the hours either side: the largest); ``site_*`` the same over all
    hosts. ``known_*`` are the (host,
    outside address) pairs of the baseline, 128-bit addresses as (hi, lo).
    """

    hosts: np.ndarray  # str, sorted
    host_quantiles: np.ndarray  # float64 [hosts, COUNT_FEATURES, 3]
    host_hour: np.ndarray  # float64 [hosts, 24, 4]
    site_quantiles: np.ndarray  # float64 [COUNT_FEATURES, 3]
    site_hour: np.ndarray  # float64 [24, 4]
    known_host_hi: np.ndarray  # uint64
    known_host_lo: np.ndarray
    known_peer_hi: np.ndarray
    known_peer_lo: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> History:
        """A History of arrays read from a file, checked to be what
        :func:`build_history` makes (types, shapes, sorted hosts, finite
        non-negative figures): ValueError saying which array is not."""
        hosts = arrays["hosts"]
        if hosts.dtype.kind != "U" or hosts.ndim != 1 or hosts.dtype.itemsize > 4 * 64:
            raise ValueError(f"hosts is {hosts.dtype} {hosts.shape}, not a list of host addresses")
        if len(hosts) > 1 and not (hosts[1:] > hosts[:-1]).all():
            raise ValueError("hosts are not in order, each once")
        n, f = len(hosts), len(COUNT_FEATURES)
        shapes = {"host_quantiles": (n, f, 3), "host_hour": (n, 24, 4),
                  "site_quantiles": (f, 3), "site_hour": (24, 4)}  # fmt: skip
        for name, shape in shapes.items():
            values = arrays[name]
            if values.dtype != np.float64 or values.shape != shape:
                raise ValueError(f"{name} is {values.dtype} {values.shape}, not float64 {shape}")
            if not (np.isfinite(values).all() and (values >= 0).all()):
                raise ValueError(f"{name} holds numbers that are not finite or are below 0")
        known = ("known_host_hi", "known_host_lo", "known_peer_hi", "known_peer_lo")
        for name in known:
            values = arrays[name]
            if values.dtype != np.uint64 or values.shape != arrays[known[0]].shape[:1]:
                raise ValueError(f"{name} is {values.dtype} {values.shape}, not uint64 as long "
                                 f"as known_host_hi")  # fmt: skip
        return cls(**{name: arrays[name] for name in cls.__dataclass_fields__})

    def host_index(self, hosts: np.ndarray) -> np.ndarray:
        """Index of each host in ``hosts`` (-1: not in the baseline)."""
        hosts = np.asarray(hosts, dtype=str)
        if len(self.hosts) == 0:
            return np.full(len(hosts), -1, dtype=np.int64)
        at = np.searchsorted(self.hosts, hosts)
        at = np.minimum(at, len(self.hosts) - 1)
        return np.where(self.hosts[at] == hosts, at, -1).astype(np.int64)

    def usual(self, name: str, host_index: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """(median, 95th percentile) of feature ``name`` for these hosts (bytes out:
        at this hour of day; ``bytes_out_any_hour``: over all hours), falling
        back to the site's where the host has no baseline. A host never active
        at that hour usually sends nothing: (0, 0)."""
        known = host_index >= 0
        h = np.where(known, host_index, 0)
        if name == "bytes_out":
            site = self.site_hour[hour, :2]
            mine = self.host_hour[h, hour, :2] if len(self.hosts) else site
            seen = self.host_hour[h, hour, 2] > 0 if len(self.hosts) else known
            mine = np.where(seen[:, None], mine, 0.0)
            return np.where(known[:, None], mine, site)
        # Bytes out over all hours, not at this one.
        f = COUNT_FEATURES.index("bytes_out" if name == "bytes_out_any_hour" else name)
        site = np.broadcast_to(self.site_quantiles[f, :2], (len(host_index), 2))
        mine = self.host_quantiles[h, f, :2] if len(self.hosts) else site
        return np.where(known[:, None], mine, site)

    def most(self, name: str, host_index: np.ndarray) -> np.ndarray:
        """The most of feature ``name`` these hosts (else the site's hosts) had
        in one baseline window, at any hour."""
        known = host_index >= 0
        h = np.where(known, host_index, 0)
        f = COUNT_FEATURES.index(name)
        site = np.full(len(host_index), self.site_quantiles[f, 2])
        mine = self.host_quantiles[h, f, 2] if len(self.hosts) else site
        return np.where(known, mine, site)

    def most_at_hour(self, host_index: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """The most bytes out these hosts (else the site) sent in one baseline
        window at this hour of day (or the hours either side)."""
        known = host_index >= 0
        h = np.where(known, host_index, 0)
        site = self.site_hour[hour, 3]
        mine = self.host_hour[h, hour, 3] if len(self.hosts) else site
        return np.where(known, mine, site)


def _quantiles(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(median, 95th percentile, count, highest) of ``values`` per group id."""
    import pandas as pd

    out = np.zeros((n_groups, 4), dtype=np.float64)
    if len(values) == 0:
        return out
    by = pd.Series(values, dtype=np.float64).groupby(groups)
    q = by.quantile(np.array([0.5, 0.95])).unstack()
    idx = q.index.to_numpy(dtype=np.int64)
    out[idx, 0] = q[0.5].to_numpy()
    out[idx, 1] = q[0.95].to_numpy()
    counts = by.size()
    out[counts.index.to_numpy(dtype=np.int64), 2] = counts.to_numpy()
    most = by.max()
    out[most.index.to_numpy(dtype=np.int64), 3] = most.to_numpy()
    return out


def _neighbour_hours(per_hour: np.ndarray) -> np.ndarray:
    """What is usual at an hour is what was seen in it or the hours either side
    (the most of their medians, 95th percentiles and highest, the sum of their
    windows):
    a nightly backup that runs over into the next hour, or a day that starts
    half an hour early, is not unusual."""
    before, after = np.roll(per_hour, 1, axis=1), np.roll(per_hour, -1, axis=1)
    out = np.maximum(np.maximum(before, per_hour), after)
    out[..., 2] = before[..., 2] + per_hour[..., 2] + after[..., 2]
    return out


def build_history(features: pd.DataFrame, destinations: pd.DataFrame | None = None) -> History:
    """Baseline statistics of ``features`` (host_windows rows), and the known
    (host, destination) pairs from ``destinations`` (see :func:`destinations_of`)."""
    features = complete_features(features)
    hosts_text = features["host"].to_numpy(dtype=str)
    hosts, host_id = np.unique(hosts_text, return_inverse=True)
    host_id = host_id.reshape(-1)
    hour = (features["hour_of_week"].to_numpy(dtype=np.int64) % 24).astype(np.int64)
    n = len(hosts)
    host_quantiles = np.zeros((n, len(COUNT_FEATURES), 3))
    site_quantiles = np.zeros((len(COUNT_FEATURES), 3))
    for f, name in enumerate(COUNT_FEATURES):
        values = features[name].to_numpy(dtype=np.float64)
        host_quantiles[:, f, :] = _quantiles(values, host_id, n)[:, [0, 1, 3]]
        if len(values):
            site_quantiles[f] = [*np.quantile(values, [0.5, 0.95]), values.max()]
    bytes_out = features["bytes_out"].to_numpy(dtype=np.float64)
    host_hour = _neighbour_hours(
        _quantiles(bytes_out, host_id * 24 + hour, n * 24).reshape(n, 24, 4)
    )
    site_hour = _neighbour_hours(_quantiles(bytes_out, hour, 24)[None])[0]
    empty = np.zeros(0, dtype=np.uint64)
    if destinations is None or destinations.empty:
        known = [empty, empty, empty, empty]
    else:
        known = [destinations[c].to_numpy(dtype=np.uint64)
                 for c in ("host_hi", "host_lo", "peer_hi", "peer_lo")]  # fmt: skip
    return History(hosts.astype(str), host_quantiles, host_hour, site_quantiles, site_hour,
                   *known)  # fmt: skip


def destinations_of(traffic: HostTraffic) -> pd.DataFrame:
    """Distinct (host, external address) pairs of a scan, as 128-bit halves."""
    import pandas as pd

    f = traffic.frame
    ext = f[f["peer_external"].to_numpy()]
    pairs = ext[["host_id", "peer_id"]].drop_duplicates()
    h = pairs["host_id"].to_numpy(dtype=np.int64)
    p = pairs["peer_id"].to_numpy(dtype=np.int64)
    return pd.DataFrame({
        "host_hi": traffic.address_hi[h], "host_lo": traffic.address_lo[h],
        "peer_hi": traffic.address_hi[p], "peer_lo": traffic.address_lo[p],
    })  # fmt: skip
