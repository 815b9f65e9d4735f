"""What a store holds and what it costs on disk: ``runlog stats`` and ``Store.stats()``.

Counts come from the tables (``count(*)``); bytes on disk from the database itself
(SQLite's ``dbstat`` table, PostgreSQL's ``pg_total_relation_size``). Splitting the
events table's bytes by run type, trace and day needs each row's size, so those
groupings read every event row once (an aggregate in SQL: a few seconds per GB). A
group's ``bytes`` is its share of the events table on disk (table and indexes), in
proportion to the bytes its rows store; the groups add up to ``events_bytes``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from runlog import codec

if TYPE_CHECKING:
    from runlog.store.memory import MemoryBackend
    from runlog.store.postgres import PostgresBackend
    from runlog.store.sqlite import SQLiteBackend

__all__ = ["DayStats", "StoreStats", "TraceStats", "TypeStats"]

DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class TypeStats:
    """One run type: its runs, their events, and their share of the events' bytes."""

    run_type: str
    runs: int
    events: int
    bytes: int


@dataclass(frozen=True, slots=True)
class TraceStats:
    """One of the largest traces."""

    trace_id: str
    name: str
    events: int
    bytes: int


@dataclass(frozen=True, slots=True)
class DayStats:
    """One UTC day of event times: runs started, events recorded, their bytes."""

    day: str
    runs: int
    events: int
    bytes: int


@dataclass(frozen=True)
class StoreStats:
    """What ``runlog stats`` prints (``to_dict`` is its ``--json``)."""

    location: str
    layout: str
    """``sqlite compact``, ``sqlite wide``, ``postgresql`` or ``memory``."""
    events: int
    runs: int
    traces: int
    bytes_on_disk: int
    """Everything the store occupies (SQLite: the file and its -wal)."""
    events_bytes: int
    """The events table and its indexes."""
    oldest_us: int | None
    newest_us: int | None
    by_type: list[TypeStats] = field(default_factory=list)
    top_traces: list[TraceStats] = field(default_factory=list)
    per_day: list[DayStats] = field(default_factory=list)
    prunes: int = 0
    pruned_events: int = 0

    @property
    def bytes_per_day(self) -> float:
        """Average growth: the events' bytes over the days from the oldest to the newest
        event (at least one day)."""
        if self.oldest_us is None or self.newest_us is None:
            return 0.0
        days = max(1.0, (self.newest_us - self.oldest_us) / DAY_US)
        return self.events_bytes / days

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["oldest"] = _iso(self.oldest_us)
        out["newest"] = _iso(self.newest_us)
        out["bytes_per_day"] = round(self.bytes_per_day)
        return out

    def json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    from runlog.events import micros_to_datetime

    return micros_to_datetime(us).isoformat()


def day_text(day: int) -> str:
    """A day number (days since 1970-01-01 UTC) as ``YYYY-MM-DD``."""
    try:
        return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
    except OverflowError:
        return str(day)


def _share(part: int, whole: int, disk: int) -> int:
    return round(disk * part / whole) if whole else 0


def _assemble(location: str, layout: str, *, events: int, runs: int, traces: int,
              disk: int, events_disk: int, oldest: int | None, newest: int | None,
              rows: Iterable[tuple[int, str, int, int]], runs_by_type: dict[str, int],
              runs_by_day: dict[int, int], top: Iterable[tuple[str, str, int, int]],
              prunes: int, pruned: int) -> StoreStats:
    """``rows``: (day, run type, events, stored bytes) per group; ``top``: (trace id,
    root name, events, stored bytes) of the largest traces."""
    rows = list(rows)
    stored = sum(r[3] for r in rows)
    types: dict[str, list[int]] = {}
    days: dict[int, list[int]] = {}
    for day, run_type, n, size in rows:
        t = types.setdefault(run_type, [0, 0])
        t[0] += n
        t[1] += size
        d = days.setdefault(day, [0, 0])
        d[0] += n
        d[1] += size
    return StoreStats(
        location=location, layout=layout, events=events, runs=runs, traces=traces,
        bytes_on_disk=disk, events_bytes=events_disk, oldest_us=oldest, newest_us=newest,
        by_type=sorted((TypeStats(t, runs_by_type.get(t, 0), n, _share(size, stored,
                                                                          events_disk))
                        for t, (n, size) in types.items()), key=lambda s: -s.bytes),
        top_traces=[TraceStats(t, name, n, _share(size, stored, events_disk))
                    for t, name, n, size in top],
        per_day=[DayStats(day_text(d), runs_by_day.get(d, 0), n,
                          _share(size, stored, events_disk))
                 for d, (n, size) in sorted(days.items())],
        prunes=prunes, pruned_events=pruned)


def _file_bytes(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def sqlite_stats(b: SQLiteBackend, top: int) -> StoreStats:
    from runlog.store.prune import sqlite_prunes

    compact = b.compact
    if compact:
        groups = ("SELECT (e.time + r.start_time) / 86400000000, r.run_type, count(*), "
                  "sum(length(CAST(e.body AS BLOB)) + length(e.digest) + 8) FROM events e "
                  "JOIN runs r ON r.run_key = e.run_key GROUP BY 1, 2")
        biggest = ("SELECT e.trace_key, count(*), sum(length(CAST(e.body AS BLOB)) + "
                   "length(e.digest) + 8) AS size FROM events e GROUP BY e.trace_key "
                   "ORDER BY size DESC LIMIT ?")
    else:
        groups = ("SELECT time / 86400000000, run_type, count(*), "
                  "sum(length(CAST(raw AS BLOB)) + length(digest) + 8) FROM events GROUP BY 1, 2")
        biggest = ("SELECT trace_id, count(*), sum(length(CAST(raw AS BLOB)) + length(digest) "
                   "+ 8) AS size FROM events GROUP BY trace_id ORDER BY size DESC LIMIT ?")
    with b._read_txn(raw_bytes=False) as c:
        events = int(c.execute("SELECT count(*) FROM events").fetchone()[0])
        runs, traces, oldest, newest = c.execute(
            "SELECT count(*), count(DISTINCT trace_id), min(start_time), "
            "max(coalesce(end_time, start_time)) FROM runs").fetchone()
        rows = [(int(d), str(t), int(n), int(s)) for d, t, n, s in c.execute(groups)]
        by_type = {str(t): int(n) for t, n in c.execute(
            "SELECT run_type, count(*) FROM runs GROUP BY run_type")}
        by_day = {int(d): int(n) for d, n in c.execute(
            "SELECT start_time / 86400000000, count(*) FROM runs GROUP BY 1")}
        top_rows = c.execute(biggest, (top,)).fetchall()
        names: list[tuple[str, str, int, int]] = []
        for key, n, size in top_rows:
            found = c.execute(
                "SELECT trace_id, name FROM runs WHERE " + ("trace_key" if compact
                                                            else "trace_id")
                + " = ? ORDER BY start_seq LIMIT 1", (key,)).fetchone()
            trace_id, name = found if found is not None else (str(key), "")
            names.append((str(trace_id), str(name), int(n), int(size)))
        try:
            sizes = dict(c.execute(
                "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
                "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1").fetchall())
            events_disk = int(sizes.get("events", 0))
        except Exception:  # a SQLite built without dbstat: the file's share
            events_disk = 0
    disk = _file_bytes(str(b.path))
    if not events_disk:
        events_disk = disk
    pruned = sqlite_prunes(b)
    return _assemble(b.location, "sqlite compact" if compact else "sqlite wide",
                     events=events, runs=int(runs), traces=int(traces), disk=disk,
                     events_disk=events_disk, oldest=oldest, newest=newest, rows=rows,
                     runs_by_type=by_type, runs_by_day=by_day, top=names,
                     prunes=len(pruned), pruned=sum(p.events for p in pruned))


def pg_stats(b: PostgresBackend, top: int) -> StoreStats:
    from runlog.store.postgres import dec
    from runlog.store.prune import pg_prunes

    f = b._fetch
    events = int(f("SELECT count(*) FROM events")[0][0])
    runs, traces, oldest, newest = f(
        "SELECT count(*), count(DISTINCT trace_id), min(start_time), "
        "max(coalesce(end_time, start_time)) FROM runs")[0]
    if b.compact:  # times relative to the run's start; name and type in the run's row
        by_group = ("SELECT floor((r.start_time + e.time) / 86400000000.0)::bigint, "
                    "r.run_type, count(*), sum(octet_length(e.body) + octet_length(e.digest) "
                    "+ 8) FROM events e JOIN runs r ON r.run_key = e.run_key GROUP BY 1, 2")
        biggest = ("SELECT e.trace_key, count(*), sum(octet_length(e.body) + "
                   "octet_length(e.digest) + 8) AS size FROM events e GROUP BY e.trace_key "
                   "ORDER BY size DESC LIMIT %s")
    else:
        by_group = ("SELECT floor(time / 86400000000.0)::bigint, run_type, count(*), "
                    "sum(octet_length(raw) + octet_length(digest) + 8) FROM events "
                    "GROUP BY 1, 2")
        biggest = ("SELECT e.trace_id, count(*), sum(octet_length(e.raw) + "
                   "octet_length(e.digest) + 8) AS size FROM events e GROUP BY e.trace_id "
                   "ORDER BY size DESC LIMIT %s")
    rows = [(int(d), dec(t), int(n), int(s)) for d, t, n, s in f(by_group)]
    by_type = {dec(t): int(n) for t, n in f("SELECT run_type, count(*) FROM runs GROUP BY 1")}
    by_day = {int(d): int(n) for d, n in f(
        "SELECT floor(start_time / 86400000000.0)::bigint, count(*) FROM runs GROUP BY 1")}
    names = []
    for t, n, size in f(biggest, (top,)):
        # the trace's first run: its id and root name (a compact trace key names it)
        found = f("SELECT trace_id, name FROM runs WHERE "
                  + ("trace_key" if b.compact else "trace_id")
                  + " = %s ORDER BY start_seq LIMIT 1", (t,))
        trace_id, name = found[0] if found else (str(t), "")
        names.append((dec(trace_id), dec(name) if name is not None else "", int(n), int(size)))
    tables = [r[0] for r in f("SELECT table_name FROM information_schema.tables WHERE "
                              "table_schema = current_schema()")]
    parts = [f"pg_total_relation_size('{t}')" for t in tables if t.isidentifier()]
    disk = int(f("SELECT " + " + ".join(parts))[0][0]) if parts else 0
    events_disk = int(f("SELECT pg_total_relation_size('events')")[0][0])
    pruned = pg_prunes(b)
    return _assemble(b.location, "postgresql compact" if b.compact else "postgresql wide",
                     events=events, runs=int(runs),
                     traces=int(traces), disk=disk, events_disk=events_disk, oldest=oldest,
                     newest=newest, rows=rows, runs_by_type=by_type, runs_by_day=by_day,
                     top=names, prunes=len(pruned), pruned=sum(p.events for p in pruned))


def memory_stats(b: MemoryBackend, top: int) -> StoreStats:
    with b._lock:
        rows = [r for r in b._rows if r is not None]
        runs = list(b._runs.values())
        prunes = list(b._prunes)
    type_of = {r.run_id: r.run_type for r in runs}
    groups: dict[tuple[int, str], list[int]] = {}
    traces: dict[str, list[int]] = {}
    for row in rows:
        when = int(orjson.loads(row.raw)["time"])
        run_type = type_of.get(row.run_id) or str(codec.loads_plain(row.raw).get("run_type"))
        g = groups.setdefault((when // DAY_US, run_type), [0, 0])
        size = len(row.raw) + len(row.digest) + 8
        g[0] += 1
        g[1] += size
        t = traces.setdefault(row.trace_id, [0, 0])
        t[0] += 1
        t[1] += size
    stored = sum(len(r.raw) + len(r.digest) + 8 for r in rows)
    first_name = {}
    for r in sorted(runs, key=lambda r: r.start_seq, reverse=True):
        first_name[r.trace_id] = r.name
    biggest = sorted(traces.items(), key=lambda kv: -kv[1][1])[:top]
    by_type: dict[str, int] = {}
    by_day: dict[int, int] = {}
    for r in runs:
        by_type[r.run_type] = by_type.get(r.run_type, 0) + 1
        by_day[r.start_time // DAY_US] = by_day.get(r.start_time // DAY_US, 0) + 1
    return _assemble(
        b.location, "memory", events=len(rows), runs=len(runs),
        traces=len({r.trace_id for r in runs}), disk=stored, events_disk=stored,
        oldest=min((r.start_time for r in runs), default=None),
        newest=max((r.end_time if r.end_time is not None else r.start_time for r in runs),
                   default=None),
        rows=[(d, t, n, s) for (d, t), (n, s) in groups.items()], runs_by_type=by_type,
        runs_by_day=by_day, top=[(t, first_name.get(t, ""), n, s) for t, (n, s) in biggest],
        prunes=len(prunes), pruned=sum(p.events for p in prunes))
