"""Keeping a store for months: ``Store.prune`` (optionally archiving first) and the
report it returns. The store layer removes traces (:mod:`runlog.store.prune`); this
module chooses them, writes and checks the archive, and batches the removal.

Order of a prune with ``archive``: choose every trace the rule selects; write them all
to ``FILE.partial`` in the lossless JSONL format (``runlog import`` reads it), fsync it,
check it with :func:`~runlog.exporters.jsonl.verify_jsonl` and count its events per
trace, then move it to ``FILE``; only then remove the traces, in batches, each batch a
short transaction of its own that removes a trace only if it still holds exactly the
events archived. Nothing is removed when the archive cannot be written or checked.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
from binascii import a2b_hex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from runlog.errors import StoreError
from runlog.ids import new_run_id
from runlog.store.base import Backend, EventQuery
from runlog.store.prune import Pruner, PruneRule, TraceCandidate, check_rule

if TYPE_CHECKING:
    from runlog.api import Store

__all__ = ["PruneReport", "prune"]

T = TypeVar("T")


@dataclass(frozen=True)
class PruneReport:
    """What :meth:`runlog.Store.prune` removed (or, with ``dry_run``, would remove)."""

    before: dt.datetime
    traces: int
    runs: int
    events: int
    trace_ids: tuple[str, ...]
    kept: tuple[str, ...] = ()
    """Traces chosen but left in the store: they changed, or stopped being eligible,
    between being chosen (and archived) and their batch (a later prune takes them)."""
    archive: str | None = None
    archived_events: int = 0
    batches: int = 0
    reclaimed: int = 0
    """Bytes the backend gave back to the file system (0 where it keeps them for reuse)."""
    operation: str = ""
    """The id of this prune in the store's ``prunes`` table."""
    dry_run: bool = False


def cutoff_micros(before: dt.datetime | dt.timedelta | int) -> tuple[int, dt.datetime]:
    """The cutoff as epoch microseconds and as an aware datetime."""
    from runlog.events import datetime_to_micros, micros_to_datetime

    if isinstance(before, dt.timedelta):
        before = dt.datetime.now(dt.UTC) - before
    us = datetime_to_micros(before) if isinstance(before, dt.datetime) else int(before)
    return us, micros_to_datetime(us)


def prune(store: Store, before: dt.datetime | dt.timedelta | int, *,
          trace_id: str | None = None, tag: str | None = None,
          archive: str | os.PathLike[str] | None = None, dry_run: bool = False,
          vacuum: bool = False, batch_events: int = 5000,
          progress: Callable[[int, int], None] | None = None) -> PruneReport:
    """See :meth:`runlog.Store.prune`."""
    if batch_events < 1:
        raise ValueError("batch_events must be at least 1")
    before_us, when = cutoff_micros(before)
    rule = PruneRule(before_us, trace_id=trace_id, tag=tag)
    check_rule(rule)
    backend = store.backend
    if getattr(backend, "read_only", False) and not dry_run:
        raise StoreError(f"{backend.location} is read-only here: pruning needs write "
                         "access to the store (--dry-run works)")
    chosen: list[TraceCandidate] = []
    after = ""
    while True:
        page = backend.prune_candidates(rule, after=after, limit=500)
        chosen.extend(page)
        if len(page) < 500:
            break
        after = page[-1].trace_id
    if dry_run or not chosen:
        reclaimed = backend.reclaim(vacuum=True) if vacuum and not dry_run else 0
        return PruneReport(when, len(chosen), sum(c.runs for c in chosen),
                           sum(c.events for c in chosen),
                           tuple(c.trace_id for c in chosen), reclaimed=reclaimed,
                           dry_run=dry_run)
    expect: dict[str, int | None] = {c.trace_id: None for c in chosen}
    archived = 0
    path: str | None = None
    if archive is not None:
        path = os.fspath(archive)
        counts = write_archive(store, [c.trace_id for c in chosen], path)
        expect.update(counts)
        archived = sum(counts.values())
    by = Pruner(operation=new_run_id(), archive=path)
    removed: list[str] = []
    kept: list[str] = []
    runs = events = batches = 0
    todo = sorted(chosen, key=lambda c: c.trace_id)
    while todo:
        batch: dict[str, int | None] = {}
        size = 0
        while todo and (not batch or size + todo[0].events <= batch_events) \
                and len(batch) < 200:
            c = todo.pop(0)
            batch[c.trace_id] = expect[c.trace_id]
            size += c.events
        done = _retrying(functools.partial(backend.prune_traces, batch, rule, by), backend)
        batches += 1
        removed.extend(done.trace_ids)
        kept.extend(done.kept)
        runs += done.runs
        events += done.events
        if progress is not None:
            progress(len(removed) + len(kept), len(chosen))
    reclaimed = backend.reclaim(vacuum=vacuum) if removed or vacuum else 0
    return PruneReport(when, len(removed), runs, events, tuple(removed), tuple(kept), path,
                       archived, batches, reclaimed, by.operation)


def _retrying(step: Callable[[], T], backend: Backend) -> T:
    """Run one write step, retrying while another writer holds the lock (SQLite's
    busy timeout ran out under a long transaction elsewhere), as the writer does."""
    for attempt in range(30):
        try:
            return step()
        except Exception as e:
            if attempt == 29 or not backend.is_transient(e):
                raise
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover


def write_archive(store: Store, trace_ids: list[str], path: str) -> dict[str, int]:
    """Write ``trace_ids`` to ``path`` as one lossless JSONL export, trace after trace
    (each in seq order), check it, and return each trace's event count in it."""
    from runlog.exporters.jsonl import HEADER, _order_hash, _trailer, verify_jsonl

    target = Path(path)
    if target.exists():
        raise StoreError(f"{path} exists; an archive is a new file (pick another name)")
    partial = Path(f"{path}.partial")
    backend = store.backend
    counts: dict[str, int] = {}
    order = _order_hash()
    total = 0
    try:
        with open(partial, "wb") as fp:
            fp.write(HEADER)
            for trace_id in trace_ids:
                n = 0
                q = EventQuery(after=0, limit=backend.bulk_page_rows, trace_id=trace_id,
                               digests=True, until=store.last_seq())
                while True:
                    rows, high = backend.read_rows(q)
                    if rows:
                        order.update(a2b_hex(b"".join([r[2] for r in rows])))
                        fp.write(b"".join([b'{"digest":"%b","event":%b}\n' % (r[2], r[1])
                                           for r in rows]))
                        n += len(rows)
                    if len(rows) < q.limit:
                        break
                    q = EventQuery(after=high, limit=q.limit, trace_id=trace_id,
                                   digests=True, until=q.until)
                counts[trace_id] = n
                total += n
            fp.write(_trailer(total, order.digest()))
            fp.flush()
            os.fsync(fp.fileno())
        report = verify_jsonl(partial)
        if not report.ok or report.events != total:
            raise StoreError(f"the archive {partial} does not verify "
                             f"({report.first_error or f'{report.events} of {total} events'}); "
                             "nothing was pruned")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return counts
