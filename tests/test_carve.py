"""`egress-detector carve` against tshark: the carved file holds exactly the
frames tshark selects for the chosen flows (their bytes, lengths and times),
in capture order.

The reference takes tshark's per-frame fields (IP reassembly off, so a first
fragment shows its ports), gives each later fragment its first fragment's
ports (same addresses, protocol and identification), cuts each 5-tuple's
frames where they are silent for more than the idle timeout, and picks the
flows; the expected frames are then read from the original file by frame
number with tests/naive.py's record reader, independently of ours.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from detector.forensics.carve import parse_time

from corpus import PCAPS, needs_corpus
from naive import community_id as naive_community_id
from naive import read_records

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
GOLDEN = ROOT / "tests" / "golden" / "sample-incident.alerts.jsonl"
IDLE_NS = 120 * 1_000_000_000

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

FIELDS = ["frame.number", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
          "ip.proto", "ipv6.nxt", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
          "icmp.type", "icmpv6.type", "icmp.code", "icmpv6.code", "ip.id", "ip.frag_offset",
          "ip.flags.mf", "ipv6.fraghdr.ident", "ipv6.fraghdr.offset", "ipv6.fraghdr.more",
          "ipv6.fraghdr.nxt"]  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def tshark_frames(path: Path) -> list[dict]:
    """One dict per IP frame: number, time (ns), the outer 5-tuple, fragment
    fields. Tunnels and ICMP errors list several headers; the first is the outer."""
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE",
         "-o", "ipv6.defragment:FALSE", "-T", "fields", "-E", "separator=\t",
         *[a for f in FIELDS for a in ("-e", f)]],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    frames = []
    for line in proc.stdout.splitlines():
        raw = dict(zip(FIELDS, line.split("\t"), strict=False))
        first = {k: v.split(",")[0] for k, v in raw.items()}
        src = first["ip.src"] or first["ipv6.src"]
        if not src:
            continue
        v6 = not first["ip.src"]
        if v6 and first["ipv6.fraghdr.nxt"]:
            proto = int(first["ipv6.fraghdr.nxt"])
        else:
            proto = int(first["ip.proto"] or first["ipv6.nxt"] or 0)
        sport = first["tcp.srcport"] or first["udp.srcport"] or first["icmp.type"] or first["icmpv6.type"]
        dport = first["tcp.dstport"] or first["udp.dstport"] or first["icmp.code"] or first["icmpv6.code"]
        if v6:
            frag_id, offset, more = first["ipv6.fraghdr.ident"], first["ipv6.fraghdr.offset"], first["ipv6.fraghdr.more"]
        else:
            frag_id, offset, more = first["ip.id"], first["ip.frag_offset"], first["ip.flags.mf"]
        offset_n = int(offset or 0)
        more_b = more in ("1", "True")
        frames.append({
            "number": int(first["frame.number"]),
            "ts": _epoch_ns(first["frame.time_epoch"]),
            "src": src, "dst": first["ip.dst"] or first["ipv6.dst"], "proto": proto,
            "sport": int(sport or 0), "dport": int(dport or 0),
            "frag": "later" if offset_n else ("first" if more_b else ""),
            "frag_key": (src, first["ip.dst"] or first["ipv6.dst"], proto, int(frag_id or "0", 0)),
        })  # fmt: skip
    return frames


def community_id(src: str, dst: str, proto: int, sport: int, dport: int) -> str:
    """tests/naive.py's Community ID of a flow seen from ``src``."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return naive_community_id(int(a), int(b), a.version, proto, sport, dport)


def _epoch_ns(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


ICMP_PAIRS = {1: {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10},
              58: {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133, 135: 136,
                   136: 135, 139: 140, 140: 139, 144: 145, 145: 144}}  # fmt: skip


def reference_flows(frames: list[dict]) -> list[list[dict]]:
    """tshark's frames as flows: later fragments take their first fragment's
    ports; ICMP by type pair; one 5-tuple's frames cut at silences > 120 s."""
    ports: dict[tuple, tuple[int, int]] = {}
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for f in frames:
        sport, dport = f["sport"], f["dport"]
        if f["frag"] == "first":
            ports[f["frag_key"]] = (sport, dport)
        elif f["frag"] == "later" and f["frag_key"] in ports:
            sport, dport = ports[f["frag_key"]]
        if f["proto"] in ICMP_PAIRS and sport in ICMP_PAIRS[f["proto"]]:
            dport = ICMP_PAIRS[f["proto"]][sport]
        ends = sorted([(f["src"], sport), (f["dst"], dport)])
        by_key[(f["proto"], *ends)].append(f)
    flows = []
    for group in by_key.values():
        group.sort(key=lambda f: f["ts"])
        current = [group[0]]
        for f in group[1:]:
            if f["ts"] - current[-1]["ts"] > IDLE_NS:
                flows.append(current)
                current = []
            current.append(f)
        flows.append(current)
    return flows


def expected_records(path: Path, numbers: set[int]) -> list[tuple[int, int, bytes]]:
    """(time ns, wire length, bytes) of the frames ``numbers``, in file order."""
    return [(r.ts_ns, r.wire_len, r.data) for i, r in enumerate(read_records(path), 1)
            if i in numbers]  # fmt: skip


def carved_records(path: Path) -> list[tuple[int, int, bytes]]:
    return [(r.ts_ns, r.wire_len, r.data) for r in read_records(path)]


@pytest.fixture(scope="module")
def sample_frames() -> list[dict]:
    return tshark_frames(SAMPLE)


@needs_tshark
def test_every_sample_alert_carves_exactly_what_tshark_selects(tmp_path, sample_frames):
    """Each golden alert of the bundled sample, by event.id from a JSON-lines
    file: the frames of every flow between its host and other side with a
    frame in its span, and nothing else; from the sample, and from the sample
    cut into a day of 8 files (one gzip-compressed) given out of order."""
    docs = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    alerts = tmp_path / "alerts.jsonl"
    with alerts.open("w") as out:
        for i, doc in enumerate(docs):
            doc["event"]["id"] = f"alert-{i}"
            out.write(json.dumps(doc) + "\n")
    flows = reference_flows(sample_frames)
    assert len(docs) >= 3
    from test_many_files import split_sample

    parts = split_sample(tmp_path, parts=8)
    day_files = [parts[i] for i in (5, 0, 7, 2, 1, 6, 3, 4)]
    for i, doc in enumerate(docs):
        host, peer = doc["source"]["ip"], doc["destination"]["ip"]
        start = parse_time(doc["event"]["start"])
        end = parse_time(doc["event"]["end"]) + 999_999
        numbers = {
            f["number"]
            for flow in flows
            if {flow[0]["src"], flow[0]["dst"]} == {host, peer}
            and any(start <= f["ts"] <= end for f in flow)
            for f in flow
        }
        want = expected_records(SAMPLE, numbers)
        # The sample as one file, and as a day of 8 files given out of order.
        for inputs in ([SAMPLE], day_files):
            out = tmp_path / f"alert-{i}-{len(inputs)}.pcap"
            proc = run("carve", "--event-id", f"alert-{i}", "--alerts", str(alerts), "-o",
                       str(out), *map(str, inputs))  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            assert numbers and carved_records(out) == want, (doc["message"], len(inputs))


@needs_tshark
def test_community_id_carves_the_upload(tmp_path, sample_frames):
    """The 62.7 MB upload by its Community ID: 62,173 frames (41,447 sent,
    20,726 received, as the golden alert counts them), bytes and times equal."""
    cid = "1:LRmjWdENZLfImLuDXf0RUbRTxtk="
    out = tmp_path / "upload.pcap"
    proc = run("carve", "--community-id", cid, "-o", str(out), str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    numbers = {
        f["number"] for f in sample_frames
        if f["proto"] == 6 and {(f["src"], f["sport"]), (f["dst"], f["dport"])}
        == {("10.8.40.31", 55523), ("203.0.113.140", 443)}
    }  # fmt: skip
    assert len(numbers) == 41_447 + 20_726
    assert carved_records(out) == expected_records(SAMPLE, numbers)
    assert out.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")  # pcap, nanosecond times


def test_headers_only_and_pcapng_output(tmp_path):
    """--headers-only keeps each TCP packet up to the end of its TCP header
    (Ethernet 14 + IPv4 20 + TCP data offset), the wire length unchanged;
    a .pcapng name writes pcapng with the same packets."""
    cid = "1:LRmjWdENZLfImLuDXf0RUbRTxtk="
    full, cut, ng = tmp_path / "full.pcap", tmp_path / "cut.pcap", tmp_path / "cut.pcapng"
    assert run("carve", "--community-id", cid, "-o", str(full), str(SAMPLE)).returncode == 0
    assert run("carve", "--community-id", cid, "--headers-only", "-o", str(cut),
               str(SAMPLE)).returncode == 0  # fmt: skip
    assert run("carve", "--community-id", cid, "--headers-only", "-o", str(ng),
               str(SAMPLE)).returncode == 0  # fmt: skip
    whole, headers = read_records(full), read_records(cut)
    assert len(whole) == len(headers) == 62_173
    for w, h in zip(whole, headers, strict=True):
        ihl = (w.data[14] & 0x0F) * 4
        tcp = (w.data[14 + ihl + 12] >> 4) * 4
        assert h.data == w.data[: 14 + ihl + tcp]
        assert (h.ts_ns, h.wire_len) == (w.ts_ns, w.wire_len)
    assert ng.read_bytes()[:4] == bytes.fromhex("0a0d0d0a")
    assert [(r.ts_ns, r.wire_len, r.data) for r in read_records(ng)] == [
        (r.ts_ns, r.wire_len, r.data) for r in headers
    ]


def test_help_warns_of_personal_data():
    proc = run("carve", "--help")
    assert proc.returncode == 0
    assert "personal data" in proc.stdout and "--headers-only" in proc.stdout


def test_unknown_event_id_is_one_line(tmp_path):
    alerts = tmp_path / "a.jsonl"
    alerts.write_text('{"event": {"id": "x"}}\n')
    proc = run("carve", "--event-id", "nope", "--alerts", str(alerts), "-o",
               str(tmp_path / "o.pcap"), str(SAMPLE))  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"egress-detector: error: --alerts {alerts}: no alert has event.id nope"
    ]


CORPUS_CASES = [
    "chrissanders__ip_frag_source.pcapng",
    "chrissanders__ipv6_fragments.pcapng",
    "chrissanders__http_ip4and6.pcapng",
    "chrissanders__ek_to_cryptowall4.pcapng",
    "dpkt__http.pcap",
    "ndpi__bittorrent.pcap",
]


@needs_corpus
@needs_tshark
@pytest.mark.parametrize("name", CORPUS_CASES)
def test_corpus_flows_by_community_id(tmp_path, name):
    """On corpus captures (IPv4 and IPv6 fragments among them), each of the
    three largest flows by its Community ID: exactly tshark's frames of it."""
    path = PCAPS / name
    flows = reference_flows(tshark_frames(path))
    flows.sort(key=lambda flow: (-len(flow), flow[0]["number"]))
    checked = 0
    for flow in flows[:3]:
        f = flow[0]
        if f["frag"] == "later":
            continue  # a fragment whose first was never seen: its own flow, ports unknown
        sport, dport = f["sport"], f["dport"]
        cid = community_id(f["src"], f["dst"], f["proto"], sport, dport)
        # Every flow of that Community ID (a 5-tuple reused after a silence too).
        numbers = {g["number"] for other in flows for g in other
                   if community_id(other[0]["src"], other[0]["dst"], other[0]["proto"],
                                   other[0]["sport"], other[0]["dport"]) == cid
                   and other[0]["frag"] != "later"}  # fmt: skip
        out = tmp_path / f"{checked}.pcapng"
        proc = run("carve", "--community-id", cid, "-o", str(out), str(path))
        assert proc.returncode == 0, proc.stderr
        assert carved_records(out) == expected_records(path, numbers), (name, cid)
        checked += 1
    assert checked


def test_gzip_and_several_files_keep_capture_order(tmp_path):
    """The sample cut in two files (one gzip-compressed) carves to the same
    packets as the whole file."""
    records = read_records(SAMPLE)
    raw = gzip.decompress(SAMPLE.read_bytes())
    header = raw[:24]
    # Cut between records: walk the record headers.
    cut, at, count = None, 24, 0
    while at < len(raw):
        caplen = int.from_bytes(raw[at + 8 : at + 12], "little")
        count += 1
        at += 16 + caplen
        if count == len(records) // 2:
            cut = at
            break
    assert cut is not None
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap.gz"
    first.write_bytes(raw[:cut])
    second.write_bytes(gzip.compress(header + raw[cut:]))
    cid = "1:u9Lw0afMvbhDXYyrw4+OTbHuMLo="
    whole, parts = tmp_path / "whole.pcap", tmp_path / "parts.pcap"
    assert run("carve", "--community-id", cid, "-o", str(whole), str(SAMPLE)).returncode == 0
    proc = run("carve", "--community-id", cid, "-o", str(parts), str(first), str(second))
    assert proc.returncode == 0, proc.stderr
    assert carved_records(parts) == carved_records(whole)
    assert len(carved_records(whole)) > 100


def test_nightly_state_reads_only_the_files_that_hold_the_alert(tmp_path, monkeypatch):
    """A day in 24 files taken in by the nightly's state: carving the upload's
    alert by event.id through --state opens only the files whose packets reach
    within an hour of its span (and no other: the gzip one whole, the others
    as the byte ranges of their index, tests/test_carve_index.py), and writes
    the same packets as carving it from all 24."""
    from test_many_files import split_sample

    from detector.capture import files as capture_files
    from detector.cli.main import main
    from detector.nightly.discover import fingerprint
    from detector.nightly.state import NightlyState

    parts = split_sample(tmp_path, parts=24)
    state_path = tmp_path / "nightly.db"
    state = NightlyState(state_path)
    for part in parts:
        state.take_file(fingerprint(part), 0)
    alerts = tmp_path / "nightly.jsonl"
    docs = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    docs[0]["event"]["id"] = "upload"
    alerts.write_text("".join(json.dumps(d) + "\n" for d in docs))
    with state.transaction() as db:
        db.execute("INSERT INTO outputs VALUES (?, ?)", (str(alerts), alerts.stat().st_size))
    spans = {str(f.path): (f.first_ns, f.last_ns) for f in state.files()}
    state.close()

    start = parse_time(docs[0]["event"]["start"]) - 3600 * 10**9
    end = parse_time(docs[0]["event"]["end"]) + 3600 * 10**9
    holding = {p for p, (first, last) in spans.items() if last >= start and first <= end}
    assert 2 <= len(holding) < 24

    opened: list[str] = []
    real_open = capture_files.CaptureReader._open

    def counting_open(self):  # type: ignore[no-untyped-def]
        opened.append(self.path)
        return real_open(self)

    monkeypatch.setattr(capture_files.CaptureReader, "_open", counting_open)
    from detector.forensics import carve as carve_module

    def counting_range_open(path, mode):  # type: ignore[no-untyped-def]
        opened.append(path)
        return open(path, mode)

    monkeypatch.setattr(carve_module, "open_capture", counting_range_open)
    by_state = tmp_path / "by-state.pcap"
    assert main(["carve", "-q", "--event-id", "upload", "--state", str(state_path),
                 "-o", str(by_state)]) == 0  # fmt: skip
    assert set(opened) == holding
    everything = tmp_path / "everything.pcap"
    assert main(["carve", "-q", "--event-id", "upload", "--alerts", str(alerts),
                 "-o", str(everything), *map(str, parts)]) == 0  # fmt: skip
    assert carved_records(by_state) == carved_records(everything)
    assert len(carved_records(by_state)) == 62_173


def test_scan_table_prints_each_alerts_carve_command(tmp_path):
    """scan's table gives every alert the carve command of its packets; the
    critical upload's, run on the sample, writes its 62,173 packets."""
    import shlex

    proc = run("scan", "-q", "--policy", str(ROOT / "captures" / "sample-policy.toml"),
               str(SAMPLE))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    commands = [line.split("packets: ", 1)[1] for line in lines if line.startswith("    packets: ")]
    alerts = [line for line in lines if line[:1].isupper() and not line.startswith("SEVERITY")]
    assert len(commands) == len([a for a in alerts if "alert(s) for" not in a]) >= 3
    words = shlex.split(commands[0])
    assert words[:4] == ["egress-detector", "carve", "--host", "10.8.40.31"]
    assert words[-1] == "CAPTURE..."
    done = subprocess.run([sys.executable, "-m", "detector", *words[1:-1], str(SAMPLE)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(read_records(tmp_path / "isolated-egress-10.8.40.31.pcap")) == 62_173


def test_daily_report_command_carves_the_alert_through_the_state(tmp_path, monkeypatch):
    """The daily report's command for an alert (carve --event-id ID --state
    STATE.db) finds it by the event.id every output gives it (scan's and the
    nightly's JSON lines) and writes its packets."""
    import datetime as dt

    from test_many_files import split_sample

    from detector.alerts.record import to_ecs
    from detector.cli.main import main
    from detector.nightly.discover import fingerprint
    from detector.nightly.state import NightlyState
    from detector.pipelines.scan import scan_captures
    from detector.policy import load_policy
    from detector.report import build_day_report, render_html

    policy = load_policy(str(ROOT / "captures" / "sample-policy.toml"))
    result = scan_captures([SAMPLE], policy)
    upload = next(a for a in result.alerts if a.destination_ip == "203.0.113.140")
    page = render_html(build_day_report(result, policy, day=dt.date(2026, 2, 4), files=[],
                                        processing_seconds=1.0))  # fmt: skip
    command = f"egress-detector carve --event-id {upload.ecs_id} --state STATE.db"
    assert command in page
    parts = split_sample(tmp_path, parts=6)
    state_path = tmp_path / "nightly.db"
    state = NightlyState(state_path)
    for part in parts:
        state.take_file(fingerprint(part), 0)
    alerts = tmp_path / "nightly.jsonl"
    alerts.write_text("".join(json.dumps(to_ecs(a, policy.zone, policy.site_name)) + "\n"
                              for a in result.alerts))  # fmt: skip
    with state.transaction() as db:
        db.execute("INSERT INTO outputs VALUES (?, ?)", (str(alerts), alerts.stat().st_size))
    state.close()
    out = tmp_path / "upload.pcap"
    assert main(["carve", "-q", "--event-id", upload.ecs_id, "--state", str(state_path),
                 "-o", str(out)]) == 0  # fmt: skip
    assert len(read_records(out)) == 62_173


@needs_corpus
@needs_tshark
def test_several_interfaces_keep_their_own_interface_in_pcapng(tmp_path):
    """A pcapng with two Ethernet interfaces: the host's flows on both, as
    tshark selects them; a .pcapng output keeps the packets on two interfaces
    (as the input had them), a .pcap output holds the same packets."""
    path = PCAPS / "zeek__pcapng-multi-interface.pcapng"
    host = "1.1.1.1"
    flows = reference_flows(tshark_frames(path))
    numbers = {f["number"] for flow in flows if host in (flow[0]["src"], flow[0]["dst"])
               for f in flow}  # fmt: skip
    want = expected_records(path, numbers)
    original = read_records(path)
    want_interfaces = [r.interface for i, r in enumerate(original, 1) if i in numbers]
    assert len(set(want_interfaces)) == 2
    ng, plain = tmp_path / "host.pcapng", tmp_path / "host.pcap"
    for out in (ng, plain):
        proc = run("carve", "--host", host, "-o", str(out), str(path))
        assert proc.returncode == 0, proc.stderr
        assert carved_records(out) == want
    carved = read_records(ng)
    # The same partition into interfaces (numbered in order of first use).
    first_use = {i: n for n, i in enumerate(dict.fromkeys(want_interfaces))}
    assert [r.interface for r in carved] == [first_use[i] for i in want_interfaces]


def test_unwritable_output_is_said_before_reading(tmp_path):
    """-o in a directory that does not exist: one line, exit 2, and no
    capture is read (a missing capture would otherwise be said first)."""
    out = tmp_path / "no-such-dir" / "x.pcap"
    proc = run("carve", "--host", "10.8.40.31", "-o", str(out), str(SAMPLE))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"egress-detector: error: cannot write {out}: No such file or directory; "
        "choose a writable path"
    ]
