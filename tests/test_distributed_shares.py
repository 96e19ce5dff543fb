"""The analysis spread over workers by shares of hosts
(detector/distributed/shares.py) against the single-process scan: a rule over
two hosts of two shares, alerts of equal rank from two shares, ids in address
order, the policy sent to the workers."""

from __future__ import annotations

import ipaddress
import pickle

import numpy as np
import pytest

pytest.importorskip("dask.distributed", reason="needs the 'distributed' extra (Dask)")

from gen_traffic import Capture, at  # noqa: E402

from detector.distributed import scan_captures_distributed  # noqa: E402
from detector.distributed.shares import address_shares  # noqa: E402
from detector.networks import address_pair  # noqa: E402
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
