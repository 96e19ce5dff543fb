"""What the live sensor sees now: ``live --status HOST:PORT``.

A small web server in the sensor's own process, for the administrator's
browser and the site's monitoring:

* ``/`` — one HTML page: packets per second, packets, drops, open flows, the
  hosts sending most to the outside in the last analysis, and the last
  alerts. It refreshes itself every few seconds with ``<meta http-equiv=
  refresh>``: no script runs, nothing is loaded from elsewhere (the
  Content-Security-Policy header forbids it), so the page works on an
  isolated network and cannot be turned against the browser.
* ``/metrics`` — the same counters in the Prometheus text format, written by
  ``prometheus_client`` (the format's own library: escaping, types and HELP
  lines as every scraper expects).

Only what the sensor already writes in its alerts is shown (addresses and
byte counts, alert text masked as in every output); bind it to loopback
(the default suggestion, ``127.0.0.1:9090``) unless the site's monitoring
must reach it, and then behind the site's own access rules.
"""

from __future__ import annotations

import base64
import hashlib
import html
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .alerts.record import SEVERITY_NAMES, Alert
from .errors import DetectorError
from .units import human_bytes

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

REFRESH_SECONDS = 5
LAST_ALERTS = 20
TOP_TALKERS = 10
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#111;background:#fff}
h1{font-size:1.3em;margin:0 0 .2em}p.where{color:#555;margin:0 0 1em}
table{border-collapse:collapse;margin:.4em 0 1.4em}
td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.critical{color:#a00;font-weight:bold}.high{color:#c40}.medium{color:#850}.low{color:#555}
dl.now{display:grid;grid-template-columns:max-content max-content;gap:.2em 1.2em}
dt{color:#555}dd{margin:0;font-variant-numeric:tabular-nums;font-weight:bold}
"""
# Nothing but this one style sheet may apply (by its hash): no script, no
# image, no font, no frame, from anywhere.
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Talker:
    """An internal host's traffic to the outside in the last analysis."""

    host: str
    bytes_out: int
    destinations: int


@dataclass(frozen=True)
class Counters:
    """The sensor's counters at one moment."""

    packets: int = 0
    packets_per_second: float = 0.0
    dropped: int = 0
    open_flows: int = 0
    alerts: int = 0


class StatusBoard:
    """What ``/`` and ``/metrics`` show, updated by the live engine's threads
    (every call takes the lock; readers get a consistent copy)."""

    def __init__(self, sensor: str, interface: str, zone: ZoneInfo) -> None:
        self.sensor = sensor
        self.interface = interface
        self.zone = zone
        self.started = time.time()
        self._lock = threading.Lock()
        self._counters = Counters()
        self._alerts: deque[Alert] = deque(maxlen=LAST_ALERTS)
        self._by_rule: dict[str, int] = {}
        self._talkers: tuple[Talker, ...] = ()
        self._analysed: float | None = None

    # -- updates (engine threads) --------------------------------------------------
    def count(self, counters: Counters) -> None:
        with self._lock:
            self._counters = counters

    def alerted(self, alerts: Iterable[Alert]) -> None:
        """Alerts as written (raised or updated: each document counts once in
        ``alerts_written``; the list shows the newest)."""
        with self._lock:
            for alert in alerts:
                self._alerts.appendleft(alert)
                self._by_rule[alert.rule_id] = self._by_rule.get(alert.rule_id, 0) + 1

    def analysed(self, talkers: Sequence[Talker]) -> None:
        with self._lock:
            self._talkers = tuple(talkers[:TOP_TALKERS])
            self._analysed = time.time()

    def view(
        self,
    ) -> tuple[Counters, list[Alert], dict[str, int], tuple[Talker, ...], float | None]:
        with self._lock:
            return (self._counters, list(self._alerts), dict(self._by_rule), self._talkers,
                    self._analysed)  # fmt: skip

    # -- outputs -------------------------------------------------------------------
    def page(self) -> bytes:
        """The HTML page (module docstring)."""
        counters, alerts, _, talkers, analysed = self.view()
        e = html.escape
        when = self._local(time.time())
        rows = [
            ("packets per second", f"{counters.packets_per_second:,.0f}"),
            ("packets", f"{counters.packets:,}"),
            ("dropped by the kernel", f"{counters.dropped:,}"),
            ("open flows", f"{counters.open_flows:,}"),
            ("alerts written", f"{counters.alerts:,}"),
        ]
        now = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
        if talkers:
            talk = "".join(
                f"<tr><td>{e(t.host)}</td><td class=n>{e(human_bytes(t.bytes_out))}</td>"
                f"<td class=n>{t.destinations:,}</td></tr>"
                for t in talkers
            )
            talk = (
                "<table><tr><th>host</th><th class=n>sent outside</th>"
                f"<th class=n>outside addresses</th></tr>{talk}</table>"
            )
        else:
            talk = "<p>No traffic to the outside analysed yet.</p>"
        if analysed is not None:
            talk += f"<p class=where>as of the analysis at {e(self._local(analysed))}</p>"
        if alerts:
            lines = []
            for a in alerts:
                severity = SEVERITY_NAMES.get(a.severity, str(a.severity))
                other = a.destination_ip or ""
                if other and a.destination_port is not None:
                    other = f"{other}:{a.destination_port}"
                lines.append(
                    f"<tr><td class={e(severity)}>{e(severity.upper())}</td>"
                    f"<td>{e(a.rule_id)}</td><td>{e(self._local(a.start_ns / 1e9))}</td>"
                    f"<td>{e(a.source_ip)}</td><td>{e(other)}</td><td>{e(a.message)}</td></tr>"
                )
            last = (
                "<table><tr><th>severity</th><th>rule</th><th>from (local)</th><th>host</th>"
                f"<th>other side</th><th>what</th></tr>{''.join(lines)}</table>"
            )
        else:
            last = "<p>No alerts since the sensor started.</p>"
        title = f"egress-detector on {self.sensor}"
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
            f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{e(title)}</h1><p class=where>interface {e(self.interface)}; "
            f"{e(when)} (refreshes every {REFRESH_SECONDS} s)</p>"
            f"<h2>Now</h2><dl class=now>{now}</dl>"
            f"<h2>Sending most to the outside</h2>{talk}"
            f"<h2>Last alerts</h2>{last}</body></html>"
        ).encode()

    def _local(self, seconds: float) -> str:
        return datetime.fromtimestamp(seconds, self.zone).strftime("%Y-%m-%d %H:%M:%S %Z")

    def collector(self) -> Collector:
        """A prometheus_client collector reading this board at scrape time."""
        return _BoardCollector(self)


class _BoardCollector:
    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters, _, by_rule, _, _ = self.board.view()
        labels = ["sensor", "interface"]
        who = [self.board.sensor, self.board.interface]
        packets = CounterMetricFamily(
            "egress_detector_packets", "Packets counted since the sensor started", labels=labels
        )
        packets.add_metric(who, counters.packets)
        yield packets
        dropped = CounterMetricFamily(
            "egress_detector_dropped_packets",
            "Packets the kernel dropped (the capture ring was full)",
            labels=labels,
        )
        dropped.add_metric(who, counters.dropped)
        yield dropped
        rate = GaugeMetricFamily(
            "egress_detector_packets_per_second", "Packets per second, last second", labels=labels
        )
        rate.add_metric(who, counters.packets_per_second)
        yield rate
        flows = GaugeMetricFamily("egress_detector_open_flows", "Flows open now", labels=labels)
        flows.add_metric(who, counters.open_flows)
        yield flows
        written = CounterMetricFamily(
            "egress_detector_alerts",
            "Alert documents written (raised or updated), by rule",
            labels=[*labels, "rule"],
        )
        for rule, n in sorted(by_rule.items()):
            written.add_metric([*who, rule], n)
        yield written
        up = GaugeMetricFamily(
            "egress_detector_start_time_seconds", "When the sensor started (Unix time)",
            labels=labels,
        )  # fmt: skip
        up.add_metric(who, self.board.started)
        yield up


class StatusServer:
    """``/`` and ``/metrics`` of a :class:`StatusBoard` on ``host:port``, served
    by a daemon thread until :meth:`close`."""

    def __init__(self, board: StatusBoard, address: str) -> None:
        from prometheus_client import CollectorRegistry

        host, port = parse_address(address)
        self.board = board
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(board.collector())  # type: ignore[arg-type]
        handler = _handler(self)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise DetectorError(
                f"--status {address}: cannot listen there ({exc.strerror or exc}); "
                "choose a free port on an address of this machine, e.g. 127.0.0.1:9090"
            ) from None
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="egress-detector-status", daemon=True
        )

    @property
    def url(self) -> str:
        """Where the page is, e.g. ``http://127.0.0.1:9090/``."""
        host, port = self.httpd.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{text}]:{port}/" if ":" in text else f"http://{text}:{port}/"

    def start(self) -> StatusServer:
        self.thread.start()
        return self

    def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); a one-line error else."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise DetectorError(
            f"--status {text!r}: expected HOST:PORT with a port 0-65535 (0: any free one), "
            "e.g. 127.0.0.1:9090"
        )
    return host, int(port)


def _handler(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "egress-detector"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, "text/html; charset=utf-8", server.board.page())
            elif path == "/metrics":
                from prometheus_client import exposition

                # The classic text format 0.0.4, which every Prometheus reads (newer
                # prometheus_client announces 1.0.0; the body is the same for our names).
                kind = getattr(
                    exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST
                )
                self._send(200, kind, server.metrics())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: / and /metrics\n")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # no access log on stderr: the journal is for the sensor's own lines

    return Handler


def talkers_of(traffic: Any, top: int = TOP_TALKERS) -> list[Talker]:
    """The hosts that sent most to outside addresses in ``traffic``
    (:class:`detector.features.hosts.HostTraffic`)."""
    frame = traffic.frame
    if not len(frame):
        return []
    out = frame[frame["peer_external"].to_numpy()]
    if not len(out):
        return []
    per_host = out.groupby("host_id", sort=False).agg(
        bytes_out=("bytes_out", "sum"), destinations=("peer_id", "nunique")
    )
    per_host = per_host[per_host["bytes_out"] > 0]
    per_host = per_host.sort_values("bytes_out", ascending=False, kind="stable").head(top)
    return [
        Talker(traffic.text(int(host)), int(row.bytes_out), int(row.destinations))
        for host, row in zip(per_host.index, per_host.itertuples(), strict=True)
    ]
