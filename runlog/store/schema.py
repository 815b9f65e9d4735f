"""The one declaration of runlog's tables (SQLAlchemy Core), shared by every SQL backend.

``events``   the log itself: one row per event, append-only (triggers refuse UPDATE
             and DELETE), ``seq`` gap-free in commit order, ``raw`` the envelope bytes.
``runs``     a projection of the log maintained in the same transactions: one row per
             run, inserted by its start event and completed by its end event. It can be
             rebuilt from ``events`` at any time; it exists so listing runs and finding a
             run's trace needs no scan.
``writers``  one row per writing process: its lease, refreshed by heartbeats; a run
             whose writer's lease expired while the run is open is *abandoned*.
``meta``     key/value facts about the store, e.g. ``schema_version``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, Table, Text, text

__all__ = [
    "APPEND_ONLY_TRIGGERS",
    "COMPACT_LAYOUT",
    "COMPACT_PG_DDL",
    "COMPACT_SCHEMA_VERSION",
    "COMPACT_SQLITE_DDL",
    "ONE_START_DDL",
    "ONE_START_INDEX",
    "PRUNES_DDL",
    "PRUNE_SETTING",
    "events",
    "meta",
    "metadata",
    "runs",
    "writers",
]

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("trace_id", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("run_type", Text, nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("raw", Text, nullable=False),
    Column("digest", Text, nullable=False),
)
Index("events_trace_seq", events.c.trace_id, events.c.seq)
ONE_START_INDEX = "events_one_start"
Index(ONE_START_INDEX, events.c.run_id, unique=True,
      sqlite_where=text("kind = 'start'"), postgresql_where=text("kind = 'start'"))
"""A run id names one run: a second start event with the same id is refused by the
database itself, so another process (or an old runlog) cannot write one either."""

ONE_START_DDL = (f"CREATE UNIQUE INDEX IF NOT EXISTS {ONE_START_INDEX} ON events (run_id) "
                 "WHERE kind = 'start'")
"""The same index for stores created before it existed (added when they are opened)."""

runs = Table(
    "runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("trace_id", Text, nullable=False),
    Column("parent_id", Text),
    Column("name", Text, nullable=False),
    Column("run_type", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("start_seq", BigInteger, nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_seq", BigInteger),
    Column("end_time", BigInteger),
    Column("status", Text, nullable=False),
    Column("error", Text),
    Column("event_count", BigInteger, nullable=False, default=0),
    Column("writer_id", Text),
)
Index("runs_trace", runs.c.trace_id, runs.c.start_seq)
Index("runs_start", runs.c.start_seq)

writers = Table(
    "writers",
    metadata,
    Column("writer_id", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("lease_us", BigInteger, nullable=False),
    Column("closed", Integer, nullable=False, default=0),
)

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

APPEND_ONLY_TRIGGERS: dict[str, list[str]] = {
    "sqlite": [
        """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'runlog: events are append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'runlog: events are append-only'); END""",
    ],
    "postgresql": [
        # a DELETE passes only in a prune's own transaction (runlog/store/prune.py)
        """CREATE OR REPLACE FUNCTION runlog_append_only() RETURNS trigger AS $$
           BEGIN
             IF TG_OP = 'DELETE' AND current_setting('runlog.prune', true) = 'on' THEN
               RETURN OLD;
             END IF;
             RAISE EXCEPTION 'runlog: events are append-only';
           END $$ LANGUAGE plpgsql""",
        """DROP TRIGGER IF EXISTS events_append_only ON events""",
        """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
           FOR EACH ROW EXECUTE FUNCTION runlog_append_only()""",
        """DROP TRIGGER IF EXISTS events_no_truncate ON events""",
        """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
           FOR EACH STATEMENT EXECUTE FUNCTION runlog_append_only()""",
    ],
}
"""Dialect DDL that makes the database itself refuse to rewrite history."""


COMPACT_SCHEMA_VERSION = 2
"""The schema version of SQLite stores in the compact layout (``COMPACT_SQLITE_DDL``)."""
COMPACT_LAYOUT = "compact"
"""``meta.layout`` of such stores. A store at version 2 without it is not one (a v1 store
a later migration took to 2 would be), so the layout is named, not inferred."""

COMPACT_SQLITE_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_key INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        trace_key INTEGER NOT NULL,
        trace_id TEXT NOT NULL,
        parent_id TEXT,
        name TEXT NOT NULL,
        run_type TEXT NOT NULL,
        tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        header TEXT,
        start_seq INTEGER NOT NULL,
        start_time INTEGER NOT NULL,
        end_seq INTEGER,
        end_time INTEGER,
        status TEXT NOT NULL,
        error TEXT,
        event_count INTEGER NOT NULL DEFAULT 0,
        writer_id TEXT)""",
    "CREATE INDEX IF NOT EXISTS runs_trace ON runs (trace_id, start_seq)",
    "CREATE INDEX IF NOT EXISTS runs_start ON runs (start_seq)",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        run_key INTEGER NOT NULL,
        trace_key INTEGER NOT NULL,
        time INTEGER NOT NULL,  -- microseconds since the run's start_time
        code INTEGER NOT NULL,
        body TEXT NOT NULL,
        digest BLOB NOT NULL)""",
    # (trace_key) alone: SQLite appends the rowid, i.e. seq, to every index entry, so the
    # entries are ordered by (trace_key, seq) all the same; naming seq too stored it twice
    "CREATE INDEX IF NOT EXISTS events_trace_seq ON events (trace_key)",
    """CREATE TRIGGER IF NOT EXISTS runs_keep_identity
       BEFORE UPDATE OF run_key, run_id, trace_key, trace_id, header ON runs
       BEGIN SELECT RAISE(ABORT, 'runlog: a run''s identity and header never change'); END""",
]
"""The compact SQLite layout (schema 2, ``docs/storage.md``): a run's header once in its
``runs`` row, integer keys, binary digests; each event row holds what its event adds
(:mod:`runlog.store.layout`). ``writers`` and ``meta`` and the append-only triggers
are those of schema 1. ``run_key`` is what event rows refer to; ``trace_key`` (the key
of the trace's first run) is kept in ``events`` too because reading a trace in seq
order, what replays, trace tails and exports do, needs the index ``events_trace_seq``
on it: without it SQLite gathers and sorts the trace's rows for every page."""

COMPACT_PG_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_key bigint PRIMARY KEY,  -- the seq of the run's start event
        run_id text NOT NULL UNIQUE,
        trace_key bigint NOT NULL,   -- runlog.store.postgres.trace_key(trace_id)
        trace_id text NOT NULL,
        parent_id text,
        name text NOT NULL,
        run_type text NOT NULL,
        tags text NOT NULL,
        metadata text NOT NULL,
        header text,
        start_seq bigint NOT NULL,
        start_time bigint NOT NULL,
        end_seq bigint,
        end_time bigint,
        status text NOT NULL,
        error text,
        event_count bigint NOT NULL DEFAULT 0,
        writer_id text)""",
    "CREATE INDEX IF NOT EXISTS runs_trace ON runs (trace_id, start_seq)",
    "CREATE INDEX IF NOT EXISTS runs_start ON runs (start_seq)",
    """CREATE TABLE IF NOT EXISTS events (
        seq bigint PRIMARY KEY,
        run_key bigint NOT NULL,
        trace_key bigint NOT NULL,
        time bigint NOT NULL,  -- microseconds since the run's start_time
        code smallint NOT NULL,
        body text NOT NULL,
        digest bytea NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_trace_seq ON events (trace_key, seq)",
    """CREATE OR REPLACE FUNCTION runlog_run_identity() RETURNS trigger AS $$
       BEGIN
         IF NEW.run_key IS DISTINCT FROM OLD.run_key OR NEW.run_id IS DISTINCT FROM OLD.run_id
            OR NEW.trace_key IS DISTINCT FROM OLD.trace_key
            OR NEW.trace_id IS DISTINCT FROM OLD.trace_id
            OR NEW.header IS DISTINCT FROM OLD.header
            OR NEW.start_time IS DISTINCT FROM OLD.start_time THEN
           RAISE EXCEPTION 'runlog: a run''s identity and header never change';
         END IF;
         RETURN NEW;
       END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS runs_keep_identity ON runs",
    """CREATE TRIGGER runs_keep_identity BEFORE UPDATE ON runs
       FOR EACH ROW EXECUTE FUNCTION runlog_run_identity()""",
]
"""The compact PostgreSQL layout (schema 2, ``docs/postgres.md``): the SQLite compact
layout's rows (:data:`COMPACT_SQLITE_DDL`, :mod:`runlog.store.layout`) in PostgreSQL
types. Two keys are assigned differently, because several writers on several hosts
append and a key must be known inside the one append statement: ``run_key`` is the
seq of the run's start event (unique, taken from the counter row with the batch), and
``trace_key`` a function of the trace id (``runlog.store.postgres.trace_key``: no
lookup, the same in every process; reads of a trace check the run's trace id, so two
ids with one key never mix). The
JSONB filter columns, the counter row and the append-only triggers are added by
``runlog.store.postgres.pg_extras_ddl``. ``start_time`` is in the trigger too: event
times are stored relative to it."""

# -- lifecycle (runlog/store/prune.py, docs/storage.md "Lifecycle") ------------------

PRUNE_SETTING = "runlog.prune"
"""The PostgreSQL setting a prune's transaction sets (``SET LOCAL``) so the append-only
trigger function lets its DELETE through; no other session sees it."""

_PRUNES_COLUMNS = """
        operation TEXT NOT NULL,  -- one id for the batches of one prune
        at BIGINT NOT NULL,       -- epoch microseconds
        by_user TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        rule TEXT NOT NULL,       -- JSON: before (epoch us), trace, tag
        traces BIGINT NOT NULL,
        runs BIGINT NOT NULL,
        events BIGINT NOT NULL,
        seqs TEXT NOT NULL,       -- JSON [[first, last], ...]: every seq removed
        trace_ids TEXT NOT NULL,  -- JSON list
        archive TEXT)"""

PRUNES_DDL: dict[str, list[str]] = {
    "sqlite": ["CREATE TABLE IF NOT EXISTS prunes (prune_id INTEGER PRIMARY KEY,"
               + _PRUNES_COLUMNS],
    "postgresql": ["CREATE TABLE IF NOT EXISTS prunes (prune_id bigserial PRIMARY KEY,"
                   + _PRUNES_COLUMNS],
}
"""``prunes``: one row per batch of a prune, what it removed, by whom and when. Made by
the first prune (stores never pruned have none, and runlog before it ignores it)."""
