"""One nightly run: take in new capture files, then finish every day that is
ready (scan, alerts, report), each day one unit of work (docs/nightly.md).

The order of work, and why a run killed anywhere can simply be run again:

1. Each new file that is finished (not modified for ``settle`` seconds, not
   growing while read, last record whole) is fingerprinted and recorded in
   the state, one transaction per file. A file already recorded under the same
   content hash (renamed, or compressed after rotation) is not taken twice.
2. Each ready day (in order) is scanned from the files whose packets reach
   into it, one hour either side included, as one stream in order of first
   packet: flows continue across file boundaries and across midnight. Its
   alerts are those that start within the local day.
3. The report is written to a temporary file and renamed into place.
4. New alerts (by their ``event.id``, the incident's: rule, host, other side
   and first second, as scan and live give it) are appended to the JSON-lines
   file, after cutting the file back to the end
   committed by the last finished day (removing what a killed run wrote
   after it), and synced to disk.
5. One transaction records the day as finished (not yet announced), its alert
   ids, the new end of the alerts file and the hosts seen. Only then are
   alerts sent to syslog (at least once; a kill between 5 and 6 sends them
   again, with the same id).
6. Once every day is done, the run announces the days it finished and those
   an earlier run finished but was stopped before announcing (the caller's
   ``announce``: the summary, then exit status 1 if they raised alerts), and
   one transaction marks them announced. A run killed before that leaves them
   to the next run that completes, so a monitor that watches exit codes hears
   of every alert; a kill between the summary and the mark announces them twice.

Everything a day's outputs depend on is the captures, the policy and the state
of earlier days, so redoing a day after a kill produces the same bytes: even
``event.created`` is the time the last capture file of the day was written
(its mtime: when the alert could first be made), not the time of the run.

Alerts a ``[[suppress]]`` table of the policy accepts are left out of the
alerts file and syslog and counted (the summary, the report's list with the
reasons); an alert whose rule, host and other side alerted on one of the
``report.recurring_days`` days before is marked recurring (``egress.recurrence``,
the report), from the state's record of earlier days' incidents.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..alerts.mask import json_text
from ..alerts.record import Alert, Observer, to_ecs
from ..capture import CaptureProblem, CaptureStats
from ..capture.reading import Reading
from ..errors import CaptureError, DetectorError
from ..pipelines.before import Before
from ..pipelines.devices import learned_cards
from ..pipelines.scan import ScanResult, scan_captures
from ..policy.suppress import split_suppressed
from ..report.html import relink, report_name, write_report
from ..units import HOUR_NS, SECOND_NS
from .discover import CaptureFingerprint, find_captures, fingerprint, first_packet_ns
from .history import day_contacts
from .state import FinishedDay, KnownFile, NightlyState

if TYPE_CHECKING:
    from ..alerts.sending import AlertSender
    from ..detect.model import EgressModel
    from ..distributed import DaskSession
    from ..policy import Policy
    from ..report.day import DayReport

# Read this much before and after the day: a flow open at midnight, an upload
# that began before it, the rules' 60-minute spans.
CONTEXT_NS = HOUR_NS
DEFAULT_SETTLE_SECONDS = 60.0
# A file whose last record is cut short and that has not changed for this long
# is a capture that ended abruptly (tcpdump killed), not one being written.
ABANDONED_AFTER_NS = HOUR_NS
KILL_HOOK = "EGRESS_DETECTOR_NIGHTLY_KILL_AFTER"  # tests: SIGKILL after N steps


@dataclass
class NightlyOptions:
    captures: str  # the directory of rotated captures
    state: str  # the SQLite state file
    report_dir: str
    alerts_path: str | None = None  # JSON lines, appended
    syslog: AlertSender | None = None  # syslog and/or a webhook (--syslog, --webhook)
    since: dt.date | None = None  # do not finish days before this one
    day: dt.date | None = None  # finish (or redo) this day only
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    threads: int | None = None
    sensor: str = ""
    learn: str | None = None  # the model file to refit from clean days (--learn)
    workers: int | None = None  # count on a local Dask cluster of this many processes
    scheduler: str | None = None  # or on the cluster at tcp://HOST:8786 (docs/distributed.md)
    # Give each day's scan what the days before taught (calls, beats, uploads:
    # nightly/history.py); False scans each day alone (the record is kept).
    history: bool = True


@dataclass
class DayDone:
    day: dt.date
    alerts: list[Alert]  # the day's alerts, worst first (suppressed ones left out)
    new_alerts: int  # of them, not written by an earlier run
    report: str
    files: int
    packets: int
    wire_bytes: int
    seconds: float
    suppressed: int = 0  # alerts a [[suppress]] of the policy held back (in the report)
    recurring: int = 0  # of ``alerts``, those seen on an earlier day (report.recurring_days)


@dataclass
class NightlyResult:
    taken: list[CaptureFingerprint] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # known content under a new name
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (path, why) left for later
    days: list[DayDone] = field(default_factory=list)
    not_ready: list[tuple[dt.date, str]] = field(default_factory=list)
    damaged: bool = False  # some capture could not be read completely
    # Days an earlier run finished and committed but was stopped (killed)
    # before announcing: this run announces them.
    earlier: list[FinishedDay] = field(default_factory=list)

    @property
    def new_alerts(self) -> int:
        """New alerts of the days finished in this run."""
        return sum(d.new_alerts for d in self.days)

    @property
    def announced_alerts(self) -> int:
        """Alerts this run announces: those of the days it finished and of the
        days in ``earlier`` (exit status 1 when there are any)."""
        return sum(len(d.alerts) for d in self.days) + sum(d.alerts for d in self.earlier)


class _Steps:
    """Counts units of work; with KILL_HOOK set, the process kills itself
    (SIGKILL: no clean-up of any kind) after that many, for the crash tests."""

    def __init__(self) -> None:
        hook = os.environ.get(KILL_HOOK)
        self.kill_after = int(hook) if hook else None
        self.done = 0

    def __call__(self) -> None:
        self.done += 1
        if self.kill_after is not None and self.done >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


def local_day(ts_ns: int, policy: Policy) -> dt.date:
    return dt.datetime.fromtimestamp(ts_ns // SECOND_NS, tz=policy.zone).date()


def day_bounds(day: dt.date, policy: Policy) -> tuple[int, int]:
    """UTC ns of the local midnight that starts ``day`` and of the next one
    (23 or 25 hours apart on a daylight-saving change)."""
    from ..report.day import day_bounds as bounds

    return bounds(day, policy)


def run_nightly(
    options: NightlyOptions,
    policy: Policy,
    *,
    model: EgressModel | None = None,
    on_problem: Callable[[CaptureProblem], None] | None = None,
    say: Callable[[str], None] = lambda _m: None,
    progress: Callable[[Iterator[int], Sequence[str]], Iterator[int]] | None = None,
    now_ns: int | None = None,
    on_day: Callable[[dt.date, ScanResult], None] | None = None,
    announce: Callable[[NightlyResult], None] | None = None,
) -> NightlyResult:
    """Take in new captures and finish every ready day (module docstring).
    ``on_day`` sees each finished day's scan (its files and the hour either side).
    ``announce`` tells of the result (the summary) once all the work is done;
    after it returns, the days in ``days`` and ``earlier`` are marked announced,
    and no later run has them in its ``earlier``."""
    if not os.path.isdir(options.captures):
        raise DetectorError(f"--captures {options.captures}: no such directory")
    Path(options.report_dir).mkdir(parents=True, exist_ok=True)
    now = time.time_ns() if now_ns is None else now_ns
    result = NightlyResult()

    def problem(p: CaptureProblem) -> None:
        result.damaged = result.damaged or p.fatal
        if on_problem is not None:
            on_problem(p)

    if options.learn is not None and model is None:
        raise DetectorError("--learn: give the model to update with --model")
    steps = _Steps()
    state = NightlyState(options.state)
    dask = None
    if options.scheduler or (options.workers or 1) > 1:
        from ..distributed import DaskSession

        # One cluster for every day of the run: a local one starts once, at the
        # first day to scan, not once a day.
        dask = DaskSession(options.workers, options.scheduler)
    try:
        earlier = state.unannounced_days()
        _take_in(options, state, result, now, problem, steps, progress)
        if options.learn is not None and model is not None:
            model = _learn(options, state, policy, model, state.unlearned_days())
        for day, why in _days_to_finish(options, state, result, policy, now):
            if why:
                result.not_ready.append((day, why))
                continue
            done = _finish_day(
                day, options, state, policy, model, problem, progress, steps, on_day, dask
            )
            if options.learn is not None and model is not None:
                model = _learn(options, state, policy, model, [str(day)])
                steps()
            result.days.append(done)
            held = f", {done.suppressed} suppressed by the policy" if done.suppressed else ""
            say(
                f"{day}: {len(done.alerts)} alert(s) ({done.new_alerts} new{held}) from "
                f"{done.files} file(s), {done.packets:,} packets in {done.seconds:.1f} s "
                f"→ {done.report}"
            )
        finished = {str(d.day) for d in result.days}
        result.earlier = [d for d in earlier if d.day not in finished]  # a --day redo
        if announce is not None:
            announce(result)
        state.mark_announced([d.day for d in result.earlier] + sorted(finished))
    finally:
        if dask is not None:
            dask.close()
        state.close()
    return result


def _learn(
    options: NightlyOptions,
    state: NightlyState,
    policy: Policy,
    model: EgressModel,
    days: list[str],
) -> EgressModel:
    """Refit the model up to the last of ``days`` (finished, their clean windows
    kept) and record them as learned; the model to use from now on."""
    from .learn import learned_dir, refit

    if not days or options.learn is None:
        return model
    fresh = refit(
        learned_dir(options.state), dt.date.fromisoformat(days[-1]), model, policy, options.learn
    )
    state.mark_learned(days)
    return model if fresh is None else fresh


# -- 1. taking files in ---------------------------------------------------------------


def _take_in(
    options: NightlyOptions,
    state: NightlyState,
    result: NightlyResult,
    now: int,
    problem: Callable[[CaptureProblem], None],
    steps: _Steps,
    progress: Callable[[Iterator[int], Sequence[str]], Iterator[int]] | None,
) -> None:
    settle_ns = int(options.settle_seconds * SECOND_NS)
    candidates: list[tuple[str, os.stat_result]] = []
    for path in find_captures(options.captures):
        name = os.fspath(path)
        try:
            info = os.stat(name)
        except OSError:
            continue  # removed since it was listed
        if state.file_at(name, info.st_size, info.st_mtime_ns) is not None:
            continue
        if now - info.st_mtime_ns < settle_ns:
            result.waiting.append((name, "still being written (modified in the last "
                                   f"{options.settle_seconds:g} s)"))  # fmt: skip
            continue
        candidates.append((name, info))

    def each() -> Iterator[int]:
        for name, before in candidates:
            _take_one(name, before, state, result, now, problem)
            steps()
            yield before.st_size

    sizes = each()
    for _ in progress(sizes, [n for n, _ in candidates]) if progress is not None else sizes:
        pass


def _take_one(
    name: str,
    before: os.stat_result,
    state: NightlyState,
    result: NightlyResult,
    now: int,
    problem: Callable[[CaptureProblem], None],
) -> None:
    try:
        found = fingerprint(name)
    except CaptureError as exc:
        problem(CaptureProblem(name, None, str(exc).removeprefix(f"{name}: "), True))
        return
    after = os.stat(name)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        result.waiting.append((name, "still being written (it changed while read)"))
        return
    if found.cut_short:
        since = state.waiting_since(name, found.size, found.mtime_ns, "cut short", now)
        if now - since < ABANDONED_AFTER_NS:
            result.waiting.append((name, "still being written (its last record is cut short)"))
            return
    if not found.packets:  # in no day, so no scan will say it
        for p in found.problems:
            problem(p)
    known = state.file_with_hash(found.content_hash)
    if known is not None:
        if known.path != name and not os.path.exists(known.path):
            state.moved_file(found.content_hash, found)
            result.moved.append(name)
        return  # the same packets as a file already taken in
    state.take_file(found, now)
    result.taken.append(found)


# -- 2. which days --------------------------------------------------------------------


def _days_to_finish(
    options: NightlyOptions,
    state: NightlyState,
    result: NightlyResult,
    policy: Policy,
    now: int,
) -> list[tuple[dt.date, str]]:
    """Days to finish in this run, in order, each with '' or why it must wait."""
    files = [f for f in state.files() if f.first_ns is not None and f.last_ns is not None]
    if options.day is not None:
        return [(options.day, "")]
    finished = state.finished_days()
    days: set[dt.date] = set()
    for f in files:
        assert f.first_ns is not None and f.last_ns is not None
        day = local_day(f.first_ns, policy)
        last = local_day(f.last_ns, policy)
        while day <= last:
            days.add(day)
            day += dt.timedelta(days=1)
    latest = max((f.last_ns for f in files if f.last_ns is not None), default=None)
    unfinished_from = min(
        (t for t in (first_packet_ns(p) for p, _ in result.waiting) if t is not None),
        default=None,
    )
    settle_ns = int(options.settle_seconds * SECOND_NS)
    out: list[tuple[dt.date, str]] = []
    for day in sorted(days):
        if str(day) in finished or (options.since is not None and day < options.since):
            continue
        _, end = day_bounds(day, policy)
        covered = latest is not None and latest >= end + CONTEXT_NS
        if not covered and now < end + CONTEXT_NS + settle_ns:
            out.append((day, "the day (and the hour after it) is not over yet"))
        elif unfinished_from is not None and unfinished_from < end + CONTEXT_NS:
            out.append((day, "a capture of it is still being written"))
        else:
            out.append((day, ""))
    return out


# -- 3. a day -------------------------------------------------------------------------


def _finish_day(
    day: dt.date,
    options: NightlyOptions,
    state: NightlyState,
    policy: Policy,
    model: EgressModel | None,
    problem: Callable[[CaptureProblem], None],
    progress: Callable[[Iterator[int], Sequence[str]], Iterator[int]] | None,
    steps: _Steps,
    on_day: Callable[[dt.date, ScanResult], None] | None,
    dask: DaskSession | None = None,
) -> DayDone:
    from ..report import CaptureFile, build_day_report

    started = time.perf_counter()
    start, end = day_bounds(day, policy)
    files = []
    for f in state.files():
        if not _overlaps(f, start - CONTEXT_NS, end + CONTEXT_NS):
            continue
        if not os.path.exists(f.path):  # removed by the capture's retention
            problem(CaptureProblem(f.path, None, f"taken in on an earlier run but no longer "
                                   f"there: {day} is finished without it", False))  # fmt: skip
            continue
        files.append(f)
    paths = [f.path for f in files]
    stats: list[CaptureStats] = []
    # The cards seen on isolated segments on earlier days: new-device-isolated's
    # baseline; with the history, what else the days before taught
    # (nightly/history.py): the hosts that called an address, each host's beats
    # and uploads, who used an address at all (on workers too).
    before = Before(learned_devices=state.devices_before(str(day)))
    if options.history:
        history = state.history_before(str(day))
        if not history.empty:
            before = replace(before, first_contacts=history.uploads,
                             other_users=history.users_of, habits=history.beats,
                             earlier_users=history.contacts_of)  # fmt: skip
    count = partial(scan_captures, before=before)
    if dask is not None:
        from ..distributed import scan_captures_distributed

        count = partial(scan_captures_distributed, client=dask.client(), before=before)
    scan = count(
        paths,
        policy,
        reading=Reading(
            options.threads,
            problem,
            stats,
            (lambda b: progress(b, paths)) if progress is not None else None,
        ),
        model=model,
    )
    alerts, held = split_suppressed(
        [a for a in scan.alerts if start <= a.start_ns < end], policy.suppressions, policy.zone
    )
    earlier = state.incidents_between(str(day - dt.timedelta(days=policy.recurring_days)), str(day))
    alerts = [
        replace(a, previously_seen=seen) if (seen := earlier.get(_incident(a))) else a
        for a in alerts
    ]
    if on_day is not None:
        on_day(day, scan)
    in_day = [f for f in files if _overlaps(f, start, end)]
    report = build_day_report(
        replace(scan, alerts=alerts),
        policy,
        day=day,
        files=[
            CaptureFile(
                path=f.path,
                bytes=f.size,
                first_ns=int(f.first_ns or 0),
                last_ns=int(f.last_ns or 0),
                packets=f.packets,
                kernel_drops=f.kernel_drops,
            )
            for f in in_day
        ],
        processing_seconds=time.perf_counter() - started,
        known_hosts=state.hosts_before(str(day)),
        sensor=options.sensor or policy.sensor or "",
        suppressed=held,
    )
    report_path = os.path.join(options.report_dir, report_name(day))
    _write_linked(report, report_path, day, options.report_dir, state)
    steps()

    # event.created: when the day's last capture was written (the same on a redo).
    created = max((f.mtime_ns for f in files), default=end + CONTEXT_NS)
    observer = Observer(options.sensor or policy.sensor or socket.gethostname() or None)
    docs = [
        to_ecs(alert, policy.zone, policy.site_name, created_ns=created, observer=observer)
        for alert in alerts
    ]
    ids = [str(d["event"]["id"]) for d in docs]
    written = state.written_alert_ids(ids)
    new = [d for d, i in zip(docs, ids, strict=True) if i not in written]
    if options.learn is not None and model is not None:
        from .learn import keep_clean_day, learned_dir

        keep_clean_day(learned_dir(options.state), day, scan, policy, model, start, end)
    output_bytes = 0
    if options.alerts_path is not None:
        output_bytes = _append_alerts(options.alerts_path, state, new)
        steps()
    # carve --state's index: where each alert's flows lie in time.
    from ..forensics.carve import alert_flow_spans

    state.record_alert_spans(alert_flow_spans(docs, scan.flows))
    state.finish_day(
        str(day),
        alert_ids=ids,
        new_alerts=len(new),
        files=len(in_day),
        report=report_path,
        hosts=_hosts_of_day(scan, start, end),
        devices=_devices_of_day(scan, policy, end),
        contacts=day_contacts(scan, policy, start, end),
        output=options.alerts_path,
        output_bytes=output_bytes,
        now_ns=time.time_ns(),
        incidents=sorted({_incident(a) for a in alerts}),
        suppressed=len(held),
        recurring=sum(1 for a in alerts if a.previously_seen),
    )
    _write_index(options.report_dir, state, policy)
    steps()
    if options.syslog is not None:
        by_id = {str(d["event"]["id"]): a for d, a in zip(docs, alerts, strict=True)}
        for doc in new:
            options.syslog.send(by_id[str(doc["event"]["id"])], doc)
    return DayDone(
        day=day,
        alerts=alerts,
        new_alerts=len(new),
        report=report_path,
        files=len(in_day),
        packets=sum(s.packets for s in stats),
        wire_bytes=sum(s.wire_bytes for s in stats),
        seconds=time.perf_counter() - started,
        suppressed=len(held),
        recurring=sum(1 for a in alerts if a.previously_seen),
    )


def _reported_days(report_dir: str, state: NightlyState, also: dt.date) -> list[dt.date]:
    """Finished days (and ``also``) whose report is in ``report_dir``, in order."""
    days = {dt.date.fromisoformat(d) for d in state.finished_days()} | {also}
    return sorted(
        d for d in days if d == also or os.path.exists(os.path.join(report_dir, report_name(d)))
    )


def _write_linked(
    report: DayReport, path: str, day: dt.date, report_dir: str, state: NightlyState
) -> None:
    """Write the day's report linked to the reports before and after it, and
    link those two to it (their previous/next links rewritten in place)."""
    days = _reported_days(report_dir, state, day)
    at = days.index(day)
    before = days[at - 1] if at > 0 else None
    after = days[at + 1] if at + 1 < len(days) else None
    write_report(report, path, before, after, index=True)
    if before is not None:
        relink(os.path.join(report_dir, report_name(before)),
               days[at - 2] if at > 1 else None, day)  # fmt: skip
    if after is not None:
        relink(os.path.join(report_dir, report_name(after)), day,
               days[at + 2] if at + 2 < len(days) else None)  # fmt: skip


def _write_index(report_dir: str, state: NightlyState, policy: Policy) -> None:
    """index.html: the last 30 finished days, alerts per day, links."""
    from ..report.index import DayLine, write_index

    lines = []
    for day, alerts, suppressed, recurring, report in state.day_counts():
        name = os.path.basename(report)
        here = os.path.exists(os.path.join(report_dir, name))
        lines.append(DayLine(dt.date.fromisoformat(day), alerts, alerts - recurring, suppressed,
                             name if here else ""))  # fmt: skip
    write_index(report_dir, policy.site_name, lines)


def _incident(alert: Alert) -> tuple[str, str, str]:
    """What makes alerts of different days the same incident again: the rule,
    the host and the other side ('' for none)."""
    return (alert.rule_id, alert.source_ip, alert.destination_ip or "")


def _overlaps(f: KnownFile, start: int, end: int) -> bool:
    return (
        f.first_ns is not None and f.last_ns is not None and f.first_ns < end and f.last_ns >= start
    )


def _devices_of_day(scan: ScanResult, policy: Policy, end: int) -> list[str]:
    """The cards seen on isolated segments up to the day's end (not those of the
    next day's capture the scan read for context: they are new on their day):
    those with an isolated address, and those delivering traffic from beyond
    the segment (a gateway that never shows an isolated address of its own)."""
    if scan.link is None:
        return []
    return learned_cards(scan.link[scan.link["first_ns"].to_numpy() < end], policy)


def _hosts_of_day(scan: ScanResult, start: int, end: int) -> list[str]:
    frame = scan.traffic.frame
    if not len(frame):
        return []
    minutes = frame["minute_ns"].to_numpy()
    ids = np.unique(frame["host_id"].to_numpy()[(minutes >= start) & (minutes < end)])
    return sorted(scan.traffic.text(int(i)) for i in ids)


def _append_alerts(path: str, state: NightlyState, docs: list[dict[str, object]]) -> int:
    """Append ``docs`` as JSON lines after the committed end of ``path``, cutting
    off whatever an interrupted run wrote past it; returns the new end.

    The first time, the file's current end is committed first, so lines that
    were there before the nightly used the file are kept."""
    committed = state.committed_bytes(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DetectorError(f"--jsonl {path}: cannot open for writing: {exc.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        if committed is None or size < committed:  # new to us, or rotated (logrotate)
            committed = size
            with state.transaction() as db:
                db.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?)", (path, committed))
        os.ftruncate(fd, committed)
        # As scan and live write them: DEL and C1 escaped too, safe to print.
        data = "".join(json_text(d) + "\n" for d in docs).encode()
        os.lseek(fd, committed, os.SEEK_SET)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return committed + len(data)
    finally:
        os.close(fd)
