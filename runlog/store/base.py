"""The contract every storage backend fulfils, and the records that cross it.

A backend stores envelopes (see :mod:`runlog.events`) and the derived ``runs`` table;
it never encodes values and never builds envelopes. That keeps the byte-exactness
argument in one place: the bytes a recorder made are the bytes every read returns.

Guarantees a backend must give (the contract suite in ``tests/store_contract.py``
checks them against every backend):

* ``append`` commits a whole batch or nothing, assigns ``seq`` gap-free in commit
  order, and never changes or removes a committed row;
* ``read`` returns committed events in ``seq`` order, in short transactions (a paused
  reader never holds the database), together with a high-water mark: every event
  with ``seq <= high_water`` that matches the query has been returned, so a cursor can
  move past filtered-out events without skipping anything;
* a run's status is ``running`` while its writer's lease is fresh, ``abandoned`` once
  the lease expired (or the writer closed) with the run still open.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from runlog import codec
from runlog.errors import EncodingError, StoreError
from runlog.events import ErrorInfo, Event, RunInfo, chain_digest

if TYPE_CHECKING:
    from runlog.filters import Filter
    from runlog.store.prune import PrunedBatch, Pruner, PruneRecord, PruneRule, TraceCandidate
    from runlog.store.stats import StoreStats

__all__ = [
    "SCHEMA_VERSION",
    "Backend",
    "ChangeWaiter",
    "EventQuery",
    "Pending",
    "PollingWaiter",
    "RunQuery",
    "StoredMetadata",
    "WriterInfo",
    "pending_from_raw",
]

SCHEMA_VERSION = 1


class Pending(NamedTuple):
    """One event on its way to the store: the envelope bytes plus indexed columns.

    ``run_row`` is set on start events (``(parent_id, tags_json, metadata_json)``) and
    on end events (``(status, error_json_or_None, event_count)``) so the backend can
    maintain the ``runs`` table in the same transaction.
    """

    run_id: str
    trace_id: str
    kind: str
    name: str
    run_type: str
    time_us: int
    raw: bytes
    digest: bytes
    run_row: tuple[Any, ...] | None = None
    parts: tuple[int, bytes] | None = None
    """``(code, body)`` of the compact layout (:mod:`runlog.store.layout`) when the
    recorder knows them, so the writer need not split ``raw`` (it still checks them);
    for a token event with a chunk, ``(TEMPLATED, token)``: its token, the JSON string,
    with which the writer checks it against the run's chunk template (code 6)."""


@dataclass(frozen=True, slots=True)
class WriterInfo:
    """Identity and lease of one process's writer, as readers see it."""

    writer_id: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    lease_us: int = 10_000_000


@dataclass(frozen=True, slots=True)
class EventQuery:
    """What to read: events after a cursor, optionally restricted."""

    after: int = 0
    limit: int = 1000
    trace_id: str | None = None
    run_ids: frozenset[str] | None = None
    filter: Filter | None = None
    until: int | None = None
    digests: bool = False

    def cursor(self, high: int, count: int, last: int | None) -> int:
        """The cursor a page of ``count`` rows (the last at seq ``last``) returns, given
        the store's high-water mark ``high`` read with it: a full page ends at its last
        row (more may follow); a shorter one read everything up to ``high`` (or further,
        when a commit landed between the two reads). Never past ``until``, never before
        ``after``."""
        if count >= self.limit and last is not None:
            high = last
        elif last is not None:
            high = max(high, last)
        if self.until is not None:
            high = min(high, self.until)
        return max(high, self.after)


@dataclass(frozen=True, slots=True)
class RunQuery:
    """What runs to list (``store.runs``)."""

    trace_id: str | None = None
    roots_only: bool = False
    status: str | None = None
    name: str | None = None
    filter: Filter | None = None
    limit: int | None = None
    newest_first: bool = True


class ChangeWaiter(ABC):
    """Wakes a tailer when new events may have been committed, by any process.

    A wake-up is only a hint: the tailer always re-reads from its cursor, so a spurious
    wake costs one empty query and a lost one costs at most ``timeout`` of latency.
    Backends provide the cheapest signal they have (inotify on SQLite's WAL,
    LISTEN/NOTIFY on PostgreSQL); :class:`PollingWaiter` is the fallback.
    """

    @abstractmethod
    def wait(self, timeout: float) -> None:
        """Block until a commit may have happened, or ``timeout`` seconds passed."""

    @abstractmethod
    async def await_change(self, timeout: float) -> None:
        """``wait`` for async code (asyncio or trio); never blocks the event loop."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the waiter holds (file descriptors, connections)."""


class PollingWaiter(ChangeWaiter):
    """No notification at all: sleep for the poll interval."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval

    def wait(self, timeout: float) -> None:
        import time

        time.sleep(min(timeout, self.interval))

    async def await_change(self, timeout: float) -> None:
        import anyio

        await anyio.sleep(min(timeout, self.interval))


class Backend(ABC):
    """Storage for envelopes and the derived runs table (see the module docstring)."""

    url: str
    location: str
    """Human-readable place (a path or a URL without password) for messages."""
    bulk_page_rows: int = 5000
    """Rows per page a bulk reader (the JSONL export) asks :meth:`read_rows` for: large
    where each page is a round trip to a server."""

    @abstractmethod
    def append(self, batch: Sequence[Pending], writer: WriterInfo,
               heartbeat_us: int | None) -> int:
        """Commit ``batch`` atomically and return the last seq.

        The same transaction refreshes the writer's heartbeat to ``heartbeat_us``, unless
        it is ``None``: the writer passes ``None`` while its last heartbeat is recent, so
        that a stream of small commits does not rewrite the ``writers`` row each time.
        """

    @abstractmethod
    def heartbeat(self, writer: WriterInfo, now_us: int, *, closing: bool = False) -> None:
        """Refresh (or, when closing, end) the writer's lease."""

    @abstractmethod
    def read(self, q: EventQuery) -> tuple[list[Event], int]:
        """One page of events after ``q.after`` and the high-water mark (module docstring)."""

    def read_rows(self, q: EventQuery) -> tuple[list[tuple[int, bytes, bytes]], int]:
        """One page as :meth:`read` returns it, as ``(seq, raw, digest hex)`` rows.

        For bulk readers that copy bytes and need no :class:`Event` (the JSONL export):
        the digest is its lowercase hex in ASCII bytes, ``b""`` unless ``q.digests``.
        A filter in ``q`` may be applied loosely (a superset), as in :meth:`read`;
        callers that filter match events themselves. The default builds on
        :meth:`read`; a backend overrides it when it can skip the objects.
        """
        events, high = self.read(q)
        return [(e.seq, e.raw, e.digest.hex().encode() if e.digest is not None else b"")
                for e in events], high

    @abstractmethod
    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty store)."""

    def check_columns(self, trace_id: str | None = None) -> tuple[int, str] | None:
        """The first event whose indexed columns are not what its stored bytes say.

        SQL backends copy ``trace_id``, ``run_id``, ``kind``, ``name``, ``run_type`` and
        ``time`` out of the envelope so reads and filters need not parse it; an edit of
        such a copy alone passes the hash chain, so ``runlog verify`` asks for this.
        A backend without copies (memory) has nothing to check.
        """
        return None

    @abstractmethod
    def get_run(self, run_id: str) -> RunInfo | None:
        """The run with this exact id, or None."""

    @abstractmethod
    def find_runs(self, q: RunQuery) -> list[RunInfo]:
        """Runs matching ``q``, newest first unless asked otherwise."""

    @abstractmethod
    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Run ids starting with ``prefix`` (for ids typed by a person)."""

    @abstractmethod
    def run_ids_with_suffix(self, suffix: str, limit: int = 2) -> list[str]:
        """Run ids ending with ``suffix`` (the random part of a UUIDv7)."""

    @abstractmethod
    def trace_runs(self, trace_id: str) -> list[RunInfo]:
        """Every run of one trace, in start order."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the backend is unusable afterwards."""

    def is_transient(self, error: BaseException) -> bool:
        """True for errors the writer should retry silently (another writer holds a lock)."""
        return False

    def is_rejection(self, error: BaseException) -> bool:
        """True for errors caused by one event of a batch (a constraint, a value out of range).

        The writer then commits the rest of the batch and rejects that event alone.
        """
        return False

    def is_corrupt(self, error: BaseException) -> bool:
        """True for errors that say the store is damaged: the writer stops, loudly."""
        return False

    def wait_hint(self) -> str | None:
        """A file whose change signals new commits (for tailers), if the backend has one."""
        return None

    def after_fork(self) -> None:  # noqa: B027 - optional hook
        """Called in a forked child: drop connections inherited from the parent.

        Database connections must not cross ``fork()``; the child opens its own.
        """

    def change_waiter(self) -> ChangeWaiter:
        """A new waiter for one tailer (each tailer owns and closes its own)."""
        return PollingWaiter()

    # -- lifecycle: prune and stats (runlog/store/prune.py, runlog/store/stats.py) ------
    def prune_candidates(self, rule: PruneRule, *, after: str = "",
                         limit: int = 500) -> list[TraceCandidate]:
        """Up to ``limit`` traces ``rule`` selects now, ids above ``after``, in id order."""
        raise StoreError(f"{self.location}: this backend cannot prune")

    def prune_traces(self, expect: Mapping[str, int | None], rule: PruneRule,
                     by: Pruner) -> PrunedBatch:
        """Remove, in one transaction, the traces of ``expect`` that ``rule`` still selects
        and that still hold the event count given (None: any), and record it in
        ``prunes``. Never part of a trace; never the newest trace (runlog/store/prune.py).
        """
        raise StoreError(f"{self.location}: this backend cannot prune")

    def prunes(self) -> list[PruneRecord]:
        """Every recorded prune batch, oldest first (none for a store never pruned)."""
        return []

    def reclaim(self, *, vacuum: bool = False) -> int:
        """Return space prunes freed to the file system where the backend can, in short
        steps beside writers; the bytes (or pages, SQLite) it freed."""
        return 0

    def stats(self, top: int = 10) -> StoreStats:
        """Counts, bytes on disk and growth of the store (``runlog stats``)."""
        raise StoreError(f"{self.location}: this backend has no stats")


def pending_from_raw(raw: bytes, previous: bytes | None, event_count: int = 0) -> Pending:
    """Rebuild the write record of an envelope read elsewhere (import, copy).

    ``previous`` is the digest of the run's preceding event; the digest of ``raw`` is
    recomputed, so a copied run verifies exactly like the original.
    """
    try:
        env = codec.loads_plain(raw)
        kind = env["kind"]
        run_id, trace_id = env["run_id"], env["trace_id"]
        name, run_type = env["name"], env["run_type"]
        time_us = env["time"]
    except Exception as e:
        raise EncodingError(f"not a runlog envelope: {raw[:80]!r}") from e
    if kind not in ("start", "stream", "end") or not isinstance(time_us, int):
        raise EncodingError(f"not a runlog envelope: {raw[:80]!r}")
    run_row: tuple[Any, ...] | None = None
    if kind == "start":
        run_row = (
            env.get("parent_id"),
            codec.dumps_plain(env.get("tags", [])),
            codec.dumps_plain(env.get("metadata", {})),
        )
    elif kind == "end":
        err = env.get("error")
        status = "error" if err is not None else "ok"
        run_row = (status, codec.dumps_plain(err) if err is not None else None, event_count)
    return Pending(
        run_id=run_id,
        trace_id=trace_id,
        kind=kind,
        name=name,
        run_type=run_type,
        time_us=time_us,
        raw=raw,
        digest=chain_digest(previous, raw),
        run_row=run_row,
    )


class StoredMetadata(Mapping[str, Any]):
    """A run's metadata as the runs table holds it: parsed JSON, tags decoded on first use.

    Listing runs maps every row, and most readers never look at the metadata (or, as
    the web viewer, show it as stored): decoding it eagerly would run the codec over
    every row, on values a store shared with others may have forged. ``stored`` is
    the parsed JSON with its ``{"$rl:...": }`` tags as they are, ``raw`` its exact
    text. Metadata that is not a JSON object (only a damaged or forged store has such)
    reads as empty here.
    """

    __slots__ = ("_decoded", "raw", "stored")

    def __init__(self, raw: str | bytes | None) -> None:
        self.raw: str | bytes = raw or b"{}"
        self.stored: Any = codec.loads_plain(self.raw)
        self._decoded: dict[str, Any] | None = None

    def _values(self) -> dict[str, Any]:
        decoded = self._decoded
        if decoded is None:
            value = codec.untag(self.stored) if type(self.stored) is dict else {}
            decoded = self._decoded = value if isinstance(value, dict) else {}
        return decoded

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def __repr__(self) -> str:
        return repr(self._values())


def _error_text(value: Any) -> str:
    """One field of a stored error: a string, or a string the codec had to tag (lone
    surrogates); anything else (a forged row) is shown as its JSON, never decoded."""
    if type(value) is str:
        return value
    if type(value) is dict and len(value) == 1 and type(value.get("$rl:str")) is str:
        try:
            return bytes.fromhex(value["$rl:str"]).decode("utf-8", "surrogatepass")
        except ValueError:
            pass
    return codec.dumps_plain(value).decode()


def _error_info(stored: Any) -> ErrorInfo:
    """A run's error from the runs table: its three strings, nothing revived."""
    if type(stored) is not dict:
        stored = {"message": stored}
    return ErrorInfo(type=_error_text(stored.get("type", "")),
                     message=_error_text(stored.get("message", "")),
                     traceback=_error_text(stored.get("traceback", "")))


def run_info_from_row(
    *,
    run_id: str,
    trace_id: str,
    parent_id: str | None,
    name: str,
    run_type: str,
    tags: str | bytes | None,
    metadata: str | bytes | None,
    start_seq: int,
    start_time: int,
    end_seq: int | None,
    end_time: int | None,
    status: str,
    error: str | bytes | None,
    event_count: int,
) -> RunInfo:
    """Map one ``runs`` row (shared by the SQL backends and the memory backend)."""
    from runlog.events import micros_to_datetime

    return RunInfo(
        run_id=run_id,
        trace_id=trace_id,
        parent_id=parent_id,
        name=name,
        run_type=run_type,
        status=status,  # type: ignore[arg-type]
        start_time=micros_to_datetime(start_time),
        end_time=micros_to_datetime(end_time) if end_time is not None else None,
        event_count=event_count,
        tags=tuple(codec.loads_plain(tags)) if tags else (),
        metadata=StoredMetadata(metadata),
        error=_error_info(codec.loads_plain(error)) if error else None,
        start_seq=start_seq,
        end_seq=end_seq,
    )


CHECKED_COLUMNS = ("trace_id", "run_id", "kind", "name", "run_type", "time")
"""The envelope fields SQL backends also keep as columns (see Backend.check_columns)."""


def column_mismatch(seq: int, columns: Sequence[Any], raw: bytes | str) -> str | None:
    """How a row's column copies differ from its envelope bytes, or None if they agree.

    Bytes that are no envelope are the chain check's to report, so they pass here."""
    try:
        env = orjson.loads(raw)
        want = tuple(env[c] for c in CHECKED_COLUMNS)
    except Exception:
        return None
    for col, got, value in zip(CHECKED_COLUMNS, columns, want, strict=True):
        if got != value:
            return (f"seq {seq}: the events table's {col} column ({got!r}) is not the "
                    f"stored bytes' ({value!r})")
    return None
