"""Syslog over TCP (RFC 6587 octet counting) and TLS (RFC 5425) against real
collectors on loopback: a server that reads ``MSG-LEN SP SYSLOG-MSG`` frames
and parses each message's JSON. Every alert arrives once, in order, also
when the collector drops the connection or is not there yet; the capture
side never waits on a collector that stalls; the server's certificate is
checked against the CA given (a wrong CA, or a name the certificate is not
for, is one clear line); a client certificate when asked; and an alert far
over the 8,192-byte syslog limit arrives shortened, as valid JSON that says
so (``egress.truncated``), over every transport, UDP included."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tls_certs import issue, make_ca

from detector.alerts.delivery import Backoff
from detector.alerts.mask import json_text
from detector.alerts.record import Alert, to_ecs
from detector.alerts.stream import SYSLOG_MAX_BYTES, SyslogSender, fit_json
from detector.errors import DetectorError
from detector.policy import parse_policy

POLICY = parse_policy('[site]\nname = "lab"\ntimezone = "Asia/Taipei"\n')
FAST = {"backoff": Backoff(0.02, 0.2), "connect_seconds": 2.0, "send_seconds": 2.0,
        "close_seconds": 5.0}  # fmt: skip


def alert(i: int, text: str | None = None, **evidence) -> tuple[Alert, dict]:
    a = Alert("isolated-egress", "Isolated host talked out", 4, 10**18 + i * 10**9,
              10**18 + (i + 1) * 10**9, "10.8.40.31", text or f"alert number {i}",
              destination_ip="203.0.113.140", destination_port=443, evidence=evidence)  # fmt: skip
    return a, to_ecs(a, POLICY.zone, POLICY.site_name)


def body(message: bytes) -> dict:
    """The JSON of one RFC 5424 message (after the header and the UTF-8 BOM)."""
    header, bom, rest = message.partition(b" \xef\xbb\xbf")
    fields = header.split(b" ")
    assert bom and len(fields) == 7, message[:120]
    pri, _, version = fields[0][1:].partition(b">")
    assert 16 * 8 + 2 <= int(pri) <= 16 * 8 + 5 and version == b"1"  # local0, crit … notice
    return json.loads(rest.decode("utf-8"))


class Collector:
    """A syslog collector on 127.0.0.1: TCP, or TLS with ``context``; reads
    octet-counted frames from each connection and keeps every message."""

    def __init__(self, context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.messages: list[bytes] = []
        self.connections: list[socket.socket] = []
        self.peers: list[dict] = []  # client certificates seen
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.reading = threading.Event()
        self.reading.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
                self.peers.append(conn.getpeercert() or {})
        except (ssl.SSLError, OSError) as exc:
            self.errors.append(str(exc))
            conn.close()
            return
        with self.lock:
            self.connections.append(conn)
        buffer = b""
        while True:
            self.reading.wait()
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while True:
                length, space, rest = buffer.partition(b" ")
                if not space:
                    break
                assert length.isdigit(), buffer[:40]  # MSG-LEN SP SYSLOG-MSG
                if len(rest) < int(length):
                    break
                with self.lock:
                    self.messages.append(rest[: int(length)])
                buffer = rest[int(length) :]

    def wait_for(self, count: int, seconds: float = 20) -> list[bytes]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with self.lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.01)
        time.sleep(0.1)  # and nothing more comes
        with self.lock:
            return list(self.messages)

    def drop(self) -> None:
        """Close every connection (a collector restarted)."""
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.connections.clear()

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # wakes accept(): the port is free
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.drop()


def sent_texts(messages: list[bytes]) -> list[str]:
    return [body(m)["message"] for m in messages]


# -- TCP ----------------------------------------------------------------------------------


def test_tcp_frames_are_octet_counted_and_every_alert_arrives_once():
    collector = Collector()
    sender = SyslogSender(f"tcp://127.0.0.1:{collector.port}", options=FAST)
    for i in range(300):
        sender.send(*alert(i, f"alert number {i}: ünïcode → counted in bytes"))
    sender.close()
    messages = collector.wait_for(300)
    collector.stop()
    assert sent_texts(messages) == [f"alert number {i}: ünïcode → counted in bytes"
                                    for i in range(300)]  # fmt: skip
    assert all(len(m) <= SYSLOG_MAX_BYTES for m in messages)


def test_tcp_reconnects_with_backoff_when_the_collector_drops_or_restarts():
    said: list[str] = []
    collector = Collector()
    port = collector.port
    sender = SyslogSender(f"tcp://127.0.0.1:{port}", options={**FAST, "say": said.append})
    for i in range(10):
        sender.send(*alert(i))
    assert len(collector.wait_for(10)) == 10
    collector.drop()  # the collector closes the connection
    time.sleep(0.1)
    for i in range(10, 20):
        sender.send(*alert(i))
    assert len(collector.wait_for(20)) == 20
    collector.stop()  # and goes away for a while
    time.sleep(0.1)
    for i in range(20, 30):
        sender.send(*alert(i))
    time.sleep(0.5)  # several tries, with backoff
    again = Collector(port=port)
    for i in range(30, 40):
        sender.send(*alert(i))
    sender.close()
    messages = collector.messages + again.wait_for(20)
    again.stop()
    assert sent_texts(messages) == [f"alert number {i}" for i in range(40)]  # once each, in order
    assert sum("cannot connect" in line for line in said) == 1, said  # once per outage
    assert any("connected again; sending" in line for line in said), said


def test_a_collector_not_there_at_start_is_a_warning_and_alerts_wait(capsys):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sender = SyslogSender(f"tcp://127.0.0.1:{port}", options=FAST)
    err = capsys.readouterr().err
    assert err.startswith(f"egress-detector: warning: syslog tcp://127.0.0.1:{port}: cannot "
                          "connect (Connection refused)")  # fmt: skip
    for i in range(5):
        sender.send(*alert(i))
    collector = Collector(port=port)
    sender.close()
    assert sent_texts(collector.wait_for(5)) == [f"alert number {i}" for i in range(5)]
    collector.stop()


def test_a_collector_that_stops_reading_never_holds_up_the_capture():
    """The collector accepts and then reads nothing: its TCP window fills. Each
    send only queues (a bounded queue): it returns at once, the queue's
    overflow is dropped, said in a line when the queue fills (not for each
    alert), and close() gives up on time."""
    said: list[str] = []
    collector = Collector()
    collector.reading.clear()
    sender = SyslogSender(f"tcp://127.0.0.1:{collector.port}",
                          options={**FAST, "queue_messages": 200, "send_seconds": 0.5,
                                   "close_seconds": 0.5, "say": said.append})  # fmt: skip
    big = "x" * 7000
    slowest = 0.0
    started = time.monotonic()
    for i in range(3000):  # 21 MB: far more than the socket buffers hold
        t = time.monotonic()
        sender.send(*alert(i, big))
        slowest = max(slowest, time.monotonic() - t)
    assert slowest < 0.2 and time.monotonic() - started < 10  # a network wait: 0.5 s+
    t = time.monotonic()
    sender.close()
    assert time.monotonic() - t < 4
    collector.reading.set()
    collector.stop()
    # Said when the queue fills, not for each alert (a send that times out
    # reconnects: a new, empty window takes some, and the queue fills again).
    full = sum("messages wait already" in line for line in said)
    assert 1 <= full <= 5 and len(said) <= 2 * full + 2, said


def test_targets_and_options_are_checked():
    with pytest.raises(DetectorError, match=r"^--syslog http://x: not a syslog target"):
        SyslogSender("http://x")
    with pytest.raises(DetectorError, match=r"^--syslog tcp://x:y: the port must be a number"):
        SyslogSender("tcp://x:y")
    # A malformed target is a usage error now, not a collector that never answers.
    for target, why in [("tcp://host:99999", "the port must be a number from 1 to 65535"),
                        ("tls://:514", "no host"),
                        ("tcp://[::1", r"an IPv6 address in \[ \] lacks its \]"),
                        ("tcp://[::1]x", r"give \[IPv6\]:PORT"),
                        ("tcp://::1:514", r"an IPv6 address goes in \[ \]"),
                        ("tcp://a b:514", "'a b' is not a host name or address"),
                        ("tcp://\x1b]0;x\x07:514", r"'\\x1b\]0;x\\x07' is not a host")]:  # fmt: skip
        with pytest.raises(DetectorError, match=why):
            SyslogSender(target)
    with pytest.raises(DetectorError, match=r"^--syslog-ca, --syslog-cert and --syslog-key are "
                       r"for --syslog tls://"):  # fmt: skip
        SyslogSender("tcp://127.0.0.1:1", ca="ca.pem")
    with pytest.raises(DetectorError, match=r"^--syslog-key: give the client certificate"):
        SyslogSender("tls://127.0.0.1:1", key="client.key")
    with pytest.raises(DetectorError, match=r"^--syslog-ca /absent.pem: cannot load the CA"):
        SyslogSender("tls://127.0.0.1:1", ca="/absent.pem")


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "Test CA")
    return {
        "ca": ca,
        "other_ca": make_ca(folder, "Other CA"),
        "server": issue(ca, folder, "collector", names=("localhost",), ips=("127.0.0.1",)),
        "elsewhere": issue(ca, folder, "elsewhere", names=("collector.example.net",)),
        "client": issue(ca, folder, "sensor-7", client=True),
    }


def server_context(cert, client_ca=None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca.cert)
    return context


def test_tls_checks_the_server_against_the_ca_and_every_alert_arrives_once(pki):
    collector = Collector(server_context(pki["server"]))
    sender = SyslogSender(f"tls://localhost:{collector.port}", ca=str(pki["ca"].cert),
                          options=FAST)  # fmt: skip
    for i in range(200):
        sender.send(*alert(i))
    huge_alert, huge_doc = alert(200, "upload " * 3000,  # a 21 kB message
                                 names=[f"host-{n}.example.net" for n in range(500)])  # fmt: skip
    assert len(json_text(huge_doc).encode()) > 30_000
    sender.send(huge_alert, huge_doc)
    sender.send(*alert(201))
    sender.close()
    messages = collector.wait_for(202)
    collector.stop()
    assert collector.errors == []
    assert sent_texts(messages[:200]) == [f"alert number {i}" for i in range(200)]
    assert sent_texts(messages[201:]) == ["alert number 201"]
    huge = body(messages[200])  # valid JSON, within the limit, and says it was shortened
    assert len(messages[200]) <= SYSLOG_MAX_BYTES
    assert huge["egress"]["truncated"] is True
    assert huge["egress"]["truncated_fields"] == ["message", "egress.names"]
    assert huge["message"].endswith("…") and huge_doc["message"].startswith(huge["message"][:-1])
    assert len(huge["message"]) > 2000 and 20 < len(huge["egress"]["names"]) < 500
    assert huge["egress"]["names"] == huge_doc["egress"]["names"][: len(huge["egress"]["names"])]
    for key in ("@timestamp", "event", "rule", "source", "destination", "observer"):
        assert huge[key] == huge_doc[key]  # what identifies the alert is whole


def test_a_wrong_ca_is_refused_in_one_clear_line(pki):
    collector = Collector(server_context(pki["server"]))
    with pytest.raises(DetectorError) as refused:
        SyslogSender(f"tls://localhost:{collector.port}", ca=str(pki["other_ca"].cert),
                     options=FAST)  # fmt: skip
    message = str(refused.value)
    assert "\n" not in message
    assert message == (f"--syslog tls://localhost:{collector.port}: the server's certificate "
                       "is refused: unable to get local issuer certificate (checked against the "
                       f"CA in {pki['other_ca'].cert})")  # fmt: skip
    collector.stop()
    assert collector.messages == []


def test_a_certificate_for_another_name_is_refused(pki):
    collector = Collector(server_context(pki["elsewhere"]))
    with pytest.raises(DetectorError, match=r"certificate is refused: Hostname mismatch, "
                       r"certificate is not valid for 'localhost'"):  # fmt: skip
        SyslogSender(f"tls://localhost:{collector.port}", ca=str(pki["ca"].cert), options=FAST)
    collector.stop()


def test_the_system_store_is_used_without_a_ca(pki, monkeypatch):
    """No --syslog-ca: the system's store, which does not know the test CA;
    pointed at it (SSL_CERT_FILE, as for any OpenSSL client), it does."""
    collector = Collector(server_context(pki["server"]))
    with pytest.raises(DetectorError, match=r"checked against the system's CA store\)$"):
        SyslogSender(f"tls://localhost:{collector.port}", options=FAST)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"].cert))
    sender = SyslogSender(f"tls://localhost:{collector.port}", options=FAST)
    sender.send(*alert(1))
    sender.close()
    assert sent_texts(collector.wait_for(1)) == ["alert number 1"]
    collector.stop()


def test_a_client_certificate_when_the_collector_asks_for_one(pki):
    collector = Collector(server_context(pki["server"], client_ca=pki["ca"]))
    sender = SyslogSender(f"tls://127.0.0.1:{collector.port}", ca=str(pki["ca"].cert),
                          cert=str(pki["client"].cert), key=str(pki["client"].key),
                          options=FAST)  # fmt: skip
    for i in range(3):
        sender.send(*alert(i))
    sender.close()
    assert sent_texts(collector.wait_for(3)) == ["alert number 0", "alert number 1",
                                                 "alert number 2"]  # fmt: skip
    collector.stop()
    subject = dict(item for rdn in collector.peers[0]["subject"] for item in rdn)
    assert subject["commonName"] == "sensor-7"


# -- messages that do not fit -------------------------------------------------------------


def test_udp_carries_a_long_alert_as_valid_json_too():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    sender = SyslogSender(f"udp://127.0.0.1:{receiver.getsockname()[1]}")
    sender.send(*alert(1, "é" * 20_000))  # two bytes a character
    sender.send(*alert(2))
    long, short = receiver.recv(65535), receiver.recv(65535)
    sender.close()
    receiver.close()
    assert len(long) <= SYSLOG_MAX_BYTES and body(long)["egress"]["truncated"] is True
    assert body(short)["message"] == "alert number 2" and "truncated" not in body(short)["egress"]


def test_an_alert_that_fits_is_written_as_it_is():
    for i in range(3):
        _, doc = alert(i, "a message with \x1b[2J and \x9b controls", names=["a", "b"])
        assert fit_json(doc, SYSLOG_MAX_BYTES) == json_text(doc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=6),
    max_leaves=100,
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(message=st.text(max_size=3000), evidence=st.dictionaries(st.text(max_size=10),
       json_values, max_size=12), limit=st.integers(700, 6000))  # fmt: skip
def test_whatever_the_alert_the_message_fits_and_is_valid_json(message, evidence, limit):
    doc = {"@timestamp": "2026-02-04T02:13:00.000+08:00",
           "event": {"kind": "alert", "id": "a" * 64, "severity": 4},
           "rule": {"id": "isolated-egress", "name": "Isolated host talked out"},
           "source": {"ip": "10.8.40.31"}, "message": message,
           "egress": {"severity_name": "critical", **evidence}}  # fmt: skip
    text = fit_json(doc, limit)
    assert len(text.encode()) <= limit
    fitted = json.loads(text)
    if len(json_text(doc).encode()) <= limit:
        assert text == json_text(doc)
    else:
        assert fitted["egress"]["truncated"] is True
        assert fitted["event"] == doc["event"] and fitted["@timestamp"] == doc["@timestamp"]
        assert fitted["source"] == doc["source"]
