"""The nightly's memory between runs: one SQLite file.

What it keeps: every capture file it has taken in (path, size, mtime, content
hash, packet span and counts), files it left because they looked unfinished,
the days it has finished (and so their alerts and report) and whether a run
has announced them, the ids of the alerts it has written, how far the alerts
file is committed, the day each internal host was first seen, and the day
each network card was first seen on an isolated segment, and for each
(internal host, outside address) pair its first contact and the days of its
calls, beats and uploads (``contacts``: what the days before teach a day's
scan, detector/nightly/history.py; bounded by ``HISTORY_DAYS`` and
``MAX_CONTACTS``). Each unit of
work commits in one transaction (``synchronous=FULL``, a rollback journal): a
run killed at any point leaves the state of the last finished unit, and the
next run redoes the rest.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DetectorError
from .discover import CaptureFingerprint
from .history import HISTORY_DAYS, MAX_CONTACTS, History, history_frame

if TYPE_CHECKING:
    import pandas as pd

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
-- What the days before teach a day's scan (nightly/history.py): one row per
-- (internal host, outside address) used within HISTORY_DAYS, with the first
-- and last day of each kind of habit (NULL: never). Added without a schema
-- change: a state file from before learns from its next days.
CREATE TABLE IF NOT EXISTS contacts (
    host TEXT NOT NULL,
    peer TEXT NOT NULL,
    first_ns INTEGER NOT NULL,  -- the host's first packet to it
    first_day TEXT NOT NULL,
    last_day TEXT NOT NULL,
    bytes_out INTEGER NOT NULL,  -- over its days, first to last
    bytes_in INTEGER NOT NULL,
    call_first TEXT,
    call_last TEXT,
    beat_first TEXT,
    beat_last TEXT,
    upload_first TEXT,
    upload_last TEXT,
    PRIMARY KEY (host, peer)
);
-- (its index is made once its columns are checked: NightlyState._check_contacts)
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


# No record of a capture starts before this byte: a pcap file's header is 24
# bytes, a pcapng file's section header at least 28.
MIN_BLOCK_START = 24


class UnusableIndex(ValueError):
    """Carve's index of a file cannot be trusted: read the file whole."""


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
            self._check_contacts()
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

    def _refuse_contacts(self, why: str) -> DetectorError:
        return DetectorError(
            f"--state {self.path}: table contacts {why}; it is not the nightly's: "
            f"drop it (sqlite3 {self.path} 'DROP TABLE contacts') and the nightly "
            "rebuilds it, learning calls, beats and uploads from its next days"
        )

    def _check_contacts(self) -> None:
        """The contacts table is the nightly's: its columns, and no more rows
        than the nightly keeps (it trims to ``MAX_CONTACTS`` each day)."""
        columns = [
            (str(r[1]), str(r[2]).upper(), int(r[3]), int(r[5]))
            for r in self.db.execute("PRAGMA table_info(contacts)")
        ]
        if columns != _CONTACT_COLUMNS:
            names = ", ".join(c[0] for c in columns)
            raise self._refuse_contacts(f"has other columns ({names})")
        (rows,) = self.db.execute("SELECT count(*) FROM contacts").fetchone()
        if rows > MAX_CONTACTS:
            raise self._refuse_contacts(
                f"has {rows:,} rows, more than the {MAX_CONTACTS:,} it keeps"
            )
        self.db.execute("CREATE INDEX IF NOT EXISTS contacts_by_last_day ON contacts (last_day)")
        for kind in ("call", "beat", "upload"):  # the few habits, read each day
            self.db.execute(
                f"CREATE INDEX IF NOT EXISTS contacts_{kind}s ON contacts ({kind}_last) "
                f"WHERE {kind}_last IS NOT NULL"
            )

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
        adjacent blocks joined; None when the file has no index.
        UnusableIndex when the index is not one the nightly could have written."""
        rows = self.db.execute(
            "SELECT start, first_ns, last_ns FROM file_blocks WHERE content_hash=? ORDER BY start",
            (content_hash,),
        ).fetchall()
        if not rows:
            return None
        # The state is a file on disk like any other input: an index whose
        # blocks are not whole numbers inside the file, in order, is not used.
        if not all(
            type(start) is int and type(first) is int and type(last) is int and first <= last
            for start, first, last in rows
        ):
            raise UnusableIndex("its blocks are not numbers in order")
        starts = [row[0] for row in rows]
        if starts[0] < MIN_BLOCK_START or starts[-1] >= size or starts != sorted(set(starts)):
            raise UnusableIndex(
                f"its blocks start from byte {starts[0]:,} to {starts[-1]:,}, not inside "
                f"the file's {size:,} bytes after its header"
            )
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

    def history_before(self, day: str) -> History:
        """What the ``HISTORY_DAYS`` days before ``day`` teach its scan
        (nightly/history.py): the pairs with a call, a beat or an upload on
        one of them, and every pair used on them. A ``--day`` redo of an older
        day counts a habit whose first day is before it and whose last is
        within ``HISTORY_DAYS`` before it or after."""
        since = str(dt.date.fromisoformat(day) - dt.timedelta(days=HISTORY_DAYS))

        def pairs(first: str, last: str, extra: str = "") -> list[tuple]:  # type: ignore[type-arg]
            """The pairs whose days ``first``..``last`` reach the days before
            ``day`` (in no order: a scan merges them)."""
            return self.db.execute(
                f"SELECT host, peer{extra} FROM contacts WHERE {last}>=? AND {first}<?",
                (since, day),
            ).fetchall()

        try:
            return History(
                calls=history_frame(pairs("call_first", "call_last")),
                beats=history_frame(pairs("beat_first", "beat_last")),
                uploads=history_frame(pairs("upload_first", "upload_last", ", first_ns")),
                contacts=history_frame(pairs("first_day", "last_day")),
            )
        except (ValueError, TypeError, OverflowError) as exc:
            raise self._refuse_contacts(f"holds a row that is no address pair ({exc})") from None

    def contact_rows(self) -> list[tuple]:  # type: ignore[type-arg]
        """Every row of ``contacts``, in order of host and address (tests, docs)."""
        return self.db.execute("SELECT * FROM contacts ORDER BY host, peer").fetchall()

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
        contacts: pd.DataFrame | None = None,
    ) -> None:
        """Everything a finished day changes, in one transaction. ``contacts``:
        the day's (host, outside address) pairs (``history.day_contacts``)."""
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
            if contacts is not None:
                _record_contacts(db, day, contacts)
            if output is not None:
                db.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?)", (output, output_bytes))


def _record_contacts(db: sqlite3.Connection, day: str, contacts: pd.DataFrame) -> None:
    """Merge a day's pairs into ``contacts`` (a redo of a day does not count
    its bytes twice), forget rows unused for ``HISTORY_DAYS``, and keep at
    most ``MAX_CONTACTS`` rows (plain contacts of the oldest days go first)."""

    def on(flags: object) -> list[str | None]:
        return [day if f else None for f in flags]  # type: ignore[attr-defined]

    calls, beats, uploads = on(contacts["call"]), on(contacts["beat"]), on(contacts["upload"])
    db.executemany(
        _UPSERT_CONTACT,
        [
            (h, p, int(f), day, day, int(o), int(i), c, c, b, b, u, u)
            for h, p, f, o, i, c, b, u in zip(
                contacts["host"], contacts["peer"], contacts["first_ns"],
                contacts["bytes_out"], contacts["bytes_in"], calls, beats, uploads, strict=True,
            )
        ],
    )  # fmt: skip
    since = str(dt.date.fromisoformat(day) - dt.timedelta(days=HISTORY_DAYS))
    db.execute("DELETE FROM contacts WHERE last_day<?", (since,))
    (rows,) = db.execute("SELECT count(*) FROM contacts").fetchone()
    if rows > MAX_CONTACTS:
        db.execute(
            "DELETE FROM contacts WHERE rowid IN (SELECT rowid FROM contacts ORDER BY "
            "(call_last IS NULL AND beat_last IS NULL AND upload_last IS NULL) DESC, last_day, "
            "bytes_out + bytes_in LIMIT ?)",
            (rows - MAX_CONTACTS,),
        )


def _merge_first(column: str) -> str:
    """The earlier of two days, either of which may be NULL."""
    new = f"excluded.{column}"
    return f"{column}=min(coalesce({column}, {new}), coalesce({new}, {column}))"


def _merge_last(column: str) -> str:
    """The later of two days, either of which may be NULL."""
    new = f"excluded.{column}"
    return f"{column}=max(coalesce({column}, {new}), coalesce({new}, {column}))"


# SET expressions read the row as it was (SQLite evaluates them all before assigning).
_UPSERT_CONTACT = (
    "INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(host, peer) DO UPDATE SET "
    "first_ns=min(first_ns, excluded.first_ns), first_day=min(first_day, excluded.first_day), "
    "bytes_out=bytes_out + CASE WHEN excluded.last_day>last_day THEN excluded.bytes_out "
    "ELSE 0 END, "
    "bytes_in=bytes_in + CASE WHEN excluded.last_day>last_day THEN excluded.bytes_in ELSE 0 END, "
    "last_day=max(last_day, excluded.last_day), "
    + ", ".join(
        merge(f"{kind}_{end}")
        for kind in ("call", "beat", "upload")
        for end, merge in (("first", _merge_first), ("last", _merge_last))
    )
)
# (name, type, not null, primary key position) of each column of contacts.
_CONTACT_COLUMNS = [
    ("host", "TEXT", 1, 1),
    ("peer", "TEXT", 1, 2),
    ("first_ns", "INTEGER", 1, 0),
    ("first_day", "TEXT", 1, 0),
    ("last_day", "TEXT", 1, 0),
    ("bytes_out", "INTEGER", 1, 0),
    ("bytes_in", "INTEGER", 1, 0),
    *[(f"{kind}_{end}", "TEXT", 0, 0) for kind in ("call", "beat", "upload")
      for end in ("first", "last")],
]  # fmt: skip


_FILE_FIELDS = (
    "content_hash, path, size, mtime_ns, first_ns, last_ns, packets, wire_bytes, kernel_drops"
)
