"""detector/alerts/mask.py and where it is applied: ID numbers masked in the
Alert record whenever its text is set (issue 18, item 1), control characters
and formulas kept out of tables and CSV (item 5). The same on whole commands:
tests/test_outputs_hostile.py."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pickle
from zoneinfo import ZoneInfo

import pytest
from scapy.all import IP, TCP, Ether, Raw, wrpcap
from test_payload import tw_id

from detector.alerts.mask import csv_cell, json_text, mask_personal, printable
from detector.alerts.record import Alert, to_ecs
from detector.alerts.sinks import write_alerts
from detector.alerts.stream import AlertStream
from detector.capture import read_packets
from detector.flows.payload import PayloadInspector

NATIONAL = tw_id("A12345678")  # A123456789
RESIDENT_OLD = tw_id("AC1234567")
RESIDENT_NEW = tw_id("A81234567")
ZONE = ZoneInfo("Asia/Taipei")


def m(number: str) -> str:
    return number[:3] + "*****" + number[-2:]


# -- the function -------------------------------------------------------------------------


@pytest.mark.parametrize("number", [NATIONAL, RESIDENT_OLD, RESIDENT_NEW, "F131104093"])
def test_both_formats_in_either_case_inside_names(number):
    lower = number.lower()
    assert mask_personal(number) == m(number)
    assert mask_personal(f"{lower}.leak.example.com") == f"{m(lower)}.leak.example.com"
    assert mask_personal(f"www-{lower}.example.net:8080") == f"www-{m(lower)}.example.net:8080"
    assert mask_personal(f"a.{number}_x.example") == f"a.{m(number)}_x.example"
    assert mask_personal(f"id={number}&b=1; uid={lower}") == f"id={m(number)}&b=1; uid={m(lower)}"


def test_boundaries_are_the_kernels():
    # Not after a letter or digit, not before a digit; a letter after is no boundary
    # (the cleartext-pii kernel reports A123456789x too).
    assert mask_personal("xA123456789 0A123456789 A1234567890") == (
        "xA123456789 0A123456789 A1234567890"
    )
    assert mask_personal("A123456789x") == "A12*****89x"
    assert mask_personal("A123456788") == "A12*****88"  # check digit or not
    assert mask_personal("AE12345678 A312345678 A12345678") == "AE12345678 A312345678 A12345678"
    assert mask_personal(m(NATIONAL)) == m(NATIONAL)  # masking twice changes nothing
    assert mask_personal("A1234567８9") == "A1234567８9"  # a full-width digit is no digit here


def test_masks_whatever_the_cleartext_pii_kernel_finds(tmp_path):
    """For upper-case numbers with a valid check digit, exactly where the kernel
    finds one in a payload, mask_personal masks it (and only there)."""
    befores = ["", " ", "x", "X", "0", "-", "_", ".", "=", "<", "\t", "é"]
    afters = ["", " ", "x", "X", "0", "-", ".", "&", "@", "é"]
    # (The kernel reads only payloads whose first 16 bytes are ASCII text.)
    texts = [f"the numbers follow: {b}{number}{a} end" for b in befores for a in afters
             for number in (NATIONAL, RESIDENT_OLD, RESIDENT_NEW)]  # fmt: skip
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    packets = [e / IP(src="10.0.0.5", dst="198.51.100.9") / TCP(sport=20000 + i, dport=80,
               flags="PA") / Raw(text.encode()) for i, text in enumerate(texts)]  # fmt: skip
    wrpcap(str(tmp_path / "p.pcap"), packets)
    inspector = PayloadInspector()
    for _ in read_packets([tmp_path / "p.pcap"], inspector=inspector):
        pass
    facts = inspector.frame()
    found = set(facts[facts["kind"] == "pii"]["sport"].astype(int) - 20000)
    masked = {i for i, text in enumerate(texts) if mask_personal(text) != text}
    assert found == masked
    assert 0 < len(found) < len(texts)


# -- the record ---------------------------------------------------------------------------


def alert(**fields) -> Alert:
    base = dict(rule_id="isolated-egress", rule_name="Isolated host", severity=4,
                start_ns=1_770_142_380 * 10**9, end_ns=1_770_142_740 * 10**9,
                source_ip="10.8.40.31", text="m", destination_ip="203.0.113.10",
                destination_port=443, source_port=40000, transport="tcp")  # fmt: skip
    base.update(fields)
    return Alert(**base)


def test_an_alert_masks_its_text_when_made_and_when_added_to():
    name = f"{NATIONAL.lower()}.leak.example.com"
    shown = f"{m(NATIONAL.lower())}.leak.example.com"
    a = alert(text=f"to 203.0.113.10 ({name})", destination_domain=name,
              evidence={"seen": [name, (RESIDENT_OLD,)], RESIDENT_NEW: {"deep": [NATIONAL]}})  # fmt: skip
    assert a.message == f"to 203.0.113.10 ({shown})" and a.destination_domain == shown
    assert a.evidence == {
        "seen": [shown, (m(RESIDENT_OLD),)],
        m(RESIDENT_NEW): {"deep": [m(NATIONAL)]},
    }
    # What later steps add about the same incident (naming its destination, the
    # model's verdict, mail sizes) makes a new alert, masked the same way.
    a = dataclasses.replace(
        a, text="to 203.0.113.10", destination_domain=name.upper(), destination_names=(name,)
    )
    a = a.with_note(f"also {NATIONAL}", model={"explanation": f"new name {name}"})
    a = a.with_evidence(destination_names=[name], more=[NATIONAL], **{NATIONAL: 1})
    text = repr(a) + json.dumps(to_ecs(a, ZONE, "site"))
    assert NATIONAL not in text.upper()
    assert a.message == f"to 203.0.113.10 ({shown}); also {m(NATIONAL)}"
    assert a.destination_domain == shown.upper() and a.destination_names == (shown,)
    assert a.evidence["destination_names"] == [shown] and a.evidence[m(NATIONAL)] == 1
    assert a.evidence["model"] == {"explanation": f"new name {shown}"}
    # Copies stay masked and equal.
    assert pickle.loads(pickle.dumps(a)) == a
    assert dataclasses.replace(a, evidence=dict(a.evidence)) == a
    assert json.loads(json.dumps(dataclasses.asdict(a)))["evidence"][m(NATIONAL)] == 1


def test_an_alert_is_not_changed_after_it_is_made():
    a = alert(evidence={"k": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.text = "else"  # type: ignore[misc]
    for change in (lambda e: e.__setitem__("k", 2), lambda e: e.update(k=2),
                   lambda e: e.setdefault("j", 1), lambda e: e.pop("k"), lambda e: e.clear()):  # fmt: skip
        with pytest.raises(TypeError, match="fixed when it is made"):
            change(a.evidence)
    assert a.evidence == {"k": 1} and a.with_evidence(j=2).evidence == {"k": 1, "j": 2}


def test_fields_that_are_not_text_from_traffic_are_left_alone():
    a = alert(community_id="1:A123456789+abcdefghijklmnopq=", observer_hostname="A123456789")
    assert a.community_id == "1:A123456789+abcdefghijklmnopq="
    assert a.source_bytes == 0 and a.destination_domain is None and a.evidence == {}


# -- control characters and formulas ------------------------------------------------------

HOSTILE = "\x1b]0;owned\x07\x1b[2J\x08\x08\x7f\x9b\x00x.evil.example"
ESCAPED = "\\x1b]0;owned\\x07\\x1b[2J\\x08\\x08\\x7f\\x9b\\x00x.evil.example"


def raw_controls(text: str, allowed: str = "\n") -> set[str]:
    return {c for c in text if (ord(c) < 32 or 0x7F <= ord(c) <= 0x9F) and c not in allowed}


def test_printable_csv_cell_and_json_text():
    assert printable(HOSTILE) == ESCAPED
    assert printable("tab\there, é 中 – ok") == "tab\\x09here, é 中 – ok"
    for cell in ("=1+2", "+1", "-1+2", "@sum(a1)", "=cmd|' /c calc'!a0"):
        assert csv_cell(cell) == "'" + cell
    assert csv_cell("\t=1") == "\\x09=1" and csv_cell("\r=1") == "\\x0d=1"
    assert csv_cell("a=1") == "a=1" and csv_cell(-5) == -5 and csv_cell(None) is None
    doc = {"domain": HOSTILE, "é": "中"}
    assert json.loads(json_text(doc)) == doc
    assert not raw_controls(json_text(doc), allowed="") and "中" in json_text(doc)
    assert json_text({"a": "b"}) == json.dumps({"a": "b"}, ensure_ascii=False)


def hostile_alerts() -> list[Alert]:
    return [
        alert(text=f"to 203.0.113.66 ({HOSTILE})", destination_domain=HOSTILE),
        alert(
            text='=HYPERLINK("http://x")',
            destination_domain="@sum(1+1).example",
            destination_ip="203.0.113.74",
        ),  # fmt: skip
    ]


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_writers_show_control_characters_and_never_run_them(tmp_path, fmt):
    out = tmp_path / f"alerts.{fmt}"
    write_alerts(hostile_alerts(), fmt, str(out), ZONE, "site")
    text = out.read_bytes().decode("utf-8")  # as written: CSV rows end in \r\n
    if fmt == "jsonl":
        assert not raw_controls(text)
        assert [json.loads(line)["destination"]["domain"] for line in text.splitlines()] == [
            HOSTILE, "@sum(1+1).example"]  # fmt: skip
        return
    if fmt == "table":
        assert not raw_controls(text)
        assert "\\x1b]0;owned\\x07\\x1b[2J" in text
        return
    assert not raw_controls(text.replace("\r\n", ""), allowed="")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["destination_domain"] for r in rows] == [ESCAPED, "'@sum(1+1).example"]
    assert rows[1]["message"] == '\'=HYPERLINK("http://x")'
    assert not any(v.startswith(("=", "+", "-", "@")) for r in rows for v in r.values())


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_the_live_console_shows_control_characters_too(fmt):
    out = io.StringIO()
    AlertStream(fmt, out, ZONE, "site").write(hostile_alerts())
    text = out.getvalue()
    assert not raw_controls(text)
    assert ("\\x1b]0;owned" if fmt == "table" else "\\u001b]0;owned") in text


SITE = """
[site]
name = "test-site"
timezone = "Asia/Taipei"
[networks]
internal = ["10.0.0.0/8"]
"""


def test_a_dns_tunnel_example_is_masked_before_it_is_cut(tmp_path):
    """The dns-tunnel alert shows one question, cut to 80 characters: cut
    first, an ID number at the cut kept 8 or 9 of its characters (enough, with
    the check digit, to give the whole number) that no mask could recognise."""
    from scapy.all import DNS, DNSQR, UDP

    from detector.pipelines.scan import scan_captures
    from detector.policy import parse_policy

    for cut_at in (8, 9):  # characters of the number before the 80th
        number = NATIONAL.lower()
        name = "a" * 60 + "." + "b" * (18 - cut_at) + "-" + number + ".t.example.com"
        assert name.index(number) == 80 - cut_at
        packet = (  # link addresses given: a bare Ether() would ARP for them on this machine
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src="10.0.0.5", dst="10.0.0.53")
            / UDP(sport=5000, dport=53)
            / DNS(rd=1, qd=DNSQR(qname=name))
        )
        wrpcap(str(tmp_path / "t.pcap"), [packet])
        result = scan_captures([tmp_path / "t.pcap"], parse_policy(SITE))
        (tunnel,) = [a for a in result.alerts if a.rule_id == "dns-tunnel"]
        assert number[:cut_at] not in tunnel.message
        assert f"-{m(number)}"[: cut_at + 1] in tunnel.message
