"""Per-host window features: a hand-computed case (in a zone 5:45 from UTC, so
windows aligned on UTC would be wrong), and the sample capture's totals
against the flow table's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gen_traffic import Capture, at

from detector.features import FEATURE_NAMES
from detector.flows.table import flows_from_captures
from detector.pipelines.scan import scan_captures
from detector.policy import load_policy

KATHMANDU = """
[site]
name = "kathmandu"
timezone = "Asia/Kathmandu"

[business_hours]
start = "09:00"
end = "17:00"

[networks]
internal = ["10.0.0.0/8"]
"""

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "captures" / "sample-incident.pcap.gz"
SAMPLE_POLICY = HERE.parent / "captures" / "sample-policy.toml"


def _features(tmp_path: Path, cap: Capture, policy: str) -> pd.DataFrame:
    (tmp_path / "p.toml").write_text(policy)
    result = scan_captures([cap.write(tmp_path / "c.pcap")], load_policy(tmp_path / "p.toml"))
    return result.features


def test_hand_computed_windows_in_a_quarter_hour_zone(tmp_path):
    zone = "Asia/Kathmandu"  # UTC+05:45
    cap = (
        Capture()
        # 3000 B out (frames of 1514 and 1486 at 10:07:00 and 10:08:00), 1000 B back
        .transfer("10.1.1.1", "203.0.113.1", start=at("2026-02-04 10:07", zone), seconds=60,
                  bytes_out=3000, bytes_in=1000, sport=40000, dport=443)
        .packet("10.1.1.1", "203.0.113.2", at_ns=at("2026-02-04 10:09:30", zone), wire=80,
                sport=40001, dport=53)
        # internal: 5000 B in 4 frames to a file server
        .transfer("10.1.1.1", "10.1.1.2", start=at("2026-02-04 10:08", zone), seconds=10,
                  bytes_out=5000, sport=40002, dport=445)
        # the next window: the same destination again, a new conversation
        .transfer("10.1.1.1", "203.0.113.1", start=at("2026-02-04 10:12", zone), seconds=1,
                  bytes_out=1514, sport=40003, dport=443)
    )  # fmt: skip
    f = _features(tmp_path, cap, KATHMANDU)
    assert list(f.columns) == ["host", "window_start", "window_end", *FEATURE_NAMES]
    host = f[f["host"] == "10.1.1.1"].reset_index(drop=True)
    assert [str(t) for t in host["window_start"]] == [
        "2026-02-04 10:00:00+05:45",
        "2026-02-04 10:10:00+05:45",
    ]
    first = host.iloc[0][FEATURE_NAMES].to_dict()
    assert first == {
        "bytes_out": 3080,
        "packets_out": 3,
        "bytes_in": 1000,
        "packets_in": 1,
        "flows": 2,
        "external_destinations": 2,
        "external_ports": 2,
        "new_destinations": 2,
        "largest_upload": 3000,
        "upload_download_ratio": 3.08,
        "internal_bytes": 5000,
        "internal_packets": 4,
        "off_hours": 0,
        "hour_of_week": 2 * 24 + 10,  # Wednesday 10:00
    }
    second = host.iloc[1][FEATURE_NAMES].to_dict()
    assert second == {
        "bytes_out": 1514,
        "packets_out": 1,
        "bytes_in": 0,
        "packets_in": 0,
        "flows": 1,
        "external_destinations": 1,
        "external_ports": 1,
        "new_destinations": 0,
        "largest_upload": 1514,
        "upload_download_ratio": 1514.0,
        "internal_bytes": 0,
        "internal_packets": 0,
        "off_hours": 0,
        "hour_of_week": 58,
    }
    # The file server only had internal traffic: a row all the same.
    server = f[f["host"] == "10.1.1.2"].iloc[0]
    assert (server["internal_bytes"], server["bytes_out"], server["flows"]) == (5000, 0, 0)


def test_host_counts_without_the_features(tmp_path):
    """A scan's summary counts hosts and host windows from the per-minute
    traffic, without making the features (they are made when first asked for):
    the hand-computed case above has 10.1.1.1 in two windows and its file
    server in one."""
    zone = "Asia/Kathmandu"
    cap = (
        Capture()
        .transfer("10.1.1.1", "203.0.113.1", start=at("2026-02-04 10:07", zone), seconds=60,
                  bytes_out=3000, bytes_in=1000, sport=40000, dport=443)
        .transfer("10.1.1.1", "10.1.1.2", start=at("2026-02-04 10:08", zone), seconds=10,
                  bytes_out=5000, sport=40002, dport=445)
        .transfer("10.1.1.1", "203.0.113.1", start=at("2026-02-04 10:12", zone), seconds=1,
                  bytes_out=1514, sport=40003, dport=443)
    )  # fmt: skip
    (tmp_path / "p.toml").write_text(KATHMANDU)
    result = scan_captures([cap.write(tmp_path / "c.pcap")], load_policy(tmp_path / "p.toml"))
    assert callable(result._features)  # not made yet
    assert result.host_counts() == (2, 3)
    f = result.features
    assert (f["host"].nunique(), len(f)) == (2, 3)
    assert result.host_counts() == (2, 3)  # from the features, now made


def test_off_hours_and_hour_of_week_on_a_sunday_night(tmp_path):
    zone = "Asia/Kathmandu"
    cap = Capture().packet("10.1.1.1", "203.0.113.1", at_ns=at("2026-02-08 23:55", zone))
    row = _features(tmp_path, cap, KATHMANDU).iloc[0]
    assert str(row["window_start"]) == "2026-02-08 23:50:00+05:45"
    assert (row["off_hours"], row["hour_of_week"]) == (1, 6 * 24 + 23)


@pytest.mark.skipif(not SAMPLE.exists(), reason="the bundled sample capture is missing")
def test_sample_totals_per_host_equal_the_flow_tables():
    policy = load_policy(SAMPLE_POLICY)
    result = scan_captures([SAMPLE], policy)
    hosts, windows = result.host_counts()
    features = result.features
    assert (hosts, windows) == (features["host"].nunique(), len(features))
    per_host = features.groupby("host")[["bytes_out", "bytes_in", "internal_bytes"]].sum()
    from_windows = per_host["bytes_out"] + per_host["bytes_in"] + per_host["internal_bytes"]

    flows, _ = flows_from_captures([SAMPLE])
    total = flows["src2dst_bytes"] + flows["dst2src_bytes"]
    both = pd.concat(
        [pd.DataFrame({"host": flows["src_ip"], "bytes": total}),
         pd.DataFrame({"host": flows["dst_ip"], "bytes": total})]
    )  # fmt: skip
    internal = both[both["host"].map(lambda a: policy.internal.contains_text(a))]
    from_flows = internal.groupby("host")["bytes"].sum()
    assert from_windows.sort_index().to_dict() == from_flows.sort_index().to_dict()
    assert np.all(features["bytes_out"] >= features["largest_upload"])
