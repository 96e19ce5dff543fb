"""Arguments more than one command takes, defined once."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .console import say, worker_count

if TYPE_CHECKING:
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
        help="pcap or pcapng files, optionally gzip-compressed; rotated files in time "
        "order; - reads a pcap stream from standard input",
    )


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
