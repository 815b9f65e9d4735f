"""PostgreSQL: one log shared by many processes on many hosts.

``runlog.open("postgresql+psycopg://user@host/db")`` (or ``postgresql://``; add
``?schema=NAME`` to keep the store in its own schema) gives the same contract as the
SQLite backend. How, and why (figures and query plans in ``docs/postgres.md``):

* **seq is gap-free and commit-ordered.** A ``bigserial`` is not: sequence values are
  handed out before commit, so two concurrent transactions can commit 8 before 7 (a
  tailer that already saw 8 then skips 7 forever), and a rolled-back batch burns its
  numbers (gaps). Here every append takes the single row of ``seq_counter`` with
  ``UPDATE ... SET last = last + n RETURNING``: the row lock is held until commit, so
  the next writer's UPDATE waits, and (READ COMMITTED re-reads a row it waited for)
  continues from the committed value. Appends are therefore serialised on that row,
  commit in seq order, and a rollback returns its numbers. PostgreSQL makes a commit
  visible before it releases the transaction's locks, so once a reader sees seq N,
  every seq below N is already visible to it too.
* **One round trip per batch.** The whole append (counter, events, the runs
  projection, the writer's heartbeat and the ``pg_notify`` wake-up) is a single
  statement of data-modifying CTEs over ``unnest``-ed arrays, run in autocommit mode:
  one statement is one transaction, so the batch commits whole or not at all and the
  counter row is held for the shortest possible time. Large batches (from
  :data:`COPY_FROM` events, which group commit produces under load) use ``COPY``
  instead, in one explicit transaction of three round trips, because it costs less
  per row; small ones, the latency case, use the one statement.
* **Bytes.** ``events.raw`` is TEXT holding the envelope's UTF-8 as written. Envelopes
  never contain a NUL byte (JSON escapes U+0000 as ``\\u0000``), which is the one
  thing TEXT cannot hold, so the bytes read back are the bytes written.
* **Filters in SQL.** Names and run types are indexed columns of ``events``; tags and
  metadata are JSONB copies (``runs.tags_j``/``runs.metadata_j``, GIN-indexed) of
  each run's own tags and metadata, kept in the runs projection, joined by run id.
  SQL narrows to a superset and the store always applies the exact predicate after,
  so SQL never drops an event the filter keeps. A run whose tags or metadata contain
  ``\\u0000`` (which JSONB refuses) gets NULL there and is left to the exact predicate.
* **Leases on the server's clock.** Heartbeats and lease checks use the database
  server's ``clock_timestamp()``, not the writer's clock, so hosts with skewed clocks
  agree on which runs are abandoned.
* **Live tail.** The append statement calls ``pg_notify`` with the last seq;
  :class:`PgNotifyWaiter` LISTENs on a dedicated connection. A notification is only a
  wake-up: the tailer re-reads from its cursor, so a lost NOTIFY or a dropped
  connection costs latency, never events.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pgsql
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

from runlog import codec
from runlog.errors import (
    AppendOnlyError,
    NotARunlogStoreError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from runlog.events import Event, RunInfo, now_micros
from runlog.filters import ANY, DICT_TAG, Filter, sql_strings
from runlog.store import schema
from runlog.store.base import (
    CHECKED_COLUMNS,
    SCHEMA_VERSION,
    Backend,
    ChangeWaiter,
    EventQuery,
    Pending,
    RunQuery,
    WriterInfo,
    column_mismatch,
    run_info_from_row,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from runlog.store.prune import PrunedBatch, Pruner, PruneRecord, PruneRule, TraceCandidate
    from runlog.store.stats import StoreStats

__all__ = ["PgNotifyWaiter", "PostgresBackend", "notify_channel", "parse_url", "pg_extras_ddl",
           "read_sql", "search_path_option"]

log = logging.getLogger("runlog")

# Case is kept (the name is always quoted); fullmatch, so a trailing newline fails too.
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

COPY_FROM = 256
"""Batch size from which ``insert="auto"`` uses COPY (``benchmarks/bench_postgres.py``:
the one statement wins 1.6-2.6x at 1-10 events; at 500 COPY ties or wins by up to
1.2x, more so when the client's CPU is scarce)."""

# The database server's clock, in microseconds since the epoch (leases, heartbeats).
NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"


def parse_url(url: str) -> tuple[str, str | None]:
    """Normalise a PostgreSQL URL for SQLAlchemy and take runlog's ``schema=`` out of it.

    ``postgres://`` and ``postgresql://`` select psycopg 3 (SQLAlchemy's default would
    be psycopg2, which runlog does not depend on). Returns the URL to connect with and
    the schema name (None: the connection's default ``search_path``).
    """
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"{url!r} is not a valid database URL: {e}") from e
    backend, _, driver = u.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise StoreError(f"{url!r} is not a PostgreSQL URL")
    if driver not in ("", "psycopg"):
        raise StoreError(
            f"runlog talks to PostgreSQL through psycopg 3; use postgresql+psycopg:// "
            f"instead of {u.drivername}://"
        )
    u = u.set(drivername="postgresql+psycopg")
    schema_name = u.query.get("schema")
    if isinstance(schema_name, tuple):
        raise StoreError(f"give ?schema= once in {url!r}")
    if schema_name is not None:
        if not _SCHEMA_NAME.fullmatch(schema_name):
            raise StoreError(
                f"schema name {schema_name!r} in {url!r} must be a plain identifier "
                "(1-63 ASCII letters, digits and underscores, not starting with a digit; "
                "upper and lower case are kept as given)"
            )
        u = u.difference_update_query(["schema"])
    return u.render_as_string(hide_password=False), schema_name


def search_path_option(schema_name: str) -> str:
    """The libpq ``options`` entry that puts a connection in ``schema_name``.

    Quoted, because PostgreSQL folds an unquoted identifier to lower case: without the
    quotes ``?schema=TeamStore`` would create ``"TeamStore"`` (quoted DDL) but search
    ``teamstore``. :func:`parse_url` admits only letters, digits and underscores, so
    the name needs no escaping inside the quotes or the options string.
    """
    return f'-c search_path="{schema_name}"'


def notify_channel(schema_name: str) -> str:
    """The NOTIFY channel of the store in ``schema_name`` (case kept, like the schema).

    A channel name must be shorter than 64 bytes (``pg_notify`` fails every append
    otherwise), so a long schema name gets a digest of itself instead.
    """
    channel = f"runlog:{schema_name}"
    if len(channel.encode()) < 64:
        return channel
    return "runlog:" + hashlib.blake2b(schema_name.encode(), digest_size=16).hexdigest()


def pg_extras_ddl() -> list[str]:
    """PostgreSQL-only DDL on top of the shared tables (idempotent).

    The counter row that serialises seq assignment, the JSONB filter columns of the
    runs projection with their GIN indexes, the indexes filters and id lookups use,
    and the append-only triggers.
    """
    return [
        "CREATE TABLE IF NOT EXISTS seq_counter ("
        " id integer PRIMARY KEY CHECK (id = 1), last bigint NOT NULL)",
        "INSERT INTO seq_counter (id, last) "
        "SELECT 1, coalesce(max(seq), 0) FROM events ON CONFLICT (id) DO NOTHING",
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS tags_j jsonb, "
        "ADD COLUMN IF NOT EXISTS metadata_j jsonb",
        "CREATE INDEX IF NOT EXISTS runs_tags_gin ON runs USING gin (tags_j)",
        "CREATE INDEX IF NOT EXISTS runs_metadata_gin ON runs USING gin (metadata_j)",
        # The runs whose tags/metadata JSONB could not hold (NULL): every filter keeps
        # them for the exact predicate, and these let that OR stay an index scan.
        "CREATE INDEX IF NOT EXISTS runs_tags_unindexable ON runs (run_id) WHERE tags_j IS NULL",
        "CREATE INDEX IF NOT EXISTS runs_metadata_unindexable ON runs (run_id) "
        "WHERE metadata_j IS NULL",
        "CREATE INDEX IF NOT EXISTS runs_id_pattern ON runs (run_id text_pattern_ops)",
        "CREATE INDEX IF NOT EXISTS runs_id_reverse ON runs (reverse(run_id) text_pattern_ops)",
        "CREATE INDEX IF NOT EXISTS events_run_seq ON events (run_id, seq)",
        "CREATE INDEX IF NOT EXISTS events_name_seq ON events (name, seq)",
        "CREATE INDEX IF NOT EXISTS events_type_seq ON events (run_type, seq)",
        *schema.APPEND_ONLY_TRIGGERS["postgresql"],
    ]


# One statement per batch (see the module docstring). Runs started in this batch are
# inserted complete (their end folded in by Python), because sibling CTEs cannot see
# each other's rows; ends of runs started earlier update the projection.
_TAKE_SEQS = (
    "s AS (UPDATE seq_counter SET last = last + %(n)s WHERE id = 1 "
    "RETURNING last - %(n)s AS base)"
)
_GIVEN_SEQS = "s AS (SELECT %(base)s::int8 AS base)"
_INSERT_EVENTS = """, ev AS (
  INSERT INTO events (seq, trace_id, run_id, kind, name, run_type, time, raw, digest)
  SELECT s.base + u.ord, u.trace_id, u.run_id, u.kind, u.name, u.run_type, u.time, u.raw,
         u.digest
  FROM s, unnest(%(trace)b::text[], %(run)b::text[], %(kind)b::text[], %(name)b::text[],
                 %(rtype)b::text[], %(time)b::int8[], %(raw)b::text[], %(digest)b::text[])
       WITH ORDINALITY AS u(trace_id, run_id, kind, name, run_type, time, raw, digest, ord)
)"""
_PROJECT = f""", st AS (
  INSERT INTO runs (run_id, trace_id, parent_id, name, run_type, tags, metadata, tags_j,
                    metadata_j, start_seq, start_time, end_seq, end_time, status, error,
                    event_count, writer_id)
  SELECT u.run_id, u.trace_id, u.parent_id, u.name, u.run_type, u.tags, u.metadata,
         u.tags_j::jsonb, u.metadata_j::jsonb, s.base + u.pos, u.time, s.base + u.end_pos,
         u.end_time, u.status, u.error, u.count, %(writer)s
  FROM s, unnest(%(s_run)b::text[], %(s_trace)b::text[], %(s_parent)b::text[],
                 %(s_name)b::text[], %(s_rtype)b::text[], %(s_tags)b::text[],
                 %(s_meta)b::text[], %(s_tags_j)b::text[], %(s_meta_j)b::text[],
                 %(s_pos)b::int8[], %(s_time)b::int8[], %(s_end_pos)b::int8[],
                 %(s_end_time)b::int8[], %(s_status)b::text[], %(s_error)b::text[],
                 %(s_count)b::int8[])
       AS u(run_id, trace_id, parent_id, name, run_type, tags, metadata, tags_j, metadata_j,
            pos, time, end_pos, end_time, status, error, count)
  ON CONFLICT (run_id) DO NOTHING
), en AS (
  UPDATE runs r SET end_seq = s.base + u.pos, end_time = u.time, status = u.status,
         error = u.error, event_count = u.count
  FROM s, unnest(%(e_run)b::text[], %(e_pos)b::int8[], %(e_time)b::int8[],
                 %(e_status)b::text[], %(e_error)b::text[], %(e_count)b::int8[])
       AS u(run_id, pos, time, status, error, count)
  WHERE r.run_id = u.run_id AND r.end_seq IS NULL
), hb AS (
  INSERT INTO writers (writer_id, host, pid, started_at, heartbeat_at, lease_us, closed)
  VALUES (%(writer)s, %(host)s, %(pid)s, {NOW_US}, {NOW_US}, %(lease)s, 0)
  ON CONFLICT (writer_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, closed = 0
)
SELECT s.base + %(n)s, pg_notify(%(channel)s, (s.base + %(n)s)::text) FROM s
"""
_APPEND = "WITH " + _TAKE_SEQS + _INSERT_EVENTS + _PROJECT
_APPEND_AFTER_COPY = "WITH " + _GIVEN_SEQS + _PROJECT
_COPY_EVENTS = (
    "COPY events (seq, trace_id, run_id, kind, name, run_type, time, raw, digest) FROM STDIN"
)

_HEARTBEAT = (
    "INSERT INTO writers (writer_id, host, pid, started_at, heartbeat_at, lease_us, closed) "
    f"VALUES (%s, %s, %s, {NOW_US}, {NOW_US}, %s, %s) ON CONFLICT (writer_id) DO UPDATE SET "
    "heartbeat_at = excluded.heartbeat_at, closed = excluded.closed"
)
_RUN_COLUMNS = (
    "r.run_id, r.trace_id, r.parent_id, r.name, r.run_type, r.tags, r.metadata, r.start_seq, "
    "r.start_time, r.end_seq, r.end_time, r.status, r.error, r.event_count"
)
# As in SQLite: an open run is abandoned once its writer is gone (lease expired on the
# server's clock, closed, or unknown).
_STATUS = (
    "CASE WHEN r.status != 'running' THEN r.status "
    "WHEN w.writer_id IS NULL OR w.closed != 0 "
    f"OR w.heartbeat_at + w.lease_us < {NOW_US} "
    "THEN 'abandoned' ELSE 'running' END"
)
_SELECT_RUNS = (
    f"SELECT {_RUN_COLUMNS}, {_STATUS} AS live_status, "
    "CASE WHEN r.end_seq IS NULL THEN (SELECT count(*) FROM events e "
    "WHERE e.trace_id = r.trace_id AND e.run_id = r.run_id) END AS live_count "
    "FROM runs r LEFT JOIN writers w ON w.writer_id = r.writer_id"
)


_ESCAPED = re.compile("\ufffe(.)", re.DOTALL)


def enc(text: str) -> str:
    """A name or id as a TEXT column holds it: PostgreSQL TEXT cannot hold U+0000.

    Injective and the identity on every string without U+0000 or U+FFFE (a Unicode
    noncharacter), so equality (filters, lookups) is exact and indexes see plain
    values: U+0000 becomes U+FFFE "0" and U+FFFE becomes U+FFFE U+FFFE.
    """
    if "\x00" not in text and "\ufffe" not in text:
        return text
    return text.replace("\ufffe", "\ufffe\ufffe").replace("\x00", "\ufffe0")


def dec(text: str) -> str:
    """The inverse of :func:`enc`."""
    if "\ufffe" not in text:
        return text
    return _ESCAPED.sub(lambda m: "\x00" if m.group(1) == "0" else m.group(1), text)


def _enc_opt(text: str | None) -> str | None:
    return None if text is None else enc(text)


def _jsonb_safe(doc: bytes) -> str | None:
    """The JSON text for a JSONB filter column, or None when JSONB cannot hold it.

    JSONB refuses ``\\u0000``; such a run's column stays NULL and the exact predicate
    decides (a textual check: a false alarm only costs the index for that run).
    """
    return None if b"\\u0000" in doc else doc.decode()


class _Batch:
    """A batch laid out as the column arrays the append statement unnests."""

    def __init__(self, batch: Sequence[Pending]) -> None:
        self.n = len(batch)
        self.trace = [enc(p.trace_id) for p in batch]
        self.run = [enc(p.run_id) for p in batch]
        self.kind = [p.kind for p in batch]
        self.name = [enc(p.name) for p in batch]
        self.rtype = [enc(p.run_type) for p in batch]
        self.time = [p.time_us for p in batch]
        self.raw = [p.raw.decode() for p in batch]
        self.digest = [p.digest.hex() for p in batch]
        starts: dict[str, list[Any]] = {}
        ends: list[tuple[str, int, int, str, str | None, int]] = []
        for pos, p in enumerate(batch, 1):
            if p.run_row is None:
                continue
            if p.kind == "start":
                parent_id, tags, metadata = p.run_row
                starts.setdefault(p.run_id, [
                    enc(p.run_id), enc(p.trace_id), _enc_opt(parent_id), enc(p.name),
                    enc(p.run_type), tags.decode(),
                    metadata.decode(), _jsonb_safe(tags), _jsonb_safe(metadata), pos,
                    p.time_us, None, None, "running", None, 0,
                ])
            elif p.kind == "end":
                status, error, count = p.run_row
                err = error.decode() if error is not None else None
                row = starts.get(p.run_id)
                if row is not None and row[11] is None:
                    row[11:16] = [pos, p.time_us, status, err, count]
                else:
                    ends.append((enc(p.run_id), pos, p.time_us, status, err, count))
        cols = list(zip(*starts.values(), strict=True)) if starts else [()] * 16
        self.starts = [list(c) for c in cols]
        ecols = list(zip(*ends, strict=True)) if ends else [()] * 6
        self.ends = [list(c) for c in ecols]

    def params(self, writer: WriterInfo, channel: str) -> dict[str, Any]:
        s, e = self.starts, self.ends
        return {
            "n": self.n, "trace": self.trace, "run": self.run, "kind": self.kind,
            "name": self.name, "rtype": self.rtype, "time": self.time, "raw": self.raw,
            "digest": self.digest,
            "s_run": s[0], "s_trace": s[1], "s_parent": s[2], "s_name": s[3],
            "s_rtype": s[4], "s_tags": s[5], "s_meta": s[6], "s_tags_j": s[7],
            "s_meta_j": s[8], "s_pos": s[9], "s_time": s[10], "s_end_pos": s[11],
            "s_end_time": s[12], "s_status": s[13], "s_error": s[14], "s_count": s[15],
            "e_run": e[0], "e_pos": e[1], "e_time": e[2], "e_status": e[3],
            "e_error": e[4], "e_count": e[5],
            "writer": writer.writer_id, "host": writer.host, "pid": writer.pid,
            "lease": writer.lease_us, "channel": channel,
        }


class PostgresBackend(Backend):
    """Events in a PostgreSQL database (see the module docstring).

    Args:
        url: a SQLAlchemy PostgreSQL URL; ``?schema=NAME`` puts the store in that schema
            (created when ``create`` is true).
        create: create the schema and tables when absent.
        durable: wait for the WAL flush on every commit (``synchronous_commit=on``);
            otherwise commits use ``synchronous_commit=off`` like SQLite's NORMAL mode
            (a server crash can lose the last few hundred milliseconds of
            acknowledged events, never corrupt the log or break seq order).
        insert: how events reach the table: ``"unnest"`` (one statement per batch),
            ``"copy"`` (counter, ``COPY``, projection: three round trips, cheaper per
            row) or ``"auto"`` (the default: ``copy`` from :data:`COPY_FROM` events
            on, where it wins; ``unnest`` below, where the round trips dominate).
        pool_size: pooled connections for readers (the writer has its own).
    """

    def __init__(self, url: str, *, create: bool = True, durable: bool = False,
                 insert: str = "auto", pool_size: int = 4) -> None:
        if insert not in ("auto", "unnest", "copy"):
            raise ValueError(f"insert must be 'auto', 'unnest' or 'copy', not {insert!r}")
        self.url = url
        connect_url, self.schema = parse_url(url)
        self.location = make_url(connect_url).render_as_string(hide_password=True) + (
            f" (schema {self.schema})" if self.schema else "")
        self.durable = durable
        self.insert = insert
        u = make_url(connect_url)
        connect_args: dict[str, Any] = {}
        if "application_name" not in u.query:  # the user's own name wins (monitoring)
            connect_args["application_name"] = "runlog"
        if "connect_timeout" not in u.query:  # an unreachable host fails, not hangs
            connect_args["connect_timeout"] = 10
        given = u.query.get("options")  # the user's own options: keep them, add ours
        options = [given] if isinstance(given, str) else []
        if given is not None:
            connect_url = u.difference_update_query(["options"]).render_as_string(
                hide_password=False)
        if not durable:
            options.append("-c synchronous_commit=off")
        if self.schema:
            options.append(search_path_option(self.schema))
        if options:
            connect_args["options"] = " ".join(options)
        self.engine: Engine = create_engine(
            connect_url, connect_args=connect_args, pool_size=pool_size, max_overflow=16,
            pool_pre_ping=False,
        )
        event.listen(self.engine, "connect", _on_connect)
        self._connect_kwargs = connect_args
        self._connect_url = connect_url
        self._wlock = threading.Lock()
        self._wfairy: Any = None
        self._in_doubt: str | None = None  # a batch whose commit a dropped connection hid
        self._closed = False
        try:
            self.channel = self._init_store(create)
        except psycopg.OperationalError as e:
            self.engine.dispose()
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.location}: {e}".strip()
                + " -- is the server running and the URL right?") from e
        except BaseException:
            self.engine.dispose()
            raise

    # -- connections -----------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit mode (explicit transactions only)."""
        if self._closed:
            raise StoreError(f"the store {self.location} is closed")
        fairy = self.engine.raw_connection()
        try:
            conn: psycopg.Connection[Any] = fairy.driver_connection  # type: ignore[assignment]
            yield conn
        except psycopg.OperationalError as e:
            if _connection_lost(e):
                # Its pooled siblings are most likely dead too (a restart, a purge of
                # idle backends): retire every connection made before now, as
                # SQLAlchemy does on a disconnect. Checked-out ones (the writer's)
                # are left alone until they come back.
                self.engine.pool._invalidate(fairy, e)
            else:
                fairy.invalidate()
            raise
        finally:
            fairy.close()

    def _fetch(self, query: str, params: Any = None) -> list[Any]:
        """All rows of one read-only statement, retried once on a fresh connection.

        A pooled connection can be dead without anyone knowing (the server restarted,
        ``pg_terminate_backend``, a proxy's idle timeout): its next statement fails.
        A read is safe to repeat, so the pool is retired (:meth:`_conn`) and the
        statement runs once more on a new connection;
        if that fails too, the server is unreachable, said as
        :class:`~runlog.errors.StoreUnavailableError` rather than a driver traceback.
        """
        for attempt in (1, 2):
            try:
                with self._conn() as conn:
                    return conn.execute(query, params).fetchall()
            except psycopg.OperationalError as e:
                if not _connection_lost(e):
                    raise
                if attempt == 2:
                    raise StoreUnavailableError(
                        f"lost the connection to PostgreSQL at {self.location} and could "
                        f"not reconnect: {str(e).strip()} -- is the server running? "
                        "Committed events are safe; retry the command") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _writer_conn(self) -> psycopg.Connection[Any]:
        if self._wfairy is None:
            if self._closed:
                raise StoreError(f"the store {self.location} is closed")
            self._wfairy = self.engine.raw_connection()
        conn: psycopg.Connection[Any] = self._wfairy.driver_connection
        return conn

    def _drop_writer_conn(self) -> None:
        if self._wfairy is not None:
            try:
                self._wfairy.invalidate()
            finally:
                self._wfairy = None

    def _init_store(self, create: bool) -> str:
        with self._conn() as conn:
            if self.schema:
                exists = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                ).fetchone()
                if not exists:
                    if not create:
                        raise StoreNotFoundError(
                            f"no runlog store at {self.location}: schema {self.schema} "
                            "does not exist; record a run first or check the URL")
                    try:
                        conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            pgsql.Identifier(self.schema)))
                    except psycopg.errors.UniqueViolation:
                        pass  # another process created it at the same moment
            row = conn.execute("SELECT current_schema()").fetchone()
            current = row[0] if row else None
            if current is None:
                raise StoreError(
                    f"{self.location}: no schema to create tables in (search_path is "
                    "empty or names no existing schema); add ?schema=NAME to the URL")
            with conn.transaction():
                # Serialise concurrent first opens (several processes starting at once).
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || "
                             "':runlog-ddl'))")
                self._check_or_create(conn, create, current)
            return notify_channel(current)

    def _add_one_start_index(self, conn: psycopg.Connection[Any]) -> None:
        """Give a store made before the index existed its one-start-per-run-id index.

        Best effort in a savepoint (see the SQLite twin): duplicates an older runlog
        wrote, or a role without CREATE, never make the open fail.
        """
        if conn.execute("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() "
                        "AND indexname = %s", (schema.ONE_START_INDEX,)).fetchone():
            return
        try:
            with conn.transaction():
                conn.execute(schema.ONE_START_DDL)
        except psycopg.errors.UniqueViolation as e:
            log.warning("runlog: %s holds several runs with the same id (%s); the store "
                        "cannot refuse new ones by itself until they are gone",
                        self.location, e)
        except psycopg.Error as e:
            log.debug("runlog: could not add %s to %s: %s", schema.ONE_START_INDEX,
                      self.location, e)

    def _tables(self, conn: psycopg.Connection[Any]) -> set[str]:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()").fetchall()
        return {r[0] for r in rows}

    def _check_or_create(self, conn: psycopg.Connection[Any], create: bool,
                         current: str) -> None:
        from runlog.store.migrations import create_schema_sql

        names = self._tables(conn)
        if "meta" in names and "events" in names:
            row = conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.location} uses runlog schema {version}, newer than this "
                    f"runlog understands ({SCHEMA_VERSION}); upgrade runlog-engine")
            if version < SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.location} uses runlog schema {version}, older than this "
                    f"runlog ({SCHEMA_VERSION}); run `runlog migrate --db URL` first")
            self._add_one_start_index(conn)
            return
        clash = names & {"events", "runs", "writers", "meta", "seq_counter"}
        if clash:
            raise NotARunlogStoreError(
                f"schema {current} at {self.location} has tables "
                f"{', '.join(sorted(clash))} that are not a runlog store; give runlog its "
                "own schema with ?schema=NAME in the URL")
        if not create:
            raise StoreNotFoundError(
                f"no runlog store at {self.location} (schema {current} has no runlog "
                "tables); record a run first or check the URL")
        for stmt in create_schema_sql("postgresql"):
            conn.execute(stmt)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', %s), ('created_at', %s) "
            "ON CONFLICT (key) DO NOTHING", (str(SCHEMA_VERSION), str(now_micros())))

    # -- writing ---------------------------------------------------------------
    def append(self, batch: Sequence[Pending], writer: WriterInfo,
               heartbeat_us: int | None) -> int:
        """Commit ``batch`` in one statement (``heartbeat_us`` is ignored: server clock)."""
        if not batch:
            return self.last_seq()
        b = _Batch(batch)
        with self._wlock:
            try:
                conn = self._writer_conn()
                if self._in_doubt is not None:
                    found = self._committed_already(conn, b)
                    if found is not None:
                        return found
                try:
                    return self._append_on(conn, batch, b, writer)
                except psycopg.OperationalError:
                    # The connection died (server restart, a proxy's idle timeout) with
                    # the statement sent: it committed whole or not at all. Reconnect,
                    # look for the batch's first event by its chain digest, and send
                    # it again only if it is not there: never twice.
                    self._drop_writer_conn()
                    self._in_doubt = b.digest[0]
                    conn = self._writer_conn()
                    found = self._committed_already(conn, b)
                    if found is not None:
                        return found
                    return self._append_on(conn, batch, b, writer)
            except psycopg.errors.UniqueViolation as e:
                raise AppendOnlyError(f"could not append to {self.location}: {e}") from e
            except psycopg.OperationalError:
                # Still in doubt: the writer retries this batch, and the check above
                # runs first then.
                self._drop_writer_conn()
                self._in_doubt = b.digest[0]
                raise

    def _committed_already(self, conn: psycopg.Connection[Any], b: _Batch) -> int | None:
        """The last seq of ``b`` if an earlier, failed attempt did commit it."""
        row = conn.execute("SELECT seq FROM events WHERE run_id = %s AND digest = %s",
                           (b.run[0], b.digest[0])).fetchone()
        self._in_doubt = None
        return None if row is None else int(row[0]) + b.n - 1

    def _append_on(self, conn: psycopg.Connection[Any], batch: Sequence[Pending], b: _Batch,
                   writer: WriterInfo) -> int:
        if self.insert == "copy" or (self.insert == "auto" and b.n >= COPY_FROM):
            return self._append_copy(conn, batch, b, writer)
        row = conn.execute(_APPEND, b.params(writer, self.channel)).fetchone()
        if row is None:
            raise StoreError(f"{self.location}: the seq_counter row is missing; run "
                             "`runlog migrate --db URL` to repair the schema")
        return int(row[0])

    def _append_copy(self, conn: psycopg.Connection[Any], batch: Sequence[Pending],
                     b: _Batch, writer: WriterInfo) -> int:
        """The COPY variant: counter, COPY, then projection + heartbeat + notify."""
        params = b.params(writer, self.channel)
        with conn.transaction():
            row = conn.execute("UPDATE seq_counter SET last = last + %s WHERE id = 1 "
                               "RETURNING last", (b.n,)).fetchone()
            if row is None:
                raise StoreError(f"{self.location}: the seq_counter row is missing")
            last = int(row[0])
            base = last - b.n
            with conn.cursor().copy(_COPY_EVENTS) as cp:
                for i in range(b.n):
                    cp.write_row((base + i + 1, b.trace[i], b.run[i], b.kind[i], b.name[i],
                                  b.rtype[i], b.time[i], b.raw[i], b.digest[i]))
            conn.execute(_APPEND_AFTER_COPY, {**params, "base": base})
        return last

    def heartbeat(self, writer: WriterInfo, now_us: int, *, closing: bool = False) -> None:
        """Refresh the lease on the server's clock (``now_us`` is ignored)."""
        with self._wlock:
            conn = self._writer_conn()
            try:
                conn.execute(_HEARTBEAT, (writer.writer_id, writer.host, writer.pid,
                                          writer.lease_us, 1 if closing else 0))
            except psycopg.OperationalError:
                self._drop_writer_conn()
                raise

    # -- reading ---------------------------------------------------------------
    def read(self, q: EventQuery) -> tuple[list[Event], int]:
        if q.run_ids is not None and not q.run_ids:
            return [], max(q.after, self.last_seq())
        query, params = read_sql(q)
        rows = self._fetch(query, params)
        high = int(rows[0][0]) if rows else 0
        if rows and rows[0][1] is None:  # no event matched: only the high-water row
            rows = []
        if q.digests:
            events = [Event(r[1], r[2].encode(), bytes.fromhex(r[3])) for r in rows]
        else:
            events = [Event(r[1], r[2].encode()) for r in rows]
        if len(rows) >= q.limit:
            high = rows[-1][1]
        if q.until is not None:
            high = min(high, q.until)
        return events, max(high, q.after)

    def check_columns(self, trace_id: str | None = None) -> tuple[int, str] | None:
        cols = ", ".join(CHECKED_COLUMNS)
        after = 0
        while True:
            rows = self._fetch(
                f"SELECT seq, {cols}, raw FROM events WHERE seq > %(after)s "
                "AND (%(trace)s::text IS NULL OR trace_id = %(trace)s::text) "
                "ORDER BY seq LIMIT 5000",
                {"after": after, "trace": None if trace_id is None else enc(trace_id)})
            for row in rows:  # TEXT columns hold names as enc() wrote them
                columns = [dec(v) if isinstance(v, str) else v for v in row[1:7]]
                problem = column_mismatch(row[0], columns, row[7])
                if problem is not None:
                    return row[0], problem
            if len(rows) < 5000:
                return None
            after = rows[-1][0]

    def last_seq(self) -> int:
        rows = self._fetch("SELECT coalesce(max(seq), 0) FROM events")
        return int(rows[0][0]) if rows else 0

    def _runs(self, where: str, params: dict[str, Any], tail: str = "") -> list[RunInfo]:
        query = f"{_SELECT_RUNS} {('WHERE ' + where) if where else ''} {tail}"
        rows = self._fetch(query, params)
        return [
            run_info_from_row(
                run_id=dec(r[0]), trace_id=dec(r[1]), parent_id=None if r[2] is None
                else dec(r[2]), name=dec(r[3]), run_type=dec(r[4]),
                tags=r[5], metadata=r[6], start_seq=r[7], start_time=r[8], end_seq=r[9],
                end_time=r[10], status=r[14], error=r[12],
                event_count=r[13] if r[15] is None else r[15],
            )
            for r in rows
        ]

    def get_run(self, run_id: str) -> RunInfo | None:
        found = self._runs("r.run_id = %(run_id)s", {"run_id": enc(run_id)})
        return found[0] if found else None

    def find_runs(self, q: RunQuery) -> list[RunInfo]:
        where: list[str] = []
        params: dict[str, Any] = {}
        if q.trace_id is not None:
            where.append("r.trace_id = %(trace_id)s")
            params["trace_id"] = enc(q.trace_id)
        if q.roots_only:
            where.append("r.parent_id IS NULL")
        if q.name is not None:
            where.append("r.name = %(name)s")
            params["name"] = enc(q.name)
        if q.status is not None:
            where.append(f"({_STATUS}) = %(status)s")
            params["status"] = q.status
        f = q.filter if q.filter is not None and not q.filter.is_empty else None
        if f is not None:
            fsql, fparams = run_filter_sql(f, "r")
            for i, value in enumerate(fparams):
                params[f"f{i}"] = value
            where.append(fsql.replace("%s", "%({})s").format(
                *(f"f{i}" for i in range(len(fparams)))))
        order = "DESC" if q.newest_first else "ASC"
        tail = f"ORDER BY r.start_seq {order}"
        if q.limit is not None and f is None:
            tail += f" LIMIT {int(q.limit)}"
        found = self._runs(" AND ".join(where), params, tail)
        if f is not None:
            found = [r for r in found if f.matches_run(r.name, r.run_type, r.tags, r.metadata)]
        return found[: q.limit] if q.limit is not None else found

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        rows = self._fetch(
            "SELECT run_id FROM runs WHERE run_id LIKE %s ORDER BY run_id COLLATE \"C\" "
            "LIMIT %s", (_like_escape(enc(prefix)) + "%", limit))
        return [dec(r[0]) for r in rows]

    def run_ids_with_suffix(self, suffix: str, limit: int = 2) -> list[str]:
        rows = self._fetch(
            "SELECT run_id FROM runs WHERE reverse(run_id) LIKE %s "
            "ORDER BY run_id COLLATE \"C\" LIMIT %s",
            (_like_escape(enc(suffix)[::-1]) + "%", limit))
        return [dec(r[0]) for r in rows]

    def trace_runs(self, trace_id: str) -> list[RunInfo]:
        return self._runs("r.trace_id = %(trace_id)s", {"trace_id": enc(trace_id)},
                          "ORDER BY r.start_seq")

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, (psycopg.errors.SerializationFailure,
                                  psycopg.errors.DeadlockDetected,
                                  psycopg.errors.LockNotAvailable))

    def is_rejection(self, error: BaseException) -> bool:
        return isinstance(error, (psycopg.errors.DataError, psycopg.errors.IntegrityError))

    def change_waiter(self) -> ChangeWaiter:
        """A LISTEN connection of its own, woken by every append's ``pg_notify``."""
        return PgNotifyWaiter(self)

    def listen_connection(self) -> psycopg.Connection[Any]:
        """A new autocommit connection (not pooled) with the store's connect options."""
        u = make_url(self._connect_url)
        kwargs: dict[str, Any] = {
            "host": u.host, "port": u.port, "user": u.username, "password": u.password,
            "dbname": u.database, **{k: v for k, v in u.query.items() if isinstance(v, str)},
            **self._connect_kwargs,
        }
        return psycopg.connect(autocommit=True,
                               **{k: v for k, v in kwargs.items() if v is not None})

    # -- lifecycle: runlog/store/prune.py and runlog/store/stats.py hold the code -------
    def prune_candidates(self, rule: PruneRule, *, after: str = "",
                         limit: int = 500) -> list[TraceCandidate]:
        from runlog.store import prune

        return prune.pg_candidates(self, rule, after, limit)

    def prune_traces(self, expect: Mapping[str, int | None], rule: PruneRule,
                     by: Pruner) -> PrunedBatch:
        from runlog.store import prune

        return prune.pg_prune(self, expect, rule, by)

    def prunes(self) -> list[PruneRecord]:
        from runlog.store import prune

        return prune.pg_prunes(self)

    def reclaim(self, *, vacuum: bool = False) -> int:
        from runlog.store import prune

        return prune.pg_reclaim(self)

    def stats(self, top: int = 10) -> StoreStats:
        from runlog.store import stats

        return stats.pg_stats(self, top)

    def close(self) -> None:
        if self._closed:
            return
        with self._wlock:
            self._closed = True
            if self._wfairy is not None:
                try:
                    self._wfairy.close()
                except Exception:
                    pass
                self._wfairy = None
        self.engine.dispose()


def read_sql(q: EventQuery) -> tuple[str, list[Any]]:
    """The statement of :meth:`PostgresBackend.read` (also what docs/postgres.md EXPLAINs):
    rows of ``(high_water, seq, raw[, digest])``, or one ``(high_water, NULL, ...)``."""
    where = ["seq > %s"]
    params: list[Any] = [q.after]
    if q.until is not None:
        where.append("seq <= %s")
        params.append(q.until)
    if q.trace_id is not None:
        where.append("trace_id = %s")
        params.append(enc(q.trace_id))
    if q.run_ids is not None:
        where.append("run_id = ANY(%s)")
        params.append(sorted(enc(r) for r in q.run_ids))
    if q.filter is not None and not q.filter.is_empty:
        fsql, fparams = filter_sql(q.filter)
        where.append(fsql)
        params.extend(fparams)
    cols = "seq, raw, digest" if q.digests else "seq, raw"
    # One statement, so one snapshot, gives the page and the high-water mark together
    # (the mark comes first; the LEFT JOIN keeps it when the page is empty).
    query = (
        "SELECT h.high, p.* FROM (SELECT coalesce(max(seq), 0) AS high FROM events) h "
        f"LEFT JOIN LATERAL (SELECT {cols} FROM events WHERE {' AND '.join(where)} "
        "ORDER BY seq LIMIT %s) p ON true"
    )
    params.append(q.limit)
    return query, params


def _connection_lost(error: psycopg.OperationalError) -> bool:
    """True when ``error`` means the connection is gone (not a query's own failure:
    a statement timeout or a lock wait is an OperationalError on a live connection)."""
    if isinstance(error, (psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown,
                          psycopg.errors.CannotConnectNow)):
        return True
    return error.sqlstate is None or error.sqlstate.startswith("08")


def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
    """Pooled connections run in autocommit: every transaction is explicit (or one
    statement), so an idle pooled connection never sits inside a transaction."""
    dbapi_conn.autocommit = True


def _in(column: str, values: Sequence[str], params: list[Any]) -> str:
    """``column`` equal to one of ``values``; a single value as ``=``, so the planner
    can walk a (column, seq) index in seq order."""
    values = sql_strings(values)
    if not values:
        return "false"
    if len(values) == 1:
        params.append(enc(values[0]))
        return f"{column} = %s"
    params.append([enc(v) for v in values])
    return f"{column} = ANY(%s)"


def _jsonb_strings(values: Sequence[str]) -> list[str]:
    """Tag values a JSONB array can hold. A tag with U+0000 is only ever in a run whose
    ``tags_j`` is NULL, which every tag clause leaves to the exact predicate."""
    return [v for v in sql_strings(values) if "\x00" not in v]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def run_filter_sql(f: Filter, runs_alias: str) -> tuple[str, list[Any]]:
    """The filter as a predicate on one ``runs`` row (a superset of the exact one)."""
    r = runs_alias
    params: list[Any] = []
    clauses: list[str] = []
    if f.has_includes:
        ors: list[str] = []
        if f.include_names is not None:
            ors.append(_in(f"{r}.name", f.include_names, params))
        if f.include_types is not None:
            ors.append(_in(f"{r}.run_type", f.include_types, params))
        if f.include_tags is not None:
            ors.append(f"({r}.tags_j ?| %s OR {r}.tags_j IS NULL)")
            params.append(_jsonb_strings(f.include_tags))
        if f.include_metadata is not None:
            keys = list(f.include_metadata)
            if keys:
                ors.append(f"({_metadata_include(f.include_metadata, r, params)} "
                           f"OR {r}.metadata_j IS NULL)")
        clauses.append("(" + (" OR ".join(ors) if ors else "false") + ")")
    if f.exclude_names:
        clauses.append(f"NOT ({_in(f'{r}.name', f.exclude_names, params)})")
    if f.exclude_types:
        clauses.append(f"NOT ({_in(f'{r}.run_type', f.exclude_types, params)})")
    if f.exclude_tags:
        clauses.append(f"({r}.tags_j IS NULL OR NOT ({r}.tags_j ?| %s))")
        params.append(_jsonb_strings(f.exclude_tags))
    return ("(" + " AND ".join(clauses) + ")" if clauses else "true"), params


def _metadata_include(wanted: Any, r: str, params: list[Any]) -> str:
    """Metadata pairs as JSONB tests: key exists, narrowed by value for plain strings.

    A plain ``str`` value is stored as a JSON string, so containment decides it; a value
    that decodes to an equal object from a tag (a ``str`` enum member) is stored as a
    JSON object, which ``@> {key: {}}`` keeps (every object contains ``{}``). Both are
    GIN-indexable. Other values (numbers compare across int/float/bool in Python, not
    in JSONB) are narrowed to "the key exists". Metadata whose keys are not plain is
    one ``$rl:dict`` tag object in JSONB, whose keys SQL cannot see: always kept.
    """
    ors: list[str] = [f"{r}.metadata_j ? %s"]
    params.append(DICT_TAG)
    for key, value in wanted.items():
        if "\x00" in key or not sql_strings([key]):
            continue  # no JSONB key holds it: only NULL or $rl:dict columns can match
        if value is not ANY and isinstance(value, str) and sql_strings([value]) \
                and "\x00" not in value:
            params.extend([codec.dumps_plain({key: value}).decode(),
                           codec.dumps_plain({key: {}}).decode()])
            ors.append(f"{r}.metadata_j @> %s::jsonb OR {r}.metadata_j @> %s::jsonb")
        else:
            params.append(key)
            ors.append(f"{r}.metadata_j ? %s")
    return "(" + " OR ".join(ors) + ")"


def filter_sql(f: Filter) -> tuple[str, list[Any]]:
    """The filter as a predicate on ``events`` rows, a superset of the exact one.

    Names and types test the event's own indexed columns; tags and metadata go through
    the run's row in the runs projection (GIN indexes on its JSONB columns).
    """
    params: list[Any] = []
    clauses: list[str] = []
    if f.has_includes:
        ors: list[str] = []
        if f.include_names is not None:
            ors.append(_in("name", f.include_names, params))
        if f.include_types is not None:
            ors.append(_in("run_type", f.include_types, params))
        if f.include_tags is not None:
            ors.append("run_id IN (SELECT r.run_id FROM runs r "
                       "WHERE r.tags_j ?| %s OR r.tags_j IS NULL)")
            params.append(_jsonb_strings(f.include_tags))
        if f.include_metadata:
            inner: list[Any] = []
            pred = _metadata_include(f.include_metadata, "r", inner)
            ors.append(f"run_id IN (SELECT r.run_id FROM runs r WHERE {pred} "
                       "OR r.metadata_j IS NULL)")
            params.extend(inner)
        clauses.append("(" + (" OR ".join(ors) if ors else "false") + ")")
    if f.exclude_names:
        clauses.append(f"NOT ({_in('name', f.exclude_names, params)})")
    if f.exclude_types:
        clauses.append(f"NOT ({_in('run_type', f.exclude_types, params)})")
    if f.exclude_tags:
        clauses.append("run_id NOT IN (SELECT r.run_id FROM runs r WHERE r.tags_j ?| %s)")
        params.append(_jsonb_strings(f.exclude_tags))
    return ("(" + " AND ".join(clauses) + ")" if clauses else "true"), params


class PgNotifyWaiter(ChangeWaiter):
    """LISTEN/NOTIFY wake-ups with a polling fallback.

    The LISTEN starts when the waiter is made, so a commit between a tailer's read and
    its next ``wait`` is still queued on the connection and wakes it at once. If the
    connection drops, ``wait`` returns immediately (events may have been committed
    while nobody listened), polls while the server is unreachable, and listens again
    once it is back: the tailer's cursor query, not the notification, is the truth.
    """

    def __init__(self, backend: PostgresBackend, poll_interval: float = 0.25) -> None:
        self.backend = backend
        self.poll_interval = poll_interval
        self.notifications = 0
        """How many wake-ups came from NOTIFY (for tests and diagnostics)."""
        self.reconnects = 0
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._listen()

    def _listen(self) -> bool:
        try:
            conn = self.backend.listen_connection()
            conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.backend.channel)))
        except psycopg.OperationalError:
            return False
        self._conn = conn
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def wait(self, timeout: float) -> None:
        with self._lock:
            if self._closed:
                time.sleep(min(timeout, self.poll_interval))
                return
            if self._conn is None:
                if not self._reconnect():
                    time.sleep(min(timeout, self.poll_interval))
                return
            self._receive(max(timeout, 0.0))

    def _reconnect(self) -> bool:
        """Listen again; True when that worked (the caller then wakes its tailer)."""
        if self._listen():
            self.reconnects += 1
            return True
        return False

    def _receive(self, timeout: float) -> bool:
        """Take queued notifications, waiting up to ``timeout``; True if any came."""
        conn = self._conn
        if conn is None:
            return False
        try:
            got = False
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:
                self.notifications += 1
                # Drain what else is queued, so the next wait does not wake for commits
                # the tailer's next read already covers.
                for _ in conn.notifies(timeout=0, stop_after=10_000):
                    pass
            return got
        except psycopg.OperationalError:
            self._drop()
            return True  # the connection dropped: events may have been missed, re-read

    async def await_change(self, timeout: float) -> None:
        """Wait on the LISTEN socket itself (no thread), under asyncio or trio."""
        import anyio

        with anyio.move_on_after(timeout):
            while True:
                with self._lock:
                    if self._closed:
                        conn = None
                    elif self._conn is None:
                        if self._reconnect():
                            return
                        conn = None
                    else:
                        if self._receive(0):
                            return
                        conn = self._conn
                if conn is None:
                    await anyio.sleep(self.poll_interval)
                    return
                try:
                    await anyio.wait_readable(conn.fileno())
                except (OSError, ValueError):  # closed under us: treat as a drop
                    with self._lock:
                        self._drop()
                    return

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._drop()
