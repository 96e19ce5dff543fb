"""Alerts that arrive: syslog over TCP and TLS, and the pieces the webhook
shares with it (backoff, a fan-out to several senders, TLS contexts).

Syslog over TCP (RFC 6587, octet counting: ``MSG-LEN SP SYSLOG-MSG``) and over
TLS (RFC 5425, the same framing) is written by :class:`SyslogConnection`: a
sender thread takes messages from a bounded queue. The capture loop only puts
a message in the queue (never waits on the network): a collector that stalls
fills its TCP window and a connect to a host that is down takes seconds, and
a timeout alone would make the capture wait that long for every alert. The
thread reconnects with exponential backoff and sends the message it was
sending again on the new connection; a queue that fills (the collector away
for long) drops new messages, said in one line, and how many once it is back.

What a peer that closed the connection was sent last may be lost (TCP syslog
has no acknowledgement): before each message the thread checks whether the
collector has closed its side, which catches a restarted collector before a
message is written into the void. For delivery that survives a collector
down for hours, or a restart of the sensor, use the webhook (its spool).
"""

from __future__ import annotations

import collections
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DetectorError
from .record import Alert
from .sending import AlertSender, warn

QUEUE_MESSAGES = 10_000  # about 20 MB of typical alerts; at most 80 MB
CONNECT_SECONDS = 5.0
SEND_SECONDS = 10.0
CLOSE_SECONDS = 10.0  # at exit: how long to go on sending what is queued
QUIET_SECONDS = 60.0  # a connection lost again within this long is not said again


class Backoff:
    """Exponential backoff: ``first``, twice that, … up to ``most`` seconds,
    each wait with up to 10 % less at random (sensors that lost the same
    collector do not all come back in the same second)."""

    def __init__(self, first: float = 0.5, most: float = 60.0) -> None:
        self.first = first
        self.most = most
        self.failures = 0

    def next(self) -> float:
        delay = min(self.most, self.first * 2 ** min(self.failures, 30))
        self.failures += 1
        return delay * (1 - 0.1 * random.random())

    def reset(self) -> None:
        self.failures = 0


def tls_context(option: str, ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate against ``ca``
    (a PEM file) or the system's store and checks its name; with ``cert``
    (and ``key``, unless the certificate file holds it) the client's own."""
    if key and not cert:
        raise DetectorError(f"{option}-key: give the client certificate with {option}-cert")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise DetectorError(f"{option}-ca {ca}: cannot load the CA certificates: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            what = f"{cert} and {key}" if key else cert
            raise DetectorError(
                f"{option}-cert: cannot load the client certificate {what}: {exc}"
            ) from None
    return context


def refused_certificate(target: str, exc: ssl.SSLError, ca: str | None) -> str:
    """One line: why the server's certificate was not accepted."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        store = f"the CA in {ca}" if ca else "the system's CA store"
        return f"{target}: the server's certificate is refused: {why} (checked against {store})"
    return f"{target}: the TLS handshake failed: {exc.reason or exc}"


class SyslogConnection:
    """Octet-counted syslog messages to ``host:port`` over TCP, or TLS when
    ``tls`` (see the module's description). The first connection is made at
    once: a certificate the CA does not vouch for, or a name it is not for, is
    a :class:`DetectorError` (one line); a collector that cannot be reached is
    a warning, and the thread keeps trying."""

    def __init__(
        self,
        target: str,
        host: str,
        port: int,
        *,
        tls: bool = False,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        queue_messages: int = QUEUE_MESSAGES,
        connect_seconds: float = CONNECT_SECONDS,
        send_seconds: float = SEND_SECONDS,
        close_seconds: float = CLOSE_SECONDS,
        backoff: Backoff | None = None,
        say: Callable[[str], None] = warn,
    ) -> None:
        self.target = target
        self.label = f"syslog {target}"
        self.host = host
        self.port = port
        self.ca = ca
        self.context = tls_context("--syslog", ca, cert, key) if tls else None
        self.connect_seconds = connect_seconds
        self.send_seconds = send_seconds
        self.close_seconds = close_seconds
        self.backoff = backoff or Backoff()
        self.say = say
        self.capacity = queue_messages
        self.queue: collections.deque[bytes] = collections.deque()
        self.ready = threading.Condition()
        self.closing = False
        self.deadline = float("inf")
        self.dropped = 0  # while the queue is full; said when it has room again
        self.down = False  # said once per outage
        self.sent = 0
        self.last_lost = -QUIET_SECONDS
        self.sock: socket.socket | None = None
        try:
            self.sock = self._connect()
        except ssl.SSLError as exc:  # includes SSLCertVerificationError
            raise DetectorError("--" + refused_certificate(f"syslog {target}", exc, ca)) from None
        except OSError as exc:
            self.down = True
            self.say(
                f"{self.label}: cannot connect ({_reason(exc)}); alerts wait (up to "
                f"{queue_messages:,}) and are sent once it answers"
            )
        self.thread = threading.Thread(target=self._run, name="syslog-sender", daemon=True)
        self.thread.start()

    def put(self, message: bytes) -> None:
        """Queue one RFC 5424 message (framed here); never waits."""
        frame = b"%d " % len(message) + message
        with self.ready:
            if len(self.queue) >= self.capacity:
                if not self.dropped:
                    self.say(
                        f"{self.label}: {self.capacity:,} messages wait already; new alerts "
                        "are not sent to syslog until the collector takes them"
                    )
                self.dropped += 1
                return
            self.queue.append(frame)
            self.ready.notify()

    def close(self) -> None:
        """Send what is queued (for up to ``close_seconds``), then disconnect;
        one line says how many messages were not sent."""
        with self.ready:
            self.closing = True
            self.deadline = time.monotonic() + self.close_seconds
            self.ready.notify()
        self.thread.join(self.close_seconds + self.send_seconds + 1)
        with self.ready:
            left = len(self.queue)
            self.queue.clear()
        if left:
            self.say(
                f"{self.label}: {left} alert(s) not sent: the collector did not take them "
                f"within {self.close_seconds:g} s of the end"
            )
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # The sender thread.

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_seconds)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.send_seconds)
        except BaseException:
            sock.close()
            raise
        return sock

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.queue and not self.closing:
                    self.ready.wait()
                if not self.queue or time.monotonic() >= self.deadline:
                    return
                frame = self.queue[0]
            closed = self.sock is None or _peer_closed(self.sock, self.send_seconds)
            if closed and not self._reconnect():
                continue
            assert self.sock is not None
            try:
                self.sock.sendall(frame)
            except OSError as exc:  # the message is sent again on the next connection
                self._lost(f"connection lost ({_reason(exc)})")
                continue
            self.sent += 1
            with self.ready:
                self.queue.popleft()
                if self.dropped and len(self.queue) < self.capacity // 2:
                    self.say(
                        f"{self.label}: sending again; {self.dropped} alert(s) were not "
                        "sent while the queue was full"
                    )
                    self.dropped = 0

    def _reconnect(self) -> bool:
        if self.sock is not None:
            self._lost("the collector closed the connection")
        try:
            self.sock = self._connect()
        except (OSError, ssl.SSLError) as exc:
            if not self.down:
                why = (
                    refused_certificate(self.label, exc, self.ca)
                    if isinstance(exc, ssl.SSLError)
                    else f"{self.label}: cannot connect ({_reason(exc)})"
                )
                self.say(f"{why}; trying again with backoff, alerts wait")
                self.down = True
            self._pause(self.backoff.next())
            return False
        if self.down:
            with self.ready:
                waiting = len(self.queue)
            self.say(f"{self.label}: connected again; sending {waiting} waiting alert(s)")
            self.down = False
        self.backoff.reset()
        return True

    def _lost(self, why: str) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        now = time.monotonic()
        if not self.down and now - self.last_lost >= QUIET_SECONDS:  # not every few seconds
            self.say(f"{self.label}: {why}; reconnecting")
            self.last_lost = now

    def _pause(self, seconds: float) -> None:
        pause(self, seconds)


def pause(sender: Any, seconds: float) -> None:
    """A sender thread's wait before trying again (``sender``: its ``ready``
    condition, ``closing`` and ``deadline``). New alerts do not cut it short;
    close() does (one more try at once), and then no wait outlasts the
    deadline."""
    end = time.monotonic() + seconds
    with sender.ready:
        was_closing = sender.closing
        while True:
            if sender.closing and not was_closing:
                return
            left = (min(end, sender.deadline) if sender.closing else end) - time.monotonic()
            if left <= 0:
                return
            sender.ready.wait(left)


def _peer_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the collector has closed its side (a syslog collector never
    writes to the sender: readable means closed, or TLS housekeeping such as a
    TLS 1.3 session ticket, which a read consumes)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        if sock.fileno() >= 0:
            sock.settimeout(timeout)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class Deliveries:
    """Several senders as one (syslog and a webhook): each gets every alert."""

    def __init__(self, senders: Sequence[AlertSender]) -> None:
        self.senders = list(senders)

    @classmethod
    def of(cls, *senders: AlertSender | None) -> AlertSender | None:
        """The senders given (None: not asked for) as one, or None for none."""
        present = [s for s in senders if s is not None]
        if not present:
            return None
        return present[0] if len(present) == 1 else cls(present)

    def send(self, alert: Alert, doc: dict[str, Any]) -> None:
        for sender in self.senders:
            sender.send(alert, doc)

    def send_all(self, pairs: Sequence[tuple[Alert, dict[str, Any]]]) -> None:
        for sender in self.senders:
            sender.send_all(pairs)

    def close(self) -> None:
        problem: BaseException | None = None
        for sender in self.senders:
            try:
                sender.close()
            except Exception as exc:  # close the others all the same
                problem = problem or exc
        if problem is not None:
            raise problem
