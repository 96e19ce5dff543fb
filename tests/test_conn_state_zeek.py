"""conn_state and history against Zeek's own conn.log for captures of the
corpus, and payload bytes against tshark's.

The expected rows are copied from Zeek's test baselines (github.com/zeek/zeek,
testing/btest/Baseline/<test>/conn.log, the tests that read these traces):
originator and responder, packets each way, conn_state and history. The
letters this project does not track (docs/flows.md: g content gaps, t
retransmissions, c bad checksums) are taken out of Zeek's history; w (zero
windows) is compared as Zeek wrote it. The flows are counted
with a 300 s idle timeout, Zeek's tcp_inactivity_timeout, so a connection
quiet for two minutes stays one flow as in Zeek.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from detector.flows import count_flows

import corpus

pytestmark = corpus.needs_corpus

# capture -> (Zeek baseline, rows: orig, orig port, resp, resp port, orig pkts,
# resp pkts, conn_state, history as Zeek wrote it)
ZEEK = {
    "zeek__bigtransfer.pcap": ("core.tcp.large-file-reassembly", [
        ("192.168.56.1", 59763, "192.168.56.101", 63988, 5, 4, "SF", "ShAdfFa"),
        ("192.168.56.1", 59764, "192.168.56.101", 37150, 13, 12, "SF", "ShAdgfFa"),
        ("192.168.56.1", 59762, "192.168.56.101", 21, 31, 18, "SF", "ShAdDaFf"),
    ]),
    "zeek__pppoe-over-qinq.pcap": ("core.pppoe-over-qinq", [
        ("1.1.1.1", 20394, "2.2.2.2", 443, 44, 42, "SF", "ShADdtaTTtFf"),
    ]),
    "zeek__mixed-vlan-mpls.pcap": ("core.vlan-mpls", [
        ("10.1.2.1", 11001, "10.34.0.1", 23, 11, 0, "SH", "SADF"),
        ("141.42.64.125", 56730, "125.190.109.199", 80, 12, 10, "SF", "ShADdFaf"),
        ("10.20.80.1", 50343, "10.0.0.15", 80, 7, 7, "SF", "ShADadfF"),
    ]),
    "zeek__irc-dcc-send.pcapng": ("scripts.base.protocols.irc.basic", [
        ("10.0.0.22", 43614, "10.0.0.7", 59130, None, None, "SF", "ShAadDfF"),
        ("10.0.0.22", 38016, "10.0.0.7", 59214, None, None, "SF", "ShAaDdfF"),
        ("10.0.0.7", 59069, "10.0.0.22", 6667, None, None, "SF", "ShADadfF"),
    ]),
    "zeek__q-in-q.pcap": ("core.q-in-q", [
        ("172.19.51.37", 47808, "172.19.51.63", 47808, None, None, "S0", "D"),
        ("193.1.186.60", 9875, "224.2.127.254", 9875, None, None, "S0", "D"),
    ]),
    "zeek__pcapng-multi-interface.pcapng": ("core.pcapng-pktsrc", [
        ("172.17.0.2", 36343, "1.1.1.1", 53, None, None, "SF", "Dd"),
        ("10.0.0.4", 56351, "1.1.1.1", 53, None, None, "SF", "Dd"),
        ("10.0.0.4", 56352, "1.1.1.1", 53, None, None, "SF", "Dd"),
    ]),
}  # fmt: skip

UNTRACKED = re.compile("[gGtTcC]")


@pytest.mark.parametrize("capture", sorted(ZEEK))
def test_as_zeek_logs_it(capture: str) -> None:
    _baseline, rows = ZEEK[capture]
    columns = count_flows([str(corpus.PCAPS / capture)], idle_timeout=300).columns(
        community_id=False
    )
    got = {
        (str(c[0]), int(c[1]), str(c[2]), int(c[3])): (int(c[4]), int(c[5]), str(c[6]), str(c[7]))
        for c in zip(
            columns["src_ip"], columns["src_port"], columns["dst_ip"], columns["dst_port"],
            columns["src2dst_packets"], columns["dst2src_packets"], columns["conn_state"],
            columns["history"], strict=True,
        )
    }  # fmt: skip
    for orig, orig_p, resp, resp_p, orig_pkts, resp_pkts, state, history in rows:
        packets_out, packets_in, got_state, got_history = got[(orig, orig_p, resp, resp_p)]
        if orig_pkts is not None:
            assert (packets_out, packets_in) == (orig_pkts, resp_pkts)
        assert (got_state, got_history) == (state, UNTRACKED.sub("", history))


# Plain TCP and UDP captures (no tunnels, no fragments): tshark's tcp.len and
# udp.length - 8 per packet, summed per direction, are the payload bytes.
TSHARK_CAPTURES = ["zeek__smtp.pcap", "chrissanders__dns_axfr.pcapng", "zeek__irc-dcc-send.pcapng",
                   "ndpi__443-chrome.pcap", "zeek__mixed-vlan-mpls.pcap"]  # fmt: skip


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("capture", TSHARK_CAPTURES)
def test_payload_bytes_as_tshark_counts_them(capture: str) -> None:
    path = corpus.PCAPS / capture
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport",
              "udp.srcport", "udp.dstport", "tcp.len", "udp.length"]  # fmt: skip
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=/t"]
        + [a for f in fields for a in ("-e", f)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    want: dict[tuple, int] = {}
    for line in out.splitlines():
        src4, src6, dst4, dst6, tsp, tdp, usp, udp_, tlen, ulen = (line.split("\t") + [""] * 10)[
            :10
        ]
        if tlen:
            key = (src4 or src6, int(tsp), dst4 or dst6, int(tdp), "tcp")
            want[key] = want.get(key, 0) + int(tlen)
        elif ulen:
            key = (src4 or src6, int(usp), dst4 or dst6, int(udp_), "udp")
            want[key] = want.get(key, 0) + int(ulen) - 8
    columns = count_flows([str(path)]).columns(community_id=False)
    got: dict[tuple, int] = {}
    for src, sp, dst, dp, tr, out_bytes, in_bytes in zip(
        columns["src_ip"], columns["src_port"], columns["dst_ip"], columns["dst_port"],
        columns["transport"], columns["src2dst_payload_bytes"], columns["dst2src_payload_bytes"],
        strict=True,
    ):  # fmt: skip
        if tr not in ("tcp", "udp"):
            continue
        for key, n in (((src, int(sp), dst, int(dp), tr), int(out_bytes)),
                       ((dst, int(dp), src, int(sp), tr), int(in_bytes))):  # fmt: skip
            got[key] = got.get(key, 0) + n
    got = {k: v for k, v in got.items() if v or k in want}
    assert got == want
