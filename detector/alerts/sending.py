"""What every way of sending alerts on shares (syslog in ``stream``, TCP and
TLS syslog in ``delivery``, the webhook in ``webhook``): the sender's interface
and the one warning line. Its own module, so none of them imports another."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .record import Alert


class AlertSender(Protocol):
    """Somewhere alerts are sent as they are raised (syslog, a webhook): each
    alert with its ECS document. ``send`` returns quickly (a collector that is
    slow or away must not hold up the capture); ``close`` delivers what it can
    and releases the connection."""

    def send(self, alert: Alert, doc: dict[str, Any]) -> None: ...

    def send_all(self, pairs: Sequence[tuple[Alert, dict[str, Any]]]) -> None: ...

    def close(self) -> None: ...


def warn(message: str) -> None:
    """One warning line on stderr, as the command line writes them."""
    print(f"egress-detector: warning: {message}", file=sys.stderr, flush=True)
