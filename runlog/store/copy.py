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

__all__ = ["CopyReport", "copy_store"]


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
) -> CopyReport:
    """Copy every event of ``source`` into the empty store ``destination``.

    Either side may be a location (path or URL, opened and closed here) or an open
    backend. The destination is created if absent. Returns counts; raises
    :class:`~runlog.errors.StoreError` if the destination already has events, and
    :class:`~runlog.errors.CorruptStoreError` if the source's chains do not verify.
    """
    from runlog.store import open_backend

    src = source if isinstance(source, Backend) else open_backend(source, create=False)
    try:
        dst = (destination if isinstance(destination, Backend)
               else open_backend(destination, create=True))
        try:
            return _copy(src, dst, batch_size, progress)
        finally:
            if not isinstance(destination, Backend):
                dst.close()
    finally:
        if not isinstance(source, Backend):
            src.close()


def _copy(src: Backend, dst: Backend, batch_size: int,
          progress: Callable[[int], None] | None) -> CopyReport:
    if dst.last_seq() != 0:
        raise StoreError(
            f"{dst.location} already has events (last seq {dst.last_seq()}); runlog copy "
            "only fills an empty store, so seqs and cursors stay those of the source. "
            "Copy into a new store, or merge with `runlog export` + `runlog import`")
    until = src.last_seq()
    writer = WriterInfo(writer_id=new_run_id(), lease_us=60_000_000)
    last_digest: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    runs = 0
    copied = 0
    last = 0
    after = 0
    try:
        while after < until:
            page, high = src.read(EventQuery(after=after, limit=batch_size, until=until,
                                             digests=True))
            batch: list[Pending] = []
            for e in page:
                if e.seq != copied + 1:
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
