"""The embedded default: one SQLite file beside the user's code.

Design (figures in ``../shared/perf-baselines.md``, reasoning in ``docs/storage.md``):

* WAL journal, ``synchronous=NORMAL`` (``FULL`` in durable mode), so readers never block
  the writer and a commit costs no fsync unless asked for;
* the hot path talks to the DB-API connection directly and binds the envelope as
  ``str`` (TEXT), which CPython's sqlite3 binds ~1.8x faster than ``bytes``; reads use
  ``text_factory=bytes`` so the stored UTF-8 comes back as the very bytes written;
* ``seq`` is the rowid, assigned explicitly as ``max(seq) + i`` inside a
  ``BEGIN IMMEDIATE`` transaction: SQLite has one writer at a time, so seq order is
  commit order and there are no gaps (a rolled-back batch takes no numbers);
* several processes may write one file: ``SQLITE_BUSY`` is retried by the writer
  thread (busy timeout plus backoff), never shown to the user;
* reads run in short transactions, one page at a time, so a paused iterator or a tailer
  left open for hours never pins the WAL (checkpoints can proceed between pages).
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, repeat, starmap
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from runlog.errors import (
    AppendOnlyError,
    CorruptStoreError,
    NotARunlogStoreError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
)
from runlog.events import Event, RunInfo, now_micros
from runlog.filters import DICT_TAG, Filter, sql_strings
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

__all__ = ["Busy", "SQLiteBackend"]

log = logging.getLogger("runlog")

BUSY_TIMEOUT_MS = 5000


class Busy(Exception):
    """Another process holds the write lock; the writer retries (internal)."""


# one event with its seq given: what the benchmarks' raw baselines execute
_INSERT_EVENT = (
    "INSERT INTO events (seq, trace_id, run_id, kind, name, run_type, time, raw, digest) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ROWS_PER_INSERT = 1000  # 8 columns x 1000 rows stays under SQLite's 32766 variables


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    """A multi-row INSERT for ``rows`` events (cached per row count).

    ``seq`` is left to SQLite: an ``INTEGER PRIMARY KEY`` given no value becomes one
    more than the largest in the table, so under the write lock the rows get the next
    seqs in order, gap-free (events are never deleted), and the last one is the
    statement's ``lastrowid``. That saves a ``SELECT max(seq)`` per commit, a statement
    and a GIL hand-over of the writer thread.
    """
    return ("INSERT INTO events (trace_id, run_id, kind, name, run_type, time, raw, digest) "
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows))


_RUN_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 0, ?)"
_KEY_CACHE = 100_000
"""Runs whose keys (and headers) one backend keeps in memory (compact layout)."""

_JOINED_RUNS = 64
"""The most runs a page query joins in SQL (:func:`_joined_sql`: one ``WHEN`` per run,
tried in turn for each row); a query over more is joined in Python."""

_RAW = operator.itemgetter(1)
_TEMPLATED = operator.itemgetter(2)
_JOINED_CODES = (layout.BARE_TOKEN, layout.TOKEN, layout.OUTPUT, layout.STREAM, layout.START,
                 layout.END)
"""The codes the SQL join handles, the most frequent first (a ``CASE`` tries them in
turn: code 7 in a store at schema 3, code 5 at 2); code 6 needs its template row and is
joined in Python."""


def _joined_sql(runs: Sequence[tuple[int, bytes | None, int]], *, templated_column: bool = True
                ) -> tuple[str, list[Any]]:
    """The SQL expression of a page's envelopes given its runs ``(run key, header, start
    time)``, and its parameters: :func:`runlog.store.layout.join` in SQL, i.e.
    ``head || (time + start) || fixed text || body || fixed text`` by the row's run
    key and code (``body`` alone for a whole envelope or a run without header; for
    code 6 the head and time, and its body in a second column, which
    :meth:`SQLiteBackend._fill_templated` puts into its template; NULL for anything
    else, which Python joins from the five columns). Each head and start is a
    bound parameter: the SQL text depends only on the number of runs (and which have
    no header), so SQLite's statement cache keeps it. Without ``templated_column`` the
    expression is the envelope alone and a code-6 row's is NULL (joined in Python): for
    pages expected to hold none, as the third column costs each row ~1k instructions."""
    whens: list[str] = []
    out: list[Any] = []
    headed: list[int] = []
    for key, header, start in runs:
        out.append(key)
        if header is None:  # the run's rows hold whole envelopes (layout.join)
            whens.append("WHEN ? THEN e.body")
            continue
        codes = []
        for code in _JOINED_CODES:
            head, before, after = cast(tuple[bytes, bytes, bytes], layout.joiner(code, header))
            parts = ["?", "(e.time + ?)"] + ["?"] * bool(before) + ["e.body"] + ["?"] * bool(after)
            codes.append(f"WHEN {code} THEN {' || '.join(parts)}")
            out.extend((head, start))
            out.extend(text for text in (before, after) if text)
        if templated_column:  # code 6: the head and time; the body in the next column
            codes.append(f"WHEN {layout.TEMPLATED} THEN ? || (e.time + ?)")
            out.extend((layout.head("stream", header), start))
        whens.append(f"WHEN ? THEN CASE e.code WHEN {layout.WHOLE} THEN e.body "
                     f"{' '.join(codes)} END")
        headed.append(key)
    templated = (f"CASE WHEN e.code = {layout.TEMPLATED} AND e.run_key IN "
                 f"({', '.join('?' * len(headed))}) THEN e.body END" if headed else "NULL")
    if not templated_column:
        return (f"CASE e.run_key {' '.join(whens)} END" if whens else "NULL"), out
    if not whens:
        return "NULL, NULL", []
    return f"CASE e.run_key {' '.join(whens)} END, {templated}", out + headed


@functools.lru_cache(maxsize=64)
def _insert_compact_sql(rows: int) -> str:
    """``_insert_sql`` for the compact layout's event rows."""
    return ("INSERT INTO events (run_key, trace_key, time, code, body, digest) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows))


@functools.lru_cache(maxsize=64)
def _insert_runs_compact_sql(rows: int) -> str:
    """New runs of the compact layout; a run id already there fails the batch (UNIQUE),
    which the writer isolates: one start per run id."""
    return (
        "INSERT INTO runs (run_key, run_id, trace_key, trace_id, parent_id, name, run_type, "
        "tags, metadata, header, start_seq, start_time, writer_id, status, event_count) "
        "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 0)"] * rows))


@functools.lru_cache(maxsize=64)
def _insert_runs_sql(rows: int) -> str:
    """A multi-row INSERT of ``rows`` new runs; one already there is left as it is."""
    return (
        "INSERT INTO runs (run_id, trace_id, parent_id, name, run_type, tags, metadata, "
        "start_seq, start_time, status, event_count, writer_id) VALUES "
        + ", ".join([_RUN_ROW] * rows) + " ON CONFLICT(run_id) DO NOTHING"
    )


_END_RUN = (
    "UPDATE runs SET end_seq = ?, end_time = ?, status = ?, error = ?, event_count = ? "
    "WHERE run_id = ? AND end_seq IS NULL"
)
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
"""SQLite runs ``UPDATE ... FROM`` (3.33+): a batch's ends in one statement."""


@functools.lru_cache(maxsize=64)
def _end_runs_sql(rows: int) -> str:
    """``_END_RUN`` for ``rows`` runs at once (their ids must differ)."""
    return (
        "UPDATE runs SET end_seq = v.column1, end_time = v.column2, status = v.column3, "
        "error = v.column4, event_count = v.column5 FROM (VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows)
        + ") AS v WHERE runs.run_id = v.column6 AND runs.end_seq IS NULL"
    )


_HEARTBEAT = (
    "INSERT INTO writers (writer_id, host, pid, started_at, heartbeat_at, lease_us, closed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(writer_id) DO UPDATE SET "
    "heartbeat_at = excluded.heartbeat_at, closed = excluded.closed"
)
_RUN_COLUMNS = (
    "r.run_id, r.trace_id, r.parent_id, r.name, r.run_type, r.tags, r.metadata, r.start_seq, "
    "r.start_time, r.end_seq, r.end_time, r.status, r.error, r.event_count"
)
# A run is abandoned when it is open and its writer is gone: lease expired, closed,
# or unknown (an imported run that never ended).
_STATUS = (
    "CASE WHEN r.status != 'running' THEN r.status "
    "WHEN w.writer_id IS NULL OR w.closed != 0 OR w.heartbeat_at + w.lease_us < :now "
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


def _ddl(compact: bool = False) -> list[str]:
    dialect = sqlite_dialect.dialect()
    out: list[str] = []
    for table in schema.metadata.sorted_tables:
        if compact and table.name in ("events", "runs"):
            continue
        out.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    if compact:
        out.extend(schema.COMPACT_SQLITE_DDL)
    out.extend(schema.APPEND_ONLY_TRIGGERS["sqlite"])
    return out


LAYOUTS = ("compact", "wide")
NEW_STORE_LAYOUT = "compact"
"""The layout a new store gets unless asked otherwise (``$RUNLOG_SQLITE_LAYOUT``, or the
``layout`` argument): ``compact`` (schema 2, ``docs/storage.md``) or ``wide`` (schema 1:
every event row holds its whole envelope and copies of its run's fields; what runlog
before the compact layout reads)."""


class SQLiteBackend(Backend):
    """Events in one SQLite file (see the module docstring)."""

    bulk_page_rows = 500
    """A page's rows, the export lines and the chunk they make are then ~200 KB each,
    so formatting reads them from the CPU cache and the allocator reuses their memory
    instead of mapping fresh pages for every page (5000-row pages took ~30k page faults
    and ~1.3x the CPU time per 1M events exported on the benchmark's VM)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 durable: bool = False, layout: str | None = None) -> None:
        layout = layout or os.environ.get("RUNLOG_SQLITE_LAYOUT") or NEW_STORE_LAYOUT
        if layout not in LAYOUTS:
            raise ValueError(f"a SQLite layout is one of {', '.join(LAYOUTS)}, not {layout!r} "
                             "(check $RUNLOG_SQLITE_LAYOUT)")
        self._new_layout = layout
        self.compact = False
        """The store uses the compact layout (schema 2 or 3); set when opened."""
        self.bare = False
        """The store is at schema 3 (``layout.BARE_SCHEMA_VERSION``): its writer stores
        tokens that are JSON strings as code 7, without their quotes; set when opened."""
        self._keys: dict[str, tuple[int, int, bytes | None, int]] = {}
        """run id -> (run key, trace key, header, start time) of runs this process wrote
        or looked up (compact layout; a run's keys, header and start never change)."""
        self._headers: dict[int, tuple[bytes | None, int]] = {}
        """run key -> (header, start time), for reads (compact layout)."""
        self._joiners: dict[tuple[Any, Any], tuple[bytes, int, bytes, bytes] | None] = {}
        """(run key, code) -> ``(head, start time, before, after)`` from
        ``layout.joiner``, for reads (None: join that row with ``layout.join``)."""
        self._stream_heads: dict[bytes, bytes] = {}
        """run header -> ``layout.head("stream", header)``, for the writer (keyed by the
        header, not the run key: a rolled-back batch's new keys are handed out again)."""
        self._trace_keys: dict[str, int] = {}
        self._templates: dict[int, tuple[int, bytes]] = {}
        """run key -> (seq, template) of the run's current chunk template, as written by
        this process (compact layout, code 6 in :mod:`runlog.store.layout`)."""
        self._read_templates: dict[int, bytes | None] = {}
        """template row seq -> its template, for reads."""
        self._untemplated: set[Any] = set()
        """Run keys whose last page read held no code-6 row: their next page is read
        without the code-6 body column (:meth:`_select_joined`)."""
        self.path = Path(path)
        self.location = str(self.path)
        self.url = f"sqlite:///{self.path}"
        self.durable = durable
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._wlock = threading.Lock()
        self._closed = False
        self._ro_uri: str | None = None
        self.read_only = False
        """Opened read-only (see :meth:`_open_read_only`): every write fails."""
        if not self.path.exists():
            if not create:
                raise StoreNotFoundError(
                    f"no runlog store at {self.path}; record a run first (e.g. `runlog demo`) "
                    "or pass --db with the right path"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open(create)
        except (sqlite3.DatabaseError, StoreError) as e:
            if not (_is_read_only_error(e) and self.path.exists()):
                raise
            self._open_read_only()

    def _open(self, create: bool) -> None:
        self._wconn = self._connect()
        try:
            self._wconn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            self._check_or_create(create)
        except sqlite3.DatabaseError as e:
            self.close()
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise StoreError(f"{self.path} stayed locked while opening: {e}") from e
            raise self._corrupt(e) from e
        except BaseException:
            self.close()
            raise

    def _open_read_only(self) -> None:
        """Open a store this process may not write (a read-only file or directory).

        A WAL database's readers write its ``-shm`` file, so a plain open fails there.
        ``mode=ro`` works when the ``-shm`` and ``-wal`` files exist (or can be made);
        otherwise, with no ``-wal`` file holding commits, ``immutable=1`` reads the file
        alone (safe: nobody can write into a directory nobody may create files in,
        and a WAL with commits is never ignored).
        """
        from urllib.parse import quote

        base = "file:" + quote(str(self.path.resolve()))
        wal = Path(f"{self.path}-wal")
        uris = [base + "?mode=ro"]
        if not wal.exists() or wal.stat().st_size == 0:
            uris.append(base + "?immutable=1")
        error: BaseException | None = None
        for uri in uris:
            self._closed = False
            self._ro_uri = uri
            self.read_only = True
            try:
                self._open(False)
                return
            except (sqlite3.DatabaseError, StoreError) as e:
                error = e
        assert error is not None
        raise error

    # -- connections -----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            if self._ro_uri is not None:
                conn = sqlite3.connect(self._ro_uri, uri=True, isolation_level=None,
                                       check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
            else:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from e
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _corrupt(self, e: BaseException) -> StoreError:
        if "malformed" in str(e):
            return CorruptStoreError(
                f"{self.path} is damaged ({e}): {self._integrity_findings()}. Restore it "
                "from a backup or a `runlog export` file; stop recording into it")
        return CorruptStoreError(
            f"{self.path} is not a runlog store: it is not a SQLite database, or it is "
            f"damaged ({e}). Check the --db path; restore a damaged store from a backup "
            "or a `runlog export` file."
        )

    def _integrity_findings(self) -> str:
        """SQLite's own account of the damage (``PRAGMA quick_check``), on one line.

        It names the table or index and the page, which the read's error does not.
        """
        try:
            conn = sqlite3.connect(self._ro_uri or f"file:{self.path}?mode=ro", uri=True)
            try:
                # a row may hold several lines ("*** in database main ***\nPage 6: ...")
                lines = [" ".join(str(r[0]).split())
                         for r in conn.execute("PRAGMA quick_check(5)")]
            finally:
                conn.close()
        except sqlite3.Error as err:
            return f"its integrity check could not run ({err})"
        return "integrity check: " + "; ".join(lines)

    def _check_or_create(self, create: bool) -> None:
        conn = self._wconn
        try:
            names = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from e
        if "meta" in names:
            self._check_version()
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal" and not self.read_only:
                self._set_wal()
            if not self.compact:
                self._add_one_start_index()
            return
        if names - {"sqlite_sequence"}:
            raise NotARunlogStoreError(
                f"{self.path} is a SQLite database but not a runlog store (it has tables "
                f"{', '.join(sorted(names))}); pick another file for runlog"
            )
        if not create:
            raise StoreNotFoundError(f"{self.path} is empty: no runlog store there")
        # before the first table: space a prune frees can be given back in short steps
        # (PRAGMA incremental_vacuum, runlog/store/prune.py) instead of one long VACUUM
        self._wconn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self._set_wal()
        compact = self._new_layout == "compact"
        with self._write_txn() as c:
            for stmt in _ddl(compact):
                c.execute(stmt)
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?), "
                "('created_at', ?) ON CONFLICT(key) DO NOTHING",
                (str(layout.BARE_SCHEMA_VERSION if compact else SCHEMA_VERSION),
                 str(now_micros())),
            )
            if compact:
                c.execute("INSERT INTO meta (key, value) VALUES ('layout', ?) "
                          "ON CONFLICT(key) DO NOTHING", (schema.COMPACT_LAYOUT,))
        self.compact = self.bare = compact

    def _add_one_start_index(self) -> None:
        """Give a store made before the index existed its one-start-per-run-id index.

        Best effort, never a reason to refuse the open: a read-only file keeps working
        for reading, and a store that already holds duplicate run ids (written by an
        older runlog) stays readable; the recorder still refuses new duplicates, and
        ``runlog verify`` reports the old ones.
        """
        conn = self._wconn
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                            (schema.ONE_START_INDEX,)).fetchone() is not None:
                return
            conn.execute(schema.ONE_START_DDL)
        except sqlite3.IntegrityError as e:
            log.warning("runlog: %s holds several runs with the same id (%s); the store "
                        "cannot refuse new ones by itself until they are gone", self.path, e)
        except sqlite3.Error as e:  # read-only, locked: try again on the next open
            log.debug("runlog: could not add %s to %s: %s", schema.ONE_START_INDEX,
                      self.path, e)

    def _set_wal(self) -> None:
        for _ in range(100):
            try:
                self._wconn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(0.05)

    def _check_version(self) -> None:
        rows = dict(self._wconn.execute(
            "SELECT key, value FROM meta WHERE key IN ('schema_version', 'layout')"))
        version = int(rows.get("schema_version", 0))
        self.compact = rows.get("layout") == schema.COMPACT_LAYOUT
        # a compact store at 2 opens, reads and is written as before (code 5 tokens)
        understood = layout.BARE_SCHEMA_VERSION if self.compact else SCHEMA_VERSION
        self.bare = self.compact and version >= layout.BARE_SCHEMA_VERSION
        if version > understood:
            raise SchemaVersionError(
                f"{self.path} uses runlog schema {version}, newer than this runlog "
                f"understands ({understood}); upgrade runlog-engine"
            )

    @contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        c = self._wconn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise Busy(str(e)) from e
            raise
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        try:
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    # -- writing ---------------------------------------------------------------
    def append(self, batch: Sequence[Pending], writer: WriterInfo,
               heartbeat_us: int | None) -> int:
        if not batch:
            return self.last_seq()
        if self.compact:
            return self._append_compact(batch, writer, heartbeat_us)
        with self._wlock, self._write_txn() as c:
            # the rows' parameters, flat, one list per multi-row INSERT; records are
            # unpacked rather than read by attribute: this loop holds the GIL
            params: list[list[Any]] = []
            starts: list[tuple[int, Any]] = []  # (position in the batch, ...) until the
            ends: list[tuple[int, Any]] = []    # seqs are known
            pos = 0
            for i in range(0, len(batch), _ROWS_PER_INSERT):
                flat: list[Any] = []
                add = flat.extend
                for (run_id, trace_id, kind, name, run_type, time_us, raw, digest,
                     run_row, _parts) in batch[i:i + _ROWS_PER_INSERT]:
                    add((trace_id, run_id, kind, name, run_type, time_us, raw.decode(),
                         digest.hex()))
                    if run_row is not None:
                        if kind == "start":
                            starts.append((pos, (run_id, trace_id, name, run_type, time_us,
                                                 run_row)))
                        elif kind == "end":
                            ends.append((pos, (run_id, time_us, run_row)))
                    pos += 1
                params.append(flat)
            try:
                # One multi-row INSERT per batch, not executemany: the statement runs in a
                # single sqlite3_step, so the writer thread releases the GIL once for the
                # whole batch instead of once per row, and a busy producer thread no
                # longer starves it (see docs/storage.md, "The write path").
                for flat in params:
                    last = c.execute(_insert_sql(len(flat) // 8), flat).lastrowid
            except sqlite3.IntegrityError as e:
                raise AppendOnlyError(f"could not append to {self.path}: {e}") from e
            if last is None:  # pragma: no cover - sqlite3 always reports it for INSERT
                raise StoreError(f"{self.path}: SQLite did not report the seqs it assigned")
            first = last - len(batch) + 1
            # The runs rows too in one statement each (not executemany, which hands the
            # GIL back and forth once per row): a batch with many starts and ends, as an
            # import of whole traces has, would otherwise wait for the GIL on each row.
            new_runs = [(run_id, trace_id, parent_id, name, run_type, tags.decode(),
                         metadata.decode(), first + p, time_us, writer.writer_id)
                        for p, (run_id, trace_id, name, run_type, time_us,
                                (parent_id, tags, metadata)) in starts]
            for start in range(0, len(new_runs), _ROWS_PER_INSERT):
                new = new_runs[start:start + _ROWS_PER_INSERT]
                c.execute(_insert_runs_sql(len(new)), list(chain.from_iterable(new)))
            self._end_runs(c, [(first + p, time_us, status,
                                error.decode() if error is not None else None, count, run_id)
                               for p, (run_id, time_us, (status, error, count)) in ends])
            if heartbeat_us is not None:
                c.execute(_HEARTBEAT, (writer.writer_id, writer.host, writer.pid,
                                       heartbeat_us, heartbeat_us, writer.lease_us, 0))
            return int(last)

    def _append_compact(self, batch: Sequence[Pending], writer: WriterInfo,
                        heartbeat_us: int | None) -> int:
        """``append`` for the compact layout: new runs first (their keys and headers),
        then one multi-row INSERT of the event rows (see :mod:`runlog.store.layout`)."""
        with self._wlock, self._write_txn() as c:
            known = self._keys
            new: dict[str, tuple[int, int, bytes | None, int]] = {}
            traces: dict[str, int] = {}
            run_rows: list[Any] = []
            ends: list[tuple[int, Any]] = []
            first = 0
            if any(p.kind == "start" for p in batch):
                first = c.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0] + 1
                key = c.execute("SELECT coalesce(max(run_key), 0) FROM runs").fetchone()[0]
            templates = self._templates
            new_templates: dict[int, tuple[int, bytes]] = {}
            missing = {p.run_id for p in batch if p.kind != "start"} - known.keys()
            if missing:
                self._load_keys(c, missing)
            flat: list[Any] = []
            params: list[list[Any]] = [flat]
            split = layout.split
            stream_fixed = layout.STREAM_FIXED
            stream_heads = self._stream_heads
            generic_stream = layout.STREAM
            templated, hole = layout.TEMPLATED, layout.HOLE
            # schema 3: a token given as code 5 is stored as code 7, without its quotes
            token_code = layout.TOKEN if self.bare else -1
            bare_code, bare = layout.BARE_TOKEN, self.bare
            # bytes.join sizes the ~550-byte envelope once; a %-format grows its buffer
            # (1.2k instructions per event under callgrind)
            join = b"".join
            row_limit = 6 * _ROWS_PER_INSERT
            for pos, (run_id, trace_id, kind, name, run_type, time_us, raw, digest,
                      run_row, parts) in enumerate(batch):
                if kind == "start":
                    key += 1
                    parent_id, tags, metadata = cast(tuple[Any, Any, Any], run_row)
                    header: bytes | None = layout.run_header(
                        run_id, parent_id, trace_id, name, run_type, tags, metadata)
                    code, body = split(kind, raw, time_us, header, bare)
                    if code == layout.WHOLE:
                        header = None
                    trace_key = self._trace_key(c, trace_id, traces, key)
                    new[run_id] = (key, trace_key, header, time_us)
                    start_us = time_us
                    run_rows.extend((key, run_id, trace_key, trace_id, parent_id, name,
                                     run_type, tags.decode(), metadata.decode(),
                                     header.decode() if header is not None else None,
                                     first + pos, time_us, writer.writer_id))
                    run_key = key
                else:
                    found = (new.get(run_id) if new else None) or known.get(run_id)
                    if found is None:
                        raise AppendOnlyError(
                            f"could not append to {self.path}: run {run_id} has no start "
                            "event in this store")
                    run_key, trace_key, header, start_us = found
                    # The recorder's (code, body) of a stream event, checked in one
                    # comparison: joined with the run's cached stream head they must be
                    # exactly the envelope (else the envelope is split as usual). This
                    # loop holds the GIL for every event: one check, not a dozen calls.
                    # (no typing.cast here: it builds a tuple[...] alias per call)
                    if parts is not None and header is not None:
                        shead = stream_heads.get(header)
                        if shead is None:
                            shead = stream_heads[header] = layout.head("stream", header)
                        code, body = parts
                        if code == templated:
                            # a token event with a chunk, its token (a JSON string) given
                            # by the recorder: code 6 if the run's current template with
                            # that token in its holes is exactly the envelope, the join a
                            # reader makes (layout.fits_known, with the cached head; a
                            # comparison, not fit_template's search)
                            current = new_templates.get(run_key) or templates.get(run_key)
                            if (current is not None and body[:1] == b'"'
                                    and raw == join((
                                        shead, b"%d" % time_us,
                                        current[1].replace(hole, body)))):
                                body = b"%d%b" % (current[0], body)
                            else:
                                code, body = split(kind, raw, time_us, header, bare)
                        elif (fixed := stream_fixed.get(code)) is None or raw != join(
                                (shead, b"%d" % time_us, fixed[0], body, fixed[1])):
                            code, body = split(kind, raw, time_us, header, bare)
                        elif code == token_code:
                            # the recorder's token is a JSON string when its encoding
                            # begins and ends with a quote (a str's; a list's or a tagged
                            # value's does not): the same bytes without them (indexing,
                            # not slicing, to test: a slice object per test costs ~250
                            # instructions under callgrind, in the GIL)
                            if len(body) > 1 and body[0] == 34 == body[-1]:
                                code, body = bare_code, body[1:-1]
                        elif code == bare_code and not bare:  # never the recorder's
                            code, body = split(kind, raw, time_us, header, bare)
                    else:
                        code, body = split(kind, raw, time_us, header, bare)
                    if code == generic_stream:  # a token with a chunk: a template's?
                        current = new_templates.get(run_key) or templates.get(run_key)
                        token = (layout.fit_template(code, body, current[1])
                                 if current is not None else None)
                        if token is not None:
                            code, body = layout.TEMPLATED, b"%d%b" % (current[0], token)  # type: ignore[index]
                        else:
                            template = layout.template_of(code, body)
                            if template is not None:
                                if not first:
                                    first = c.execute("SELECT coalesce(max(seq), 0) "
                                                      "FROM events").fetchone()[0] + 1
                                new_templates[run_key] = (first + pos, template)
                    if kind == "end" and run_row is not None:
                        ends.append((pos, (run_id, time_us, run_row)))
                if len(flat) >= row_limit:
                    flat = []
                    params.append(flat)
                # the digest bound as a bytearray: the same BLOB, but sqlite3 binds
                # bytes only after trying to adapt them (two failed attribute lookups,
                # ~2k instructions per event under callgrind), a bytearray directly
                flat.extend((run_key, trace_key, time_us - start_us, code, body.decode(),
                             bytearray(digest)))
            try:
                for i in range(0, len(run_rows), 13 * _ROWS_PER_INSERT):
                    part = run_rows[i:i + 13 * _ROWS_PER_INSERT]
                    c.execute(_insert_runs_compact_sql(len(part) // 13), part)
                for flat in params:
                    last = c.execute(_insert_compact_sql(len(flat) // 6), flat).lastrowid
            except sqlite3.IntegrityError as e:
                raise AppendOnlyError(f"could not append to {self.path}: {e}") from e
            if last is None:  # pragma: no cover - sqlite3 always reports it for INSERT
                raise StoreError(f"{self.path}: SQLite did not report the seqs it assigned")
            if first and last != first + len(batch) - 1:  # pragma: no cover - locked
                raise StoreError(f"{self.path}: seqs moved while the batch was written")
            first = last - len(batch) + 1
            self._end_runs(c, [(first + p, time_us, status,
                                error.decode() if error is not None else None, count, run_id)
                               for p, (run_id, time_us, (status, error, count)) in ends])
            if heartbeat_us is not None:
                c.execute(_HEARTBEAT, (writer.writer_id, writer.host, writer.pid,
                                       heartbeat_us, heartbeat_us, writer.lease_us, 0))
        if len(known) + len(new) > _KEY_CACHE:
            known.clear()
            self._trace_keys.clear()
        known.update(new)
        self._trace_keys.update(traces)
        if len(stream_heads) > _KEY_CACHE:
            stream_heads.clear()
        if len(templates) + len(new_templates) > _KEY_CACHE:
            templates.clear()
        templates.update(new_templates)
        return int(last)

    def _end_runs(self, c: sqlite3.Connection, ended: list[tuple[Any, ...]]) -> None:
        if _UPDATE_FROM and len({e[5] for e in ended}) == len(ended):
            for start in range(0, len(ended), _ROWS_PER_INSERT):
                part = ended[start:start + _ROWS_PER_INSERT]
                c.execute(_end_runs_sql(len(part)), list(chain.from_iterable(part)))
        elif ended:  # a run ending twice in one batch: the first end counts, as in order
            c.executemany(_END_RUN, ended)

    def _load_keys(self, c: sqlite3.Connection, run_ids: set[str]) -> None:
        """Fill the key cache for ``run_ids`` from the runs table (those it has)."""
        ids = sorted(run_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            for run_id, key, trace_key, header, start_us in c.execute(
                    "SELECT run_id, run_key, trace_key, CAST(header AS BLOB), start_time "
                    f"FROM runs WHERE run_id IN ({','.join('?' * len(part))})", part):
                self._keys[run_id] = (key, trace_key, header, start_us)

    def _trace_key(self, c: sqlite3.Connection, trace_id: str, traces: dict[str, int],
                   own: int) -> int:
        """The trace key of a new run: that of the trace's first run in the store (its
        root's, unless a subtree was stored before its root), else the run's own key."""
        found = traces.get(trace_id) or self._trace_keys.get(trace_id)
        if found is None:
            row = c.execute("SELECT trace_key FROM runs WHERE trace_id = ? ORDER BY run_key "
                            "LIMIT 1", (trace_id,)).fetchone()
            found = row[0] if row is not None else own
        traces[trace_id] = found
        return found

    def heartbeat(self, writer: WriterInfo, now_us: int, *, closing: bool = False) -> None:
        with self._wlock, self._write_txn() as c:
            c.execute(_HEARTBEAT, (writer.writer_id, writer.host, writer.pid, now_us, now_us,
                                   writer.lease_us, 1 if closing else 0))

    # -- reading ---------------------------------------------------------------
    @contextmanager
    def _read_txn(self, *, raw_bytes: bool) -> Iterator[sqlite3.Connection]:
        conn = self._reader()
        conn.text_factory = bytes if raw_bytes else str
        try:
            conn.execute("BEGIN")
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from e
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def read(self, q: EventQuery) -> tuple[list[Event], int]:
        if self.compact:
            return self._select_compact(q, Event)
        rows, high = self._select(q)
        if q.digests:
            events = [Event(r[0], r[1], bytes.fromhex(r[2].decode())) for r in rows]
        else:
            events = [Event(r[0], r[1]) for r in rows]
        return events, high

    def read_rows(self, q: EventQuery) -> tuple[list[tuple[int, bytes, bytes]], int]:
        if self.compact:
            rows, high = self._select_compact(q)
            if q.digests:
                return [(seq, raw, digest.hex().encode()) for seq, raw, digest in rows], high
            return [(seq, raw, b"") for seq, raw, _ in rows], high
        rows, high = self._select(q)
        if q.digests:  # the digest column already holds the hex text
            return rows, high
        return [(r[0], r[1], b"") for r in rows], high

    def _select_compact(self, q: EventQuery, make: Callable[[int, bytes, Any], Any] | None = None
                        ) -> tuple[list[Any], int]:
        """``_select`` for the compact layout: ``(seq, envelope, digest bytes or None)``
        rows, each envelope joined back from its row and its run's header, or what
        ``make(seq, envelope, digest)`` returns for each (:class:`Event`: built in the
        same pass)."""
        where = ["e.seq > ?"]
        params: list[Any] = [q.after]
        if q.until is not None:
            where.append("e.seq <= ?")
            params.append(q.until)
        if q.trace_id is not None:
            stored = self.last_seq()  # before the lookup: a trace's first run and its
            trace_key = self._lookup_trace_key(q.trace_id)  # events commit together
            if trace_key is None:  # no run of that trace is stored up to ``stored``
                return [], max(q.after, stored if q.until is None else min(stored, q.until))
            where.append("e.trace_key = ?")
            params.append(trace_key)
        if q.run_ids is not None:
            if not q.run_ids:
                return [], max(q.after, self.last_seq())
            where.append("e.run_key IN (SELECT run_key FROM runs WHERE run_id IN "
                         f"({','.join('?' * len(q.run_ids))}))")
            params.extend(sorted(q.run_ids))
        source = "events e"
        if q.filter is not None and not q.filter.is_empty:
            sql, fparams = filter_sql(q.filter, compact=True)
            where.append(sql)
            params.extend(fparams)
            source = "events e JOIN runs r ON r.run_key = e.run_key"
        tail = f" FROM {source} WHERE {' AND '.join(where)} ORDER BY e.seq LIMIT ?"
        params.append(q.limit)
        conn = self._reader()
        conn.text_factory = bytes
        if q.trace_id is not None or q.run_ids is not None:
            joined = self._select_joined(conn, q, tail, params, make)
            if joined is not None:
                return joined
        cols = "e.seq, e.run_key, e.time, e.code, e.body" + (", e.digest" if q.digests else "")
        sql = f"SELECT {cols}{tail}"
        try:  # two statements and no transaction, as in _select
            high = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            rows = conn.execute(sql, params).fetchall()
            self._load_headers(conn, {r[1] for r in rows})
        except sqlite3.OperationalError:
            raise  # busy, locked, I/O: not a damaged file
        except sqlite3.DatabaseError as e:  # as _read_txn reports it
            raise self._corrupt(e) from e
        out = self._join_rows(rows, q.digests, make)
        if out is None:  # the page holds code-6 rows
            out = self._join_templated(rows, q.digests)
            if make is not None:
                out = [make(seq, raw, digest) for seq, raw, digest in out]
        return out, q.cursor(high, len(rows), rows[-1][0] if rows else None)

    def _select_joined(self, conn: sqlite3.Connection, q: EventQuery, tail: str,
                       params: list[Any], make: Callable[[int, bytes, Any], Any] | None
                       ) -> tuple[list[Any], int] | None:
        """A page of a trace's or a few runs' events with each envelope joined by SQLite,
        or None when the query's runs are too many for it (:meth:`_select_compact` then
        joins in Python).

        The runs' heads and start times are bound into the page query
        (:func:`_joined_sql`), so SQLite hands back ``(seq, envelope[, digest])`` as
        the raw ``SELECT seq, payload`` does, and Python does nothing per row but
        make its :class:`Event`: under callgrind this took a 10k-row replay from 18.5k
        to 15.4k instructions a row (each column fetched costs the ``sqlite3`` module
        ~1k instructions a row; the formatting and lookups were ~3k). A code-6
        row comes with its head and time joined and its body in a column of its own
        (:meth:`_fill_templated`); rows the SQL does not join (a run started after its
        runs were read, a damaged row) come back NULL and are joined in Python from
        their five columns."""
        try:  # three statements and no transaction, as in _select: the runs first
            if q.trace_id is not None:
                runs = conn.execute(
                    "SELECT run_key, CAST(header AS BLOB), start_time FROM runs "
                    "WHERE trace_id = ? ORDER BY start_seq LIMIT ?",
                    (q.trace_id, _JOINED_RUNS + 1)).fetchall()
            else:
                ids = sorted(q.run_ids or ())
                if len(ids) > _JOINED_RUNS:
                    return None
                runs = conn.execute(
                    "SELECT run_key, CAST(header AS BLOB), start_time FROM runs "
                    f"WHERE run_id IN ({','.join('?' * len(ids))})", ids).fetchall()
            if len(runs) > _JOINED_RUNS:
                return None
            # two columns when the runs' last pages held no code-6 row (a guess: a code-6
            # row then comes back NULL and is joined below, and the next page has three)
            untemplated = self._untemplated
            two = (make is not None and not q.digests
                   and all(r[0] in untemplated for r in runs))
            case, case_params = _joined_sql(runs, templated_column=not two)
            high = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            rows = conn.execute(f"SELECT e.seq, {case}{', e.digest' if q.digests else ''}"
                                f"{tail}", case_params + params).fetchall()
            # (seq, envelope, code-6 body[, digest]): the body NULL but in code-6 rows;
            # (seq, envelope) if two
            if not two:
                if any(map(operator.is_not, map(_TEMPLATED, rows), repeat(None))):
                    rows = self._fill_templated(conn, rows)
                    untemplated.difference_update(r[0] for r in runs)
                else:
                    if len(untemplated) > _KEY_CACHE:
                        untemplated.clear()
                    untemplated.update(r[0] for r in runs)
            missing = [r[0] for r in rows if r[1] is None] if None in map(_RAW, rows) else []
            fixes: dict[int, bytes] = {}
            if missing:  # code 6 (or not joinable by the SQL): the five columns
                five: list[Any] = []
                for i in range(0, len(missing), 500):
                    part = missing[i:i + 500]
                    five += conn.execute(
                        "SELECT seq, run_key, time, code, body FROM events WHERE seq IN "
                        f"({','.join('?' * len(part))}) ORDER BY seq", part).fetchall()
                self._load_headers(conn, {r[1] for r in five})
                untemplated.difference_update(r[1] for r in five if r[3] == layout.TEMPLATED)
                fixes = {seq: raw for seq, raw, _ in self._join_templated(five, False)}
        except sqlite3.OperationalError:
            raise  # busy, locked, I/O: not a damaged file
        except sqlite3.DatabaseError as e:  # as _read_txn reports it
            raise self._corrupt(e) from e
        cursor = q.cursor(high, len(rows), rows[-1][0] if rows else None)
        if fixes:
            rows = [(r[0], fixes.get(r[0], b"") if r[1] is None else r[1], *r[2:])
                    for r in rows]
        if q.digests:
            rows = [(seq, raw, digest) for seq, raw, _, digest in rows]
        # else (seq, envelope, None) as they are: the code-6 bodies are None by now
        if make is None:
            return rows, cursor
        # make(seq, raw, digest) called from C: no Python step per row but the Event's
        return list(starmap(make, rows)), cursor

    def _fill_templated(self, conn: sqlite3.Connection, rows: list[Any]) -> list[Any]:
        """The page with its code-6 rows joined: SQLite gave each the head and time of
        its envelope and its body (the template row's seq, then the token), which
        goes into its template as :func:`layout.join` does it."""
        cache = self._cache_templates(
            conn, {s for r in rows if r[2] is not None
                   if (s := layout.template_seq(r[2])) is not None})
        out: list[Any] = []
        for row in rows:
            body = row[2]
            if body is not None:
                ref = layout.template_seq(body)
                rest = layout.fill_template(body, cache.get(ref) if ref is not None else None)
                row = (row[0], body if rest is None else row[1] + rest, None, *row[3:])
            out.append(row)  # a damaged row: its body, as layout.join gives it
        return out

    def _cache_templates(self, conn: sqlite3.Connection, seqs: set[int],
                         on_page: dict[int, Any] | None = None) -> dict[int, bytes | None]:
        """The template cache, holding the templates of the rows ``seqs`` (code-6 rows'
        template rows): those on the page (``on_page``: five-column rows by seq) taken
        from it, the others read by seq. A full cache is emptied first, so the page's
        templates are all there afterwards."""
        cache = self._read_templates
        if len(cache) + len(seqs) > _KEY_CACHE:
            cache.clear()
        page = on_page or {}
        wanted = seqs - cache.keys()
        found = [(s, page[s][3], page[s][4]) for s in wanted if s in page]
        fetch = sorted(s for s in wanted if s not in page)
        for i in range(0, len(fetch), 500):
            part = fetch[i:i + 500]
            found += conn.execute("SELECT seq, code, body FROM events WHERE seq IN "
                                  f"({','.join('?' * len(part))})", part).fetchall()
        for seq, code, body in found:
            cache[seq] = layout.template_of(code, body)
        return cache

    def _load_headers(self, conn: sqlite3.Connection, keys: set[Any]) -> None:
        """Cache ``(header, start time)`` of the runs of ``keys`` not cached yet."""
        headers = self._headers
        missing = keys - headers.keys()
        if not missing:
            return
        if len(headers) + len(missing) > _KEY_CACHE:
            headers.clear()  # then the page's runs are all read again, not only the new
            missing = set(keys)
        ordered = sorted(missing, key=repr)  # any values: a damaged row's too
        for i in range(0, len(ordered), 500):
            part = ordered[i:i + 500]
            headers.update((key, (header, start)) for key, header, start in conn.execute(
                "SELECT run_key, CAST(header AS BLOB), start_time FROM runs WHERE "
                f"run_key IN ({','.join('?' * len(part))})", part).fetchall())

    def _join_rows(self, rows: list[Any], digests: bool,
                   make: Callable[[int, bytes, Any], Any] | None) -> list[Any] | None:
        """Join a page, or None if it holds code-6 rows (:meth:`_join_templated` joins
        those). Per row: one cached lookup of its run's and
        code's fixed parts, one bytes formatting (``layout.join`` does the same, with
        a dozen more Python steps per row: this loop is most of a replay's time)."""
        headers = self._headers
        joiners = self._joiners
        if len(joiners) > _KEY_CACHE:
            joiners.clear()
        get = joiners.get
        join = layout.join
        unknown: tuple[None, int] = (None, 0)  # a row whose run key names no run
        fixed: Any
        out: list[Any] = []
        add = out.append
        for row in rows:
            seq, key, since_start, code, body = row[:5]
            at = (key, code)  # any values: a damaged row's too (verify reports them)
            fixed = get(at, unknown)
            if fixed is unknown:
                header, start = headers.get(key, unknown)
                parts = layout.joiner(code, header)
                fixed = joiners[at] = (None if parts is None
                                       else (parts[0], start, parts[1], parts[2]))
            if fixed is not None:
                raw = b"%b%d%b%b%b" % (fixed[0], fixed[1] + since_start, fixed[2], body,
                                       fixed[3])
            elif code == layout.TEMPLATED:
                return None
            else:
                header, start = headers.get(key, unknown)
                raw = join(code, body, start + since_start, header)
            digest = row[5] if digests else None
            add((seq, raw, digest) if make is None else make(seq, raw, digest))
        return out

    def _join_templated(self, rows: list[Any], digests: bool,
                        headers: dict[int, tuple[bytes | None, int]] | None = None
                        ) -> list[tuple[int, bytes, Any]]:
        """Join a page holding code-6 rows: their template rows are read first (by seq,
        from this page or the table: an earlier event of the same run)."""
        cache = self._cache_templates(
            self._reader(), {s for r in rows if r[3] == layout.TEMPLATED
                             if (s := layout.template_seq(r[4])) is not None},
            {r[0]: r for r in rows})
        headers = self._headers if headers is None else headers
        join = layout.join
        out: list[tuple[int, bytes, Any]] = []
        for row in rows:
            seq, key, since_start, code, body = row[:5]
            template = None
            if code == layout.TEMPLATED:
                ref = layout.template_seq(body)
                template = cache.get(ref) if ref is not None else None
            header, start = headers.get(key, (None, 0))
            out.append((seq, join(code, body, start + since_start, header, template),
                        row[5] if digests else None))
        return out

    def _lookup_trace_key(self, trace_id: str) -> int | None:
        found = self._trace_keys.get(trace_id)
        if found is None:
            with self._read_txn(raw_bytes=False) as conn:
                row = conn.execute("SELECT trace_key FROM runs WHERE trace_id = ? "
                                   "ORDER BY run_key LIMIT 1", (trace_id,)).fetchone()
            if row is None:
                return None
            found = self._trace_keys[trace_id] = row[0]
        return found

    def _select(self, q: EventQuery) -> tuple[list[Any], int]:
        """The rows ``(seq, raw[, digest hex])`` of one page, and the high-water mark."""
        where = ["seq > ?"]
        params: list[Any] = [q.after]
        if q.until is not None:
            where.append("seq <= ?")
            params.append(q.until)
        if q.trace_id is not None:
            where.append("trace_id = ?")
            params.append(q.trace_id)
        if q.run_ids is not None:
            if not q.run_ids:
                return [], max(q.after, self.last_seq())
            where.append(f"run_id IN ({','.join('?' * len(q.run_ids))})")
            params.extend(sorted(q.run_ids))
        if q.filter is not None and not q.filter.is_empty:
            sql, fparams = filter_sql(q.filter)
            where.append(sql)
            params.extend(fparams)
        cols = "seq, raw, digest" if q.digests else "seq, raw"
        sql = f"SELECT {cols} FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        params.append(q.limit)
        # Two statements and no transaction: the store's last seq, then the page. A full
        # page's high-water mark is its last seq. A short page holds every matching
        # event committed up to its own read, and none can commit later with a seq
        # at or below the first read (SQLite takes seqs in commit order), so the larger
        # of the two is safe. (BEGIN, both reads, COMMIT were four statements a page.)
        conn = self._reader()
        conn.text_factory = bytes
        try:
            high = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            rows = conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            raise  # busy, locked, I/O: not a damaged file
        except sqlite3.DatabaseError as e:  # as _read_txn reports it
            raise self._corrupt(e) from e
        return rows, q.cursor(high, len(rows), rows[-1][0] if rows else None)

    def check_columns(self, trace_id: str | None = None) -> tuple[int, str] | None:
        if self.compact:
            return self._check_compact_columns(trace_id)
        cols = ", ".join(CHECKED_COLUMNS)
        after = 0
        while True:
            with self._read_txn(raw_bytes=False) as conn:
                rows = conn.execute(
                    f"SELECT seq, {cols}, CAST(raw AS BLOB) FROM events "
                    "WHERE seq > ? AND (? IS NULL OR trace_id = ?) ORDER BY seq LIMIT 5000",
                    (after, trace_id, trace_id)).fetchall()
            for row in rows:
                problem = column_mismatch(row[0], row[1:7], row[7])
                if problem is not None:
                    return row[0], problem
            if len(rows) < 5000:
                return None
            after = rows[-1][0]

    def _check_compact_columns(self, trace_id: str | None) -> tuple[int, str] | None:
        """The compact layout's copies: each row's run and trace keys, time and kind
        against the envelope it joins back to (and its runs row's ids, name, type), and
        no code-7 row in a store below schema 3 (the version as it is now: a migration
        may have raised it since this backend opened the store)."""
        with self._read_txn(raw_bytes=False) as conn:
            bare = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                    ).fetchone()[0]) >= layout.BARE_SCHEMA_VERSION
        after = 0
        while True:
            with self._read_txn(raw_bytes=True) as conn:
                rows = conn.execute(
                    "SELECT e.seq, r.trace_id, r.run_id, e.code, r.name, r.run_type, "
                    "e.time + r.start_time, e.body, CAST(r.header AS BLOB), e.trace_key, "
                    "r.trace_key, e.run_key, r.start_time "
                    "FROM events e LEFT JOIN runs r ON r.run_key = e.run_key "
                    "WHERE e.seq > ? AND (? IS NULL OR r.trace_id = ?) ORDER BY e.seq "
                    "LIMIT 5000", (after, trace_id, trace_id)).fetchall()
                joined: dict[int, bytes] = {}
                if any(r[3] == layout.TEMPLATED for r in rows):
                    joined = {seq: raw for seq, raw, _ in self._join_templated(
                        [(r[0], r[11], r[6] - r[12], r[3], r[7]) for r in rows
                         if r[2] is not None], False,
                        {r[11]: (r[8], r[12]) for r in rows})}
            for (seq, trace, run_id, code, name, run_type, time_us, body, header,
                 trace_key, run_trace_key, _run_key, _start) in rows:
                if run_id is None:
                    return seq, f"seq {seq}: the event's run key names no run"
                if trace_key != run_trace_key:
                    return seq, (f"seq {seq}: the events table's trace key ({trace_key}) is "
                                 f"not its run's ({run_trace_key})")
                if code == layout.BARE_TOKEN and not bare:
                    return seq, (f"seq {seq}: a code-7 row (a token without its quotes) in "
                                 f"a store at schema {layout.BARE_SCHEMA_VERSION - 1}, "
                                 "which runlog before schema 3 misreads as a whole envelope")
                raw = joined.get(seq) or layout.join(code, body, time_us, header)
                kind = layout.KIND_OF_CODE.get(code)
                columns = (trace.decode(), run_id.decode(), kind, name.decode(),
                           run_type.decode(), time_us)
                if kind is None:  # a whole envelope: its kind is its own
                    try:
                        columns = (*columns[:2], orjson.loads(raw).get("kind"), *columns[3:])
                    except Exception:
                        pass
                problem = column_mismatch(seq, columns, raw)
                if problem is not None:
                    return seq, problem
            if len(rows) < 5000:
                return None
            after = rows[-1][0]

    def last_seq(self) -> int:
        with self._read_txn(raw_bytes=False) as conn:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def _runs(self, where: str, params: dict[str, Any], tail: str = "") -> list[RunInfo]:
        params = {**params, "now": now_micros()}
        select = _SELECT_RUNS_COMPACT if self.compact else _SELECT_RUNS
        sql = f"{select} {('WHERE ' + where) if where else ''} {tail}"
        with self._read_txn(raw_bytes=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        out = []
        for r in rows:
            out.append(run_info_from_row(
                run_id=r[0], trace_id=r[1], parent_id=r[2], name=r[3], run_type=r[4],
                tags=r[5], metadata=r[6], start_seq=r[7], start_time=r[8], end_seq=r[9],
                end_time=r[10], status=r[14], error=r[12],
                event_count=r[13] if r[15] is None else r[15],
            ))
        return out

    def get_run(self, run_id: str) -> RunInfo | None:
        found = self._runs("r.run_id = :run_id", {"run_id": run_id})
        return found[0] if found else None

    def find_runs(self, q: RunQuery) -> list[RunInfo]:
        where, params = [], {}
        if q.trace_id is not None:
            where.append("r.trace_id = :trace_id")
            params["trace_id"] = q.trace_id
        if q.roots_only:
            where.append("r.parent_id IS NULL")
        if q.name is not None:
            where.append("r.name = :name")
            params["name"] = q.name
        if q.status is not None:
            where.append(f"({_STATUS}) = :status")
            params["status"] = q.status
        order = "DESC" if q.newest_first else "ASC"
        found = self._runs(" AND ".join(where), params, f"ORDER BY r.start_seq {order}")
        if q.filter is not None and not q.filter.is_empty:
            f = q.filter
            found = [r for r in found if f.matches_run(r.name, r.run_type, r.tags, r.metadata)]
        return found[: q.limit] if q.limit is not None else found

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        with self._read_txn(raw_bytes=False) as conn:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id "
                "LIMIT ?", (prefix, prefix + "\uffff", limit)).fetchall()
        return [r[0] for r in rows]

    def run_ids_with_suffix(self, suffix: str, limit: int = 2) -> list[str]:
        with self._read_txn(raw_bytes=False) as conn:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE substr(run_id, -?) = ? ORDER BY run_id LIMIT ?",
                (len(suffix), suffix, limit)).fetchall()
        return [r[0] for r in rows]

    def trace_runs(self, trace_id: str) -> list[RunInfo]:
        return self._runs("r.trace_id = :trace_id", {"trace_id": trace_id},
                          "ORDER BY r.start_seq")

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, Busy):
            return True
        text = str(error)
        return isinstance(error, sqlite3.OperationalError) and (
            "locked" in text or "busy" in text)

    def is_rejection(self, error: BaseException) -> bool:
        return isinstance(error, (sqlite3.DataError, sqlite3.IntegrityError)) or (
            isinstance(error, sqlite3.Error) and "too big" in str(error))

    def is_corrupt(self, error: BaseException) -> bool:
        text = str(error)
        return (isinstance(error, sqlite3.DatabaseError)
                and not isinstance(error, (sqlite3.DataError, sqlite3.IntegrityError))
                and ("malformed" in text or "not a database" in text))

    def wait_hint(self) -> str | None:
        return f"{self.path}-wal"

    def change_waiter(self) -> ChangeWaiter:
        """inotify on the file and its ``-wal`` (polling where inotify is unavailable)."""
        from runlog.store.waiters import sqlite_change_waiter

        return sqlite_change_waiter(self.path)

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file (``PRAGMA wal_checkpoint(TRUNCATE)``)."""
        with self._wlock:
            self._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def after_fork(self) -> None:
        # Never use (or close) the parent's connections in the child: forget them.
        self._local = threading.local()
        self._conns = []
        self._conns_lock = threading.Lock()
        self._wlock = threading.Lock()
        self._wconn = self._connect()
        self._wconn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")

    # -- lifecycle: runlog/store/prune.py and runlog/store/stats.py hold the code -------
    def prune_candidates(self, rule: PruneRule, *, after: str = "",
                         limit: int = 500) -> list[TraceCandidate]:
        from runlog.store import prune

        return prune.sqlite_candidates(self, rule, after, limit)

    def prune_traces(self, expect: Mapping[str, int | None], rule: PruneRule,
                     by: Pruner) -> PrunedBatch:
        from runlog.store import prune

        return prune.sqlite_prune(self, expect, rule, by)

    def prunes(self) -> list[PruneRecord]:
        from runlog.store import prune

        return prune.sqlite_prunes(self)

    def reclaim(self, *, vacuum: bool = False) -> int:
        from runlog.store import prune

        return prune.sqlite_reclaim(self, vacuum=vacuum)

    def stats(self, top: int = 10) -> StoreStats:
        from runlog.store import stats

        return stats.sqlite_stats(self, top)

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass


# A NUL in a string cuts it short in SQLite's JSON functions (json_each yields "a" for
# "a\u0000b"), so a comparison through them can be wrong both ways. These find the
# runs where that can happen, from the JSON text, which keeps the escape.
_TAGS_NUL = "instr(json_extract(events.raw, '$.tags'), '\\u0000') > 0"
_METADATA_NUL = "instr(json_extract(events.raw, '$.metadata'), '\\u0000') > 0"
_TAGS_NUL_COMPACT = "instr(r.tags, '\\u0000') > 0"
_METADATA_NUL_COMPACT = "instr(r.metadata, '\\u0000') > 0"


def _is_read_only_error(e: BaseException) -> bool:
    """Whether opening failed only because this process may not write the store."""
    text = f"{e} {e.__cause__}"
    return "readonly database" in text or "unable to open database file" in text


def filter_sql(f: Filter, *, compact: bool = False) -> tuple[str, list[Any]]:
    """The part of a filter SQLite can evaluate, as a *superset* of the exact predicate.

    Names and types are columns; tags come from the envelope with ``json_each`` (they
    are always plain JSON strings, :func:`runlog.events.encode_run_fields` refuses
    anything else). A metadata include is narrowed to "the key exists"; metadata
    excludes are left to the exact Python predicate, which the store always applies
    afterwards, so SQL never drops an event the filter would keep. Where SQL cannot
    see the plain value (metadata stored as a ``$rl:dict`` tag, a NUL in a tag or a
    key, see ``_TAGS_NUL``) the clause keeps the row.
    """
    params: list[Any] = []
    # where the run's fields are: the event row's copies and envelope, or (compact
    # layout) the runs row joined as ``r``
    name, run_type = ("r.name", "r.run_type") if compact else ("name", "run_type")
    tags_json, metadata_json = (("r.tags, '$'", "r.metadata, '$'") if compact
                                else ("events.raw, '$.tags'", "events.raw, '$.metadata'"))
    tags_nul, metadata_nul = ((_TAGS_NUL_COMPACT, _METADATA_NUL_COMPACT) if compact
                              else (_TAGS_NUL, _METADATA_NUL))

    def in_list(expr: str, values: tuple[str, ...]) -> str:
        values = tuple(sql_strings(values))
        if not values:
            return "0"
        params.extend(values)
        return f"{expr} IN ({','.join('?' * len(values))})"

    def tags_any(values: tuple[str, ...]) -> str:
        values = tuple(sql_strings(values))
        if not values:
            return "0"
        params.extend(values)
        return (f"EXISTS (SELECT 1 FROM json_each({tags_json}) t WHERE t.value IN "
                f"({','.join('?' * len(values))}))")

    clauses: list[str] = []
    if f.has_includes:
        ors = []
        if f.include_names is not None:
            ors.append(in_list(name, f.include_names))
        if f.include_types is not None:
            ors.append(in_list(run_type, f.include_types))
        if f.include_tags is not None:
            ors.append(tags_any(f.include_tags))
            if any("\x00" in t for t in f.include_tags):  # only a cut-short tag equals it
                ors.append(tags_nul)
        if f.include_metadata is not None:
            keys = [*sql_strings(f.include_metadata), DICT_TAG]
            if f.include_metadata:
                params.extend(keys)
                ors.append(f"EXISTS (SELECT 1 FROM json_each({metadata_json}) m "
                           f"WHERE m.key IN ({','.join('?' * len(keys))}))")
                if any("\x00" in k for k in f.include_metadata):
                    ors.append(metadata_nul)
            else:
                ors.append("0")
        clauses.append("(" + " OR ".join(ors) + ")")
    if f.exclude_names:
        clauses.append("NOT " + in_list(name, f.exclude_names))
    if f.exclude_types:
        clauses.append("NOT " + in_list(run_type, f.exclude_types))
    if f.exclude_tags:
        # A cut-short tag may equal an excluded one it is not: keep such runs.
        clauses.append(f"(NOT {tags_any(f.exclude_tags)} OR {tags_nul})")
    return ("(" + " AND ".join(clauses) + ")" if clauses else "1"), params
