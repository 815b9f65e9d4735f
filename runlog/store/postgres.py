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
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
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
from runlog.store import layout, schema
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

__all__ = ["LAYOUTS", "NEW_STORE_LAYOUT", "PgNotifyWaiter", "PostgresBackend", "notify_channel",
           "parse_url", "pg_extras_ddl", "read_sql", "search_path_option", "trace_key"]

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


def pg_extras_ddl(compact: bool = False) -> list[str]:
    """PostgreSQL-only DDL on top of the shared tables (idempotent).

    The counter row that serialises seq assignment, the JSONB filter columns of the
    runs projection with their GIN indexes, the indexes filters and id lookups use,
    and the append-only triggers. The compact layout (``compact``) has no name, type
    or run id columns in ``events`` to index: its filters go through ``runs``.
    """
    wide_only = {"events_run_seq", "events_name_seq", "events_type_seq"}
    return [stmt for stmt in _extras_ddl()
            if not (compact and any(f" {name} " in stmt for name in wide_only))]


def _extras_ddl() -> list[str]:
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

# The compact layout (schema 2, docs/postgres.md): the same one statement per batch.
# Keys the batch creates are only known once the counter row gave its base, so the
# arrays hold them relative to it: a run key ``-pos`` is the run started at the
# batch's position ``pos`` (its key is its start's seq, ``base + pos``), and a code-6
# row whose template is in the same batch carries its template's position in ``tref``
# (0: the body already names its template's seq).
_C_INSERT_EVENTS = """, ev AS (
  INSERT INTO events (seq, run_key, trace_key, time, code, body, digest)
  SELECT s.base + u.ord, CASE WHEN u.rk < 0 THEN s.base - u.rk ELSE u.rk END, u.tk, u.time,
         u.code, CASE WHEN u.tref = 0 THEN u.body ELSE (s.base + u.tref)::text || u.body END,
         u.digest
  FROM s, unnest(%(rk)b::int8[], %(tk)b::int8[], %(time)b::int8[], %(code)b::int2[],
                 %(body)b::text[], %(tref)b::int8[], %(digest)b::bytea[])
       WITH ORDINALITY AS u(rk, tk, time, code, body, tref, digest, ord)
)"""
_C_PROJECT = """, st AS (
  INSERT INTO runs (run_key, run_id, trace_key, trace_id, parent_id, name, run_type, tags,
                    metadata, tags_j, metadata_j, header, start_seq, start_time, end_seq,
                    end_time, status, error, event_count, writer_id)
  SELECT s.base + u.pos, u.run_id, u.tk, u.trace_id, u.parent_id, u.name, u.run_type, u.tags,
         u.metadata, u.tags_j::jsonb, u.metadata_j::jsonb, u.header, s.base + u.pos, u.time,
         s.base + u.end_pos, u.end_time, u.status, u.error, u.count, %(writer)s
  FROM s, unnest(%(s_run)b::text[], %(s_tk)b::int8[], %(s_trace)b::text[],
                 %(s_parent)b::text[], %(s_name)b::text[], %(s_rtype)b::text[],
                 %(s_tags)b::text[], %(s_meta)b::text[], %(s_tags_j)b::text[],
                 %(s_meta_j)b::text[], %(s_header)b::text[], %(s_pos)b::int8[],
                 %(s_time)b::int8[], %(s_end_pos)b::int8[], %(s_end_time)b::int8[],
                 %(s_status)b::text[], %(s_error)b::text[], %(s_count)b::int8[])
       AS u(run_id, tk, trace_id, parent_id, name, run_type, tags, metadata, tags_j,
            metadata_j, header, pos, time, end_pos, end_time, status, error, count)
), en AS (
  UPDATE runs r SET end_seq = s.base + u.pos, end_time = u.time, status = u.status,
         error = u.error, event_count = u.count
  FROM s, unnest(%(e_key)b::int8[], %(e_pos)b::int8[], %(e_time)b::int8[],
                 %(e_status)b::text[], %(e_error)b::text[], %(e_count)b::int8[])
       AS u(run_key, pos, time, status, error, count)
  WHERE r.run_key = u.run_key AND r.end_seq IS NULL
)""" + _PROJECT[_PROJECT.index(", hb AS ("):]
"""New runs have no ``ON CONFLICT``: a run id in use fails the batch (``UNIQUE``), which
the writer isolates, so the database itself keeps one start per run id."""
_C_APPEND = "WITH " + _TAKE_SEQS + _C_INSERT_EVENTS + _C_PROJECT
_C_APPEND_AFTER_COPY = "WITH " + _GIVEN_SEQS + _C_PROJECT
_C_COPY_EVENTS = "COPY events (seq, run_key, trace_key, time, code, body, digest) FROM STDIN"
_KEY_CACHE = 100_000
"""Runs whose keys, headers and templates one backend keeps in memory (compact layout)."""

LAYOUTS = ("compact", "wide")
NEW_STORE_LAYOUT = "compact"
"""The layout a new PostgreSQL store gets unless asked otherwise (``$RUNLOG_PG_LAYOUT``,
or the ``layout`` argument): ``compact`` (schema 2, docs/postgres.md) or ``wide``
(schema 1: what runlog before the compact layout reads)."""


def trace_key(trace_id: str) -> int:
    """The compact layout's integer key of a trace, a function of its id alone: every
    writer on every host computes the same key without a lookup or a race. Readers
    check the run's trace id, so two ids with one key never mix (docs/postgres.md).

    An id that is a UUID gives its first 8 bytes (signed, a ``bigint``): runlog's ids
    are UUIDv7, whose first 48 bits are the time, so new traces append at the right
    of the ``(trace_key, seq)`` index instead of splitting its pages at random places
    (measured: 54 -> 32 bytes per event for that index). Any other id gives 64 bits
    of its BLAKE2b."""
    if len(trace_id) == 36 and trace_id[8] == "-":
        try:
            return int.from_bytes(uuid.UUID(trace_id).bytes[:8], "big", signed=True)
        except ValueError:
            pass
    digest = hashlib.blake2b(trace_id.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def compact_ddl() -> list[str]:
    """The DDL of a new compact store: ``writers`` and ``meta`` as declared in
    :mod:`runlog.store.schema`, its compact ``runs`` and ``events``, and the extras."""
    from sqlalchemy.dialects import postgresql as pg_dialect
    from sqlalchemy.schema import CreateTable

    dialect = pg_dialect.dialect()  # type: ignore[no-untyped-call]
    return [*(str(CreateTable(t, if_not_exists=True).compile(dialect=dialect))
              for t in (schema.writers, schema.meta)),
            *schema.COMPACT_PG_DDL, *pg_extras_ddl(compact=True)]


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
_SELECT_RUNS_COMPACT = _SELECT_RUNS.replace(
    "WHERE e.trace_id = r.trace_id AND e.run_id = r.run_id",
    "WHERE e.trace_key = r.trace_key AND e.run_key = r.run_key")
_NO_RUN: tuple[bytes | None, int, str | None] = (None, 0, None)
"""What a row whose run key names no run joins with: its body as it is (verify says)."""


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
        self.doubt = self.digest[0] if self.digest else ""
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


class _CompactBatch:
    """A batch as the compact append statement unnests it (see ``_C_INSERT_EVENTS``).

    ``keys`` is the backend's run id -> (run key, trace key, header, start time) cache
    and ``templates`` its run id -> (template row seq, template) cache; both are only
    read here, and :meth:`committed` adds what the batch made once it is committed.
    """

    def __init__(self, batch: Sequence[Pending], keys: dict[str, tuple[int, int, bytes | None,
                 int]], templates: dict[str, tuple[int, bytes]], bare: bool = False) -> None:
        self.n = len(batch)
        self.new: dict[str, tuple[int, int, bytes | None, int]] = {}
        self.new_templates: dict[str, tuple[int, bytes]] = {}
        rk: list[int] = []
        tk: list[int] = []
        times: list[int] = []
        codes: list[int] = []
        bodies: list[str] = []
        trefs: list[int] = []
        digests: list[bytes] = []
        starts: dict[int, list[Any]] = {}
        ends: list[tuple[int, int, int, str, str | None, int]] = []
        split, split_known = layout.split, layout.split_known
        for pos, (run_id, trace_id, kind, name, run_type, time_us, raw, digest, run_row,
                  parts) in enumerate(batch, 1):
            tref = 0
            if kind == "start":
                parent_id, tags, metadata = run_row if run_row is not None else (
                    None, b"[]", b"{}")
                header: bytes | None = layout.run_header(
                    run_id, parent_id, trace_id, name, run_type, tags, metadata)
                code, body = split(kind, raw, time_us, header, bare)
                if code == layout.WHOLE:
                    header = None
                key, tkey, start_us = -pos, trace_key(trace_id), time_us
                self.new[run_id] = (key, tkey, header, time_us)
                starts[pos] = [
                    enc(run_id), tkey, enc(trace_id), _enc_opt(parent_id), enc(name),
                    enc(run_type), tags.decode(), metadata.decode(), _jsonb_safe(tags),
                    _jsonb_safe(metadata), header.decode() if header is not None else None,
                    pos, time_us, None, None, "running", None, 0]
            else:
                found = self.new.get(run_id) or keys.get(run_id)
                if found is None:
                    raise AppendOnlyError(f"run {run_id} has no start event in this store")
                key, tkey, header, start_us = found
                if parts is not None and parts[0] == layout.TEMPLATED:
                    # a token with a chunk, its token given by the recorder: code 6 if
                    # the run's current template joined with it is the envelope
                    current = self.new_templates.get(run_id) or templates.get(run_id)
                    if (header is not None and current is not None
                            and layout.fits_known(raw, time_us, header, current[1], parts[1])):
                        if current[0] > 0:
                            code, body = layout.TEMPLATED, b"%d%b" % (current[0], parts[1])
                        else:  # the template is in this batch: SQL prefixes its seq
                            code, body, tref = layout.TEMPLATED, parts[1], -current[0]
                    else:
                        code, body = split(kind, raw, time_us, header, bare)
                else:  # (bare: a store at schema 3 stores a string token as code 7)
                    code, body = split_known(kind, raw, time_us, header, parts, bare)
                if code == layout.STREAM:  # a token with a chunk: a template's?
                    current = self.new_templates.get(run_id) or templates.get(run_id)
                    token = (layout.fit_template(code, body, current[1])
                             if current is not None else None)
                    if current is not None and token is not None:
                        if current[0] > 0:
                            code, body = layout.TEMPLATED, b"%d%b" % (current[0], token)
                        else:  # the template is in this batch: SQL prefixes its seq
                            code, body, tref = layout.TEMPLATED, token, -current[0]
                    else:
                        template = layout.template_of(code, body)
                        if template is not None:
                            self.new_templates[run_id] = (-pos, template)
                if kind == "end" and run_row is not None:
                    status, error, count = run_row
                    err = error.decode() if error is not None else None
                    row = starts.get(-key)
                    if row is not None:
                        if row[13] is None:  # a second end in the batch: the first counts
                            row[13:18] = [pos, time_us, status, err, count]
                    else:
                        ends.append((key, pos, time_us, status, err, count))
            rk.append(key)
            tk.append(tkey)
            times.append(time_us - start_us)
            codes.append(code)
            bodies.append(body.decode())
            trefs.append(tref)
            digests.append(digest)
        self.events = (rk, tk, times, codes, bodies, trefs, digests)
        self.first = (tk[0], digests[0]) if digests else (0, b"")
        self.doubt = digests[0].hex() if digests else ""
        cols = list(zip(*starts.values(), strict=True)) if starts else [()] * 18
        self.starts = [list(c) for c in cols]
        ecols = list(zip(*ends, strict=True)) if ends else [()] * 6
        self.ends = [list(c) for c in ecols]

    def params(self, writer: WriterInfo, channel: str) -> dict[str, Any]:
        s, e = self.starts, self.ends
        rk, tk, times, codes, bodies, trefs, digests = self.events
        return {
            "n": self.n, "rk": rk, "tk": tk, "time": times, "code": codes, "body": bodies,
            "tref": trefs, "digest": digests,
            **{f"s_{name}": col for name, col in zip(
                ("run", "tk", "trace", "parent", "name", "rtype", "tags", "meta", "tags_j",
                 "meta_j", "header", "pos", "time", "end_pos", "end_time", "status",
                 "error", "count"), s, strict=True)},
            **{f"e_{name}": col for name, col in zip(
                ("key", "pos", "time", "status", "error", "count"), e, strict=True)},
            "writer": writer.writer_id, "host": writer.host, "pid": writer.pid,
            "lease": writer.lease_us, "channel": channel,
        }

    def copy_rows(self, base: int) -> Iterator[tuple[Any, ...]]:
        """The event rows with their keys resolved (the COPY variant knows the base)."""
        for i, (key, tkey, since, code, body, tref, digest) in enumerate(
                zip(*self.events, strict=True), 1):
            yield (base + i, base - key if key < 0 else key, tkey, since, code,
                   f"{base + tref}{body}" if tref else body, digest)

    def committed(self, last: int, keys: dict[str, tuple[int, int, bytes | None, int]],
                  templates: dict[str, tuple[int, bytes]]) -> None:
        """Add the batch's runs and templates, now with their seqs, to the caches."""
        base = last - self.n
        if len(keys) + len(self.new) > _KEY_CACHE:
            keys.clear()
        for run_id, (key, tkey, header, start_us) in self.new.items():
            keys[run_id] = (base - key, tkey, header, start_us)
        if len(templates) + len(self.new_templates) > _KEY_CACHE:
            templates.clear()
        for run_id, (seq, template) in self.new_templates.items():
            templates[run_id] = (base - seq if seq < 0 else seq, template)


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
        layout: the layout of a new store, ``"wide"`` or ``"compact"`` (default
            ``$RUNLOG_PG_LAYOUT``, else :data:`NEW_STORE_LAYOUT`); an existing store
            keeps its own.
    """

    def __init__(self, url: str, *, create: bool = True, durable: bool = False,
                 insert: str = "auto", pool_size: int = 4, layout: str | None = None) -> None:
        if insert not in ("auto", "unnest", "copy"):
            raise ValueError(f"insert must be 'auto', 'unnest' or 'copy', not {insert!r}")
        layout = layout or os.environ.get("RUNLOG_PG_LAYOUT") or NEW_STORE_LAYOUT
        if layout not in LAYOUTS:
            raise ValueError(f"a PostgreSQL layout is one of {', '.join(LAYOUTS)}, not "
                             f"{layout!r} (check $RUNLOG_PG_LAYOUT)")
        self._new_layout = layout
        self.compact = False
        """The store uses the compact layout (schema 2 or 3); set when opened."""
        self.bare = False
        """The store is at schema 3 (``layout.BARE_SCHEMA_VERSION``): its writer stores
        tokens that are JSON strings as code 7, without their quotes; set when opened."""
        self._keys: dict[str, tuple[int, int, bytes | None, int]] = {}
        """run id -> (run key, trace key, header, start time), for the writer (compact)."""
        self._templates: dict[str, tuple[int, bytes]] = {}
        """run id -> (seq, template) of the run's chunk template as this process wrote it."""
        self._headers: dict[int, tuple[bytes | None, int, str]] = {}
        """run key -> (header, start time, trace id), for reads (compact layout)."""
        self._read_templates: dict[int, bytes | None] = {}
        """template row seq -> its template, for reads (compact layout)."""
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
            facts = dict(conn.execute("SELECT key, value FROM meta "
                                      "WHERE key IN ('schema_version', 'layout')").fetchall())
            version = int(facts.get("schema_version", 0))
            self.compact = facts.get("layout") == schema.COMPACT_LAYOUT
            understood = layout.BARE_SCHEMA_VERSION if self.compact else SCHEMA_VERSION
            # a compact store at 2 opens, reads and is written as before (code-5 tokens)
            oldest = schema.COMPACT_SCHEMA_VERSION if self.compact else SCHEMA_VERSION
            self.bare = self.compact and version >= layout.BARE_SCHEMA_VERSION
            if version > understood:
                raise SchemaVersionError(
                    f"{self.location} uses runlog schema {version}, newer than this "
                    f"runlog understands ({understood}); upgrade runlog-engine")
            if version < oldest:
                raise SchemaVersionError(
                    f"{self.location} uses runlog schema {version}, older than this "
                    f"runlog ({understood}); run `runlog migrate --db URL` first")
            if not self.compact:
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
        compact = self._new_layout == "compact"
        for stmt in compact_ddl() if compact else create_schema_sql("postgresql"):
            conn.execute(stmt)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', %s), ('created_at', %s) "
            "ON CONFLICT (key) DO NOTHING",
            (str(layout.BARE_SCHEMA_VERSION if compact else SCHEMA_VERSION),
             str(now_micros())))
        if compact:
            conn.execute("INSERT INTO meta (key, value) VALUES ('layout', %s) "
                         "ON CONFLICT (key) DO NOTHING", (schema.COMPACT_LAYOUT,))
        self.compact = self.bare = compact

    # -- writing ---------------------------------------------------------------
    def append(self, batch: Sequence[Pending], writer: WriterInfo,
               heartbeat_us: int | None) -> int:
        """Commit ``batch`` in one statement (``heartbeat_us`` is ignored: server clock)."""
        if not batch:
            return self.last_seq()
        with self._wlock:
            try:
                conn = self._writer_conn()
                if self.compact:
                    return self._append_compact(conn, batch, writer)
                b = _Batch(batch)
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
                    self._in_doubt = b.doubt
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
                self._in_doubt = "?"
                raise

    def _committed_already(self, conn: psycopg.Connection[Any],
                           b: _Batch | _CompactBatch) -> int | None:
        """The last seq of ``b`` if an earlier, failed attempt did commit it."""
        if isinstance(b, _CompactBatch):
            row = conn.execute("SELECT seq FROM events WHERE trace_key = %s AND digest = %s",
                               b.first).fetchone()
        else:
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

    def _append_compact(self, conn: psycopg.Connection[Any], batch: Sequence[Pending],
                        writer: WriterInfo) -> int:
        """``append`` in the compact layout: the same statement shapes and the same
        never-twice retry after a dropped connection as the wide layout's."""
        try:
            b = self._compact_batch(conn, batch)
            last = self._committed_already(conn, b) if self._in_doubt is not None else None
            if last is None:
                last = self._append_compact_on(conn, b, writer)
        except psycopg.OperationalError:
            self._drop_writer_conn()
            self._in_doubt = "?"  # the statement may have been sent: look before resending
            conn = self._writer_conn()
            b = self._compact_batch(conn, batch)
            last = self._committed_already(conn, b)
            if last is None:
                last = self._append_compact_on(conn, b, writer)
        b.committed(last, self._keys, self._templates)
        return last

    def _compact_batch(self, conn: psycopg.Connection[Any],
                       batch: Sequence[Pending]) -> _CompactBatch:
        missing = {p.run_id for p in batch if p.kind != "start"} - self._keys.keys()
        if missing:
            self._load_keys(conn, missing)
        return _CompactBatch(batch, self._keys, self._templates, self.bare)

    def _append_compact_on(self, conn: psycopg.Connection[Any], b: _CompactBatch,
                           writer: WriterInfo) -> int:
        params = b.params(writer, self.channel)
        if self.insert == "copy" or (self.insert == "auto" and b.n >= COPY_FROM):
            with conn.transaction():
                row = conn.execute("UPDATE seq_counter SET last = last + %s WHERE id = 1 "
                                   "RETURNING last", (b.n,)).fetchone()
                if row is None:
                    raise StoreError(f"{self.location}: the seq_counter row is missing")
                last = int(row[0])
                with conn.cursor().copy(_C_COPY_EVENTS) as cp:
                    for event_row in b.copy_rows(last - b.n):
                        cp.write_row(event_row)
                conn.execute(_C_APPEND_AFTER_COPY, {**params, "base": last - b.n})
            return last
        row = conn.execute(_C_APPEND, params).fetchone()
        if row is None:
            raise StoreError(f"{self.location}: the seq_counter row is missing; run "
                             "`runlog migrate --db URL` to repair the schema")
        return int(row[0])

    def _load_keys(self, conn: psycopg.Connection[Any], run_ids: set[str]) -> None:
        """Fill the writer's key cache for ``run_ids`` from the runs table (those it has)."""
        if len(self._keys) + len(run_ids) > _KEY_CACHE:
            self._keys.clear()
        for run_id, key, tkey, header, start_us in conn.execute(
                "SELECT run_id, run_key, trace_key, header, start_time FROM runs "
                "WHERE run_id = ANY(%s)", (sorted(enc(r) for r in run_ids),)).fetchall():
            self._keys[dec(run_id)] = (key, tkey, None if header is None else header.encode(),
                                       start_us)

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
        if self.compact:
            return self._read_compact(q)
        query, params = read_sql(q)
        rows = self._fetch(query, params)
        high = int(rows[0][0]) if rows else 0
        if rows and rows[0][1] is None:  # no event matched: only the high-water row
            rows = []
        if q.digests:
            events = [Event(r[1], r[2].encode(), bytes.fromhex(r[3])) for r in rows]
        else:
            events = [Event(r[1], r[2].encode()) for r in rows]
        return events, q.cursor(high, len(rows), rows[-1][1] if rows else None)

    def _read_compact(self, q: EventQuery) -> tuple[list[Event], int]:
        """``read`` in the compact layout: one statement for the page and the high-water
        mark, each envelope joined back from its row, its run's header (cached per run
        key: a header never changes) and, for code 6, its template row."""
        query, params = read_sql(q, compact=True)
        rows = self._fetch(query, params)
        high = int(rows[0][0]) if rows else 0
        if rows and rows[0][1] is None:
            rows = []
        page = [(r[1], r[2], r[3], r[4], r[5].encode()) for r in rows]
        headers = self._run_headers({r[1] for r in page})
        if q.trace_id is not None:  # two trace ids with one key: keep the asked one's
            page = [r for r in page if headers.get(r[1], _NO_RUN)[2] in (q.trace_id, None)]
        raws = self._join_compact(page, headers)
        if q.digests:
            digests = {r[1]: bytes(r[6]) for r in rows}
            events = [Event(r[0], raw, digests[r[0]]) for r, raw in zip(page, raws, strict=True)]
        else:
            events = [Event(r[0], raw) for r, raw in zip(page, raws, strict=True)]
        return events, q.cursor(high, len(rows), rows[-1][1] if rows else None)

    def _run_headers(self, run_keys: set[int]) -> dict[int, tuple[bytes | None, int, str]]:
        """The header cache, holding every run of ``run_keys`` the store has."""
        headers = self._headers
        missing = run_keys - headers.keys()
        if missing:
            if len(headers) + len(missing) > _KEY_CACHE:
                headers.clear()
            headers.update(
                (key, (None if header is None else header.encode(), start, dec(trace)))
                for key, header, start, trace in self._fetch(
                    "SELECT run_key, header, start_time, trace_id FROM runs "
                    "WHERE run_key = ANY(%s)", (sorted(missing),)))
        return headers

    def _join_compact(self, rows: Sequence[tuple[int, int, int, int, bytes]],
                      headers: dict[int, tuple[bytes | None, int, str]]) -> list[bytes]:
        """The envelopes of ``(seq, run key, time since start, code, body)`` rows; the
        template rows code-6 rows name are read first (from the page or the table)."""
        join = layout.join
        cache = self._read_templates
        if any(r[3] == layout.TEMPLATED for r in rows):
            on_page = {r[0]: r for r in rows}
            wanted = {ref for r in rows if r[3] == layout.TEMPLATED
                      if (ref := layout.template_seq(r[4])) is not None} - cache.keys()
            if len(cache) + len(wanted) > _KEY_CACHE:
                cache.clear()
            found = [(seq, on_page[seq][3], on_page[seq][4]) for seq in wanted
                     if seq in on_page]
            fetch = sorted(seq for seq in wanted if seq not in on_page)
            if fetch:
                found += [(seq, code, body.encode()) for seq, code, body in self._fetch(
                    "SELECT seq, code, body FROM events WHERE seq = ANY(%s)", (fetch,))]
            for seq, code, body in found:
                cache[seq] = layout.template_of(code, body)
        out = []
        for _seq, key, since, code, body in rows:
            header, start, _trace = headers.get(key, _NO_RUN)
            template = None
            if code == layout.TEMPLATED:
                ref = layout.template_seq(body)
                template = cache.get(ref) if ref is not None else None
            out.append(join(code, body, start + since, header, template))
        return out

    def _check_compact_columns(self, trace_id: str | None) -> tuple[int, str] | None:
        """The compact layout's copies: each row's keys, time and code against the
        envelope it joins back to and its runs row (ids, name, type, start), and each
        run's keys (the run key is its start's seq, the trace key its id's hash), and no
        code-7 row in a store below schema 3 (the version as it is now: a migration may
        have raised it since this backend opened the store)."""
        bare = int(self._fetch("SELECT value FROM meta WHERE key = 'schema_version'")[0][0]
                   ) >= layout.BARE_SCHEMA_VERSION
        after = 0
        while True:
            rows = self._fetch(
                "SELECT e.seq, e.run_key, e.time, e.code, e.body, e.trace_key, r.trace_key, "
                "r.trace_id, r.run_id, r.name, r.run_type, r.start_seq FROM events e "
                "LEFT JOIN runs r ON r.run_key = e.run_key WHERE e.seq > %(after)s AND "
                "(%(tk)s::int8 IS NULL OR e.trace_key = %(tk)s::int8) ORDER BY e.seq "
                "LIMIT 5000", {"after": after,
                               "tk": None if trace_id is None else trace_key(trace_id)})
            page = [(r[0], r[1], r[2], r[3], r[4].encode()) for r in rows]
            headers = self._run_headers({r[1] for r in page})
            raws = self._join_compact(page, headers)
            for (seq, key, _since, code, _body, tkey, run_tkey, trace, run_id, name,
                 run_type, start_seq), raw in zip(rows, raws, strict=True):
                if run_id is None:
                    return seq, f"seq {seq}: the event's run key names no run"
                if tkey != run_tkey:
                    return seq, (f"seq {seq}: the events table's trace key ({tkey}) is not "
                                 f"its run's ({run_tkey})")
                if run_tkey != trace_key(dec(trace)):
                    return seq, f"seq {seq}: its run's trace key is not its trace id's"
                if key != start_seq:
                    return seq, f"seq {seq}: its run's key is not its start's seq"
                if code == layout.BARE_TOKEN and not bare:
                    return seq, (f"seq {seq}: a code-7 row (a token without its quotes) in "
                                 f"a store at schema {layout.BARE_SCHEMA_VERSION - 1}, "
                                 "which runlog before schema 3 misreads as a whole envelope")
                kind = layout.KIND_OF_CODE.get(code)
                if kind is None:  # a whole envelope: its kind is its own
                    try:
                        kind = orjson.loads(raw).get("kind")
                    except Exception:
                        pass
                columns = (dec(trace), dec(run_id), kind, dec(name), dec(run_type),
                           headers[key][1] + _since)
                if trace_id is not None and columns[0] != trace_id:
                    continue  # another trace with the same key
                problem = column_mismatch(seq, columns, raw)
                if problem is not None:
                    return seq, problem
            if len(rows) < 5000:
                return None
            after = rows[-1][0]

    def check_columns(self, trace_id: str | None = None) -> tuple[int, str] | None:
        if self.compact:
            return self._check_compact_columns(trace_id)
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
        select = _SELECT_RUNS_COMPACT if self.compact else _SELECT_RUNS
        query = f"{select} {('WHERE ' + where) if where else ''} {tail}"
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

    def live_writers(self) -> list[str]:
        """Writers holding a lease that has not expired (on the server's clock)."""
        return [r[0] for r in self._fetch(
            "SELECT writer_id FROM writers WHERE closed = 0 AND "
            f"heartbeat_at + lease_us >= {NOW_US}")]

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


def schema_bytes(backend: PostgresBackend) -> int:
    """Bytes on disk of the store's tables, their indexes and TOAST."""
    rows = backend._fetch(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r'")
    return int(rows[0][0]) if rows else 0


def compact_swap(src: PostgresBackend, copied_to: int) -> str:
    """The last step of an in-place ``runlog migrate --compact``: ``NAME`` becomes
    ``NAME_wide`` and ``NAME_compact`` becomes ``NAME``, in one transaction that holds
    the wide store's counter row (no append can commit meanwhile) and checks that no
    event was added since the copy (``copied_to``) and no writer holds a live lease.
    Returns the URL of the kept wide store."""
    name = src.schema
    assert name is not None
    kept = f"{name}_wide"
    with src._conn() as conn, conn.transaction():
        row = conn.execute("SELECT last FROM seq_counter WHERE id = 1 FOR UPDATE").fetchone()
        if row is not None and int(row[0]) != copied_to:
            raise StoreError(f"{src.location} was written during the conversion (seq "
                             f"{row[0]} after {copied_to}); nothing was renamed: run it again")
        live = conn.execute(f"SELECT writer_id FROM writers WHERE closed = 0 AND "
                            f"heartbeat_at + lease_us >= {NOW_US}").fetchall()
        if live:
            raise StoreError(f"{src.location} got a live writer ({live[0][0]}) during the "
                             "conversion; nothing was renamed: stop it and run it again")
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (kept,)).fetchone():
            raise StoreError(f"schema {kept} exists; drop or rename it, then run it again")
        conn.execute(pgsql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
            pgsql.Identifier(name), pgsql.Identifier(kept)))
        conn.execute(pgsql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
            pgsql.Identifier(f"{name}_compact"), pgsql.Identifier(name)))
    return src.url.replace(f"schema={name}", f"schema={kept}")


def read_sql(q: EventQuery, compact: bool = False) -> tuple[str, list[Any]]:
    """The statement of :meth:`PostgresBackend.read` (also what docs/postgres.md EXPLAINs):
    rows of ``(high_water, seq, raw[, digest])``, or one ``(high_water, NULL, ...)``;
    ``compact``: ``(high_water, seq, run_key, time, code, body[, digest])``."""
    if compact:
        return _compact_read_sql(q)
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


def _compact_read_sql(q: EventQuery) -> tuple[str, list[Any]]:
    """:func:`read_sql` in the compact layout: a trace by its key (index
    ``events_trace_seq``), run ids and filters through the runs table."""
    where = ["e.seq > %s"]
    params: list[Any] = [q.after]
    if q.until is not None:
        where.append("e.seq <= %s")
        params.append(q.until)
    if q.trace_id is not None:
        where.append("e.trace_key = %s")
        params.append(trace_key(q.trace_id))
    if q.run_ids is not None:
        where.append("e.run_key IN (SELECT r.run_key FROM runs r WHERE r.run_id = ANY(%s))")
        params.append(sorted(enc(r) for r in q.run_ids))
    if q.filter is not None and not q.filter.is_empty:
        fsql, fparams = run_filter_sql(q.filter, "r")
        where.append(f"e.run_key IN (SELECT r.run_key FROM runs r WHERE {fsql})")
        params.extend(fparams)
    cols = "e.seq, e.run_key, e.time, e.code, e.body" + (", e.digest" if q.digests else "")
    query = (
        "SELECT h.high, p.* FROM (SELECT coalesce(max(seq), 0) AS high FROM events) h "
        f"LEFT JOIN LATERAL (SELECT {cols} FROM events e WHERE {' AND '.join(where)} "
        "ORDER BY e.seq LIMIT %s) p ON true"
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
