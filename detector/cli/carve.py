"""`egress-detector carve`: arguments and messages; the work is in
detector.forensics.carve."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .arguments import add_bpf, add_command, add_quiet, read_in_order, say_overlaps
from .console import ExitStatus, exit_codes_help, reading_starts, say

CARVE_EPILOG = """examples:
  egress-detector carve --event-id 3f9c... --alerts nightly.jsonl -o upload.pcap \\
      /var/captures/2026-02-04/
      the packets of one alert (its host and other side, every flow of theirs with
      a packet in the alert's span), from the files of that day
  egress-detector carve --community-id '1:LRmjWdENZLfImLuDXf0RUbRTxtk=' -o flow.pcap \\
      incident.pcap.gz
      one flow, by the Community ID that alerts, Zeek and Suricata print
  egress-detector carve --host 10.8.40.31 --from '2026-02-04 02:00' --to '2026-02-04 03:00' \\
      --policy site.toml -o night.pcapng day-*.pcapng
      every flow of a host with a packet between 02:00 and 03:00 local time
  egress-detector carve --host 10.8.40.31 --headers-only -o headers.pcap day.pcap
      headers only: each packet cut after its TCP/UDP/ICMP header
  egress-detector carve --event-id 3f9c... --state /var/lib/egress-detector/nightly.db \\
      -o old-alert.pcap
      an alert of the nightly, months later: the alert from its --jsonl file, and
      only the capture files whose packets reach within an hour of its span

Carved files hold the packets as they were captured, payloads included: they
may contain personal data (mail, documents, credentials, ID numbers). Keep them
where the captures are kept, and prefer --headers-only when headers suffice.

What is carved is whole flows: every packet of each chosen flow, both
directions, later IP fragments with their first one, in capture order, with
their original times and link types (pcapng when the output is named .pcapng
or the packets have several link types; pcap otherwise). Files are read in the
order of their first packet, whatever the order given; with --bpf EXPR only
the packets that pass the filter are read.

""" + exit_codes_help(
    (ExitStatus.OK, "done (the file is written, even when no packet was chosen: it then\n"
     "holds none)"),
    (ExitStatus.USAGE, "usage or configuration error"),
    (ExitStatus.UNREADABLE, "some input could not be read completely (what was read is carved)"),
)  # fmt: skip


def add_carve_parser(commands: Any) -> None:
    carve = add_command(
        commands,
        "carve",
        help="write the packets behind an alert (or a flow, or a host's span) to a pcap file",
        description="Write the packets of the chosen flows to a pcap or pcapng file that "
        "Wireshark opens.\nCarved files hold packets as captured: they may contain personal "
        "data\n(--headers-only cuts payloads to the transport header).",
        epilog=CARVE_EPILOG,
    )
    carve.add_argument(
        "captures",
        nargs="*",
        metavar="CAPTURE",
        help="pcap or pcapng files, optionally gzip-compressed, or directories of them (the "
        "same ones scan read); read in order of their first packet, a file given twice once",
    )
    add_bpf(carve)
    which = carve.add_mutually_exclusive_group(required=True)
    which.add_argument("--community-id", metavar="ID", help="the flow(s) of this Community ID v1")
    which.add_argument(
        "--event-id",
        metavar="ID",
        help="the alert with this event.id in the --alerts file: its host and other side over "
        "its span",
    )
    which.add_argument("--host", metavar="IP", help="the flows of this host")
    carve.add_argument(
        "--alerts", metavar="FILE", help="with --event-id: the JSON-lines alerts (scan, nightly)"
    )
    carve.add_argument(
        "--state",
        metavar="STATE.db",
        help="instead of captures: the nightly's state; only its files whose packets reach "
        "within an hour of the span are read (with --event-id, the alert is looked up in "
        "the nightly's --jsonl file unless --alerts is given)",
    )
    carve.add_argument("--peer", metavar="IP", help="with --host: only its flows with this address")
    carve.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="only flows with a packet at or after TIME (ISO 8601, e.g. '2026-02-04 02:00' "
        "or 2026-02-04T02:00+08:00; without an offset, in the policy's time zone)",
    )
    carve.add_argument(
        "--to",
        dest="end",
        metavar="TIME",
        help="only flows with a packet at or before TIME (to the end of the second, or minute, "
        "it names)",
    )
    carve.add_argument(
        "--policy",
        metavar="FILE",
        help="the site policy, for its time zone (--from/--to without an offset)",
    )
    carve.add_argument(
        "--idle-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="a flow ends after this long without packets, as in flows and scan (default: 120)",
    )
    carve.add_argument(
        "--headers-only",
        action="store_true",
        help="cut each packet after its transport header (no payload is written)",
    )
    carve.add_argument(
        "-o", "--output", metavar="OUT.pcap", required=True,
        help="the capture to write (.pcapng for pcapng); replaced only when complete",
    )  # fmt: skip
    add_quiet(carve, "no summary or progress on stderr (problems are still reported)")


def run_carve(args: argparse.Namespace) -> ExitStatus:
    from ..forensics.carve import (
        Selection,
        carve,
        parse_time,
        parts_from_state,
        selection_of_alert,
        selection_of_state_alert,
    )

    if args.event_id and not (args.alerts or args.state):
        say("--event-id needs --alerts FILE (the JSON-lines alerts of scan or the nightly)")
        return ExitStatus.USAGE
    if bool(args.captures) == bool(args.state):
        say("give the captures to read, or --state STATE.db for the nightly's (not both)")
        return ExitStatus.USAGE
    if args.peer and not args.host:
        say("--peer goes with --host")
        return ExitStatus.USAGE
    zone = None
    if args.policy:
        from .console import site_policy

        zone = site_policy(args.policy).zone
    times: dict[str, int | None] = {}
    for name, text in (("--from", args.start), ("--to", args.end)):
        try:
            times[name] = parse_time(text, zone, end=name == "--to") if text else None
        except ValueError:
            say(f"{name} {text!r}: expected a time such as '2026-02-04 02:00' or "
                "2026-02-04T02:00:00+08:00")  # fmt: skip
            return ExitStatus.USAGE
    idle_ns = int(args.idle_timeout * 1e9)
    if args.event_id and args.alerts:
        selection = selection_of_alert(args.alerts, args.event_id)
    elif args.event_id:
        selection = selection_of_state_alert(args.state, args.event_id)
    else:
        selection = Selection(
            community_id=args.community_id, host=args.host, peer=args.peer,
            start_ns=times["--from"], end_ns=times["--to"],
        )  # fmt: skip
    from dataclasses import replace

    selection = replace(selection, idle_ns=idle_ns)
    for name, address in (("--host", selection.host), ("--peer", selection.peer)):
        if address:
            import ipaddress

            try:
                ipaddress.ip_address(address)
            except ValueError:
                say(f"{name} {address!r}: not an IP address")
                return ExitStatus.USAGE
    if args.state:
        # The nightly's files in order of first packet: indexed ones as the
        # byte ranges that reach the span (forensics/carve.py).
        parts = parts_from_state(
            args.state,
            selection,
            getattr(args, "bpf", None),
            event_id=args.event_id,
            on_note=lambda line: say("warning: " + line),
        )
        if not parts:
            say(f"--state {args.state}: no capture file of the nightly reaches the span")
            return ExitStatus.OK
    else:
        parts = list(read_in_order(args))
    captures = [os.fspath(p) for p in parts]  # the files (for the progress bar)
    problems = reading_starts(30, captures, quiet=args.quiet)
    reading = problems.reading()
    done = carve(parts, selection, args.output, headers_only=args.headers_only, reading=reading)
    say_overlaps(done.stats)
    if not args.quiet:
        packets = sum(s.packets for s in done.stats)
        say(
            f"{len(done.stats)} file(s), {packets:,} packets read in {done.seconds:.2f} s → "
            f"{done.packets:,} packets of {done.flows:,} flow(s) ({selection.describe()}) "
            f"written to {args.output} ({done.format})"
        )
    return ExitStatus.UNREADABLE if problems.damaged else ExitStatus.OK
