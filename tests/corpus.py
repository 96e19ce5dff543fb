"""The shared capture corpus and its tshark ground truth.

The corpus sits beside the project: /work/shared/corpus when the project is at
/work/main, ``../shared/corpus`` relative to a CI clone.  ``EGRESS_CORPUS`` in
the environment overrides the place.  Tests that need it should skip when
:data:`CORPUS` does not exist (``pytest.mark.skipif(not have_corpus(), ...)``).

Ground truth: ``truth/<file>.fields.tsv``, written by
``tshark -n -T fields -E header=y`` with the columns of :data:`TRUTH_COLUMNS`.
A column holds a comma-separated list when a packet has several instances of a
field (tunnels, ICMP errors quoting a header, QinQ); the first item is the one
the dissector met first, which is the outer header within one protocol.

``python tests/corpus.py [names...]`` compares tests/naive.py with the truth
and prints one line per file (OK, or the disagreeing fields with counts and the
first examples).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

CORPUS = Path(
    os.environ.get("EGRESS_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)
PCAPS = CORPUS / "pcaps"
TRUTH = CORPUS / "truth"

TRUTH_COLUMNS = [
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.proto",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "tcp.flags",
    "vlan.id",
]

# next-header values that are IPv6 extension headers: tshark's ipv6.nxt is the
# value in the fixed header, so with these the transport protocol is not in it
IPV6_EXT = {0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254}
NO_VLAN = 0xFFFF


def have_corpus() -> bool:
    return PCAPS.is_dir() and TRUTH.is_dir()


# The one skip marker for tests that need the corpus (CI has it; a user's fresh
# clone may not).
needs_corpus = pytest.mark.skipif(
    not have_corpus(), reason=f"the shared capture corpus is not at {CORPUS} (set EGRESS_CORPUS)"
)


def corpus_files() -> list[Path]:
    """Captures that have a fields.tsv truth file, sorted by name."""
    if not have_corpus():
        return []
    return sorted(p for p in PCAPS.iterdir() if (TRUTH / (p.name + ".fields.tsv")).exists())


@dataclass(frozen=True)
class TruthPacket:
    number: int
    ts_ns: int
    wire_len: int
    cap_len: int
    ip_src: tuple[str, ...]
    ip_dst: tuple[str, ...]
    ipv6_src: tuple[str, ...]
    ipv6_dst: tuple[str, ...]
    ip_proto: tuple[int, ...]
    ipv6_nxt: tuple[int, ...]
    tcp_sport: tuple[int, ...]
    tcp_dport: tuple[int, ...]
    udp_sport: tuple[int, ...]
    udp_dport: tuple[int, ...]
    tcp_flags: tuple[int, ...]
    vlan: tuple[int, ...]


def parse_epoch(text: str) -> int:
    """tshark's frame.time_epoch to integer ns, exactly.

    tshark prints ``sec.fraction`` with the fraction as the file stores it, so an
    out-of-range microsecond value shows as e.g. ``1418145370.1000000000``
    (10 digits = 1 s); a fraction longer than 9 digits is therefore a count of
    ns, a shorter one is right-padded."""
    neg = text.startswith("-")
    sec, _, frac = text.lstrip("-").partition(".")
    ns = int(frac.ljust(9, "0")) if len(frac) <= 9 else int(frac)
    value = int(sec) * 1_000_000_000 + ns
    return -value if neg else value


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def _ints(text: str, base: int = 10) -> tuple[int, ...]:
    return tuple(int(x, base) for x in text.split(",") if x) if text else ()


def load_truth(name: str | Path) -> list[TruthPacket]:
    name = Path(name).name
    lines = (TRUTH / (name + ".fields.tsv")).read_text().splitlines()
    header = lines[0].split("\t")
    assert header == TRUTH_COLUMNS, header
    out = []
    for line in lines[1:]:
        cells = line.split("\t")
        c = dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=False))
        out.append(
            TruthPacket(
                number=int(c["frame.number"]),
                ts_ns=parse_epoch(c["frame.time_epoch"]),
                wire_len=int(c["frame.len"]),
                cap_len=int(c["frame.cap_len"]),
                ip_src=_split(c["ip.src"]),
                ip_dst=_split(c["ip.dst"]),
                ipv6_src=_split(c["ipv6.src"]),
                ipv6_dst=_split(c["ipv6.dst"]),
                ip_proto=_ints(c["ip.proto"]),
                ipv6_nxt=_ints(c["ipv6.nxt"]),
                tcp_sport=_ints(c["tcp.srcport"]),
                tcp_dport=_ints(c["tcp.dstport"]),
                udp_sport=_ints(c["udp.srcport"]),
                udp_dport=_ints(c["udp.dstport"]),
                tcp_flags=_ints(c["tcp.flags"], 16),
                vlan=_ints(c["vlan.id"]),
            )
        )
    return out


@functools.cache
def _norm(addr: str) -> str:
    return str(ipaddress.ip_address(addr))


@functools.cache
def _addr_text(addr: int, version: int) -> str:
    if version == 4:
        return str(ipaddress.IPv4Address(addr & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(addr))


def comparable(t: TruthPacket, p) -> dict[str, object]:
    """The fields of naive/kernel packet ``p`` that tshark's row ``t`` pins down,
    as {Packet attribute (or pseudo-field): expected value}.

    * ``ts_ns``, ``wire_len``, ``cap_len``: always.
    * ``ip`` = (ip_version, src text, dst text) of the *outer* IP header:
      - no ip.* and no ipv6.* field: tshark found no IP, expect ``(0, None, None)``;
      - only one family present: its first item is the outer header;
      - both families present (4in6 / 6in4 tunnels), the fields do not say which
        is outer: the packet's own family is accepted and its first item compared.
    * ``proto``: outer IPv4 ``ip.proto``; outer IPv6 ``ipv6.nxt`` unless that is an
      extension header (then not comparable: tshark has no field for the final
      next header).
    * ``ports`` (sport, dport): only when the packet is not a fragment
      (``p.frag == 0``: tshark reassembles, so a first fragment has no transport
      fields and the last one has the reassembled ones) and the outer protocol is
      TCP/UDP; the first tcp.*/udp.* item (the outer transport header); absent
      fields (header cut short) mean (0, 0).
    * ``tcp_flags``: with the ports, for TCP; absent means 0.
    * ``vlan``: first vlan.id, or 0xFFFF when there is none.  Known blind spots of
      tshark's vlan.id: an 802.1ad (0x88a8) tag is dissected as ieee8021ad, not
      vlan, and a tag inside a tunnel is reported with no outer tag.
    """
    exp: dict[str, object] = {
        "ts_ns": t.ts_ns,
        "wire_len": t.wire_len,
        "cap_len": t.cap_len,
        "vlan": t.vlan[0] if t.vlan else NO_VLAN,
    }
    has4 = bool(t.ip_src or t.ip_dst)
    has6 = bool(t.ipv6_src or t.ipv6_dst)
    if not has4 and not has6:
        exp["ip"] = (0, None, None)
        return exp
    if has4 and has6:
        fam = p.ip_version if p.ip_version in (4, 6) else 4
    else:
        fam = 4 if has4 else 6
    if fam == 4:
        exp["ip"] = (
            4,
            _norm(t.ip_src[0]) if t.ip_src else None,
            _norm(t.ip_dst[0]) if t.ip_dst else None,
        )
        proto = t.ip_proto[0] if t.ip_proto else None
    else:
        exp["ip"] = (
            6,
            _norm(t.ipv6_src[0]) if t.ipv6_src else None,
            _norm(t.ipv6_dst[0]) if t.ipv6_dst else None,
        )
        proto = t.ipv6_nxt[0] if t.ipv6_nxt and t.ipv6_nxt[0] not in IPV6_EXT else None
    if proto is not None:
        exp["proto"] = proto
    elif fam == 6 and p.ip_version == 6 and p.proto in (6, 17):
        proto = p.proto  # after extension headers: judge the ports alone
    if proto in (6, 17) and p.frag == 0:
        if proto == 6:
            exp["ports"] = (
                (t.tcp_sport[0], t.tcp_dport[0]) if t.tcp_sport and t.tcp_dport else (0, 0)
            )
            exp["tcp_flags"] = t.tcp_flags[0] if t.tcp_flags else 0
        else:
            exp["ports"] = (
                (t.udp_sport[0], t.udp_dport[0]) if t.udp_sport and t.udp_dport else (0, 0)
            )
    return exp


def actual(p, fields) -> dict[str, object]:
    """The same pseudo-fields read from a packet (naive.Packet or anything with
    the same attributes)."""
    out = {}
    for f in fields:
        if f == "ip":
            out[f] = (
                (0, None, None)
                if p.ip_version == 0
                else (
                    p.ip_version,
                    _addr_text(p.src, p.ip_version),
                    _addr_text(p.dst, p.ip_version),
                )
            )
        elif f == "ports":
            out[f] = (p.sport, p.dport)
        else:
            out[f] = getattr(p, f)
    return out


@dataclass
class FileResult:
    name: str
    n_truth: int
    n_naive: int
    mismatches: Counter  # field -> number of packets
    examples: dict  # field -> [(frame number, expected, actual), ...]
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.n_truth == self.n_naive and not self.mismatches


def compare_packets(name: str, truth: list[TruthPacket], packets: list) -> FileResult:
    res = FileResult(name, len(truth), len(packets), Counter(), {})
    for t, p in zip(truth, packets, strict=False):  # counts are compared apart
        exp = comparable(t, p)
        act = actual(p, exp)
        for f in exp:
            if exp[f] != act[f]:
                res.mismatches[f] += 1
                ex = res.examples.setdefault(f, [])
                if len(ex) < 3:
                    ex.append((t.number, exp[f], act[f]))
    return res


def compare_file(path: Path) -> FileResult:
    import naive

    truth = load_truth(path.name)
    try:
        packets = naive.naive_packets(path)
    except Exception as exc:  # noqa: BLE001 -- reported, not hidden
        return FileResult(path.name, len(truth), 0, Counter(), {}, error=repr(exc))
    return compare_packets(path.name, truth, packets)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    files = corpus_files()
    if argv:
        files = [f for f in files if f.name in argv or any(a in f.name for a in argv)]
    n_ok = 0
    for f in files:
        r = compare_file(f)
        if r.ok:
            n_ok += 1
            print(f"OK   {r.name} ({r.n_truth} packets)")
            continue
        parts = []
        if r.error:
            parts.append("error " + r.error)
        if r.n_truth != r.n_naive:
            parts.append(f"count truth={r.n_truth} naive={r.n_naive}")
        for field, n in sorted(r.mismatches.items()):
            parts.append(f"{field}x{n} e.g. {r.examples[field][:2]}")
        print(f"DIFF {r.name}: " + "; ".join(parts))
    print(f"{n_ok} of {len(files)} files agree on every compared field")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
