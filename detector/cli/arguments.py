"""Arguments more than one command takes, defined once."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .console import number, say, worker_count

if TYPE_CHECKING:
    from ..alerts.sending import AlertSender
    from ..alerts.stream import SyslogSender
    from ..alerts.webhook import WebhookSender
    from ..detect.model import EgressModel
    from ..policy import Policy


def add_reading_arguments(
    parser: argparse.ArgumentParser,
    *,
    inputs: str = "inputs",
    captures: str = "the captures",
    parts: str = "",
    distributed: bool = True,
) -> None:
    """--threads, and with ``distributed`` --workers and --scheduler: how a
    command that reads captures spreads the reading. Their help speaks of
    ``inputs`` (what is over 64 MB), ``captures`` (what is counted) and
    ``parts`` (how the work is cut, before the docs' name)."""
    parser.add_argument(
        "--threads",
        type=int,
        choices=[1, 2],
        metavar="N",
        help=f"1 or 2 threads for reading (default: 2 for {inputs} over 64 MB on 2 or more cores)",
    )
    if not distributed:
        return
    parser.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help=f"count {captures} on a local Dask cluster of N processes ({parts}"
        "docs/distributed.md); 1 or absent: this process",
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:8786",
        help=f"count {captures} on an existing Dask cluster (the workers must see the "
        "capture files at the same paths)",
    )


def add_model_pin(parser: argparse.ArgumentParser) -> None:
    """--model-sha256: the SHA-256 the --model file must have (scan, live, nightly)."""
    parser.add_argument(
        "--model-sha256",
        type=sha256_hex,
        metavar="HEX",
        help="load the --model file only if its SHA-256 is HEX (train prints it; so does "
        "sha256sum): a model an administrator trusts, pinned; the checksums inside a model "
        "file catch damage, not someone who edits it (docs/model.md)",
    )


def model_pin_alone(args: argparse.Namespace) -> bool:
    """--model-sha256 without --model, said: the command stops (exit 2)."""
    if args.model_sha256 and not args.model:
        say("--model-sha256 pins a model file: give it with --model FILE")
        return True
    return False


def model_of(args: argparse.Namespace, policy: Policy) -> EgressModel | None:
    """The --model file's model (None without one), checked against ``policy``
    and --model-sha256. A mismatch, or a file that is not a sound model, is a
    one-line ModelError."""
    if not args.model:
        return None
    from ..detect.model import load_model

    return load_model(args.model, policy, sha256=args.model_sha256)


def sha256_hex(text: str) -> str:
    """64 hexadecimal digits, lower-cased."""
    value = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a SHA-256 (64 hexadecimal digits)")
    return value


def add_command(
    commands: Any, name: str, *, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """A command's parser, its description and epilog printed as written."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_captures(parser: argparse.ArgumentParser) -> None:
    """The captures to read, as every command that reads files names them."""
    parser.add_argument(
        "captures",
        nargs="+",
        metavar="CAPTURE",
        help="pcap or pcapng files, optionally gzip-compressed, or directories of them; read "
        "in order of their first packet, a file given twice once; - reads a pcap stream from "
        "standard input",
    )


def add_bpf(parser: argparse.ArgumentParser) -> None:
    """--bpf EXPR for capture files (flows, scan, carve)."""
    parser.add_argument(
        "--bpf",
        metavar="EXPR",
        help="read only the packets that pass this pcap filter (tcpdump's syntax, e.g. "
        "'not port 22' or 'host 10.8.40.31'; compiled by libpcap)",
    )


def read_in_order(args: argparse.Namespace) -> list[str]:
    """The command's captures as they are read: directories expanded, a file
    given twice read once, files in order of their first packet, each with the
    --bpf filter (warnings said on stderr)."""
    from ..capture import capture_inputs

    return capture_inputs(
        args.captures, bpf=getattr(args, "bpf", None), on_warning=lambda m: say(f"warning: {m}")
    )


def say_overlaps(stats: Sequence[Any]) -> None:
    """A warning for each two files read that overlap in time."""
    from ..capture import overlap_warnings

    for line in overlap_warnings(stats):
        say(f"warning: {line}")


def add_output(
    parser: argparse.ArgumentParser, *, output: str, formats: Sequence[str], fmt: str
) -> None:
    """-o FILE and --format, with their help texts ``output`` and ``fmt``."""
    parser.add_argument("-o", "--output", metavar="FILE", help=output)
    parser.add_argument("--format", choices=list(formats), help=fmt)


def add_flow_timeouts(
    parser: argparse.ArgumentParser, seconds: Callable[[str], float], *, when: str = ""
) -> None:
    """--idle-timeout and --active-timeout; ``when`` follows "without packets"."""
    parser.add_argument(
        "--idle-timeout",
        type=seconds,
        default=120.0,
        metavar="SECONDS",
        help=f"close a flow after this long without packets{when} (default: 120)",
    )
    parser.add_argument(
        "--active-timeout",
        type=seconds,
        default=1800.0,
        metavar="SECONDS",
        help="close a flow this long after its first packet and start a new one (default: 1800)",
    )


def add_quiet(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=help)


def add_delivery(parser: argparse.ArgumentParser, *, alerts: str, spool_dir: str) -> None:
    """Where else alerts are sent as they are raised (scan, live, nightly): --syslog
    and its TLS files, --webhook with its token file and spool. ``alerts``:
    which alerts ("alerts", "new alerts"); ``spool_dir``: --spool-dir's help."""
    parser.add_argument(
        "--syslog",
        metavar="TARGET",
        action="append",
        help=f"also send {alerts} as RFC 5424 syslog: 'local' (/dev/log), a Unix socket "
        "path (/run/...), HOST[:PORT] (UDP), tcp://HOST[:PORT] (RFC 6587, octet counting) "
        "or tls://HOST[:PORT] (RFC 5425; port 6514 by default); give it again for more "
        "collectors (each gets every alert)",
    )
    parser.add_argument(
        "--syslog-ca",
        metavar="FILE",
        help="with tls://: check the collector's certificate against the CA certificate(s) "
        "in FILE (PEM) instead of the system's store; its name must match HOST either way",
    )
    parser.add_argument(
        "--syslog-cert",
        metavar="FILE",
        help="with tls://: a client certificate (PEM) for a collector that asks for one",
    )
    parser.add_argument(
        "--syslog-key",
        metavar="FILE",
        help="the --syslog-cert's private key (PEM; default: in the --syslog-cert file)",
    )
    parser.add_argument(
        "--webhook",
        metavar="URL",
        help=f"also POST {alerts} to URL (http:// or https://, the server's certificate "
        "checked against the system's store): ECS JSON, one alert a line "
        "(application/x-ndjson); retried with backoff, alerts not yet taken kept in the spool",
    )
    parser.add_argument(
        "--webhook-token-file",
        metavar="FILE",
        help="send the token in FILE as 'Authorization: Bearer TOKEN' (a file: the command "
        "line is visible to every user, in ps)",
    )
    parser.add_argument("--webhook-token", nargs="?", action=_TokenRefused, help=argparse.SUPPRESS)
    parser.add_argument("--spool-dir", metavar="DIR", help=spool_dir)
    parser.add_argument(
        "--spool-max",
        type=number(float, "megabytes", lambda v: v > 0, "be more than 0"),
        default=100.0,
        metavar="MB",
        help="the most the spool holds of alerts the receiver has not taken (default: 100); "
        "when full, new alerts are not kept for the webhook, said in one line",
    )


class _TokenRefused(argparse.Action):
    """--webhook-token on the command line: refused (without echoing it), and
    not taken as short for --webhook-token-file either."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.error(
            "--webhook-token: not on the command line (every user sees it, in ps): put the "
            "token in a file only the sensor's user can read and give --webhook-token-file FILE"
        )


def delivery_problem(args: argparse.Namespace, *, spool_needed: bool) -> bool:
    """A usage mistake in the delivery options, said: the command stops (exit 2).
    ``spool_needed``: --webhook needs --spool-dir (no default place)."""
    problem = None
    if (args.syslog_ca or args.syslog_cert or args.syslog_key) and not any(
        target.startswith("tls://") for target in args.syslog or ()
    ):
        problem = "--syslog-ca, --syslog-cert and --syslog-key are for --syslog tls://HOST[:PORT]"
    elif not args.webhook and (args.webhook_token_file or args.spool_dir):
        which = "--webhook-token-file" if args.webhook_token_file else "--spool-dir"
        problem = f"{which} is for a webhook: give its URL with --webhook URL"
    elif args.webhook and spool_needed and not args.spool_dir:
        problem = (
            "--webhook: give the spool with --spool-dir DIR (alerts the receiver has not "
            "taken wait there, also across a restart)"
        )
    if problem:
        say(problem)
        return True
    return False


def syslog_of(args: argparse.Namespace) -> AlertSender | None:
    """The --syslog senders as one (each connected: a TLS collector's certificate
    is checked now), or None. The TLS files are for every tls:// target."""
    if not args.syslog:
        return None
    from ..alerts.delivery import Deliveries
    from ..alerts.stream import SyslogSender

    senders: list[SyslogSender] = []
    try:
        for target in args.syslog:
            tls = target.startswith("tls://")
            senders.append(SyslogSender(target, ca=args.syslog_ca if tls else None,
                                        cert=args.syslog_cert if tls else None,
                                        key=args.syslog_key if tls else None))  # fmt: skip
    except BaseException:
        for sender in senders:
            sender.close()
        raise
    return Deliveries.of(*senders)


def webhook_token(args: argparse.Namespace) -> str | None:
    """The --webhook-token-file's token (read before privileges are dropped)."""
    if not args.webhook_token_file:
        return None
    from ..alerts.webhook import read_token

    return read_token(args.webhook_token_file)


def webhook_of(
    args: argparse.Namespace, token: str | None, spool_dir: str | None
) -> WebhookSender | None:
    """The --webhook sender on its spool (opened, and what an earlier run left
    in it sent first), or None."""
    if not args.webhook or not spool_dir:
        return None
    from ..alerts.webhook import open_webhook

    return open_webhook(args.webhook, spool_dir, token=token, max_bytes=int(args.spool_max * 2**20))


def senders_of(args: argparse.Namespace, spool_dir: str | None) -> AlertSender | None:
    """Where the command sends alerts besides its own output (scan, nightly):
    the --syslog collector (reached, a TLS certificate checked, now) and the
    --webhook on ``spool_dir``, as one sender; None for neither. (live opens
    the two apart: its spool is opened after privileges are dropped.)"""
    from ..alerts.delivery import Deliveries

    syslog = syslog_of(args)
    try:
        webhook = webhook_of(args, webhook_token(args), spool_dir)
    except BaseException:
        if syslog is not None:
            syslog.close()
        raise
    return Deliveries.of(syslog, webhook)
