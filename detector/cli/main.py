"""Command line: argument parsing, exit codes and messages only; no logic."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import DetectorError
from .arguments import (
    add_bpf,
    add_captures,
    add_command,
    add_delivery,
    add_flow_timeouts,
    add_model_pin,
    add_output,
    add_quiet,
    add_reading_arguments,
    delivery_problem,
    model_of,
    model_pin_alone,
    read_in_order,
    say_overlaps,
    senders_of,
)
from .console import (
    ExitStatus,
    exit_codes_help,
    positive_float,
    positive_int,
    reading_starts,
    say,
    site_policy,
)

if TYPE_CHECKING:
    from ..alerts.history import AlertHistory
    from ..alerts.sending import AlertSender
    from ..detect.model import EgressModel
    from ..policy import Policy
    from ..policy.suppress import Suppressed

EXIT_CODES_HELP = exit_codes_help(
    (ExitStatus.OK, "done (no alerts)"),
    (ExitStatus.ALERTS, "done, alerts raised"),
    (ExitStatus.USAGE, "usage, policy or configuration error"),
    (ExitStatus.UNREADABLE, "some input could not be read completely; everything read before the "
     "damage\nis in the output, and each problem is reported on stderr with its byte offset\n"
     "(a scan that also raised alerts exits 1: alerts come first)"),
)  # fmt: skip

FLOWS_EPILOG = (
    """examples:
  egress-detector flows incident.pcap
      print the flows of a capture as a table
  egress-detector flows /var/captures/20260204-*.pcap.gz -o flows.parquet
      rotated hourly captures, read in packet-time order as one stream: flows
      continue across files; Parquet for pandas, DuckDB or Spark
  egress-detector flows mirror.pcapng --idle-timeout 60 -o flows.csv
  tcpdump -i eth1 -w - | egress-detector flows - -o flows.parquet
      a pcap stream on standard input (gzip too): flows are written when it ends

flow columns, timeouts and how packets are counted: docs/flows.md
bytes are frame bytes on the wire (as tshark's conversation table counts them),
correct even for headers-only captures (small snap length).

"""
    + EXIT_CODES_HELP
)


SCAN_EPILOG = (
    """examples:
  egress-detector scan --policy site.toml incident.pcap
      alerts as a table, worst first, in the site's local time
  egress-detector scan --policy site.toml --format jsonl -o alerts.jsonl /var/captures/*.pcap.gz
      JSON lines with ECS field names, for a SIEM (Elastic, Splunk, Wazuh)
  egress-detector scan --policy site.toml --features-out hosts.parquet day.pcapng
      also write the per-host window features (the model's input)

the site policy (networks, isolated hosts, business hours, allowlist, rule
thresholds): docs/policy.md. The rules and what each one catches: docs/rules.md.
Without --policy: RFC 1918 and fc00::/7 are internal, business hours are
Mon-Fri 08:00-18:00 in this machine's time zone, and no host is isolated.

"""
    + EXIT_CODES_HELP
)


TRAIN_EPILOG = (
    """examples:
  egress-detector train --policy site.toml -o models/site.model /var/captures/week1/*.pcap.gz
      learn from a week of normal traffic (give rotated files in time order)
  egress-detector train --policy site.toml -o models/site.model mon.parquet tue.parquet
      learn from feature files written by scan --features-out
  egress-detector scan --policy site.toml --model models/site.model today.pcap.gz
      rules plus the model: model-anomaly alerts, and egress.model on rule alerts

what the model learns, its score and its file: docs/model.md

"""
    + EXIT_CODES_HELP
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egress-detector",
        description=(
            "Find network egress that should not happen: isolated hosts talking "
            "outside, off-hours bulk uploads, P2P and messaging apps. Reads pcap/pcapng "
            "files (gzip too)."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on an error, show the full Python traceback (for bug reports)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    flows = add_command(
        commands,
        "flows",
        help="write the bidirectional flows of captures (table, CSV, JSON lines, Parquet)",
        description="Decode captures and write one record per bidirectional flow.",
        epilog=FLOWS_EPILOG,
    )
    add_captures(flows)
    add_bpf(flows)
    add_output(
        flows,
        output="write to FILE; the format follows the extension (.parquet, .csv, .jsonl) unless "
        "--format is given; FILE is replaced only when complete; default: a table on stdout",
        formats=["table", "csv", "jsonl", "parquet"],
        fmt="output format (default: from -o's extension, else table)",
    )
    add_flow_timeouts(flows, positive_float)
    flows.add_argument(
        "--max-flows",
        type=positive_int,
        default=1_000_000,
        metavar="N",
        help="flows kept open at once; beyond it the least recently seen "
        "are closed early and counted (default: 1000000, about 216 "
        "bytes each)",
    )
    flows.add_argument(
        "--top", type=int, metavar="N", help="table output: only the N flows with the most bytes"
    )
    flows.add_argument(
        "--threads",
        type=int,
        choices=[1, 2],
        metavar="N",
        help="1 (default): decode and count in one pass; 2: decode in a second thread while "
        "counting (the same flows; measured, it was no faster and took more CPU)",
    )
    flows.add_argument(
        "--no-payload",
        action="store_true",
        help="do not look into payloads (faster): service and server_name stay empty",
    )
    add_quiet(flows, "no summary or progress on stderr (problems are still reported)")

    scan = add_command(
        commands,
        "scan",
        help="check captures against the site policy and raise alerts",
        description="Read captures, build per-host traffic in the site's time zone, run the "
        "egress rules and write alerts: a table, JSON lines (ECS) or CSV.",
        epilog=SCAN_EPILOG,
    )
    add_captures(scan)
    add_bpf(scan)
    scan.add_argument(
        "--policy",
        metavar="FILE",
        help="the site policy (TOML, see docs/policy.md); default: built-in defaults, "
        "with a warning",
    )
    add_output(
        scan,
        output="write alerts to FILE; the format follows the extension (.jsonl, .csv) unless "
        "--format is given; default: stdout",
        formats=["table", "jsonl", "csv"],
        fmt="alert format (default: from -o's extension, else table)",
    )
    scan.add_argument(
        "--features-out",
        metavar="FILE.parquet",
        help="also write the per-host window features (Parquet; .csv writes CSV)",
    )
    scan.add_argument(
        "--parquet-dir",
        metavar="DIR",
        help="also write flows and features as Parquet partitioned by site and local day "
        "(DIR/flows/site=NAME/day=YYYY-MM-DD/...; read by pandas, Dask, DuckDB, Spark; "
        "docs/distributed.md)",
    )
    scan.add_argument(
        "--model",
        metavar="FILE",
        help="also score every host window with a model made by `egress-detector train` "
        "(docs/model.md); it must have been trained under the same site policy",
    )
    add_model_pin(scan)
    scan.add_argument(
        "--history",
        action="append",
        metavar="FILE.jsonl",
        help="earlier alerts as ECS JSON lines (nightly's --jsonl, an earlier scan's): an alert "
        "of the same rule and addresses on one of the policy's report.recurring_days days "
        "before is marked recurring (egress.recurrence); without it every alert is new; "
        "may be repeated",
    )
    scan.add_argument(
        "--window",
        type=int,
        metavar="MINUTES",
        help="feature window in minutes, aligned in site-local time; must divide a day "
        "(default: the policy's features.window_minutes, else 10)",
    )
    add_delivery(
        scan,
        alerts="the alerts",
        spool_dir="with --webhook: the directory where alerts wait until the receiver takes "
        "them, sent first by the next run that uses it",
    )
    add_reading_arguments(scan, parts="files and big pcap files cut into parts; ")
    add_quiet(
        scan, "no summary or progress on stderr (problems and policy warnings are still shown)"
    )

    train = add_command(
        commands,
        "train",
        help="learn a site's normal egress from baseline captures (the model scan --model uses)",
        description="Learn the site's normal egress from captures (or feature files written\n"
        "by scan --features-out) of normal days: an isolation forest over the per-host\n"
        "window features, the baseline's per-host usual volumes and known destinations.\n"
        "Written as a model file that is safe to copy between machines (loading it runs\n"
        "no code).",
        epilog=TRAIN_EPILOG,
    )
    train.add_argument(
        "baseline",
        nargs="+",
        metavar="BASELINE",
        help="captures of normal days (pcap/pcapng, gzip too; read as one stream in the order "
        "given) or .parquet/.csv feature files from scan --features-out",
    )
    train.add_argument(
        "--policy",
        metavar="FILE",
        help="the site policy the model is for (scan --model refuses another)",
    )
    train.add_argument("-o", "--output", metavar="FILE", required=True, help="the model file")
    train.add_argument(
        "--seed", type=int, default=0, metavar="N", help="random seed of the forest (default: 0)"
    )
    add_reading_arguments(train, distributed=False)
    add_quiet(train, "no summary on stderr")

    from .live import add_live_parser

    add_live_parser(commands, EXIT_CODES_HELP)
    from .nightly import add_nightly_parser

    add_nightly_parser(commands, EXIT_CODES_HELP)
    from .carve import add_carve_parser

    add_carve_parser(commands)
    from .timeline import add_timeline_parser

    add_timeline_parser(commands)
    return parser


def _run_flows(args: argparse.Namespace) -> ExitStatus:
    from ..flows.export import export_flows
    from ..flows.write import flow_format
    from ..units import human_bytes

    fmt = flow_format(args.format, args.output)
    if fmt == "parquet" and not args.output:
        say("Parquet output needs a file: add -o FILE.parquet")
        return ExitStatus.USAGE
    args.captures = captures = read_in_order(args)
    if _none_readable(args.captures, args.output):
        return ExitStatus.UNREADABLE
    problems = reading_starts(30, captures, quiet=args.quiet)
    done = export_flows(
        captures,
        fmt,
        args.output,
        top=args.top,
        payload=not args.no_payload,
        idle_timeout=args.idle_timeout,
        active_timeout=args.active_timeout,
        max_flows=args.max_flows,
        # One pass: the fused kernel beat the two-thread pipeline on every input
        # measured (benchmarks/README.md), and keeps the second core free.
        reading=problems.reading(args.threads if args.threads is not None else 1),
    )
    say_overlaps(done.stats)
    if not args.quiet:
        packets = sum(s.packets for s in done.stats)
        wire = sum(s.wire_bytes for s in done.stats)
        skipped = packets - done.table.packets
        rate = packets / done.seconds if done.seconds > 0 else 0.0
        line = (
            f"{len(done.stats)} file(s), {packets:,} packets ({human_bytes(wire)} on the wire) "
            f"→ {done.flows:,} flows in {done.seconds:.2f} s "
            f"({rate / 1e6:.2f} M packets/s)"
        )
        if skipped:
            line += f"; {skipped:,} packets carried no IP and are in no flow" + (
                " (or did not pass --bpf)" if args.bpf else ""
            )
        if done.table.evicted_flows:
            line += (
                f"; {done.table.evicted_flows:,} flows closed early because the table was "
                "full (raise --max-flows)"
            )
        say(line)
    if done.names_not_kept is not None:
        cut = done.names_not_kept
        say(f"warning: payload inspection's budget: {cut.total:,} facts (names, services) of "
            f"{len({(h, lo) for h, lo in zip(cut.hi.tolist(), cut.lo.tolist(), strict=True)}):,} "
            "host(s) with the most were counted, not kept, to keep memory bounded (a flood of "
            "names?): their later flows show no service or server_name")  # fmt: skip
    return ExitStatus.UNREADABLE if problems.damaged else ExitStatus.OK


def _run_scan(args: argparse.Namespace) -> ExitStatus:
    policy = site_policy(args.policy or None)
    if args.window is not None and not (1 <= args.window <= 1440 and 1440 % args.window == 0):
        say(f"--window {args.window}: must divide a day (1, 2, 5, 10, 15, 30, 60, ... 1440)")
        return ExitStatus.USAGE
    if model_pin_alone(args) or delivery_problem(args, spool_needed=True):
        return ExitStatus.USAGE
    model = model_of(args, policy)
    if args.features_out and Path(args.features_out).suffix.lower() not in (
        ".parquet", ".pq", ".csv"
    ):  # fmt: skip
        say(f"--features-out {args.features_out}: use a .parquet (or .csv) file name")
        return ExitStatus.USAGE
    if args.bpf and (args.workers or args.scheduler):
        say("--bpf is not yet taken with --workers or --scheduler: count in this process")
        return ExitStatus.USAGE
    args.captures = read_in_order(args)
    if _none_readable(args.captures, args.output, args.features_out):
        return ExitStatus.UNREADABLE
    # Earlier alerts read (a bad line: one error) and collectors reached (a TLS
    # certificate checked) before the captures are read.
    history = None
    if args.history:
        from ..alerts.history import AlertHistory

        history = AlertHistory.from_jsonl(args.history)
    sender = senders_of(args, args.spool_dir)
    try:
        return _scan_and_send(args, policy, model, sender, history)
    finally:
        if sender is not None:
            sender.close()


def _scan_and_send(
    args: argparse.Namespace,
    policy: Policy,
    model: EgressModel | None,
    sender: AlertSender | None,
    history: AlertHistory | None = None,
) -> ExitStatus:
    from ..alerts.record import Observer, to_ecs
    from ..alerts.sinks import alert_format
    from ..capture import CaptureStats
    from ..pipelines.commands import scan_to_files
    from ..units import human_bytes

    captures = args.captures
    problems = reading_starts(45, captures, quiet=args.quiet)
    stats: list[CaptureStats] = []
    held: list[Suppressed] = []
    started = time.perf_counter()
    created = time.time_ns()  # ECS event.created, the same in the file and what is sent
    result = scan_to_files(
        captures,
        policy,
        alerts_format=alert_format(args.format, args.output),
        alerts_out=args.output,
        features_out=args.features_out,
        parquet_dir=args.parquet_dir,
        reading=problems.reading(args.threads, stats),
        window_minutes=args.window,
        workers=args.workers,
        scheduler=args.scheduler,
        model=model,
        created_ns=created,
        suppressed_out=held,
        history=history,
    )
    say_overlaps(stats)
    if not args.quiet:
        elapsed = time.perf_counter() - started
        packets = sum(s.packets for s in stats)
        wire = sum(s.wire_bytes for s in stats)
        hosts, windows = result.host_counts()  # without making the features
        say(
            f"{len(stats)} file(s), {packets:,} packets ({human_bytes(wire)}), "
            f"{hosts} internal hosts, {windows:,} host windows "
            f"→ {len(result.alerts)} alert(s)"
            + (f" ({len(held)} more suppressed by the policy)" if held else "")
            + f" in {elapsed:.2f} s"
        )
    if sender is not None and result.alerts:
        observer = Observer(policy.sensor)
        sender.send_all([(a, to_ecs(a, policy.zone, policy.site_name, created_ns=created,
                                    observer=observer)) for a in result.alerts])  # fmt: skip
    if result.alerts:
        return ExitStatus.ALERTS
    return ExitStatus.UNREADABLE if problems.damaged else ExitStatus.OK


def _run_train(args: argparse.Namespace) -> ExitStatus:
    from ..capture.reading import Reading
    from ..detect.model import file_sha256, local_day
    from ..pipelines.commands import baseline_captures, train_to_file

    policy = site_policy(args.policy or None)
    captures = baseline_captures(args.baseline)
    if captures:
        # As every command reads captures: a file given twice is learned once (not
        # as twice the traffic), directories expanded, in packet-time order.
        features = [p for p in args.baseline if p not in captures]
        args.captures = captures
        args.baseline = [*read_in_order(args), *features]
        captures = baseline_captures(args.baseline)
    if captures and len(captures) == len(args.baseline) and _none_readable(captures, args.output):
        return ExitStatus.UNREADABLE
    problems = reading_starts(45, quiet=args.quiet or not captures)
    started = time.perf_counter()
    training = train_to_file(
        args.baseline,
        args.output,
        policy,
        seed=args.seed,
        reading=Reading(args.threads, problems),  # (no progress bar: train says its steps)
    )
    model = training.model
    for note in training.notes:
        say(f"note: {note}")
    if not args.quiet:
        first, last = (local_day(t, policy) for t in model.span_)
        say(
            f"learned from {model.n_windows_:,} host windows of {model.n_hosts_} hosts "
            f"({model.n_host_days_:,} host-days, {first} to {last} local), "
            f"{len(model.history_.known_peer_lo):,} known (host, destination) pairs; "
            f"threshold {model.threshold_:.3f} (percentile {policy.model_percentile:g} of "
            f"the scores of {model.n_calibration_days_:,} baseline host-days above usual"
            f"{'; none: every candidate is flagged' if not model.n_calibration_days_ else ''}"
            f"); {time.perf_counter() - started:.1f} s → {args.output} (SHA-256 "
            f"{file_sha256(args.output)}: pin it with --model-sha256)"
        )
    return ExitStatus.UNREADABLE if problems.damaged else ExitStatus.OK


class _Probe(Exception):
    """Leaves a ``replacing`` block at once: the output untouched."""


def _none_readable(captures: Sequence[str], *outputs: str | None) -> bool:
    """When not one of ``captures`` can be read (missing, not a capture),
    say why for each before anything compiles (a minute on a first run) and
    return True; otherwise the reading says what it finds, file by file.
    An unwritable output (of ``outputs``) is the first error, as ever
    (:class:`OutputError`, a usage error)."""
    from ..capture.files import unreadable
    from ..outputs import replacing

    for output in outputs:
        with contextlib.suppress(_Probe), replacing(output, fsync=False):
            raise _Probe

    problems = [unreadable(path) for path in captures]
    if not problems or any(problem is None for problem in problems):
        return False
    for problem in problems:
        say(f"error: {problem}")
    return True


# The commands that live in their own module, imported only when they run (a
# quick --help; one command's failure to import cannot stop another).
ELSEWHERE = {
    "live": ("live", "run_live"),
    "nightly": ("nightly", "run_nightly_command"),
    "carve": ("carve", "run_carve"),
    "timeline": ("timeline", "run_timeline"),
}


def _runner(command: str) -> Callable[[argparse.Namespace], int]:
    here = {"flows": _run_flows, "scan": _run_scan, "train": _run_train}
    if command in here:
        return here[command]
    module, name = ELSEWHERE[command]
    run: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f".{module}", __package__), name
    )
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitStatus.USAGE
    try:
        return _runner(args.command)(args)
    except DetectorError as exc:
        if args.traceback:
            raise
        say(f"error: {exc}")
        return ExitStatus.UNREADABLE if _is_input_error(exc) else ExitStatus.USAGE
    except BrokenPipeError:  # `egress-detector flows x.pcap | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.OK
    except KeyboardInterrupt:
        say("interrupted")
        return ExitStatus.INTERRUPTED
    except Exception as exc:
        if args.traceback:
            raise
        say(
            f"internal error: {type(exc).__name__}: {exc} (a bug; rerun with --traceback "
            "and report what it prints)"
        )
        return ExitStatus.INTERNAL


def _is_input_error(exc: DetectorError) -> bool:
    from ..errors import CaptureError

    return isinstance(exc, CaptureError)


def run() -> None:
    """Console-script entry point.

    Exits without the interpreter's teardown: with numba loaded, tearing down
    its compiler objects takes 0.4 s, a third of a warm start. Everything we
    write is closed or flushed by then; no atexit work of ours is skipped.
    """
    code = int(main())
    with contextlib.suppress(BrokenPipeError, ValueError):  # a closed pipe: nothing to save
        sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
