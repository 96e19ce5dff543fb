"""Payload facts (detector/flows/payload.py): exact values on generated packets,
the per-flow budget, masking of personal data, and the corpus against tshark."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Ether, IPv6, Raw, wrpcap
from scapy.layers.tls.extensions import (
    ProtocolName,
    ServerName,
    TLS_Ext_ALPN,
    TLS_Ext_ServerName,
)
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS

from detector.capture import read_packets
from detector.capture.reading import Reading
from detector.flows.payload import PayloadInspector, mask_id
from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy

from corpus import CORPUS, needs_corpus

HERE = Path(__file__).resolve().parent
CLIENT = "10.0.0.5"
E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

# -- an independent check digit (the published rule, written differently) --------
_ORDER = "ABCDEFGHJKLMNPQRSTUVXYWZIO"  # letter codes 10, 11, ... in this order


def check_digit(first9: str) -> str:
    """The digit that makes ``first9`` + digit a valid Taiwan ID or resident
    certificate number."""
    code = _ORDER.index(first9[0]) + 10
    second = first9[1]
    second_value = (_ORDER.index(second) + 10) % 10 if second.isalpha() else int(second)
    digits = [code // 10, code % 10, second_value] + [int(c) for c in first9[2:]]
    weights = [1, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    total = sum(d * w for d, w in zip(digits, weights, strict=True))
    return str((10 - total % 10) % 10)


def tw_id(first9: str) -> str:
    return first9 + check_digit(first9)


def test_check_digit_on_published_examples():
    assert tw_id("A12345678") == "A123456789"  # the textbook example
    assert tw_id("F13110409") == "F131104093"


def inspect(tmp_path: Path, packets, **options) -> list[dict]:
    path = tmp_path / "p.pcap"
    wrpcap(str(path), packets)
    inspector = PayloadInspector(**options)
    for _ in read_packets([path], inspector=inspector):
        pass
    frame = inspector.frame()
    return frame.drop(columns=["src_hi", "src_lo", "dst_hi", "dst_lo"]).to_dict("records")


def facts_of(kind: str, facts: list[dict]) -> list[dict]:
    return [f for f in facts if f["kind"] == kind]


def test_dns_question_and_answers(tmp_path):
    query = E / IP(src=CLIENT, dst="192.0.2.53") / UDP(sport=5555, dport=53) / DNS(
        id=7, rd=1, qd=DNSQR(qname="Files.Example.NET", qtype="A"))  # fmt: skip
    answer = E / IP(src="192.0.2.53", dst=CLIENT) / UDP(sport=53, dport=5555) / DNS(
        id=7, qr=1, qd=DNSQR(qname="files.example.net"),
        an=[DNSRR(rrname="files.example.net", type="A", rdata="203.0.113.140", ttl=300),
            DNSRR(rrname="files.example.net", type="AAAA", rdata="2001:db8::8", ttl=60)])  # fmt: skip
    nxdomain = E / IP(src="192.0.2.53", dst=CLIENT) / UDP(sport=53, dport=5556) / DNS(
        id=8, qr=1, rcode=3, qd=DNSQR(qname="nope.example", qtype="TXT"))  # fmt: skip
    facts = inspect(tmp_path, [query, answer, nxdomain])
    dns = facts_of("dns", facts)
    assert [(f["text"], f["a"], f["b"], f["c"], f["d"]) for f in dns] == [
        ("files.example.net", 1, 0, 0, 0),  # question: type A, rcode 0, query, no answers
        ("files.example.net", 1, 0, 1, 2),
        ("nope.example", 16, 3, 1, 0),  # TXT, NXDOMAIN
    ]
    answers = facts_of("dns-answer", facts)
    assert [(f["text"], f["a"], f["d"]) for f in answers] == [
        ("files.example.net", 4, 300),
        ("files.example.net", 6, 60),
    ]
    assert answers[0]["c"] == (0xFFFF << 32) | 0xCB00718C  # 203.0.113.140, IPv4-mapped
    assert (answers[1]["b"], answers[1]["c"]) == (0x20010DB800000000, 8)


def test_tls_server_name_and_alpn_on_any_port(tmp_path):
    hello = TLS(msg=[TLSClientHello(ext=[
        TLS_Ext_ServerName(servernames=[ServerName(servername=b"Drop.Example.org")]),
        TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2"), ProtocolName(protocol=b"http/1.1")]),
    ])])  # fmt: skip
    packets = [
        E / IP(src=CLIENT, dst="203.0.113.140") / TCP(sport=40000, dport=8443, flags="PA") / hello,
        E
        / IPv6(src="fd00::5", dst="2001:db8::1")
        / TCP(sport=40001, dport=443, flags="PA")
        / hello,
    ]
    facts = inspect(tmp_path, packets)
    assert [(f["kind"], f["text"], f["dport"]) for f in facts] == [
        ("tls-sni", "drop.example.org", 8443),
        ("tls-alpn", "h2", 8443),
        ("tls-sni", "drop.example.org", 443),
        ("tls-alpn", "h2", 443),
    ]


def test_http_request_head(tmp_path):
    post = (b"POST /upload HTTP/1.1\r\nHOST:  Upload.Example.com:8080\r\nContent-Length: 1234"
            b"\r\nUser-Agent: x\r\n\r\nbody")  # fmt: skip
    announce = b"GET /announce?info_hash=%12%34&peer_id=x HTTP/1.0\r\nHost: tracker.example\r\n\r\n"
    packets = [
        E / IP(src=CLIENT, dst="198.51.100.9") / TCP(sport=40001, dport=80, flags="PA") / Raw(post),
        E
        / IP(src=CLIENT, dst="198.51.100.8")
        / TCP(sport=40002, dport=6969, flags="PA")
        / Raw(announce),
    ]
    facts = inspect(tmp_path, packets)
    http = facts_of("http", facts)
    assert [(f["text"], f["a"], f["b"]) for f in http] == [
        ("upload.example.com:8080", 2, 1234),  # method 2 = POST
        ("tracker.example", 1, -1),  # GET, no Content-Length
    ]
    assert [f["a"] for f in facts_of("p2p-signature", facts)] == [4]  # tracker announce


def test_http_header_cut_by_the_snap_length_is_not_taken(tmp_path):
    """A headers-only capture cuts a request in the middle of a line: the cut
    Host or Content-Length value is not recorded as if it were whole."""
    head = (b"POST /u HTTP/1.1\r\nContent-Length: 123456\r\nHost: exfil.example.net\r\n"
            b"User-Agent: x\r\n\r\n")  # fmt: skip
    frame = E / IP(src=CLIENT, dst="198.51.100.9") / TCP(sport=40001, dport=80, flags="PA")
    header_bytes = len(frame)
    cut_in_host = head.index(b"example")  # "Host: exfil" is all that was captured
    cut_in_length = head.index(b"3456")  # "Content-Length: 12"
    packets = []
    for port, cut in ((40001, cut_in_host), (40002, cut_in_length), (40003, len(head))):
        packet = frame.copy()
        packet[TCP].sport = port
        packet = packet / Raw(head)
        raw = bytes(packet)
        packets.append(Ether(raw[: header_bytes + cut]))
    facts = inspect(tmp_path, packets)
    http = facts_of("http", facts)
    assert [(f["sport"], f["text"], f["b"]) for f in http] == [
        (40001, "", 123456),  # Content-Length whole, Host cut: no name
        (40002, "", -1),  # cut inside Content-Length: no length, no Host
        (40003, "exfil.example.net", 123456),
    ]


P2P_CASES = [
    ("bittorrent", TCP(sport=50000, dport=6881, flags="PA"),
     b"\x13BitTorrent protocol" + bytes(8) + b"i" * 20 + b"p" * 20, 1),
    ("dht", UDP(sport=6881, dport=6881), b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", 2),
    ("utp-syn", UDP(sport=6881, dport=51413), bytes([0x41, 0]) + bytes(18), 3),
    ("udp-tracker", UDP(sport=6881, dport=6969), bytes.fromhex("0000041727101980") + bytes(8), 4),
    ("lsd", UDP(sport=6771, dport=6771), b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\n", 5),
    ("edonkey", TCP(sport=50001, dport=4662, flags="PA"),
     b"\xe3" + struct.pack("<I", 12) + b"\x01" + bytes(11), 6),
    ("gnutella", TCP(sport=50002, dport=6346, flags="PA"), b"GNUTELLA CONNECT/0.6\r\n\r\n", 7),
]  # fmt: skip


@pytest.mark.parametrize(("name", "transport", "payload", "signature"), P2P_CASES,
                         ids=[c[0] for c in P2P_CASES])  # fmt: skip
def test_p2p_signatures(tmp_path, name, transport, payload, signature):
    packet = E / IP(src=CLIENT, dst="198.51.100.20") / transport / Raw(payload)
    assert [f["a"] for f in facts_of("p2p-signature", inspect(tmp_path, [packet]))] == [signature]


def test_no_p2p_on_lookalikes(tmp_path):
    packets = [
        # a QUIC short header may start 0x41: not on port 443
        E / IP(src=CLIENT, dst="198.51.100.20") / UDP(sport=50000, dport=443)
        / Raw(bytes([0x41, 0]) + bytes(18)),
        # bencode without a DHT node id
        E / IP(src=CLIENT, dst="198.51.100.20") / UDP(sport=50001, dport=9999) / Raw(b"d3:foo3:bare"),
        E / IP(src=CLIENT, dst="198.51.100.20") / TCP(sport=50002, dport=80, flags="PA")
        / Raw(b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n"),
    ]  # fmt: skip
    assert facts_of("p2p-signature", inspect(tmp_path, packets)) == []


def test_id_numbers_found_only_with_valid_check_digits(tmp_path):
    national = tw_id("A12345678")
    resident_old = tw_id("AC1234567")
    resident_new = tw_id("A81234567")
    wrong = "A123456788"
    body = (f"id={national}&b={wrong}&c={resident_old}&d={resident_new}"
            f"&e=X{national}&f={national}7&g=z{tw_id('B22222222')}").encode()  # fmt: skip
    packet = E / IP(src=CLIENT, dst="198.51.100.9") / TCP(sport=40001, dport=80, flags="PA") / Raw(
        b"POST /f HTTP/1.1\r\nHost: forms.example\r\n\r\n" + body)  # fmt: skip
    pii = facts_of("pii", inspect(tmp_path, [packet]))
    # Not the wrong check digit, not glued to letters or digits.
    assert [(f["text"], f["a"]) for f in pii] == [
        (mask_id(national), 1),
        (mask_id(resident_old), 2),
        (mask_id(resident_new), 2),
    ]
    assert pii[0]["text"] == "A12*****89"
    assert len({f["secret"] for f in pii}) == 3
    assert all(national not in str(v) for f in pii for v in f.values())


def test_budget_per_flow_and_bytes_per_packet(tmp_path):
    request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
    flow_a = [E / IP(src=CLIENT, dst="198.51.100.9") / TCP(sport=40001, dport=80, flags="PA")
              / Raw(request) for _ in range(12)]  # fmt: skip
    flow_b = [E / IP(src=CLIENT, dst="198.51.100.9") / TCP(sport=40002, dport=80, flags="PA")
              / Raw(request) for _ in range(3)]  # fmt: skip
    facts = inspect(tmp_path, flow_a + flow_b, max_packets=8)
    assert [f["sport"] for f in facts_of("http", facts)] == [40001] * 8 + [40002] * 3
    # An ID number beyond max_bytes is not looked at.
    late = b"x" * 300 + b" " + tw_id("A12345678").encode()
    packet = (
        E / IP(src=CLIENT, dst="198.51.100.9") / TCP(sport=40003, dport=25, flags="PA") / Raw(late)
    )
    assert facts_of("pii", inspect(tmp_path, [packet], max_bytes=256)) == []
    assert len(facts_of("pii", inspect(tmp_path, [packet], max_bytes=512))) == 1


def test_tls_records_are_not_scanned_for_numbers(tmp_path):
    record = b"\x17\x03\x03\x00\x20" + tw_id("A12345678").encode() + bytes(22)
    packet = (
        E
        / IP(src=CLIENT, dst="198.51.100.9")
        / TCP(sport=40001, dport=443, flags="PA")
        / Raw(record)
    )
    assert facts_of("pii", inspect(tmp_path, [packet])) == []


POLICY = """
[site]
name = "test-site"
timezone = "Asia/Taipei"
[networks]
internal = ["10.0.0.0/8"]
[allowlist]
domains = ["mirror.example.org"]
"""


def test_scan_alerts_never_carry_a_full_number(tmp_path, capsys):
    numbers = [tw_id("A12345678"), tw_id("F13110409"), tw_id("Q20000000")]
    body = ("\r\n".join(f"name{i},{n}" for i, n in enumerate(numbers))).encode()
    packets = [
        E / IP(src=CLIENT, dst="198.51.100.9") / TCP(sport=40001, dport=25, flags="PA") / Raw(body),
        E / IP(src="198.51.100.9", dst=CLIENT) / TCP(sport=25, dport=40001, flags="PA") / Raw(body),
    ]  # fmt: skip
    wrpcap(str(tmp_path / "c.pcap"), packets)
    (tmp_path / "p.toml").write_text(POLICY)
    from detector.cli.main import main

    outputs = []
    for fmt in ("jsonl", "csv", "table"):
        out = tmp_path / f"alerts.{fmt}"
        code = main(["scan", "-q", "--policy", str(tmp_path / "p.toml"), "--format", fmt,
                     "-o", str(out), "--features-out", str(tmp_path / "f.parquet"),
                     str(tmp_path / "c.pcap")])  # fmt: skip
        assert code == 1
        outputs.append(out.read_text())
    outputs.append((tmp_path / "f.parquet").read_bytes().decode("latin-1"))
    outputs.append(capsys.readouterr().err)
    for text in outputs:
        for number in numbers:
            assert number not in text
    doc = json.loads(outputs[0].splitlines()[0])
    assert doc["rule"]["id"] == "cleartext-pii" and doc["egress"]["pii_count"] == 3
    assert doc["egress"]["pii_masked"] == [mask_id(n) for n in numbers]
    assert (doc["destination"]["ip"], doc["destination"]["port"]) == ("198.51.100.9", 25)


def test_names_in_alerts_and_domain_allowlist(tmp_path):
    dns_answer = E / IP(src="192.0.2.53", dst=CLIENT) / UDP(sport=53, dport=5555) / DNS(
        qr=1, qd=DNSQR(qname="files.example.net"),
        an=DNSRR(rrname="files.example.net", type="A", rdata="203.0.113.140"))  # fmt: skip
    mirror = E / IP(src="192.0.2.53", dst=CLIENT) / UDP(sport=53, dport=5556) / DNS(
        qr=1, qd=DNSQR(qname="mirror.example.org"),
        an=DNSRR(rrname="mirror.example.org", type="A", rdata="198.51.100.25"))  # fmt: skip
    torrent = E / IP(src=CLIENT, dst="203.0.113.140") / TCP(sport=50000, dport=6881, flags="PA") / Raw(
        b"\x13BitTorrent protocol" + bytes(48))  # fmt: skip
    update = E / IP(src=CLIENT, dst="198.51.100.25") / TCP(sport=50001, dport=443, flags="S")
    wrpcap(str(tmp_path / "c.pcap"), [dns_answer, mirror, torrent, update])
    result = scan_captures([tmp_path / "c.pcap"], parse_policy(POLICY))
    (alert,) = [a for a in result.alerts if a.rule_id == "p2p"]
    assert alert.source_ip == CLIENT and alert.destination_domain == "files.example.net"
    assert "BitTorrent handshake" in alert.message
    frame = result.traffic.frame
    allowlisted = {result.traffic.text(int(p)) for p in frame[frame["peer_allowlisted"]]["peer_id"]}
    assert allowlisted == {"198.51.100.25"}  # sanctioned by its DNS name


# -- the corpus ------------------------------------------------------------------------

# Where tshark sees a name we do not (or spells it differently), and why.
NAME_DIFFERENCES = {
    "ndpi__4in6tunnel.pcap": "inside an IP-in-IP tunnel (tunnels are not decoded)",
    "ndpi__6in4tunnel.pcap": "inside an IP-in-IP tunnel",
    "zeek__gre-over-udp-4754.pcap": "inside GRE",
    "zeek__gre-pptp.pcap": "inside GRE (PPTP)",
    "ndpi__dlt_ppp.pcap": "SNI inside QUIC (encrypted Initial packets)",
    "tcpdump__quic_handshake.pcap": "SNI inside QUIC",
    "zeek__quic-interop-retry.pcap": "SNI inside QUIC",
    "ndpi__dns-tunnel-iodine.pcap": "binary labels: tshark and we render non-ASCII bytes differently",
    "ndpi__fuzz-2006-06-26-2594.pcap": "malformed names: tshark escapes them, we keep the bytes",
    "ndpi__malformed_dns.pcap": "a name over 255 bytes: tshark says <name too long>, we skip it",
    "tcpdump__LINKTYPE_PKTAP.pcap": "PKTAP link type is not decoded",
    "tcpdump__LINKTYPE_USER2_PKTAP.pcap": "PKTAP link type is not decoded",
    "tcpdump__arcnet-rfc1201-arp-icmp-http.pcap": "ARCNET link type is not decoded",
}
P2P_CAPTURES = {
    "ndpi__bittorrent.pcap",
    "ndpi__bittorrent_tcp_miss.pcapng",
    "ndpi__bittorrent_utp.pcap",
    "ndpi__edonkey.pcap",
    "ndpi__gnutella.pcap",
}


def _corpus_facts(path: Path):
    inspector = PayloadInspector(max_packets=255, max_bytes=65535)
    for _ in read_packets([path], inspector=inspector, on_problem=lambda p: None):
        pass
    return inspector.frame()


@needs_corpus
def test_corpus_names_equal_tsharks():
    truth = json.loads((HERE / "data" / "payload_names.json").read_text())
    wrong = {}
    for name, expected in sorted(truth.items()):
        if name in NAME_DIFFERENCES:
            continue
        facts = _corpus_facts(CORPUS / "pcaps" / name)
        sni = sorted(set(facts[facts["kind"] == "tls-sni"]["text"])) if len(facts) else []
        dns = sorted(set(facts[facts["kind"] == "dns"]["text"])) if len(facts) else []
        if (sni, dns) != (expected["sni"], expected["dns"]):
            wrong[name] = {"sni": sni, "dns": dns, "tshark": expected}
    assert wrong == {}
    assert len(truth) - len(NAME_DIFFERENCES) >= 35


@needs_corpus
def test_corpus_p2p_fires_on_p2p_captures_only():
    found = set()
    for path in sorted((CORPUS / "pcaps").iterdir()):
        try:
            facts = _corpus_facts(path)
        except Exception:  # unreadable captures are test_bad_input's business
            continue
        if len(facts) and (facts["kind"] == "p2p-signature").any():
            found.add(path.name)
    assert found == P2P_CAPTURES


# -- im-app and dns-tunnel --------------------------------------------------------------


def _scan(tmp_path, packets, extra: str = ""):
    wrpcap(str(tmp_path / "c.pcap"), packets)
    return scan_captures([tmp_path / "c.pcap"], parse_policy(POLICY + extra))


def _question(name: str, qtype: str = "A", sport: int = 5555):
    return E / IP(src=CLIENT, dst="192.0.2.53") / UDP(sport=sport, dport=53) / DNS(
        rd=1, qd=DNSQR(qname=name, qtype=qtype))  # fmt: skip


def test_im_app_by_name_and_by_published_range(tmp_path):
    packets = [
        _question("obs.line-apps.com"),
        E / IP(src="10.0.0.6", dst="149.154.167.51") / TCP(sport=50000, dport=443, flags="S"),
        _question("www.example.com"),
    ]
    alerts = [a for a in _scan(tmp_path, packets).alerts if a.rule_id == "im-app"]
    assert sorted((a.source_ip, a.evidence["app"]) for a in alerts) == [
        (CLIENT, "line"), ("10.0.0.6", "telegram")]  # fmt: skip
    assert all(a.severity == 2 for a in alerts)
    # A site may leave an app out, or add its own names.
    ignored = _scan(
        tmp_path, packets, '\n[rules.im-app]\nignore = ["line"]\ndomains = ["example.com"]\n'
    )
    apps = sorted(a.evidence["app"] for a in ignored.alerts if a.rule_id == "im-app")
    assert apps == ["site", "telegram"]


def test_dns_tunnel_single_encoded_name_and_volume(tmp_path):
    encoded = "a" * 10 + "0123456789abcdef" * 3  # one 58-character label
    packets = [_question(f"{encoded}.t.example.net")]
    packets += [_question(f"{i:04d}{'x' * 20}.tunnel.example.org", qtype="TXT", sport=6000 + i)
                for i in range(120)]  # fmt: skip
    packets += [_question(f"www{i}.example.com", sport=7000 + i) for i in range(150)]  # short: fine
    alerts = [a for a in _scan(tmp_path, packets).alerts if a.rule_id == "dns-tunnel"]
    (alert,) = alerts  # one per host
    assert alert.source_ip == CLIENT and alert.source_packets == 121
    assert sorted(alert.evidence["domains"]) == ["example.net", "example.org"]
    assert alert.evidence["txt_null_queries"] == 120
    assert "120 unique subdomains" in alert.message and "120 TXT/NULL questions" in alert.message


IM_CAPTURES = {
    "ndpi__line.pcap": "line",
    "ndpi__signal.pcap": "signal",
    "ndpi__wa_voice.pcap": "whatsapp",
    "ndpi__wechat.pcap": "wechat",
    "ndpi__whatsapp_login_chat.pcap": "whatsapp",
    # Teams, with a Telegram client running beside it (149.154.167.91, Telegram's range)
    "ndpi__teams.pcap": "telegram",
}
TUNNEL_CAPTURES = {"ndpi__dns-tunnel-iodine.pcap", "ndpi__dns_exfiltration.pcap"}


@needs_corpus
def test_corpus_app_rules_fire_on_their_captures_only():
    # Every address counts as internal here: corpus captures use public addresses.
    policy = parse_policy('[site]\ntimezone = "UTC"\n[networks]\ninternal = ["0.0.0.0/0", "::/0"]')
    fired: dict[str, dict[str, set[str]]] = {}
    for path in sorted((CORPUS / "pcaps").iterdir()):
        try:
            result = scan_captures([path], policy, reading=Reading(on_problem=lambda p: None))
        except Exception:  # unreadable captures are test_bad_input's business
            continue
        for alert in result.alerts:
            if alert.rule_id in ("p2p", "im-app", "dns-tunnel", "cleartext-pii"):
                what = alert.evidence.get("app", "")
                fired.setdefault(alert.rule_id, {}).setdefault(path.name, set()).add(what)
    assert set(fired["p2p"]) == P2P_CAPTURES
    assert {name: apps.pop() for name, apps in fired["im-app"].items()} == IM_CAPTURES
    assert set(fired["dns-tunnel"]) == TUNNEL_CAPTURES
    assert "cleartext-pii" not in fired


def test_mail_egress_reports_the_declared_message_size(tmp_path):
    iso = "10.8.40.31"
    smtp = [
        E / IP(src=iso, dst="192.0.2.20") / TCP(sport=40000, dport=25, flags="PA")
        / Raw(b"EHLO pc31\r\n"),
        E / IP(src=iso, dst="192.0.2.20") / TCP(sport=40000, dport=25, flags="PA")
        / Raw(b"MAIL FROM:<clerk@example.org> size=4200000 BODY=8BITMIME\r\n"),
    ]  # fmt: skip
    policy = POLICY.replace(
        'internal = ["10.0.0.0/8"]', 'internal = ["10.0.0.0/8"]\nisolated = ["10.8.40.0/24"]')  # fmt: skip
    wrpcap(str(tmp_path / "c.pcap"), smtp)
    result = scan_captures([tmp_path / "c.pcap"], parse_policy(policy))
    (alert,) = [a for a in result.alerts if a.rule_id == "mail-egress"]
    assert alert.evidence["declared_message_bytes"] == [4_200_000]
    assert "declared at 4.2 MB" in alert.message


def test_im_app_by_range_needs_the_host_to_start_the_connection(tmp_path):
    """A SYN forged from a Telegram address (and the server's SYN-ACK back) is
    not the host using Telegram; the host's own SYN to the same address is."""
    forged = [
        E / IP(src="149.154.167.51", dst="10.0.0.6") / TCP(sport=40000, dport=443, flags="S"),
        E / IP(src="10.0.0.6", dst="149.154.167.51") / TCP(sport=443, dport=40000, flags="SA"),
    ]
    forged[1].time = forged[0].time + 0.001
    assert not [a for a in _scan(tmp_path, forged).alerts if a.rule_id == "im-app"]
    own = E / IP(src="10.0.0.6", dst="149.154.167.51") / TCP(sport=50001, dport=443, flags="S")
    own.time = forged[0].time + 1
    alerts = [a for a in _scan(tmp_path, [*forged, own]).alerts if a.rule_id == "im-app"]
    assert [(a.source_ip, a.evidence["seen"]) for a in alerts] == [("10.0.0.6", ["149.154.167.51"])]
