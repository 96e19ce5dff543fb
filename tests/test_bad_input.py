"""Damaged and wrong input: one clear problem naming the file and byte offset,
every good packet before it kept, never a traceback."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest
from warm_cli import WarmCli

from detector.capture import CaptureReader, concat, read_packets
from detector.errors import CaptureError, DecodeError

from corpus import CORPUS

UNREADABLE = CORPUS / "unreadable"


def frame(i: int) -> bytes:
    """A 60-byte Ethernet/IPv4/UDP frame, distinct per ``i``."""
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        46,
        i,
        0,
        64,
        17,
        0,
        bytes([192, 0, 2, 1]),
        bytes([198, 51, 100, 7]),
    )
    udp = struct.pack("!HHHH", 40000 + i, 53, 26, 0)
    return eth + ip + udp + b"\x00" * 18


def pcap_bytes(n: int, *, snaplen: int = 65535) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)]
    for i in range(n):
        data = frame(i)
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(data), len(data)) + data)
    return b"".join(out)


RECORD = 16 + 60  # bytes per record above


def read_all(path):
    reader = CaptureReader(path)
    batch = concat([b.copy() for b in reader])
    return batch, reader.stats


def test_good_file_reads_every_packet(tmp_path):
    path = tmp_path / "good.pcap"
    path.write_bytes(pcap_bytes(5))
    batch, stats = read_all(path)
    assert len(batch) == 5 and stats.problems == []
    assert batch.sport.tolist() == [40000, 40001, 40002, 40003, 40004]


def test_last_record_cut_short_is_a_warning_and_keeps_the_rest(tmp_path):
    path = tmp_path / "rotating.pcap"
    path.write_bytes(pcap_bytes(5)[:-30])
    batch, stats = read_all(path)
    assert len(batch) == 4
    (problem,) = stats.problems
    assert not problem.fatal
    assert problem.offset == 24 + 4 * RECORD
    assert "cut short" in str(problem) and str(path) in str(problem)


def test_record_length_beyond_limit_stops_with_offset(tmp_path):
    data = bytearray(pcap_bytes(6))
    bad = 24 + 3 * RECORD
    data[bad + 8 : bad + 12] = struct.pack("<I", 10_000_000)  # incl_len
    path = tmp_path / "damaged.pcap"
    path.write_bytes(bytes(data))
    batch, stats = read_all(path)
    assert len(batch) == 3  # the three good packets before the damage
    (problem,) = stats.problems
    assert problem.fatal and problem.offset == bad
    assert "10000000" in problem.message and "3 packets before it were read" in problem.message
    # Without a problem handler, read_packets raises after yielding the good packets.
    got = []
    with pytest.raises(DecodeError, match=f"byte offset {bad}"):
        for b in read_packets([path]):
            got.append(len(b))
    assert sum(got) == 3


def test_garbage_in_the_middle(tmp_path):
    data = bytearray(pcap_bytes(8))
    start = 24 + 2 * RECORD
    data[start : start + RECORD] = b"\xff" * RECORD
    path = tmp_path / "garbage.pcap"
    path.write_bytes(bytes(data))
    batch, stats = read_all(path)
    assert len(batch) == 2
    assert stats.problems[0].fatal and stats.problems[0].offset == start


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "looks like text"),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07" * 8, "not a pcap or pcapng file"),
        (pcap_bytes(0)[:10], "cut short"),
    ],
    ids=["empty", "text", "binary", "short-header"],
)
def test_not_a_capture(tmp_path, content, expected):
    path = tmp_path / "thing.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=expected) as info:
        read_all(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        read_all(tmp_path / "nope.pcap")


def test_gzip_cut_short_keeps_packets(tmp_path):
    whole = gzip.compress(pcap_bytes(2000), mtime=0)
    path = tmp_path / "rotating.pcap.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    batch, stats = read_all(path)
    assert 100 < len(batch) < 2000
    assert batch.sport[:3].tolist() == [40000, 40001, 40002]
    assert any("gzip stream ends early" in str(p) and not p.fatal for p in stats.problems)


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "capture.bin"
    path.write_bytes(gzip.compress(pcap_bytes(3), mtime=0))
    batch, stats = read_all(path)
    assert len(batch) == 3 and stats.compressed and stats.format == "pcap"


def test_gzip_of_text_is_named(tmp_path):
    path = tmp_path / "notes.pcap.gz"
    path.write_bytes(gzip.compress(b"these are my notes, not packets\n" * 4))
    with pytest.raises(CaptureError, match="gzip-compressed, but not a pcap"):
        read_all(path)


def pcapng_bytes(n: int) -> bytes:
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 0) + struct.pack("<I", 20)
    blocks = [shb, idb]
    for i in range(n):
        data = frame(i)
        body = struct.pack("<IIIII", 0, 0, i, len(data), len(data)) + data
        total = 12 + len(body)
        blocks.append(struct.pack("<II", 6, total) + body + struct.pack("<I", total))
    return b"".join(blocks)


def test_pcapng_bad_block_length(tmp_path):
    data = bytearray(pcapng_bytes(4))
    epb = 28 + 20 + 2 * (12 + 20 + 60)
    data[epb + 4 : epb + 8] = struct.pack("<I", 7)  # impossible block length
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(bytes(data))
    batch, stats = read_all(path)
    assert len(batch) == 2
    (problem,) = stats.problems
    assert problem.fatal and problem.offset == epb and "block length 7" in problem.message


def test_pcapng_packet_of_undescribed_interface_is_counted_not_decoded(tmp_path):
    data = pcapng_bytes(2)
    shb, rest = data[:28], data[48:]  # drop the IDB: packets name an unknown interface
    path = tmp_path / "no-idb.pcapng"
    path.write_bytes(shb + rest)
    batch, stats = read_all(path)
    assert len(batch) == 2
    assert batch.status.tolist() == [2, 2] and batch.ip_version.tolist() == [0, 0]
    assert batch.ts_ns.tolist() == [0, 1000]  # default resolution: microseconds
    (problem,) = stats.problems
    assert "2 packets name an interface the file never described" in str(problem)


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmCli]:
    """flows in forks of one process that has imported it (tests/warm_cli.py):
    each file costs its reading, not 2 s of start-up. The flows command's own
    start-up and exit code 3 are tested by starting it:
    test_cli_reports_damage_and_keeps_output."""
    with WarmCli(("detector.pipelines.scan",)) as cli:
        yield cli


@pytest.mark.skipif(not UNREADABLE.is_dir(), reason=f"corpus not at {CORPUS}")
@pytest.mark.parametrize(
    "path", sorted(UNREADABLE.glob("*")) if UNREADABLE.is_dir() else [], ids=lambda p: p.name
)
def test_files_tshark_refuses_give_one_clear_line(path, warm):
    proc = warm.completed(["flows", str(path), "-q"], cwd=None, timeout=120)
    assert "Traceback" not in proc.stderr
    # Either refused with one error line (exit 3) or read (DLT 281 is just an
    # unknown link type to us: counted and skipped, exit 0).
    if proc.returncode == 3:
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and str(path) in errors[0]
    else:
        assert proc.returncode == 0, proc.stderr


def test_cli_reports_damage_and_keeps_output(tmp_path):
    data = bytearray(pcap_bytes(6))
    bad = 24 + 3 * RECORD
    data[bad + 8 : bad + 12] = struct.pack("<I", 10_000_000)
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(bytes(data))
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_bytes(2))
    out = tmp_path / "flows.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "flows", str(damaged), str(good), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert f"{damaged}: byte offset {bad}:" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Packets 0-2 of the damaged file and 0-1 of the good one: ports 40000..40002.
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 3


def test_documented_sizes_are_the_real_ones():
    """docs/flows.md quotes bytes per flow and per packet; keep them true."""
    from pathlib import Path

    from detector.capture import BYTES_PER_PACKET
    from detector.flows.table import BYTES_PER_FLOW

    doc = (Path(__file__).resolve().parents[1] / "docs" / "flows.md").read_text()
    assert f"**{BYTES_PER_FLOW} bytes per" in doc and f"{BYTES_PER_PACKET} bytes per" in doc


# -- every problem names the file and the byte offset (issue 18, item 6) ---------------

NOT_WHOLE = "it was not copied whole, or its capture stopped at once"
EXPECTED = (
    "expected pcap or pcapng (tcpdump -w, dumpcap, Wireshark; editcap -F pcap converts "
    "other formats)"
)
GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x00\xff"  # deflate, no name, mtime 0


def stored_gzip(data: bytes, after: bytes) -> bytes:
    """A gzip member whose first deflate block stores ``data`` as it is (so
    every byte's place in the file is known), followed by ``after``."""
    assert len(data) < 65536
    return GZIP_HEADER + b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data + after


def refused(path) -> str:
    with pytest.raises(CaptureError) as info:
        read_all(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"",
            "byte offset 0: the file is empty (0 bytes): nothing was written into it, or it was "
            "not copied whole",
        ),
        (
            pcap_bytes(0)[:23],
            "byte offset 0: the pcap file header is cut short (23 of 24 bytes): the file ends "
            f"before its first packet; {NOT_WHOLE}",
        ),
        (
            pcapng_bytes(0)[:3],
            "byte offset 0: the file ends after 3 byte(s), inside the capture's first header: "
            f"{NOT_WHOLE}",
        ),
        (
            b"\x00\x01\x02\x03\x04\x05\x06\x07" * 8,
            f"byte offset 0: not a pcap or pcapng file (it starts with 00 01 02 03 04 05 06 07); "
            f"{EXPECTED}",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
            f"byte offset 0: not a pcap or pcapng file: it looks like text ('GET / HTTP/1.1'); "
            f"{EXPECTED}",
        ),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 4, 0, 0, 65535, 1),
            "byte offset 4: pcap version 3.4 is not one we read (expected 2.4); the capture may "
            "be damaged, or written by a tool we do not know: editcap -F pcap converts it",
        ),
        # gzip files: the capture's own bytes are counted in the decompressed data...
        (
            gzip.compress(b"\xd4\xc3\xb2\xa2" + pcap_bytes(2)[4:], mtime=0),  # a bad magic number
            "byte offset 0 of the decompressed data: gzip-compressed, but not a pcap or pcapng "
            f"file (it starts with d4 c3 b2 a2 02 00 04 00); {EXPECTED}",
        ),
        (
            gzip.compress(b"", mtime=0),
            "byte offset 0 of the decompressed data: gzip-compressed, but its decompressed data "
            "is empty (0 bytes): nothing was written into it, or it was not copied whole",
        ),
        (
            gzip.compress(pcap_bytes(0)[:23], mtime=0),
            "byte offset 0 of the decompressed data: the pcap file header is cut short (23 of 24 "
            f"bytes): the file ends before its first packet; {NOT_WHOLE}",
        ),
        (
            stored_gzip(pcap_bytes(0)[:20], b""),  # and cut short in the deflate stream
            "byte offset 0 of the decompressed data: the pcap file header is cut short (20 of 24 "
            "bytes; the gzip stream ends early at byte offset 35): the file ends before its "
            f"first packet; {NOT_WHOLE}",
        ),
        # ... the gzip stream's own, in the file on disk.
        (
            GZIP_HEADER[:2],
            "byte offset 2: the gzip stream ends early, 0 byte(s) into its data, before the "
            f"capture's first header: {NOT_WHOLE}",
        ),
        (
            b"\x1f\x8b\x09\x00" + b"\x00" * 20,  # compression method 9: none such
            "byte offset 3: gzip data is corrupt (unknown compression method), before any "
            "packet: the file is damaged (gzip -t says so too); copy it again from its source",
        ),
    ],
    ids=[
        "empty",
        "23-byte-header",
        "3-bytes",
        "binary",
        "text",
        "version",
        "gzip-bad-magic",
        "gzip-empty",
        "gzip-23-byte-header",
        "gzip-cut-in-header",
        "gzip-2-bytes",
        "gzip-bad-method",
    ],
)
def test_a_file_refused_names_the_byte_offset(tmp_path, content, expected):
    path = tmp_path / "thing.pcap"
    path.write_bytes(content)
    assert refused(path) == f"{path}: {expected}"
    # read_packets hands it on as a problem of that file, the same line.
    problems = []
    assert list(read_packets([path], on_problem=problems.append)) == []
    assert [(str(p), p.fatal) for p in problems] == [(f"{path}: {expected}", True)]


def test_corrupt_gzip_data_names_the_byte_and_keeps_the_packets_before_it(tmp_path):
    """A deflate block of an invalid type right after three packets: zlib
    raises for the whole call, and the three packets used to be lost with it."""
    data = pcap_bytes(3)
    bad = len(GZIP_HEADER) + 5 + len(data)  # the byte after the stored block
    path = tmp_path / "damaged.pcap.gz"
    path.write_bytes(stored_gzip(data, b"\x06" + b"\x00" * 40))  # BTYPE 11: reserved
    batch, stats = read_all(path)
    assert batch.sport.tolist() == [40000, 40001, 40002]
    assert [(str(p), p.fatal) for p in stats.problems] == [
        (
            f"{path}: byte offset {bad}: gzip data is corrupt (invalid block type): the file is "
            "damaged here (gzip -t says so too); 3 packets before it were read, the rest cannot "
            "be decompressed",
            True,
        )
    ]


def test_a_bad_gzip_checksum_is_at_its_bytes(tmp_path):
    whole = bytearray(gzip.compress(pcap_bytes(4), mtime=0))
    whole[-8] ^= 1  # the CRC-32: zlib checks it when its last byte is read
    path = tmp_path / "crc.pcap.gz"
    path.write_bytes(bytes(whole))
    batch, stats = read_all(path)
    assert len(batch) == 4
    (problem,) = stats.problems
    assert str(problem).startswith(
        f"{path}: byte offset {len(whole) - 5}: gzip data is corrupt (incorrect data check):"
    )


def test_damage_inside_a_gzip_file_is_located_in_the_decompressed_data(tmp_path):
    data = bytearray(pcap_bytes(6))
    bad = 24 + 3 * RECORD
    data[bad + 8 : bad + 12] = struct.pack("<I", 10_000_000)
    path = tmp_path / "damaged.pcap.gz"
    path.write_bytes(gzip.compress(bytes(data), mtime=0))
    batch, stats = read_all(path)
    assert len(batch) == 3
    assert [str(p) for p in stats.problems] == [
        f"{path}: byte offset {bad} of the decompressed data: record length 10000000 is beyond "
        "the 262144-byte limit: the capture is damaged here; 3 packets before it were read, "
        "the rest is skipped"
    ]


def test_a_gzip_stream_cut_short_names_where_it_ends(tmp_path):
    whole = gzip.compress(pcap_bytes(2000), mtime=0)
    cut = whole[: len(whole) // 2]
    path = tmp_path / "rotating.pcap.gz"
    path.write_bytes(cut)
    _batch, stats = read_all(path)
    gz_problem = stats.problems[-1]
    assert not gz_problem.fatal
    assert str(gz_problem) == (
        f"{path}: byte offset {len(cut)}: the gzip stream ends early (file still being "
        "written, or copied before it was complete); every whole packet in it was read"
    )
    record = stats.problems[0]
    assert str(record).startswith(f"{path}: byte offset {record.offset} of the decompressed data: ")


# -- a live pcap stream says what the file reader says -----------------------------------


def stream_problem(path) -> str | None:
    """Feed ``path`` to live's stream source as a pcap stream on standard input
    would come, to its end; the problem it reports."""
    from detector.capture import PacketBatch
    from detector.capture.live import StreamSource

    with open(path, "rb") as stream:
        source = StreamSource(stream)
        batch = PacketBatch.empty(64)
        for _ in range(1000):
            source.read(batch, 0.01)
            if source.finished:
                break
        source.close()
    return source.problem


def pcapng_block_length_damage(tmp_path):
    data = bytearray(pcapng_bytes(4))
    epb = 28 + 20 + 2 * (12 + 20 + 60)
    data[epb + 4 : epb + 8] = struct.pack("<I", 0xFFFFFFF0)  # "walk code 3, detail 4294967280"
    return bytes(data), epb


def pcap_record_length_damage(tmp_path):
    data = bytearray(pcap_bytes(6))
    bad = 24 + 3 * RECORD
    data[bad + 8 : bad + 12] = struct.pack("<I", 10_000_000)
    return bytes(data), bad


def pcapng_section_damage(tmp_path):
    data = pcapng_bytes(2)
    shb = bytearray(data[:28])
    shb[8:12] = b"\x01\x02\x03\x04"  # an unknown byte-order magic
    return data + bytes(shb), len(data)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            pcapng_block_length_damage,
            "pcapng block length 4294967280 is impossible (damaged block); 2 packets before it "
            "were read, the rest is skipped",
        ),
        (
            pcap_record_length_damage,
            "record length 10000000 is beyond the 262144-byte limit: the capture is damaged "
            "here; 3 packets before it were read, the rest is skipped",
        ),
        (
            pcapng_section_damage,
            "pcapng section header expected here (found 0x04030201); the capture is damaged; "
            "2 packets before it were read, the rest is skipped",
        ),
    ],
    ids=["pcapng-block-length", "pcap-record-length", "pcapng-section"],
)
def test_live_stream_damage_is_told_in_the_file_readers_words(tmp_path, make, expected):
    data, offset = make(tmp_path)
    path = tmp_path / "damaged"
    path.write_bytes(data)
    _batch, stats = read_all(path)
    (problem,) = stats.problems
    assert str(problem) == f"{path}: byte offset {offset}: {expected}"
    assert stream_problem(path) == f"standard input: byte offset {offset}: {expected}"


def test_live_stream_header_and_end_problems_name_the_offset(tmp_path):
    cases = [
        (b"", "standard input: byte offset 0: the stream ended before its pcap/pcapng header "
              "(0 bytes arrived)"),
        (pcap_bytes(0)[:10], "standard input: byte offset 0: the stream ended before its "
                             "pcap/pcapng header (10 bytes arrived)"),
        (pcap_bytes(3)[:-30], f"standard input: byte offset {24 + 2 * RECORD}: the last record "
                              "is cut short (46 bytes of it arrived); 2 packets before it were "
                              "read"),
    ]  # fmt: skip
    for content, expected in cases:
        path = tmp_path / "stream"
        path.write_bytes(content)
        assert stream_problem(path) == expected
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 4, 0, 0, 65535, 1))
    with pytest.raises(CaptureError) as info:
        stream_problem(path)
    assert str(info.value) == (
        "standard input: byte offset 4: pcap version 3.4 is not one we read (expected 2.4); "
        "the capture may be damaged, or written by a tool we do not know: editcap -F pcap "
        "converts it"
    )
    path.write_bytes(b"hello, this is text\n")
    with pytest.raises(CaptureError) as info:
        stream_problem(path)
    assert str(info.value) == (
        "standard input: byte offset 0: not a pcap or pcapng stream (it starts with 68 65 6c "
        "6c); use tcpdump -w - (gzip-compressed too)"
    )
