"""Hostile text from the traffic in every output (issue 18, items 1 and 5).

One crafted capture plants Taiwan ID numbers wherever traffic can carry them
(DNS question names, a TLS server name, an HTTP Host, a query string, a
cookie, a form body, an SMTP envelope and message) and names made to attack
whoever reads the output: terminal control sequences (retitle the window with
``ESC ]0;… BEL``, clear it with ``ESC [2J``, backspaces, DEL) and spreadsheet
formulas (``=``, ``+``, ``-``, ``@``). Every command then runs over it in every
output format: scan (table, JSON lines, CSV, ``--features-out``,
``--parquet-dir``, ``--model``), flows (table, Parquet, CSV, JSON lines), train,
nightly (its SQLite state, JSON lines, syslog, HTML report), live on the
capture as a stream (table, JSON lines, syslog, ``--flows-out``), timeline
(table, CSV, SVG) and carve (``--headers-only``: carved packets are the
evidence as captured).

* No byte written anywhere (stdout, stderr, every file, the state database, the
  syslog datagrams) holds a full number, in either case; the masked forms are
  there instead (``j12*****71.leak.example.com``).
* No control byte from the traffic reaches a table or a CSV file raw: the
  sequences are shown as ``\\x1b]0;…``; a CSV cell never starts as a formula.
  JSON lines carry the same names JSON-escaped.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import sqlite3
import threading
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd
import pytest
from gen_traffic import at
from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Ether, Raw, wrpcap
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from test_payload import tw_id
from warm_cli import WarmCli

ZONE = "Asia/Taipei"
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

[rules.im-app]
domains = ["chat.example.com"]

[rules.dns-tunnel]
min_unique_subdomains = 3
min_mean_subdomain_length = 5
"""
ISO, PC, RESOLVER = "10.8.40.31", "10.8.10.44", "10.0.0.53"

# Every number has a valid check digit, so the cleartext-pii rule counts those
# in payloads (it reads upper case only: names are lower-cased on the way in).
ID = {
    "dns": tw_id("J12319487"),  # national ID, in a DNS answer's name
    "glued": tw_id("K21234567"),  # … followed by a letter: "k212345674x"
    "sni": tw_id("Q18765432"),  # a TLS server name (sent in upper case)
    "host": tw_id("A81234567"),  # resident certificate (2021), an HTTP Host
    "query": tw_id("B12345678"),  # a query string
    "cookie": tw_id("AC1234567"),  # resident certificate (old format), a cookie
    "form": tw_id("F13110409"),  # a form body
    "mail_from": tw_id("E22334455"),  # the SMTP envelope
    "mail_body": tw_id("BD7654321"),  # the message
    "tunnel": tw_id("N12121212"),  # the registered domain of a DNS tunnel
    "im": tw_id("M29876543"),  # a messaging app's name
}
# Names made to attack whoever reads the output: a terminal, a spreadsheet.
TERMINAL = b"\x1b]0;owned\x07\x1b[2J\x08\x08\x7fx.evil.example"
FORMULAS = {
    "203.0.113.71": "=cmd|' /c calc'!a0.example",
    "203.0.113.72": "+1-1.example",
    "203.0.113.73": "-2+3.example",
    "203.0.113.74": "@sum(1+1).example",
}


def masked(number: str) -> str:
    return number[:3] + "*****" + number[-2:]


E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _answer(client: str, port: int, name: bytes | str, address: str):
    return E / IP(src=RESOLVER, dst=client) / UDP(sport=53, dport=port) / DNS(
        id=port, qr=1, qd=DNSQR(qname=name),
        an=DNSRR(rrname=name, type="A", rdata=address, ttl=60))  # fmt: skip


def _query(client: str, port: int, name: bytes | str):
    return E / IP(src=client, dst=RESOLVER) / UDP(sport=port, dport=53) / DNS(
        id=port, rd=1, qd=DNSQR(qname=name))  # fmt: skip


def _tcp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", flags: str = "PA"):
    packet = E / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)
    return packet / Raw(payload) if payload else packet


def hostile_packets() -> list:
    """The capture: Wednesday 2026-02-04, 02:00 local (off hours), one packet a second."""
    packets = []
    # Names of outside addresses the isolated host then reaches (isolated-egress
    # names each: destination.domain and the message).
    packets += [
        _query(ISO, 5001, f"{ID['dns'].lower()}.leak.example.com"),
        _answer(ISO, 5001, f"{ID['dns'].lower()}.leak.example.com", "203.0.113.10"),
        _tcp(ISO, "203.0.113.10", 40010, 443, flags="S"),
        _answer(ISO, 5002, f"{ID['glued'].lower()}x.glued.example", "203.0.113.11"),
        _tcp(ISO, "203.0.113.11", 40011, 443, flags="S"),
        _answer(ISO, 5003, TERMINAL, "203.0.113.66"),
        _tcp(ISO, "203.0.113.66", 40066, 443, flags="S"),
    ]
    for port, (address, name) in enumerate(FORMULAS.items(), start=5071):
        packets += [_answer(ISO, port, name, address), _tcp(ISO, address, port + 35000, 443,
                                                             flags="S")]  # fmt: skip
    hello = TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[
        ServerName(servername=f"{ID['sni']}.sni.example.org".encode())])])])  # fmt: skip
    packets.append(_tcp(ISO, "203.0.113.20", 40020, 443, bytes(hello)))
    hello = TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[
        ServerName(servername=b"\x1b[2Jsni\x1b]0;owned\x07.example.org")])])])  # fmt: skip
    packets.append(_tcp(ISO, "203.0.113.21", 40021, 443, bytes(hello)))
    # HTTP from the isolated host: a Host, a query string, a cookie.
    request = (
        f"GET /lookup?nid={ID['query']}&x=1 HTTP/1.1\r\nHost: www-{ID['host']}.host.example.net"
        f"\r\nCookie: uid={ID['cookie']}; theme=dark\r\nUser-Agent: x\r\n\r\n"
    ).encode()
    packets.append(_tcp(ISO, "203.0.113.30", 40030, 80, request))
    packets.append(_tcp(ISO, "203.0.113.31", 40031, 80,
                        b"GET / HTTP/1.1\r\nHost: \x1b]0;owned\x07\x08\x08host.example\r\n\r\n"))  # fmt: skip
    # An internet computer: a form, mail, a DNS tunnel, a messaging app.
    form = f'{{"name": "x", "id": "{ID["form"]}"}}'.encode()
    packets.append(_tcp(PC, "203.0.113.40", 40040, 80,
                        b"POST /f HTTP/1.1\r\nHost: forms.example\r\nContent-Length: "
                        + str(len(form)).encode() + b"\r\n\r\n" + form))  # fmt: skip
    packets.append(_tcp(PC, "203.0.113.50", 40050, 25,
                        f"MAIL FROM:<{ID['mail_from']}@mail.example> SIZE=4096\r\n".encode()))  # fmt: skip
    packets.append(_tcp(PC, "203.0.113.50", 40050, 25,
                        f"DATA\r\nSubject: form\r\n\r\nID: {ID['mail_body']}\r\n.\r\n".encode()))  # fmt: skip
    for i, label in enumerate(("alpha1", "bravo22", "charlie333", "delta4444")):
        packets.append(_query(PC, 5100 + i, f"{label}.t.{ID['tunnel'].lower()}.net"))
    packets.append(_query(PC, 5110, f"{ID['im'].lower()}.chat.example.com"))
    packets.append(_query(PC, 5111, TERMINAL + b".tunnel.example"))
    start = at("2026-02-04 02:00", ZONE) // NS
    for i, packet in enumerate(packets):
        packet.time = start + i
    return packets


# -- every command, every output ------------------------------------------------------


# Every command runs as `python -m detector ARGS` does, in a fork of one process
# that has imported what the sixteen runs import (tests/warm_cli.py): each run
# is then the command's work, not 2 to 4 s of start-up. The bytes on fds 1 and 2 and in the
# files are the command's own; the start-up of each command is tested by
# starting it for real elsewhere (test_cli, test_scan_cli, test_live_stream,
# test_nightly, test_model_files).
WARM = ("detector.pipelines.scan", "detector.pipelines.train", "detector.cli.live",
        "detector.cli.nightly", "detector.detect.model.file", "skops.io", "sklearn.ensemble",
        "sklearn.tree", "pyarrow.parquet")  # fmt: skip


class Syslog:
    """A local syslog daemon's socket (as /dev/log is), bound by the test and
    read all the time (a Unix datagram socket queues only a few messages: a
    sender then waits for the reader)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.received: list[bytes] = []
        self.idle = threading.Event()
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                self.received.append(self.sock.recv(1 << 16))
            except TimeoutError:
                self.idle.set()

    def drain(self) -> list[bytes]:
        """What came since the last call (call it once the sender has exited)."""
        self.idle.clear()
        self.idle.wait(timeout=10)  # the queue was found empty after this call
        got, self.received = self.received, []
        return got

    def close(self) -> None:
        self.stop.set()
        self.reader.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Runs every command over the hostile capture. Returns (streams, out):
    ``streams`` maps a label to (exit code, stdout, stderr, syslog datagrams);
    ``out`` is the directory holding every file the commands wrote (and nothing
    else: the capture and the policy are elsewhere)."""
    root = tmp_path_factory.mktemp("hostile")
    inputs, out = root / "in", root / "out"
    (inputs / "captures").mkdir(parents=True)
    out.mkdir()
    capture = inputs / "captures" / "hostile.pcap"
    wrpcap(str(capture), hostile_packets())
    policy = inputs / "policy.toml"
    policy.write_text(POLICY)
    syslog = Syslog(root / "log")
    p, c, o = str(policy), str(capture), str(out)
    runs: dict[str, list[str]] = {
        "scan table": ["scan", "--policy", p, c],
        "scan jsonl": ["scan", "--policy", p, "--format", "jsonl", c],
        "scan csv": ["scan", "--policy", p, "-o", f"{o}/alerts.csv",
                     "--features-out", f"{o}/features.parquet", "--parquet-dir", f"{o}/dataset", c],
        "scan jsonl file": ["scan", "-q", "--policy", p, "-o", f"{o}/alerts.jsonl",
                            "--features-out", f"{o}/features.csv", c],
        "scan table file": ["scan", "-q", "--policy", p, "--format", "table",
                            "-o", f"{o}/alerts.txt", c],
        "flows table": ["flows", c],
        "flows parquet": ["flows", "-o", f"{o}/flows.parquet", c],
        "flows csv": ["flows", "-o", f"{o}/flows.csv", c],
        "flows jsonl": ["flows", "-o", f"{o}/flows.jsonl", c],
        "train": ["train", "--policy", p, "-o", f"{o}/site.model", c],
        "scan model": ["scan", "--policy", p, "--model", f"{o}/site.model", "--format", "jsonl", c],
        "scan model csv": ["scan", "-q", "--policy", p, "--model", f"{o}/site.model",
                           "-o", f"{o}/model-alerts.csv", c],
        "nightly": ["nightly", "--captures", str(inputs / "captures"), "--policy", p,
                    "--model", f"{o}/site.model", "--state", f"{o}/state.db",
                    "--report-dir", f"{o}/reports", "--jsonl", f"{o}/nightly.jsonl",
                    "--syslog", str(syslog.path), "--settle", "0"],
        "live table": ["live", "-r", "-", "--policy", p, "--jsonl", f"{o}/live-also.jsonl",
                       "--syslog", str(syslog.path), "--flows-out", f"{o}/live-flows.csv"],
        "live jsonl": ["live", "-r", "-", "--policy", p, "--model", f"{o}/site.model",
                       "--format", "jsonl", "--flows-out", f"{o}/live-flows.parquet"],
        "live table file": ["live", "-r", "-", "--policy", p, "-o", f"{o}/live-table.txt",
                            "--flows-out", f"{o}/live-flows.jsonl"],
        "timeline table": ["timeline", "--host", ISO, "--policy", p, "-o", f"{o}/timeline.svg", c],
        "timeline csv": ["timeline", "--host", ISO, "--policy", p, "--format", "csv", c],
        # Carved packets are the evidence, as captured (carve --help says they may
        # hold personal data); with --headers-only they hold no payload.
        "carve": ["carve", "--host", ISO, "--headers-only", "-o", f"{o}/carved.pcap", c],
    }  # fmt: skip
    streams = {}
    try:
        with WarmCli(WARM) as cli:
            for label, args in runs.items():
                ran = cli.run(args, stdin=capture if args[0] == "live" else None)
                streams[label] = (ran.returncode, ran.stdout, ran.stderr, syslog.drain())
    finally:
        syslog.close()
    return streams, out


EXPECTED_CODES = {"flows": 0, "train": 0, "carve": 0}  # the others raise alerts: 1


def test_every_command_ran_and_wrote_its_outputs(written):
    streams, out = written
    for label, (code, _stdout, stderr, _syslog) in streams.items():
        assert code == EXPECTED_CODES.get(label.split()[0], 1), (label, stderr.decode()[-2000:])
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for name in ("alerts.csv", "alerts.jsonl", "alerts.txt", "features.parquet", "features.csv",
                 "flows.parquet", "flows.csv", "flows.jsonl", "site.model", "model-alerts.csv",
                 "state.db", "reports/egress-report-2026-02-04.html", "nightly.jsonl",
                 "live-also.jsonl", "live-flows.csv", "live-flows.parquet", "live-table.txt",
                 "live-flows.jsonl", "timeline.svg", "carved.pcap"):  # fmt: skip
        assert name in files, sorted(files)
    assert any(f.startswith("dataset/flows/") for f in files)
    assert any(f.startswith("dataset/features/") for f in files)
    assert streams["nightly"][3] and streams["live table"][3]  # syslog messages came


def _readings(path: Path, data: bytes) -> list[bytes]:
    """``data`` as written, and what a reader gets out of it where the bytes are
    compressed or structured: Parquet tables, SQLite rows, zip (and .npz) members."""
    out = [data]
    if data[:4] == b"PAR1" or (path.suffix == ".parquet"):
        out.append(pd.read_parquet(io.BytesIO(data)).to_csv().encode())
    elif data[:16] == b"SQLite format 3\x00":
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        out.append("\n".join(db.iterdump()).encode())
        db.close()
    elif zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                out += _readings(Path(member), archive.read(member))
    return out


def everything_written(written) -> list[tuple[str, bytes]]:
    streams, out = written
    texts = []
    for label, (_code, stdout, stderr, datagrams) in streams.items():
        texts += [(f"{label}: stdout", stdout), (f"{label}: stderr", stderr)]
        texts += [(f"{label}: syslog", d) for d in datagrams]
    for path in sorted(out.rglob("*")):
        if path.is_file():
            texts += [(str(path.relative_to(out)), r) for r in _readings(path, path.read_bytes())]
    return texts


def test_no_byte_written_anywhere_holds_a_full_id_number(written):
    texts = everything_written(written)
    assert len(texts) > 40
    for where, data in texts:
        lowered = data.lower()
        for what, number in ID.items():
            assert number.lower().encode() not in lowered, f"{what} number in full in {where}"


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def test_names_are_shown_masked_in_every_alert_output(written):
    streams, out = written
    names = {
        "203.0.113.10": f"{masked(ID['dns']).lower()}.leak.example.com",
        "203.0.113.11": f"{masked(ID['glued']).lower()}x.glued.example",
        "203.0.113.20": f"{masked(ID['sni']).lower()}.sni.example.org",
        "203.0.113.30": f"www-{masked(ID['host']).lower()}.host.example.net",
    }
    docs_of = {
        "scan jsonl": jsonl(streams["scan jsonl"][1]),
        "scan model": jsonl(streams["scan model"][1]),
        "alerts.jsonl": jsonl((out / "alerts.jsonl").read_bytes()),
        "nightly.jsonl": jsonl((out / "nightly.jsonl").read_bytes()),
        "nightly syslog": [json.loads(d.partition(b"\xef\xbb\xbf")[2])
                           for d in streams["nightly"][3]],
        "live jsonl": jsonl(streams["live jsonl"][1]),
        "live-also.jsonl": jsonl((out / "live-also.jsonl").read_bytes()),
        "live syslog": [json.loads(d.partition(b"\xef\xbb\xbf")[2])
                        for d in streams["live table"][3]],
    }  # fmt: skip
    for where, docs in docs_of.items():
        domains = {d["destination"]["ip"]: d["destination"].get("domain")
                   for d in docs if d["rule"]["id"] == "isolated-egress"
                   and d["destination"]["ip"] in names}  # fmt: skip
        assert domains == names, where
        by_rule = {d["rule"]["id"]: d for d in docs}
        assert f"{masked(ID['tunnel']).lower()}.net" in by_rule["dns-tunnel"]["egress"]["domains"]
        assert by_rule["im-app"]["egress"]["seen"] == [
            f"{masked(ID['im']).lower()}.chat.example.com"
        ]
        pii = sorted(m for d in docs if d["rule"]["id"] == "cleartext-pii"
                     for m in d["egress"]["pii_masked"])  # fmt: skip
        assert pii == sorted(masked(ID[k]) for k in ("query", "host", "cookie", "form",
                                                      "mail_from", "mail_body")), where  # fmt: skip
    rows = list(csv.DictReader(io.StringIO((out / "alerts.csv").read_text(encoding="utf-8"))))
    assert {r["destination_ip"]: r["destination_domain"] for r in rows
            if r["destination_ip"] in names} == names  # fmt: skip
    for table in (streams["scan table"][1], (out / "alerts.txt").read_bytes(),
                  streams["live table"][1], (out / "live-table.txt").read_bytes()):  # fmt: skip
        assert f"({names['203.0.113.10']})".encode() in table
    report = (out / "reports" / "egress-report-2026-02-04.html").read_text(encoding="utf-8")
    assert names["203.0.113.10"] in report


# -- control characters and formulas --------------------------------------------------

# The terminal name as the capture's reader gives it (lower-cased: DNS is
# case-insensitive), and as a table or a CSV cell shows it.
TERMINAL_NAME = TERMINAL.decode("ascii").lower()
TERMINAL_SHOWN = "\\x1b]0;owned\\x07\\x1b[2j\\x08\\x08\\x7fx.evil.example"
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # all but the newline


def test_tables_show_control_characters_escaped(written):
    streams, out = written
    for where, data in (("scan", streams["scan table"][1]), ("-o", (out / "alerts.txt").read_bytes()),
                        ("live", streams["live table"][1]),
                        ("live -o", (out / "live-table.txt").read_bytes()),
                        ("timeline", streams["timeline table"][1])):  # fmt: skip
        text = data.decode("utf-8")
        assert not RAW_CONTROL.search(text), (where, RAW_CONTROL.findall(text))
        assert f"203.0.113.66\n    ({TERMINAL_SHOWN})" in text or f"({TERMINAL_SHOWN})" in text, (
            where
        )
        assert "\\x1b]0;owned\\x07\\x08\\x08host.example" in text, where  # the HTTP Host
        assert "\\x1b[2jsni\\x1b]0;owned\\x07.example.org" in text, where  # the TLS server name


def test_the_timeline_chart_is_valid_xml_with_control_characters_shown(written):
    """XML 1.0 allows no C0 control, not even as a character reference: one raw
    in the SVG and a viewer refuses the whole chart."""
    _streams, out = written
    data = (out / "timeline.svg").read_bytes()
    text = data.decode("utf-8")
    assert not RAW_CONTROL.search(text), RAW_CONTROL.findall(text)
    root = ElementTree.fromstring(data)
    titles = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title"))
    assert f"({TERMINAL_SHOWN})" in titles
    assert f"({masked(ID['dns']).lower()}.leak.example.com)" in titles


def test_csv_cells_show_control_characters_and_never_start_a_formula(written):
    streams, out = written
    for name in ("alerts.csv", "model-alerts.csv"):
        data = (out / name).read_bytes().decode("utf-8")
        assert not RAW_CONTROL.search(data.replace("\r\n", "\n")), name
        rows = list(csv.DictReader(io.StringIO(data, newline="")))
        domains = {r["destination_ip"]: r["destination_domain"] for r in rows}
        assert domains["203.0.113.66"] == TERMINAL_SHOWN
        for address, formula in FORMULAS.items():
            assert domains[address] == "'" + formula
        for row in rows:
            for column, cell in row.items():
                assert not cell.startswith(("=", "+", "-", "@")), (name, column, cell)
    # Features: numbers, addresses and fixed words only. Flows carry one text from
    # the traffic, the server name: shown escaped, never a formula.
    for name in ("flows.csv", "features.csv", "live-flows.csv"):
        assert not RAW_CONTROL.search((out / name).read_text(encoding="utf-8")), name
    for name in ("flows.csv", "live-flows.csv"):
        rows = list(csv.DictReader(io.StringIO((out / name).read_text(encoding="utf-8"))))
        names = {r["dst_ip"]: r["server_name"] for r in rows if r["dst_port"] == "443"}
        assert names["203.0.113.66"] == TERMINAL_SHOWN, name
        for address, formula in FORMULAS.items():
            assert names[address] == "'" + formula, (name, address)
        for row in rows:
            for column, cell in row.items():
                assert not cell.startswith(("=", "+", "@")), (name, column, cell)


def test_json_lines_carry_the_same_names_json_escaped(written):
    streams, out = written
    outputs = {
        "scan": streams["scan jsonl"][1],
        "scan -o": (out / "alerts.jsonl").read_bytes(),
        "live": streams["live jsonl"][1],
        "live --jsonl": (out / "live-also.jsonl").read_bytes(),
        "syslog": b"\n".join(d.partition(b"\xef\xbb\xbf")[2] for d in streams["live table"][3]),
        "nightly": (out / "nightly.jsonl").read_bytes(),
    }
    for where, data in outputs.items():
        text = data.decode("utf-8")
        raw = RAW_CONTROL.findall(text)
        assert raw == [], (where, raw)
        assert "\\u001b]0;owned\\u0007" in text, where
        domains = {d["destination"]["ip"]: d["destination"].get("domain") for d in jsonl(data)
                   if "destination" in d}  # fmt: skip
        assert domains["203.0.113.66"] == TERMINAL_NAME, where
        assert domains["203.0.113.71"] == FORMULAS["203.0.113.71"], where
