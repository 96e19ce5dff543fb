"""Arguments more than one command takes, defined once."""

from __future__ import annotations

import argparse
import re

from .console import worker_count


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


def sha256_hex(text: str) -> str:
    """64 hexadecimal digits, lower-cased."""
    value = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a SHA-256 (64 hexadecimal digits)")
    return value
