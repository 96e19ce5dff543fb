"""The TPACKET_V3 ring walker and the live engine, without root: rings built in
memory as the kernel leaves them, compared with the file walker on the same
frames; damaged rings; the engine's windows, clock and drop alerts."""

from __future__ import annotations

import struct
import time
from ctypes.util import find_library

import numpy as np
import pytest

from detector._kernels import ring as ringk
from detector.alerts.record import to_ecs
from detector.alerts.stream import SyslogSender, _host_port
from detector.capture import PacketBatch, read_packets
from detector.capture.files import new_counters
from detector.capture.live import RingReader, SourceStats, compile_bpf, fake_ring, sample_frame
from detector.errors import DetectorError
from detector.pipelines import live as live_mod
from detector.pipelines.live import SENSOR_BLIND, SENSOR_DROPS, LiveDetector, LiveOptions
from detector.policy import parse_policy

T0 = 1_790_000_000 * 1_000_000_000


def frames(n: int) -> list[tuple[int, bytes]]:
    out = []
    for i in range(n):
        frame = sample_frame(src=f"10.8.40.{i % 7 + 1}", dst="203.0.113.140", sport=40000 + i % 5,
                             payload=(i * 37) % 1400, flags=0x18)  # fmt: skip
        out.append((T0 + i * 1_000_003, frame))
    return out


def walk(ring: np.ndarray, block_size: int, block_count: int, rows: int = 4096):
    batch = PacketBatch.empty(rows)
    state = np.zeros(ringk.R_FIELDS, dtype=np.int64)
    counters = new_counters()
    out = []
    while True:
        n, why = ringk.walk_ring(ring, block_size, block_count, state, 1, False, False, rows,
                                 counters, batch.arrays())  # fmt: skip
        out.append(batch.head(n).copy())
        if why == ringk.RING_IDLE:
            break
    return out, counters, state


def as_pcap(path, items: list[tuple[int, bytes]]):
    records = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
    for ts, frame in items:
        sec, nsec = divmod(ts, 1_000_000_000)
        records.append(struct.pack("<IIII", sec, nsec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(records))
    return path


COLUMNS = ("ts_ns", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "proto",
           "ip_version", "wire_len", "cap_len", "tcp_flags", "vlan", "status")  # fmt: skip


def test_ring_decodes_as_the_file_walker_does(tmp_path):
    items = frames(300)
    ring = fake_ring(items, block_size=1 << 16, block_count=8, per_block=40)
    batches, counters, state = walk(ring, 1 << 16, 8)
    got = PacketBatch(
        *(np.concatenate(c) for c in zip(*(b.arrays() for b in batches), strict=True))
    )
    want = next(iter(read_packets([as_pcap(tmp_path / "same.pcap", items)])))
    assert len(got) == len(want) == 300
    for column in COLUMNS:
        assert np.array_equal(getattr(got, column), getattr(want, column)), column
    # Each row's offset is 16 bytes before its frame in the ring, as a pcap record's.
    for row, (_, frame) in zip(got.offset, items, strict=True):
        assert ring[row + 16 : row + 16 + len(frame)].tobytes() == frame
    # Every block was handed back to the kernel, and the walk waits at the next one.
    assert all(ring[b * (1 << 16) + 8] == ringk.TP_STATUS_KERNEL for b in range(8))
    assert state[ringk.R_BLOCK] == 8 % 8 and counters[ringk.COUNT_RING_BLOCKS] == 8
    assert counters[ringk.COUNT_RING_DAMAGED] == 0


def test_held_blocks_stay_ours_until_released():
    ring = fake_ring(frames(100), block_size=1 << 16, block_count=4, per_block=30)
    batch = PacketBatch.empty(64)
    state = np.zeros(ringk.R_FIELDS, dtype=np.int64)
    n, why = ringk.walk_ring(ring, 1 << 16, 4, state, 1, False, True, 64, new_counters(),
                             batch.arrays())  # fmt: skip
    assert (n, why) == (64, ringk.RING_BATCH_FULL)
    status = [int(ring[b * (1 << 16) + 8]) for b in range(4)]
    assert status == [1, 1, 1, 1] and state[ringk.R_HELD] == 2  # two read in full, held
    assert ringk.release_held(ring, 1 << 16, 4, state) == 2
    assert [int(ring[b * (1 << 16) + 8]) for b in range(4)] == [0, 0, 1, 1]
    n, why = ringk.walk_ring(ring, 1 << 16, 4, state, 1, False, True, 64, new_counters(),
                             batch.arrays())  # fmt: skip
    assert (n, why) == (36, ringk.RING_IDLE) and state[ringk.R_HELD] == 2
    assert ringk.release_held(ring, 1 << 16, 4, state) == 2
    assert all(ring[b * (1 << 16) + 8] == 0 for b in range(4))


def test_a_full_batch_resumes_mid_block():
    items = frames(100)
    ring = fake_ring(items, block_size=1 << 16, block_count=4, per_block=30)
    batches, _, _ = walk(ring, 1 << 16, 4, rows=7)
    assert [len(b) for b in batches[:-1]] == [7] * 14 and len(batches[-1]) == 2
    ts = np.concatenate([b.ts_ns for b in batches])
    assert list(ts) == [t for t, _ in items]


def test_a_tag_the_kernel_took_off_is_put_back():
    ring = fake_ring(frames(3), block_size=4096, block_count=2, vlan_tci=0x2000 | 42)
    (batch, *_), _, _ = walk(ring, 4096, 2)
    assert list(batch.vlan) == [42] * 3
    plain, _, _ = walk(fake_ring(frames(3), block_size=4096, block_count=2), 4096, 2)
    assert list(batch.wire_len) == list(plain[0].wire_len + 4)  # as libpcap shows the frame
    assert list(batch.cap_len) == list(plain[0].cap_len)  # what lies in the ring
    assert list(plain[0].vlan) == [0xFFFF] * 3


@pytest.mark.parametrize("field_at,value", [(0, 8), (0, 1 << 30), (12, 1 << 20), (24, 5),
                                            (24, 60000)])  # fmt: skip
def test_damaged_offsets_and_lengths_never_read_outside_the_block(field_at, value):
    """tp_next_offset (0), tp_snaplen (12), tp_mac (24) of the first packet
    made impossible: the block is left, counted, handed back; no crash."""
    ring = fake_ring(frames(10), block_size=4096, block_count=2, per_block=5)
    first = 48
    ring[first + field_at : first + field_at + 4] = np.frombuffer(
        struct.pack("<I", value) if field_at != 24 else struct.pack("<H", value) + b"\0\0",
        dtype=np.uint8,
    )
    batches, counters, _ = walk(ring, 4096, 2)
    total = sum(len(b) for b in batches)
    assert counters[ringk.COUNT_RING_DAMAGED] == 1
    assert 5 <= total < 10  # the other block is whole
    assert all(ring[b * 4096 + 8] == 0 for b in range(2))


def test_a_block_claiming_more_packets_than_it_holds():
    ring = fake_ring(frames(4), block_size=4096, block_count=2)
    ring[12:16] = np.frombuffer(struct.pack("<I", 1_000_000), dtype=np.uint8)
    batches, counters, _ = walk(ring, 4096, 2)
    assert sum(len(b) for b in batches) == 4 and counters[ringk.COUNT_RING_DAMAGED] == 1


@pytest.mark.skipif(
    find_library("pcap") is None,
    reason="libpcap is not installed (it compiles --bpf filters; apt-get install libpcap0.8)",
)
def test_snaplen_caps_the_filter_program():
    program = compile_bpf("tcp port 443", 1, snaplen=128)
    returns = [
        struct.unpack_from("HBBI", program, i)[3]
        for i in range(0, len(program), 8)
        if struct.unpack_from("HBBI", program, i)[0] == 0x06
    ]
    assert 128 in returns and max(returns) == 128 and 0 in returns
    assert struct.unpack("HBBI", compile_bpf(None, 1, snaplen=96)) == (0x06, 0, 0, 96)
    with pytest.raises(DetectorError, match="syntax error"):
        compile_bpf("tcp port", 1)


def test_filter_without_libpcap_says_what_to_install(monkeypatch):
    import scapy.arch.common

    def no_libpcap(*args, **kwargs):
        raise OSError("libpcap is not available. Cannot compile filter !")

    monkeypatch.setattr(scapy.arch.common, "compile_filter", no_libpcap)
    with pytest.raises(DetectorError) as caught:
        compile_bpf("tcp port 443", 1)
    message = str(caught.value)
    assert message.startswith("--bpf 'tcp port 443': compiling a filter needs libpcap")
    assert "apt-get install libpcap0.8" in message and "\n" not in message


# -- the engine ------------------------------------------------------------------------


class FakeSource:
    """Hands out a ring's packets once, then nothing; reports ``dropped``."""

    name = "fake"
    batch_rows = 1024
    iface = "span1"

    def __init__(self, items, dropped: int = 0) -> None:
        ring = fake_ring(items, block_size=1 << 16, block_count=4, per_block=50)
        self.reader = RingReader(ring, 1 << 16, 4, 1, max_rows=self.batch_rows)
        self.dropped = dropped
        self.closed = False

    def read(self, batch, timeout, inspector=None):
        return self.reader.read(batch, inspector)

    def wait(self, timeout):
        time.sleep(min(timeout, 0.05))

    def stats(self):
        return SourceStats(delivered=0, kernel_received=0, kernel_dropped=self.dropped)

    def close(self):
        self.closed = True


ISOLATED_NIGHT = """
[site]
timezone = "UTC"
[business_hours]
days = []
[networks]
internal = ["10.8.0.0/16"]
isolated = ["10.8.40.0/24"]
"""


def run_engine(items, *, dropped=0, policy=ISOLATED_NIGHT, **options):
    emitted: list[list] = []
    detector = LiveDetector(
        [FakeSource(items, dropped)],
        parse_policy(policy),
        LiveOptions(report_every=0.3, stats_every=0.2, interface="span1", **options),
        emit=emitted.append,
    )
    return detector.run(), emitted


def test_alerts_come_per_window_once_each(tmp_path):
    now = time.time_ns()
    items = [(now + i * 1000, frame) for i, (_, frame) in enumerate(frames(20))]
    result, emitted = run_engine(items, duration=1.2, keep_flows=True)
    keys = [(a.rule_id, a.source_ip, a.destination_ip, a.start_ns) for a in result.emitted]
    assert len(keys) == len(set(keys))
    assert {a.rule_id for a in result.emitted} == {"isolated-egress"}
    assert {a.source_ip for a in result.emitted} == {f"10.8.40.{i}" for i in range(1, 8)}
    assert len(emitted) == 1  # all raised at the first report, none again at the end
    # 20 (host, port) pairs: 7 hosts x 5 ports cycle in 35, so all are distinct.
    assert result.packets == 20 and len(result.flow_rows) == 20
    assert result.final is not None and len(result.final.alerts) == 7


def test_flows_close_on_the_clock_when_traffic_stops():
    old = time.time_ns() - 10 * 1_000_000_000  # ten seconds ago: idle at once with 1 s
    items = [(old + i, frame) for i, (_, frame) in enumerate(frames(5))]
    source = FakeSource(items)
    detector = LiveDetector([source], parse_policy(ISOLATED_NIGHT),
                            LiveOptions(report_every=60, idle_timeout=1.0, duration=1.6),
                            emit=lambda alerts: None)  # fmt: skip
    detector.workers[0].start = lambda: None  # drive the worker by hand below
    worker = detector.workers[0]
    batch = PacketBatch.empty(64)
    n = source.read(batch, 0)
    worker.flows.ingest(batch.head(n))
    assert worker.flows.live_flows == 5
    worker.flows.expire(detector.clock_ns(source) - live_mod.EXPIRE_SLACK_NS)
    assert worker.flows.live_flows == 0


def test_drops_at_night_on_an_isolated_segment_make_the_sensor_blind():
    now = time.time_ns()
    items = [(now, sample_frame(src="10.8.10.5", dst="10.8.10.6"))]
    result, _ = run_engine(items, dropped=1234, duration=0.8)
    rules = [a.rule_id for a in result.emitted]
    assert rules.count(SENSOR_BLIND) == 1 and rules.count(SENSOR_DROPS) == 1
    blind = next(a for a in result.emitted if a.rule_id == SENSOR_BLIND)
    assert blind.severity == 3 and blind.evidence["sensor_dropped_packets"] == 1234
    assert "10.8.40.0/24" in blind.message
    assert result.dropped == 1234


def test_sensor_alerts_name_the_sensor_in_ecs_observer_fields_not_source_ip():
    """ECS consumers reject a source.ip that is not an address: an alert about
    the sensor has no source, and says which sensor in observer.* (ECS 8:
    observer.hostname, observer.ingress.interface.name for a SPAN port)."""
    import ipaddress
    import socket

    now = time.time_ns()
    items = [(now, sample_frame(src="10.8.40.5", dst="203.0.113.9"))]
    result, _ = run_engine(items, dropped=77, duration=0.8)
    policy = parse_policy(ISOLATED_NIGHT)
    docs = {a.rule_id: to_ecs(a, policy.zone, "site") for a in result.emitted}
    assert set(docs) == {SENSOR_DROPS, SENSOR_BLIND, "isolated-egress"}
    for rule in (SENSOR_DROPS, SENSOR_BLIND):
        doc = docs[rule]
        assert "source" not in doc and "destination" not in doc and "network" not in doc
        assert doc["observer"] == {"name": "site", "product": "egress-detector", "type": "ids",
                                   "hostname": socket.gethostname(),
                                   "ingress": {"interface": {"name": "span1"}}}  # fmt: skip
        assert doc["event"]["type"] == ["info"] and doc["egress"]["sensor_dropped_packets"] == 77
    assert docs[SENSOR_BLIND]["egress"]["isolated_networks"] == ["10.8.40.0/24"]
    # The host's alert keeps its addresses, real ones.
    host = docs["isolated-egress"]
    assert ipaddress.ip_address(host["source"]["ip"]) == ipaddress.ip_address("10.8.40.5")
    assert host["destination"]["ip"] == "203.0.113.9" and host["event"]["type"] == ["connection"]
    assert "hostname" not in host["observer"]


def test_drops_in_business_hours_only_mark_the_window():
    always_open = ISOLATED_NIGHT.replace("days = []", 'days = ["mon", "tue", "wed", "thu", '
                                         '"fri", "sat", "sun"]\nstart = "00:00"\nend = "24:00"')  # fmt: skip
    result, _ = run_engine([(time.time_ns(), sample_frame())], dropped=5, policy=always_open,
                           duration=0.8)  # fmt: skip
    assert [a.rule_id for a in result.emitted] == [SENSOR_DROPS]


def test_syslog_messages_are_rfc5424(tmp_path):
    import socket

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    sender = SyslogSender(f"127.0.0.1:{receiver.getsockname()[1]}")
    result, _ = run_engine([(time.time_ns(), sample_frame(src="10.8.40.9"))], duration=0.5)
    alert = result.emitted[0]
    policy = parse_policy(ISOLATED_NIGHT)
    sender.send(alert, to_ecs(alert, policy.zone, "site"))
    data = receiver.recv(65535)
    header, _, body = data.partition(b" \xef\xbb\xbf")
    fields = header.decode().split(" ")
    assert fields[0] == "<130>1"  # local0 (16) * 8 + crit (2)
    assert fields[5] == "isolated-egress" and fields[6] == "-"
    assert b'"rule": {"id": "isolated-egress"' in body
    assert _host_port("[2001:db8::1]:6514") == ("2001:db8::1", 6514)
    assert _host_port("collector") == ("collector", 514)
    sender.close()
    receiver.close()


def test_forgetting_old_minutes_keeps_exactly_the_later_ones():
    from detector.flows.activity import ActivityTable

    minute = 60 * 1_000_000_000
    start = T0 - T0 % minute
    items = [(start + (i % 9) * minute + i, frame) for i, (_, frame) in enumerate(frames(90))]
    batch = PacketBatch.empty(128)
    ring = fake_ring(items, block_size=1 << 16, block_count=4, per_block=40)
    n, _ = ringk.walk_ring(ring, 1 << 16, 4, np.zeros(ringk.R_FIELDS, dtype=np.int64), 1, False,
                           False, 128, new_counters(), batch.arrays())  # fmt: skip
    whole = ActivityTable(bin_seconds=60, capacity=8)  # small: rows drained into chunks
    whole.ingest(batch.head(n))
    later = ActivityTable(bin_seconds=60)
    keep = batch.ts_ns[:n] >= start + 4 * minute
    later.ingest(PacketBatch(*(a[:n][keep] for a in batch.arrays())))
    assert whole.forget_before(start + 3 * minute + 1) > 0  # bin 3 starts before: it goes
    for name, column in whole.columns().items():
        assert np.array_equal(column, later.columns()[name]), name
    assert whole.forget_before(start) == 0
    whole.ingest(batch.head(n))  # it keeps counting
    assert whole.packets == 2 * n


def test_an_alert_that_goes_on_is_raised_once_then_updated():
    from detector.alerts.record import Alert

    detector = LiveDetector([FakeSource([])], parse_policy(ISOLATED_NIGHT), LiveOptions(),
                            emit=lambda alerts: None)  # fmt: skip

    def alert(start, end, rule="isolated-egress", dst="203.0.113.140", sent=10):
        # Times in seconds: event.id takes the incident's first whole second
        # (docs/alerts.md), so incidents told apart here start seconds apart.
        return Alert(rule, "r", 4, start * 10**9, end * 10**9, "10.8.40.31", "m",
                     destination_ip=dst, source_bytes=sent)  # fmt: skip

    first = detector._as_written(alert(100, 200))
    assert first is not None and (first.event_action, first.event_sequence) == ("alert-raised", 0)
    update = detector._as_written(alert(100, 300, sent=20))  # it went on
    assert update is not None
    assert (update.event_id, update.event_action, update.event_sequence) == (
        first.event_id, "alert-updated", 1)  # fmt: skip
    assert detector._as_written(alert(100, 300, sent=20)) is None  # nothing new: not again
    # Its start left the history: lower sums, no update.
    assert detector._as_written(alert(150, 400, sent=15)) is None
    for other in (alert(500, 600), alert(150, 400, dst="203.0.113.141"),
                  alert(150, 400, rule="offhours-bulk-egress")):  # fmt: skip
        written = detector._as_written(other)  # a new one: after a gap, elsewhere, another rule
        assert written is not None and written.event_action == "alert-raised"
        assert written.event_id != first.event_id


def test_an_alert_raised_before_its_name_was_read_is_updated_with_it():
    from detector.alerts.record import Alert

    detector = LiveDetector([FakeSource([])], parse_policy(ISOLATED_NIGHT), LiveOptions(),
                            emit=lambda alerts: None)  # fmt: skip

    def alert(domain=None, sent=10):
        return Alert("isolated-egress", "r", 4, 100 * 10**9, 200 * 10**9, "10.8.40.31", "m",
                     destination_ip="203.0.113.140", source_bytes=sent,
                     destination_domain=domain)  # fmt: skip

    first = detector._as_written(alert())  # on the connection's first packets: no name yet
    assert first is not None and first.destination_domain is None
    named = detector._as_written(alert("exfil.example.net"))  # same figures, the TLS name read
    assert named is not None
    assert (named.event_id, named.event_action, named.event_sequence) == (
        first.event_id, "alert-updated", 1)  # fmt: skip
    assert named.destination_domain == "exfil.example.net"
    assert detector._as_written(alert("exfil.example.net")) is None  # nothing new: not again
    assert detector._as_written(alert()) is None  # a later look without the name: no update
    grown = detector._as_written(alert(sent=20))  # it went on: updated, whatever the look named
    assert grown is not None and grown.event_sequence == 2


def test_workers_share_the_sensors_memory_budget():
    """Two workers hold what one does under a flood: each gets its share of the
    open flows, of the activity rows held before folding and of the payload
    facts (bench_live.py on a
    6M-packet flood: two workers 1,754 MiB before, 1,386 MiB after)."""
    from detector.flows.activity import DEFAULT_MAX_ROWS
    from detector.flows.payload import FACT_BUDGET

    def workers(n: int) -> list:
        detector = LiveDetector([FakeSource([]) for _ in range(n)], parse_policy(ISOLATED_NIGHT),
                                LiveOptions(max_flows=900_000), emit=lambda alerts: None)  # fmt: skip
        return detector.workers

    def budgets(ws: list) -> list:
        return [(w.flows.max_flows, w.activity.max_rows, w.inspector.budget) for w in ws]

    assert budgets(workers(1)) == [(900_000, DEFAULT_MAX_ROWS, FACT_BUDGET)]
    assert budgets(workers(3)) == [(300_000, DEFAULT_MAX_ROWS // 3, FACT_BUDGET // 3)] * 3
