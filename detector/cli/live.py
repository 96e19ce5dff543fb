"""`egress-detector live`: arguments, signals, privileges and messages; the
work is in detector.capture.live and detector.pipelines.live."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import IO, Any, BinaryIO

from .arguments import (
    add_command,
    add_delivery,
    add_flow_timeouts,
    add_model_pin,
    add_quiet,
    delivery_problem,
    model_of,
    model_pin_alone,
    syslog_of,
    webhook_of,
    webhook_token,
)
from .console import ExitStatus, number, say, say_compiling, site_policy, whole

LIVE_EPILOG = """examples:
  egress-detector live -i eth1 --policy site.toml
      watch the mirror (SPAN) port eth1; alerts as a table on stdout as they happen
  egress-detector live -i eth1 --policy site.toml --workers 2 --format jsonl \\
      -o /var/log/egress/alerts.jsonl --syslog siem.example.net:514 --user nobody
      two capture workers (hash fanout), ECS JSON lines to a file and RFC 5424
      syslog over UDP; root only to open the socket
  egress-detector live -i eth1 --policy site.toml --syslog tls://siem.example.net \\
      --syslog-ca /etc/egress/siem-ca.pem --webhook https://hooks.example.net/egress \\
      --webhook-token-file /etc/egress/webhook.token --spool-dir /var/lib/egress/spool
      syslog over TLS (port 6514; the collector's certificate checked against the
      CA) and a webhook; alerts the webhook has not taken wait in the spool, also
      across a restart
  egress-detector live -i eth1 --bpf 'not port 22' --duration 3600 --flows-out hour.parquet
  egress-detector live -i eth1 --policy site.toml --jsonl /var/log/egress/alerts.jsonl
      a table on stdout for the person watching, JSON lines for the SIEM
  tcpdump -i eth1 -w - | egress-detector live -r - --policy site.toml
      a remote sensor's pcap stream on standard input (pcap or pcapng, gzip too)

alerts are raised at the end of every feature window (policy
features.window_minutes, aligned in local time; --report-every for another
period) and once more when capture stops, each alert once. Flows expire on the
clock, also when traffic stops. Every few seconds the kernel's drop counter is
read: drops raise sensor-drops, and drops outside business hours when the policy
has isolated networks raise sensor-blind (the sensor cannot vouch for that
time). SIGINT/SIGTERM: finish (flush flows, final alerts) and exit 0; SIGHUP:
reopen -o and --jsonl (after logrotate renamed them), then reload the policy
file and the --model file (one that fails to load, or with --model-sha256 has
another SHA-256, leaves the old one in place, said in one line). A bounded run
(--duration, --max-packets, the end of a stream) exits as scan does: 1 when
alerts were raised.

as a service (docs/systemd/egress-detector-live.service, docs/live.md): under
systemd's Type=notify it says READY once the ring is open and feeds the
watchdog while capture goes round; without a terminal a status line goes to
stderr (the journal) every --status-every minutes.

backends: ring (default): AF_PACKET TPACKET_V3 memory-mapped ring, decoded in
place, millions of packets/s. scapy: portable and SLOW (tens of thousands of
packets/s: each packet becomes a Python object), for platforms without
AF_PACKET rings; it drops what it cannot keep up with (counted on Linux).

"""


def add_live_parser(commands: Any, exit_codes_help: str) -> None:
    live = add_command(
        commands,
        "live",
        help="watch a mirror port (or a pcap stream) and raise alerts as they happen",
        description="Capture from a mirror (SPAN) port through an AF_PACKET ring, count "
        "flows and per-host traffic as packets arrive, and run the egress rules at the end "
        "of every window: alerts as they happen, the same as a scan of the same packets.",
        epilog=LIVE_EPILOG + exit_codes_help,
    )
    where = live.add_mutually_exclusive_group(required=True)
    where.add_argument("-i", "--interface", metavar="IFACE", help="the capture interface")
    where.add_argument(
        "-r",
        "--read",
        metavar="-",
        help="read a pcap/pcapng stream instead: - for standard input (or a FIFO's path)",
    )
    live.add_argument("--policy", metavar="FILE", help="the site policy (TOML, docs/policy.md)")
    live.add_argument(
        "--model",
        metavar="FILE",
        help="also score host windows with a model from `egress-detector train` (as scan does)",
    )
    add_model_pin(live)
    live.add_argument(
        "--bpf", metavar="EXPR", help="capture filter, pcap syntax (e.g. 'not port 22')"
    )
    live.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="capture workers (one socket each in a hash fanout group; both directions of "
        "a flow go to the same worker). Default: 1",
    )
    live.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after this long")
    live.add_argument(
        "--max-packets", type=_count, metavar="N", help="stop after this many packets"
    )
    live.add_argument(
        "--report-every",
        type=_seconds,
        metavar="SECONDS",
        help="analyse and raise alerts every SECONDS (default: at the end of each feature "
        "window of the policy)",
    )
    live.add_argument(
        "--format", choices=["table", "jsonl"], help="alert format (default: from -o, else table)"
    )
    live.add_argument(
        "-o", "--output", metavar="FILE", help="append alerts to FILE instead of stdout"
    )
    live.add_argument(
        "--jsonl",
        metavar="FILE",
        help="also append every alert to FILE as ECS JSON lines (with the table on stdout, say)",
    )
    add_delivery(
        live,
        alerts="alerts",
        spool_dir="with --webhook (needed): the directory where alerts wait until the receiver "
        "takes them; kept across restarts, sent first by the next run",
    )
    live.add_argument(
        "--flows-out",
        metavar="FILE",
        help="write every flow (closed on the clock or at the end) to FILE when capture "
        "stops: .parquet, .csv or .jsonl",
    )
    live.add_argument(
        "--backend", choices=["ring", "scapy"], default="ring", help="capture backend (see below)"
    )
    live.add_argument(
        "--block-size",
        type=_count,
        default=1 << 20,
        metavar="BYTES",
        help="ring block size, a power of two ≥ the page size (default: 1048576)",
    )
    live.add_argument(
        "--block-count",
        type=_count,
        default=64,
        metavar="N",
        help="ring blocks per worker (default: 64; memory is block size × count)",
    )
    live.add_argument(
        "--frame-size",
        type=_count,
        default=2048,
        metavar="BYTES",
        help="ring frame size, a multiple of 16 (default: 2048)",
    )
    live.add_argument(
        "--snaplen",
        type=int,
        default=0,
        metavar="BYTES",
        help="keep only the first BYTES of each packet in the ring (the filter program "
        "truncates in the kernel); lengths on the wire stay exact. Default: whole packets",
    )
    live.add_argument(
        "--history",
        type=_seconds,
        default=26.0,
        metavar="HOURS",
        help="per-minute traffic kept for the rules (default: 26; the longest rule look-back "
        "is a day); older minutes are dropped so memory stays bounded",
    )
    add_flow_timeouts(live, _seconds, when=", on the clock")
    live.add_argument(
        "--user",
        metavar="NAME",
        help="when run as root: switch to this user once the capture socket is open",
    )
    live.add_argument(
        "--status-every",
        type=_minutes,
        default=10.0,
        metavar="MINUTES",
        help="without a terminal (a service's journal), a status line on stderr every MINUTES: "
        "packets, drops, open flows, alerts and memory (default: 10; 0: none)",
    )
    live.add_argument(
        "--status",
        metavar="HOST:PORT",
        help="serve what the sensor sees on HOST:PORT (e.g. 127.0.0.1:9090): a page at / "
        "(packets/s, drops, open flows, top talkers to the outside, the last alerts; no "
        "scripts, nothing loaded from elsewhere) and Prometheus metrics at /metrics. It shows "
        "host addresses: keep it on loopback unless your monitoring must reach it",
    )
    add_quiet(live, "no status line or summary on stderr")


_seconds = number(float, "seconds", lambda v: v > 0, "be more than 0")
_count = number(whole, "a whole number", lambda v: v >= 1, "be at least 1")
_minutes = number(float, "minutes", lambda v: v >= 0, "be 0 or more")
# How long to wait for a stream's first bytes before compiling: tcpdump -w -
# writes its header at once (a stream that is no capture is said before the
# minute of compiling), a stream that says nothing yet is checked when it does.
STREAM_START_WAIT_S = 2.0


def _open_stream(path: str) -> BinaryIO:
    from ..errors import CaptureError

    try:
        return open(path, "rb")  # noqa: SIM115  (read until the run ends)
    except FileNotFoundError:
        raise CaptureError(f"-r {path}: no such file") from None
    except OSError as exc:
        raise CaptureError(f"-r {path}: cannot open: {exc.strerror}") from None


def _check_writable(path: str, option: str) -> None:
    """An output file that cannot be written is said before the kernels
    compile (a minute, maybe), not when the first alert comes."""
    from ..errors import DetectorError

    where = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DetectorError(f"{option} {path}: is a directory")
    if os.path.exists(path):
        writable = os.access(path, os.W_OK)
    else:
        writable = os.path.isdir(where) and os.access(where, os.W_OK | os.X_OK)
    if not writable:
        raise DetectorError(f"{option} {path}: cannot be written (does {where} exist, and may "
                            "this user write there?)")  # fmt: skip


def _drop_privileges(user: str) -> None:
    import pwd

    from ..errors import DetectorError

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise DetectorError(f"--user {user}: no such user") from None
    if os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def run_live(args: argparse.Namespace) -> int:
    import socket

    from ..alerts.delivery import Deliveries
    from ..alerts.record import Observer
    from ..alerts.stream import AlertStream
    from ..capture.live import (
        RingConfig,
        RingSource,
        ScapySource,
        StreamSource,
        check_capture_access,
        compile_bpf,
        interface_linktype,
    )
    from ..errors import DetectorError, PolicyError
    from ..flows.naming import FlowNames
    from ..flows.records import iter_flow_columns
    from ..flows.write import write_flows
    from ..outputs import replacing
    from ..pipelines.live import LiveDetector, LiveOptions, LiveStatus, warm_up
    from ..policy import load_policy
    from ..service import (
        READY,
        STOPPING,
        Notifier,
        SensorFigures,
        StatusEvery,
        Watchdog,
        rss_bytes,
    )
    from ..service import status_line as status_text
    from ..status import Counters, StatusBoard, StatusServer, talkers_of

    policy = site_policy(args.policy or None)
    if model_pin_alone(args) or delivery_problem(args, spool_needed=True):
        return ExitStatus.USAGE
    model = model_of(args, policy)
    fmt = args.format or ("jsonl" if args.output and args.output.endswith((".jsonl", ".json"))
                          else "table")  # fmt: skip
    flows_fmt = None
    if args.flows_out:
        flows_fmt = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}.get(
            os.path.splitext(args.flows_out)[1].lower()
        )
        if flows_fmt is None:
            say(f"--flows-out {args.flows_out}: use a .parquet, .csv or .jsonl file name")
            return ExitStatus.USAGE
    if args.read is not None and args.workers != 1:
        say("--workers: a stream (-r) is read by one worker")
        return ExitStatus.USAGE
    if args.backend == "scapy" and args.workers != 1:
        say("--workers: the scapy backend has one worker")
        return ExitStatus.USAGE
    config = RingConfig(
        block_size=args.block_size,
        block_count=args.block_count,
        frame_size=args.frame_size,
        snaplen=args.snaplen,
    )
    # Everything that can be checked is, before the kernels compile.
    for path, option in ((args.output, "-o"), (args.jsonl, "--jsonl"),
                         (args.flows_out, "--flows-out")):  # fmt: skip
        if path:
            _check_writable(path, option)
    if args.interface and args.backend == "ring":  # (scapy finds its own interfaces)
        config.check()
        compile_bpf(args.bpf, interface_linktype(args.interface))  # a bad filter: fail at once
        check_capture_access(args.interface)
    board = None
    status_server = None
    if args.status:  # the port is taken (or not) now, before the kernels compile
        board = StatusBoard(policy.sensor or socket.gethostname() or "sensor",
                            args.interface or ("standard input" if args.read == "-" else args.read
                                               or ""), policy.zone)  # fmt: skip
        status_server = StatusServer(board, args.status)
    notifier = Notifier.from_environment()
    # Collectors reached (a TLS certificate checked) and a token read before compiling too,
    # and before the stream: a configuration error (exit 2) comes before an input's (3).
    syslog = syslog_of(args)
    token = webhook_token(args)
    sources: list[Any] = []
    if args.read is not None:
        stream = sys.stdin.buffer if args.read == "-" else _open_stream(args.read)
        sources.append(StreamSource(stream))
        # Its first bytes (if they come at once): not a capture is said now.
        sources[0].check_start(STREAM_START_WAIT_S)
    notifier.status("starting: loading (or compiling) the packet kernels")
    say_compiling(75, quiet=args.quiet)
    warm_up(policy)

    try:
        if args.read is not None:
            where = "standard input" if args.read == "-" else args.read
        elif args.backend == "scapy":
            sources.append(ScapySource(args.interface, bpf=args.bpf))
            where = f"{args.interface} (scapy backend: slow)"
        else:
            group = os.getpid() & 0xFFFF if args.workers > 1 else None
            for _ in range(args.workers):
                sources.append(RingSource(args.interface, config, bpf=args.bpf,
                                          fanout_group=group))  # fmt: skip
            where = f"{args.interface} ({args.workers} worker{'s' if args.workers > 1 else ''})"
        out: IO[str] | None = (
            open(args.output, "a", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
        )
        also = open(args.jsonl, "a", encoding="utf-8") if args.jsonl else None  # noqa: SIM115
        if args.user:
            _drop_privileges(args.user)
        # The spool is the unprivileged user's: opened once privileges are dropped.
        webhook = webhook_of(args, token, args.spool_dir)
    except BaseException:
        for source in sources:
            source.close()
        if syslog is not None:
            syslog.close()
        raise
    # ECS observer.*: the policy's site.sensor, else this machine's name; the interface.
    observer = Observer(policy.sensor or socket.gethostname() or None, args.interface)
    sink = AlertStream(fmt, out, policy.zone, policy.site_name,
                       syslog=Deliveries.of(syslog, webhook), observer=observer)  # fmt: skip
    sinks = [sink]
    if also is not None:
        sinks.append(AlertStream("jsonl", also, policy.zone, policy.site_name, observer=observer))

    status_line = sys.stderr.isatty() and not args.quiet
    # Without a terminal (a service's journal): a line every --status-every minutes.
    every = StatusEvery(None if status_line or args.quiet else args.status_every * 60)
    watchdog = Watchdog.from_environment(notifier)

    def show(status: LiveStatus) -> None:
        # The watchdog is fed only while every capture worker goes round its
        # loop: one stuck for half the watchdog's time leaves it unfed.
        watchdog.feed(watchdog.capture_alive(status.worker_silence))
        if board is not None:
            board.count(Counters(status.packets, status.packets_per_second, status.dropped,
                                 status.live_flows, status.alerts))  # fmt: skip
        figures = SensorFigures(status.packets, status.dropped, status.live_flows,
                                status.alerts, rss_bytes())  # fmt: skip
        # Alerts a [[suppress]] of the policy held back: counted, never silently dropped.
        held = f", {status.suppressed:,} suppressed" if status.suppressed else ""
        notifier.status(f"capturing on {where}: {status_text(figures)}{held}")
        if every.due():
            say(f"status: {status_text(figures)}{held}")
        if status_line:
            sys.stderr.write(
                f"\r{status.packets_per_second:>12,.0f} pkt/s  {status.packets:>14,} packets  "
                f"{status.dropped:>10,} dropped  {status.live_flows:>9,} flows  "
                f"{status.alerts:>5} alerts {held}"
            )
            sys.stderr.flush()

    def emit(alerts: list[Any]) -> None:
        if board is not None:
            board.alerted(alerts)
        if status_line:
            sys.stderr.write("\r\x1b[K")
        for each in sinks:
            each.write(alerts)

    # logrotate renames the files, then SIGHUP: the next alerts go to new files
    # at the old paths (docs/logrotate/egress-detector).
    reopened = [(each, path) for each, path in ((sink, args.output), (sinks[-1], args.jsonl))
                if path and each.stream is not None]  # fmt: skip

    def reopen() -> None:
        for each, path in reopened:
            try:
                fresh = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed with the sink)
            except OSError as exc:
                say(f"SIGHUP: {path} not reopened, alerts still go to the file it was: "
                    f"{exc.strerror}")  # fmt: skip
                continue
            each.reopen(fresh)
        if reopened:
            say(f"SIGHUP: reopened {', '.join(path for _, path in reopened)}")

    def reload() -> Any:
        reopen()
        if not args.policy:
            return None
        try:
            fresh = load_policy(args.policy)
        except (PolicyError, DetectorError, OSError) as exc:
            say(f"SIGHUP: policy not reloaded, the old one stays: {exc}")
            return None
        say(f"SIGHUP: policy reloaded from {args.policy}")
        return fresh

    def reload_model(current_policy: Any) -> Any:
        try:
            fresh = model_of(args, current_policy)
        except (DetectorError, OSError) as exc:  # ModelError is a DetectorError
            say(f"SIGHUP: model not reloaded, the old one stays: {exc}")
            return None
        say(f"SIGHUP: model reloaded from {args.model}")
        return fresh

    detector = LiveDetector(
        sources,
        policy,
        LiveOptions(
            report_every=args.report_every,
            duration=args.duration,
            max_packets=args.max_packets,
            idle_timeout=args.idle_timeout,
            active_timeout=args.active_timeout,
            keep_flows=bool(args.flows_out),
            history_hours=args.history,
            interface=args.interface or "standard input",
        ),
        emit=emit,
        status=show,
        analysed=(lambda result: board.analysed(talkers_of(result.traffic))) if board else None,
        reload_policy=reload,
        model=model,
        reload_model=reload_model if args.model else None,
    )

    def stop(*_: Any) -> None:
        notifier.send(STOPPING, "STATUS=stopping: flushing flows, the last alerts")
        detector.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: detector.request_reload())
    if not args.quiet:
        say(f"capturing on {where}; policy: {policy.source or 'defaults'}")
    # The ring (or stream) is open and privileges are dropped: started.
    notifier.send(READY, f"STATUS=capturing on {where}")
    if notifier.problem:
        say(f"warning: {notifier.problem}")
    if status_server is not None:
        status_server.start()
        if not args.quiet:
            say(f"status page on {status_server.url} (metrics at /metrics)")
    started = time.monotonic()
    try:
        result = detector.run()
    finally:
        if status_server is not None:
            status_server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if status_line:
            sys.stderr.write("\r\x1b[K")
        if not detector.stopped:  # a bound or the stream's end: stopping all the same
            notifier.send(STOPPING)
        notifier.close()
        for each in sinks:
            each.close()
    if args.flows_out and flows_fmt is not None:
        with replacing(args.flows_out, fsync=False) as path:
            facts = result.final.facts if result.final is not None else None
            names = FlowNames(facts) if facts is not None else None  # service, server_name
            write_flows(iter_flow_columns(result.flow_rows, flow_names=names), flows_fmt, path)
    for problem in result.problems:
        say(f"error: {problem}")
    if not args.quiet:
        elapsed = time.monotonic() - started
        line = f"{result.packets:,} packets in {elapsed:.1f} s, {len(result.emitted)} alert(s)"
        if detector.suppressed:
            line += f" ({len(detector.suppressed):,} more suppressed by the policy)"
        if args.read is None:
            line += f"; kernel: {result.received:,} received, {result.dropped:,} dropped"
        if len(result.worker_packets) > 1:
            line += "; per worker: " + " / ".join(f"{n:,}" for n in result.worker_packets)
        say(line)
    if detector.stopped:
        # A sensor stopped by its service manager ends normally.
        return ExitStatus.UNREADABLE if result.problems else ExitStatus.OK
    if result.emitted:
        return ExitStatus.ALERTS
    return ExitStatus.UNREADABLE if result.problems else ExitStatus.OK
