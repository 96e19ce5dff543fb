"""The webhook and its spool, against a receiver on loopback (http.server in a
thread) that answers 200, fails (HTTP 500), hangs past the client's timeout,
and comes back: every alert is received exactly once and in order (counting
what the receiver answered 200 to), also when the sender is closed with
alerts undelivered and a new one takes over its spool, and when a process is
killed (SIGKILL) with alerts in its spool. The spool: bounded (one line when
full, one when it has room again), one process at a time, a line cut by a
crash dropped, delivered segments deleted. The token: read from a file,
sent as a bearer token, never written anywhere."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tls_certs import issue, make_ca

from detector.alerts import spool as spool_mod
from detector.alerts.delivery import Backoff
from detector.alerts.record import Alert, to_ecs
from detector.alerts.spool import Spool
from detector.alerts.webhook import WebhookSender, open_webhook, read_token
from detector.errors import DetectorError
from detector.policy import parse_policy

ROOT = Path(__file__).resolve().parents[1]
POLICY = parse_policy('[site]\nname = "lab"\ntimezone = "Asia/Taipei"\n')
TOKEN = "s3cret-T0ken.for_tests"
# A second for an answer: a loaded machine answers a healthy request in time
# (an answer too late would be a request sent twice), a hang still ends soon.
FAST = {"timeout": 1.0, "backoff": Backoff(0.02, 0.2), "close_seconds": 3.0}


def alert(i: int) -> tuple[Alert, dict]:
    a = Alert("isolated-egress", "Isolated host talked out", 4, 10**18 + i * 10**9,
              10**18 + (i + 1) * 10**9, "10.8.40.31", f"alert number {i}",
              destination_ip="203.0.113.140", destination_port=443, evidence={"n": i})  # fmt: skip
    return a, to_ecs(a, POLICY.zone, POLICY.site_name)


class Receiver:
    """An HTTP receiver on 127.0.0.1. ``mode``: "ok" (200, the alerts kept),
    "fail" (500), "hang" (answers nothing for longer than the client waits)
    or "small" (413 for more than two alerts at once). Every request is in
    ``attempts``; alerts it took, in ``taken``."""

    def __init__(self, port: int = 0, context: ssl.SSLContext | None = None) -> None:
        self.mode = "ok"
        self.attempts: list[tuple[str, dict[str, str], bytes]] = []
        self.taken: list[dict] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                mode = receiver.mode
                with receiver.lock:
                    receiver.attempts.append((mode, dict(self.headers), body))
                if mode == "hang":
                    receiver.released.wait(4)  # longer than the client waits
                    self.close_connection = True
                    return
                if mode == "fail" or (mode == "small" and body.count(b"\n") > 2):
                    self.send_response(500 if mode == "fail" else 413)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.taken += [json.loads(line) for line in body.splitlines()]
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        scheme = "https" if context else "http"
        self.url = f"{scheme}://{'localhost' if context else '127.0.0.1'}:{self.port}/alerts?k=1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()  # fmt: skip

    def numbers(self) -> list[int]:
        with self.lock:
            return [doc["egress"]["n"] for doc in self.taken]

    def wait_for(self, count: int, seconds: float = 20) -> list[int]:
        """The numbers (egress.n) of the alerts taken, once there are ``count``."""
        self.wait_taken(count, seconds)
        return self.numbers()

    def wait_taken(self, count: int, seconds: float = 20) -> list[dict]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with self.lock:
                if len(self.taken) >= count:
                    break
            time.sleep(0.01)
        time.sleep(0.1)  # and nothing more comes
        with self.lock:
            return list(self.taken)

    def wait_attempts(self, mode: str, count: int, seconds: float = 20) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with self.lock:
                if sum(m == mode for m, _, _ in self.attempts) >= count:
                    return
            time.sleep(0.01)
        raise AssertionError(f"fewer than {count} {mode} attempts")

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_a_receiver_that_fails_hangs_and_comes_back_gets_each_alert_once_in_order(
    receiver, tmp_path
):
    said: list[str] = []
    sender = open_webhook(receiver.url, str(tmp_path / "spool"), token=TOKEN,
                          say=said.append, **FAST)  # fmt: skip
    for i in range(5):
        sender.send(*alert(i))
    assert receiver.wait_for(5) == list(range(5))
    receiver.mode = "fail"
    sender.send_all([alert(i) for i in range(5, 10)])
    receiver.wait_attempts("fail", 3)  # tried again, with backoff
    receiver.mode = "hang"
    receiver.wait_attempts("hang", 1)
    for i in range(10, 15):
        sender.send(*alert(i))
    receiver.wait_attempts("hang", 2)
    receiver.mode = "ok"
    assert receiver.wait_for(15) == list(range(15))  # once each, in order
    sender.close()
    assert receiver.numbers() == list(range(15))
    for _, headers, body in receiver.attempts:
        assert headers["Content-Type"] == "application/x-ndjson"
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert body.endswith(b"\n") and all(json.loads(line) for line in body.splitlines())
    # A batch tried again is the same bytes under the same key (a receiver
    # that took it but could not answer can drop the repeat).
    keys: dict[str, set[bytes]] = {}
    for _, headers, body in receiver.attempts:
        keys.setdefault(headers["Idempotency-Key"], set()).add(body)
    assert all(len(bodies) == 1 for bodies in keys.values())
    failed = {h["Idempotency-Key"] for m, h, _ in receiver.attempts if m != "ok"}
    assert failed <= {h["Idempotency-Key"] for m, h, _ in receiver.attempts if m == "ok"}
    # One line when it went down (the first failure), one when it came back.
    assert [line.split(": ", 1)[1] for line in said] == [
        f"HTTP 500 Internal Server Error; alerts wait in the spool {tmp_path / 'spool'} and are "
        "sent again with backoff",
        "the receiver takes alerts again",
    ]
    assert all(line.startswith(f"webhook http://127.0.0.1:{receiver.port}/alerts?…") for line in said)
    assert not any(TOKEN in line for line in said)


def test_nothing_is_lost_across_a_restart(receiver, tmp_path):
    said: list[str] = []
    spool = str(tmp_path / "spool")
    receiver.mode = "fail"
    first = open_webhook(receiver.url, spool, say=said.append, **{**FAST, "close_seconds": 0.3})
    for i in range(10):
        first.send(*alert(i))
    first.close()
    assert said[-1].endswith(f"10 alert(s) not delivered yet wait in the spool {spool}: the "
                             "next run with it sends them first")  # fmt: skip
    assert receiver.numbers() == []
    receiver.mode = "ok"
    second = open_webhook(receiver.url, spool, say=said.append, **FAST)
    assert said[-1].endswith(f"10 alert(s) from an earlier run wait in the spool {spool}: "
                             "sending them first")  # fmt: skip
    for i in range(10, 15):
        second.send(*alert(i))
    second.close()
    assert receiver.numbers() == list(range(15))


KILLED_SENSOR = """
import sys, time
from detector.alerts.delivery import Backoff
from detector.alerts.record import Alert, to_ecs
from detector.alerts.webhook import open_webhook
from detector.policy import parse_policy

url, spool = sys.argv[1:]
policy = parse_policy('[site]\\nname = "lab"\\ntimezone = "Asia/Taipei"\\n')
sender = open_webhook(url, spool, timeout=1.0, backoff=Backoff(0.02, 0.2))
for i in range(20):
    a = Alert("isolated-egress", "Isolated host talked out", 4, 10**18 + i * 10**9,
              10**18 + (i + 1) * 10**9, "10.8.40.31", f"alert number {i}",
              destination_ip="203.0.113.140", destination_port=443, evidence={"n": i})
    sender.send(a, to_ecs(a, policy.zone, policy.site_name))
print("spooled", flush=True)
time.sleep(60)
"""


def test_a_killed_process_leaves_its_alerts_to_the_next(receiver, tmp_path):
    """SIGKILL while the receiver fails: the alerts were synced to the spool
    when sent; a new process delivers them first, in order, once each (a
    line the killed one was writing, cut short, is not an alert)."""
    spool = tmp_path / "spool"
    receiver.mode = "fail"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SENSOR, receiver.url, str(spool)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "spooled\n", proc.stderr.read() if proc.stderr else ""
    receiver.wait_attempts("fail", 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stderr is not None
    assert "HTTP 500" in proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    segment = max(spool.glob("*.ndjson"))
    with open(segment, "ab") as f:
        f.write(b'{"event": {"kind": "al')  # a write the kill cut short
    receiver.mode = "ok"
    sender = open_webhook(receiver.url, str(spool), **FAST)
    for i in range(20, 25):
        sender.send(*alert(i))
    sender.close()
    assert receiver.numbers() == list(range(25))


def test_a_full_spool_refuses_new_alerts_in_one_line(receiver, tmp_path):
    said: list[str] = []
    line = len(json.dumps(alert(0)[1], ensure_ascii=False)) + 1
    receiver.mode = "fail"
    sender = open_webhook(receiver.url, str(tmp_path / "spool"), max_bytes=int(line * 4.5),
                          say=said.append, **FAST)  # fmt: skip
    for i in range(10):
        sender.send(*alert(i))
    full = [s for s in said if "is full" in s]
    assert len(full) == 1 and "new alerts are not kept for the webhook" in full[0]
    receiver.mode = "ok"
    assert receiver.wait_for(4) == [0, 1, 2, 3]
    sender.send(*alert(10))
    assert receiver.wait_for(5) == [0, 1, 2, 3, 10]
    sender.close()
    assert any(s.endswith("the spool has room again; 6 alert(s) were not kept while it was "
                          "full") for s in said), said  # fmt: skip


def test_segments_roll_and_delivered_ones_are_deleted(receiver, tmp_path, monkeypatch):
    monkeypatch.setattr(spool_mod, "SEGMENT_BYTES", 2000)
    spool = tmp_path / "spool"
    sender = open_webhook(receiver.url, str(spool), batch_bytes=3000, **FAST)
    receiver.mode = "fail"
    sender.send_all([alert(i) for i in range(40)])
    assert len(list(spool.glob("*.ndjson"))) > 5
    receiver.mode = "ok"
    assert receiver.wait_for(40) == list(range(40))
    sender.close()
    assert len(list(spool.glob("*.ndjson"))) == 1  # the one written to last
    assert Spool(str(spool)).waiting_bytes == 0


def test_one_process_at_a_time_on_a_spool(tmp_path):
    first = Spool(str(tmp_path / "spool"))
    with pytest.raises(DetectorError, match=r"another egress-detector is using this spool"):
        Spool(str(tmp_path / "spool"))
    first.close()
    Spool(str(tmp_path / "spool")).close()
    assert oct((tmp_path / "spool").stat().st_mode & 0o777) == "0o700"


def test_https_with_the_servers_certificate_checked(tmp_path):
    ca = make_ca(tmp_path, "Hook CA")
    server = issue(ca, tmp_path, "receiver", names=("localhost",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert, server.key)
    secure = Receiver(context=context)
    said: list[str] = []
    try:
        sender = open_webhook(secure.url, str(tmp_path / "s1"), say=said.append,
                              **{**FAST, "close_seconds": 0.5})  # fmt: skip
        sender.send(*alert(0))  # the system store does not know the test CA
        sender.close()
        assert secure.numbers() == []
        assert "the server's certificate is refused: unable to get local issuer certificate" in said[0]
        trusting = ssl.create_default_context(cafile=str(ca.cert))
        sender = open_webhook(secure.url, str(tmp_path / "s1"), context=trusting, **FAST)
        sender.send(*alert(1))
        sender.close()
        assert secure.wait_for(2) == [0, 1]
    finally:
        secure.stop()


def test_the_token_comes_from_a_file_and_urls_are_checked(tmp_path, capsys):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    path.chmod(0o600)
    assert read_token(str(path)) == TOKEN and capsys.readouterr().err == ""
    path.chmod(0o644)
    assert read_token(str(path)) == TOKEN
    assert capsys.readouterr().err == (f"egress-detector: warning: --webhook-token-file {path}: "
                                       "others can read it (chmod 600)\n")  # fmt: skip
    path.write_text("two words\n")
    with pytest.raises(DetectorError, match="a token is one word") as bad:
        read_token(str(path))
    assert "two" not in str(bad.value)
    path.write_text("\n")
    with pytest.raises(DetectorError, match="the file is empty"):
        read_token(str(path))
    with pytest.raises(DetectorError, match="cannot read it: No such file"):
        read_token(str(tmp_path / "absent"))
    path.write_bytes(b"x" * (65 << 10))  # not read whole: a token is a few hundred bytes
    with pytest.raises(DetectorError, match="over 64 KiB: not a token"):
        read_token(str(path))
    path.write_bytes(b"\xcc\xcd")
    with pytest.raises(DetectorError, match="cannot read it: not UTF-8 text"):
        read_token(str(path))
    spool = Spool(str(tmp_path / "spool"))
    for url, why in [("ftp://host/x", "give an http:// or https:// URL"),
                     ("https://user:pw@host/x", "no user or password in the URL"),
                     ("http://host:port/x", "the port must be a number"),
                     ("http://[::1/x?key=pw", r"not a URL \(Invalid IPv6 URL\)")]:  # fmt: skip
        with pytest.raises(DetectorError, match=why) as refused:
            WebhookSender(url, spool)
        assert "pw" not in str(refused.value)
    spool.close()


def test_a_batch_too_large_for_the_receiver_is_sent_in_halves(receiver, tmp_path):
    receiver.mode = "fail"
    sender = open_webhook(receiver.url, str(tmp_path / "spool"), **FAST)
    sender.send_all([alert(i) for i in range(11)])
    receiver.wait_attempts("fail", 1)
    receiver.mode = "small"  # 413 Payload Too Large for more than two
    assert receiver.wait_for(11) == list(range(11))
    sender.close()
    sizes = [body.count(b"\n") for m, _, body in receiver.attempts if m == "small"]
    assert sizes[:3] == [11, 5, 2] and max(sizes[3:]) <= 2, sizes  # halved, and it stays so


def test_a_full_disk_leaves_no_part_of_a_line(tmp_path, monkeypatch):
    spool = Spool(str(tmp_path / "spool"))
    spool.append([b'{"n": 0}\n'])
    real_write = os.write

    def half_then_full(fd: int, data) -> int:
        real_write(fd, bytes(data[:3]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_mod.os, "write", half_then_full)
    with pytest.raises(OSError):
        spool.append([b'{"n": 1}\n'])
    monkeypatch.setattr(spool_mod.os, "write", real_write)
    spool.append([b'{"n": 2}\n'])
    batch = spool.next_batch(1 << 20)
    assert batch is not None and batch.body == b'{"n": 0}\n{"n": 2}\n'
    spool.close()
