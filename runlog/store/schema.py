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
    "ONE_START_DDL",
    "ONE_START_INDEX",
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
        """CREATE OR REPLACE FUNCTION runlog_append_only() RETURNS trigger AS $$
           BEGIN RAISE EXCEPTION 'runlog: events are append-only'; END $$ LANGUAGE plpgsql""",
        """DROP TRIGGER IF EXISTS events_append_only ON events""",
        """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
           FOR EACH ROW EXECUTE FUNCTION runlog_append_only()""",
        """DROP TRIGGER IF EXISTS events_no_truncate ON events""",
        """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
           FOR EACH STATEMENT EXECUTE FUNCTION runlog_append_only()""",
    ],
}
"""Dialect DDL that makes the database itself refuse to rewrite history."""
