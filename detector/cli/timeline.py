"""`egress-detector timeline`: arguments and messages; the work is in
detector.forensics.timeline."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from .arguments import add_bpf, add_command, add_quiet, read_in_order, say_overlaps
from .console import ExitStatus, exit_codes_help, reading_starts, say, site_policy

TIMELINE_EPILOG = """examples:
  egress-detector timeline --host 10.8.40.31 --policy site.toml day.pcap.gz
      the host's minutes (bytes out and in, the other side with most bytes),
      its destinations with their names, its alerts with the command that
      carves each one's packets, in the site's local time
  egress-detector timeline --host 10.8.40.31 --policy site.toml -o night.svg /var/captures/0204/
      the same table, and the chart as SVG (open it in a browser)
  egress-detector timeline --host 10.8.40.31 --format csv day.pcap > minutes.csv

The figures are the scan's own (frame bytes on the wire, per minute of the
site's local time); the alerts are those scan raises on the same captures.

""" + exit_codes_help(
    (ExitStatus.OK, "done (the host raised no alert)"),
    (ExitStatus.ALERTS, "done, the host has alerts"),
    (ExitStatus.USAGE, "usage or policy error, or the host is not one of the site's"),
    (ExitStatus.UNREADABLE, "some input could not be read completely"),
)  # fmt: skip


def add_timeline_parser(commands: Any) -> None:
    timeline = add_command(
        commands,
        "timeline",
        help="a host's traffic minute by minute, its destinations and alerts (table, SVG)",
        description="Show one internal host's night at a glance: bytes out and in per minute, "
        "the\noutside addresses it talked to with their names, and its alerts, in the "
        "site's\nlocal time.",
        epilog=TIMELINE_EPILOG,
    )
    timeline.add_argument(
        "captures",
        nargs="+",
        metavar="CAPTURE",
        help="pcap or pcapng files, optionally gzip-compressed, or directories of them",
    )
    timeline.add_argument("--host", metavar="IP", required=True, help="the internal host")
    timeline.add_argument(
        "--policy", metavar="FILE", help="the site policy (networks, time zone, rules)"
    )
    timeline.add_argument(
        "-o", "--output", metavar="FILE.svg", help="also draw the chart into FILE.svg"
    )
    timeline.add_argument(
        "--format",
        choices=["table", "csv"],
        default="table",
        help="stdout: the table (default), or one CSV line per minute with exact byte counts",
    )
    add_bpf(timeline)
    add_quiet(timeline, "no summary or progress on stderr (problems are still reported)")


def run_timeline(args: argparse.Namespace) -> ExitStatus:
    from ..forensics.timeline import host_timeline, timeline_csv, timeline_svg, timeline_table
    from ..outputs import replacing
    from ..pipelines.scan import scan_captures

    try:
        ipaddress.ip_address(args.host)
    except ValueError:
        say(f"--host {args.host!r}: not an IP address")
        return ExitStatus.USAGE
    if args.output and not args.output.lower().endswith(".svg"):
        say(f"-o {args.output}: the chart is SVG: name it FILE.svg")
        return ExitStatus.USAGE
    policy = site_policy(args.policy or None)
    captures = read_in_order(args)
    problems = reading_starts(45, captures, quiet=args.quiet)
    stats: list[Any] = []
    scan = scan_captures(captures, policy, reading=problems.reading(stats_out=stats))
    say_overlaps(stats)
    timeline = host_timeline(scan, args.host, policy)
    if args.output:
        with replacing(args.output) as path, open(path, "w", encoding="utf-8") as out:
            out.write(timeline_svg(timeline, policy.zone))
    if args.format == "csv":
        sys.stdout.write(timeline_csv(timeline, policy.zone))
    else:
        sys.stdout.write(timeline_table(timeline, policy.zone, [str(c) for c in args.captures]))
    if not args.quiet and args.output:
        say(f"chart written to {args.output}")
    if timeline.alerts:
        return ExitStatus.ALERTS
    return ExitStatus.UNREADABLE if problems.damaged else ExitStatus.OK
