"""The distributed scan (detector/distributed) against the single-process scan
on the same input, on a small Dask LocalCluster; cut points against a plain
record walk; the merge against hand-computed flows."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pandas import testing as pd_testing

pytest.importorskip("dask.distributed", reason="needs the 'distributed' extra (Dask)")

from dask.distributed import Client, LocalCluster, WorkerPlugin  # noqa: E402
from gen_traffic import Capture, at  # noqa: E402
from scapy.compat import raw  # noqa: E402
from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import ICMPv6ND_RA, IPv6  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402
from scapy.utils import mac2str  # noqa: E402

from detector._kernels import flowtable as fk  # noqa: E402
from detector.capture import CaptureProblem  # noqa: E402
from detector.capture.reading import Reading  # noqa: E402
from detector.detect.rules import DETECTIONS  # noqa: E402
from detector.distributed import DistributedUnavailable, scan_captures_distributed  # noqa: E402
from detector.distributed.count import Settings, count_part  # noqa: E402
from detector.distributed.merge import FlowFold, in_stream_order  # noqa: E402
from detector.distributed.parts import Part, plan_parts  # noqa: E402
from detector.distributed.shares import LINK_RULES  # noqa: E402
from detector.flows.activity import ActivityTable, _merged_in_time_order  # noqa: E402
from detector.flows.table import count_flows  # noqa: E402
from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import load_policy  # noqa: E402

from gen_cases import T0, Pcapng, eth, write_pcap  # noqa: E402

NS = 1_000_000_000
POLICY = """
[site]
name = "taipei-mission"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]
"""
PART_BYTES = 1 << 16  # the smallest cut: a 2.8 MB capture makes ~45 parts
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def policy(tmp_path):
    (tmp_path / "policy.toml").write_text(POLICY)
    return load_policy(tmp_path / "policy.toml")


def record_offsets(path: Path) -> list[int]:
    """Where each record of a little-endian classic pcap starts (a plain walk)."""
    data = path.read_bytes()
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


def split_at_times(path: Path, cuts_ns: list[int], out: Path) -> list[Path]:
    """Rotated files: ``path``'s records cut where time reaches each of ``cuts_ns``."""
    data = path.read_bytes()
    offsets = record_offsets(path)
    times = [
        struct.unpack_from("<I", data, o)[0] * NS + struct.unpack_from("<I", data, o + 4)[0]
        for o in offsets
    ]  # nanosecond pcap (gen_traffic)
    edges = [24] + [offsets[np.searchsorted(times, c)] for c in cuts_ns] + [len(data)]
    files = []
    for k in range(len(edges) - 1):
        f = out / f"rotated-{k}.pcap"
        f.write_bytes(data[:24] + data[edges[k] : edges[k + 1]])
        files.append(f)
    return files


def day_of_traffic(tmp_path: Path) -> tuple[Path, int]:
    t = at("2026-02-04 19:00", "Asia/Taipei")
    cap = Capture()
    # 60 MB out over 20 minutes: split across many parts and two files.
    cap.transfer("10.8.10.44", "203.0.113.140", start=t, seconds=1200,
                 bytes_out=60_000_000, bytes_in=1_000_000)  # fmt: skip
    # A packet a minute on one 5-tuple for two hours: closed by the active
    # timeout (30 min) at points that fall inside parts.
    for k in range(120):
        cap.packet("10.8.10.50", "10.8.0.1", at_ns=t + k * 60 * NS, sport=5353, dport=53)
    # Idle gaps of exactly the idle timeout (120 s, continues) and just over it.
    for s in (0, 120, 240, 361, 400):
        cap.packet("10.8.10.51", "198.51.100.9", at_ns=t + 500 * NS + s * NS, sport=40001,
                   dport=123)  # fmt: skip
    cap.transfer("10.8.40.31", "198.51.100.7", start=t + 600 * NS, seconds=30, bytes_out=100_000)
    return cap.write(tmp_path / "day.pcap"), t


def rows_sorted(frame):
    cols = list(frame.columns)
    return frame.sort_values(cols).reset_index(drop=True)


def assert_same_scan(single, dist):
    flows_1, flows_2 = single.flows.to_frame(), dist.flows.to_frame()
    assert len(flows_1) == len(flows_2)
    assert rows_sorted(flows_1).equals(rows_sorted(flows_2))
    assert single.features.equals(dist.features)
    assert single.alerts == dist.alerts
    a1, a2 = single.activity.columns(), dist.activity.columns()
    for name in a1:
        np.testing.assert_array_equal(a1[name], a2[name], err_msg=name)


def test_same_flows_features_and_alerts_across_cuts_and_files(tmp_path, client, policy):
    whole, t = day_of_traffic(tmp_path)
    rotated = split_at_times(whole, [t + 400 * NS, t + 3000 * NS], tmp_path)
    parts = plan_parts([str(p) for p in rotated], PART_BYTES)
    assert len(parts) > 3 * len(rotated)  # files cut into byte ranges
    single = scan_captures([whole], policy)
    problems: list[CaptureProblem] = []
    dist = scan_captures_distributed(rotated, policy, client=client, part_bytes=PART_BYTES,
                                     reading=Reading(on_problem=problems.append))  # fmt: skip
    assert problems == []
    assert_same_scan(single, dist)
    flows = dist.flows.to_frame()
    # Hand-computed: the transfer is one flow of its exact bytes, though ~40 cuts and
    # a file boundary fall inside it.
    big = flows[flows["dst_ip"] == "203.0.113.140"]
    assert len(big) == 1
    assert (big["src2dst_bytes"].iloc[0], big["dst2src_bytes"].iloc[0]) == (60_000_000, 1_000_000)
    # The minute-by-minute flow: packets at 0..1800 s, 1860..3660 s, 3720..5520 s,
    # 5580..7140 s (each closed by the first packet more than 1800 s after its first).
    chatter = flows[flows["dst_ip"] == "10.8.0.1"].sort_values("first_seen")
    assert chatter["src2dst_packets"].tolist() == [31, 31, 31, 27]
    assert chatter["expiry_reason"].tolist() == ["active", "active", "active", "end"]
    ntp = flows[flows["dst_port"] == 123].sort_values("first_seen")
    assert ntp["src2dst_packets"].tolist() == [3, 2]
    assert ntp["expiry_reason"].tolist() == ["idle", "idle"]  # idle too at the end of input
    assert [a.rule_id for a in dist.alerts] == ["isolated-egress", "offhours-bulk-egress"]


ISO_MACS = {f"10.8.40.{10 + k}": f"00:1b:21:00:40:{10 + k:02x}" for k in range(1, 4)}
GW, GW_MAC = "10.8.40.1", "00:1b:17:00:40:01"
LAPTOP, LAPTOP_MAC = "10.8.40.77", "3c:22:fb:12:34:56"  # Apple's OUI
SIDE_POLICY = POLICY + f"""
[rules.new-device-isolated]
known_devices = {json.dumps([*ISO_MACS.values(), GW_MAC])}
"""


def side_channel_hour(tmp_path: Path) -> tuple[Path, int]:
    """An hour of an isolated segment: three known computers each sending a
    frame to the next every second (so each device fact has frames in the
    minutes on both sides of every cut), and the signs of a rogue laptop:
    its own traffic (minutes 10-13), a DHCP offer and ack (20), a router
    advertisement (30), ARP for an outside address (40, three times),
    outside traffic delivered through the gateway's card, then its (45), the gateway's address
    claimed (the gateway's own claim at 49, the laptop's at 50)."""
    t = at("2026-02-04 21:00", "Asia/Taipei")
    frames: list[tuple[int, bytes]] = []
    hosts = list(ISO_MACS.items())
    chatter = [raw(Ether(src=mac, dst=GW_MAC) / IP(src=ip, dst=hosts[(k + 1) % 3][0])
                   / TCP(sport=49152 + k, dport=445, flags="A"))
               for k, (ip, mac) in enumerate(hosts)]  # fmt: skip
    frames += [(t + s * NS + k * 1000, chatter[k]) for s in range(3600) for k in range(3)]
    for s in range(600, 800, 7):
        syn = IP(src=LAPTOP, dst="10.8.40.11") / TCP(sport=50000, dport=445, flags="A")
        frames.append((t + s * NS + 500, raw(Ether(src=LAPTOP_MAC, dst=GW_MAC) / syn)))
    for k, kind in enumerate(("offer", "ack")):
        reply = (Ether(src=LAPTOP_MAC, dst="ff:ff:ff:ff:ff:ff")
                 / IP(src="10.8.40.99", dst="255.255.255.255") / UDP(sport=67, dport=68)
                 / BOOTP(op=2, yiaddr="10.8.40.150", chaddr=mac2str(hosts[0][1]))
                 / DHCP(options=[("message-type", kind), ("server_id", "10.8.40.99"),
                                 ("router", "10.8.40.99"), "end"]))  # fmt: skip
        frames.append((t + (1200 + k) * NS + 500, raw(reply)))
    advert = (Ether(src=LAPTOP_MAC, dst="33:33:00:00:00:01")
              / IPv6(src="fe80::3e22:fbff:fe12:3456", dst="ff02::1")
              / ICMPv6ND_RA(routerlifetime=1800))  # fmt: skip
    frames.append((t + 1800 * NS + 500, raw(advert)))
    for k in range(3):
        ask = ARP(op=1, hwsrc=hosts[1][1], psrc=hosts[1][0], pdst="198.51.100.7")
        frames.append((t + (2400 + k) * NS + 500,
                       raw(Ether(src=hosts[1][1], dst="ff:ff:ff:ff:ff:ff") / ask)))  # fmt: skip
    ack = IP(src="203.0.113.140", dst=hosts[2][0]) / TCP(sport=443, dport=49152, flags="SA")
    for k, mac in enumerate((GW_MAC, LAPTOP_MAC, LAPTOP_MAC, LAPTOP_MAC)):
        frames.append((t + (2700 + k) * NS + 500, raw(Ether(src=mac, dst=hosts[2][1]) / ack)))
    for when, mac in ((2940, GW_MAC), (3000, LAPTOP_MAC)):
        claim = ARP(op=2, hwsrc=mac, psrc=GW, pdst=GW)
        frames.append((t + when * NS + 500, raw(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / claim)))
    frames.sort(key=lambda f: f[0])
    return write_pcap(tmp_path / "segment.pcap", 1, frames), t


@pytest.mark.parametrize("inspect", [True, False], ids=["inspecting", "not-inspecting"])
def test_side_channel_alerts_across_cuts_are_one_process_s(tmp_path, client, inspect):
    (tmp_path / "policy.toml").write_text(SIDE_POLICY)
    policy = load_policy(tmp_path / "policy.toml")
    if not inspect:  # no payload facts: the shares analyse their hosts, the client the link
        policy = dataclasses.replace(policy, inspect_max_packets=0)
    path, t = side_channel_hour(tmp_path)
    single = scan_captures([path], policy)
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES)
    assert len(plan_parts([str(path)], PART_BYTES)) > 8
    assert single.link is not None and dist.link is not None
    pd_testing.assert_frame_equal(dist.link, single.link)
    assert dist.alerts == single.alerts
    side = [(a.rule_id, a.source_ip or a.destination_ip) for a in dist.alerts
            if a.rule_id in {r.rule_id for r in LINK_RULES}]  # fmt: skip
    assert sorted(side) == sorted([
        ("new-device-isolated", LAPTOP), ("rogue-dhcp-server", "10.8.40.99"),
        ("rogue-router", "fe80::3e22:fbff:fe12:3456"), ("rogue-router", "203.0.113.140"),
        ("rogue-router", GW), ("arp-outside-segment", hosts_first := "10.8.40.12"),
    ])  # fmt: skip
    assert hosts_first == list(ISO_MACS)[1]
    dhcp = next(a for a in dist.alerts if a.rule_id == "rogue-dhcp-server")
    assert dhcp.source_packets == 2  # the offer and the ack, counted in one part or two
    # Each known computer's device fact: 60 minutes with frames, though cuts
    # fall inside minutes in which it sent on both sides.
    devices = dist.link[(dist.link["kind"] == "device").to_numpy()]
    mine = devices[devices["mac"].isin([int(m.replace(":", ""), 16) for m in ISO_MACS.values()])]
    assert mine["count"].tolist() == [60, 60, 60]


def test_the_link_rules_run_by_the_client_are_every_rule_over_link_facts():
    # A side-channel rule the client did not run would be silent in every
    # distributed scan (the shares have no link facts).
    over_link = {d.rule_id for d in DETECTIONS
                 if d.check is not None and "segments" in d.check.__globals__}  # fmt: skip
    assert over_link == {r.rule_id for r in LINK_RULES}


def test_fold_recounts_a_part_when_the_active_timeout_falls_inside_it(tmp_path):
    # One packet a minute for 50 minutes, cut at 20 minutes: the second part's
    # table starts the flow at minute 20 and cannot know it must close at 30.
    t = 1_770_000_000 * NS
    cap = Capture()
    for k in range(51):
        cap.packet("10.0.0.1", "192.0.2.1", at_ns=t + k * 60 * NS, sport=1000, dport=2000)
    whole = cap.write(tmp_path / "minutes.pcap")
    files = split_at_times(whole, [t + 20 * 60 * NS], tmp_path)
    settings = Settings()
    parts = [Part(str(f), i, i) for i, f in enumerate(files)]
    fold = FlowFold(round(settings.idle_timeout * NS), round(settings.active_timeout * NS))
    for part in parts:
        result = count_part(part, settings)

        def recount(open_rows, latest, part=part):
            return count_part(part, settings, open_rows, latest)

        fold.add(result, recount, result.stats.first_ns)
    rows = fold.finish()
    assert fold.recounted == 1
    # By hand: 0..1800 s (31 packets) closes at 1860 s for the active timeout.
    assert rows[:, fk.C_DIR + fk.D_PACKETS].tolist() == [31, 20]
    assert rows[:, fk.C_REASON].tolist() == [fk.REASON_ACTIVE, fk.REASON_END]
    single = count_flows([whole]).exported_rows()
    np.testing.assert_array_equal(rows[:, : fk.C_SLOT], single[:, : fk.C_SLOT])
    np.testing.assert_array_equal(rows[:, fk.C_DIR :], single[:, fk.C_DIR :])


def test_cut_points_are_record_starts(tmp_path):
    whole, _ = day_of_traffic(tmp_path)
    parts = plan_parts([str(whole)], PART_BYTES)
    starts = set(record_offsets(whole))
    assert len(parts) > 10
    assert parts[0].start == 24 and parts[-1].end is None
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.end == after.start and after.start in starts
        assert after.header == whole.read_bytes()[:24]


def test_a_damaged_file_fails_its_own_parts_and_the_rest_completes(tmp_path, client, policy):
    whole, t = day_of_traffic(tmp_path)
    rotated = split_at_times(whole, [t + 400 * NS, t + 3000 * NS], tmp_path)
    # Damage the middle file: a record length of 16 MB a third of the way in.
    data = bytearray(rotated[1].read_bytes())
    offsets = record_offsets(rotated[1])
    bad_at = offsets[len(offsets) // 3]
    data[bad_at + 8 : bad_at + 12] = struct.pack("<I", 16 << 20)
    rotated[1].write_bytes(bytes(data))
    seen_1: list[CaptureProblem] = []
    seen_2: list[CaptureProblem] = []
    single = scan_captures(rotated, policy, reading=Reading(on_problem=seen_1.append))
    dist = scan_captures_distributed(rotated, policy, client=client, part_bytes=PART_BYTES,
                                     reading=Reading(on_problem=seen_2.append))  # fmt: skip
    assert [(p.path, p.offset, p.fatal) for p in seen_2] == [(str(rotated[1]), bad_at, True)]
    assert "record length 16777216" in seen_2[0].message
    assert [str(p) for p in seen_1] == [str(p) for p in seen_2]  # the same words
    assert_same_scan(single, dist)


class DieOnceMidTask(WorkerPlugin):
    """A Dask worker plugin (installed by the test only): the first worker to
    start a counting task kills its own process, as a machine lost mid-task.
    ``marker`` (created then) says it happened, and that it happens once."""

    name = "die-once-mid-task"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing" or not str(key).startswith("count-part-"):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(17)


def test_a_worker_that_dies_mid_task_is_replaced_and_its_task_run_again(tmp_path, policy):
    whole, t = day_of_traffic(tmp_path)
    marker = tmp_path / "died"
    with (
        LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0",
                     env={"PYTHONPATH": os.pathsep.join(sys.path)})
        as cluster,
        Client(cluster) as c,
    ):  # fmt: skip
        # The nanny's replacement worker gets the plugin too, but the marker exists.
        c.register_plugin(DieOnceMidTask(str(marker)))
        dist = scan_captures_distributed([whole], policy, client=c, part_bytes=1 << 20)
    assert marker.exists()  # a task did kill its worker
    assert_same_scan(scan_captures([whole], policy), dist)


def test_own_local_cluster_counts_here_while_it_starts(tmp_path, policy):
    # workers=2: the scan starts its own cluster in the background and counts
    # the first parts itself meanwhile; the rest go to the cluster.
    whole, _ = day_of_traffic(tmp_path)
    phases: dict[str, float] = {}
    dist = scan_captures_distributed([whole], policy, workers=2, part_bytes=PART_BYTES,
                                     phases=phases)  # fmt: skip
    assert_same_scan(scan_captures([whole], policy), dist)
    assert phases["parts"] == len(plan_parts([str(whole)], PART_BYTES))
    assert 1 <= phases["parts_here"] <= phases["parts"]  # at least the first, while starting


def test_without_dask_the_error_says_what_to_install(tmp_path, policy, monkeypatch):
    whole, _ = day_of_traffic(tmp_path)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(
        DistributedUnavailable, match=r"pip install 'egress-detector\[distributed\]'"
    ):
        scan_captures_distributed([whole], policy, workers=2)


def http_request(seconds: float, n: int, sport: int = 50000) -> tuple[int, bytes]:
    payload = f"GET / HTTP/1.1\r\nHost: h{n}.example\r\n\r\n".encode()
    frame = eth(IP(src="10.8.10.44", dst="203.0.113.80") / TCP(sport=sport, dport=80, flags="PA")
                / payload)  # fmt: skip
    return 1_770_000_000 * NS + round(seconds * NS), frame


def test_payload_budget_is_per_part(tmp_path, client, policy):
    # Twelve requests on one connection, six in each of two rotated files. One
    # reader inspects the first 8 payload packets of the connection; each part
    # has its own budget, so the distributed scan sees all 12 (documented).
    first = write_pcap(tmp_path / "a.pcap", 1, [http_request(k, k) for k in range(6)])
    second = write_pcap(tmp_path / "b.pcap", 1, [http_request(k, k) for k in range(6, 12)])
    single = scan_captures([first, second], policy)
    dist = scan_captures_distributed([first, second], policy, client=client)
    assert single.facts is not None and dist.facts is not None
    assert single.facts["text"].tolist() == [f"h{k}.example" for k in range(8)]
    assert dist.facts["text"].tolist() == [f"h{k}.example" for k in range(12)]
    assert rows_sorted(single.flows.to_frame()).equals(rows_sorted(dist.flows.to_frame()))


def test_flows_and_features_as_parquet_partitioned_by_site_and_local_day(tmp_path, policy):
    import pandas as pd
    import pyarrow.dataset as ds

    from detector.cli.main import main
    from detector.distributed.dataset import write_dataset

    # 19:00 and, the next morning, 07:00 Taipei: both 4 February in UTC, two local days.
    evening = at("2026-02-04 19:00", "Asia/Taipei")
    morning = at("2026-02-05 07:00", "Asia/Taipei")
    cap = Capture()
    cap.transfer("10.8.10.44", "203.0.113.140", start=evening, seconds=10, bytes_out=30_000)
    cap.transfer("10.8.10.45", "203.0.113.141", start=morning, seconds=10, bytes_out=40_000)
    pcap = cap.write(tmp_path / "two-days.pcap")
    result = scan_captures([pcap], policy)
    root = tmp_path / "lake"
    assert write_dataset(result, policy, root) == ["flows", "features"]
    site = root / "flows" / "site=taipei-mission"
    assert sorted(p.name for p in site.iterdir()) == ["day=2026-02-04", "day=2026-02-05"]
    flows = pd.read_parquet(root / "flows")  # pyarrow reads the hive partitions as columns
    by_day = flows.groupby(flows["day"].astype(str))["src2dst_bytes"].sum().to_dict()
    assert by_day == {"2026-02-04": 30_000, "2026-02-05": 40_000}
    assert set(flows["site"].astype(str)) == {"taipei-mission"}
    morning_only = ds.dataset(root / "features", format="parquet", partitioning="hive").to_table(
        filter=ds.field("day") == "2026-02-05"
    )
    assert set(morning_only.column("host").to_pylist()) >= {"10.8.10.45"}
    assert "10.8.10.44" not in set(
        morning_only.filter(ds.field("bytes_out") > 0).column("host").to_pylist()
    )
    # Writing a day again replaces it (a rescan), through the command line this time.
    (tmp_path / "policy.toml").write_text(POLICY)
    argv = ["scan", "-q", "--policy", str(tmp_path / "policy.toml"), "--parquet-dir", str(root),
            "-o", str(tmp_path / "alerts.jsonl"), str(pcap)]  # fmt: skip
    assert main(argv) in (0, 1)
    again = pd.read_parquet(root / "flows")
    assert len(again) == len(flows) == 2


def mixed_pcapng(path: Path) -> Path:
    """Two sections (little-, then big-endian), an interface described mid-capture,
    Simple Packet Blocks; one TCP upload runs through all of it."""
    tcp = TCP(sport=50000, dport=443, flags="A") / (b"x" * 40)
    up = eth(IP(src="10.8.10.44", dst="203.0.113.140") / tcp)
    up_raw = raw(IP(src="10.8.10.44", dst="203.0.113.140") / tcp)
    dns_raw = raw(IP(src="10.8.10.50", dst="10.8.0.1") / UDP(sport=5353, dport=53) / (b"q" * 20))
    w = Pcapng()
    w.shb("<")
    w.idb(1)
    us = T0 * 10**6
    for k in range(1500):
        w.epb(0, us + k * 100_000, up, orig_len=1514)
        if k == 700:
            w.idb(228)  # raw IPv4, described mid-capture
        if k > 700 and k % 10 == 0:
            w.epb(1, us + k * 100_000 + 50, dns_raw)
        if k % 97 == 0:
            w.spb(up, 1514)  # takes the time of the packet before it
    w.shb(">")
    w.idb(228)
    for k in range(1500, 2500):
        w.epb(0, us + k * 100_000, up_raw, orig_len=1500)
    path.write_bytes(w.bytes())
    return path


def test_pcapng_cut_on_blocks_with_the_headers_in_force(tmp_path, client, policy):
    path = mixed_pcapng(tmp_path / "mixed.pcapng")
    data = path.read_bytes()
    parts = plan_parts([str(path)], PART_BYTES)
    assert len(parts) >= 4 and parts[0].start == 0 and parts[0].header == b""
    # A plain walk: every block (offset, type, bytes), the byte order per section.
    blocks, pos, order = [], 0, "<"
    while pos < len(data):
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        kind, length = struct.unpack_from(order + "II", data, pos)
        blocks.append((pos, kind, data[pos : pos + length]))
        pos += length
    shb = [b for _, k, b in blocks if k == 0x0A0D0D0A]
    idb = [b for _, k, b in blocks if k == 1]
    expected = {shb[0] + idb[0], shb[0] + idb[0] + idb[1], shb[1] + idb[2]}
    kind_at = {o: k for o, k, _ in blocks}
    for part in parts[1:]:
        assert kind_at[part.start] == 6  # an Enhanced Packet Block
        assert part.header in expected
    # Before and after the mid-capture IDB, and in section 2: all three headers.
    assert {p.header for p in parts[1:]} == expected
    single = scan_captures([path], policy)
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES)
    assert_same_scan(single, dist)
    flows = dist.flows.to_frame().set_index("dst_ip")
    # By hand: 2500 EPBs and 16 SPBs (k = 0, 97, ... 1455) of the upload;
    # 1500 x 1514 + 16 x 1514 + 1000 x 1500 bytes. 79 DNS queries (k = 710 ... 1490).
    assert flows.loc["203.0.113.140", "src2dst_packets"] == 2516
    assert flows.loc["203.0.113.140", "src2dst_bytes"] == 3_795_224
    assert flows.loc["10.8.0.1", "src2dst_packets"] == 79


def test_scan_workers_without_dask_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    from detector.cli.main import ExitStatus, main

    whole, _ = day_of_traffic(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    argv = ["scan", "-q", "--workers", "2", "--policy", str(tmp_path / "policy.toml"), str(whole)]
    assert main(argv) == ExitStatus.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "egress-detector: error: --workers and --scheduler need Dask distributed: "
        "pip install 'egress-detector[distributed]'"
    ]
    with pytest.raises(SystemExit) as exit_:
        main(["scan", "--workers", "0", str(whole)])
    assert exit_.value.code == ExitStatus.USAGE
    assert "--workers: must be at least 1, got 0" in capsys.readouterr().err


def test_an_id_number_seen_in_two_parts_hashes_the_same(tmp_path, client, policy):
    # The hash key of ID numbers is one per scan, shared by its tasks: a number
    # sent in two files counts once (distinct counts), as in one process.
    def form_post(seconds: int, sport: int) -> tuple[int, bytes]:
        body = b"POST /form HTTP/1.1\r\nHost: forms.example\r\n\r\nname=x&id=A123456789&z=1"
        frame = eth(IP(src="10.8.10.44", dst="203.0.113.80")
                    / TCP(sport=sport, dport=80, flags="PA") / body)  # fmt: skip
        return 1_770_000_000 * NS + seconds * NS, frame

    first = write_pcap(tmp_path / "a.pcap", 1, [form_post(0, 50000)])
    second = write_pcap(tmp_path / "b.pcap", 1, [form_post(5, 50001)])
    dist = scan_captures_distributed([first, second], policy, client=client)
    single = scan_captures([first, second], policy)
    assert dist.facts is not None
    pii = dist.facts[dist.facts["kind"] == "pii"]
    assert pii["text"].tolist() == ["A12*****89", "A12*****89"]  # masked
    assert pii["secret"].nunique() == 1
    assert "cleartext-pii" in [a.rule_id for a in single.alerts]
    assert [a.rule_id for a in dist.alerts] == [a.rule_id for a in single.alerts]
    assert [a.message for a in dist.alerts] == [a.message for a in single.alerts]


def test_damaged_pcapng_cut_before_the_damage_only(tmp_path, client, policy):
    path = mixed_pcapng(tmp_path / "mixed.pcapng")
    data = bytearray(path.read_bytes())
    # A block length that is not a multiple of 4, halfway (section 1: little-endian).
    at = len(data) // 2 & ~3  # blocks start on 4-byte boundaries
    while struct.unpack_from("<I", data, at)[0] != 6:  # the next Enhanced Packet Block
        at += 4
    data[at + 4 : at + 8] = struct.pack("<I", 1_000_001)
    path.write_bytes(bytes(data))
    parts = plan_parts([str(path)], PART_BYTES)
    assert parts[-1].start < at and parts[-1].end is None  # no cut past the damage
    seen_1: list[CaptureProblem] = []
    seen_2: list[CaptureProblem] = []
    single = scan_captures([path], policy, reading=Reading(on_problem=seen_1.append))
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES,
                                     reading=Reading(on_problem=seen_2.append))  # fmt: skip
    assert [(p.offset, p.fatal) for p in seen_2] == [(at, True)]
    assert [str(p) for p in seen_1] == [str(p) for p in seen_2]
    assert_same_scan(single, dist)


def fold_parts(parts: list[Part], settings: Settings) -> tuple[np.ndarray, int]:
    fold = FlowFold(round(settings.idle_timeout * NS), round(settings.active_timeout * NS))
    for part in parts:
        result = count_part(part, settings)

        def recount(open_rows, latest, part=part):
            return count_part(part, settings, open_rows, latest)

        fold.add(result, recount, result.stats.first_ns)
    return fold.finish(), fold.recounted


def test_how_the_stream_is_cut_does_not_change_the_flows(tmp_path):
    # Grouping: the same stream as one part, as ~45 ranges, as 3 files of ranges.
    whole, t = day_of_traffic(tmp_path)
    rotated = split_at_times(whole, [t + 400 * NS, t + 3000 * NS], tmp_path)
    settings = Settings()
    one, _ = fold_parts([Part(str(whole), 0, 0)], settings)
    ranges, recounted = fold_parts(plan_parts([str(whole)], PART_BYTES), settings)
    files, _ = fold_parts(plan_parts([str(p) for p in rotated], 1 << 17), settings)
    assert recounted >= 1  # the minute-by-minute flow's active timeout fell inside a part
    single = count_flows([whole]).exported_rows()
    for rows in (one, ranges, files):
        np.testing.assert_array_equal(rows, one)
    order = np.lexsort((single[:, fk.C_META], single[:, fk.C_A_LO], single[:, fk.C_FIRST]))
    keep = [c for c in range(fk.FLOW_COLUMNS) if c != fk.C_SLOT]
    np.testing.assert_array_equal(one[:, keep], single[order][:, keep])


def test_parts_in_time_order_merge_only_the_minutes_they_share(tmp_path):
    # ~45 ranges of a 20-minute transfer: most cuts fall inside a minute, and
    # many parts lie wholly inside one minute (shared with both neighbours).
    whole, _ = day_of_traffic(tmp_path)
    parts = plan_parts([str(whole)], PART_BYTES)
    settings = Settings()
    tables = [count_part(p, settings).activity for p in parts]
    bins = [(int(a[0, 0]), int(a[0, -1])) for a in tables if a.shape[1]]
    assert any(first == last for first, last in bins)  # a part inside one minute
    assert _merged_in_time_order(tables) is not None  # the shortcut is taken
    single = ActivityTable()
    count_flows([whole], also=[single])  # one table fed the whole stream
    want = single.merged_columns()
    np.testing.assert_array_equal(ActivityTable.combined(tables).merged_columns(), want)
    # Out of time order: the shortcut declines and the full merge gives the same rows.
    shuffled = tables[::-1]
    assert _merged_in_time_order(shuffled) is None
    np.testing.assert_array_equal(ActivityTable.combined(shuffled).merged_columns(), want)


def test_flows_in_stream_order_sort_equal_first_packets_by_key():
    # Rows by first packet; ties broken by key (A address, B address, ports...),
    # addresses compared as unsigned numbers (the top bit set sorts last).
    rows = np.zeros((6, fk.FLOW_COLUMNS), dtype=np.int64)
    rows[:, fk.C_FIRST] = [30, 10, 30, 20, 30, 10]
    rows[:, fk.C_A_HI] = [0, 5, -1, 0, 7, 2]  # -1: 0xffff... as unsigned, the largest
    rows[:, fk.C_A_LO] = np.arange(6)
    # By hand: at 10, A 2 (row 5) then A 5 (row 1); at 20, row 3; at 30, A 0, 7, 0xff...
    assert in_stream_order(rows).tolist() == [5, 1, 3, 0, 4, 2]


# -- a cluster of "machines": network namespaces on one host -------------------

CLIENT = """
import pickle, sys
from dask.distributed import Client, get_task_stream
from detector.distributed import scan_captures_distributed
from detector.policy import load_policy

scheduler, policy, out, *files = sys.argv[1:]
with Client(scheduler, timeout="60s") as client:
    client.wait_for_workers(2, timeout=180)
    with get_task_stream(client) as stream:
        result = scan_captures_distributed(files, load_policy(policy), client=client,
                                           part_bytes=1 << 16)
workers = sorted({t["worker"] for t in stream.data if str(t["key"]).startswith("count-part-")})
with open(out, "wb") as f:
    pickle.dump({"flows": result.flows.to_frame(), "features": result.features,
                 "alerts": result.alerts, "activity": result.activity.columns(),
                 "workers": workers}, f)
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)")
@pytest.mark.skipif(shutil.which("ip") is None, reason="network namespaces need `ip` (iproute2)")
def test_scheduler_and_workers_on_machines_of_their_own(tmp_path, policy):
    """``--scheduler tcp://HOST:8786``: the scheduler, two workers and the
    client each in a network namespace of its own (its own interface and
    address, reaching the others over a bridge, as machines on a LAN), the
    files on a file system all of them see."""
    whole, t = day_of_traffic(tmp_path)
    rotated = split_at_times(whole, [t + 400 * NS, t + 3000 * NS], tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    lan, sched, w1, w2, cli = (f"ed-dask-{role}-{os.getpid()}" for role in
                               ("lan", "sched", "w1", "w2", "client"))  # fmt: skip
    address = {sched: "10.86.0.2", w1: "10.86.0.3", w2: "10.86.0.4", cli: "10.86.0.5"}
    scheduler = f"tcp://{address[sched]}:8786"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started: list[subprocess.Popen[bytes]] = []

    def start(ns: str, *args: str) -> None:
        log = open(tmp_path / f"{ns}.log", "wb")  # noqa: SIM115  (the process's)
        started.append(subprocess.Popen(["ip", "netns", "exec", ns, *args], env=env, cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))  # fmt: skip

    try:
        sh("ip", "netns", "add", lan)
        sh("ip", "-n", lan, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", lan, "link", "set", "br0", "up")
        for k, (ns, ip) in enumerate(address.items()):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", lan, "link", "add", f"p{k}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            sh("ip", "-n", lan, "link", "set", f"p{k}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        start(sched, sys.executable, "-m", "distributed.cli.dask_scheduler",
              "--host", address[sched], "--port", "8786", "--no-dashboard")  # fmt: skip
        for ns in (w1, w2):
            start(ns, sys.executable, "-m", "distributed.cli.dask_worker", scheduler,
                  "--host", address[ns], "--nworkers", "1", "--nthreads", "1",
                  "--no-dashboard", "--name", ns)  # fmt: skip
        out = tmp_path / "result.pickle"
        client = subprocess.run(
            ["ip", "netns", "exec", cli, sys.executable, "-c", CLIENT, scheduler,
             str(tmp_path / "policy.toml"), str(out), *map(str, rotated)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert client.returncode == 0, client.stderr[-3000:]
        # And the command line, from the client's machine.
        command = subprocess.run(
            ["ip", "netns", "exec", cli, sys.executable, "-m", "detector", "scan",
             "--policy", str(tmp_path / "policy.toml"), "--scheduler", scheduler,
             "--format", "jsonl", *map(str, rotated)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        alone = subprocess.run(
            [sys.executable, "-m", "detector", "scan", "--policy", str(tmp_path / "policy.toml"),
             "--format", "jsonl", *map(str, rotated)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # already gone
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        for ns in (*address, lan):
            sh("ip", "netns", "del", ns, check=False)
    got = pickle.loads(out.read_bytes())
    # Both workers, each at its own address, counted parts.
    assert [w.split("//")[1].split(":")[0] for w in got["workers"]] == [address[w1], address[w2]]
    single = scan_captures([whole], policy)
    flows = single.flows.to_frame()
    assert len(flows) == len(got["flows"])
    assert rows_sorted(flows).equals(rows_sorted(got["flows"]))
    assert single.features.equals(got["features"])
    assert single.alerts == got["alerts"]
    for name, column in single.activity.columns().items():
        np.testing.assert_array_equal(column, got["activity"][name], err_msg=name)
    assert (command.returncode, alone.returncode) == (1, 1)  # alerts raised
    # The same documents but for event.created, each scan's own moment of writing.
    assert without_created(command.stdout) == without_created(alone.stdout)
    assert len(command.stdout.splitlines()) == 2


def without_created(jsonl: str) -> list[dict]:
    docs = [json.loads(line) for line in jsonl.splitlines()]
    for doc in docs:
        del doc["event"]["created"]
    return docs


def test_open_flows_find_their_key_by_hash_and_collisions_are_no_match(monkeypatch):
    from detector.distributed import merge

    def rows_of(keys_and_firsts):
        rows = np.zeros((len(keys_and_firsts), fk.FLOW_COLUMNS), dtype=np.int64)
        for i, (a_lo, first) in enumerate(keys_and_firsts):
            rows[i, fk.C_A_LO], rows[i, fk.C_FIRST] = a_lo, first
        return rows

    part = rows_of([(5, 30), (7, 10), (5, 20), (9, 40)])
    open_rows = rows_of([(9, 0), (6, 0), (5, 0)])
    # By hand: key 9 -> row 3; key 6 -> none; key 5 -> its earliest flow, row 2 (20 < 30).
    for match in (merge.match_first_flows, merge._match_sorted):
        matched, at = match(open_rows, part)
        assert matched.tolist() == [True, False, True] and at.tolist() == [3, 2]
    # Every key hashing alike: two part keys share a hash, so the keys are sorted instead.
    monkeypatch.setattr(merge, "key_hashes", lambda rows: np.zeros(len(rows), np.uint64))
    assert merge._match_hashed(open_rows, part) is None
    matched, at = merge.match_first_flows(open_rows, part)
    assert matched.tolist() == [True, False, True] and at.tolist() == [3, 2]
    # One part key, an open key of another key with the same hash: no match.
    matched, at = merge._match_hashed(rows_of([(6, 0), (5, 0)]), rows_of([(5, 10), (5, 5)]))
    assert matched.tolist() == [False, True] and at.tolist() == [1]


def test_a_run_of_zero_bytes_is_no_record_start(tmp_path):
    # Records of 600 zero bytes from 1970 on (as a capture of a clock at zero): 16
    # "records" of 16 zero bytes each would chain, were a packet 0 bytes on the wire.
    path = tmp_path / "zeros.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(struct.pack("<IIII", 1 + k, 0, 600, 600) + bytes(600) for k in range(500))
    path.write_bytes(header + records)
    parts = plan_parts([str(path)], 1 << 16)
    assert len(parts) >= 3
    starts = set(record_offsets(path))
    assert all(p.start in starts for p in parts[1:])
