"""`egress-detector nightly`: arguments and messages; the work is in
detector.nightly.run."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from .arguments import (
    add_command,
    add_delivery,
    add_model_pin,
    add_quiet,
    add_reading_arguments,
    delivery_problem,
    model_of,
    model_pin_alone,
    senders_of,
)
from .console import ExitStatus, Problems, number, progress, say, say_compiling, site_policy

NIGHTLY_EPILOG = """examples:
  egress-detector nightly --captures /var/captures --policy /etc/egress/site.toml \\
      --state /var/lib/egress-detector/nightly.db --report-dir /var/www/egress \\
      --jsonl /var/log/egress/nightly.jsonl
      take in the capture files that are new since the last run and finish every
      day that is over: alerts appended to the JSON lines, one HTML report a day
      (egress-report-YYYY-MM-DD.html)
  egress-detector nightly ... --day 2026-02-04
      finish (or redo) that day only: the report is rewritten, alerts already in
      the JSON lines are not written again
  egress-detector nightly ... --since 2026-02-01
      a first run over an archive: leave the days before 1 February alone
  egress-detector nightly ... --syslog tcp://siem.example.net:514 \\
      --webhook https://hooks.example.net/egress \\
      --webhook-token-file /etc/egress/webhook.token
      new alerts also to syslog over TCP and to a webhook; what the webhook has not
      taken waits in nightly.db.webhook-spool and goes first on the next run

cron, in /etc/cron.d/egress-detector (every night at 01:30, once the hour after
midnight is captured; one line in the file, shown wrapped; in a user's crontab,
leave out the user field):
  30 1 * * *  egress  egress-detector nightly --captures /var/captures \\
      --policy /etc/egress/site.toml --state /var/lib/egress-detector/nightly.db \\
      --report-dir /var/www/egress --jsonl /var/log/egress/nightly.jsonl -q

systemd: docs/systemd/egress-detector-nightly.service and .timer
  cp docs/systemd/egress-detector-nightly.* /etc/systemd/system/
  systemctl daemon-reload && systemctl enable --now egress-detector-nightly.timer

Capture files are found by their content (pcap, pcapng, gzip), not their names,
and ordered by their packets' times. A file modified in the last --settle
seconds, or whose last record is cut short, is still being written: it is left
for the next run. A day is finished once the captures reach an hour past its
end (or that time has passed); it is read from its files and an hour either
side, as one stream, so flows continue across files and midnight. Killing a run
and running it again gives the same alerts and reports: each day is committed
in one transaction, and alerts carry a stable event.id. Exit code 1 means
alerts to announce: a day finished in this run raised alerts, or a day that an
earlier run finished but was killed before announcing did. Each day's alerts
are announced (in the summary, and by exit status 1) by exactly one run that
completes, and again by a --day redo of that day. How it works: docs/nightly.md

"""


def add_nightly_parser(commands: Any, exit_codes_help: str) -> None:
    nightly = add_command(
        commands,
        "nightly",
        help="scheduled scan of a directory of rotated captures: new files since the last "
        "run, alerts and a daily HTML report",
        description="Take in the capture files of a directory that are new since the last\n"
        "run, scan every day that is over (in the site's time zone), append its alerts\n"
        "to a JSON-lines file and/or syslog, and write the day's HTML report. Safe to\n"
        "kill and run again.",
        epilog=NIGHTLY_EPILOG + exit_codes_help,
    )
    nightly.add_argument(
        "--captures",
        metavar="DIR",
        required=True,
        help="the directory the capture rotates into (searched recursively)",
    )
    nightly.add_argument(
        "--policy", metavar="FILE", required=True, help="the site policy (TOML, docs/policy.md)"
    )
    nightly.add_argument(
        "--model",
        metavar="FILE",
        help="also score host windows with a model from `egress-detector train` (as scan does)",
    )
    add_model_pin(nightly)
    nightly.add_argument(
        "--learn",
        action="store_true",
        help="update the --model file from clean days: host windows no alert touched, "
        "the last 4 weeks of them once a week is kept (docs/nightly.md)",
    )
    nightly.add_argument(
        "--state",
        metavar="STATE.db",
        required=True,
        help="the nightly's SQLite state (created on the first run): files taken in, days "
        "finished, alerts written, hosts seen",
    )
    nightly.add_argument(
        "--report-dir",
        metavar="OUT",
        required=True,
        help="where the daily reports go (egress-report-YYYY-MM-DD.html; created if missing)",
    )
    nightly.add_argument(
        "--jsonl",
        metavar="FILE",
        help="append every new alert to FILE as ECS JSON lines (with a stable event.id); the "
        "file is the nightly's own: what an interrupted run wrote past its last finished day "
        "is cut off",
    )
    add_delivery(
        nightly,
        alerts="new alerts",
        spool_dir="with --webhook: the directory where alerts wait until the receiver takes "
        "them, sent first by the next run (default: beside --state, STATE.db.webhook-spool)",
    )
    when = nightly.add_mutually_exclusive_group()
    when.add_argument(
        "--since",
        type=_date,
        metavar="YYYY-MM-DD",
        help="finish only days from this one on (older files are still recorded)",
    )
    when.add_argument(
        "--day",
        type=_date,
        metavar="YYYY-MM-DD",
        help="finish (or redo) this local day only, whatever its state",
    )
    nightly.add_argument(
        "--settle",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="a file modified less than this long ago is still being written and is left "
        "for the next run (default: 60)",
    )
    nightly.add_argument(
        "--sensor",
        metavar="NAME",
        default="",
        help="the sensor's name in the report and in alerts (observer.hostname) (default: the "
        "policy's site.sensor, else this machine's host name in alerts and none in the report)",
    )
    add_reading_arguments(nightly, inputs="days", captures="each day's captures")
    add_quiet(nightly, "no summary or progress on stderr (problems are still shown)")


_date = number(dt.date.fromisoformat, "a date as YYYY-MM-DD")
_seconds = number(float, "seconds", lambda v: v >= 0, "be 0 or more")


def run_nightly_command(args: argparse.Namespace) -> int:
    from ..alerts.webhook import default_spool
    from ..nightly.run import NightlyOptions, NightlyResult, run_nightly
    from ..units import human_bytes

    if args.learn and not args.model:
        say("--learn updates a model: give it with --model FILE")
        return ExitStatus.USAGE
    if model_pin_alone(args) or delivery_problem(args, spool_needed=False):
        return ExitStatus.USAGE
    if args.model_sha256 and args.learn:
        say("--model-sha256 pins the --model file, which --learn rewrites: give one or the other")
        return ExitStatus.USAGE
    policy = site_policy(args.policy)
    model = model_of(args, policy)
    say_compiling(45, quiet=args.quiet)
    sender = senders_of(args, args.spool_dir or default_spool(args.state))

    options = NightlyOptions(
        captures=args.captures,
        state=args.state,
        report_dir=args.report_dir,
        alerts_path=args.jsonl,
        syslog=sender,
        since=args.since,
        day=args.day,
        settle_seconds=args.settle,
        threads=args.threads,
        sensor=args.sensor,
        learn=args.model if args.learn else None,
        workers=args.workers,
        scheduler=args.scheduler,
    )

    def announce(result: NightlyResult) -> None:
        # The days are marked announced when this returns: the summary must be out.
        if not args.quiet:
            for path, why in result.waiting:
                say(f"left for the next run: {path}: {why}")
            for day, why in result.not_ready:
                say(f"{day}: not finished yet: {why}")
            for earlier in result.earlier:
                say(
                    f"{earlier.day}: {earlier.alerts} alert(s) ({earlier.new_alerts} new) from "
                    f"{earlier.files} file(s) → {earlier.report} (finished by an earlier run "
                    "that was stopped before it announced them)"
                )
            taken = sum(f.size for f in result.taken)
            line = (
                f"{len(result.taken)} new capture file(s) ({human_bytes(taken)}), "
                f"{len(result.days)} day(s) finished, {result.new_alerts} new alert(s)"
            )
            held = sum(d.suppressed for d in result.days)
            if held:
                line += f" ({held} more suppressed by the policy)"
            if result.earlier:
                line += (
                    f"; and {len(result.earlier)} day(s) an earlier run finished: "
                    f"{sum(d.alerts for d in result.earlier)} alert(s) "
                    f"({sum(d.new_alerts for d in result.earlier)} new)"
                )
            say(line)
        sys.stderr.flush()

    try:
        result = run_nightly(
            options,
            policy,
            model=model,
            on_problem=Problems(),
            say=(lambda m: None) if args.quiet else say,
            progress=lambda b, paths: progress(b, paths, not args.quiet),
            announce=announce,
        )
    finally:
        if sender is not None:
            sender.close()
    if result.announced_alerts:
        return ExitStatus.ALERTS
    return ExitStatus.UNREADABLE if result.damaged else ExitStatus.OK
