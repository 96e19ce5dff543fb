"""The live sensor as a service (issue 22, section 1), without root: the
notify protocol against a fake notify socket (a Unix datagram socket in a
temporary directory, as systemd's), the watchdog fed only while capture
goes round, the journal's status line, SIGHUP reopening a renamed alert file
without losing an alert, a gzip stream on standard input, and inputs checked
before anything compiles."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gen_traffic import Capture, at

from detector.service import (
    Notifier,
    SensorFigures,
    StatusEvery,
    Watchdog,
    status_line,
    watchdog_interval,
)

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "captures" / "sample-policy.toml"
ISO, PC, OUT = "10.8.40.31", "10.8.10.44", "203.0.113.140"
PCAP_HEADER = 24


def listening(path: str) -> socket.socket:
    """A fake service manager's notify socket (abstract for ``@name``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + path[1:] if path.startswith("@") else path)
    sock.settimeout(5)
    return sock


# -- the protocol, by hand ------------------------------------------------------------


def test_notify_messages_reach_a_socket_path_and_an_abstract_one(tmp_path):
    for address in (str(tmp_path / "notify"), f"@egress-detector-test-{os.getpid()}"):
        server = listening(address)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
        assert notifier.send("READY=1", "STATUS=capturing on eth1")
        assert server.recv(4096) == b"READY=1\nSTATUS=capturing on eth1"
        # A status is one line of the protocol: its own line breaks become spaces.
        assert notifier.status("two\nlines")
        assert server.recv(4096) == b"STATUS=two lines"
        notifier.close()
        server.close()


def test_without_a_notify_socket_nothing_is_sent():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.send("READY=1")
    assert Watchdog.from_environment(notifier).interval is None


def test_a_notify_socket_that_is_gone_is_one_problem_not_a_crash(tmp_path):
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert not notifier.send("READY=1")
    assert notifier.problem is not None and "nobody-listens" in notifier.problem


def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert (
        watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    )
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None


def test_the_watchdog_is_fed_when_due_and_only_while_capture_is_alive(tmp_path):
    server = listening(str(tmp_path / "notify"))
    server.settimeout(0.2)
    dog = Watchdog(Notifier(str(tmp_path / "notify")), interval=10.0)
    fed = [dog.feed(alive, now) for alive, now in ((True, 100.0), (True, 105.0), (False, 111.0),
                                                   (True, 112.0), (True, 121.9), (True, 122.0))]  # fmt: skip
    assert fed == [True, False, False, True, False, True]
    assert [server.recv(100) for _ in range(3)] == [b"WATCHDOG=1"] * 3
    with pytest.raises(socket.timeout):
        server.recv(100)


def test_status_line_words_and_figures():
    figures = SensorFigures(packets=1_234_567, dropped=89, open_flows=4_321, alerts=3,
                            rss_bytes=412 * (1 << 20) + 1000)  # fmt: skip
    assert status_line(figures) == (
        "1,234,567 packets, 89 dropped, 4,321 open flows, 3 alerts, RSS 412 MiB"
    )


def test_status_every_n_seconds_skips_rather_than_bunches():
    every = StatusEvery(60.0, start=0.0)
    assert [every.due(t) for t in (59.0, 60.0, 61.0, 200.0, 239.0, 240.0)] == [
        False, True, False, True, False, True
    ]  # fmt: skip
    assert not StatusEvery(None, start=0.0).due(1e9)


# -- a sensor on a piped capture --------------------------------------------------------


def two_parts(tmp_path: Path) -> tuple[bytes, bytes, int, int]:
    """A stream in two parts: two TCP flows (the first part), then a third
    flow a minute later. Returns the parts and how many packets each holds
    (pcap records, counted here from the file)."""
    start = at("2026-02-04 10:00", "UTC")
    first = Capture()
    first.transfer("10.8.10.7", "198.51.100.25", start=start, seconds=5, bytes_out=300_000,
                   bytes_in=20_000)  # fmt: skip
    first.transfer("10.8.10.8", "198.51.100.26", start=start, seconds=5, bytes_out=100_000)
    later = Capture()
    later.transfer("10.8.10.9", "198.51.100.27", start=start + 60 * 10**9, seconds=5,
                   bytes_out=50_000)  # fmt: skip
    one = first.write(tmp_path / "one.pcap").read_bytes()
    two = later.write(tmp_path / "two.pcap").read_bytes()[PCAP_HEADER:]
    return one, two, records(one[PCAP_HEADER:]), records(two)


def records(data: bytes) -> int:
    """Records of a little-endian pcap body, walked by their lengths."""
    count = at_byte = 0
    while at_byte < len(data):
        at_byte += 16 + int.from_bytes(data[at_byte + 8 : at_byte + 12], "little")
        count += 1
    return count


def live(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "-r", "-", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def read_until(proc: subprocess.Popen[bytes], pattern: str, timeout: float = 120) -> str:
    """stderr lines up to (and with) the first that matches ``pattern``."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        assert line, "".join(seen)
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError("".join(seen))


def finish(proc: subprocess.Popen[bytes]) -> str:
    """Close the stream and wait for the end; the rest of stderr."""
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    proc.stdin.close()
    proc.stdout.read()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    return err


def test_the_journal_gets_a_status_line_every_n_minutes(tmp_path):
    one, two, first_packets, later_packets = two_parts(tmp_path)
    # 0.02 minutes: a line every 1.2 s (stderr is a pipe here, not a terminal).
    proc = live("--status-every", "0.02")
    assert proc.stdin is not None
    read_until(proc, "capturing on standard input")
    proc.stdin.write(one)
    proc.stdin.flush()
    # The stream pauses after the first part: a line soon shows all of it,
    # two flows open (no FIN; the idle timeout is minutes), nothing analysed yet.
    line = read_until(proc, rf"status: {first_packets:,} packets")
    assert re.fullmatch(
        rf"egress-detector: status: {first_packets:,} packets, 0 dropped, 2 open flows, "
        r"0 alerts, RSS [1-9][0-9,]* MiB\n",
        line,
    ), line
    proc.stdin.write(two)
    err = finish(proc)
    assert proc.returncode == 0, err
    assert f"{first_packets + later_packets:,} packets in" in err


def test_notify_ready_watchdog_status_and_stopping(tmp_path):
    address = str(tmp_path / "notify")
    server = listening(address)
    one, two, first_packets, _later = two_parts(tmp_path)
    proc = live("--status-every", "0",
                env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"})  # fmt: skip
    assert proc.stdin is not None
    read_until(proc, "capturing on standard input")
    proc.stdin.write(one)
    proc.stdin.flush()
    messages: list[str] = []
    deadline = time.monotonic() + 60
    # The watchdog is due every second (half of WATCHDOG_USEC) while the stream is open.
    while messages.count("WATCHDOG=1") < 3 or f"{first_packets:,} packets" not in messages[-1]:
        assert time.monotonic() < deadline, messages
        messages.append(server.recv(4096).decode())
    proc.send_signal(signal.SIGTERM)
    while not messages[-1].startswith("STOPPING=1"):
        messages.append(server.recv(4096).decode())
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err  # stopped by its service manager: a normal end
    assert messages[0] == "STATUS=starting: loading (or compiling) the packet kernels"
    assert messages[1] == "READY=1\nSTATUS=capturing on standard input"
    statuses = [m for m in messages[2:] if m.startswith("STATUS=")]
    assert statuses and all(
        re.fullmatch(r"STATUS=capturing on standard input: [0-9,]+ packets, 0 dropped, "
                     r"[0-9,]+ open flows, 0 alerts, RSS [0-9,]+ MiB", m)
        for m in statuses
    ), statuses  # fmt: skip
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping: flushing flows, the last alerts"
    assert set(messages[2:-1]) <= {"WATCHDOG=1", *statuses}
    server.close()


def incident(tmp_path: Path) -> Path:
    """The modelled incident (as tests/test_live_stream.py): a bridge from a PC
    to the isolated host, then its upload outside at night."""
    night = at("2026-02-04 02:13", "Asia/Taipei")
    cap = Capture()
    cap.transfer(PC, ISO, dport=445, start=night - 600 * 10**9, seconds=60, bytes_out=200_000,
                 bytes_in=50_000)  # fmt: skip
    cap.transfer(ISO, OUT, dport=443, start=night, seconds=360, bytes_out=62_000_000,
                 bytes_in=1_000_000)  # fmt: skip
    cap.transfer("10.8.10.7", "198.51.100.25", dport=443, start=night, seconds=300,
                 bytes_out=30_000_000)  # fmt: skip
    return cap.write(tmp_path / "incident.pcap")


def documents(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def raised(docs: list[dict]) -> list[tuple[str, str]]:
    return sorted((d["rule"]["id"], d["event"]["id"]) for d in docs
                  if d["event"]["action"] == "alert-raised")  # fmt: skip


def test_sighup_after_a_rename_reopens_the_alert_file_and_loses_no_alert(tmp_path):
    data = incident(tmp_path).read_bytes()
    alerts = tmp_path / "alerts.jsonl"
    proc = live("--policy", str(POLICY), "--report-every", "1", "-o", str(alerts))
    assert proc.stdin is not None
    read_until(proc, "capturing on standard input")
    # The bridge and the start of the upload: alerts before the rotation.
    half = len(data) // 3
    proc.stdin.write(data[:half])
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not alerts.exists() or not alerts.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "no alert before the rotation"
        time.sleep(0.1)
    rotated = tmp_path / "alerts.jsonl.1"
    alerts.rename(rotated)  # logrotate's rename ...
    proc.send_signal(signal.SIGHUP)  # ... and its postrotate
    read_until(proc, f"SIGHUP: reopened {re.escape(str(alerts))}")
    before = rotated.read_text()
    proc.stdin.write(data[half:])
    err = finish(proc)
    assert proc.returncode == 1, err
    assert rotated.read_text() == before  # nothing written to the renamed file after SIGHUP
    old, new = documents(rotated), documents(alerts)
    assert old and new  # alerts on both sides of the rotation
    # Every alert once: the same as one run of the same stream into one file.
    whole = tmp_path / "whole.jsonl"
    reference = live("--policy", str(POLICY), "-o", str(whole))
    reference.communicate(data, timeout=120)
    assert raised(old + new) == raised(documents(whole))
    ids = [d["event"]["id"] for d in old + new if d["event"]["action"] == "alert-raised"]
    assert len(ids) == len(set(ids))


def test_a_gzip_stream_on_standard_input_is_read(tmp_path):
    data = incident(tmp_path).read_bytes()
    plain = live("--policy", str(POLICY), "--format", "jsonl")
    out_plain, _ = plain.communicate(data, timeout=120)
    # Two gzip members, as `cat a.gz b.gz` gives: read in turn.
    cut = len(data) // 2
    packed = gzip.compress(data[:cut]) + gzip.compress(data[cut:])
    zipped = live("--policy", str(POLICY), "--format", "jsonl")
    out_zipped, err = zipped.communicate(packed, timeout=120)
    assert zipped.returncode == 1, err
    docs = [json.loads(line) for line in out_zipped.splitlines()]
    assert raised(docs) == raised([json.loads(line) for line in out_plain.splitlines()])
    assert raised(docs)
    packets = re.search(rb"([0-9,]+) packets in", err)
    assert packets is not None and int(packets.group(1).replace(b",", b"")) == records(
        data[PCAP_HEADER:]
    )


# -- inputs checked before anything compiles ------------------------------------------


@pytest.mark.parametrize(
    ("command", "stdin", "message"),
    [
        (["live", "-r", "-"], b"hello, this is text\n", "not a pcap or pcapng stream"),
        (["live", "-r", "-"], gzip.compress(b"hello, this is text\n"),
         "byte offset 0 of the decompressed data: not a pcap or pcapng stream"),
        (["live", "-r", "-"], b"", "the stream ended before its pcap/pcapng header"),
        (["live", "-r", "/nonexistent/stream"], b"", "-r /nonexistent/stream: no such file"),
        (["live", "-r", "-", "-o", "/nonexistent/alerts.jsonl"], b"",
         "-o /nonexistent/alerts.jsonl: cannot be written"),
        (["live", "-i", "ed-no-such-if0"], b"", "interface 'ed-no-such-if0' does not exist"),
        (["flows", "/nonexistent/a.pcap"], b"", "/nonexistent/a.pcap: no such file"),
        (["scan", "/nonexistent/a.pcap", "/nonexistent/b.pcap"], b"",
         "/nonexistent/b.pcap: no such file"),
        (["train", "-o", "/tmp/ed-never.model", "/nonexistent/a.pcap"], b"",
         "/nonexistent/a.pcap: no such file"),
    ],
)  # fmt: skip
def test_bad_inputs_are_said_before_anything_compiles(tmp_path, command, stdin, message):
    # An empty kernel cache: anything compiled would land in it. No shipped cache
    # (conftest.py may name an installed package's): its files would be copied in.
    cache = tmp_path / "cache"
    env = {**os.environ, "EGRESS_DETECTOR_CACHE_DIR": str(cache)}
    env.pop("EGRESS_DETECTOR_SHIPPED_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "detector", *command], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=120, env=env)  # fmt: skip
    err = proc.stderr.decode()
    assert message in err and "Traceback" not in err, err
    assert proc.returncode in (2, 3), err
    assert "compiling" not in err
    assert not [p for p in cache.rglob("*") if p.is_file()], "something was compiled"


def test_the_compile_note_comes_when_numba_compiles_and_only_then(capsys):
    from detector import _jit
    from detector.cli.console import say_compiling

    @_jit.numba.njit(cache=False)
    def add_one(x):  # type: ignore[no-untyped-def]
        return x + 1

    say_compiling(5, what="test kernels")
    assert capsys.readouterr().err == ""  # armed, not said: nothing compiled yet
    assert add_one(1) == 2  # compiles
    assert add_one(2) == 3
    err = capsys.readouterr().err
    assert err.count("egress-detector: compiling the test kernels for this machine") == 1, err
    say_compiling(5, what="test kernels")
    assert add_one(3) == 4  # compiled already: loaded, not compiled
    say_compiling(5, quiet=True)
    assert capsys.readouterr().err == ""


def test_a_run_with_the_kernels_cached_says_nothing_of_compiling():
    sample = str(ROOT / "captures" / "sample-incident.pcap.gz")
    runs = [subprocess.run([sys.executable, "-m", "detector", "flows", sample, "--top", "1"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
            for _ in range(2)]  # fmt: skip
    assert runs[1].returncode == 0, runs[1].stderr
    assert "compiling" not in runs[1].stderr  # the first run cached whatever it compiled


# -- the watchdog's signal: a capture worker that stops going round ---------------------


class StuckSource:
    """A source whose read hangs (a kernel that never returns) once ``stuck`` is set."""

    name = "stuck"
    batch_rows = 64
    finished = False

    def __init__(self) -> None:
        import threading

        self.stuck = threading.Event()
        self.release = threading.Event()

    def read(self, batch, timeout, inspector=None) -> int:  # type: ignore[no-untyped-def]
        if self.stuck.is_set():
            self.release.wait(30)
        return 0

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, 0.05))

    def stats(self):  # type: ignore[no-untyped-def]
        from detector.capture.live import SourceStats

        return SourceStats()

    def close(self) -> None:
        self.release.set()


def test_a_stuck_capture_worker_shows_as_silence_the_watchdog_is_not_fed_through(tmp_path):
    import threading

    from detector.pipelines.live import LiveDetector, LiveOptions
    from detector.policy import default_policy

    source = StuckSource()
    silences: list[tuple[bool, float]] = []
    detector = LiveDetector(
        [source], default_policy(), LiveOptions(duration=4.0), emit=lambda alerts: None,
        status=lambda status: silences.append((source.stuck.is_set(), status.worker_silence)),
    )  # fmt: skip
    threading.Timer(1.5, source.stuck.set).start()
    threading.Timer(3.9, source.release.set).start()
    detector.run()
    going = [s for stuck, s in silences if not stuck]
    hung = [s for stuck, s in silences if stuck]
    assert going and hung, silences
    # Going round: a loop every 0.05 s. Hung: the silence grows with the hang
    # (the status comes about once a second, the hang lasts 2.4 s).
    assert max(going) < 0.5, silences
    assert max(hung) >= 1.0, silences
    # The watchdog (1 s between feeds here) takes the hung worker for dead.
    dog = Watchdog(Notifier(None), interval=1.0)
    assert all(dog.capture_alive(s) for s in going)
    assert not dog.capture_alive(max(hung))


def test_an_earlier_output_is_left_as_it_was_when_no_capture_can_be_read(tmp_path):
    earlier = tmp_path / "flows.csv"
    earlier.write_text("yesterday's flows\n")
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "flows", str(tmp_path / "missing.pcap"), "-o",
         str(earlier)], capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == f"egress-detector: error: {tmp_path / 'missing.pcap'}: no such file\n"
    assert earlier.read_text() == "yesterday's flows\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.csv"]  # no partial file left
