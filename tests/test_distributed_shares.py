"""The analysis spread over workers by shares of hosts
(detector/distributed/shares.py) against the single-process scan: a rule over
two hosts of two shares, alerts of equal rank from two shares, ids in address
order, the policy sent to the workers."""

from __future__ import annotations

import ipaddress
import json
import pickle

import numpy as np
import pytest

pytest.importorskip("dask.distributed", reason="needs the 'distributed' extra (Dask)")

from gen_traffic import Capture, at  # noqa: E402

from detector._kernels import activity as ak  # noqa: E402
from detector.distributed import scan_captures_distributed  # noqa: E402
from detector.distributed.shares import (  # noqa: E402
    address_shares,
    merge_users,
    share_users,
)
from detector.flows import activity as activity_rows  # noqa: E402
from detector.networks import NetworkSet, address_pair, address_text  # noqa: E402
from detector.pipelines.before import Before  # noqa: E402
from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import load_policy  # noqa: E402

NS = 1_000_000_000
MB = 1_000_000
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
PART_BYTES = 1 << 16
OUTSIDE = "203.0.113.50"


@pytest.fixture
def policy(tmp_path):
    (tmp_path / "policy.toml").write_text(POLICY)
    return load_policy(tmp_path / "policy.toml")


def share_of(address: str) -> int:
    hi, lo = address_pair(address)
    return int(address_shares(np.array([hi], np.uint64), np.array([lo], np.uint64), 2)[0])


def other_share(than: str, prefix: str) -> str:
    """The first address ``prefix``.1, .2, … in the other of two shares than ``than``."""
    for k in range(1, 255):
        candidate = f"{prefix}.{k}"
        if share_of(candidate) != share_of(than):
            return candidate
    raise AssertionError("no address in the other share")


def assert_same(single, dist) -> None:
    assert dist.alerts == single.alerts
    assert dist.features.equals(single.features)


def test_a_pivot_chain_across_two_shares_is_the_one_process_finds(tmp_path, client, policy):
    isolated = "10.8.40.31"
    bridge = other_share(isolated, "10.8.10")
    assert share_of(bridge) != share_of(isolated)  # the chain's two hosts: two workers
    t = at("2026-02-04 21:00", "Asia/Taipei")
    cap = Capture()
    cap.transfer(isolated, bridge, start=t, seconds=120, bytes_out=5 * MB, dport=445)
    cap.transfer(bridge, OUTSIDE, start=t + 900 * NS, seconds=300, bytes_out=4_500_000)
    path = cap.write(tmp_path / "relay.pcap")
    single = scan_captures([path], policy)
    phases: dict[str, float] = {}
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES,
                                     phases=phases)  # fmt: skip
    assert_same(single, dist)
    # Analysed on the workers, a share each, none of it here.
    assert phases["shares"] == 2 and phases["share_analysis_cpu_s"] > 0
    assert "analysis_s" not in phases
    chains = [a for a in dist.alerts if a.rule_id == "pivot-chain"]
    assert len(chains) == 1
    chain = chains[0]
    assert chain.evidence["chain"] == [isolated, bridge, OUTSIDE]
    assert chain.evidence["first_leg"]["bytes"] == 5 * MB
    assert chain.evidence["second_leg"]["bytes"] == 4_500_000
    # The first leg's own alert is folded into the chain, not an alert of its own.
    assert any(note.startswith("as isolated-egress:") for note in chain.notes)
    assert "isolated-egress" not in [a.rule_id for a in dist.alerts]


def test_alerts_of_equal_rank_from_two_shares_come_in_one_order(tmp_path, client, policy):
    first = "10.8.10.7"
    second = other_share(first, "10.8.11")
    t = at("2026-02-04 22:00", "Asia/Taipei")  # off hours: offhours-bulk-egress
    cap = Capture()
    for host in (second, first):  # the same upload, at the same instants, from two hosts
        cap.transfer(host, OUTSIDE, start=t, seconds=600, bytes_out=80 * MB)
    path = cap.write(tmp_path / "twins.pcap")
    single = scan_captures([path], policy)
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES)
    assert_same(single, dist)
    twins = [a for a in dist.alerts if a.rule_id == "offhours-bulk-egress"]
    assert [a.source_bytes for a in twins] == [80 * MB, 80 * MB]
    assert twins[0].sort_key == twins[1].sort_key  # equal rank: the host decides
    assert [a.source_ip for a in twins] == sorted([first, second])


def test_without_tables_the_flows_stay_on_the_workers(tmp_path, client, policy):
    t = at("2026-02-04 22:00", "Asia/Taipei")
    path = (
        Capture()
        .transfer("10.8.10.7", OUTSIDE, start=t, seconds=600, bytes_out=80 * MB)
        .write(tmp_path / "one.pcap")
    )
    single = scan_captures([path], policy)
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES,
                                     tables=False)  # fmt: skip
    assert_same(single, dist)
    assert len(single.flows.to_frame()) == 1  # the upload
    assert len(dist.flows.to_frame()) == 0


def test_host_ids_follow_the_addresses(tmp_path, policy):
    # Addresses met in an order unlike their own: ids still count up with the address.
    t = at("2026-02-04 12:00", "Asia/Taipei")
    cap = Capture()
    for k, host in enumerate(["10.9.0.200", "10.1.0.3", "10.200.1.1", "10.1.0.20"]):
        cap.transfer(host, OUTSIDE, start=t + k * 60 * NS, seconds=10, bytes_out=1000)
    traffic = scan_captures([cap.write(tmp_path / "order.pcap")], policy).traffic
    texts = list(traffic.texts(np.arange(len(traffic.address_hi))))
    assert texts == sorted(texts, key=ipaddress.ip_address)
    assert texts == ["10.1.0.3", "10.1.0.20", "10.9.0.200", "10.200.1.1", OUTSIDE]


def test_the_policy_travels_to_the_workers(policy):
    import detector.distributed.shares  # noqa: F401  (registers how a policy pickles)

    again = pickle.loads(pickle.dumps(policy))
    assert again == policy
    assert again.isolated.contains(*map(np.array, zip(address_pair("10.8.40.9"), strict=True)))


MEETING, SMALL_MEETING, DROP = "203.0.113.60", "203.0.113.61", "198.51.100.20"
# The volume rules' thresholds a tenth of their defaults: a capture a tenth the size.
SMALL_VOLUMES = """
[rules.offhours-bulk-egress]
min_bytes = 5_000_000

[rules.bulk-upload-new-destination]
min_bytes = 10_000_000

[rules.low-and-slow-egress]
min_bytes = 1_000_000
"""


def in_share(share: int, prefix: str, skip: int = 0) -> list[str]:
    """Addresses ``prefix``.1, .2, … of one of two shares, after the first ``skip``."""
    found = [f"{prefix}.{k}" for k in range(1, 255) if share_of(f"{prefix}.{k}") == share]
    return found[skip:]


def users_across_shares(tmp_path) -> tuple:
    """Calls and uploads whose exemption hangs on how many hosts of the site
    used the address, those hosts dealt into both of two shares: one process
    counts them all; a share alone would count only its own (as before issue
    20's fix, when this scan's shares raised three alerts more). Thresholds
    as ``SMALL_VOLUMES``:

    * MEETING's users: ``caller``, ``day_caller`` and a mate in share 0, two
      hosts in share 1: five, so ``caller``'s off-hours call (6 MB each way)
      and ``day_caller``'s daytime call (12 MB each way) are left out by
      offhours-bulk-egress and bulk-upload-new-destination (more than
      ``shared_by_hosts``, 3, other users). Share 0 alone counts three.
    * SMALL_MEETING's users: ``small_caller`` and the mate in share 0, one host
      in share 1: three, too few: ``small_caller``'s off-hours call alerts.
    * DROP's users: ``uploader`` in share 1 and a host in share 0, so
      low-and-slow-egress's single upload (1.2 MB at night) to an address no
      other host used does not apply (it needs two transfers). Share 1 alone
      counts one.
    """
    zero, one = in_share(0, "10.8.10"), in_share(1, "10.8.10")
    caller, day_caller, small_caller, meeting_mate, drop_mate = zero[:5]
    meeting_others, small_mate, uploader = one[:2], one[2], one[3]
    night = at("2026-02-04 22:00", "Asia/Taipei")
    day = at("2026-02-04 10:00", "Asia/Taipei")
    cap = Capture()
    for host in (meeting_mate, *meeting_others):  # the meeting server's other users
        cap.transfer(host, MEETING, start=day - 1800 * NS, seconds=60, bytes_out=200_000,
                     bytes_in=300_000, sport=50001)  # fmt: skip
    for host in (small_mate, drop_mate):
        cap.transfer(host, SMALL_MEETING if host == small_mate else DROP, start=day - 900 * NS,
                     seconds=60, bytes_out=100_000, bytes_in=100_000, sport=50002)  # fmt: skip
    cap.transfer(small_mate, SMALL_MEETING, start=day - 600 * NS, seconds=60,
                 bytes_out=100_000, bytes_in=100_000, sport=50003)  # fmt: skip
    cap.transfer(meeting_mate, SMALL_MEETING, start=day - 600 * NS, seconds=60,
                 bytes_out=100_000, bytes_in=100_000, sport=50004)  # fmt: skip
    cap.transfer(day_caller, MEETING, start=day, seconds=1800, bytes_out=12 * MB,
                 bytes_in=12 * MB)  # fmt: skip
    cap.transfer(caller, MEETING, start=night, seconds=1200, bytes_out=6 * MB, bytes_in=6 * MB)
    cap.transfer(small_caller, SMALL_MEETING, start=night, seconds=1200, bytes_out=6 * MB,
                 bytes_in=6 * MB)  # fmt: skip
    cap.transfer(uploader, DROP, start=night + 1800 * NS, seconds=300, bytes_out=1_200_000)
    hosts = {"caller": caller, "day_caller": day_caller, "small_caller": small_caller,
             "uploader": uploader}  # fmt: skip
    return cap.write(tmp_path / "calls.pcap"), hosts


def test_an_address_s_users_are_counted_across_shares(tmp_path, client):
    (tmp_path / "policy.toml").write_text(POLICY + SMALL_VOLUMES)
    policy = load_policy(tmp_path / "policy.toml")
    path, hosts = users_across_shares(tmp_path)
    single = scan_captures([path], policy)
    # Hand-counted: only the call to the server three hosts use alerts.
    assert [(a.rule_id, a.source_ip, a.destination_ip) for a in single.alerts] == [
        ("offhours-bulk-egress", hosts["small_caller"], SMALL_MEETING)
    ]
    phases: dict[str, float] = {}
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES,
                                     phases=phases)  # fmt: skip
    assert phases["shares"] == 2 and "analysis_s" not in phases  # analysed in the shares
    assert_same(single, dist)
    # What moved: each share's count of its 3 addresses (20 bytes each) to the
    # merges, and back the other share's count of the same 3 (both shares used each).
    assert phases["users_elsewhere"] == 6
    assert phases["users_bytes"] == (3 + 3 + 3 + 3) * 20


def test_three_shares_count_an_address_s_users_as_one_process(tmp_path):
    # The same scan dealt into three shares (a bucket of addresses each to
    # merge); a share alone raised two alerts more here (the two MEETING calls).
    from dask.distributed import Client, LocalCluster

    (tmp_path / "policy.toml").write_text(POLICY + SMALL_VOLUMES)
    policy = load_policy(tmp_path / "policy.toml")
    path, hosts = users_across_shares(tmp_path)
    single = scan_captures([path], policy)
    phases: dict[str, float] = {}
    with (
        LocalCluster(n_workers=3, processes=False, threads_per_worker=1,
                     dashboard_address=":0") as cluster,
        Client(cluster) as three,
    ):  # fmt: skip
        dist = scan_captures_distributed([path], policy, client=three, part_bytes=PART_BYTES,
                                         phases=phases)  # fmt: skip
    assert phases["shares"] == 3 and "analysis_s" not in phases
    assert_same(single, dist)
    assert [(a.rule_id, a.source_ip) for a in dist.alerts] == [
        ("offhours-bulk-egress", hosts["small_caller"])
    ]


def test_scan_workers_counts_an_address_s_users_across_shares(tmp_path):
    # The command line, its own local cluster of two processes: the same alert
    # lines as one process writes.
    from detector.cli.main import ExitStatus, main

    (tmp_path / "policy.toml").write_text(POLICY + SMALL_VOLUMES)
    path, hosts = users_across_shares(tmp_path)
    outputs = []
    for extra in ([], ["--workers", "2"]):
        out = tmp_path / f"alerts{len(extra)}.jsonl"
        argv = ["scan", "-q", "--policy", str(tmp_path / "policy.toml"), *extra, "-o", str(out),
                str(path)]  # fmt: skip
        assert main(argv) == ExitStatus.ALERTS
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        for line in lines:
            del line["event"]["created"]  # when the line was written
        outputs.append(lines)
    assert outputs[1] == outputs[0]
    assert [(a["rule"]["id"], a["source"]["ip"]) for a in outputs[0]] == [
        ("offhours-bulk-egress", hosts["small_caller"])
    ]


def test_each_share_learns_the_other_shares_users_of_its_addresses():
    # share_users and merge_users against a plain count over random activity
    # rows: three shares; inside and outside addresses at either end.
    rng = np.random.default_rng(20)
    inside = [f"10.1.0.{k}" for k in range(1, 40)]
    outside = [f"203.0.113.{k}" for k in range(1, 30)] + ["2001:db8::5", "10.1.0.3"]
    rows = 600
    a = rng.choice(inside + outside, rows)
    b = rng.choice(outside + inside, rows)
    cols = np.zeros((ak.USED_COLUMNS, rows), dtype=np.int64)
    for (hi_row, lo_row), ends in (((activity_rows.C_A_HI, activity_rows.C_A_LO), a),
                                   ((activity_rows.C_B_HI, activity_rows.C_B_LO), b)):  # fmt: skip
        pairs = np.array([address_pair(str(x)) for x in ends], dtype=np.uint64)
        cols[hi_row], cols[lo_row] = pairs[:, 0].view(np.int64), pairs[:, 1].view(np.int64)
    internal = NetworkSet(["10.0.0.0/8"])

    def share(address: str) -> int:
        hi, lo = address_pair(address)
        return int(address_shares(np.array([hi], np.uint64), np.array([lo], np.uint64), 3)[0])

    # Plainly: the hosts (internal ends) of each address, per share.
    users: dict[str, list[set[str]]] = {}
    for x, y in zip(a, b, strict=True):
        for host, peer in ((x, y), (y, x)):
            if ipaddress.ip_address(host) in ipaddress.ip_network("10.0.0.0/8"):
                users.setdefault(peer, [set(), set(), set()])[share(host)].add(host)
    expected = [
        {peer: sum(len(s) for s in per) - len(per[k]) for peer, per in users.items()
         if per[k] and sum(1 for s in per if s) > 1}
        for k in range(3)
    ]  # fmt: skip
    tables = [share_users(cols, internal, k, 3) for k in range(3)]
    merged = [merge_users([tables[k][bucket] for k in range(3)]) for bucket in range(3)]
    for k in range(3):
        got = {}
        for bucket in range(3):
            t = merged[bucket][k]
            for hi, lo, n in zip(t.hi, t.lo, t.hosts, strict=True):
                got[address_text(int(hi), int(lo))] = int(n)
        assert got == expected[k]
    assert all(expected)  # every share has addresses the others used too


def test_users_recorded_before_are_counted_once_across_shares(tmp_path, client):
    # The nightly's history (hosts that called an address on earlier days, a
    # first-contact record) beside today's users in two shares: a host both
    # recorded and seen today in the other share is one user, not two.
    from detector.nightly.history import History, history_frame

    (tmp_path / "policy.toml").write_text(POLICY + SMALL_VOLUMES)
    policy = load_policy(tmp_path / "policy.toml")
    meet_a, meet_b = "203.0.113.70", "203.0.113.71"
    zero, one = in_share(0, "10.8.20"), in_share(1, "10.8.20")
    caller_a, caller_b, recorded_a = zero[:3]
    seen_a, seen_b, recorded_b, first_b = one[:4]
    night = at("2026-02-04 22:00", "Asia/Taipei")
    day = at("2026-02-04 10:00", "Asia/Taipei")
    cap = Capture()
    for host, server in ((seen_a, meet_a), (seen_b, meet_b)):  # today, in the other share
        cap.transfer(host, server, start=day, seconds=60, bytes_out=200_000, bytes_in=200_000)
    for host, server in ((caller_a, meet_a), (caller_b, meet_b)):
        cap.transfer(host, server, start=night, seconds=1200, bytes_out=6 * MB, bytes_in=6 * MB)
    path = cap.write(tmp_path / "history.pcap")
    # meet_a: seen_a (also today) and recorded_a called it before: with the
    # caller 3 hosts, not more than shared_by_hosts (3): the call alerts.
    # meet_b: recorded_b called it, first_b first reached it: with the caller
    # and seen_b 4 hosts: the call is left out.
    t0 = day - 86_400 * NS
    history = History(
        calls=history_frame([(seen_a, meet_a), (recorded_a, meet_a), (recorded_b, meet_b)]),
        beats=history_frame([]),
        uploads=history_frame([(first_b, meet_b, t0)]),
    )
    before = Before(first_contacts=history.uploads, other_users=history.users_of,
                    habits=history.beats)  # fmt: skip
    single = scan_captures([path], policy, before=before)
    assert [(a.rule_id, a.source_ip, a.destination_ip) for a in single.alerts] == [
        ("offhours-bulk-egress", caller_a, meet_a)
    ]
    phases: dict[str, float] = {}
    dist = scan_captures_distributed([path], policy, client=client, part_bytes=PART_BYTES,
                                     phases=phases, before=before)  # fmt: skip
    assert "analysis_s" not in phases  # analysed in the shares
    assert_same(single, dist)
    # Given back: meet_b to both shares (caller_b and seen_b, neither
    # recorded); meet_a to neither: seen_a is recorded, so share 1 counts no one.
    assert phases["users_elsewhere"] == 2
