"""carve --state reads byte ranges: the nightly's index of each uncompressed
file (per block: where its first record starts, its packets' time span; for
pcapng the section header and interface descriptions) lets carve read only
the stretch of a file whose packets reach within an hour of the alert.

A generated day in six files of four hours (pcap, or pcapng), background
traffic throughout and one alerted connection at 09:00-09:10: carving the
alert by event.id through the state writes exactly the frames tshark selects
for its flows (test_carve.py's reference), opens only the file that holds
the window, and the bytes it reads (counted through an instrumented file
object, not timed) stay within the blocks whose packets reach the window.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import test_nightly
from test_carve import (
    carved_records,
    expected_records,
    needs_tshark,
    reference_flows,
    tshark_frames,
)

from detector.capture import files as capture_files
from detector.cli.main import main
from detector.forensics import carve as carve_module
from detector.networks import address_pair
from detector.nightly import discover
from detector.nightly.discover import fingerprint
from detector.nightly.state import NightlyState

DAY = dt.datetime(2026, 2, 4, tzinfo=dt.UTC)
HOUR = 3600
NS = 1_000_000_000
BLOCK_SHIFT = 14  # 16 KiB index blocks: small files, several blocks each
HOST, PEER = "192.0.2.10", "198.51.100.7"


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def frame(src: str, dst: str, proto: int, sport: int, dport: int, payload: int) -> bytes:
    """Ethernet + IPv4 + UDP or TCP (ACK, with ``payload`` zero bytes)."""
    if proto == 6:
        transport = struct.pack(">HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    else:
        transport = struct.pack(">HHHH", sport, dport, 8 + payload, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(transport) + payload, 1, 0, 64, proto,
                     0, _ip(src), _ip(dst))  # fmt: skip
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + transport + b"\0" * payload


def day_packets() -> list[tuple[int, bytes]]:
    """(time ns, frame) of the whole day, in time order."""
    packets = []
    t0 = int(DAY.timestamp())
    for k in range(24 * HOUR // 5):  # background: a packet every 5 s, ten hosts
        host = f"192.0.2.{100 + k % 10}"
        packets.append(((t0 + 5 * k) * NS + 1000, frame(host, "203.0.113.9", 17, 5000 + k % 10,
                                                        53, 40)))  # fmt: skip
    start = t0 + 9 * HOUR
    for k in range(300):  # the alerted connection: 09:00-09:10, both ways
        packets.append(((start + 2 * k) * NS, frame(HOST, PEER, 6, 40000, 443, 400)))
        packets.append(((start + 2 * k + 1) * NS, frame(PEER, HOST, 6, 443, 40000, 0)))
    return sorted(packets, key=lambda p: p[0])


def write_pcap(path: Path, packets: list[tuple[int, bytes]]) -> None:
    out = io.BytesIO()
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, data in packets:
        out.write(struct.pack("<IIII", ts // NS, ts % NS // 1000, len(data), len(data)))
        out.write(data)
    path.write_bytes(out.getvalue())


def write_pcapng(path: Path, packets: list[tuple[int, bytes]]) -> None:
    """SHB, an IDB (Ethernet, microseconds), EPBs; a second IDB half way
    (interface 1, also Ethernet), whose packets follow it."""
    out = io.BytesIO()
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    out.write(struct.pack("<II", 0x0A0D0D0A, 12 + len(shb_body)) + shb_body)
    out.write(struct.pack("<I", 12 + len(shb_body)))

    def idb() -> None:
        body = struct.pack("<HHI", 1, 0, 65535)
        out.write(struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body)))

    idb()
    for i, (ts, data) in enumerate(packets):
        interface = 0
        if i == len(packets) // 2:
            idb()
        if i >= len(packets) // 2:
            interface = 1
        us = ts // 1000
        padded = data + b"\0" * (-len(data) % 4)
        body = struct.pack("<IIIII", interface, us >> 32, us & 0xFFFFFFFF, len(data), len(data))
        length = 12 + len(body) + len(padded)
        out.write(struct.pack("<II", 6, length) + body + padded + struct.pack("<I", length))
    path.write_bytes(out.getvalue())


class CountingFile:
    """A file object that counts the bytes read and where it was seeked."""

    def __init__(self, path: str, log: dict) -> None:
        self._f = open(path, "rb")  # noqa: SIM115
        self._log = log
        log["opened"].append(path)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._log["seeks"].append(offset)
        return self._f.seek(offset, whence)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._log["read"] += len(data)
        return data

    def readinto(self, view) -> int:  # type: ignore[no-untyped-def]
        got = self._f.readinto(view)
        self._log["read"] += got
        return got

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@needs_tshark
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_state_carve_reads_only_the_alerts_byte_ranges(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(discover, "INDEX_BLOCK_SHIFT", BLOCK_SHIFT)
    packets = day_packets()
    files = []
    for i in range(6):  # 00-04, 04-08, ... 20-24
        low, high = (
            (DAY.timestamp() + 4 * HOUR * i) * NS,
            (DAY.timestamp() + 4 * HOUR * (i + 1)) * NS,
        )
        path = tmp_path / f"day-{i}.{fmt}"
        (write_pcap if fmt == "pcap" else write_pcapng)(
            path, [p for p in packets if low <= p[0] < high]
        )
        files.append(path)
    state_path = tmp_path / "nightly.db"
    state = NightlyState(state_path)
    for path in files:
        state.take_file(fingerprint(path), 0)
    start, end = DAY + dt.timedelta(hours=9), DAY + dt.timedelta(hours=9, minutes=10)
    alert = {
        "event": {"id": "x1", "start": start.isoformat(), "end": end.isoformat()},
        "source": {"ip": HOST},
        "destination": {"ip": PEER},
    }
    alerts = tmp_path / "nightly.jsonl"
    alerts.write_text(json.dumps(alert) + "\n")
    with state.transaction() as db:
        db.execute("INSERT INTO outputs VALUES (?, ?)", (str(alerts), alerts.stat().st_size))
    state.close()

    log: dict = {"opened": [], "seeks": [], "read": 0}
    monkeypatch.setattr(carve_module, "open_capture", lambda p, mode: CountingFile(p, log))
    whole: list[str] = []
    real_open = capture_files.CaptureReader._open

    def whole_file_open(self):  # type: ignore[no-untyped-def]
        whole.append(self.path)
        return real_open(self)

    monkeypatch.setattr(capture_files.CaptureReader, "_open", whole_file_open)
    out = tmp_path / f"carved.{fmt}"
    assert main(["carve", "-q", "--event-id", "x1", "--state", str(state_path),
                 "-o", str(out)]) == 0  # fmt: skip

    # Exactly tshark's frames of the flows of HOST with PEER that have a frame
    # in the alert's span (every file of the day, read whole by tshark).
    low, high = int(start.timestamp()) * NS, int(end.timestamp()) * NS + NS // 1000 - 1
    want = []
    for path in files:
        chosen = [f for flow in reference_flows(tshark_frames(path))
                  if {flow[0]["src"], flow[0]["dst"]} == {HOST, PEER}
                  and any(low <= f["ts"] <= high for f in flow) for f in flow]  # fmt: skip
        want += expected_records(path, {f["number"] for f in chosen})
    assert len(want) == 600
    assert carved_records(out) == want

    # Only the file holding 08:00-10:10 (an hour either side) was opened, and
    # only as ranges (no whole-file reading).
    assert whole == []
    assert set(log["opened"]) == {str(files[2])}
    # What was read: the header (pcapng: its section header and the interface
    # descriptions before the range), then the blocks whose packets reach the
    # window, each from its first record to the next block's first record,
    # worked out here from a walk of the file.
    records, headers = _walk(files[2], fmt)
    size = files[2].stat().st_size
    blocks: dict[int, list[tuple[int, int]]] = {}
    for offset, ts in records:
        blocks.setdefault(offset >> BLOCK_SHIFT, []).append((offset, ts))
    starts = [rows[0][0] for rows in blocks.values()]
    reach_low, reach_high = low - HOUR * NS, high + HOUR * NS
    ranges = []
    for k, rows in enumerate(blocks.values()):
        if max(t for _o, t in rows) < reach_low or min(t for _o, t in rows) > reach_high:
            continue
        end = starts[k + 1] if k + 1 < len(starts) else size
        if ranges and ranges[-1][1] == starts[k]:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((starts[k], end))
    assert len(ranges) == 1 and ranges[0][1] - ranges[0][0] < size * 0.8
    header = 24 if fmt == "pcap" else sum(n for o, n in headers if o < ranges[0][0])
    assert log["read"] == header + sum(b - a for a, b in ranges)
    assert [s for s in log["seeks"] if s >= ranges[0][0]] == [a for a, _b in ranges]


def _walk(path: Path, fmt: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(offset, time ns) of each packet record, and (offset, length) of each
    pcapng section header and interface description, by walking the file."""
    data = path.read_bytes()
    records, headers = [], []
    if fmt == "pcap":
        at = 24
        while at < len(data):
            sec, usec, caplen, _wire = struct.unpack_from("<IIII", data, at)
            records.append((at, sec * NS + usec * 1000))
            at += 16 + caplen
        return records, headers
    at = 0
    while at < len(data):
        kind, length = struct.unpack_from("<II", data, at)
        if kind == 6:
            _if, high, low, _cap, _wire = struct.unpack_from("<IIIII", data, at + 8)
            records.append((at, ((high << 32) | low) * 1000))
        elif kind in (1, 0x0A0D0D0A):
            headers.append((at, length))
        at += length
    return records, headers


def test_alert_flow_span_is_its_flows_first_and_last_packet(tmp_path, monkeypatch):
    """alert_flow_spans (what the nightly records for each alert): the first and
    last packet of the alerted connection (09:00:00 and 09:09:59, hand-counted
    from day_packets: 300 packets each way, 2 s apart), not the hour around;
    the background hosts' flows are not the alert's. An alert of no host has
    no span."""
    from detector.flows import count_flows
    from detector.forensics.carve import alert_flow_spans

    path = tmp_path / "day.pcap"
    write_pcap(path, day_packets())
    table = count_flows([str(path)])  # idle 120 s, active 1800 s: as the nightly counts
    start = DAY + dt.timedelta(hours=9)
    docs = [
        {"event": {"id": "x1", "start": start.isoformat(),
                   "end": (start + dt.timedelta(minutes=1)).isoformat()},
         "source": {"ip": HOST}, "destination": {"ip": PEER}},
        {"event": {"id": "sensor", "start": start.isoformat(), "end": start.isoformat()}},
    ]  # fmt: skip
    t = int(start.timestamp()) * NS
    assert alert_flow_spans(docs, table) == {"x1": (t, t + 599 * NS)}
    # A host with more flows than the nightly reads for spans (a flood's target)
    # gets none: carve then reads an hour either side.
    hi, lo = (np.uint64(v) for v in address_pair(HOST))
    flows_of_host = table.count_where(lambda rows: (
        (rows.view(np.uint64)[:, 0] == hi) & (rows.view(np.uint64)[:, 1] == lo))
        | ((rows.view(np.uint64)[:, 2] == hi) & (rows.view(np.uint64)[:, 3] == lo)))  # fmt: skip
    assert flows_of_host >= 1
    monkeypatch.setattr(carve_module, "SPAN_FLOWS", flows_of_host - 1)
    assert alert_flow_spans(docs, table) == {}
    monkeypatch.setattr(carve_module, "SPAN_FLOWS", flows_of_host)
    assert alert_flow_spans(docs, table) == {"x1": (t, t + 599 * NS)}


@pytest.fixture(scope="module")
def nightly_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    """tests/test_nightly.py's site (two days of traffic in rotated files, one
    gzip-compressed) and one run of the nightly over it."""
    site = tmp_path_factory.mktemp("nightly")
    (site / "policy.toml").write_text(test_nightly.POLICY)
    whole = test_nightly.traffic().write(site / "whole.pcap")
    test_nightly.write_rotated(whole, site / "captures")
    out = site / "out"
    out.mkdir()
    proc = test_nightly.nightly(site, out)
    assert proc.returncode == 1, proc.stderr  # 1: it raised alerts
    return site, out


def test_the_nightly_records_each_alerts_span_and_carve_reads_it(nightly_run, tmp_path):
    """After the nightly (tests/test_nightly.py's two days in rotated files),
    carving its 60 MB upload by event.id through its own state reads only
    the stretch of its flows and writes the same packets as carving it from
    every file with the alert file."""
    site, out = nightly_run
    docs = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    (upload,) = [d for d in docs if d["destination"]["ip"] == "203.0.113.7"]
    state = NightlyState(out / "state.db")
    span = state.alert_span(upload["event"]["id"])
    with_spans = sum(state.alert_span(str(d["event"]["id"])) is not None for d in docs)
    state.close()
    assert span is not None and with_spans == len(docs)
    # The upload is the alert's one flow: its span is the alert's, to the ms.
    assert span[0] // 10**6 == parse_ms(upload["event"]["start"])
    assert span[1] // 10**6 == parse_ms(upload["event"]["end"])
    by_state, everything = tmp_path / "by-state.pcap", tmp_path / "everything.pcap"
    event = str(upload["event"]["id"])
    assert main(["carve", "-q", "--event-id", event, "--state", str(out / "state.db"),
                 "-o", str(by_state)]) == 0  # fmt: skip
    assert main(["carve", "-q", "--event-id", event, "--alerts", str(out / "alerts.jsonl"),
                 "-o", str(everything), str(site / "captures")]) == 0  # fmt: skip
    assert carved_records(by_state) == carved_records(everything)
    assert len(carved_records(by_state)) > 1000


def parse_ms(text: str) -> int:
    from detector.forensics.carve import parse_time

    return parse_time(text) // 10**6


def _indexed_day(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """One pcap of the generated day, taken in by a nightly state (16 KiB blocks)."""
    monkeypatch.setattr(discover, "INDEX_BLOCK_SHIFT", BLOCK_SHIFT)
    path = tmp_path / "day.pcap"
    write_pcap(path, day_packets())
    state_path = tmp_path / "nightly.db"
    state = NightlyState(state_path)
    state.take_file(fingerprint(path), 0)
    state.close()
    return path, state_path


WINDOW = ["--host", HOST, "--peer", PEER, "--from", "2026-02-04T09:00:00+00:00",
          "--to", "2026-02-04T09:10:00+00:00"]  # fmt: skip


@pytest.mark.parametrize(
    "tamper, warning",
    [
        ("UPDATE file_blocks SET start = start + 1000000000000",
         "the index of {path} is not usable (its blocks start from byte"),
        ("UPDATE file_blocks SET start = -5 WHERE start = (SELECT MIN(start) FROM file_blocks)",
         "the index of {path} is not usable (its blocks start from byte -5"),
        ("UPDATE file_blocks SET first_ns = 'abc'",
         "the index of {path} is not usable (its blocks are not numbers in order): read whole"),
        ("UPDATE files SET size = 10",
         "{path} changed since the nightly read it (10 bytes then, {size:,} now): read whole"),
    ],
)  # fmt: skip
def test_an_index_that_does_not_fit_its_file_is_not_used(tmp_path, monkeypatch, capsys,
                                                         tamper, warning):  # fmt: skip
    """The state is a file on disk like any input: a tampered or stale index
    (blocks outside the file, not numbers, a file that changed since) is said
    in one warning, and carve reads the file whole: the same packets as
    without the state, never none and silence."""
    path, state_path = _indexed_day(tmp_path, monkeypatch)
    whole, by_state = tmp_path / "whole.pcap", tmp_path / "by-state.pcap"
    assert main(["carve", "-q", *WINDOW, "-o", str(whole), str(path)]) == 0
    db = sqlite3.connect(state_path)
    db.executescript(tamper)
    db.commit()
    db.close()
    capsys.readouterr()
    assert main(["carve", "-q", *WINDOW, "--state", str(state_path), "-o", str(by_state)]) == 0
    err = capsys.readouterr().err.splitlines()
    shown = warning.format(path=path, size=path.stat().st_size)
    assert len(err) == 1 and err[0].startswith(
        f"egress-detector: warning: --state {state_path}: {shown}"
    ), err
    assert len(carved_records(whole)) > 100
    assert carved_records(by_state) == carved_records(whole)


def test_a_range_problem_is_located_in_the_file(tmp_path, monkeypatch, capsys):
    """A block whose start is off by a few bytes (the file rewritten in place
    with other records) reads damage: said with its byte offset in the file,
    where the range starts, not in the range read as a file of its own."""
    path, state_path = _indexed_day(tmp_path, monkeypatch)
    db = sqlite3.connect(state_path)
    starts = [s for (s,) in db.execute("SELECT start FROM file_blocks ORDER BY start")]
    db.execute("UPDATE file_blocks SET start = start + 6")
    db.commit()
    db.close()
    out = tmp_path / "out.pcap"
    code = main(["carve", "-q", *WINDOW, "--state", str(state_path), "-o", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert err, "a range read from the middle of a record says so"
    located = [int(line.split("byte offset ")[1].split(":")[0]) for line in err]
    assert all(offset - 6 in starts for offset in located), (located, starts[:5])
    assert code in (0, 3)
