"""The :class:`Store` users open: recording, reading, replaying and verifying one log.

``runlog.open()`` returns a Store. It ties one backend (where events live), one
writer (how they get there) and the recorder (how code produces them) together, and
offers the read side: events, runs, replay, verification and the live tail. It is the
only module that knows every layer; each method is a few lines over them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio.to_thread
import orjson

from runlog.errors import RunlogError, StoreError, UnknownRunError
from runlog.events import Event, RunInfo, chain_digest
from runlog.filters import Filter
from runlog.recorder import Recorder, Run, RunScope, trace
from runlog.store import open_backend
from runlog.store.base import Backend, EventQuery, RunQuery
from runlog.store.writer import Writer
from runlog.tail import ATail, Tail

if TYPE_CHECKING:
    from runlog.lifecycle import PruneReport
    from runlog.store.prune import PruneRecord
    from runlog.store.stats import StoreStats

__all__ = ["DEFAULT_DB", "Store", "VerifyReport", "default_location", "open"]

DEFAULT_DB = "runlog.db"
F = TypeVar("F", bound=Callable[..., Any])
View = Literal["raw", "log", "events"]


def default_location() -> str:
    """``$RUNLOG_DB`` if set, else ``./runlog.db``."""
    return os.environ.get("RUNLOG_DB") or DEFAULT_DB


def open(
    target: str | os.PathLike[str] | None = None,
    *,
    create: bool = True,
    durable: bool = False,
    lease_seconds: float = 10.0,
    end_timeout: float = 30.0,
    commit_interval: float = 0.002,
) -> Store:
    """Open (or create) a run log.

    Args:
        target: a file path (SQLite, the default), ``sqlite:///path``, ``:memory:``, or a
            SQLAlchemy PostgreSQL URL. Defaults to ``$RUNLOG_DB``, else ``./runlog.db``.
        create: create the store if it does not exist (``False`` for read-only tools).
        durable: fsync every commit (``synchronous=FULL``): acknowledged events survive
            a power cut, at the cost of ~0.3 ms per commit.
        lease_seconds: how long after this process's last heartbeat its open runs are
            shown as *abandoned* by other processes.
        end_timeout: how long the end of a root run waits for its commit.
        commit_interval: while events keep coming, commit at most this often (seconds)
            so a stream of tokens shares commits; a lone event, a flush and the end of
            a root run commit at once. ``0`` commits as soon as the writer is free.
    """
    backend = open_backend(target if target is not None else default_location(),
                           create=create, durable=durable)
    return Store(backend, lease_seconds=lease_seconds, end_timeout=end_timeout,
                 commit_interval=commit_interval)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found: counts, and the first broken link if any."""

    events: int
    runs: int
    ok: bool
    first_error: str | None = None
    first_bad_seq: int | None = None
    pruned_events: int = 0
    """Events recorded prunes removed (their seqs are not gaps)."""


class Store:
    """One open run log (see :func:`open`). Thread-safe; use one per process and file."""

    def __init__(self, backend: Backend, *, lease_seconds: float = 10.0,
                 heartbeat_seconds: float | None = None, end_timeout: float = 30.0,
                 max_batch: int = 1000, commit_interval: float = 0.002) -> None:
        self.backend = backend
        self.writer = Writer(backend, lease_seconds=lease_seconds,
                             heartbeat_seconds=heartbeat_seconds, max_batch=max_batch,
                             commit_interval=commit_interval)
        self.recorder = Recorder(self.writer, owner=self, end_timeout=end_timeout)
        self._closed = False
        self._state_indexes: dict[Any, Any] = {}  # state_at: per-run fold indexes

    def __repr__(self) -> str:
        return f"<runlog.Store {self.backend.location}>"

    @property
    def location(self) -> str:
        return self.backend.location

    # -- recording -------------------------------------------------------------------
    def run(self, name: str, run_type: str = "chain", **kwargs: Any) -> RunScope:
        """A scope recording one run: ``with store.run("rag") as run: ...``.

        Keyword arguments: ``inputs``, ``tags``, ``metadata``, ``run_id``, ``parent``
        (defaults to the current run of this store, making the new run its child),
        ``time``, ``inherit``. Inside the block, ``run.stream(chunk)`` records output
        chunks, ``run.child(...)`` opens child scopes, ``run.end(outputs)`` ends it.
        """
        return self.recorder.scope(name, run_type, **kwargs)

    def arun(self, name: str, run_type: str = "chain", **kwargs: Any) -> RunScope:
        """The same scope for ``async with``; its exit awaits the commit of a root run."""
        return self.recorder.scope(name, run_type, **kwargs)

    def start_run(self, name: str, run_type: str = "chain", **kwargs: Any) -> Run:
        """Start a run without a scope (end it with ``run.end()``)."""
        return self.recorder.start(name, run_type, **kwargs)

    def trace(self, name: str | None = None, run_type: str = "chain", *,
              tags: Sequence[str] | None = None,
              metadata: Mapping[str, Any] | None = None) -> Callable[[F], F]:
        """Decorator recording each call as a run (root here, or child of the current run)."""
        return trace(name, run_type, tags=tags, metadata=metadata,  # type: ignore[return-value]
                     recorder=self.recorder)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event recorded so far is committed.

        Raises:
            WriteError: the writer cannot commit (disk full, ...); events stay queued.
        """
        self.writer.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> None:
        """``flush`` without blocking the event loop."""
        await anyio.to_thread.run_sync(self.writer.flush, timeout)

    # -- reading ---------------------------------------------------------------------
    def resolve_run_id(self, run_id: str) -> str:
        """The full id of a run given its id or a unique prefix or suffix (>= 8 characters).

        Run ids are UUIDv7: the first 12 hex digits are the start time, so runs started
        in the same millisecond share a prefix; the random tail (``runlog runs`` shows
        the whole id) is the part a person can copy.
        """
        run_id = str(run_id).strip()
        if self.backend.get_run(run_id) is not None:
            return run_id
        if len(run_id) >= 8:
            found = self.backend.run_ids_with_prefix(run_id, limit=2)
            if not found:
                found = self.backend.run_ids_with_suffix(run_id, limit=2)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RunlogError(
                    f"run id {run_id!r} matches several runs; give more of the id")
        raise UnknownRunError(run_id, self.backend.location)

    def run_info(self, run_id: str) -> RunInfo:
        """Status, timing and identity of one run (id or unique prefix)."""
        info = self.backend.get_run(self.resolve_run_id(run_id))
        if info is None:  # pragma: no cover - resolve_run_id checked it
            raise UnknownRunError(run_id, self.backend.location)
        return info

    def runs(
        self,
        *,
        trace_id: str | None = None,
        roots_only: bool = False,
        status: str | None = None,
        name: str | None = None,
        filter: Filter | None = None,
        limit: int | None = None,
        newest_first: bool = True,
        thread: str | None = None,
    ) -> list[RunInfo]:
        """List runs with name, type, status (running/ok/error/abandoned), times, counts.

        ``thread="t"`` lists the runs of one conversation thread (LangGraph's
        ``configurable.thread_id``, which LangChain copies into every run's metadata):
        the topmost run carrying ``thread_id == "t"`` in each trace, so a first call
        and its resume after an interrupt are two items and their nodes are none. It is
        the metadata filter ``include_metadata={"thread_id": t}`` (not combinable with
        ``filter=``) with the thread's inner runs left out.
        """
        if thread is None:
            return self.backend.find_runs(RunQuery(
                trace_id=trace_id, roots_only=roots_only, status=status, name=name,
                filter=filter, limit=limit, newest_first=newest_first))
        return self._thread_runs(thread, trace_id=trace_id, roots_only=roots_only,
                                 status=status, name=name, filter=filter, limit=limit,
                                 newest_first=newest_first)

    def _thread_runs(self, thread: str, *, trace_id: str | None, roots_only: bool,
                     status: str | None, name: str | None, filter: Filter | None,
                     limit: int | None, newest_first: bool) -> list[RunInfo]:
        if filter is not None and not filter.is_empty:
            raise TypeError("pass either thread= or filter=, not both")
        if not isinstance(thread, str):
            raise TypeError(f"thread must be a str (a thread_id), got {type(thread).__name__}")
        members = self.backend.find_runs(RunQuery(
            trace_id=trace_id, roots_only=roots_only, filter=Filter(
                include_metadata={"thread_id": thread}), newest_first=newest_first))
        ids = {r.run_id for r in members}
        top = [r for r in members if r.parent_id is None or r.parent_id not in ids]
        top = [r for r in top if (status is None or r.status == status)
               and (name is None or r.name == name)]
        return top if limit is None else top[:limit]

    def trace_runs(self, trace_id: str) -> list[RunInfo]:
        """Every run of one trace, in start order."""
        return self.backend.trace_runs(trace_id)

    def subtree_ids(self, run_id: str) -> tuple[str, frozenset[str]]:
        """The trace id of a run and the ids of the run and all its descendants."""
        info = self.run_info(run_id)
        return info.trace_id, self._subtree(info)

    def _subtree(self, info: RunInfo) -> frozenset[str]:
        runs = self.backend.trace_runs(info.trace_id)
        if info.parent_id is None:
            return frozenset(r.run_id for r in runs)
        children: dict[str | None, list[str]] = {}
        for r in runs:
            children.setdefault(r.parent_id, []).append(r.run_id)
        found, todo = {info.run_id}, [info.run_id]
        while todo:
            for c in children.get(todo.pop(), ()):
                if c not in found:
                    found.add(c)
                    todo.append(c)
        return frozenset(found)

    def _query(self, run_id: str | None, trace_id: str | None, after: int,
               filter: Filter | None, until: int | None, page_size: int,
               descendants: bool, digests: bool = False) -> EventQuery:
        run_ids: frozenset[str] | None = None
        if run_id is not None:
            info = self.run_info(run_id)  # resolves a prefix/suffix once
            if trace_id is not None and trace_id != info.trace_id:
                run_ids = frozenset()  # contradictory selection: nothing
            elif not descendants:
                run_ids = frozenset({info.run_id})
            elif info.parent_id is not None:
                run_ids = self._subtree(info)
            # else: a root and its descendants are the whole trace; the index answers it
            trace_id = info.trace_id
        if filter is not None and filter.is_empty:
            filter = None
        return EventQuery(after=after, limit=page_size, trace_id=trace_id, run_ids=run_ids,
                          filter=filter, until=until, digests=digests)

    def _iter(self, q: EventQuery) -> Iterator[Event]:
        f = q.filter
        if f is None:  # the pages' events as they are: no Python step per event
            return chain.from_iterable(self._pages(q))
        return filter(f.matches, chain.from_iterable(self._pages(q)))

    def _pages(self, q: EventQuery) -> Iterator[list[Event]]:
        """The pages of ``q``, read one at a time as the caller gets that far (a replay
        yields the events of a page through ``chain``, in C: a generator of its own
        that yields each event took ~0.1 us of a ~1 us replayed row)."""
        read = self.backend.read
        while True:
            page, high = read(q)
            done = len(page) < q.limit  # everything up to the page's snapshot was read
            yield page
            if done:
                return
            # not held while the next page is made: the garbage collector would
            # traverse (and promote) the events the caller is done with
            del page
            q = replace(q, after=high)

    def events(
        self,
        run_id: str | None = None,
        trace_id: str | None = None,
        after: int = 0,
        filter: Filter | None = None,
        *,
        until: int | None = None,
        descendants: bool = False,
        page_size: int = 1000,
        digests: bool = False,
    ) -> Iterator[Event]:
        """Committed events in global (``seq``) order.

        Args:
            run_id: only this run's events (with ``descendants=True``, its subtree's).
            trace_id: only this trace's events.
            after: a cursor: yield events with ``seq > after``.
            filter: keep only events of runs passing this :class:`~runlog.Filter`.
            until: stop after this seq (default: what is committed when each page is read).
            digests: also read each event's hash-chain digest (``Event.digest``), which
                lossless exports carry so a file can be verified on its own.

        Events are read a page at a time in short transactions, so a slow consumer never
        holds the database; the iterator ends at the last event committed when it
        reaches the end (use ``tail`` to keep following).
        """
        q = self._query(run_id, trace_id, after, filter, until, page_size, descendants,
                        digests)
        if q.run_ids is not None and not q.run_ids:
            return iter(())
        return self._iter(q)

    async def aevents(self, run_id: str | None = None, trace_id: str | None = None,
                      after: int = 0, filter: Filter | None = None, *,
                      until: int | None = None, descendants: bool = False,
                      page_size: int = 1000) -> AsyncIterator[Event]:
        """``events`` for async code: each page is read in a worker thread."""
        q = await anyio.to_thread.run_sync(
            lambda: self._query(run_id, trace_id, after, filter, until, page_size, descendants))
        if q.run_ids is not None and not q.run_ids:
            return
        f = q.filter
        while True:
            page, high = await anyio.to_thread.run_sync(self.backend.read, q)
            for e in page:
                if f is None or f.matches(e):
                    yield e
            if len(page) < q.limit:
                return
            q = replace(q, after=high)

    def last_seq(self) -> int:
        """The highest committed seq: a cursor that means "from now on"."""
        return self.backend.last_seq()

    def tail(self, after: int = 0, run_id: str | None = None, trace_id: str | None = None,
             filter: Filter | None = None, view: View = "raw", until_end: bool = False,
             idle_timeout: float | None = None, *, poll_interval: float = 0.1,
             page_size: int = 1000, **view_options: Any) -> Tail:
        """Follow committed events live, from any process (see :mod:`runlog.tail`).

        Yields events with ``seq > after`` as they are committed (or, with
        ``view="log"|"events"``, the view's items for one run), plus a
        :class:`~runlog.tail.TailNotice` when a followed run's writer died. A run that
        does not exist yet is waited for. ``until_end`` stops after the run's (or the
        trace root's) end; ``idle_timeout`` stops after that many seconds without an
        item. Resume with ``after=tail.cursor``: nothing is skipped or repeated.
        """
        from runlog.tail import open_tail

        t = open_tail(self.backend, after=after, run_id=run_id, trace_id=trace_id,
                      filter=filter, view=view, until_end=until_end,
                      idle_timeout=idle_timeout, resolve=self.resolve_run_id,
                      page_size=page_size, poll_interval=poll_interval,
                      view_options=view_options)
        assert isinstance(t, Tail)
        return t

    def atail(self, after: int = 0, run_id: str | None = None, trace_id: str | None = None,
              filter: Filter | None = None, view: View = "raw", until_end: bool = False,
              idle_timeout: float | None = None, *, poll_interval: float = 0.1,
              page_size: int = 1000, **view_options: Any) -> ATail:
        """``tail`` for async code (asyncio or trio): ``async with store.atail() as t``."""
        from runlog.tail import open_tail

        t = open_tail(self.backend, after=after, run_id=run_id, trace_id=trace_id,
                      filter=filter, view=view, until_end=until_end,
                      idle_timeout=idle_timeout, resolve=self.resolve_run_id,
                      page_size=page_size, poll_interval=poll_interval,
                      view_options=view_options, asynchronous=True)
        assert isinstance(t, ATail)
        return t

    def replay(self, run_id: str, view: View = "raw", *, filter: Filter | None = None,
               **view_options: Any) -> Iterator[Any]:
        """Replay a recorded run (and its descendants).

        ``view="raw"`` yields the stored :class:`Event` objects, whose ``raw`` bytes are
        exactly what was written and what a live reader saw.
        """
        if view == "raw":
            if view_options:
                raise TypeError(f"view 'raw' takes no options, got {sorted(view_options)}")
            return self.events(run_id, filter=filter, descendants=True)
        from_views = _views()
        if view not in from_views:
            raise ValueError(f"unknown view {view!r}; choose raw, log or events")
        return from_views[view](self.events(run_id, descendants=True), filter=filter,
                                **view_options)

    def state_at(self, run_id: str, seq: int | None = None, *, filter: Filter | None = None,
                 with_streamed_output_list: bool = True) -> Any:
        """The log view's ``RunState`` of a run as of ``seq`` (None: everything committed).

        Folds the run's subtree with :mod:`runlog.reducers`; an index per run keeps a
        cursor and periodic checkpoints, so asking again for a later (or an earlier)
        seq reads only the events in between (``docs/views.md``).
        """
        from runlog.reducers import StateIndex

        rid = self.resolve_run_id(run_id)
        key = (rid, filter, with_streamed_output_list)
        indexes = self._state_indexes
        index = indexes.get(key)
        if index is None:
            if len(indexes) >= 64:
                indexes.pop(next(iter(indexes)))
            index = indexes[key] = StateIndex(
                lambda after, until: self.events(rid, after=after, until=until,
                                                 descendants=True),
                filter=filter, with_streamed_output_list=with_streamed_output_list)
        return index.state_at(seq)

    # -- integrity -------------------------------------------------------------------
    def verify(self, *, trace_id: str | None = None) -> VerifyReport:
        """Recompute every run's hash chain (and check seq has no gaps).

        Returns the first broken link: an event whose bytes no longer hash to the stored
        digest chained to its run's previous event. Seqs a recorded prune removed
        (``store.prune``) are not gaps; a seq stored inside such a range is an error.
        A prune that ran meanwhile makes the check start again (twice at most).
        """
        for _ in range(3):
            before = len(self.backend.prunes())
            report = self._verify(trace_id)
            if report.ok or len(self.backend.prunes()) == before:
                return report
        return report

    def _verify(self, trace_id: str | None) -> VerifyReport:
        from runlog.store.prune import PrunedSeqs

        pruned = PrunedSeqs(self.backend.prunes())
        last: dict[str, bytes | None] = {}
        count = 0
        expected_seq = None
        q = EventQuery(after=0, limit=5000, trace_id=trace_id, digests=True)
        projection: dict[str, list[Any]] = {}
        top = 0
        # Rows, not events: a digest that is not hex or bytes that are not an envelope
        # are findings to report, not errors of the read.
        while True:
            rows, high = self.backend.read_rows(q)
            for seq, raw, digest_hex in rows:
                count += 1
                if trace_id is None:
                    expected = 1 if expected_seq is None else expected_seq
                    if seq != expected and not pruned.covers(expected, seq - 1):
                        return VerifyReport(count, len(last), False,
                                            f"seq jumps from {expected - 1} to {seq}"
                                            + (" (not a range a prune removed)"
                                               if len(pruned) else ""), seq)
                    if seq in pruned:
                        return VerifyReport(count, len(last), False,
                                            f"seq {seq} is stored, but a recorded prune "
                                            "removed it", seq)
                    expected_seq = seq + 1
                try:
                    env = orjson.loads(raw)
                    run_id, kind = env["run_id"], env["kind"]
                    if type(run_id) is not str:
                        raise TypeError(run_id)
                except Exception:
                    return VerifyReport(count, len(last), False,
                                        f"seq {seq}: the stored bytes are not a runlog "
                                        "envelope", seq)
                try:
                    digest = bytes.fromhex(bytes(digest_hex).decode("ascii"))
                except (ValueError, UnicodeDecodeError):
                    return VerifyReport(count, len(last), False,
                                        f"seq {seq} (run {run_id}): the stored digest is not "
                                        "hex", seq)
                want = chain_digest(last.get(run_id), bytes(raw))
                if want != digest:
                    return VerifyReport(
                        count, len(last), False,
                        f"seq {seq} (run {run_id}): stored bytes do not match the hash chain",
                        seq)
                last[run_id] = want
                seen = projection.get(run_id)
                if seen is None:
                    projection[run_id] = seen = [
                        (env.get("trace_id"), env.get("parent_id"), env.get("name"),
                         env.get("run_type"), seq), 0, None]
                seen[1] += 1
                if kind == "end":
                    seen[2] = seq
                top = seq
            if len(rows) < q.limit:
                break
            q = replace(q, after=high)
        column = self.backend.check_columns(trace_id)
        if column is not None:
            return VerifyReport(count, len(last), False, column[1], column[0])
        runs_row = self._check_runs_table(projection, top, trace_id)
        if runs_row is not None:
            return VerifyReport(count, len(last), False, runs_row[0], runs_row[1])
        return VerifyReport(count, len(last), True, pruned_events=pruned.events)

    def _check_runs_table(self, projection: dict[str, list[Any]], top: int,
                          trace_id: str | None) -> tuple[str, int] | None:
        """The runs table against the events: each run's row is what its events say.

        ``projection`` holds, per run, what its start event gives (trace, parent, name,
        type, seq), its event count and its end's seq, up to ``top``. Runs that started
        after ``top`` (recorded while verify ran) are not compared, nor an end after it.
        """
        rows = {r.run_id: r for r in self.runs(trace_id=trace_id, newest_first=False)}
        for run_id, (start, n, end_seq) in projection.items():
            info = rows.get(run_id)
            if info is None:
                return (f"run {run_id} has events (from seq {start[4]}) but no row in the "
                        "runs table", start[4])
            got = (info.trace_id, info.parent_id, info.name, info.run_type, info.start_seq)
            if got != start:
                return (f"run {run_id}: its row in the runs table (trace, parent, name, "
                        f"type, start seq) is {got}, its start event says {start}",
                        start[4])
            if info.end_seq is not None and info.end_seq <= top and (
                    info.end_seq != end_seq or info.event_count != n):
                return (f"run {run_id}: its row in the runs table says it ended at seq "
                        f"{info.end_seq} after {info.event_count} events, its events say "
                        f"{end_seq} after {n}", start[4])
        for run_id, info in rows.items():
            if run_id not in projection and info.start_seq <= top:
                return (f"run {run_id} is in the runs table but has no events",
                        info.start_seq)
        return None

    # -- keeping a store for months (runlog/lifecycle.py, docs/storage.md) ------------
    def prune(self, before: dt.datetime | dt.timedelta | int, *, trace_id: str | None = None,
              tag: str | None = None, archive: str | os.PathLike[str] | None = None,
              dry_run: bool = False, vacuum: bool = False, batch_events: int = 5000,
              progress: Callable[[int, int], None] | None = None) -> PruneReport:
        """Remove whole traces that were over before ``before``, oldest history first.

        ``before`` is a datetime (naive means UTC), an age (``timedelta``: that long
        ago) or epoch microseconds. A trace goes only when every run of it ended, or
        was abandoned, before then; ``trace_id`` narrows to one trace, ``tag`` to traces
        whose root run carries it. The store's newest trace always stays. With
        ``archive``, the traces are first written to that new JSONL file (what
        ``runlog import`` reads) and checked; nothing is removed otherwise. Removal runs
        in batches of about ``batch_events`` events, each one short transaction, and
        records who removed what in the store (``runlog verify`` then accepts the gaps).
        Freed space is given back where the backend can (SQLite: incremental vacuum in
        short steps; a store made before that keeps it for new events, unless
        ``vacuum=True`` runs one VACUUM; PostgreSQL: a plain VACUUM).
        ``dry_run`` only reports what would go.
        """
        from runlog.lifecycle import prune

        return prune(self, before, trace_id=trace_id, tag=tag, archive=archive,
                     dry_run=dry_run, vacuum=vacuum, batch_events=batch_events,
                     progress=progress)

    def prunes(self) -> list[PruneRecord]:
        """Every recorded prune batch (who, when, what), oldest first."""
        return self.backend.prunes()

    def stats(self, top: int = 10) -> StoreStats:
        """Events, runs, traces, bytes on disk (by run type, largest traces, per day)."""
        return self.backend.stats(top)

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, end this process's lease and release the backend."""
        if self._closed:
            return
        self._closed = True
        try:
            self.writer.close()
        finally:
            self.backend.close()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    @property
    def health(self) -> dict[str, Any]:
        """Writer counters: queued events, failed commits, the last error."""
        return {
            "pending": self.writer.pending(),
            "failures": self.writer.failures,
            "last_error": str(self.writer.last_error) if self.writer.last_error else None,
            "commit_failures_at_end": self.recorder.commit_failures,
        }


def _views() -> dict[str, Callable[..., Iterator[Any]]]:
    """The derived views, registered by :mod:`runlog.reducers` when it is present."""
    try:
        from runlog.reducers import VIEWS
    except ImportError:  # pragma: no cover - reducers ship with the package
        raise StoreError("the log/events views need runlog.reducers") from None
    views: dict[str, Callable[..., Iterator[Any]]] = VIEWS
    return views
