"""One background writer per store and process, with group commit.

Recording a chunk puts a :class:`~runlog.store.base.Pending` on a queue and returns:
no disk I/O, no lock wait, no await. The writer thread takes everything queued (up to
``max_batch``) and commits it in one transaction, so under load the batch grows by
itself and the commit cost is shared (``../shared/perf-baselines.md``: >=100 events
per commit reaches the bulk rate), while an idle store commits a lone event at once.

Pacing: a commit has a fixed cost (40 µs of CPU or more for SQLite, plus the writer's
wake-up and GIL hand-offs) whatever its size, and a model streaming a token every
100 µs would pay it for nearly every token if the writer committed each one as it
came. So while events keep coming the writer commits at most once per
``commit_interval`` (2 ms by default) and lets them gather in between; an event
arriving after a quiet spell is committed at once, and :meth:`Writer.flush` or
:meth:`Writer.close` end the wait immediately. The cost: under a continuous stream a
tailing reader sees an event up to ``commit_interval`` later. ``commit_interval=0``
commits as soon as the writer is free.

What *acknowledged* means: an event is acknowledged when :meth:`Writer.flush` (or the
end of a root run, which flushes) has returned after it was recorded. Acknowledged
events are committed; with ``durable=True`` they are also fsynced. A ``kill -9`` loses
only events that were not acknowledged yet: those still on the queue or in the batch
being committed.

Failures: a busy database (another process writing) is retried silently, but nobody
waits for it forever: :meth:`flush` takes a timeout, and a producer held back by
``max_pending`` gets :class:`~runlog.errors.NotCommittedError` after
``backpressure_timeout`` seconds. A failure of the store (disk full, I/O error) keeps
the batch, is logged, counted in :attr:`Writer.failures`, retried with backoff, and
makes :meth:`flush` raise :class:`~runlog.errors.WriteError` while it lasts.

An event the store refuses (a constraint such as the one start per run id, a value
out of the column's range) is isolated: the batch is split in halves until the
refused event stands alone, everything else commits, and that event is dropped and
recorded as *rejected*. A rejected run's later events are dropped too (they would
chain onto an event the store does not have); its next call raises
:class:`~runlog.errors.EventRejectedError`, and so does the next :meth:`flush` and the
end of its root run. A store SQLite reports as damaged stops the writer: every later
call and flush raises :class:`~runlog.errors.CorruptStoreError`.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field

from runlog.errors import (
    AppendOnlyError,
    CorruptStoreError,
    EventRejectedError,
    NotCommittedError,
    StoreError,
    WriteError,
)
from runlog.events import now_micros
from runlog.ids import new_run_id
from runlog.store.base import Backend, Pending, WriterInfo

__all__ = ["Writer"]

log = logging.getLogger("runlog")


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


_STOP = object()
_yield_gil = time.sleep
_live: weakref.WeakSet[Writer] = weakref.WeakSet()


class Writer:
    """The group-commit writer thread of one store in one process."""

    def __init__(
        self,
        backend: Backend,
        *,
        lease_seconds: float = 10.0,
        heartbeat_seconds: float | None = None,
        max_batch: int = 1000,
        max_pending: int = 1_000_000,
        commit_interval: float = 0.002,
        backpressure_timeout: float = 60.0,
    ) -> None:
        self.backend = backend
        self.lease_us = int(lease_seconds * 1_000_000)
        self.heartbeat_seconds = heartbeat_seconds or max(lease_seconds / 4, 0.05)
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.commit_interval = commit_interval
        self.backpressure_timeout = backpressure_timeout
        self.failures = 0
        self.rejections = 0
        self._rejected: dict[str, tuple[str, str]] = {}  # run_id -> (trace_id, message)
        self._unreported: list[tuple[str, str]] = []  # (trace_id, message) for flush()
        self._fatal: StoreError | None = None
        self.last_error: BaseException | None = None
        self.committed_seq = 0
        self._start_lock = threading.Lock()
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self.info = WriterInfo(writer_id=new_run_id(), pid=os.getpid(), lease_us=self.lease_us)
        self._q: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._hurry = threading.Event()  # flush/close: stop pacing, commit now
        self._thread: threading.Thread | None = None
        self._closed = False
        self._puts = 0
        self._done = 0  # events the writer thread finished with (committed or rejected)
        self._beat_at = -1e9  # time.monotonic() of the last heartbeat written

    # -- producer side -----------------------------------------------------------
    def put(self, item: Pending) -> None:
        """Queue one event; never blocks on I/O (see ``max_pending`` for backpressure).

        Raises:
            WriteError: the store was closed (nothing would ever commit the event).
        """
        if self._closed or self._fatal is not None:
            if self._fatal is not None:
                raise self._fatal
            raise WriteError(
                f"the store {self.backend.location} is closed; open it again to record")
        if self._thread is None:
            self._start()
        puts = self._puts = self._puts + 1
        if puts & 0x7F == 0:
            # A producer recording in a tight loop holds the GIL for whole switch
            # intervals (5 ms), and the writer, back from a GIL-free INSERT, waits that
            # long for it on every batch. Handing the GIL over every 128 events keeps
            # the writer's wait short. The hand-over is a real sleep (about 60-80 us
            # here: Linux's timer slack; every 32 events, as before, the sleeps cost
            # append 0.34-0.40x raw against 0.42-0.54x, interleaved; os.sched_yield,
            # which does not sleep, did worse: the producer takes the GIL straight
            # back), so it is done only when events pile up (the writer
            # is busy and behind): a producer streaming tokens into a paced writer (or
            # from an event loop, which the sleep would stall) does not pay it.
            if self._q.qsize() >= 64:
                _yield_gil(0)
            if puts & 0x3FF == 0 and self._q.qsize() > self.max_pending:
                try:
                    self._backpressure()  # before queueing: a refused event is not queued
                except StoreError:
                    self._puts -= 1
                    raise
        self._q.put(item)

    def _backpressure(self) -> None:
        # The writer is far behind (a slow disk or a locked database): slow the producer
        # down rather than grow memory without bound, but never block it forever.
        deadline = time.monotonic() + self.backpressure_timeout
        while self._q.qsize() > self.max_pending // 2 and not self._closed:
            if self._fatal is not None:
                raise self._fatal
            if time.monotonic() > deadline:
                n = self.pending()
                raise NotCommittedError(
                    f"{n} events are waiting to be committed to {self.backend.location} "
                    f"and none went through for {self.backpressure_timeout} s (is another "
                    "process holding the write lock?); this event was not recorded", n)
            time.sleep(0.001)

    def pending(self) -> int:
        """Events recorded but not committed (nor rejected) yet.

        Exact with one producer thread; with several, ``put``'s unlocked counter may
        miss a concurrent increment, so it is then approximate.
        """
        return max(self._puts - self._done, 0)

    def rejected(self, run_id: str) -> str | None:
        """Why the store refused an event of ``run_id``, if it did."""
        found = self._rejected.get(run_id)
        return found[1] if found is not None else None

    def take_rejections(self, trace_id: str | None = None) -> list[str]:
        """Rejections not reported yet (of one trace, or all); each is reported once."""
        keep: list[tuple[str, str]] = []
        out: list[str] = []
        for t, msg in self._unreported:
            if trace_id is None or t == trace_id:
                out.append(msg)
            else:
                keep.append((t, msg))
        if out:
            self._unreported = keep
        return out

    def flush(self, timeout: float | None = None, *, report_rejections: bool = True) -> None:
        """Return once everything queued before this call is committed.

        Raises:
            NotCommittedError: ``timeout`` passed first (the events stay queued).
            WriteError: the writer cannot commit right now (the events stay queued).
            EventRejectedError: the store refused events since the last report (with
                ``report_rejections``); everything else is committed.
            CorruptStoreError: the store is damaged; the writer stopped.
        """
        if self._fatal is not None:
            raise self._fatal
        thread = self._thread
        if thread is None or (self._closed and not thread.is_alive()):
            self._report(report_rejections)
            return  # nothing was recorded, or close() already committed everything
        marker = _Flush()
        self._q.put(marker)
        self._hurry.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not marker.done.wait(0.05):
            if self._fatal is not None:
                raise self._fatal
            if self.last_error is not None:  # failing now: say so instead of hanging
                self._raise_write_error(self.last_error)
            if deadline is not None and time.monotonic() > deadline:
                n = self.pending()
                raise NotCommittedError(
                    f"{n} events not yet committed to {self.backend.location} within "
                    f"{timeout} s (is another process holding the write lock?); they stay "
                    "queued and the writer keeps retrying", n)
        if self._fatal is not None:
            raise self._fatal
        if marker.error is not None:
            self._raise_write_error(marker.error)
        self._report(report_rejections)

    def _report(self, report_rejections: bool) -> None:
        if report_rejections:
            found = self.take_rejections()
            if found:
                raise EventRejectedError("; ".join(found))

    def _raise_write_error(self, error: BaseException) -> None:
        n = self.pending()
        raise NotCommittedError(
            f"could not commit to {self.backend.location}: {error}. {n} events are not "
            "yet committed; they stay queued and are retried: free the disk or fix the "
            "store, then flush again", n) from error

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, end the lease and stop the thread.

        Raises:
            NotCommittedError: the queue could not be committed within ``timeout``
                (the thread keeps trying until the process exits).
        """
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._q.put(_STOP)
        self._hurry.set()
        thread.join(timeout)
        if thread.is_alive() and self._fatal is None:
            n = self.pending()
            raise NotCommittedError(
                f"closing {self.backend.location}: {n} events not committed within "
                f"{timeout} s; the writer keeps trying until the process exits", n)

    # -- writer thread -----------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            if self._closed:
                raise WriteError(f"the store {self.backend.location} is closed")
            t = threading.Thread(target=self._run, name="runlog-writer", daemon=True)
            self._thread = t
            t.start()

    def _run(self) -> None:
        q = self._q
        last_commit = 0.0
        last_size = 0
        stopping = False
        while not stopping:
            try:
                item = q.get(timeout=self.heartbeat_seconds)
            except queue.Empty:
                self._beat()
                continue
            # Pacing: while events keep coming, commit at most once per
            # ``commit_interval`` and let them gather meanwhile; an event after a quiet
            # spell, a flush and close are committed at once (see the module docstring).
            # A writer that is behind (full batches) never waits: that would only cut
            # its throughput.
            wait = last_commit + self.commit_interval - time.monotonic()
            if (wait > 0 and last_size < self.max_batch and q.qsize() < self.max_batch
                    and not isinstance(item, _Flush) and item is not _STOP
                    and self._hurry.wait(wait)):
                self._hurry.clear()
            batch: list[Pending] = []
            markers: list[_Flush] = []
            # this loop runs once per event, holding the GIL: events first, the rest after
            add, take, max_batch = batch.append, q.get_nowait, self.max_batch
            while True:
                if type(item) is Pending:
                    add(item)
                    if len(batch) >= max_batch:
                        break
                elif item is _STOP:
                    stopping = True
                    break
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    add(item)  # type: ignore[arg-type]  # a Pending subclass
                    if len(batch) >= max_batch:
                        break
                try:
                    item = take()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch, markers)
                last_commit = time.monotonic()
                last_size = len(batch)
            for m in markers:
                m.done.set()
            if not batch and time.monotonic() - self._beat_at > self.heartbeat_seconds:
                self._beat()
        self._drain_and_close()

    def _commit(self, batch: list[Pending], markers: list[_Flush]) -> None:
        if self._rejected or self._fatal is not None:
            if self._fatal is not None:
                return  # the store is damaged: nothing more is written (callers are told)
            rejected = self._rejected
            for p in batch:  # a run started under a refused one is refused with it: its
                if (p.kind == "start" and p.run_row  # parent id names another run here
                        and p.run_row[0] in rejected and p.run_id not in rejected):
                    rejected[p.run_id] = (p.trace_id, (
                        f"run {p.name!r} ({p.run_id}) started under run {p.run_row[0]}, "
                        "whose start the store refused: its events are not stored"))
            kept = [p for p in batch if p.run_id not in rejected]
            self._done += len(batch) - len(kept)
            batch = kept
            if not batch:
                return
        self._commit_retrying(batch, markers)

    def _commit_retrying(self, batch: list[Pending], markers: list[_Flush]) -> None:
        delay = 0.001
        while True:
            try:
                # the heartbeat rides along only when the last one is getting old: a
                # paced stream commits every few ms, and rewriting the writers row each
                # time costs a statement and a page per commit (the lease is 4x longer)
                now = time.monotonic()
                beat = now - self._beat_at >= self.heartbeat_seconds / 2
                self.committed_seq = self.backend.append(
                    batch, self.info, now_micros() if beat else None)
                if beat:
                    self._beat_at = now
                self._done += len(batch)
                if self.last_error is not None:
                    log.warning("runlog: writing to %s works again", self.backend.location)
                self.last_error = None
                return
            except Exception as e:
                if self.backend.is_transient(e):
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                if self.backend.is_corrupt(e):
                    self._stop_damaged(e, len(batch))
                    return
                if self._is_rejection(e):
                    self._isolate(batch, e)
                    return
                self.failures += 1
                if self.last_error is None:
                    log.error("runlog: cannot commit %d events to %s: %s (retrying)",
                              len(batch), self.backend.location, e)
                self.last_error = e
                for m in markers:  # tell waiting flushes now; the events stay pending
                    m.error = e
                    m.done.set()
                markers.clear()
                if self._closed and self.failures > 50:
                    log.error("runlog: giving up on %d events for %s after %d failures",
                              len(batch), self.backend.location, self.failures)
                    return
                time.sleep(min(delay, 1.0))
                delay = min(delay * 2, 1.0)

    def _is_rejection(self, e: Exception) -> bool:
        # AppendOnlyError is how the SQL backends report a violated constraint (the one
        # start per run id); OverflowError/ValueError are a value the driver cannot bind
        return (isinstance(e, (AppendOnlyError, OverflowError, ValueError))
                or self.backend.is_rejection(e))

    def _isolate(self, batch: list[Pending], error: Exception) -> None:
        """Commit everything of a refused batch but the refused event(s), by halves."""
        if len(batch) == 1:
            p = batch[0]
            self.rejections += 1
            msg = (f"the store {self.backend.location} refused the {p.kind} event of run "
                   f"{p.name!r} ({p.run_id}): {error}; that run's events from this one on "
                   "are not stored")
            log.error("runlog: %s", msg)
            self._rejected[p.run_id] = (p.trace_id, msg)
            self._done += 1
            self._unreported.append((p.trace_id, msg))
            return
        half = len(batch) // 2
        self._commit(batch[:half], [])
        self._commit(batch[half:], [])

    def _stop_damaged(self, error: Exception, n: int) -> None:
        self.failures += 1
        self.last_error = error
        self._fatal = CorruptStoreError(
            f"{self.backend.location} is damaged ({error}); recording stopped and "
            f"{n + self._q.qsize()} events were not stored. Check it with `runlog verify`, "
            "restore it from a backup or a `runlog export` file")
        log.error("runlog: %s", self._fatal)

    def _beat(self, closing: bool = False) -> None:
        try:
            now = time.monotonic()
            self.backend.heartbeat(self.info, now_micros(), closing=closing)
            self._beat_at = now
        except Exception as e:
            if not self.backend.is_transient(e):
                log.debug("runlog: heartbeat failed: %s", e)

    def _drain_and_close(self) -> None:
        leftovers: list[Pending] = []
        markers: list[_Flush] = []
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Flush):
                markers.append(item)
            elif item is not _STOP:
                leftovers.append(item)  # type: ignore[arg-type]
        for start in range(0, len(leftovers), self.max_batch):
            self._commit(leftovers[start : start + self.max_batch], markers)
        for m in markers:
            m.done.set()
        self._beat(closing=True)


def _flush_all_at_exit() -> None:
    for w in list(_live):
        try:
            w.close(timeout=10)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _after_fork_in_child() -> None:
    # Threads do not survive fork: the child gets a fresh writer identity and queue.
    for w in list(_live):
        try:
            w.backend.after_fork()
        except Exception as e:  # pragma: no cover - reported on first use instead
            log.debug("runlog: reopening %s after fork failed: %s", w.backend.location, e)
        w._reset()


atexit.register(_flush_all_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
