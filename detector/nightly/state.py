"""The nightly's memory between runs: one SQLite file.

What it keeps: every capture file it has taken in (path, size, mtime, content
hash, packet span and counts), files it left because they looked unfinished,
the days it has finished (and so their alerts and report) and whether a run
has announced them, the ids of the alerts it has written, how far the alerts
file is committed, the day each internal host was first seen, and the day
each network card was first seen on an isolated segment. Each unit of
work commits in one transaction (``synchronous=FULL``, a rollback journal): a
run killed at any point leaves the state of the last finished unit, and the
next run redoes the rest.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import DetectorError
from .discover import CaptureFingerprint

# 2: days.announced (schema 1's days were all announced by the runs that finished them)
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    content_hash TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    format TEXT NOT NULL,
    compressed INTEGER NOT NULL,
    first_ns INTEGER,
    last_ns INTEGER,
    packets INTEGER NOT NULL,
    wire_bytes INTEGER NOT NULL,
    kernel_drops INTEGER,
    taken_at_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_path ON files (path, size, mtime_ns);
CREATE TABLE IF NOT EXISTS waiting (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    since_ns INTEGER NOT NULL,
    why TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS days (
    day TEXT PRIMARY KEY,
    alerts INTEGER NOT NULL,
    new_alerts INTEGER NOT NULL,
    files INTEGER NOT NULL,
    report TEXT NOT NULL,
    finished_at_ns INTEGER NOT NULL,
    announced INTEGER NOT NULL DEFAULT 0  -- its summary printed and exit status given
);
CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, day TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (path TEXT PRIMARY KEY, committed_bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (host TEXT PRIMARY KEY, first_day TEXT NOT NULL);
-- the network cards seen on isolated segments (new-device-isolated's learned baseline)
CREATE TABLE IF NOT EXISTS devices (mac TEXT PRIMARY KEY, first_day TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS learned (day TEXT PRIMARY KEY);
-- What alerted on each finished day (rule, host, other side): new or recurring.
-- Added without a schema change: a state file from before has none, and its
-- next days' alerts are new.
CREATE TABLE IF NOT EXISTS day_counts (
    day TEXT PRIMARY KEY,
    suppressed INTEGER NOT NULL,  -- alerts a [[suppress]] of the policy held back
    recurring INTEGER NOT NULL  -- alerts whose incident alerted on an earlier day
);
-- carve's index (nightly/discover.py): per MiB of each uncompressed file taken
-- in, where its first record starts and its packets' time span; for pcapng the
-- section header and interface description blocks. Added without a schema
-- change: a file taken in before has none, and carve reads it whole.
CREATE TABLE IF NOT EXISTS file_blocks (
    content_hash TEXT NOT NULL,
    start INTEGER NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS file_blocks_by_hash ON file_blocks (content_hash, start);
CREATE TABLE IF NOT EXISTS file_headers (
    content_hash TEXT NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    type INTEGER NOT NULL
);
-- For each alert written: the first and last packet of the flows carve would
-- choose for it (forensics/carve.py alert_flow_spans), so carve --state reads
-- only that stretch of the files.
CREATE TABLE IF NOT EXISTS alert_spans (
    id TEXT PRIMARY KEY,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    rule TEXT NOT NULL,
    host TEXT NOT NULL,
    destination TEXT NOT NULL,
    day TEXT NOT NULL,
    PRIMARY KEY (rule, host, destination, day)
);
"""


@dataclass(frozen=True)
class FinishedDay:
    """A day an earlier run finished (a row of ``days``)."""

    day: str
    alerts: int
    new_alerts: int
    files: int
    report: str


@dataclass(frozen=True)
class KnownFile:
    """A capture file the nightly has taken in (a row of ``files``)."""

    content_hash: str
    path: str
    size: int
    mtime_ns: int
    first_ns: int | None
    last_ns: int | None
    packets: int
    wire_bytes: int
    kernel_drops: int | None


class NightlyState:
    """The SQLite state file (module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA journal_mode=DELETE")
            self.db.executescript(SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DetectorError(
                f"--state {self.path}: not a usable SQLite state file ({exc}); give a new "
                "path (the nightly then starts afresh) or restore the file"
            ) from None
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) == 1:
            with self.transaction() as db:
                # Its days were announced by the runs that finished them, as far
                # as anyone can tell now.
                db.execute("ALTER TABLE days ADD COLUMN announced INTEGER NOT NULL DEFAULT 1")
                db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise DetectorError(
                f"--state {self.path}: state schema {row[0]}, this version reads "
                f"{SCHEMA_VERSION}; give a new state file"
            )

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One unit of work: all of it is committed, or none."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- files ---------------------------------------------------------------------
    def file_at(self, path: str, size: int, mtime_ns: int) -> KnownFile | None:
        """The file taken in from this path with this size and mtime, if any:
        unchanged since, so it need not be read again."""
        row = self.db.execute(
            f"SELECT {_FILE_FIELDS} FROM files WHERE path=? AND size=? AND mtime_ns=?",
            (path, size, mtime_ns),
        ).fetchone()
        return KnownFile(*row) if row else None

    def file_with_hash(self, content_hash: str) -> KnownFile | None:
        row = self.db.execute(
            f"SELECT {_FILE_FIELDS} FROM files WHERE content_hash=?", (content_hash,)
        ).fetchone()
        return KnownFile(*row) if row else None

    def take_file(self, found: CaptureFingerprint, now_ns: int) -> None:
        """Record a file; a file of the same path taken in before has changed
        since (it grew): its old row goes, so no packet is counted twice."""
        with self.transaction() as db:
            for (old,) in db.execute(
                "SELECT content_hash FROM files WHERE path=?", (found.path,)
            ).fetchall():
                db.execute("DELETE FROM file_blocks WHERE content_hash=?", (old,))
                db.execute("DELETE FROM file_headers WHERE content_hash=?", (old,))
            db.execute("DELETE FROM files WHERE path=?", (found.path,))
            if found.index_blocks is not None and (
                found.format == "pcap" or found.index_headers is not None
            ):
                db.executemany(
                    "INSERT INTO file_blocks VALUES (?,?,?,?)",
                    [(found.content_hash, *map(int, r)) for r in found.index_blocks],
                )
                db.executemany(
                    "INSERT INTO file_headers VALUES (?,?,?,?)",
                    [(found.content_hash, *map(int, r)) for r in found.index_headers]
                    if found.index_headers is not None
                    else [],
                )
            db.execute(
                "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    found.content_hash,
                    found.path,
                    found.size,
                    found.mtime_ns,
                    found.format,
                    int(found.compressed),
                    found.first_ns,
                    found.last_ns,
                    found.packets,
                    found.wire_bytes,
                    found.kernel_drops,
                    now_ns,
                ),
            )
            db.execute("DELETE FROM waiting WHERE path=?", (found.path,))

    def moved_file(self, content_hash: str, found: CaptureFingerprint) -> None:
        """The same packets under another name (renamed, or compressed after rotation)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE files SET path=?, size=?, mtime_ns=? WHERE content_hash=?",
                (found.path, found.size, found.mtime_ns, content_hash),
            )
            if found.compressed:  # carve's index was of the uncompressed bytes
                db.execute("DELETE FROM file_blocks WHERE content_hash=?", (content_hash,))
                db.execute("DELETE FROM file_headers WHERE content_hash=?", (content_hash,))
            db.execute("DELETE FROM waiting WHERE path=?", (found.path,))

    def file_ranges(self, content_hash: str, low_ns: int | None, high_ns: int | None,
                    size: int) -> list[tuple[int, int]] | None:  # fmt: skip
        """The byte ranges (start, end) of a file that hold every packet of
        time ``low_ns``..``high_ns`` (None: no bound), from carve's index,
        adjacent blocks joined; None when the file has no index."""
        rows = self.db.execute(
            "SELECT start, first_ns, last_ns FROM file_blocks WHERE content_hash=? ORDER BY start",
            (content_hash,),
        ).fetchall()
        if not rows:
            return None
        ranges: list[tuple[int, int]] = []
        for i, (start, first_ns, last_ns) in enumerate(rows):
            end = rows[i + 1][0] if i + 1 < len(rows) else size
            if (low_ns is not None and last_ns < low_ns) or (
                high_ns is not None and first_ns > high_ns
            ):
                continue
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((start, end))
        return ranges

    def file_headers(self, content_hash: str) -> list[tuple[int, int, int]]:
        """(offset, length, type) of a pcapng file's section headers and
        interface descriptions, in file order (carve's index)."""
        return [
            (int(o), int(n), int(t))
            for o, n, t in self.db.execute(
                "SELECT offset, length, type FROM file_headers WHERE content_hash=? "
                "ORDER BY offset",
                (content_hash,),
            ).fetchall()
        ]

    def record_alert_spans(self, spans: dict[str, tuple[int, int]]) -> None:
        """The first and last packet of each alert's flows (carve's index)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO alert_spans VALUES (?,?,?)",
                [(i, int(a), int(b)) for i, (a, b) in spans.items()],
            )

    def alert_span(self, alert_id: str) -> tuple[int, int] | None:
        row = self.db.execute(
            "SELECT first_ns, last_ns FROM alert_spans WHERE id=?", (alert_id,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def files(self) -> list[KnownFile]:
        """Every file taken in, in order of first packet."""
        rows = self.db.execute(
            f"SELECT {_FILE_FIELDS} FROM files ORDER BY first_ns IS NULL, first_ns, last_ns, path"
        ).fetchall()
        return [KnownFile(*row) for row in rows]

    def waiting_since(self, path: str, size: int, mtime_ns: int, why: str, now_ns: int) -> int:
        """When this file was first seen unfinished, unchanged since (recorded now
        if it is new or has changed)."""
        row = self.db.execute(
            "SELECT size, mtime_ns, since_ns FROM waiting WHERE path=?", (path,)
        ).fetchone()
        if row and row[0] == size and row[1] == mtime_ns:
            return int(row[2])
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO waiting VALUES (?,?,?,?,?)",
                (path, size, mtime_ns, now_ns, why),
            )
        return now_ns

    # -- days ----------------------------------------------------------------------
    def finished_days(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT day FROM days")}

    def unannounced_days(self) -> list[FinishedDay]:
        """Days finished (committed) by a run that was stopped before it
        announced them, in order."""
        rows = self.db.execute(
            "SELECT day, alerts, new_alerts, files, report FROM days WHERE announced=0 ORDER BY day"
        ).fetchall()
        return [FinishedDay(*row) for row in rows]

    def mark_announced(self, days: Iterable[str]) -> None:
        """Record that a run announced these days (printed its summary and is
        about to exit with their status)."""
        with self.transaction() as db:
            db.executemany("UPDATE days SET announced=1 WHERE day=?", [(d,) for d in days])

    def unlearned_days(self) -> list[str]:
        """Finished days whose refit (--learn) was not recorded, in order."""
        return [row[0] for row in self.db.execute(
            "SELECT day FROM days WHERE day NOT IN (SELECT day FROM learned) ORDER BY day"
        )]  # fmt: skip

    def mark_learned(self, days: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO learned VALUES (?)", [(d,) for d in days])

    def written_alert_ids(self, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        found: set[str] = set()
        for at in range(0, len(wanted), 500):
            chunk = wanted[at : at + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self.db.execute(f"SELECT id FROM alerts WHERE id IN ({marks})", chunk)
            )
        return found

    def incidents_between(self, first: str, before: str) -> dict[tuple[str, str, str], str]:
        """(rule, host, other side) of each incident that alerted on a day from
        ``first`` to the day before ``before``, with the last such day."""
        rows = self.db.execute(
            "SELECT rule, host, destination, max(day) FROM incidents WHERE day>=? AND day<? "
            "GROUP BY rule, host, destination",
            (first, before),
        ).fetchall()
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    def day_counts(self) -> list[tuple[str, int, int, int, str]]:
        """Each finished day: (day, alerts, suppressed, recurring, report path),
        in order (suppressed and recurring 0 for days finished before they were
        counted)."""
        rows = self.db.execute(
            "SELECT d.day, d.alerts, coalesce(c.suppressed, 0), coalesce(c.recurring, 0), "
            "d.report FROM days d LEFT JOIN day_counts c ON c.day = d.day ORDER BY d.day"
        ).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]

    def hosts_before(self, day: str) -> set[str]:
        """Internal hosts first seen on a day before ``day``."""
        return {
            row[0] for row in self.db.execute("SELECT host FROM hosts WHERE first_day<?", (day,))
        }

    def devices_before(self, day: str) -> frozenset[str]:
        """Network cards (MAC addresses) first seen on an isolated segment before ``day``."""
        return frozenset(
            row[0] for row in self.db.execute("SELECT mac FROM devices WHERE first_day<?", (day,))
        )

    def committed_bytes(self, output: str) -> int | None:
        row = self.db.execute(
            "SELECT committed_bytes FROM outputs WHERE path=?", (output,)
        ).fetchone()
        return None if row is None else int(row[0])

    def finish_day(
        self,
        day: str,
        *,
        alert_ids: list[str],
        new_alerts: int,
        files: int,
        report: str,
        hosts: Iterable[str],
        output: str | None,
        output_bytes: int,
        now_ns: int,
        incidents: Iterable[tuple[str, str, str]] = (),
        suppressed: int = 0,
        recurring: int = 0,
        devices: Iterable[str] = (),
    ) -> None:
        """Everything a finished day changes, in one transaction."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO days VALUES (?,?,?,?,?,?,0)",  # not announced yet
                (day, len(alert_ids), new_alerts, files, report, now_ns),
            )
            db.executemany(
                "INSERT OR IGNORE INTO alerts VALUES (?, ?)", [(i, day) for i in alert_ids]
            )
            db.execute(
                "INSERT OR REPLACE INTO day_counts VALUES (?, ?, ?)", (day, suppressed, recurring)
            )
            db.execute("DELETE FROM incidents WHERE day=?", (day,))  # a --day redo
            db.executemany(
                "INSERT OR IGNORE INTO incidents VALUES (?, ?, ?, ?)",
                [(*incident, day) for incident in incidents],
            )
            for host in hosts:
                db.execute(
                    "INSERT INTO hosts VALUES (?, ?) ON CONFLICT(host) DO UPDATE SET "
                    "first_day=min(first_day, excluded.first_day)",
                    (host, day),
                )
            db.executemany(
                "INSERT INTO devices VALUES (?, ?) ON CONFLICT(mac) DO UPDATE SET "
                "first_day=min(first_day, excluded.first_day)",
                [(mac, day) for mac in devices],
            )
            if output is not None:
                db.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?)", (output, output_bytes))


_FILE_FIELDS = (
    "content_hash, path, size, mtime_ns, first_ns, last_ns, packets, wire_bytes, kernel_drops"
)
