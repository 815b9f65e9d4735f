"""Removing old traces: the one sanctioned way events leave an append-only store.

What a prune may remove (``docs/storage.md``, "Lifecycle"):

* **whole traces only**, never part of a run or of a trace;
* a trace only when **every run of it is over before the cutoff**: ended before it, or
  abandoned (not running: its writer's lease expired or it closed) with its last sign
  of life before it: the later of its last event's time and, while its writer has not
  closed, that writer's last heartbeat (a writer that only paused could still append);
* never **the newest trace**: the one holding the store's last event, nor the one
  holding its last-started run. SQLite numbers a new event (and, in the compact
  layout, a new run key) from the largest one stored; removing those would hand their
  numbers out again, and a cursor past them would then skip the new events.

Each batch of traces is removed in one short write transaction that re-checks the
rule (a trace that changed since it was chosen is left for the next prune), deletes the
traces' events and runs rows and records what it removed in ``prunes`` (who, when,
the rule, the seqs as ranges). The append-only triggers stay for every other writer:

* SQLite: the delete trigger is dropped and re-created *inside* the transaction. SQLite
  has one writer at a time and DDL is transactional, so no other connection ever sees
  the store without it: other writers wait for the lock, readers see the old schema.
* PostgreSQL: the trigger function lets a DELETE through only when the transaction
  has set ``runlog.prune = 'on'`` (``SET LOCAL``, invisible to other sessions).
  Dropping the trigger would take an exclusive lock that blocks every reader too.
  The transaction first locks ``seq_counter``, as appends do, so no append of the
  pruned traces can commit between the re-check and the delete.

``runlog verify`` reads the recorded ranges: a seq gap they cover is not an error, a
stored seq inside one is.
"""

from __future__ import annotations

import bisect
import getpass
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from runlog import codec
from runlog.errors import StoreError
from runlog.events import now_micros

if TYPE_CHECKING:
    from runlog.store.memory import MemoryBackend
    from runlog.store.postgres import PostgresBackend
    from runlog.store.sqlite import SQLiteBackend

__all__ = [
    "PruneRecord",
    "PruneRule",
    "PrunedBatch",
    "PrunedSeqs",
    "Pruner",
    "TraceCandidate",
    "seq_ranges",
]

_FOREVER = 2**63 - 1
"""The ``last sign of life`` of a running run: never before any cutoff."""


@dataclass(frozen=True, slots=True)
class PruneRule:
    """Which traces a prune removes: over before ``before_us`` (epoch microseconds),
    optionally only the trace ``trace_id`` or traces whose root run carries ``tag``."""

    before_us: int
    trace_id: str | None = None
    tag: str | None = None

    def to_json(self) -> str:
        return orjson.dumps({"before": self.before_us, "trace": self.trace_id,
                             "tag": self.tag}).decode()


@dataclass(frozen=True, slots=True)
class TraceCandidate:
    """A trace the rule selects, as it was when chosen."""

    trace_id: str
    runs: int
    last_us: int
    """When its last run ended (or an abandoned one last showed life)."""
    events: int = 0


@dataclass(frozen=True, slots=True)
class Pruner:
    """Who prunes (recorded with every batch) and the operation the batches belong to."""

    operation: str
    user: str = field(default_factory=lambda: _user())
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    archive: str | None = None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name for this uid (a container): say so
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


@dataclass(frozen=True, slots=True)
class PrunedBatch:
    """What one prune transaction removed (and which chosen traces it kept)."""

    trace_ids: tuple[str, ...]
    runs: int
    events: int
    seqs: tuple[tuple[int, int], ...]
    kept: tuple[str, ...] = ()
    """Chosen traces it did not remove: no longer over before the cutoff, changed since
    they were chosen (an archive would miss events), or now the newest trace."""


@dataclass(frozen=True, slots=True)
class PruneRecord:
    """One row of the ``prunes`` table: one batch of one prune."""

    prune_id: int
    operation: str
    at_us: int
    user: str
    host: str
    pid: int
    rule: str
    traces: int
    runs: int
    events: int
    seqs: tuple[tuple[int, int], ...]
    trace_ids: tuple[str, ...]
    archive: str | None


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted seqs as inclusive ``(first, last)`` ranges of consecutive numbers."""
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        elif not out or s > out[-1][1]:
            out.append([s, s])
    return tuple((a, b) for a, b in out)


class PrunedSeqs:
    """Every seq any prune removed, as disjoint ranges (adjacent ones merged): what
    ``runlog verify`` asks about gaps and stored seqs."""

    def __init__(self, records: Iterable[PruneRecord]) -> None:
        ranges = sorted(r for rec in records for r in rec.seqs)
        merged: list[list[int]] = []
        for a, b in ranges:
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._starts = [a for a, _ in merged]
        self._ends = [b for _, b in merged]
        self.events = sum(b - a + 1 for a, b in merged)

    def __len__(self) -> int:
        return len(self._starts)

    def covers(self, first: int, last: int) -> bool:
        """Whether every seq in ``first..last`` was pruned."""
        i = bisect.bisect_right(self._starts, first) - 1
        return i >= 0 and self._ends[i] >= last

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self.covers(seq, seq)


def _record_values(rule: PruneRule, by: Pruner, batch: PrunedBatch) -> tuple[Any, ...]:
    return (by.operation, now_micros(), by.user, by.host, by.pid, rule.to_json(),
            len(batch.trace_ids), batch.runs, batch.events,
            orjson.dumps([list(r) for r in batch.seqs]).decode(),
            orjson.dumps(list(batch.trace_ids)).decode(), by.archive)


def _record_from_row(row: Sequence[Any]) -> PruneRecord:
    return PruneRecord(
        prune_id=int(row[0]), operation=row[1], at_us=int(row[2]), user=row[3],
        host=row[4], pid=int(row[5]), rule=row[6], traces=int(row[7]), runs=int(row[8]),
        events=int(row[9]), seqs=tuple((int(a), int(b)) for a, b in orjson.loads(row[10])),
        trace_ids=tuple(orjson.loads(row[11])), archive=row[12])


_RECORD_COLUMNS = ("prune_id, operation, at, by_user, host, pid, rule, traces, runs, events, "
                   "seqs, trace_ids, archive")


def _root_has_tag(tags: str | bytes | None, tag: str) -> bool:
    try:
        values = codec.loads_plain(tags or b"[]")
    except Exception:
        return False
    return isinstance(values, list) and tag in values


def _keep_newest(found: dict[str, Any], newest: set[str]) -> None:
    for t in newest:
        found.pop(t, None)


# ---------------------------------------------------------------------- SQLite


def _sqlite_last_event(compact: bool) -> str:
    if compact:
        return ("(SELECT max(e.time) FROM events e WHERE e.trace_key = r.trace_key "
                "AND e.run_key = r.run_key) + r.start_time")
    return ("(SELECT max(e.time) FROM events e WHERE e.trace_id = r.trace_id "
            "AND e.run_id = r.run_id)")


def _sqlite_over_sql(compact: bool, where: str) -> str:
    """Per trace: runs, and when its last run was over (``_FOREVER`` while one runs)."""
    return (
        "SELECT r.trace_id, count(*), max(CASE WHEN r.end_seq IS NOT NULL THEN r.end_time "
        "WHEN w.writer_id IS NOT NULL AND w.closed = 0 AND w.heartbeat_at + w.lease_us >= :now "
        f"THEN {_FOREVER} "
        f"ELSE max(coalesce({_sqlite_last_event(compact)}, r.start_time), "
        "CASE WHEN w.writer_id IS NOT NULL AND w.closed = 0 THEN w.heartbeat_at ELSE 0 END) "
        "END) AS over "
        f"FROM runs r LEFT JOIN writers w ON w.writer_id = r.writer_id WHERE {where} "
        "GROUP BY r.trace_id HAVING over < :before ORDER BY r.trace_id")


def _sqlite_newest(c: Any, compact: bool) -> set[str]:
    if compact:
        rows = [c.execute("SELECT r.trace_id FROM events e JOIN runs r ON r.run_key = "
                          "e.run_key ORDER BY e.seq DESC LIMIT 1").fetchone(),
                c.execute("SELECT trace_id FROM runs ORDER BY run_key DESC LIMIT 1").fetchone()]
    else:
        rows = [c.execute("SELECT trace_id FROM events ORDER BY seq DESC LIMIT 1").fetchone(),
                c.execute("SELECT trace_id FROM runs ORDER BY start_seq DESC LIMIT 1"
                          ).fetchone()]
    return {r[0] for r in rows if r is not None}


def _sqlite_root_tags(c: Any, trace_ids: Sequence[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    marks = ",".join("?" * len(trace_ids))
    for trace_id, tags in c.execute(
            f"SELECT trace_id, tags FROM runs WHERE parent_id IS NULL AND trace_id IN ({marks})",
            list(trace_ids)):
        out.setdefault(trace_id, []).append(tags)
    return out


def _filter_tag(c_tags: Mapping[str, list[Any]], found: dict[str, Any], tag: str) -> None:
    for t in list(found):
        if not any(_root_has_tag(tags, tag) for tags in c_tags.get(t, ())):
            del found[t]


def sqlite_candidates(b: SQLiteBackend, rule: PruneRule, after: str,
                      limit: int) -> list[TraceCandidate]:
    """Up to ``limit`` traces the rule selects, with ids above ``after``, in id order."""
    where = "r.trace_id > :after" + (" AND r.trace_id = :trace" if rule.trace_id else "")
    sql = _sqlite_over_sql(b.compact, where) + " LIMIT :limit"
    out: list[TraceCandidate] = []
    with b._read_txn(raw_bytes=False) as c:
        while True:
            rows = c.execute(sql, {"after": after, "trace": rule.trace_id, "now": now_micros(),
                                   "before": rule.before_us, "limit": limit}).fetchall()
            found = {r[0]: r for r in rows}
            _keep_newest(found, _sqlite_newest(c, b.compact))
            if rule.tag is not None and found:
                _filter_tag(_sqlite_root_tags(c, list(found)), found, rule.tag)
            counts = _sqlite_event_counts(c, b.compact, list(found)) if found else {}
            out.extend(TraceCandidate(t, int(r[1]), int(r[2]), counts.get(t, 0))
                       for t, r in found.items())
            if len(rows) < limit or len(out) >= limit:
                return out
            after = rows[-1][0]


def _sqlite_trace_events(compact: bool, marks: str) -> tuple[str, int]:
    """The WHERE clause selecting every event of the traces ``marks`` stands for, and
    how many times the trace ids are bound in it."""
    if compact:
        return (f"trace_key IN (SELECT trace_key FROM runs WHERE trace_id IN ({marks})) "
                f"AND run_key IN (SELECT run_key FROM runs WHERE trace_id IN ({marks}))", 2)
    return f"trace_id IN ({marks})", 1


def _sqlite_event_counts(c: Any, compact: bool, trace_ids: Sequence[str]) -> dict[str, int]:
    marks = ",".join("?" * len(trace_ids))
    if compact:
        sql = ("SELECT r.trace_id, count(*) FROM events e JOIN runs r ON r.run_key = e.run_key "
               f"WHERE e.trace_key IN (SELECT trace_key FROM runs WHERE trace_id IN ({marks})) "
               f"AND r.trace_id IN ({marks}) GROUP BY r.trace_id")
        params = [*trace_ids, *trace_ids]
    else:
        sql = (f"SELECT trace_id, count(*) FROM events WHERE trace_id IN ({marks}) "
               "GROUP BY trace_id")
        params = list(trace_ids)
    return {t: int(n) for t, n in c.execute(sql, params)}


def sqlite_prune(b: SQLiteBackend, expect: Mapping[str, int | None], rule: PruneRule,
                 by: Pruner) -> PrunedBatch:
    """Remove the traces of ``expect`` that the rule still selects, in one transaction.

    ``expect`` maps each trace to the event count it had when chosen (None: no check);
    a trace whose count changed is kept (an archive of it would miss events).
    """
    from runlog.store import schema

    ids = sorted(expect)
    if not ids:
        return PrunedBatch((), 0, 0, ())
    with b._wlock, b._write_txn() as c:
        named = ",".join(f":t{i}" for i in range(len(ids)))
        over = {r[0]: r for r in c.execute(
            _sqlite_over_sql(b.compact, f"r.trace_id IN ({named})"),
            {"now": now_micros(), "before": rule.before_us,
             **{f"t{i}": t for i, t in enumerate(ids)}}).fetchall()}
        _keep_newest(over, _sqlite_newest(c, b.compact))
        if rule.tag is not None and over:
            _filter_tag(_sqlite_root_tags(c, list(over)), over, rule.tag)
        counts = _sqlite_event_counts(c, b.compact, list(over)) if over else {}
        for t in list(over):
            want = expect[t]
            if want is not None and counts.get(t, 0) != want:
                del over[t]
        chosen = sorted(over)
        kept = tuple(t for t in ids if t not in over)
        if not chosen:
            return PrunedBatch((), 0, 0, (), kept)
        marks = ",".join("?" * len(chosen))
        where, times = _sqlite_trace_events(b.compact, marks)
        params = chosen * times
        seqs = seq_ranges(r[0] for r in c.execute(
            f"SELECT seq FROM events WHERE {where} ORDER BY seq", params))
        c.execute("DROP TRIGGER IF EXISTS events_no_delete")
        events = c.execute(f"DELETE FROM events WHERE {where}", params).rowcount
        for stmt in schema.APPEND_ONLY_TRIGGERS["sqlite"]:
            c.execute(stmt)
        runs = c.execute(f"DELETE FROM runs WHERE trace_id IN ({marks})", chosen).rowcount
        batch = PrunedBatch(tuple(chosen), runs, events, seqs, kept)
        for stmt in schema.PRUNES_DDL["sqlite"]:
            c.execute(stmt)
        c.execute(f"INSERT INTO prunes ({_RECORD_COLUMNS.split(', ', 1)[1]}) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _record_values(rule, by, batch))
    for t in chosen:  # a trace imported again gets its keys afresh
        b._trace_keys.pop(t, None)
    return batch


def sqlite_prunes(b: SQLiteBackend) -> list[PruneRecord]:
    with b._read_txn(raw_bytes=False) as c:
        if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'prunes'"
                     ).fetchone() is None:
            return []
        rows = c.execute(f"SELECT {_RECORD_COLUMNS} FROM prunes ORDER BY prune_id").fetchall()
    return [_record_from_row(r) for r in rows]


def sqlite_reclaim(b: SQLiteBackend, step_pages: int = 256, *, vacuum: bool = False) -> int:
    """Give the pages prunes freed back to the file system; returns their bytes.

    With ``auto_vacuum = INCREMENTAL`` (new stores), ``PRAGMA incremental_vacuum`` runs in
    steps of ``step_pages``, each its own short write transaction, so writers wait for
    one step at most. A store made without it keeps its free pages for new events
    (the file does not grow until they are used); ``vacuum=True`` then runs a
    ``VACUUM``, which rewrites the whole file and holds the write lock meanwhile (and
    needs as much free disk as the store's size). It cannot switch a WAL store to
    incremental vacuum, so each such prune that should shrink the file needs it.
    """
    conn = b._wconn

    def pragma(name: str) -> int:
        with b._wlock:  # the writer thread's connection: never beside its transaction
            return int(conn.execute(f"PRAGMA {name}").fetchone()[0])

    mode, page, before = pragma("auto_vacuum"), pragma("page_size"), pragma("freelist_count")
    if mode != 2:
        if not vacuum:
            return 0
        with b._wlock:  # (a WAL store cannot switch to incremental by VACUUM)
            conn.execute("VACUUM")
    else:
        while True:  # steps of ``step_pages``, each its own write transaction
            with b._wlock, b._write_txn() as c:
                start = left = int(c.execute("PRAGMA freelist_count").fetchone()[0])
                while left > 0 and start - left < step_pages:
                    # Python's sqlite3 steps the pragma once, which frees one page
                    c.execute(f"PRAGMA incremental_vacuum({step_pages})").fetchall()
                    now = int(c.execute("PRAGMA freelist_count").fetchone()[0])
                    if now >= left:  # nothing more to free
                        break
                    left = now
            if left == 0 or left >= start:
                break
    with b._wlock:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return (before - pragma("freelist_count")) * page


# ---------------------------------------------------------------------- PostgreSQL


def _pg_last_event(compact: bool) -> str:
    """The time of run ``r``'s last event: the compact layout stores event times
    relative to the run's start, and finds a run's rows through its trace key."""
    if compact:
        return ("(SELECT r.start_time + max(e.time) FROM events e "
                "WHERE e.trace_key = r.trace_key AND e.run_key = r.run_key)")
    return ("(SELECT max(e.time) FROM events e "
            "WHERE e.trace_id = r.trace_id AND e.run_id = r.run_id)")


def _pg_over_sql(where: str, compact: bool) -> str:
    from runlog.store.postgres import NOW_US

    over = ("max(CASE WHEN r.end_seq IS NOT NULL THEN r.end_time "
            "WHEN w.writer_id IS NOT NULL AND w.closed = 0 "
            f"AND w.heartbeat_at + w.lease_us >= {NOW_US} THEN {_FOREVER} "
            f"ELSE GREATEST(coalesce({_pg_last_event(compact)}, r.start_time), "
            "CASE WHEN w.writer_id IS NOT NULL AND w.closed = 0 THEN w.heartbeat_at "
            "ELSE 0 END) END)")
    return (f"SELECT r.trace_id, count(*), {over} "
            f"FROM runs r LEFT JOIN writers w ON w.writer_id = r.writer_id WHERE {where} "
            f"GROUP BY r.trace_id HAVING {over} < %(before)s "
            'ORDER BY r.trace_id COLLATE "C"')


def _pg_newest(conn: Any, compact: bool) -> set[str]:
    from runlog.store.postgres import dec

    last = ("SELECT r.trace_id FROM events e JOIN runs r ON r.run_key = e.run_key "
            "ORDER BY e.seq DESC LIMIT 1" if compact
            else "SELECT trace_id FROM events ORDER BY seq DESC LIMIT 1")
    rows = [conn.execute(last).fetchone(),
            conn.execute("SELECT trace_id FROM runs ORDER BY start_seq DESC LIMIT 1").fetchone()]
    return {dec(r[0]) for r in rows if r is not None}


def _pg_root_tags(conn: Any, trace_ids: Sequence[str]) -> dict[str, list[Any]]:
    from runlog.store.postgres import dec, enc

    out: dict[str, list[Any]] = {}
    for trace_id, tags in conn.execute(
            "SELECT trace_id, tags FROM runs WHERE parent_id IS NULL AND trace_id = ANY(%s)",
            ([enc(t) for t in trace_ids],)).fetchall():
        out.setdefault(dec(trace_id), []).append(tags)
    return out


_PG_COMPACT_TRACE_ROWS = (
    "FROM events e JOIN runs r ON r.run_key = e.run_key "
    "WHERE e.trace_key = ANY(%(tkeys)s) AND r.trace_id = ANY(%(ids)s)")
"""``FROM ... WHERE`` of the compact layout's events of the traces ``%(ids)s``
(``%(tkeys)s``: their trace keys): found through the ``(trace_key, seq)`` index, each
checked against its run's trace id, so two traces that share a key never mix."""


def _pg_trace_params(trace_ids: Sequence[str]) -> dict[str, Any]:
    from runlog.store.postgres import enc, trace_key

    return {"ids": [enc(t) for t in trace_ids], "tkeys": [trace_key(t) for t in trace_ids]}


def _pg_event_counts(conn: Any, trace_ids: Sequence[str], compact: bool) -> dict[str, int]:
    from runlog.store.postgres import dec

    if compact:
        sql = f"SELECT r.trace_id, count(*) {_PG_COMPACT_TRACE_ROWS} GROUP BY r.trace_id"
    else:
        sql = ("SELECT trace_id, count(*) FROM events WHERE trace_id = ANY(%(ids)s) "
               "GROUP BY trace_id")
    return {dec(t): int(n) for t, n in conn.execute(
        sql, _pg_trace_params(trace_ids)).fetchall()}


def pg_candidates(b: PostgresBackend, rule: PruneRule, after: str,
                  limit: int) -> list[TraceCandidate]:
    from runlog.store.postgres import dec, enc

    where = "r.trace_id COLLATE \"C\" > %(after)s" + (
        " AND r.trace_id = %(trace)s" if rule.trace_id else "")
    sql = _pg_over_sql(where, b.compact) + " LIMIT %(limit)s"
    out: list[TraceCandidate] = []
    with b._conn() as conn:
        while True:
            rows = conn.execute(sql, {"after": enc(after), "before": rule.before_us,
                                      "limit": limit,
                                      "trace": enc(rule.trace_id or "")}).fetchall()
            found = {dec(r[0]): r for r in rows}
            _keep_newest(found, _pg_newest(conn, b.compact))
            if rule.tag is not None and found:
                _filter_tag(_pg_root_tags(conn, list(found)), found, rule.tag)
            counts = _pg_event_counts(conn, list(found), b.compact) if found else {}
            out.extend(TraceCandidate(t, int(r[1]), int(r[2]), counts.get(t, 0))
                       for t, r in found.items())
            if len(rows) < limit or len(out) >= limit:
                return out
            after = dec(rows[-1][0])


def pg_prune(b: PostgresBackend, expect: Mapping[str, int | None], rule: PruneRule,
             by: Pruner) -> PrunedBatch:
    from runlog.store import schema
    from runlog.store.postgres import dec, enc

    ids = sorted(expect)
    if not ids:
        return PrunedBatch((), 0, 0, ())
    with b._conn() as conn:
        _pg_prepare(conn)
        with conn.transaction():
            # the lock every append takes first: none of the traces' events can commit
            # between the re-check and the delete
            conn.execute("SELECT last FROM seq_counter WHERE id = 1 FOR UPDATE")
            over = {dec(r[0]): r for r in conn.execute(
                _pg_over_sql("r.trace_id = ANY(%(ids)s)", b.compact),
                {"ids": [enc(t) for t in ids], "before": rule.before_us}).fetchall()}
            _keep_newest(over, _pg_newest(conn, b.compact))
            if rule.tag is not None and over:
                _filter_tag(_pg_root_tags(conn, list(over)), over, rule.tag)
            counts = _pg_event_counts(conn, list(over), b.compact) if over else {}
            for t in list(over):
                want = expect[t]
                if want is not None and counts.get(t, 0) != want:
                    del over[t]
            chosen = sorted(over)
            kept = tuple(t for t in ids if t not in over)
            if not chosen:
                return PrunedBatch((), 0, 0, (), kept)
            params = _pg_trace_params(chosen)
            if b.compact:
                select = f"SELECT e.seq {_PG_COMPACT_TRACE_ROWS} ORDER BY e.seq"
                delete = ("DELETE FROM events e USING runs r WHERE r.run_key = e.run_key "
                          "AND e.trace_key = ANY(%(tkeys)s) AND r.trace_id = ANY(%(ids)s)")
            else:
                select = "SELECT seq FROM events WHERE trace_id = ANY(%(ids)s) ORDER BY seq"
                delete = "DELETE FROM events WHERE trace_id = ANY(%(ids)s)"
            seqs = seq_ranges(int(r[0]) for r in conn.execute(select, params).fetchall())
            conn.execute(f"SET LOCAL {schema.PRUNE_SETTING} = 'on'")
            events = conn.execute(delete, params).rowcount
            conn.execute(f"SET LOCAL {schema.PRUNE_SETTING} = 'off'")
            gone = [dec(r[0]) for r in conn.execute(
                "DELETE FROM runs WHERE trace_id = ANY(%(ids)s) RETURNING run_id",
                params).fetchall()]
            runs = len(gone)
            batch = PrunedBatch(tuple(chosen), runs, events, seqs, kept)
            conn.execute(f"INSERT INTO prunes ({_RECORD_COLUMNS.split(', ', 1)[1]}) VALUES "
                         "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         _record_values(rule, by, batch))
    # the compact layout's writer caches each run's key, header and chunk template: a
    # pruned run's id may come back (re-imported from its archive) under a new key
    for run_id in gone:
        b._keys.pop(run_id, None)
        b._templates.pop(run_id, None)
    return batch


def _pg_prepare(conn: Any) -> None:
    """The prunes table and the trigger function that knows ``runlog.prune``: stores made
    before them get them here (idempotent, serialised like the creation DDL)."""
    from runlog.store import schema

    if conn.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = "
                    "current_schema() AND table_name = 'prunes'").fetchone() is not None:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || "
                     "':runlog-ddl'))")
        conn.execute(schema.APPEND_ONLY_TRIGGERS["postgresql"][0])
        for stmt in schema.PRUNES_DDL["postgresql"]:
            conn.execute(stmt)


def pg_prunes(b: PostgresBackend) -> list[PruneRecord]:
    rows = b._fetch("SELECT 1 FROM information_schema.tables WHERE table_schema = "
                    "current_schema() AND table_name = 'prunes'")
    if not rows:
        return []
    return [_record_from_row(r) for r in b._fetch(
        f"SELECT {_RECORD_COLUMNS} FROM prunes ORDER BY prune_id")]


def pg_reclaim(b: PostgresBackend) -> int:
    """``VACUUM`` (not ``FULL``) the pruned tables: dead rows become space new events
    reuse, and empty pages at a table's end go back to the file system. It runs beside
    writers (it takes no lock that appends or reads wait for)."""
    with b._conn() as conn:
        before = _pg_bytes(conn)
        for table in ("events", "runs"):
            conn.execute(f"VACUUM {table}")
        return max(0, before - _pg_bytes(conn))


def _pg_bytes(conn: Any) -> int:
    row = conn.execute("SELECT pg_total_relation_size('events') + "
                       "pg_total_relation_size('runs')").fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------- memory


def _memory_over(b: MemoryBackend, rule: PruneRule) -> dict[str, TraceCandidate]:
    """Traces of the memory store the rule selects (under its lock)."""
    last_time: dict[str, int] = {}
    open_runs = {r.run_id for r in b._runs.values() if r.end_seq is None}
    if open_runs:
        for row in b._rows:
            if row is not None and row.run_id in open_runs:
                last_time[row.run_id] = int(orjson.loads(row.raw)["time"])
    over: dict[str, list[int]] = {}
    for r in b._runs.values():
        if rule.trace_id is not None and r.trace_id != rule.trace_id:
            continue
        if r.end_seq is not None and r.end_time is not None:
            t = r.end_time
        elif r.writer_id not in b._closed_writers:
            t = _FOREVER  # memory's only writer is this process: running while open
        else:
            t = last_time.get(r.run_id, r.start_time)
        seen = over.setdefault(r.trace_id, [0, 0])
        seen[0] += 1
        seen[1] = max(seen[1], t)
    found = {t: TraceCandidate(t, n, last) for t, (n, last) in over.items()
             if last < rule.before_us}
    rows = [r for r in b._rows if r is not None]
    newest = {rows[-1].trace_id} if rows else set()
    if b._runs:
        newest.add(max(b._runs.values(), key=lambda r: r.start_seq).trace_id)
    _keep_newest(found, newest)
    if rule.tag is not None:
        roots: dict[str, list[Any]] = {}
        for r in b._runs.values():
            if r.parent_id is None:
                roots.setdefault(r.trace_id, []).append(r.tags)
        _filter_tag(roots, found, rule.tag)
    counts: dict[str, int] = {}
    for row in rows:
        if row.trace_id in found:
            counts[row.trace_id] = counts.get(row.trace_id, 0) + 1
    return {t: TraceCandidate(c.trace_id, c.runs, c.last_us, counts.get(t, 0))
            for t, c in found.items()}


def memory_candidates(b: MemoryBackend, rule: PruneRule, after: str,
                      limit: int) -> list[TraceCandidate]:
    with b._lock:
        found = _memory_over(b, rule)
    return [found[t] for t in sorted(found) if t > after][:limit]


def memory_prune(b: MemoryBackend, expect: Mapping[str, int | None], rule: PruneRule,
                 by: Pruner) -> PrunedBatch:
    ids = sorted(expect)
    with b._lock:
        over = _memory_over(b, rule)
        chosen = sorted(t for t in ids if t in over
                        and (expect[t] is None or over[t].events == expect[t]))
        kept = tuple(t for t in ids if t not in chosen)
        wanted = set(chosen)
        seqs: list[int] = []
        for i, row in enumerate(b._rows):
            if row is not None and row.trace_id in wanted:
                seqs.append(row.seq)
                b._rows[i] = None
                b._counts.pop(row.run_id, None)
        gone = [r for r, info in b._runs.items() if info.trace_id in wanted]
        for run_id in gone:
            del b._runs[run_id]
            b._started.discard(run_id)
        batch = PrunedBatch(tuple(chosen), len(gone), len(seqs), seq_ranges(seqs), kept)
        if chosen:
            values = _record_values(rule, by, batch)
            b._prunes.append(_record_from_row((len(b._prunes) + 1, *values)))
    return batch


def memory_prunes(b: MemoryBackend) -> list[PruneRecord]:
    with b._lock:
        return list(b._prunes)


def check_rule(rule: PruneRule) -> None:
    """Refuse a cutoff in the future: it would select runs that end only later."""
    if rule.before_us > now_micros():
        raise StoreError("a prune's cutoff must not be in the future")
