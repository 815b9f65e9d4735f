"""What the web viewer's JSON API returns: runs, run trees, pages of events, filters.

Everything here is synchronous and reads the store directly; the ASGI layer
(:mod:`runlog.web.app`) calls it in worker threads so a slow read never blocks the
event loop. Values go out as the codec stores them (plain JSON, with ``{"$rl:...": }``
tags for values JSON cannot hold), and events go out as their stored bytes with the
``seq`` put first, the same line ``runlog replay`` prints: what the page folds live is
byte for byte what a replay folds afterwards.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from runlog import codec, content
from runlog.api import Store
from runlog.errors import StoreError
from runlog.events import Event, RunInfo, datetime_to_micros
from runlog.filters import ANY, Filter
from runlog.store.base import StoredMetadata

__all__ = [
    "Previews",
    "RunsQuery",
    "TokenCounter",
    "event_line",
    "events_page",
    "list_runs",
    "parent_cycles",
    "parse_meta",
    "run_detail",
    "run_dict",
    "run_values",
    "store_unavailable",
    "token_counts",
    "trace_text",
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


@dataclass(slots=True)
class _Tally:
    """What one trace's events say beyond the runs table, up to seq ``high``."""

    high: int = 0
    tokens: Counter[str] = field(default_factory=Counter)  # token events per run
    usage: dict[str, Counter[str]] = field(default_factory=dict)  # model runs' usage
    failed: set[str] = field(default_factory=set)  # runs that ended with an error

    def merged(self, new: _Tally) -> _Tally:
        usage = {k: Counter(v) for k, v in self.usage.items()}
        for k, v in new.usage.items():
            usage.setdefault(k, Counter()).update(v)
        return _Tally(new.high, self.tokens + new.tokens, usage, self.failed | new.failed)


MODEL_TYPES = ("llm", "chat_model")


class TokenCounter:
    """Counts token events (stream events on channel ``token``) per run, incrementally,
    and with them the token usage models reported and which runs failed.

    The runs list shows a token count per run, which the ``runs`` table does not keep.
    Counting means reading the trace's events; this cache remembers, per trace, the
    counts and the last ``seq`` read, and later reads only what was committed since
    (``seq`` is gap-free in commit order, so nothing is missed). At most ``max_traces``
    traces are remembered (least recently used first out). Along the way it sums the
    ``usage_metadata`` of model runs' outputs (:func:`runlog.content.usage`, read
    from the stored JSON) and notes runs whose end event carries an error, so a root
    whose child failed can say so.
    """

    def __init__(self, store: Store, max_traces: int = 10_000) -> None:
        self.store = store
        self.max_traces = max_traces
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, _Tally] = OrderedDict()

    def tally(self, trace_id: str) -> _Tally:
        """The trace's tally, brought up to date (a private copy)."""
        with self._lock:
            old = self._cache.get(trace_id, _Tally())
        new = _Tally(old.high)
        for e in self.store.events(trace_id=trace_id, after=old.high):
            new.high = e.seq
            kind = e.kind
            if kind == "stream":
                if e.channel == "token":
                    new.tokens[e.run_id] += 1
            elif kind == "end":
                env = e.envelope
                if env.get("error") is not None:
                    new.failed.add(e.run_id)
                if e.run_type in MODEL_TYPES:
                    used = content.usage(env.get("data"))
                    if used:
                        new.usage.setdefault(e.run_id, Counter()).update(used)
        with self._lock:
            cur = self._cache.get(trace_id, _Tally())
            if cur.high == old.high:  # nobody updated it meanwhile: merge
                cur = cur.merged(new)
            elif cur.high < new.high:  # a concurrent reader was behind us: ours is fresher
                cur = old.merged(new)
            self._cache[trace_id] = cur
            self._cache.move_to_end(trace_id)
            while len(self._cache) > self.max_traces:
                self._cache.popitem(last=False)
            return _Tally(cur.high, Counter(cur.tokens),
                          {k: Counter(v) for k, v in cur.usage.items()}, set(cur.failed))

    def per_run(self, trace_id: str) -> Counter[str]:
        """Token events of each run of one trace (its own, not its children's)."""
        return self.tally(trace_id).tokens

    def is_cached(self, trace_id: str) -> bool:
        with self._lock:
            return trace_id in self._cache

    def for_runs(self, runs: Sequence[RunInfo], *,
                 cached_only: bool = False) -> dict[str, int]:
        """Token count of each run *and its descendants* (a root: its whole trace).

        With ``cached_only``, runs of traces never counted before are left out (their
        first count reads every event of the trace); the others are brought up to date.
        """
        return {rid: s["token_count"]
                for rid, s in self.summaries(runs, cached_only=cached_only).items()}

    def summaries(self, runs: Sequence[RunInfo], *,
                  cached_only: bool = False) -> dict[str, dict[str, Any]]:
        """Per run, over the run *and its descendants*: ``token_count``, ``usage``
        (``{"input_tokens", "output_tokens", "total_tokens"}`` summed, ``{}`` when no
        model reported any) and ``failed_children`` (descendants that ended with an
        error). ``cached_only`` as in :meth:`for_runs`."""
        out: dict[str, dict[str, Any]] = {}
        by_trace: dict[str, list[RunInfo]] = {}
        for r in runs:
            by_trace.setdefault(r.trace_id, []).append(r)
        for trace_id, wanted in by_trace.items():
            if cached_only and not self.is_cached(trace_id):
                continue
            t = self.tally(trace_id)
            children: dict[str | None, list[str]] | None = None
            for r in wanted:
                if r.run_id == trace_id:  # a root: its whole trace
                    members: Iterable[str] = set(t.tokens) | set(t.usage) | t.failed
                else:
                    if children is None:
                        children = {}
                        for tr in self.store.trace_runs(trace_id):
                            children.setdefault(tr.parent_id, []).append(tr.run_id)
                    members = _subtree(r.run_id, children)
                usage: Counter[str] = Counter()
                tokens = failed = 0
                for rid in members:
                    tokens += t.tokens.get(rid, 0)
                    usage.update(t.usage.get(rid, {}))
                    failed += rid in t.failed and rid != r.run_id
                out[r.run_id] = {"token_count": tokens, "usage": dict(usage),
                                 "failed_children": failed}
        return out


def _subtree(run_id: str, children: Mapping[str | None, list[str]]) -> set[str]:
    """The run and its descendants; each run once (a forged store may hold a cycle)."""
    seen, todo = {run_id}, [run_id]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


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


SORTS = ("start", "latency", "tokens")
SCAN_LIMIT = 2000
"""How many runs (newest first) a search, a time range or a sort other than by start
looks at per request: the store's own query cannot do these, so they run over
``store.runs()`` here, bounded (the answer says ``scan_limited`` when it stopped)."""
MAX_OFFSET = 100_000


def _time_param(name: str, text: str) -> int | None:
    """An ISO 8601 time (a naive one is UTC) or epoch microseconds -> epoch µs."""
    if text == "":
        return None
    if text.isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} {text[:40]!r} is not an ISO 8601 time (2026-01-31T12:00) "
                         "or epoch microseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return datetime_to_micros(t)


@dataclass(frozen=True, slots=True)
class RunsQuery:
    """The runs list's query string: the CLI's filters plus a text search, a time
    range, a sort and a page.

    ``q`` is a case-insensitive substring of the run name or of its content (inputs,
    outputs, streamed text; see :func:`trace_text`). As in ``runlog runs``, only root
    runs are listed unless ``all_runs`` is set or any filter (or search) is given: a
    search for ``FakeChatModel`` should find the model runs inside pipelines.
    ``since``/``until`` bound the start time (epoch µs, inclusive); ``sort`` is
    ``start`` (newest first), ``latency`` (slowest first) or ``tokens`` (most first);
    ``offset`` skips that many rows (the next page).
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
    offset: int = 0
    sort: str = "start"
    since: int | None = None
    until: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> RunsQuery:
        """Read a query string (each key mapped to all its values).

        Raises:
            ValueError: a bad status, limit, offset, sort, time or metadata pair (the
                message says which).
        """

        def many(key: str) -> tuple[str, ...] | None:
            vals = tuple(v for v in params.get(key, ()) if v != "")
            return vals or None

        def one(key: str) -> str:
            vals = [v for v in params.get(key, ()) if v != ""]
            return vals[-1] if vals else ""

        def number(key: str, default: int, low: int, high: int) -> int:
            text = one(key) or str(default)
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{key} {text[:40]!r} is not a whole number") from None
            if not low <= value <= high:
                raise ValueError(f"{key} must be between {low} and {high}, not {value}")
            return value

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
        limit = number("limit", 100, 1, MAX_LIMIT)
        offset = number("offset", 0, 0, MAX_OFFSET)
        tokens = one("tokens") or "all"
        if tokens not in ("all", "cached"):
            raise ValueError(f"tokens {tokens!r} is not 'all' or 'cached'")
        sort = one("sort") or "start"
        if sort not in SORTS:
            raise ValueError(f"sort {sort!r} is not one of {', '.join(SORTS)}")
        since, until = _time_param("since", one("since")), _time_param("until", one("until"))
        return cls(q=one("q").strip(), filter=None if f.is_empty else f, status=status,
                   all_runs=one("all") in ("1", "true", "on", "yes"), limit=limit,
                   tokens=tokens, offset=offset, sort=sort, since=since, until=until)


def run_values(store: Store, info: RunInfo) -> tuple[Any, Any]:
    """A run's inputs and outputs as stored (JSON, tags not decoded): its start event's
    data and its end event's (``inputs`` there win), read by their seqs (two short
    reads, whatever the run streamed). Outputs are ``None`` while it runs."""
    inputs = outputs = None
    for e in store.events(trace_id=info.trace_id, after=info.start_seq - 1,
                          until=info.start_seq):
        if e.run_id == info.run_id:
            inputs = e.envelope.get("data")
    if info.end_seq is not None:
        for e in store.events(trace_id=info.trace_id, after=info.end_seq - 1,
                              until=info.end_seq):
            if e.run_id == info.run_id:
                env = e.envelope
                outputs = env.get("data")
                if "inputs" in env:
                    inputs = env["inputs"]
    return inputs, outputs


class Previews:
    """The runs list's input/output previews, remembered per run and end seq (a run's
    start and end events never change once committed), so the list refreshing while
    tokens stream reads only rows it has not shown before. At most ``size`` runs."""

    def __init__(self, size: int = 5000) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, int | None], tuple[str, str | None]] = \
            OrderedDict()

    def of(self, store: Store, info: RunInfo) -> tuple[str, str | None]:
        """``(input preview, output preview or None while running)``."""
        key = (info.run_id, info.start_seq, info.end_seq)
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
        inputs, outputs = run_values(store, info)
        got = (content.preview(content.readable(inputs), _PREVIEW),
               content.preview(content.readable(outputs), _PREVIEW)
               if info.end_seq is not None else None)
        with self._lock:
            self._cache[key] = got
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return got


def trace_text(store: Store, trace_id: str) -> dict[str, tuple[list[str], str]]:
    """What a search looks at, per run of one trace (one pass over its events): the
    text of its inputs, output chunks and outputs (:func:`runlog.content.search_text`,
    from the stored JSON), and its tokens joined (a word streamed in pieces is found)."""
    texts: dict[str, list[str]] = {}
    tokens: dict[str, list[str]] = {}
    for e in store.events(trace_id=trace_id):
        env = e.envelope
        data = env.get("data")
        if e.kind == "stream" and e.channel == "token":
            token = data.get("token") if type(data) is dict else None
            if type(token) is str:
                tokens.setdefault(e.run_id, []).append(token)
            continue
        pieces = texts.setdefault(e.run_id, [])
        pieces.append(content.search_text(data))
        if "inputs" in env:
            pieces.append(content.search_text(env["inputs"]))
    return {rid: (texts.get(rid, []), "".join(tokens.get(rid, [])))
            for rid in texts.keys() | tokens.keys()}


class _Search:
    """One search request: a case-insensitive substring of a run's name or content.

    Candidates come newest first, often several of one trace: each trace's events are
    read once (:func:`trace_text`) and its text kept while a few recent traces are
    (``keep``), so the memory a search holds stays a few traces' text.
    """

    def __init__(self, store: Store, needle: str, keep: int = 8) -> None:
        self.store = store
        self.needle = needle.casefold()
        self.keep = keep
        self._texts: OrderedDict[str, dict[str, tuple[list[str], str]]] = OrderedDict()

    def matches(self, info: RunInfo) -> bool:
        if self.needle in info.name.casefold():
            return True
        texts = self._texts.get(info.trace_id)
        if texts is None:
            texts = self._texts[info.trace_id] = trace_text(self.store, info.trace_id)
            while len(self._texts) > self.keep:
                self._texts.popitem(last=False)
        pieces, streamed = texts.get(info.run_id, ([], ""))
        return any(self.needle in p.casefold() for p in pieces) or \
            self.needle in streamed.casefold()


_PREVIEW = 160


def list_runs(store: Store, query: RunsQuery, tokens: TokenCounter,
              previews: Previews | None = None) -> dict[str, Any]:
    """The runs list: a page of runs with previews, token counts and usage, and the
    cursor to follow from.

    ``last_seq`` is read before the runs, so following the stream from it misses no
    change made after the list was read (a change may be seen twice: the page's
    refresh is idempotent). Without a search, time range or sort, the store answers
    the page itself (``limit`` = offset + page + 1); otherwise the newest
    :data:`SCAN_LIMIT` runs the store's filters pass are read and searched, bounded in
    time, sorted here.
    """
    last_seq = store.last_seq()
    roots_only = not query.all_runs and query.filter is None and not query.q
    end = query.offset + query.limit
    scan = bool(query.q) or query.since is not None or query.until is not None \
        or query.sort != "start"
    scan_limited = False
    summaries: dict[str, dict[str, Any]] = {}
    if not scan:
        found = store.runs(roots_only=roots_only, status=query.status, filter=query.filter,
                           limit=end + 1)
    else:
        found = store.runs(roots_only=roots_only, status=query.status, filter=query.filter,
                           limit=SCAN_LIMIT + 1)
        scan_limited = len(found) > SCAN_LIMIT
        found = found[:SCAN_LIMIT]
        if query.since is not None or query.until is not None:
            lo, hi = query.since, query.until
            found = [r for r in found
                     if (lo is None or datetime_to_micros(r.start_time) >= lo)
                     and (hi is None or datetime_to_micros(r.start_time) <= hi)]
        if query.q:
            search = _Search(store, query.q)
            hits = []
            for r in found:
                if search.matches(r):
                    hits.append(r)
                    if query.sort == "start" and len(hits) > end:
                        break  # newest first already: the page and "more" are known
            found = hits
        if query.sort == "latency":
            now = dt.datetime.now(dt.UTC)
            found.sort(key=lambda r: ((r.end_time or now) - r.start_time), reverse=True)
        elif query.sort == "tokens":
            summaries = tokens.summaries(found)
            found.sort(key=lambda r: _token_weight(summaries.get(r.run_id)), reverse=True)
    more = len(found) > end
    page = found[query.offset:end]
    if not summaries:
        summaries = tokens.summaries(page, cached_only=query.tokens == "cached")
    rows = []
    for r in page:
        s = summaries.get(r.run_id)
        d = run_dict(r, s["token_count"] if s else None)
        d["usage"] = s["usage"] if s else None
        d["failed_children"] = s["failed_children"] if s else None
        d["input_preview"], d["output_preview"] = (previews or Previews(0)).of(store, r)
        rows.append(d)
    return {
        "runs": rows,
        "more": more,
        "offset": query.offset,
        "scan_limited": scan_limited,
        "last_seq": last_seq,
        "roots_only": roots_only,
    }


def _token_weight(s: dict[str, Any] | None) -> int:
    """What "most tokens" means: the usage models reported, else token events."""
    if not s:
        return 0
    return int(s["usage"].get("total_tokens") or s["token_count"])


def token_counts(store: Store, run_ids: Sequence[str],
                 tokens: TokenCounter) -> dict[str, Any]:
    """``{"token_counts": {run_id: n}, "usage": {run_id: {...}}, "failed_children":
    {run_id: n}}`` for these runs (and their descendants; see
    :meth:`TokenCounter.summaries`).

    Raises:
        UnknownRunError: one of the ids is no run.
        ValueError: more than :data:`MAX_LIMIT` ids.
    """
    if len(run_ids) > MAX_LIMIT:
        raise ValueError(f"at most {MAX_LIMIT} runs per request, not {len(run_ids)}")
    infos = [store.run_info(rid) for rid in run_ids]
    sums = tokens.summaries(infos)
    return {"token_counts": {i.run_id: sums[i.run_id]["token_count"] for i in infos},
            "usage": {i.run_id: sums[i.run_id]["usage"] for i in infos},
            "failed_children": {i.run_id: sums[i.run_id]["failed_children"] for i in infos}}


def run_detail(store: Store, run_id: str, tokens: TokenCounter) -> dict[str, Any]:
    """One run and its descendants (start order), with the cursor to follow from.

    Raises:
        UnknownRunError: no run has this id (or unique prefix/suffix).
    """
    last_seq = store.last_seq()
    info = store.run_info(run_id)
    _, subtree = store.subtree_ids(info.run_id)
    runs = [r for r in store.trace_runs(info.trace_id) if r.run_id in subtree]
    sums = tokens.summaries(runs)
    looped = parent_cycles(runs)

    def shown_run(r: RunInfo) -> dict[str, Any]:
        s = sums.get(r.run_id, {"token_count": 0, "usage": {}, "failed_children": 0})
        d = run_dict(r, s["token_count"])
        d["usage"], d["failed_children"] = s["usage"], s["failed_children"]
        d["parent_cycle"] = r.run_id in looped
        return d

    shown = [shown_run(r) for r in runs]
    head = shown_run(info)
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
