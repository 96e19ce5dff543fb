"""Who made a network card: the vendor of a MAC address from its OUI.

The table ``detector/data/oui.tsv.gz`` holds the IEEE's MA-L assignments
(the first 24 bits of a MAC) with the registrant's name, shortened by dropping
legal suffixes ("Co., Ltd.", "Inc.", "GmbH"). It is built offline from
Wireshark's ``manuf`` file (Debian package ``wireshark-common``, which merges
the IEEE registries ``oui.csv``, ``mam.csv``, ``oui36.csv``), by this module::

    python -m detector.oui /usr/share/wireshark/manuf

The source file's IEEE dates go into the table's first line, which
:func:`table_source` reads back for the docs. MA-M and MA-S blocks (28 and
36 bits) are not kept: such a card is named by its MA-L's registrant (often
"IEEE Registration Authority").

A locally administered address (bit 0x02 of the first octet set: a phone's or
laptop's randomised "private" address, a virtual machine, a USB tether) has no
vendor; :func:`vendor` says so, because on an isolated segment that alone is
worth a look.
"""

from __future__ import annotations

import gzip
import re
import sys
from functools import cache
from importlib import resources

TABLE = "oui.tsv.gz"
LOCAL = "locally administered (random or virtual, no vendor)"
UNKNOWN = "vendor unknown"

# Legal forms dropped from the end of a registrant's name (repeatedly: "Co., Ltd.").
_SUFFIX = re.compile(
    r"[\s,.]*\b(co|corp|corporation|company|inc|incorporated|ltd|limited|llc|gmbh|ag|"
    r"s\.?a|s\.?r\.?l|b\.?v|n\.?v|a/s|ab|oy|pte|pty|plc|kg|k\.?k|sas|spa|s\.?p\.?a)\b\.?\s*$",
    re.IGNORECASE,
)


def short_name(name: str) -> str:
    """'Hon Hai Precision Ind. Co.,Ltd.' → 'Hon Hai Precision Ind'."""
    name = " ".join(name.split())
    while True:
        shorter = _SUFFIX.sub("", name).rstrip(" ,.")
        if shorter == name or not shorter:
            return name
        name = shorter


def mac_text(mac: int) -> str:
    """48-bit integer → '00:1b:21:3a:4f:10'."""
    raw = f"{mac & 0xFFFF_FFFF_FFFF:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def parse_mac(text: str) -> int | None:
    """'00:1B:21:3A:4F:10' or '00-1b-21-3a-4f-10' → its 48-bit integer; None if not one."""
    text = text.strip().lower()
    if not _MAC.match(text):
        return None
    return int(text.replace(":", "").replace("-", ""), 16)


@cache
def _vendors() -> dict[int, str]:
    data = resources.files("detector").joinpath("data", TABLE).read_bytes()
    table: dict[int, str] = {}
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        prefix, _, name = line.partition("\t")
        table[int(prefix, 16)] = name
    return table


def vendor(mac: int) -> str:
    """The vendor of ``mac`` (a 48-bit integer) in words."""
    if (mac >> 40) & 0x02:
        return LOCAL
    return _vendors().get(mac >> 24, UNKNOWN)


def table_source() -> str:
    """The first line of the shipped table: where it comes from, and its dates."""
    data = resources.files("detector").joinpath("data", TABLE).read_bytes()
    return gzip.decompress(data).decode("utf-8").split("\n", 1)[0].lstrip("# ")


def build(manuf_path: str) -> bytes:
    """The gzipped table from a Wireshark ``manuf`` file: MA-L lines only."""
    dates: list[str] = []
    rows: dict[str, str] = {}
    source = None
    with open(manuf_path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("# https://standards-oui.ieee.org/"):
                source = line[2:].strip().rstrip(":")
            elif source and line.startswith("#   Last-Modified:"):
                dates.append(f"{source.rsplit('/', 1)[-1]} {line.split(':', 1)[1].strip()}")
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            prefix = fields[0].strip()
            if not re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){2}", prefix):
                continue  # an MA-M/MA-S block or a well-known address
            name = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
            rows[prefix.replace(":", "").lower()] = short_name(name)
    head = f"# IEEE MA-L via Wireshark manuf ({'; '.join(dates) or 'undated'})"
    body = "\n".join(f"{prefix}\t{name}" for prefix, name in sorted(rows.items()))
    return gzip.compress(f"{head}\n{body}\n".encode(), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    """python -m detector.oui MANUF [OUT]: write the table (default: the package's)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) > 2:
        print("usage: python -m detector.oui /usr/share/wireshark/manuf [OUT]", file=sys.stderr)
        return 2
    out = args[1] if len(args) > 1 else str(resources.files("detector").joinpath("data", TABLE))
    data = build(args[0])
    with open(out, "wb") as file:
        file.write(data)
    print(f"{out}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
