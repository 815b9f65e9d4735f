"""Wake-ups for tailers: inotify on a SQLite file, a version counter in memory.

A :class:`~runlog.store.base.ChangeWaiter` only *hints* that a commit may have
happened; the tailer re-reads from its cursor after every wake-up, so a spurious wake
costs one empty query and a missed one costs at most the caller's timeout.

SQLite (``InotifyWaiter``)
    The writer appends WAL frames with ``write()`` (inotify ``IN_MODIFY`` on
    ``<db>-wal``), then publishes the commit in the shared-memory wal-index, which
    makes no inotify event. So a wake can arrive *before* the commit is visible
    (``perf-baselines.md``: 10–17 wakes per 1500 commits); the tailer retries on a
    short back-off after a wake that found nothing (see :mod:`runlog.tail`). The
    watch is on the *directory*, filtered by name, so it survives the ``-wal`` file
    being created, truncated by a checkpoint or deleted when the last connection
    closes, and it also catches commits in rollback-journal mode (the db file itself
    changes).

In memory (``VersionWaiter``)
    The memory backend bumps a counter and notifies its waiters under its lock on
    every append: in-process tails wake immediately and never miss a commit (the
    counter is compared, so a commit between the tailer's read and its wait is not
    lost). Async waits use a self-pipe so asyncio and trio both wait on a file
    descriptor without a thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from runlog.store.base import ChangeWaiter, PollingWaiter

__all__ = ["InotifyWaiter", "VersionWaiter", "sqlite_change_waiter"]

_MASK_NAMES = ("MODIFY", "CREATE", "MOVED_TO", "CLOSE_WRITE")


class InotifyWaiter(ChangeWaiter):
    """Wakes when ``<db>`` or ``<db>-wal`` changes (Linux inotify via asyncinotify).

    Each tailer owns one inotify descriptor (cheap: one fd, one directory watch).
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        from asyncinotify import Inotify, Mask

        path = Path(db_path).absolute()
        self._names = frozenset({path.name, path.name + "-wal"})
        self._ino: Any = Inotify()
        self._ino.sync_timeout = 0  # sync_get() never blocks: we poll the fd ourselves
        try:
            mask = Mask(0)
            for name in _MASK_NAMES:
                mask |= getattr(Mask, name)
            self._ino.add_watch(path.parent, mask)
        except BaseException:
            self._ino.close()
            raise
        self._fd: int = self._ino.fd
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._closed = False
        self.wakes = 0
        """How many waits ended on a relevant notification (for benchmarks)."""

    def _drain(self) -> bool:
        """Consume every queued notification; True if one concerned the store's files."""
        relevant = False
        while True:
            try:
                event = self._ino.sync_get()
            except BlockingIOError:
                break
            if event is None:
                break
            name = event.name
            if name is None or str(name) in self._names:
                relevant = True
        if relevant:
            self.wakes += 1
        return relevant

    def wait(self, timeout: float) -> None:
        if self._closed:
            time.sleep(max(timeout, 0.0))
            return
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._drain():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if left < 0.001:  # poll() counts in whole milliseconds
                time.sleep(left)
                continue
            self._poll.poll(left * 1000.0)

    async def await_change(self, timeout: float) -> None:
        if self._closed:
            await anyio.sleep(max(timeout, 0.0))
            return
        with anyio.move_on_after(max(timeout, 0.0)):
            while not self._drain():
                await anyio.wait_readable(self._fd)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._poll.unregister(self._fd)
        self._ino.close()


def sqlite_change_waiter(db_path: str | os.PathLike[str],
                         fallback_interval: float = 0.05) -> ChangeWaiter:
    """The best waiter available for a SQLite file: inotify, else polling.

    inotify is missing off Linux (asyncinotify is not installed there) and can fail
    at run time (``fs.inotify.max_user_watches`` or ``max_user_instances`` reached);
    polling every ``fallback_interval`` seconds then keeps tailing correct, only slower.
    """
    try:
        return InotifyWaiter(db_path)
    except (ImportError, OSError, AttributeError):
        return PollingWaiter(fallback_interval)


class VersionWaiter(ChangeWaiter):
    """A waiter woken by :meth:`notify` from the same process (memory backend).

    ``wait`` returns at once when a notification arrived since the previous wait
    returned, so a commit that lands between a tailer's read and its wait is never
    slept through.
    """

    def __init__(self, on_close: Any = None) -> None:
        self._cond = threading.Condition()
        self._version = 0
        self._seen = 0
        self._pipe: tuple[int, int] | None = None
        self._on_close = on_close
        self._closed = False

    def notify(self) -> None:
        """A commit happened (called by the backend, from any thread)."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()
            pipe = self._pipe
        if pipe is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(pipe[1], b"\0")

    def wait(self, timeout: float) -> None:
        with self._cond:
            if self._version == self._seen and not self._closed:
                self._cond.wait(max(timeout, 0.0))
            self._seen = self._version

    async def await_change(self, timeout: float) -> None:
        with self._cond:
            if self._pipe is None and not self._closed:
                r, w = os.pipe()
                os.set_blocking(r, False)
                os.set_blocking(w, False)
                self._pipe = (r, w)
            pipe = self._pipe
            changed = self._version != self._seen
        if pipe is not None and not changed:
            with anyio.move_on_after(max(timeout, 0.0)):
                while True:
                    with self._cond:
                        if self._version != self._seen:
                            break
                    await anyio.wait_readable(pipe[0])
                    with contextlib.suppress(BlockingIOError, OSError):
                        os.read(pipe[0], 4096)
        elif pipe is None:
            await anyio.sleep(max(timeout, 0.0))
        with self._cond:
            self._seen = self._version

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            pipe, self._pipe = self._pipe, None
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close(self)
        if pipe is not None:
            for fd in pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
