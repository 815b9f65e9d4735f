"""Move a whole store to another place or backend: ``runlog copy --from URL --to URL``.

The copy reads the source in seq order, a page at a time, and appends the stored bytes
unchanged to an *empty* destination in batches, rebuilding each write record with
:func:`~runlog.store.base.pending_from_raw`. Every event's hash-chain digest is
recomputed and compared with the source's as it goes: a copy either reproduces the
source's bytes, order and chains exactly, or stops with the first seq that differs
(a source whose chains do not verify is reported, not silently "repaired").

Why refuse a non-empty destination: seq is the store's global order and tailers'
cursors; interleaving a second history behind an existing one would renumber it.
Merging known runs into a store is what ``runlog import`` (JSONL) is for.

Runs still open in the source arrive open in the destination under the copy's own
writer, whose lease ends when the copy finishes, so they read as ``abandoned`` there:
nobody will ever append to them in the new store.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from runlog.errors import CorruptStoreError, StoreError
from runlog.events import now_micros
from runlog.ids import new_run_id
from runlog.store.base import Backend, EventQuery, Pending, WriterInfo, pending_from_raw

__all__ = ["CompactReport", "CopyReport", "compact_postgres", "compact_sqlite", "copy_store"]


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_store` moved."""

    source: str
    destination: str
    events: int
    runs: int
    last_seq: int


def copy_store(
    source: str | os.PathLike[str] | Backend,
    destination: str | os.PathLike[str] | Backend,
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    resume: bool = False,
) -> CopyReport:
    """Copy every event of ``source`` into the empty store ``destination``.

    Either side may be a location (path or URL, opened and closed here) or an open
    backend. The destination is created if absent. Returns counts; raises
    :class:`~runlog.errors.StoreError` if the destination already has events, and
    :class:`~runlog.errors.CorruptStoreError` if the source's chains do not verify.
    With ``resume``, a destination that holds the first events of the source (an
    interrupted copy) is continued after its last one instead of refused.
    """
    from runlog.store import open_backend

    src = source if isinstance(source, Backend) else open_backend(source, create=False)
    try:
        dst = (destination if isinstance(destination, Backend)
               else open_backend(destination, create=True))
        try:
            return _copy(src, dst, batch_size, progress, resume)
        finally:
            if not isinstance(destination, Backend):
                dst.close()
    finally:
        if not isinstance(source, Backend):
            src.close()


def _copy(src: Backend, dst: Backend, batch_size: int,
          progress: Callable[[int], None] | None, resume: bool = False) -> CopyReport:
    done = dst.last_seq()
    if done != 0 and resume:
        return _copy_from(src, dst, batch_size, progress, done)
    if done != 0:
        raise StoreError(
            f"{dst.location} already has events (last seq {dst.last_seq()}); runlog copy "
            "only fills an empty store, so seqs and cursors stay those of the source. "
            "Copy into a new store, or merge with `runlog export` + `runlog import`")
    return _copy_from(src, dst, batch_size, progress, 0)


def _copy_from(src: Backend, dst: Backend, batch_size: int,
               progress: Callable[[int], None] | None, done: int) -> CopyReport:
    """Copy the source's events after seq ``done``, which the destination holds already
    (checked: its last event must be the source's, bytes and digest)."""
    until = src.last_seq()
    writer = WriterInfo(writer_id=new_run_id(), lease_us=60_000_000)
    last_digest: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    runs = 0
    copied = 0
    last = 0
    after = 0
    if done:
        if done > until:
            raise StoreError(f"{dst.location} has more events ({done}) than "
                             f"{src.location} ({until}): it is not a copy of it")
        theirs, _ = dst.read(EventQuery(after=done - 1, limit=1, digests=True))
        ours, _ = src.read(EventQuery(after=done - 1, limit=1, digests=True))
        if [(e.seq, e.raw, e.digest) for e in theirs] != [(e.seq, e.raw, e.digest)
                                                           for e in ours]:
            raise StoreError(f"{dst.location} is not an interrupted copy of "
                             f"{src.location}: their events at seq {done} differ")
        # the chain state of runs still open at ``done``, from the source
        while after < done:
            page, high = src.read(EventQuery(after=after, limit=batch_size, until=done))
            for e in page:
                run_id = e.run_id
                if e.kind == "start":
                    runs += 1
                if e.kind == "end":
                    last_digest.pop(run_id, None)
                    counts.pop(run_id, None)
                else:
                    count = counts.get(run_id, 0) + 1
                    p = pending_from_raw(e.raw, last_digest.get(run_id), count)
                    last_digest[run_id] = p.digest
                    counts[run_id] = count
            if not page:
                break
            after = high
        copied = last = after = done
    try:
        while after < until:
            page, high = src.read(EventQuery(after=after, limit=batch_size, until=until,
                                             digests=True))
            batch: list[Pending] = []
            for e in page:
                if e.seq != copied + 1:
                    if src.prunes():  # a recorded prune's gap: seqs cannot be kept
                        raise StoreError(
                            f"{src.location} was pruned (seq {copied + 1} to {e.seq - 1} "
                            "removed), and a copy keeps every seq: use `runlog export` "
                            "then `runlog import` to move a pruned store")
                    raise CorruptStoreError(
                        f"{src.location} has a gap before seq {e.seq} (expected "
                        f"{copied + 1}); not copying a store whose log is not contiguous")
                run_id = e.run_id
                count = counts.get(run_id, 0) + 1
                p = pending_from_raw(e.raw, last_digest.get(run_id), count)
                if e.digest is not None and p.digest != e.digest:
                    raise CorruptStoreError(
                        f"{src.location}: the hash chain breaks at seq {e.seq} (run "
                        f"{run_id}); run `runlog verify` there, nothing after seq "
                        f"{copied} was copied")
                if p.kind == "start":
                    runs += 1
                if p.kind == "end":
                    last_digest.pop(run_id, None)
                    counts.pop(run_id, None)
                else:
                    last_digest[run_id] = p.digest
                    counts[run_id] = count
                batch.append(p)
                copied += 1
            if batch:
                last = dst.append(batch, writer, now_micros())
                if progress is not None:
                    progress(copied)
            if not page:
                break
            after = high
    finally:
        dst.heartbeat(writer, now_micros(), closing=True)
    if copied != until or last != until:
        raise StoreError(
            f"copied {copied} events ending at seq {last} into {dst.location}, but the "
            f"source ends at seq {until}; the destination was not empty or was written to "
            "during the copy")
    return CopyReport(src.location, dst.location, copied, runs, last)


@dataclass(frozen=True)
class CompactReport:
    """What :func:`compact_sqlite` did."""

    source: str
    destination: str
    events: int
    runs: int
    bytes_before: int
    bytes_after: int
    kept: str | None
    """Where the original file now is (in-place conversion), or None."""
    already: bool = False
    """The store was in the compact layout already: nothing was done."""


def _file_bytes(path: str | os.PathLike[str]) -> int:
    return sum(os.path.getsize(f"{os.fspath(path)}{s}") for s in ("", "-wal")
               if os.path.exists(f"{os.fspath(path)}{s}"))


def compact_sqlite(
    path: str | os.PathLike[str],
    *,
    to: str | os.PathLike[str] | None = None,
    verify: Callable[[Backend], str | None],
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> CompactReport:
    """Convert a SQLite store of the wide layout (schema 1) to the compact one (schema 3).

    Every event keeps its seq, its envelope bytes and its digest (the envelope is the
    event's bytes in both layouts: only how rows hold them changes), so the copy is
    checked event by event as :func:`copy_store` does, then the result is verified
    (chains, column copies, runs table) before it counts. ``to`` writes a new file and
    leaves the store as it is; without it the store is converted in place: the new file
    is built beside it (``<path>.compact``, resumed if an earlier conversion was
    interrupted), and once verified it replaces the store, whose original file is kept
    as ``<path>.wide`` (delete it once satisfied). In place needs the store to be idle:
    a live writer (a lease not yet expired) is refused, since its later events would
    go to the old file. ``progress(done, total)`` is called after every batch.
    ``verify(backend)`` checks the result (``runlog verify``'s checks: the store layer
    does not know them) and returns what is wrong, or None.
    """
    from runlog.store.sqlite import SQLiteBackend

    src = SQLiteBackend(path, create=False)
    try:
        if src.compact:
            size = _file_bytes(path)
            return CompactReport(str(path), str(path), src.last_seq(), 0, size, size, None,
                                 already=True)
        if to is None:
            live = [w for w in _live_writers(src)]
            if live:
                raise StoreError(
                    f"{path} is being written (writer {live[0]} holds a live lease); stop "
                    "its writers first, or convert to a new file with --to")
            src.checkpoint()
        before = _file_bytes(path)
        target = os.fspath(to) if to is not None else f"{os.fspath(path)}.compact"
        if to is not None and os.path.exists(target):
            raise StoreError(f"{target} exists; pick a new file for the compact store")
        total = src.last_seq()
        dst = SQLiteBackend(target, layout="compact")
        try:
            if not dst.compact:
                raise StoreError(f"{target} is a store of the wide layout, not an "
                                 "interrupted conversion; remove it or pick another file")
            report = copy_store(src, dst, batch_size=batch_size, resume=True,
                                progress=(lambda n: progress(n, total)) if progress else None)
            problem = verify(dst)
            dst.checkpoint()  # nothing left in its -wal when it is moved
        finally:
            dst.close()
    finally:
        src.close()
    if problem is not None:  # pragma: no cover - copy_store checked every digest already
        raise CorruptStoreError(f"the compact copy {target} does not verify: {problem}; "
                                f"{path} is unchanged")
    kept = None
    if to is None:
        for suffix in ("-wal", "-shm"):  # both closed: SQLite removed or emptied them
            stale = f"{os.fspath(path)}{suffix}"
            if os.path.exists(stale) and os.path.getsize(stale) > 0 and suffix == "-wal":
                raise StoreError(f"{stale} still holds commits; {path} was written during "
                                 "the conversion. Nothing was replaced; run it again")
        kept = f"{os.fspath(path)}.wide"
        os.replace(path, kept)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{os.fspath(path)}{suffix}"):
                os.remove(f"{os.fspath(path)}{suffix}")
        os.replace(target, path)
        target = os.fspath(path)
    return CompactReport(str(path), target, report.events, report.runs, before,
                         _file_bytes(target), kept)


def _live_writers(backend: Backend) -> list[str]:
    from runlog.store.sqlite import SQLiteBackend

    assert isinstance(backend, SQLiteBackend)
    with backend._read_txn(raw_bytes=False) as conn:
        rows = conn.execute("SELECT writer_id FROM writers WHERE closed = 0 AND "
                            "heartbeat_at + lease_us >= ?", (now_micros(),)).fetchall()
    return [r[0] for r in rows]


def compact_postgres(
    url: str,
    *,
    to: str | None = None,
    verify: Callable[[Backend], str | None],
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> CompactReport:
    """:func:`compact_sqlite` for a PostgreSQL store (``docs/postgres.md``).

    ``to`` (a URL) fills a new store and leaves ``url`` as it is. In place needs the
    store's own ``?schema=NAME`` and an idle store: the compact store is built in the
    schema ``NAME_compact`` (resumed if an earlier conversion was interrupted),
    verified, and then, in one transaction that holds the counter row and finds no
    live writer and no event added since the copy, ``NAME`` is renamed ``NAME_wide``
    (kept: drop it once satisfied) and ``NAME_compact`` becomes ``NAME``.
    """
    from runlog.store.postgres import PostgresBackend, compact_swap, schema_bytes

    src = PostgresBackend(url, create=False)
    try:
        if src.compact:
            size = schema_bytes(src)
            return CompactReport(src.location, src.location, src.last_seq(), 0, size, size,
                                 None, already=True)
        if to is None:
            if not src.schema:
                raise StoreError(f"{src.location} has no ?schema= in its URL: converting "
                                 "in place renames the store's schema; give ?schema=NAME, "
                                 "or convert to a new store with --to URL")
            if len(src.schema) > 63 - len("_compact"):
                raise StoreError(f"schema name {src.schema} is too long to convert in "
                                 "place (it gets a _compact twin); use --to URL")
            live = src.live_writers()
            if live:
                raise StoreError(
                    f"{src.location} is being written (writer {live[0]} holds a live "
                    "lease); stop its writers first, or convert to a new store with --to")
            target = url.replace(f"schema={src.schema}", f"schema={src.schema}_compact")
        else:
            target = to
        before = schema_bytes(src)
        total = src.last_seq()
        dst = PostgresBackend(target, layout="compact")
        try:
            if not dst.compact:
                raise StoreError(f"{dst.location} is a store of the wide layout, not an "
                                 "interrupted conversion; drop it or pick another schema")
            if to is not None and dst.last_seq() > 0:
                raise StoreError(f"{dst.location} already has events; pick a new schema")
            report = copy_store(src, dst, batch_size=batch_size, resume=True,
                                progress=(lambda n: progress(n, total)) if progress else None)
            problem = verify(dst)
            if problem is not None:  # pragma: no cover - copy_store checked every digest
                raise CorruptStoreError(f"the compact copy {dst.location} does not verify: "
                                        f"{problem}; {src.location} is unchanged")
            after = schema_bytes(dst)
            destination = dst.location
        finally:
            dst.close()
        kept = None
        if to is None:
            assert src.schema is not None
            kept = compact_swap(src, report.last_seq)
            destination = src.location
    finally:
        src.close()
    return CompactReport(src.location, destination, report.events, report.runs, before,
                         after, kept)
