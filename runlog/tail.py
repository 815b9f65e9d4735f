"""Live tail: follow committed events as any process commits them.

``store.tail(...)`` returns a :class:`Tail` (a blocking iterator) and
``store.atail(...)`` an :class:`ATail` (an async iterator for asyncio and trio through
anyio). Both drive the same non-blocking core, :class:`Follower`, which reads one page
per step from a cursor and never holds a read transaction between steps (so a tailer
left open for hours never pins SQLite's WAL).

Guarantees (tested in ``tests/test_tail*.py``):

* **Never skip, never repeat.** The cursor is the store's high-water mark: after a
  page, every event with ``seq <= cursor`` that matches has been yielded. ``seq`` is
  assigned in commit order without gaps, so a reader restarted with
  ``after=tail.cursor`` continues exactly where it stopped.
* **Committed only.** Events come from ``Backend.read``; nothing is invented. The one
  synthetic item is a :class:`TailNotice`, a different type that is never an
  :class:`~runlog.events.Event` and never stored.
* **Reconnects.** A read that finds the server unreachable (a dropped connection the
  backend's one retry could not replace: a restart in progress) raises
  :class:`~runlog.errors.StoreUnavailableError` out of :meth:`Follower.step` without
  moving the cursor or changing any state; the tail waits one poll interval and steps
  again, so it resumes exactly at its cursor once the server is back.
* **Liveness.** When a followed run is still open and its writer's lease expired, the
  tail yields ``TailNotice(kind="abandoned", ...)`` after every event that writer
  committed, instead of waiting forever.

Waking up: the backend's :class:`~runlog.store.base.ChangeWaiter` (inotify on SQLite,
a condition in memory) says "something may have been committed". On SQLite a wake can
come *before* the commit is visible (the WAL is written before the wal-index is
updated), so after a wake that found nothing the tail re-reads on a short back-off
(0.2 ms doubling to 32 ms) before falling back to the slow poll.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeAlias

import anyio
import anyio.to_thread
import orjson

from runlog.errors import StoreUnavailableError, UnknownRunError
from runlog.events import Event
from runlog.filters import Filter
from runlog.store.base import Backend, ChangeWaiter, EventQuery

__all__ = [
    "ATail",
    "Follower",
    "Tail",
    "TailItem",
    "TailNotice",
    "View",
]

View: TypeAlias = Literal["raw", "log", "events"]

RETRY_BACKOFF: tuple[float, ...] = (0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032)
"""Re-read delays after a wake that found no new commit (seconds), then ``poll_interval``."""

MAX_LIVENESS_CHECKS = 16
"""Open runs whose status one liveness round looks up, at most (round-robin beyond)."""


@dataclass(frozen=True, slots=True)
class TailNotice:
    """Something the tail observed that is not a stored event.

    Only ``kind="abandoned"`` exists: the run ``run_id`` is open but its writer's lease
    expired (the process died or hung), so no more events should be expected. Every
    event that writer committed has been yielded before the notice; ``cursor`` is the
    position to resume from. A run's descendants are covered by the notice for the
    run. If the writer was only paused and writes again, the run's events keep coming
    (and a later expiry is reported again).
    """

    kind: Literal["abandoned"]
    run_id: str
    cursor: int
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"notice": self.kind, "run_id": self.run_id, "name": self.name,
                "cursor": self.cursor}

    def json_line(self) -> bytes:
        """One JSON line, told apart from events by its ``"notice"`` key (events have
        ``"seq"`` first)."""
        return orjson.dumps(self.to_dict()) + b"\n"


TailItem: TypeAlias = Event | TailNotice


@dataclass
class _Open:
    parent_id: str | None
    name: str
    last_seen: float


_KINDS = {b"start": "start", b"stream": "stream", b"end": "end"}


def _peek(e: Event) -> tuple[str, str]:
    """An event's kind and run id without decoding its envelope.

    The envelope's first keys are always ``kind`` then ``run_id`` (docs/event-model.md),
    so both are read from the stored bytes; anything unusual (an escaped character in
    the id) falls back to the full decode. A tail of a busy store then decodes only
    what its consumer touches (``runlog tail --json`` decodes nothing).
    """
    raw = e.raw
    i = raw.find(b'","run_id":"', 9, 32)
    if i > 0 and raw.startswith(b'{"kind":"'):
        kind = _KINDS.get(raw[9:i])
        start = i + 12
        end = raw.find(b'"', start)
        if kind is not None and end > 0:
            rid = raw[start:end]
            if b"\\" not in rid:
                return kind, rid.decode()
    return e.kind, e.run_id


class Follower:
    """The non-blocking core of a tail: :meth:`step` reads at most one page.

    Modes:

    * global (no run, no trace): every event, the filter pushed down to the backend;
    * a run (``run_id``) and its descendants, or a whole trace (``trace_id``, whose
      root run has the trace's id): events of the trace are read unfiltered, subtree
      membership is tracked from start events (a start whose parent is a member makes
      a member), and the filter is applied in Python. The followed run need not exist
      yet; the follower waits for it.

    Not thread-safe: one caller at a time (the async tail hops between worker threads
    but never runs two steps at once).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        after: int = 0,
        run_id: str | None = None,
        trace_id: str | None = None,
        filter: Filter | None = None,
        until_end: bool = False,
        resolve: Callable[[str], str] | None = None,
        page_size: int = 1000,
        liveness_interval: float = 0.25,
        end_on_abandoned: bool | None = None,
    ) -> None:
        if run_id is not None and trace_id is not None:
            raise ValueError("tail follows a run or a trace, not both: pass run_id or trace_id")
        if until_end and run_id is None and trace_id is None:
            raise ValueError("until_end needs a run_id or a trace_id to wait for the end of")
        if after < 0:
            raise ValueError(f"after must be a seq (>= 0), got {after}")
        self.backend = backend
        self.cursor = after
        """Every matching event with ``seq <= cursor`` has been returned by a step."""
        self.filter = filter if filter is not None and not filter.is_empty else None
        self.until_end = until_end
        self.end_on_abandoned = until_end if end_on_abandoned is None else end_on_abandoned
        self.page_size = page_size
        self.liveness_interval = liveness_interval
        self.done = False
        self._want = run_id if run_id is not None else trace_id
        self._is_trace = trace_id is not None
        self._resolve = resolve
        self.root: str | None = None
        """The followed run, once it exists (``None`` in global mode)."""
        self._trace: str | None = None
        self._members: set[str] | None = None
        self._open: dict[str, _Open] = {}
        self._pending: list[str] = []
        self._next_check = 0.0
        self._rr = 0

    @property
    def waiting_for_run(self) -> bool:
        """True while the followed run does not exist yet."""
        return self._want is not None and self.root is None

    @property
    def watching(self) -> bool:
        """True when a liveness check may be due (open runs are being followed)."""
        return bool(self._open) and not self.done

    def next_check_in(self, now: float) -> float:
        return max(self._next_check - now, 0.0)

    # -- the followed run ------------------------------------------------------------
    def _find_root(self) -> bool:
        want = self._want
        assert want is not None
        try:
            rid = want if self._is_trace or self._resolve is None else self._resolve(want)
        except UnknownRunError:
            return False
        info = self.backend.get_run(rid)
        if info is None:
            return False
        if rid != info.trace_id:  # a run inside a trace: follow its subtree
            children: dict[str | None, list[str]] = {}
            for r in self.backend.trace_runs(info.trace_id):
                children.setdefault(r.parent_id, []).append(r.run_id)
            members, todo = {rid}, [rid]
            while todo:
                for c in children.get(todo.pop(), ()):
                    if c not in members:
                        members.add(c)
                        todo.append(c)
            self._members = members
        # Only now, every read done: a read that fails leaves the follower as it was.
        self.root, self._trace = rid, info.trace_id
        if info.end_seq is None:
            self._open[rid] = _Open(info.parent_id, info.name, time.monotonic())
        elif self.until_end and info.end_seq <= self.cursor:
            self.done = True  # it ended before our cursor: nothing more to follow
        return True

    # -- one step ----------------------------------------------------------------------
    def step(self, now: float | None = None) -> tuple[list[TailItem], bool]:
        """Read one page after the cursor.

        Returns the items to yield (events, then any notices) and whether more pages
        are known to be waiting (the caller should step again without waiting).
        """
        if self.done:
            return [], False
        if now is None:
            now = time.monotonic()
        if self._want is not None and self.root is None and (
                not self._find_root() or self.done):
            return [], False
        suspects = self._liveness(now)
        root_mode = self._want is not None
        q = EventQuery(after=self.cursor, limit=self.page_size, trace_id=self._trace,
                       filter=None if root_mode else self.filter)
        try:
            page, high = self.backend.read(q)
        except BaseException:
            self._pending = suspects  # reported by the step that reads past them
            raise
        items: list[TailItem] = []
        f, members, root = self.filter, self._members, self.root
        for e in page:
            kind, rid = _peek(e)
            if root_mode:
                if members is not None and rid not in members:
                    if kind == "start" and e.parent_id in members:
                        members.add(rid)
                    else:
                        continue
                self._track(e, kind, rid, now)
                if f is None or f.matches(e):
                    items.append(e)
                if self.until_end and rid == root and kind == "end":
                    self.done = True
                    self.cursor = e.seq
                    return items, False
            else:
                if f is not None and not f.matches(e):
                    continue
                self._track(e, kind, rid, now)
                items.append(e)
        self.cursor = max(self.cursor, high)
        more = len(page) >= self.page_size
        if suspects and not more:
            items.extend(self._report(suspects))
        elif suspects:
            self._pending = suspects  # report once the rest of what they wrote is read
        return items, more

    def _track(self, e: Event, kind: str, rid: str, now: float) -> None:
        if kind == "end":
            self._open.pop(rid, None)
            return
        o = self._open.get(rid)
        if o is None:
            self._open[rid] = _Open(e.parent_id, e.name, now)
        else:
            o.last_seen = now

    # -- liveness ------------------------------------------------------------------------
    def _liveness(self, now: float) -> list[str]:
        """Open runs whose writer is gone (checked at most every ``liveness_interval``).

        Only quiet runs (no event for an interval) whose parent is not itself open are
        looked up: a run that is streaming has a live writer, and a parent's status
        covers its descendants.
        """
        if self._pending:
            suspects, self._pending = self._pending, []
            return suspects
        if not self._open or now < self._next_check:
            return []
        self._next_check = now + self.liveness_interval
        quiet_before = now - self.liveness_interval
        tops = [rid for rid, o in self._open.items()
                if o.parent_id not in self._open and o.last_seen <= quiet_before]
        if not tops:
            return []
        if len(tops) > MAX_LIVENESS_CHECKS:
            start = self._rr % len(tops)
            tops = (tops[start:] + tops[:start])[:MAX_LIVENESS_CHECKS]
            self._rr += MAX_LIVENESS_CHECKS
        suspects = []
        for rid in tops:
            try:
                info = self.backend.get_run(rid)
            except BaseException:
                self._pending = suspects
                raise
            if info is None:
                continue
            if info.status == "abandoned":
                suspects.append(rid)
            elif info.status != "running":
                self._open.pop(rid, None)  # ended; its end did not pass our view
        return suspects

    def _report(self, suspects: list[str]) -> list[TailItem]:
        out: list[TailItem] = []
        for rid in suspects:
            o = self._open.get(rid)
            if o is None:  # its end arrived in the meantime
                continue
            gone = {rid}
            changed = True
            while changed:  # drop its open descendants: the notice covers them
                changed = False
                for other, oo in self._open.items():
                    if other not in gone and oo.parent_id in gone:
                        gone.add(other)
                        changed = True
            for g in gone:
                self._open.pop(g, None)
            out.append(TailNotice("abandoned", rid, self.cursor, o.name))
            if rid == self.root and self.end_on_abandoned:
                self.done = True
        return out


# ----------------------------------------------------------------------------- drivers


class _Pacer:
    """How long to wait next: the slow poll, or the re-read back-off after a wake."""

    def __init__(self, poll_interval: float, idle_timeout: float | None) -> None:
        self.poll_interval = poll_interval
        self.idle_timeout = idle_timeout
        self.last_item = time.monotonic()
        self._retry = 0
        self._woke = False

    def after_step(self, progressed: bool) -> None:
        if progressed:
            self._retry = 0
        elif self._woke or self._retry > 0:
            # A wake found nothing: the commit may not be visible yet. Re-read on the
            # back-off, then fall back to the slow poll.
            self._retry += 1
            if self._retry > len(RETRY_BACKOFF):
                self._retry = 0
        self._woke = False

    def timeout(self, follower: Follower, now: float) -> float:
        t = self.poll_interval
        if 0 < self._retry <= len(RETRY_BACKOFF):
            t = min(t, RETRY_BACKOFF[self._retry - 1])
        if follower.watching:
            t = min(t, max(follower.next_check_in(now), 0.001))
        if self.idle_timeout is not None:
            t = min(t, max(self.last_item + self.idle_timeout - now, 0.0))
        return t

    def waited(self, timeout: float, elapsed: float) -> None:
        self._woke = elapsed < timeout * 0.9

    def idle_expired(self, now: float) -> bool:
        return self.idle_timeout is not None and now - self.last_item >= self.idle_timeout


class Tail(Iterator[Any]):
    """A blocking iterator over committed events (or view items); see :mod:`runlog.tail`.

    ``cursor`` is the position to resume from (``store.tail(after=tail.cursor)``): the
    seq of the last event handed out, or the high-water mark once a page is consumed.
    Close it (or use it as a context manager) to release its file descriptor.
    """

    def __init__(self, follower: Follower, waiter: ChangeWaiter, *,
                 idle_timeout: float | None = None, poll_interval: float = 0.1,
                 view: Callable[[Iterator[Event]], Iterator[Any]] | None = None) -> None:
        self.follower = follower
        self.waiter = waiter
        self._pacer = _Pacer(poll_interval, idle_timeout)
        self._buf: deque[TailItem] = deque()
        self._cursor = follower.cursor
        self._closed = False
        self._stop = threading.Event()
        self._notices: list[TailNotice] = []
        self._items: Iterator[Any] | None = None
        if view is not None:
            self._items = _with_notices(view(self._events_only()), self._notices)

    @property
    def cursor(self) -> int:
        return self._cursor

    @property
    def buffered(self) -> int:
        """Items already read and not yet handed out (0: the next ``next()`` may block)."""
        return len(self._buf)

    def __iter__(self) -> Tail:
        return self

    def __next__(self) -> Any:
        if self._items is not None:
            try:
                return next(self._items)
            except StopIteration:
                self.close()
                raise
        return self._next_raw()

    def _next_raw(self) -> TailItem:
        f, pacer = self.follower, self._pacer
        while True:
            if self._buf:
                item = self._buf.popleft()
                self._cursor = item.seq if isinstance(item, Event) else item.cursor
                if not self._buf:
                    self._cursor = max(self._cursor, f.cursor)
                return item
            if self._closed or f.done or self._stop.is_set():
                self.close()
                raise StopIteration
            now = time.monotonic()
            before = f.cursor
            try:
                items, more = f.step(now)
            except StoreUnavailableError:  # the server is away: wait, then read again
                if pacer.idle_expired(now):
                    self.close()
                    raise StopIteration from None
                self.waiter.wait(pacer.poll_interval)
                continue
            if not items:
                self._cursor = f.cursor
            pacer.after_step(f.cursor > before or bool(items))
            if items:
                pacer.last_item = time.monotonic()
                self._buf.extend(items)
                continue
            if more or f.done:
                continue
            if pacer.idle_expired(now):  # caught up, and quiet for idle_timeout
                self.close()
                raise StopIteration
            timeout = pacer.timeout(f, now)
            t0 = time.monotonic()
            self.waiter.wait(timeout)
            pacer.waited(timeout, time.monotonic() - t0)

    def _events_only(self) -> Iterator[Event]:
        """The raw stream a view consumes: events only; notices are kept for after it."""
        while True:
            try:
                item = self._next_raw()
            except StopIteration:
                return
            if isinstance(item, TailNotice):
                self._notices.append(item)
            else:
                yield item

    def stop(self) -> None:
        """Ask a tail blocked in another thread to end soon (within one poll interval)."""
        self._stop.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self.waiter.close()

    def __enter__(self) -> Tail:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _with_notices(items: Iterator[Any], notices: list[TailNotice]) -> Iterator[Any]:
    """A view's items, then the notices its input ended on (a view ends when the run
    ends or is abandoned; the notice tells the two apart)."""
    yield from items
    yield from notices


class ATail(AsyncIterator[Any]):
    """The async twin of :class:`Tail` (asyncio or trio, through anyio).

    Reads run in worker threads (``anyio.to_thread``) and waits in
    ``ChangeWaiter.await_change``, so the event loop is never blocked. The log/events
    views are folded by a sync :class:`Tail` driven from worker threads, one item per
    hop.
    """

    def __init__(self, follower: Follower, waiter: ChangeWaiter, *,
                 idle_timeout: float | None = None, poll_interval: float = 0.1,
                 view: Callable[[Iterator[Event]], Iterator[Any]] | None = None) -> None:
        self.follower = follower
        self.waiter = waiter
        self._pacer = _Pacer(poll_interval, idle_timeout)
        self._buf: deque[TailItem] = deque()
        self._cursor = follower.cursor
        self._closed = False
        self._sync: Tail | None = None
        self._busy = False
        if view is not None:
            self._sync = Tail(follower, waiter, idle_timeout=idle_timeout,
                              poll_interval=min(poll_interval, 0.05), view=view)

    @property
    def cursor(self) -> int:
        return self._sync.cursor if self._sync is not None else self._cursor

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def __aiter__(self) -> ATail:
        return self

    async def __anext__(self) -> Any:
        if self._sync is not None:
            return await self._anext_view(self._sync)
        f, pacer = self.follower, self._pacer
        while True:
            if self._buf:
                item = self._buf.popleft()
                self._cursor = item.seq if isinstance(item, Event) else item.cursor
                if not self._buf:
                    self._cursor = max(self._cursor, f.cursor)
                return item
            if self._closed or f.done:
                await self.aclose()
                raise StopAsyncIteration
            now = time.monotonic()
            before = f.cursor
            try:
                items, more = await anyio.to_thread.run_sync(f.step, now)
            except StoreUnavailableError:  # the server is away: wait, then read again
                await self.waiter.await_change(pacer.poll_interval)
                continue
            if not items:
                self._cursor = f.cursor
            pacer.after_step(f.cursor > before or bool(items))
            if items:
                pacer.last_item = time.monotonic()
                self._buf.extend(items)
                continue
            if more or f.done:
                continue
            if pacer.idle_expired(now):
                await self.aclose()
                raise StopAsyncIteration
            timeout = pacer.timeout(f, now)
            t0 = time.monotonic()
            await self.waiter.await_change(timeout)
            pacer.waited(timeout, time.monotonic() - t0)

    async def _anext_view(self, sync: Tail) -> Any:
        done = object()

        def pull() -> Any:
            try:
                return next(sync)
            except StopIteration:
                return done
            finally:
                self._busy = False
                if self._closed:  # cancelled while we were blocked: finish the close here
                    sync.close()

        self._busy = True
        try:
            item = await anyio.to_thread.run_sync(pull, abandon_on_cancel=True)
        except BaseException:
            self._closed = True
            sync.stop()  # the abandoned thread ends within one poll interval
            raise
        if item is done:
            await self.aclose()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if self._closed and (self._sync is None or self._busy):
            return
        self._closed = True
        if self._sync is not None:
            if self._busy:
                self._sync.stop()
            else:
                self._sync.close()
            return
        self.waiter.close()

    async def __aenter__(self) -> ATail:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


def view_function(view: View, filter: Filter | None,
                  options: dict[str, Any]) -> Callable[[Iterator[Event]], Iterator[Any]] | None:
    """The fold for a derived view (``None`` for raw), from :mod:`runlog.reducers`."""
    if view == "raw":
        if options:
            raise TypeError(f"view 'raw' takes no options, got {sorted(options)}")
        return None
    try:
        from runlog.reducers import VIEWS
    except ImportError:  # pragma: no cover - the reducers ship with the package
        raise ValueError(f"the {view!r} view needs runlog.reducers, which is missing") from None
    views: dict[str, Callable[..., Iterator[Any]]] = VIEWS
    if view not in views:
        raise ValueError(f"unknown view {view!r}; choose raw, log or events")
    fold = views[view]

    def apply(events: Iterator[Event]) -> Iterator[Any]:
        return fold(events, filter=filter, **options)

    return apply


def open_tail(
    backend: Backend,
    *,
    after: int = 0,
    run_id: str | None = None,
    trace_id: str | None = None,
    filter: Filter | None = None,
    view: View = "raw",
    until_end: bool = False,
    idle_timeout: float | None = None,
    resolve: Callable[[str], str] | None = None,
    page_size: int = 1000,
    poll_interval: float = 0.1,
    liveness_interval: float = 0.25,
    asynchronous: bool = False,
    view_options: dict[str, Any] | None = None,
) -> Tail | ATail:
    """Build a :class:`Tail` or :class:`ATail` (``Store.tail``/``atail`` call this).

    A derived view (``"log"``/``"events"``) follows one run to its end: it needs
    ``run_id`` or ``trace_id``, reads the run's events unfiltered and hands the filter
    to the fold (as ``Store.replay`` does), and ends when the run ends or is abandoned
    (the notice then comes last).
    """
    fold = view_function(view, filter, dict(view_options or {}))
    if fold is not None:
        if run_id is None and trace_id is None:
            raise ValueError(f"the {view!r} view folds one run: pass run_id or trace_id")
        follower = Follower(backend, after=after, run_id=run_id, trace_id=trace_id,
                            filter=None, until_end=True, resolve=resolve,
                            page_size=page_size, liveness_interval=liveness_interval)
    else:
        follower = Follower(backend, after=after, run_id=run_id, trace_id=trace_id,
                            filter=filter, until_end=until_end, resolve=resolve,
                            page_size=page_size, liveness_interval=liveness_interval)
    waiter = backend.change_waiter()
    cls = ATail if asynchronous else Tail
    try:
        return cls(follower, waiter, idle_timeout=idle_timeout, poll_interval=poll_interval,
                   view=fold)
    except BaseException:
        with contextlib.suppress(Exception):
            waiter.close()
        raise
