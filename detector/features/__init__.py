"""Per-host, per-window egress features (``FEATURE_NAMES``), built from the
per-minute activity table and the site policy."""

from .hosts import FEATURE_DOC, FEATURE_NAMES, HostTraffic, host_traffic, host_windows

__all__ = ["FEATURE_DOC", "FEATURE_NAMES", "HostTraffic", "host_traffic", "host_windows"]
