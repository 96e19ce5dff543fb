"""Running for months under a service manager: the systemd notify protocol,
its watchdog, and the status line that shows in the journal.

The notify protocol (sd_notify(3)) is one datagram of ``KEY=VALUE`` lines to
the Unix socket named by ``$NOTIFY_SOCKET`` (a name starting with ``@`` is in
the abstract namespace: a NUL byte in its place). systemd sets it for a unit of
``Type=notify``; without it every call here does nothing, so a sensor started
by hand behaves as before. No library is needed for a datagram.

* ``READY=1`` once the capture ring (or stream) is open: ``systemctl start``
  returns then, and units ordered after this one start.
* ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` (the unit's ``WatchdogSec=``),
  sent only while the capture loop and every capture worker go round: a worker
  stuck in a kernel or a main loop that stopped leaves the watchdog unfed, and
  systemd restarts the sensor (``Restart=on-failure``).
* ``STATUS=...`` one line ``systemctl status`` shows.
* ``STOPPING=1`` when a signal asks the sensor to stop (it still flushes).

>>> notifier = Notifier.from_environment()          # does nothing outside systemd
>>> notifier.send("READY=1", "STATUS=capturing on eth1")
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"


class Notifier:
    """Datagrams to the service manager's notify socket (``address``: a path,
    or ``@name`` for the abstract namespace); ``address=None``: do nothing."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._sock: socket.socket | None = None
        self.problem: str | None = None  # the first send that failed, said once by the caller
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)  # never wait on the service manager

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=VALUE`` each) as one message; False when not
        sent (no socket, or it failed: the sensor goes on capturing)."""
        if self._sock is None or self.address is None or not fields:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8", "replace"), target)
        except OSError as exc:
            if self.problem is None:
                self.problem = f"NOTIFY_SOCKET {self.address}: {exc.strerror or exc}"
            return False
        return True

    def status(self, text: str) -> bool:
        # One line: the protocol's lines are its fields.
        return self.send("STATUS=" + " ".join(text.split()))

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` messages: half of ``$WATCHDOG_USEC``
    (sd_watchdog_enabled(3)), or None when no watchdog is asked for, or it is
    asked of another process (``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return usec / 2 / 1_000_000


class Watchdog:
    """Feeds the service manager's watchdog every ``interval`` seconds, but
    only while the capture is alive (:meth:`feed` is told so)."""

    def __init__(self, notifier: Notifier, interval: float | None) -> None:
        self.notifier = notifier
        self.interval = interval
        self._next = 0.0
        self.sent = 0

    @classmethod
    def from_environment(cls, notifier: Notifier) -> Watchdog:
        return cls(notifier, watchdog_interval() if notifier.enabled else None)

    def capture_alive(self, silence: float) -> bool:
        """Whether capture is going round: every worker went round its loop
        within the last ``silence`` seconds, less than an interval ago."""
        return self.interval is None or silence < self.interval

    def feed(self, alive: bool, now: float | None = None) -> bool:
        """Send ``WATCHDOG=1`` when one is due and the capture is ``alive``."""
        if self.interval is None or not alive:
            return False
        now = time.monotonic() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval
        sent = self.notifier.send(WATCHDOG)
        self.sent += sent
        return sent


def rss_bytes() -> int:
    """The process's resident memory now (Linux ``/proc/self/statm``), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


@dataclass(frozen=True)
class SensorFigures:
    """What a status line says: totals since the sensor started."""

    packets: int
    dropped: int
    open_flows: int
    alerts: int
    rss_bytes: int


def status_line(figures: SensorFigures) -> str:
    """``12,345 packets, 0 dropped, 17 open flows, 2 alerts, RSS 231 MiB``"""
    return (
        f"{figures.packets:,} packets, {figures.dropped:,} dropped, "
        f"{figures.open_flows:,} open flows, {figures.alerts:,} alerts, "
        f"RSS {figures.rss_bytes / (1 << 20):,.0f} MiB"
    )


class StatusEvery:
    """Says when the next periodic status line is due: every ``seconds``
    (None or 0: never), counted from ``start``."""

    def __init__(self, seconds: float | None, start: float | None = None) -> None:
        self.seconds = seconds or None
        self._next = (time.monotonic() if start is None else start) + (self.seconds or 0)

    def due(self, now: float | None = None) -> bool:
        if self.seconds is None:
            return False
        now = time.monotonic() if now is None else now
        if now < self._next:
            return False
        while self._next <= now:  # a long analysis skips lines, it does not bunch them
            self._next += self.seconds
        return True
