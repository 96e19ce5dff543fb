"""Alerts POSTed to a webhook, through an on-disk spool.

Each alert is first appended to the spool (:mod:`detector.alerts.spool`,
synced to disk), then a sender thread POSTs what the spool holds, oldest
first: the body is ECS JSON alerts, one a line (``Content-Type:
application/x-ndjson``), with ``Authorization: Bearer TOKEN`` when a token
file is given and ``Idempotency-Key`` (the same for a batch sent again). Any
2xx answer delivers the batch; 413 (too large) halves it, and the batches
after it; anything else (an error status, a redirect, a refused connection,
no answer within the timeout) is tried again with exponential backoff, up to
5 minutes apart, while new alerts queue behind it on disk. At the end of a
run the sender goes on for a few seconds; what is still undelivered waits in
the spool, and the next process with that spool sends it first. The capture
loop only waits for the append (a write and an fsync), never for the receiver.

The token is read from a file (never the command line, where ``ps`` shows it)
and is never written anywhere; a URL with a password in it is refused, and
messages name the URL without its query (which may hold a key).
"""

from __future__ import annotations

import http.client
import os
import ssl
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..errors import DetectorError
from .delivery import Backoff, _reason, pause
from .mask import json_text, printable
from .record import Alert
from .sending import warn
from .spool import MAX_BYTES, Batch, Spool

TIMEOUT_SECONDS = 10.0
CLOSE_SECONDS = 10.0
BATCH_BYTES = 1 << 20


# A bearer token is a few hundred bytes; a file this long is not one.
TOKEN_FILE_BYTES = 64 << 10


def read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding white space ignored)."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read(TOKEN_FILE_BYTES + 1)
        if len(data) > TOKEN_FILE_BYTES:
            raise DetectorError(
                f"--webhook-token-file {path}: over {TOKEN_FILE_BYTES >> 10} KiB: not a token "
                "(give a file holding the token alone)"
            )
        token = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise DetectorError(f"--webhook-token-file {path}: cannot read it: {why}") from None
    if not token:
        raise DetectorError(f"--webhook-token-file {path}: the file is empty")
    if not all("!" <= c <= "~" for c in token):
        raise DetectorError(
            f"--webhook-token-file {path}: a token is one word of printable ASCII (no spaces "
            "or line breaks inside)"
        )
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"--webhook-token-file {path}: others can read it (chmod 600)")
    return token


def default_spool(state: str) -> str:
    """The nightly's spool: beside its state file."""
    return state + ".webhook-spool"


class WebhookSender:
    """POSTs alerts to ``url`` from the spool (see the module's description)."""

    def __init__(
        self,
        url: str,
        spool: Spool,
        *,
        token: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
        close_seconds: float = CLOSE_SECONDS,
        batch_bytes: int = BATCH_BYTES,
        backoff: Backoff | None = None,
        context: ssl.SSLContext | None = None,
        say: Callable[[str], None] = warn,
    ) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError as exc:  # "Invalid IPv6 URL" and the like
            raise DetectorError(
                f"--webhook {_shown(url)}: not a URL ({exc}); give an http:// or https:// URL"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DetectorError(f"--webhook {_shown(url)}: give an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise DetectorError(
                f"--webhook {_shown(url)}: no user or password in the URL; give a bearer token "
                "with --webhook-token-file"
            )
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise DetectorError(f"--webhook {_shown(url)}: the port must be a number") from None
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.label = f"webhook {_shown(url)}"
        self.spool = spool
        self.token = token
        self.timeout = timeout
        self.close_seconds = close_seconds
        self.batch_bytes = batch_bytes
        self.backoff = backoff or Backoff(1.0, 300.0)
        self.context = context or (ssl.create_default_context() if self.https else None)
        self.say = say
        self.conn: http.client.HTTPConnection | None = None
        self.ready = threading.Condition()
        self.new = False
        self.closing = False
        self.deadline = float("inf")
        self.down = False
        self.delivered = 0  # alerts
        waiting = spool.waiting_bytes
        if waiting:
            self.say(
                f"{self.label}: {spool.waiting_lines()} alert(s) from an earlier run wait in "
                f"the spool {spool.directory}: sending them first"
            )
        self.thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self.thread.start()

    def send(self, alert: Alert, doc: dict[str, Any]) -> None:
        self.send_all([(alert, doc)])

    def send_all(self, pairs: Sequence[tuple[Alert, dict[str, Any]]]) -> None:
        """Append the alerts to the spool (synced to disk) for the sender."""
        lines = [json_text(doc).encode() + b"\n" for _, doc in pairs]
        was_full = self.spool.full
        try:
            taken = self.spool.append(lines)
        except OSError as exc:
            self.say(
                f"{self.label}: cannot write the spool {self.spool.directory} "
                f"({exc.strerror}): {len(lines)} alert(s) not sent"
            )
            return
        if taken < len(lines) and not was_full:
            self.say(
                f"{self.label}: the spool {self.spool.directory} is full "
                f"({self.spool.max_bytes / 2**20:g} MiB of alerts the receiver has not "
                "taken): new alerts are not kept for the webhook until it takes some"
            )
        with self.ready:
            self.new = True
            self.ready.notify()

    def close(self) -> None:
        """Go on delivering for up to ``close_seconds``; what is left stays in
        the spool for the next run (said in one line)."""
        with self.ready:
            self.closing = True
            self.deadline = time.monotonic() + self.close_seconds
            self.ready.notify()
        self.thread.join(self.close_seconds + self.timeout + 1)
        if self.thread.is_alive():
            return  # a request still under way: the process ends, the spool keeps the batch
        if self.conn is not None:
            self.conn.close()
        left = self.spool.waiting_lines()
        if left:
            self.say(
                f"{self.label}: {left} alert(s) not delivered yet wait in the spool "
                f"{self.spool.directory}: the next run with it sends them first"
            )
        self.spool.close()

    # The sender thread.

    def _run(self) -> None:
        while True:
            try:
                self._deliver()
                return
            except OSError as exc:  # the spool's disk: say so, and try again later
                self.say(
                    f"{self.label}: cannot read the spool {self.spool.directory} "
                    f"({exc.strerror or exc}); trying again with backoff"
                )
                self._pause(self.backoff.next())
                if self.closing and time.monotonic() >= self.deadline:
                    return

    def _deliver(self) -> None:
        while True:
            batch = self.spool.next_batch(self.batch_bytes)
            with self.ready:
                if batch is None:
                    if self.closing:
                        return
                    if not self.new:
                        self.ready.wait()
                    self.new = False
                    continue
                if self.closing and time.monotonic() >= self.deadline:
                    return
            problem = self._post(batch)
            if problem is not None and problem.startswith("HTTP 413") and self.spool.split(batch):
                # Too large for the receiver: half as many alerts, now and from now on.
                self.batch_bytes = min(self.batch_bytes, len(batch.body) // 2)
                continue
            if problem is None:
                self.spool.delivered(batch)
                self.delivered += batch.lines
                self.backoff.reset()
                if self.down:
                    self.say(f"{self.label}: the receiver takes alerts again")
                    self.down = False
                if refused := self.spool.room_again():
                    self.say(
                        f"{self.label}: the spool has room again; {refused} alert(s) "
                        "were not kept while it was full"
                    )
                continue
            if not self.down:
                self.say(
                    f"{self.label}: {problem}; alerts wait in the spool "
                    f"{self.spool.directory} and are sent again with backoff"
                )
                self.down = True
            self._pause(self.backoff.next())

    def _post(self, batch: Batch) -> str | None:
        """POST one batch: None when the receiver took it, else why not."""
        headers = {
            "Content-Type": "application/x-ndjson",
            "User-Agent": f"egress-detector/{__version__}",
            "Idempotency-Key": batch.key,
        }
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            if self.conn is None:
                if self.https:
                    self.conn = http.client.HTTPSConnection(
                        self.host, self.port, timeout=self.timeout, context=self.context
                    )
                else:
                    self.conn = http.client.HTTPConnection(
                        self.host, self.port, timeout=self.timeout
                    )
            self.conn.request("POST", self.path, body=batch.body, headers=headers)
            response = self.conn.getresponse()
            response.read()
            if response.will_close:
                self._disconnect()
        except ssl.SSLCertVerificationError as exc:
            self._disconnect()
            return f"the server's certificate is refused: {exc.verify_message or exc.reason}"
        except (OSError, http.client.HTTPException) as exc:
            self._disconnect()
            return f"no answer ({_reason(exc)})"
        if 200 <= response.status < 300:
            return None
        self._disconnect()
        hint = " (check the token)" if response.status in (401, 403) else ""
        if 300 <= response.status < 400:
            hint = " (redirects are not followed: give the final URL)"
        return f"HTTP {response.status} {response.reason}{hint}"

    def _disconnect(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _pause(self, seconds: float) -> None:
        pause(self, seconds)


def open_webhook(
    url: str,
    spool_dir: str,
    *,
    token: str | None = None,
    max_bytes: int = MAX_BYTES,
    **options: Any,
) -> WebhookSender:
    """A webhook sender on the spool in ``spool_dir`` (made if missing)."""
    spool = Spool(spool_dir, max_bytes=max_bytes)
    try:
        return WebhookSender(url, spool, token=token, **options)
    except BaseException:
        spool.close()
        raise


def _shown(url: str) -> str:
    """``url`` as messages name it: no query (it may hold a key), no password."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # not a URL: its first part, printable, up to a query or a user
        cut = min((url.find(c) for c in "?@" if c in url), default=len(url))
        return printable(url[:cut][:200])
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"
