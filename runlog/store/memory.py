"""An in-process store: the reference the SQL backends are compared against.

It keeps everything in lists and dicts under one lock and implements the same contract
as the SQL backends, which makes it the oracle of the stateful tests and a fast store
for unit tests (``runlog.open(":memory:")``). Nothing survives the process; the only
writer is this process, so a run is abandoned only once the store is closed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from runlog.errors import AppendOnlyError
from runlog.events import Event, RunInfo
from runlog.store.base import (
    Backend,
    ChangeWaiter,
    EventQuery,
    Pending,
    RunQuery,
    WriterInfo,
    run_info_from_row,
)
from runlog.store.waiters import VersionWaiter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from runlog.store.prune import PrunedBatch, Pruner, PruneRecord, PruneRule, TraceCandidate
    from runlog.store.stats import StoreStats

__all__ = ["MemoryBackend"]


@dataclass
class _Row:
    seq: int
    trace_id: str
    run_id: str
    raw: bytes
    digest: bytes


@dataclass
class _RunRow:
    run_id: str
    trace_id: str
    parent_id: str | None
    name: str
    run_type: str
    tags: bytes
    metadata: bytes
    start_seq: int
    start_time: int
    writer_id: str
    end_seq: int | None = None
    end_time: int | None = None
    status: str = "running"
    error: bytes | None = None
    event_count: int = 0


class MemoryBackend(Backend):
    """Everything in memory, one lock (see the module docstring)."""

    def __init__(self) -> None:
        self.url = self.location = ":memory:"
        self._lock = threading.Lock()
        self._rows: list[_Row | None] = []
        """By seq - 1; a pruned event leaves None (runlog/store/prune.py)."""
        self._prunes: list[PruneRecord] = []
        self._runs: dict[str, _RunRow] = {}
        self._counts: dict[str, int] = {}
        self._started: set[str] = set()
        self._closed_writers: set[str] = set()
        self._waiters: weakref.WeakSet[VersionWaiter] = weakref.WeakSet()

    def append(self, batch: Sequence[Pending], writer: WriterInfo,
               heartbeat_us: int | None) -> int:
        with self._lock:
            # the same contract as the SQL stores' unique index: one start per run id,
            # checked before anything of the batch is applied (a batch is atomic)
            starts = [p.run_id for p in batch if p.kind == "start"]
            if starts and (len(set(starts)) < len(starts)
                           or any(r in self._started for r in starts)):
                raise AppendOnlyError(
                    "could not append to :memory:: a run id already has a start event")
            self._started.update(starts)
            seq = len(self._rows)
            for p in batch:
                seq += 1
                self._rows.append(_Row(seq, p.trace_id, p.run_id, p.raw, p.digest))
                self._counts[p.run_id] = self._counts.get(p.run_id, 0) + 1
                if p.kind == "start" and p.run_row is not None and p.run_id not in self._runs:
                    parent_id, tags, metadata = p.run_row
                    self._runs[p.run_id] = _RunRow(
                        p.run_id, p.trace_id, parent_id, p.name, p.run_type, tags, metadata,
                        seq, p.time_us, writer.writer_id)
                elif p.kind == "end" and p.run_row is not None:
                    run = self._runs.get(p.run_id)
                    if run is not None and run.end_seq is None:
                        run.status, run.error, run.event_count = p.run_row
                        run.end_seq, run.end_time = seq, p.time_us
            self._closed_writers.discard(writer.writer_id)
            waiters = list(self._waiters)
        for w in waiters:  # in-process tails wake at once (runlog.tail)
            w.notify()
        return seq

    def heartbeat(self, writer: WriterInfo, now_us: int, *, closing: bool = False) -> None:
        with self._lock:
            if closing:
                self._closed_writers.add(writer.writer_id)

    def read(self, q: EventQuery) -> tuple[list[Event], int]:
        with self._lock:
            high = len(self._rows)
            rows = self._rows  # append-only: indices below `high` never change
        until = min(q.until, high) if q.until is not None else high
        out: list[Event] = []
        for i in range(max(q.after, 0), until):
            r = rows[i]
            if r is None:  # pruned
                continue
            if q.trace_id is not None and r.trace_id != q.trace_id:
                continue
            if q.run_ids is not None and r.run_id not in q.run_ids:
                continue
            e = Event(r.seq, r.raw, r.digest if q.digests else None)
            if q.filter is not None and not q.filter.matches(e):
                continue
            out.append(e)
            if len(out) >= q.limit:
                return out, r.seq
        return out, max(until, q.after)

    def last_seq(self) -> int:
        with self._lock:
            return len(self._rows)

    def _info(self, r: _RunRow) -> RunInfo:
        status = r.status
        if status == "running" and r.writer_id in self._closed_writers:
            status = "abandoned"
        info = run_info_from_row(
            run_id=r.run_id, trace_id=r.trace_id, parent_id=r.parent_id, name=r.name,
            run_type=r.run_type, tags=r.tags, metadata=r.metadata, start_seq=r.start_seq,
            start_time=r.start_time, end_seq=r.end_seq, end_time=r.end_time, status=status,
            error=r.error, event_count=r.event_count,
        )
        if r.end_seq is None:
            info = replace(info, event_count=self._counts.get(r.run_id, 0))
        return info

    def get_run(self, run_id: str) -> RunInfo | None:
        with self._lock:
            r = self._runs.get(run_id)
            return self._info(r) if r is not None else None

    def find_runs(self, q: RunQuery) -> list[RunInfo]:
        with self._lock:
            infos = [self._info(r) for r in self._runs.values()]
        infos.sort(key=lambda i: i.start_seq, reverse=q.newest_first)
        out = []
        for i in infos:
            if q.trace_id is not None and i.trace_id != q.trace_id:
                continue
            if q.roots_only and i.parent_id is not None:
                continue
            if q.name is not None and i.name != q.name:
                continue
            if q.status is not None and i.status != q.status:
                continue
            if q.filter is not None and not q.filter.matches_run(
                    i.name, i.run_type, i.tags, i.metadata):
                continue
            out.append(i)
        return out[: q.limit] if q.limit is not None else out

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        with self._lock:
            return sorted(r for r in self._runs if r.startswith(prefix))[:limit]

    def run_ids_with_suffix(self, suffix: str, limit: int = 2) -> list[str]:
        with self._lock:
            return sorted(r for r in self._runs if r.endswith(suffix))[:limit]

    def trace_runs(self, trace_id: str) -> list[RunInfo]:
        return self.find_runs(RunQuery(trace_id=trace_id, newest_first=False))

    def change_waiter(self) -> ChangeWaiter:
        """A waiter notified by every append of this process (the only writer)."""
        w = VersionWaiter(on_close=self._waiters.discard)
        self._waiters.add(w)
        return w

    # -- lifecycle: runlog/store/prune.py and runlog/store/stats.py hold the code -------
    def prune_candidates(self, rule: PruneRule, *, after: str = "",
                         limit: int = 500) -> list[TraceCandidate]:
        from runlog.store import prune

        return prune.memory_candidates(self, rule, after, limit)

    def prune_traces(self, expect: Mapping[str, int | None], rule: PruneRule,
                     by: Pruner) -> PrunedBatch:
        from runlog.store import prune

        return prune.memory_prune(self, expect, rule, by)

    def prunes(self) -> list[PruneRecord]:
        from runlog.store import prune

        return prune.memory_prunes(self)

    def stats(self, top: int = 10) -> StoreStats:
        from runlog.store import stats

        return stats.memory_stats(self, top)

    def close(self) -> None:
        pass
