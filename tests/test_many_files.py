"""Many files, read carefully (issue 21, section 3): a file given twice is read
once, files given in any order are read in packet-time order, overlapping
files are warned about, directories are read, and --bpf filters files with
libpcap's filter semantics (checked against tcpdump)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from warm_cli import WarmCli

from detector.capture import CaptureReader, capture_inputs
from detector.errors import DetectorError

from corpus import PCAPS, needs_corpus
from naive import read_records

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
POLICY = ROOT / "captures" / "sample-policy.toml"

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")


# The commands run as `python -m detector ARGS` does, in forks of one process
# that has imported them (tests/warm_cli.py): what is tested here is how they
# read many files, not their start-up (test_cli and test_scan_cli start them).
_warm: list[WarmCli] = []


@pytest.fixture(scope="module", autouse=True)
def warm_commands() -> Iterator[None]:
    with WarmCli(("detector.pipelines.scan", "detector.pipelines.train",
                  "detector.cli.carve")) as cli:  # fmt: skip
        _warm.append(cli)
        yield
        _warm.clear()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return _warm[0].completed(list(args), cwd=None)


def split_sample(directory: Path, parts: int = 3) -> list[Path]:
    """The sample cut between records into ``parts`` pcap files (the second
    gzip-compressed), each with the sample's file header."""
    raw = gzip.decompress(SAMPLE.read_bytes())
    header, at, cuts = raw[:24], 24, [24]
    count = len(read_records(SAMPLE))
    seen = 0
    while at < len(raw):
        at += 16 + int.from_bytes(raw[at + 8 : at + 12], "little")
        seen += 1
        if len(cuts) < parts and seen == count * len(cuts) // parts:
            cuts.append(at)
    cuts.append(len(raw))
    paths = []
    for i in range(parts):
        data = header + raw[cuts[i] : cuts[i + 1]]
        path = directory / (f"part{i}.pcap.gz" if i == 1 else f"part{i}.pcap")
        path.write_bytes(gzip.compress(data) if i == 1 else data)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> list[Path]:
    return split_sample(tmp_path_factory.mktemp("parts"))


def test_reordered_and_repeated_parts_give_the_clean_flows(tmp_path, parts):
    """The three parts given last-first, one of them twice and one again under
    another name: the flows are those of the whole sample, byte for byte (the
    62.7 MB upload crosses a cut: given in reverse order it was two flows)."""
    copy = tmp_path / "copy-of-part0.pcap"
    copy.write_bytes(parts[0].read_bytes())
    clean, mixed = tmp_path / "clean.csv", tmp_path / "mixed.csv"
    proc = run("flows", "-q", "-o", str(clean), str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    given = [parts[2], parts[1], parts[0], parts[1], copy]
    proc = run("flows", "-o", str(mixed), *map(str, given))
    assert proc.returncode == 0, proc.stderr
    assert mixed.read_text() == clean.read_text()
    assert f"{parts[1]}: the same file, given again: read once" in proc.stderr
    assert f"{copy}: the same content as {parts[0]}, given again: read once" in proc.stderr
    assert (f"read in the order of their first packet, not as given: {parts[0]}, {parts[1]}, "
            f"{parts[2]}") in proc.stderr  # fmt: skip
    assert "3 file(s)" in proc.stderr


def test_reordered_and_repeated_parts_give_the_clean_alerts(tmp_path, parts):
    """The same alerts as a scan of the whole sample (but for event.created,
    the time each was made), the 62.7 MB upload among them."""
    clean, mixed = tmp_path / "clean.jsonl", tmp_path / "mixed.jsonl"
    proc = run("scan", "-q", "--policy", str(POLICY), "-o", str(clean), str(SAMPLE))
    assert proc.returncode == 1, proc.stderr
    proc = run("scan", "-q", "--policy", str(POLICY), "-o", str(mixed),
               str(parts[1]), str(parts[2]), str(parts[0]), str(parts[2]))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert alerts_of(mixed) == alerts_of(clean)
    assert any(a["source"]["bytes"] == 62_736_589 for a in alerts_of(clean))


def alerts_of(path: Path) -> list[dict]:
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    for doc in docs:
        doc["event"].pop("created", None)
    return docs


def test_a_directory_reads_its_captures_in_time_order(tmp_path, parts):
    """A directory: its capture files (a text file and a hidden file beside
    them are not read), in order of first packet, whatever their names."""
    folder = tmp_path / "day"
    (folder / "sub").mkdir(parents=True)
    for name, part in zip(["c.pcap", "sub/a.pcap.gz", "b.pcap"], parts, strict=True):
        shutil.copy(part, folder / name)
    (folder / "notes.txt").write_text("not a capture\n")
    shutil.copy(parts[0], folder / ".partial.pcap")
    assert capture_inputs([folder]) == [str(folder / n) for n in ("c.pcap", "sub/a.pcap.gz",
                                                                    "b.pcap")]  # fmt: skip
    clean, read = tmp_path / "clean.csv", tmp_path / "dir.csv"
    assert run("flows", "-q", "-o", str(clean), str(SAMPLE)).returncode == 0
    assert run("flows", "-q", "-o", str(read), str(folder)).returncode == 0
    assert read.read_text() == clean.read_text()


def test_overlapping_files_are_warned_about(tmp_path, parts):
    """The whole sample and its middle part: the same traffic twice, said."""
    proc = run("flows", "-o", str(tmp_path / "f.csv"), str(SAMPLE), str(parts[1]))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "overlap in time" in line]
    assert len(lines) == 1 and str(SAMPLE) in lines[0] and str(parts[1]) in lines[0]
    proc = run("flows", "-o", str(tmp_path / "g.csv"), *map(str, parts))
    assert "overlap" not in proc.stderr


def tcpdump_filtered(source: Path, expression: str, out: Path) -> list[tuple[int, int, bytes]]:
    plain = out.with_suffix(".in")
    data = source.read_bytes()
    plain.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    subprocess.run(["tcpdump", "-r", str(plain), "-w", str(out), expression],
                   capture_output=True, check=True)  # fmt: skip
    return [(r.ts_ns, r.wire_len, r.data) for r in read_records(out)]


def ours(source: Path, expression: str) -> tuple[np.ndarray, np.ndarray]:
    times, lengths = [], []
    for batch in CaptureReader(source, bpf=expression):
        times.append(batch.ts_ns.copy())
        lengths.append(batch.wire_len.astype(np.int64))
    if not times:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(times), np.concatenate(lengths)


EXPRESSIONS = [
    "tcp port 443",
    "host 10.8.40.31 and not port 443",
    "udp",
    "ip6 or arp",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
    "ip[6:2] & 0x1fff != 0 or ip6[6] == 44",  # fragments
    "greater 1000",
    "net 10.8.0.0/16 and dst portrange 1-1023",
    "vlan or ether broadcast",
]


@needs_tcpdump
@pytest.mark.parametrize("expression", EXPRESSIONS[:3])
def test_bpf_on_the_sample_keeps_what_tcpdump_keeps(tmp_path, expression):
    want = tcpdump_filtered(SAMPLE, expression, tmp_path / "want.pcap")
    times, lengths = ours(SAMPLE, expression)
    assert times.tolist() == [t for t, _w, _d in want]
    assert lengths.tolist() == [w for _t, w, _d in want]
    assert len(want) > 500


CORPUS_BPF = [
    "chrissanders__ip_frag_source.pcapng",
    "chrissanders__ipv6_fragments.pcapng",
    "chrissanders__http_ip4and6.pcapng",
    "chrissanders__synscan.pcapng",
    "dpkt__http.pcap",
    "ndpi__KakaoTalk_chat.pcap",
    "ndpi__bittorrent.pcap",
]


@needs_corpus
@needs_tcpdump
@pytest.mark.parametrize("name", CORPUS_BPF)
def test_bpf_interpreter_agrees_with_libpcap_on_the_corpus(tmp_path, name):
    """Each expression on corpus captures (Ethernet, Linux cooked, IPv4 and
    IPv6 fragments): the same packets as tcpdump (libpcap's own interpreter)."""
    for i, expression in enumerate(EXPRESSIONS):
        try:
            want = tcpdump_filtered(PCAPS / name, expression, tmp_path / f"{i}.pcap")
        except subprocess.CalledProcessError:
            # libpcap cannot compile it for this link type ("ether broadcast"
            # on Linux cooked capture): neither can we, said in one line.
            with pytest.raises(DetectorError, match="link type"):
                ours(PCAPS / name, expression)
            continue
        times, lengths = ours(PCAPS / name, expression)
        assert times.tolist() == [t for t, _w, _d in want], (name, expression)
        assert lengths.tolist() == [w for _t, w, _d in want], (name, expression)


@needs_tcpdump
def test_flows_and_carve_take_bpf(tmp_path):
    """flows --bpf gives the flows of tcpdump's filtered file; carve --bpf
    carves only the packets that pass."""
    expression = "host 10.8.40.31 and not port 443"
    filtered = tmp_path / "filtered.pcap"
    tcpdump_filtered(SAMPLE, expression, filtered)
    ours_csv, theirs_csv = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    assert run("flows", "-q", "--bpf", expression, "-o", str(ours_csv), str(SAMPLE)).returncode == 0
    assert run("flows", "-q", "-o", str(theirs_csv), str(filtered)).returncode == 0
    assert ours_csv.read_text() == theirs_csv.read_text()
    out = tmp_path / "carved.pcap"
    proc = run("carve", "-q", "--host", "10.8.40.31", "--bpf", "tcp port 445", "-o", str(out),
               str(SAMPLE))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = tcpdump_filtered(SAMPLE, "host 10.8.40.31 and tcp port 445", tmp_path / "w.pcap")
    assert [(r.ts_ns, r.wire_len, r.data) for r in read_records(out)] == want
    assert len(want) > 100


def test_a_bad_filter_is_one_line_before_reading(tmp_path):
    proc = run("flows", "--bpf", "tcp port", str(SAMPLE))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "egress-detector: error: --bpf 'tcp port': can't parse filter expression: syntax error"
    ]


@needs_tcpdump
def test_bpf_counting_keeps_every_closed_flow(tmp_path):
    """With a filter, packets are counted after the walk: flows the table closes
    meanwhile (here: a 1-second idle timeout closing flows all along, and a
    64-flow table evicting) are all kept, as for tcpdump's filtered file read
    without one. (The first version lost the flows closed between walks.)"""
    from detector.capture import read_packets
    from detector.flows.table import FlowTable, count_flows

    filtered = tmp_path / "filtered.pcap"
    tcpdump_filtered(SAMPLE, "tcp or udp", filtered)
    how = {"idle_timeout": 1.0, "max_flows": 64}
    table = FlowTable(**how)
    # Small batches: many walks, the table closing flows between them.
    for _ in read_packets([SAMPLE], counter=table, batch_packets=1024, bpf="tcp or udp"):
        pass
    table.flush()
    theirs = count_flows([filtered], **how).to_frame()
    assert len(theirs) > 1000
    assert table.to_frame().equals(theirs)


@needs_tcpdump
def test_scan_takes_bpf(tmp_path):
    """scan --bpf raises the alerts of tcpdump's filtered file: leaving out the
    upload's address leaves out its alerts, and only those."""
    expression = "not host 203.0.113.140"
    filtered = tmp_path / "filtered.pcap"
    tcpdump_filtered(SAMPLE, expression, filtered)
    ours_out, theirs_out = tmp_path / "ours.jsonl", tmp_path / "theirs.jsonl"
    proc = run("scan", "-q", "--policy", str(POLICY), "--bpf", expression, "-o", str(ours_out),
               str(SAMPLE))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    proc = run("scan", "-q", "--policy", str(POLICY), "-o", str(theirs_out), str(filtered))
    assert proc.returncode == 1, proc.stderr
    ours, theirs = alerts_of(ours_out), alerts_of(theirs_out)
    assert ours == theirs
    assert not any(a.get("destination", {}).get("ip") == "203.0.113.140" for a in ours)
    assert ours


def test_train_learns_reordered_and_repeated_parts_as_the_clean_baseline(tmp_path, parts):
    """train reads its captures as every command does: the parts given last-first,
    one twice, teach the model exactly what the whole sample teaches (given twice,
    a file was learned as twice its traffic: every usual volume doubled)."""
    import dataclasses

    from detector.detect.model.file import load_model
    from detector.policy import load_policy

    clean, mixed = tmp_path / "clean.model", tmp_path / "mixed.model"
    proc = run("train", "-q", "--policy", str(POLICY), "-o", str(clean), str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    proc = run("train", "-q", "--policy", str(POLICY), "-o", str(mixed),
               str(parts[2]), str(parts[0]), str(parts[1]), str(parts[0]))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"{parts[0]}: the same file, given again: read once" in proc.stderr
    policy = load_policy(POLICY)
    learned = [load_model(path, policy).history_ for path in (clean, mixed)]
    for field in dataclasses.fields(learned[0]):
        a, b = (np.asarray(getattr(h, field.name)) for h in learned)
        assert np.array_equal(a, b), field.name
    assert np.asarray(learned[0].host_quantiles).any()  # something was learned
