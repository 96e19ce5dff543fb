"""conn_state, history, payload bytes and the fin/rst expiry reasons, on one
hand-built capture per Zeek connection state.

Each case is a short TCP exchange written with scapy between 192.0.2.10:40000
(the originator, O) and 198.51.100.20:80 (the responder, R). The expected
state and history are worked out by hand, in each case's docstring, from
Zeek's definitions: the letters of base/protocols/conn/main.zeek (upper case
from the originator; a, d once per side; s, h, f, r again only for a new
sequence number), the endpoint states of TCPSessionAdapter.cc's
UpdateStateMachine, and conn_state() in main.zeek. The flows come from the
kernel (``count_flows``) and from tests/naive.py's reference, and both must
give the hand-derived values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from detector.flows import count_flows

import naive

O_IP, R_IP = "192.0.2.10", "198.51.100.20"
O_PORT, R_PORT = 40000, 80
O_ISN, R_ISN = 1000, 5000
T0 = 1_700_000_000.0
# Link addresses given, not looked up: a bare Ether() makes scapy find the
# destination's MAC address, and 192.0.2.10 is on CI's own segment (eth0
# 192.0.2.2/24): each frame to O sent ARP requests out of the machine and
# waited 1.5 s for no answer (zero_windows: 22 s).
O_ETH = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:14")
R_ETH = Ether(src="02:00:00:00:00:14", dst="02:00:00:00:00:0a")


def o(flags: str, seq: int, ack: int = 0, data: bytes = b"", window: int = 8192):
    return O_ETH / IP(src=O_IP, dst=R_IP) / TCP(sport=O_PORT, dport=R_PORT, flags=flags,
                                                  seq=seq, ack=ack, window=window) / data  # fmt: skip


def r(flags: str, seq: int, ack: int = 0, data: bytes = b"", window: int = 8192):
    return R_ETH / IP(src=R_IP, dst=O_IP) / TCP(sport=R_PORT, dport=O_PORT, flags=flags,
                                                  seq=seq, ack=ack, window=window) / data  # fmt: skip


def handshake():
    return [o("S", O_ISN), r("SA", R_ISN, O_ISN + 1), o("A", O_ISN + 1, R_ISN + 1)]


REQUEST = b"GET / HTTP/1.0\r\n\r\n"  # 18 bytes
REPLY = b"hello"  # 5 bytes


def s0():
    """O: SYN (SYN_SENT); R silent (INACTIVE) -> S0; "S"."""
    return [o("S", O_ISN)], "S0", "S", (0, 0), "end"


def s1():
    """R's SYN+ACK moves O from SYN_SENT to ESTABLISHED and R to ESTABLISHED;
    O's ACK changes nothing -> S1; "ShA"."""
    return handshake(), "S1", "ShA", (0, 0), "end"


def sf():
    """Data both ways ("D" from O, "d" from R, which carries an ACK: data wins),
    then a FIN from each (CLOSED, CLOSED) -> SF; O's last ACK adds no letter (a
    pure ACK from O was seen): "ShADdFf". Payload 18 and 5 bytes."""
    packets = handshake() + [
        o("PA", O_ISN + 1, R_ISN + 1, REQUEST),
        r("PA", R_ISN + 1, O_ISN + 19, REPLY),
        o("FA", O_ISN + 19, R_ISN + 6),
        r("FA", R_ISN + 6, O_ISN + 20),
        o("A", O_ISN + 20, R_ISN + 7),
    ]
    return packets, "SF", "ShADdFf", (18, 5), "fin"


def rej():
    """R answers the SYN with RST+ACK: R RESET while O is SYN_SENT -> REJ; "Sr"."""
    return [o("S", O_ISN), r("RA", 0, O_ISN + 1)], "REJ", "Sr", (0, 0), "rst"


def s2():
    """Established, then O's FIN (CLOSED) with no reply: R is ESTABLISHED (not
    inactive) -> S2; "ShAF"."""
    return handshake() + [o("FA", O_ISN + 1, R_ISN + 1)], "S2", "ShAF", (0, 0), "end"


def s3():
    """Established, then R's FIN: R CLOSED, O ESTABLISHED -> S3; "ShAf"."""
    return handshake() + [r("FA", R_ISN + 1, O_ISN + 1)], "S3", "ShAf", (0, 0), "end"


def rsto():
    """Established, then O resets: O RESET, R ESTABLISHED -> RSTO; "ShAR"."""
    return handshake() + [o("R", O_ISN + 1)], "RSTO", "ShAR", (0, 0), "rst"


def rstr():
    """Established, then R resets: R RESET, O ESTABLISHED (not SYN_SENT, not
    inactive) -> RSTR; "ShAr"."""
    return handshake() + [r("R", R_ISN + 1)], "RSTR", "ShAr", (0, 0), "rst"


def rstos0():
    """O's SYN then O's RST, nothing from R: O RESET, R INACTIVE, and the
    history "SR" matches ^?S[^HAFGIQ]*R.* -> RSTOS0."""
    return [o("S", O_ISN), o("R", O_ISN + 1)], "RSTOS0", "SR", (0, 0), "rst"


def rstrh():
    """R's SYN+ACK comes first, so its receiver O is the originator ("^", as
    Zeek flips such a connection): R goes ESTABLISHED; R then resets (RESET)
    while O never sent (INACTIVE) -> RSTRH; "^hr"."""
    return [r("SA", R_ISN, O_ISN + 1), r("R", R_ISN + 1)], "RSTRH", "^hr", (0, 0), "rst"


def sh():
    """O's SYN then O's FIN: O SYN_SENT -> CLOSED, R INACTIVE -> SH; "SF"."""
    return [o("S", O_ISN), o("F", O_ISN + 1)], "SH", "SF", (0, 0), "end"


def shr():
    """R's SYN+ACK (first, so "^"), then R's FIN: R CLOSED, O INACTIVE -> SHR;
    "^hf"."""
    return [r("SA", R_ISN, O_ISN + 1), r("FA", R_ISN + 1, O_ISN + 1)], "SHR", "^hf", (0, 0), "end"


def oth():
    """Midstream: O's data (with ACK) makes O PARTIAL, R's pure ACK makes R
    PARTIAL (O is not SYN_SENT, R's peer is not ESTABLISHED) -> OTH; "Da".
    Payload 18 bytes from O."""
    packets = [o("PA", O_ISN + 1, R_ISN + 1, REQUEST), r("A", R_ISN + 1, O_ISN + 19)]
    return packets, "OTH", "Da", (18, 0), "end"


def repeats():
    """A SYN sent twice with the same number adds no letter (SYN_SENT: Zeek
    numbers it 0 again); a FIN repeated with the same number adds none, one
    with a new number adds "F" again (Zeek's rule for f): "ShAFF", S2."""
    packets = (
        [o("S", O_ISN), o("S", O_ISN)]
        + handshake()[1:]
        + [
            o("FA", O_ISN + 1, R_ISN + 1),
            o("FA", O_ISN + 1, R_ISN + 1),
            o("FA", O_ISN + 2, R_ISN + 1),
        ]
    )
    return packets, "S2", "ShAFF", (0, 0), "end"


def fin_rst():
    """A packet with FIN and RST is "I" (inconsistent) and resets O: after the
    handshake O RESET, R ESTABLISHED -> RSTO; "ShAI"."""
    return handshake() + [o("FR", O_ISN + 1)], "RSTO", "ShAI", (0, 0), "rst"


def flipped_s1():
    """The capture starts at R's SYN+ACK ("^h", R ESTABLISHED); O's ACK finds
    its peer ESTABLISHED and establishes O too -> S1; "^hA" (Zeek writes the
    same once that ACK makes it flip the connection)."""
    return [r("SA", R_ISN, O_ISN + 1), o("A", O_ISN + 1, R_ISN + 1)], "S1", "^hA", (0, 0), "end"


def zero_windows():
    """O's request "D", then R's pure ACK advertising a zero window, 10 times,
    and O's too: "a" for R's first ACK, then "w" at the 1st and 10th zero
    window (Zeek's ScaledHistoryEntry; again at the 100th); O's first zero
    window "W" (its ACK was seen, no new "A"). Still established both ways
    -> S1; "ShADawwW". (O's request sent again 10 times would be
    retransmissions, "T" at the 1st and 10th in Zeek: not tracked, see
    test_retransmissions_in_the_reference.)"""
    packets = (
        handshake()
        + [o("PA", O_ISN + 1, R_ISN + 1, REQUEST)]
        + [r("A", R_ISN + 1, O_ISN + 19, window=0)] * 10
        + [o("A", O_ISN + 19, R_ISN + 1, window=0)]
    )
    return packets, "S1", "ShADawwW", (18, 0), "end"


def zero_window_after_fin():
    """After O's FIN (O CLOSED), R's zero window is not written (Zeek's
    update_window: not after the peer's FIN); R's RST with a zero window
    neither (not with a RST). "ShAFar", RSTR."""
    packets = handshake() + [
        o("FA", O_ISN + 1, R_ISN + 1),
        r("A", R_ISN + 1, O_ISN + 2, window=0),
        r("R", R_ISN + 1, window=0),
    ]
    return packets, "RSTR", "ShAFar", (0, 0), "rst"


CASES = [s0, s1, sf, rej, s2, s3, rsto, rstr, rstos0, rstrh, sh, shr, oth, repeats, fin_rst,
         flipped_s1, zero_windows, zero_window_after_fin]  # fmt: skip


def write(path: Path, packets) -> Path:
    for i, p in enumerate(packets):
        p.time = T0 + i * 0.001
    wrpcap(str(path), packets)
    return path


def kernel_flows(path: Path) -> list[dict]:
    table = count_flows([str(path)])
    columns = table.columns()
    n = len(columns["first_seen"])
    return [{name: columns[name][i] for name in columns} for i in range(n)]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_state_and_history(tmp_path: Path, case) -> None:
    packets, state, history, payload, reason = case()
    path = write(tmp_path / f"{case.__name__}.pcap", packets)
    for flows in (kernel_flows(path), naive.naive_flows(path)):
        assert len(flows) == 1
        (flow,) = flows
        assert (flow["src_ip"], int(flow["src_port"])) == (O_IP, O_PORT)
        assert str(flow["conn_state"]) == state
        assert str(flow["history"]) == history
        assert (int(flow["src2dst_payload_bytes"]), int(flow["dst2src_payload_bytes"])) == payload
        assert str(flow["expiry_reason"]) == reason


def test_retransmissions_in_the_reference(tmp_path: Path, monkeypatch) -> None:
    """Zeek's "t" as tests/naive.py has it (the kernel leaves it out,
    docs/flows.md), on hand-derived cases. After the handshake O's request
    moves its last sequence number to 1019; the same 18 bytes 10 times more
    end there, not beyond: retransmissions, "T" at the 1st and 10th. A side
    first seen midstream starts its numbering at its first packet: R's pure
    ACK at 5006, then R's 5 bytes from 5001 end at 5006: "t"."""
    monkeypatch.setattr(naive, "TRACK_RETRANSMISSIONS", True)
    packets = handshake() + [o("PA", O_ISN + 1, R_ISN + 1, REQUEST)] * 11
    (flow,) = naive.naive_flows(write(tmp_path / "t.pcap", packets))
    assert str(flow["history"]) == "ShADTT"
    packets = [
        o("PA", O_ISN + 1, R_ISN + 1, REQUEST),
        r("A", R_ISN + 6, O_ISN + 19),
        o("PA", O_ISN + 1, R_ISN + 6, REQUEST),
        r("PA", R_ISN + 1, O_ISN + 19, REPLY),
    ]
    (flow,) = naive.naive_flows(write(tmp_path / "mid.pcap", packets))
    assert (str(flow["conn_state"]), str(flow["history"])) == ("OTH", "DaTdt")
    # Without it, the reference writes what the kernel writes.
    monkeypatch.setattr(naive, "TRACK_RETRANSMISSIONS", False)
    (flow,) = naive.naive_flows(write(tmp_path / "mid.pcap", packets))
    assert str(flow["history"]) == "Dad"


def test_every_zeek_state_has_a_case() -> None:
    states = {case()[1] for case in CASES}
    assert states == {"S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH",
                      "SH", "SHR", "OTH"}  # fmt: skip


def test_udp_and_icmp(tmp_path: Path) -> None:
    """UDP: "D" for the first packet of the originator, "d" for the responder's;
    SF when both sent, S0 when only the originator did (payload: the UDP data).
    ICMP: no history, OTH (Zeek's conn_state for neither TCP nor UDP)."""
    packets = [
        O_ETH / IP(src=O_IP, dst=R_IP) / UDP(sport=5353, dport=53) / (b"q" * 30),
        R_ETH / IP(src=R_IP, dst=O_IP) / UDP(sport=53, dport=5353) / (b"a" * 70),
        O_ETH / IP(src=O_IP, dst=R_IP) / UDP(sport=5354, dport=53) / (b"q" * 12),
        O_ETH / IP(src=O_IP, dst=R_IP) / ICMP(type=8) / (b"p" * 56),
    ]
    path = write(tmp_path / "udp.pcap", packets)
    want = {
        (5353, "udp"): ("SF", "Dd", 30, 70),
        (5354, "udp"): ("S0", "D", 12, 0),
        (8, "icmp"): ("OTH", "", 56, 0),
    }
    for flows in (kernel_flows(path), naive.naive_flows(path)):
        got = {
            (int(f["src_port"]), str(f["transport"])): (
                str(f["conn_state"]), str(f["history"]),
                int(f["src2dst_payload_bytes"]), int(f["dst2src_payload_bytes"]),
            )
            for f in flows
        }  # fmt: skip
        assert got == want


def test_service_and_server_name(tmp_path: Path) -> None:
    """A DNS answer names 203.0.113.7 "a123456789.leak.example" (an ID-number
    shaped label, masked as alerts mask it: a12*****89); a TCP connection
    there with no payload takes that name. An HTTP request carries its own
    Host (the port dropped). The DNS flow is service dns and shows its
    question; the HTTP flow is service http."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR

    from detector.flows.payload import PayloadInspector

    name = "a123456789.leak.example"
    query = DNS(id=7, rd=1, qd=DNSQR(qname=name))
    answer = DNS(id=7, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata="203.0.113.7"))
    get = b"GET / HTTP/1.1\r\nHost: files.example.net:8080\r\n\r\n"
    packets = [
        O_ETH / IP(src=O_IP, dst="198.51.100.53") / UDP(sport=5353, dport=53) / query,
        R_ETH / IP(src="198.51.100.53", dst=O_IP) / UDP(sport=53, dport=5353) / answer,
        O_ETH / IP(src=O_IP, dst="203.0.113.7") / TCP(sport=41000, dport=443, flags="S"),
        O_ETH / IP(src=O_IP, dst=R_IP) / TCP(sport=42000, dport=80, flags="PA") / get,
    ]
    path = write(tmp_path / "names.pcap", packets)
    table = count_flows([str(path)], inspector=PayloadInspector())
    columns = table.columns(community_id=False)
    got = {
        int(port): (str(service), str(server))
        for port, service, server in zip(
            columns["src_port"], columns["service"], columns["server_name"], strict=True
        )
    }
    assert got == {
        5353: ("dns", "a12*****89.leak.example"),
        41000: ("", "a12*****89.leak.example"),
        42000: ("http", "files.example.net"),
    }
    # Without the inspector the columns are there, empty.
    bare = count_flows([str(path)]).columns(community_id=False)
    assert set(bare["service"].tolist()) == {""} and set(bare["server_name"].tolist()) == {""}


def test_server_name_from_the_latest_answer_before(tmp_path: Path) -> None:
    """203.0.113.9 is answered "old.example", later "new.example": a connection
    between the two answers takes old.example, one after both new.example. A
    connection to 203.0.113.10 before its only answer ("later.example") takes
    that one."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR

    from detector.flows.payload import PayloadInspector

    def answer(qid: int, name: str, address: str, sport: int):
        dns = DNS(id=qid, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata=address))
        return R_ETH / IP(src="198.51.100.53", dst=O_IP) / UDP(sport=53, dport=sport) / dns

    def syn(address: str, sport: int):
        return O_ETH / IP(src=O_IP, dst=address) / TCP(sport=sport, dport=443, flags="S")

    packets = [
        syn("203.0.113.10", 41003),
        answer(1, "old.example", "203.0.113.9", 6001),
        syn("203.0.113.9", 41001),
        answer(2, "new.example", "203.0.113.9", 6002),
        syn("203.0.113.9", 41002),
        answer(3, "later.example", "203.0.113.10", 6003),
    ]
    path = write(tmp_path / "answers.pcap", packets)
    columns = count_flows([str(path)], inspector=PayloadInspector()).columns(community_id=False)
    got = {
        int(port): str(name)
        for port, name in zip(columns["src_port"], columns["server_name"], strict=True)
        if int(port) > 40000
    }
    assert got == {41001: "old.example", 41002: "new.example", 41003: "later.example"}


def test_flows_command_writes_the_columns(tmp_path: Path) -> None:
    """egress-detector flows -o FILE.csv: the new columns follow the old ones,
    filled for the SF case (hand-derived in ``sf``); service http from the
    payload inspector (the request has no Host, so no name), empty with
    --no-payload."""
    import csv

    from detector.cli.main import main

    packets, state, history, payload, reason = sf()
    path = write(tmp_path / "sf.pcap", packets)
    for extra, service, name in (([], "http", ""), (["--no-payload"], "", "")):
        out = tmp_path / "flows.csv"
        assert main(["flows", str(path), "-q", "-o", str(out), *extra]) == 0
        with open(out, newline="") as stream:
            rows = list(csv.DictReader(stream))
        assert len(rows) == 1
        header = list(rows[0])
        assert header[-8:] == ["expiry_reason", "community_id", "src2dst_payload_bytes",
                               "dst2src_payload_bytes", "conn_state", "history", "service",
                               "server_name"]  # fmt: skip
        row = rows[0]
        assert (row["conn_state"], row["history"], row["expiry_reason"]) == (state, history, reason)
        assert (int(row["src2dst_payload_bytes"]), int(row["dst2src_payload_bytes"])) == payload
        assert (row["service"], row["server_name"]) == (service, name)
