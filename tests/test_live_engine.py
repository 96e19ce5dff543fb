"""The live engine over hours of traffic, without root or waiting: packets of a
generated capture are counted into a worker's tables by hand, on a clock the
test sets, and analyses run when a live sensor would run them. What the sensor
writes is compared with a scan of the whole capture and with hand-computed
figures (``gen_traffic`` transfers are exact wire bytes)."""

from __future__ import annotations

from pathlib import Path

from gen_traffic import Capture, at

from detector.alerts.record import to_ecs
from detector.capture import read_packets
from detector.capture.live import SourceStats
from detector.pipelines.live import LiveDetector, LiveOptions
from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy

ISO, PC, OUT, NEW = "10.8.40.31", "10.8.10.7", "203.0.113.140", "203.0.113.77"
HOUR = 3600 * 1_000_000_000

POLICY = """
[site]
name = "engine"
timezone = "UTC"
[business_hours]
days = []
[networks]
internal = ["10.8.0.0/16"]
isolated = ["10.8.40.0/24"]
[rules.bulk-upload-new-destination]
min_bytes = 2_000_000
"""


class ClockSource:
    """No packets of its own (the test counts them in); its clock is the
    test's, as a replayed stream's is its packets' time."""

    name = "hand"
    batch_rows = 1024
    finished = False

    def __init__(self) -> None:
        self.now = 0

    def clock_ns(self) -> int:
        return self.now

    def read(self, batch, timeout, inspector=None) -> int:
        return 0

    def wait(self, timeout: float) -> None:
        pass

    def stats(self) -> SourceStats:
        return SourceStats()

    def close(self) -> None:
        pass


def engine(**options):
    source = ClockSource()
    written: list = []
    detector = LiveDetector([source], parse_policy(POLICY), LiveOptions(**options),
                            emit=written.extend)  # fmt: skip
    return detector, source, written


def count_in(detector: LiveDetector, path: Path) -> None:
    worker = detector.workers[0]
    for batch in read_packets([path]):
        worker.flows.ingest(batch)
        worker.activity.ingest(batch)


def test_an_upload_that_goes_on_is_written_again_with_its_totals(tmp_path):
    """Raised after 3 MB; the upload goes on to 8 MB: an update with the same
    event.id carries the grown figures, which are the scan's; nothing new, no
    update."""
    start = at("2026-02-04 02:00", "UTC")
    parts = [
        dict(start=start, seconds=300, bytes_out=3_000_000, bytes_in=40_000),
        dict(start=start + 301 * 10**9, seconds=600, bytes_out=5_000_000, bytes_in=60_000),
    ]
    first, rest, whole = Capture(), Capture(), Capture()
    first.transfer(ISO, OUT, **parts[0])
    rest.transfer(ISO, OUT, **parts[1])
    for part in parts:
        whole.transfer(ISO, OUT, **part)

    detector, source, written = engine()
    count_in(detector, first.write(tmp_path / "first.pcap"))
    source.now = start + 320 * 10**9
    detector._analyse(final=False)
    rules = ["isolated-egress", "bulk-upload-new-destination"]
    assert sorted((a.rule_id, a.source_bytes, a.event_action) for a in written) == sorted(
        (rule, 3_000_000, "alert-raised") for rule in rules)  # fmt: skip
    raised = {a.rule_id: a for a in written}
    count_in(detector, rest.write(tmp_path / "rest.pcap"))
    source.now = start + 960 * 10**9
    detector._analyse(final=False)
    detector._analyse(final=True)  # nothing new since: no second update
    assert len(written) == 4 and detector.emitted == written[:2]
    assert detector.updates == written[2:]
    policy = parse_policy(POLICY)
    scan = scan_captures([whole.write(tmp_path / "whole.pcap")], policy)
    assert sorted(a.rule_id for a in scan.alerts) == sorted(rules)
    for expected in scan.alerts:
        first_doc = raised[expected.rule_id]
        (update,) = [a for a in detector.updates if a.rule_id == expected.rule_id]
        assert (update.event_id, update.event_action, update.event_sequence) == (
            first_doc.event_id, "alert-updated", 1)  # fmt: skip
        assert (update.source_bytes, update.destination_bytes) == (8_000_000, 100_000)
        assert update.start_ns == first_doc.start_ns and update.end_ns > first_doc.end_ns
        # The update's figures and words are the scan's.
        assert (update.source_bytes, update.source_packets, update.destination_packets,
                update.start_ns, update.end_ns, update.message) == (
            expected.source_bytes, expected.source_packets, expected.destination_packets,
            expected.start_ns, expected.end_ns, expected.message)  # fmt: skip
        docs = [to_ecs(a, policy.zone, "engine") for a in (first_doc, update)]
        assert [(d["event"]["id"], d["event"]["action"], d["event"]["sequence"]) for d in docs] == [
            (first_doc.event_id, "alert-raised", 0), (first_doc.event_id, "alert-updated", 1)]  # fmt: skip
        assert docs[1]["source"]["bytes"] == 8_000_000
    assert len({a.event_id for a in detector.emitted}) == 2


def test_an_address_first_reached_before_the_history_is_not_new_again(tmp_path):
    """Day 1 a host reaches OUT (a little); 30 hours later it uploads 3 MB to
    OUT and 3 MB to NEW. With 26 hours of history the sensor has dropped day
    1's minutes by then, but not the first contact: as a scan of the whole
    span, bulk-upload-new-destination fires for NEW only."""
    day1 = at("2026-02-03 10:00", "UTC")
    later = day1 + 30 * HOUR
    before, after, whole = Capture(), Capture(), Capture()
    for cap in (before, whole):
        cap.transfer(PC, OUT, start=day1, seconds=60, bytes_out=50_000, bytes_in=200_000)
    for cap in (after, whole):
        cap.transfer(PC, OUT, start=later, seconds=600, bytes_out=3_000_000, sport=50000)
        cap.transfer(PC, NEW, start=later, seconds=600, bytes_out=3_000_000, sport=50001)

    detector, source, written = engine(history_hours=26.0)
    count_in(detector, before.write(tmp_path / "before.pcap"))
    source.now = day1 + 120 * 10**9
    detector._analyse(final=False)
    source.now = later  # the sensor ran on: day 1's minutes are dropped here
    detector._analyse(final=False)
    assert len(detector.snapshot()[0].columns()["a_hi"]) == 0  # day 1 is gone
    count_in(detector, after.write(tmp_path / "after.pcap"))
    source.now = later + 700 * 10**9
    detector._analyse(final=True)
    bulk = [a for a in detector.emitted if a.rule_id == "bulk-upload-new-destination"]
    assert [(a.source_ip, a.destination_ip, a.source_bytes) for a in bulk] == [
        (PC, NEW, 3_000_000)]  # fmt: skip

    scan = scan_captures([whole.write(tmp_path / "whole.pcap")], parse_policy(POLICY))
    scanned = [a for a in scan.alerts if a.rule_id == "bulk-upload-new-destination"]
    assert [(a.source_ip, a.destination_ip, a.source_bytes) for a in scanned] == [
        (PC, NEW, 3_000_000)]  # fmt: skip
    assert bulk[0].message == scanned[0].message
