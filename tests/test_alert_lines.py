"""Alert files the detector reads back (``scan --history``, ``carve --alerts``)
are hostile input like any other (issue 18): binary junk, a bracket nested a
hundred thousand deep, a line of many megabytes, text that is not UTF-8 are
each one line with exit 2 that names the option, the file and the byte offset;
never exit 4, never a line read whole into memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.alerts.lines import MAX_LINE, json_lines
from detector.cli.main import main
from detector.errors import DetectorError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = str(ROOT / "captures" / "sample-incident.pcap.gz")
POLICY = str(ROOT / "captures" / "sample-policy.toml")
GOOD = json.dumps({"rule": {"id": "p2p"}, "event": {"id": "e1", "start": "2026-02-03T23:00:00+08:00",
                   "end": "2026-02-03T23:10:00+08:00"}, "source": {"ip": "10.8.10.5"},
                   "destination": {"ip": "203.0.113.9"}}).encode() + b"\n"  # fmt: skip

# (what follows one good line, the problem the error names, where: an offset
# into what follows)
HOSTILE = {
    "binary": (b'{"event": {"id": "e1"}, "x": "\xcc\xcd"}\n', "not UTF-8 text", 30),
    "deep": (b'["e1", ' + b"[" * 100_000 + b"\n",
             "not a JSON line (nested deeper than it can be read)", 0),
    "long": (b'{"event": {"id": "e1"}, "pad": "' + b"x" * MAX_LINE + b'"}\n',
             "a line of over 4 MiB (an alert is a few kB)", 0),
    "cut": (b'{"event": {"id": "e1"', "not a JSON line (Expecting ',' delimiter)", 0),
}  # fmt: skip


def _file(tmp_path: Path, case: str) -> tuple[Path, str, int]:
    tail, problem, at = HOSTILE[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_bytes(GOOD + tail)
    return path, problem, len(GOOD) + at


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_scan_history_refuses_a_hostile_file_in_one_line(tmp_path, capsys, case):
    path, problem, offset = _file(tmp_path, case)
    assert main(["scan", "-q", "--policy", POLICY, "--history", str(path), SAMPLE]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(
        f"egress-detector: error: --history {path}: byte offset {offset}: {problem} (one a line"
    ), err[0]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_carve_alerts_refuses_a_hostile_file_in_one_line(tmp_path, capsys, case):
    path, problem, offset = _file(tmp_path, case)
    out = tmp_path / "out.pcap"
    # The good line's alert is not the one asked for, so the reader goes on to the bad one.
    args = ["carve", "-q", "--event-id", "e1", "--alerts", str(path), "-o", str(out), SAMPLE]
    path.write_bytes(GOOD.replace(b'"e1"', b'"e0"') + path.read_bytes()[len(GOOD) :])
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"egress-detector: error: --alerts {path}: byte offset {offset}: {problem}"]
    assert not out.exists()


def test_a_long_line_is_never_read_whole(tmp_path):
    """The reader holds at most MAX_LINE + 1 bytes of a line: a 64 MiB line is
    refused having read 4 MiB of it."""
    path = tmp_path / "long.jsonl"
    with path.open("wb") as f:
        f.write(b'{"pad": "')
        f.truncate(64 << 20)
    reads: list[int] = []
    real_open = open

    class Counting:
        def __init__(self, stream):
            self.stream = stream

        def readline(self, size=-1):
            line = self.stream.readline(size)
            reads.append(len(line))
            return line

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

    import detector.alerts.lines as lines

    lines.open = lambda *a, **k: Counting(real_open(*a, **k))  # type: ignore[attr-defined]
    try:
        with pytest.raises(DetectorError, match="byte offset 0: a line of over 4 MiB"):
            list(json_lines(str(path), "--history"))
    finally:
        del lines.open  # type: ignore[attr-defined]
    assert reads == [MAX_LINE + 1]


def test_lines_without_the_wanted_bytes_are_not_parsed(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"not json at all\n\n" + GOOD)
    assert list(json_lines(str(path), "--alerts", holding=b'"e1"')) == [(17, json.loads(GOOD))]
    with pytest.raises(DetectorError, match=r"--alerts .*: byte offset 0: not a JSON line"):
        list(json_lines(str(path), "--alerts"))
