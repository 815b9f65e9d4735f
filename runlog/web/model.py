"""What the web viewer's JSON API returns: runs, run trees, pages of events, filters.

Everything here is synchronous and reads the store directly; the ASGI layer
(:mod:`runlog.web.app`) calls it in worker threads so a slow read never blocks the
event loop. Values go out as the codec stores them (plain JSON, with ``{"$rl:...": }``
tags for values JSON cannot hold), and events go out as their stored bytes with the
``seq`` put first, the same line ``runlog replay`` prints: what the page folds live is
byte for byte what a replay folds afterwards.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson

from runlog import codec
from runlog.api import Store
from runlog.errors import StoreError
from runlog.events import Event, RunInfo, datetime_to_micros
from runlog.filters import ANY, Filter
from runlog.store.base import StoredMetadata

__all__ = [
    "RunsQuery",
    "TokenCounter",
    "event_line",
    "events_page",
    "list_runs",
    "parent_cycles",
    "parse_meta",
    "run_detail",
    "run_dict",
    "store_unavailable",
    "token_counts",
]

STATUSES = ("running", "ok", "error", "abandoned")
MAX_LIMIT = 1000


def event_line(event: Event) -> bytes:
    """One event as JSON: the stored envelope with ``{"seq":N,`` put first.

    Built by concatenation, never re-serialised, so it is the line ``runlog replay``
    prints (without the newline) and the page sees the stored bytes.
    """
    return b'{"seq":' + str(event.seq).encode() + b"," + event.raw[1:]


def _metadata_json(metadata: Mapping[str, Any]) -> orjson.Fragment:
    """A run's metadata as stored (tags as they are, ints digit for digit), never
    decoded: the runs list shows it, it does not need the values it stands for."""
    if isinstance(metadata, StoredMetadata):
        return orjson.Fragment(metadata.raw)
    return orjson.Fragment(codec.encode(dict(metadata), lossy=True))


def run_dict(r: RunInfo, token_count: int | None = None) -> dict[str, Any]:
    """One run as the API shows it (times in ISO 8601 and epoch microseconds)."""
    start_us = datetime_to_micros(r.start_time)
    end_us = datetime_to_micros(r.end_time) if r.end_time is not None else None
    return {
        "run_id": r.run_id,
        "trace_id": r.trace_id,
        "parent_id": r.parent_id,
        "name": r.name,
        "run_type": r.run_type,
        "status": r.status,
        "start_time": r.start_time.isoformat(),
        "end_time": r.end_time.isoformat() if r.end_time is not None else None,
        "start_us": start_us,
        "end_us": end_us,
        "duration_ms": (end_us - start_us) / 1000 if end_us is not None else None,
        "event_count": r.event_count,
        "token_count": token_count,
        "tags": list(r.tags),
        "metadata": _metadata_json(r.metadata),
        "error": r.error.to_dict() if r.error is not None else None,
        "start_seq": r.start_seq,
        "end_seq": r.end_seq,
    }


_DRIVER_ERRORS = (("sqlite3", "DatabaseError"), ("psycopg", "Error"),
                  ("sqlalchemy.exc", "DBAPIError"), ("sqlalchemy.exc", "TimeoutError"))
"""Driver exceptions that mean "the database is unavailable or damaged", not "this
request is wrong": a dropped PostgreSQL connection, ``database is locked`` beyond the
busy timeout, a malformed file. Looked up in ``sys.modules`` so the viewer imports no
driver (a driver nobody loaded cannot have raised)."""


def store_unavailable(exc: BaseException) -> bool:
    """True for errors that mean the store cannot be read right now (answered 503).

    runlog's own :class:`~runlog.errors.StoreError` (an unknown run aside), and the
    database drivers' errors that escape a backend untranslated.
    """
    if isinstance(exc, BaseExceptionGroup):  # from a task group inside a tail
        return all(store_unavailable(e) for e in exc.exceptions)
    if isinstance(exc, StoreError):
        return True
    for module, name in _DRIVER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


# ------------------------------------------------------------------------ tokens


class TokenCounter:
    """Counts token events (stream events on channel ``token``) per run, incrementally.

    The runs list shows a token count per run, which the ``runs`` table does not keep.
    Counting means reading the trace's events; this cache remembers, per trace, the
    counts and the last ``seq`` read, and later reads only what was committed since
    (``seq`` is gap-free in commit order, so nothing is missed). At most ``max_traces``
    traces are remembered (least recently used first out).
    """

    def __init__(self, store: Store, max_traces: int = 10_000) -> None:
        self.store = store
        self.max_traces = max_traces
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[int, Counter[str]]] = OrderedDict()

    def per_run(self, trace_id: str) -> Counter[str]:
        """Token events of each run of one trace (its own, not its children's)."""
        with self._lock:
            high, counts = self._cache.get(trace_id, (0, Counter()))
        new_high, new = high, Counter[str]()
        for e in self.store.events(trace_id=trace_id, after=high):
            new_high = e.seq
            if e.kind == "stream" and e.channel == "token":
                new[e.run_id] += 1
        with self._lock:
            cur_high, cur = self._cache.get(trace_id, (0, Counter()))
            if cur_high == high:  # nobody updated it meanwhile: merge
                cur = cur + new
                cur_high = new_high
            elif cur_high < new_high:  # a concurrent reader was behind us: ours is fresher
                cur, cur_high = counts + new, new_high
            self._cache[trace_id] = (cur_high, cur)
            self._cache.move_to_end(trace_id)
            while len(self._cache) > self.max_traces:
                self._cache.popitem(last=False)
            return Counter(cur)

    def is_cached(self, trace_id: str) -> bool:
        with self._lock:
            return trace_id in self._cache

    def for_runs(self, runs: Sequence[RunInfo], *,
                 cached_only: bool = False) -> dict[str, int]:
        """Token count of each run *and its descendants* (a root: its whole trace).

        With ``cached_only``, runs of traces never counted before are left out (their
        first count reads every event of the trace); the others are brought up to date.
        """
        out: dict[str, int] = {}
        by_trace: dict[str, list[RunInfo]] = {}
        for r in runs:
            by_trace.setdefault(r.trace_id, []).append(r)
        for trace_id, wanted in by_trace.items():
            if cached_only and not self.is_cached(trace_id):
                continue
            counts = self.per_run(trace_id)
            if all(r.run_id == trace_id for r in wanted):  # roots: the whole trace
                total = sum(counts.values())
                out.update((r.run_id, total) for r in wanted)
                continue
            children: dict[str | None, list[str]] = {}
            for t in self.store.trace_runs(trace_id):
                children.setdefault(t.parent_id, []).append(t.run_id)
            for r in wanted:
                if r.run_id == trace_id:  # the root: its whole trace, as above
                    out[r.run_id] = sum(counts.values())
                    continue
                # A damaged or forged store can hold a parent cycle: count each run once.
                total, todo, seen = 0, [r.run_id], {r.run_id}
                while todo:
                    rid = todo.pop()
                    total += counts.get(rid, 0)
                    for child in children.get(rid, ()):
                        if child not in seen:
                            seen.add(child)
                            todo.append(child)
                out[r.run_id] = total
        return out


def parent_cycles(runs: Iterable[RunInfo]) -> set[str]:
    """Runs whose chain of parents loops back (only a damaged or forged store has any).

    A run on such a loop, or below one, can never reach its trace's root; the viewer
    shows these runs at the top of the tree, marked, instead of walking the loop.
    """
    parent = {r.run_id: r.parent_id for r in runs}
    looped: set[str] = set()
    fine: set[str] = set()
    for start in parent:
        path: list[str] = []
        on_path: set[str] = set()
        rid: str | None = start
        while rid is not None and rid in parent and rid not in fine and rid not in looped:
            if rid in on_path:
                looped.update(path)
                break
            path.append(rid)
            on_path.add(rid)
            rid = parent[rid]
        else:
            (looped if rid in looped else fine).update(path)
    return looped


# ------------------------------------------------------------------------ filters


def parse_meta(values: Iterable[str]) -> dict[str, Any] | None:
    """``KEY=VALUE`` pairs as the CLI's ``--meta`` reads them (a test keeps them equal).

    ``KEY`` alone means "has the key" (:data:`runlog.ANY`); a VALUE that parses as JSON
    (numbers, booleans, quoted strings, objects) compares as that value, anything else
    as text.

    Raises:
        ValueError: an item has no key (``=x``).
    """
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not key:
            raise ValueError(f"{item!r}: expected KEY=VALUE or KEY")
        if not sep:
            out[key] = ANY
            continue
        try:
            out[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[key] = raw
    return out or None


@dataclass(frozen=True, slots=True)
class RunsQuery:
    """The runs list's query string: the CLI's filters plus a text search over names.

    ``q`` is a case-insensitive substring of the run name. As in ``runlog runs``, only
    root runs are listed unless ``all_runs`` is set or any filter (or search) is given:
    a search for ``FakeChatModel`` should find the model runs inside pipelines.
    """

    q: str = ""
    filter: Filter | None = None
    status: str | None = None
    all_runs: bool = False
    limit: int = 100
    tokens: str = "all"
    """``"all"``: count every listed run's tokens; ``"cached"``: only runs whose trace
    was counted before (the others get ``null``, see :func:`token_counts`), so the
    first list of a large store answers at once."""

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> RunsQuery:
        """Read a query string (each key mapped to all its values).

        Raises:
            ValueError: a bad status, limit or metadata pair (the message says which).
        """

        def many(key: str) -> tuple[str, ...] | None:
            vals = tuple(v for v in params.get(key, ()) if v != "")
            return vals or None

        def one(key: str) -> str:
            vals = [v for v in params.get(key, ()) if v != ""]
            return vals[-1] if vals else ""

        f = Filter(
            include_names=many("name"),
            include_types=many("type"),
            include_tags=many("tag"),
            exclude_names=many("exclude_name"),
            exclude_types=many("exclude_type"),
            exclude_tags=many("exclude_tag"),
            include_metadata=parse_meta(params.get("meta", ())),
            exclude_metadata=parse_meta(params.get("exclude_meta", ())),
        )
        status = one("status") or None
        if status is not None and status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        limit_text = one("limit") or "100"
        try:
            limit = int(limit_text)
        except ValueError:
            raise ValueError(f"limit {limit_text!r} is not a whole number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        tokens = one("tokens") or "all"
        if tokens not in ("all", "cached"):
            raise ValueError(f"tokens {tokens!r} is not 'all' or 'cached'")
        return cls(q=one("q").strip(), filter=None if f.is_empty else f, status=status,
                   all_runs=one("all") in ("1", "true", "on", "yes"), limit=limit,
                   tokens=tokens)


def list_runs(store: Store, query: RunsQuery, tokens: TokenCounter) -> dict[str, Any]:
    """The runs list: newest first, with token counts and the cursor to follow from.

    ``last_seq`` is read before the runs, so following the stream from it misses no
    change made after the list was read (a change may be seen twice: the page's
    refresh is idempotent).
    """
    last_seq = store.last_seq()
    roots_only = not query.all_runs and query.filter is None and not query.q
    want = query.limit + 1
    if query.q:
        needle = query.q.casefold()
        found = [r for r in store.runs(roots_only=roots_only, status=query.status,
                                       filter=query.filter)
                 if needle in r.name.casefold()][:want]
    else:
        found = store.runs(roots_only=roots_only, status=query.status, filter=query.filter,
                           limit=want)
    more = len(found) > query.limit
    found = found[: query.limit]
    counts = tokens.for_runs(found, cached_only=query.tokens == "cached")
    return {
        "runs": [run_dict(r, counts.get(r.run_id)) for r in found],
        "more": more,
        "last_seq": last_seq,
        "roots_only": roots_only,
    }


def token_counts(store: Store, run_ids: Sequence[str],
                 tokens: TokenCounter) -> dict[str, Any]:
    """``{"token_counts": {run_id: n}}`` for these runs (and their descendants).

    Raises:
        UnknownRunError: one of the ids is no run.
        ValueError: more than :data:`MAX_LIMIT` ids.
    """
    if len(run_ids) > MAX_LIMIT:
        raise ValueError(f"at most {MAX_LIMIT} runs per request, not {len(run_ids)}")
    infos = [store.run_info(rid) for rid in run_ids]
    counts = tokens.for_runs(infos)
    return {"token_counts": {i.run_id: counts[i.run_id] for i in infos}}


def run_detail(store: Store, run_id: str, tokens: TokenCounter) -> dict[str, Any]:
    """One run and its descendants (start order), with the cursor to follow from.

    Raises:
        UnknownRunError: no run has this id (or unique prefix/suffix).
    """
    last_seq = store.last_seq()
    info = store.run_info(run_id)
    _, subtree = store.subtree_ids(info.run_id)
    runs = [r for r in store.trace_runs(info.trace_id) if r.run_id in subtree]
    counts = tokens.for_runs(runs)
    looped = parent_cycles(runs)
    shown = [run_dict(r, counts.get(r.run_id, 0)) for r in runs]
    for d in shown:
        d["parent_cycle"] = d["run_id"] in looped
    head = run_dict(info, counts.get(info.run_id, 0))
    head["parent_cycle"] = info.run_id in looped
    return {
        "run": head,
        "runs": shown,
        "last_seq": last_seq,
    }


def events_page(store: Store, run_id: str, after: int, limit: int) -> bytes:
    """A page of a run's (and its descendants') events after ``after``, as JSON bytes.

    ``{"events": [...], "next": <cursor>, "more": <bool>}``: call again with
    ``after=next`` while ``more`` is true. Each event is :func:`event_line`.
    """
    rid = store.resolve_run_id(run_id)
    page = list(islice(store.events(rid, after=after, descendants=True,
                                    page_size=min(limit + 1, MAX_LIMIT + 1)), limit + 1))
    more = len(page) > limit
    page = page[:limit]
    nxt = page[-1].seq if page else after
    return b"".join((
        b'{"events":[', b",".join(event_line(e) for e in page), b'],"next":',
        str(nxt).encode(), b',"more":', b"true" if more else b"false", b"}",
    ))
