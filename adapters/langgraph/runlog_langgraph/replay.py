"""Replay a recorded graph's stream from the log, as LangGraph's own methods yielded it.

``stream(store, run_id, stream_mode=..., subgraphs=...)`` rebuilds every recorded
``(namespace, mode, chunk)`` part (folding the ``values`` patches back with the
project's in-place JSON Patch applier, :mod:`runlog.reducers.patch`) and yields those
the arguments select, shaped as ``Pregel.stream`` shapes them. If the graph failed, the
rebuilt exception is raised after the last part, as LangGraph raised it.

Reading runs no recorded code (docs/codec.md). A run still being recorded is followed
live (``store.tail`` until the graph's run ends), from this or another process.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anyio

from runlog import ErrorInfo, Event, Opaque, Store, codec
from runlog.errors import CorruptStoreError, UnknownRunError
from runlog.reducers import error_object
from runlog.reducers.graph import graph_records, v3_event, v3_matches
from runlog.reducers.patch import apply_ops, structural_copy
from runlog.tail import TailNotice
from runlog_langgraph.fields import get_field, set_field, state_field

__all__ = ["NotAGraphRunError", "astream", "parts", "state", "stream", "stream_events"]

_NOT_RAISED = frozenset({"builtins.GeneratorExit", "GeneratorExit"})


class NotAGraphRunError(LookupError):
    """The run holds no recorded LangGraph stream (or not the one asked for)."""


def _timed_records(store: Store, run_id: str
                   ) -> Iterator[tuple[int, tuple[str, Any] | ErrorInfo | None]]:
    """``(time_us, (kind, data))`` for each recorded part of the graph run, then its
    end's error (or ``None``): read from disk, following the run live until it ends."""
    try:
        rid = store.resolve_run_id(run_id)
    except UnknownRunError:
        try:  # a whole id not recorded yet (by another process): wait for it, as tail does
            rid = str(uuid.UUID(run_id))
        except ValueError:
            raise UnknownRunError(run_id, store.location) from None
    with store.tail(run_id=rid, until_end=True) as t:
        for e in t:
            if isinstance(e, TailNotice):
                return  # the writer died: what it committed has been yielded
            for r in _decode(e, rid):
                yield e.time_us, r


def _decode(e: Event, rid: str) -> Iterator[tuple[str, Any] | ErrorInfo | None]:
    if e.run_id != rid:
        return
    if e.kind == "end":
        yield e.error
    else:
        yield from graph_records((e,), rid)


class _Folder:
    """Turns stored part records back into ``(ns, mode, chunk)`` parts."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.state: dict[tuple[Any, ...], Any] = {}
        self.last: dict[tuple[Any, ...], Any] = {}  # the last tasks/checkpoints chunks
        # model run id -> (its token events' chunks read so far, seq of the last read)
        self.tokens: dict[str, tuple[list[Any], int]] = {}
        # the model run whose token event the part just yielded is (None: not one)
        self.token_run: str | None = None

    def token(self, run_id: str, index: int) -> Any:
        """The message of the ``index``-th token event of model run ``run_id``.

        The token event was queued before the event that places its ``messages`` part
        (one writer queue), so it is committed when that event is read (live too); the
        run's token events are read once, then only the new ones."""
        chunks, after = self.tokens.get(run_id, ([], 0))
        if index >= len(chunks) and self.store is not None:
            for e in self.store.events(run_id=run_id, after=after):
                after = e.seq
                if e.kind == "stream" and e.channel == "token":
                    data = e.data
                    chunks.append(data.get("chunk") if isinstance(data, dict) else None)
            self.tokens[run_id] = (chunks, after)
        if index >= len(chunks):
            # the recorder referred to a token event the store does not hold (the writer
            # refused it, or the model run's start, after it was queued): say so, rather
            # than yield a wrong token or an IndexError
            raise CorruptStoreError(
                f"a stored messages part refers to token {index} of model run {run_id}, "
                f"which holds {len(chunks)} token events: that token was not stored")
        return chunks[index]

    def part(self, mode: str, d: dict[str, Any]) -> tuple[tuple[str, ...], str, Any]:
        ns = tuple(d["ns"])
        out = self._part(ns, mode, d)
        if mode in ("tasks", "checkpoints"):
            self.last[(ns, mode)] = out[2]
        return out

    def parts(self, mode: str, d: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str, Any]]:
        """The part(s) one stored event holds: the token parts it places (``"pre"``:
        each is its model run's token event, with its namespace's current metadata),
        its own, then its ``debug`` twin."""
        pre = d.get("pre")
        if type(pre) is list:
            for ns_l, run_id, first, count in pre:
                ns = tuple(ns_l)
                meta = self.state[("messages", ns)]
                for i in range(first, first + count):
                    self.token_run = run_id
                    yield ns, "messages", (self.token(run_id, i), meta)
            self.token_run = None
        if mode == "messages" and not ("data" in d or "message" in d):
            return  # it only placed token parts
        p = self.part(mode, d)
        yield p
        if mode in ("tasks", "checkpoints"):
            twin = self.twin(p, d)
            if twin is not None:
                yield twin

    def twin(self, part: tuple[tuple[str, ...], str, Any], d: dict[str, Any]
             ) -> tuple[tuple[str, ...], str, Any] | None:
        """The ``debug`` part stored inside a tasks/checkpoints part's event, if any
        (its payload is that part's chunk, the same object, as it was live)."""
        meta = d.get("debug")
        if type(meta) is not dict:
            return None
        return part[0], "debug", {**meta, "payload": part[2]}

    def _part(self, ns: tuple[str, ...], mode: str, d: dict[str, Any]
              ) -> tuple[tuple[str, ...], str, Any]:
        if mode == "debug" and "payload_of" in d:  # the same object, as it was live
            return ns, mode, {**d["data"], "payload": self.last[(ns, d["payload_of"])]}
        if mode == "messages":
            key_m = ("messages", ns)
            if "message" in d:  # the same metadata as the namespace's previous token
                return ns, mode, (d["message"], self.state[key_m])
            chunk_m = d.get("data")
            if type(chunk_m) is tuple and len(chunk_m) == 2:
                self.state[key_m] = chunk_m[1]
        if "patch" in d:
            path: tuple[str, ...] = tuple(d["field"])
            key = (mode, ns, path)
            value = apply_ops(self.state[key], d["patch"])
            self.state[key] = value
            chunk = set_field(d["data"], path, structural_copy(value))
            if "tuples" in d and type(chunk) is dict:
                for k in d["tuples"]:
                    chunk[k] = tuple(chunk[k])
            if mode in ("tasks", "debug"):
                _revive_task_error(chunk)
            return ns, mode, chunk
        chunk = d["data"]
        if "tuples" in d and type(chunk) is dict:
            for k in d["tuples"]:
                chunk[k] = tuple(chunk[k])
        if mode in ("tasks", "debug"):
            _revive_task_error(chunk)
        field = state_field(mode, chunk)
        if field is not None:
            self.state[(mode, ns, field)] = structural_copy(get_field(chunk, field))
        return ns, mode, chunk


def _revive_task_error(chunk: Any) -> None:
    """Rebuild the exception of a failed task (``tasks`` and ``debug`` task results),
    of the same class and ``args``, running none of its code (as a run's error is, see
    docs/codec.md). One whose class is not importable here stays an ``Opaque``."""
    if type(chunk) is not dict:
        return
    payload = chunk.get("payload")
    target: dict[str, Any] = payload if type(payload) is dict else chunk
    err = target.get("error")
    if not (isinstance(err, Opaque) and err.tag == "$rl:exception"):
        return
    try:
        name, args = err.payload[0], err.payload[1]
        module, _, qual = str(name).partition(":")
        exc = codec.revive_exception(qual if module == "builtins" else f"{module}.{qual}",
                                     tuple(args), {})
    except Exception:
        return
    if exc is not None:
        target["error"] = exc


def parts(store: Store, run_id: str) -> Iterator[Any]:
    """Every recorded part, ``(namespace, mode, chunk)``, in recorded order; then the
    run's stored :class:`~runlog.ErrorInfo` if it failed (the last item, not raised).

    The first item is the ``call`` record (a dict: what the application asked for)."""
    for _t, p, _token_run in _timed_parts(store, run_id):
        yield p


def _timed_parts(store: Store, run_id: str) -> Iterator[tuple[int, Any, str | None]]:
    """:func:`parts`, each with its event's time (microseconds) and, for a token's
    ``messages`` part, its model run's id (what :mod:`runlog_langgraph.v3derive` needs)."""
    folder = _Folder(store)
    for t, r in _timed_records(store, run_id):
        if r is None:
            return
        if isinstance(r, ErrorInfo):
            yield t, r, None
            return
        kind, data = r
        if kind == "call" or kind == "v3":
            yield t, (kind, data), None
        else:
            for p in folder.parts(kind, data):
                yield t, p, folder.token_run


def shape_part(part: tuple[Any, str, Any], stream_mode: Any, subgraphs: bool) -> Any:
    """A ``(namespace, mode, payload)`` part as LangGraph's ``stream`` yields it for
    these arguments: the recorder (live) and the replay give the app the same shape."""
    ns, mode, payload = part
    if subgraphs and isinstance(stream_mode, list):
        return part
    if isinstance(stream_mode, list):
        return (mode, payload)
    if subgraphs:
        return (ns, payload)
    return payload


_INTERRUPT = "__interrupt__"  # langgraph._internal._constants.INTERRUPT
_START = "__start__"


def shape_v2(part: tuple[Any, str, Any], output_mapper: Any = None,
             state_mapper: Any = None) -> dict[str, Any]:
    """A ``(namespace, mode, payload)`` part as ``stream(..., version="v2")`` yields it:
    a ``StreamPart`` dict ``{"type", "ns", "data"}``, a ``values`` one with the state's
    ``__interrupt__`` moved to ``"interrupts"``, as LangGraph's ``_output`` does.

    ``output_mapper``/``state_mapper`` are the graph's coercions of a Pydantic or
    dataclass state (``Pregel._output_mapper``/``_state_mapper``), given live only: the
    replay runs no class of the application, so it yields such states as the dicts the
    v1 parts hold. Unlike LangGraph, the payload is copied, not changed in place: it
    is also the part the recorder holds."""
    ns, mode, payload = part
    if mode == "values":
        ints: Any = ()
        if isinstance(payload, dict):
            if _INTERRUPT in payload:
                payload = dict(payload)
                ints = payload.pop(_INTERRUPT)
            if output_mapper is not None:
                payload = output_mapper(payload)
        return {"type": mode, "ns": ns, "data": payload, "interrupts": ints}
    if mode in ("checkpoints", "debug") and state_mapper is not None:
        payload = _coerce_checkpoint(payload, state_mapper)
    return {"type": mode, "ns": ns, "data": payload}


def _coerce_checkpoint(payload: Any, mapper: Any) -> Any:
    """LangGraph's ``_coerce_checkpoint_values`` on a copy: a checkpoint's ``values``
    (also inside a ``debug`` checkpoint) through the state mapper, except the first
    checkpoint (``__start__`` in ``next``: not every channel is set yet)."""
    if not isinstance(payload, dict):
        return payload
    inner = payload.get("payload")
    if payload.get("type") == "checkpoint" and isinstance(inner, dict) \
            and isinstance(inner.get("values"), dict) and _START not in inner.get("next", ()):
        return {**payload, "payload": {**inner, "values": mapper(inner["values"])}}
    if isinstance(payload.get("values"), dict) and _START not in payload.get("next", ()):
        return {**payload, "values": mapper(payload["values"])}
    return payload


def _check_modes(call: dict[str, Any], stream_mode: Any) -> None:
    modes = set(call.get("modes") or ())
    asked = stream_mode if isinstance(stream_mode, list | tuple) else [stream_mode]
    missing = [m for m in asked if m not in modes]
    if missing:
        raise ValueError(f"stream mode(s) {missing} were not recorded (recorded: "
                         f"{sorted(modes)})")


def stream(store: Store, run_id: str, *, stream_mode: str | Sequence[str] | None = None,
           subgraphs: bool | None = None, version: str | None = None) -> Iterator[Any]:
    """Yield what ``graph.stream(..., stream_mode=..., subgraphs=..., version=...)``
    yielded live.

    ``stream_mode``/``subgraphs``/``version`` default to what the application asked for
    when it was recorded; any mode or list of modes, either ``subgraphs`` and either
    output format may be asked instead (every mode was recorded, subgraphs included,
    and a v1 and a v2 call store the same parts). With ``version="v1"`` a list gives
    ``(mode, chunk)`` and ``subgraphs=True`` puts the namespace tuple in front, as in
    LangGraph; ``version="v2"`` gives ``StreamPart`` dicts (:func:`shape_v2`).

    Raises:
        NotAGraphRunError: ``run_id`` is no recorded graph run (or only its v3 events
            were recorded).
        ValueError: a mode that was not recorded, or a ``version`` other than
            ``"v1"``/``"v2"``.
        BaseException: the graph's own error, rebuilt, after the last item.
    """
    if version not in (None, "v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2' (got {version!r}); the v3 "
                         "protocol events replay through runlog_langgraph.stream_events")
    it = parts(store, run_id)
    call = _first_call(it, run_id)
    if call.get("v3"):
        raise NotAGraphRunError(
            f"run {run_id} was recorded through stream_events(version='v3'): replay it "
            "with runlog_langgraph.stream_events")
    mode: Any = call["stream_mode"] if stream_mode is None else stream_mode
    if stream_mode is None and call.get("stream_mode_is_list") is False \
            and isinstance(mode, list):
        mode = tuple(mode)
    sub = bool(call["subgraphs"]) if subgraphs is None else subgraphs
    v2 = (call.get("version") == "v2") if version is None else version == "v2"
    _check_modes(call, mode)
    for p in it:
        if isinstance(p, ErrorInfo):
            if p.type not in _NOT_RAISED:
                raise error_object(p)
            return
        if p[0] == "v3":
            continue
        if p[1] in mode and (sub or not p[0]):
            yield shape_v2(p) if v2 else shape_part(p, mode, sub)


def _first_call(it: Iterator[Any], run_id: str) -> dict[str, Any]:
    for p in it:
        if isinstance(p, tuple) and p[0] == "call" and isinstance(p[1], dict):
            return p[1]
        break
    raise NotAGraphRunError(f"run {run_id} holds no recorded LangGraph stream")


async def astream(store: Store, run_id: str, *,
                  stream_mode: str | Sequence[str] | None = None,
                  subgraphs: bool | None = None, version: str | None = None
                  ) -> AsyncIterator[Any]:
    """``stream`` for async code: yields what ``graph.astream(...)`` yielded live.

    The log is read in a worker thread, a page of items at a time, so the event loop
    is never blocked on disk or on a live run's next event."""
    it = stream(store, run_id, stream_mode=stream_mode, subgraphs=subgraphs,
                version=version)
    done = object()
    while True:
        item = await anyio.to_thread.run_sync(next, it, done)
        if item is done:
            return
        yield item


def state(store: Store, run_id: str, step: int | None = None) -> Any:
    """The graph's state (its root ``values``) after superstep ``step``, from the log.

    Steps are LangGraph's: ``0`` is the input, ``k`` the state after the tasks of step
    ``k`` ran (the ``step`` of the ``debug``/checkpoint parts); the last step's state
    when ``step`` is ``None``. Nothing runs: the stored patches are folded.

    Raises:
        KeyError: no state was recorded for that step.
    """
    current, found, last = 0, {}, None
    it = parts(store, run_id)
    _first_call(it, run_id)
    for p in it:
        if isinstance(p, ErrorInfo) or p[0] in ("v3",):
            continue
        ns, mode, chunk = p
        if ns:
            continue
        if mode == "debug" and isinstance(chunk, dict) and chunk.get("type") in (
                "task", "task_result") and isinstance(chunk.get("step"), int):
            current = chunk["step"]
        elif mode == "values":
            found[current] = chunk
            last = chunk
    if step is None:
        if last is None:
            raise KeyError("no state was recorded")
        return last
    if step not in found:
        raise KeyError(f"no state recorded for step {step} (steps: {sorted(found)})")
    return found[step]


def _derive_records(it: Iterator[tuple[int, Any, str | None]]
                    ) -> Iterator[tuple[int, Any, str | None]]:
    """The parts of :func:`_timed_parts` for :mod:`runlog_langgraph.v3derive`: the
    ``call`` and v3 records left out, and the graph's stored error rebuilt (if it
    raised) in place of its :class:`~runlog.ErrorInfo`."""
    for t, p, token_run in it:
        if isinstance(p, ErrorInfo):
            if p.type not in _NOT_RAISED:
                yield t, error_object(p), None
            return
        if p[0] != "call" and p[0] != "v3":
            yield t, p, token_run


def stream_events(store: Store, run_id: str, *, version: str = "v3",
                  since: int | None = None, channels: Sequence[str] | None = None,
                  namespace: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """The v3 protocol events of a graph run: as emitted, for a
    ``stream_events(version="v3")`` call; as LangGraph's ``stream_events(version="v3")``
    would have emitted them, for a run recorded through a plain call (``stream``,
    ``invoke``, ``astream``, ...: derived from its stored parts by LangGraph's own
    transformers, see :mod:`runlog_langgraph.v3derive`).

    Each event keeps LangGraph's ``seq``, ``method`` and ``params``. ``since`` resumes
    after that seq; ``channels`` keeps the events of those protocol channels
    (``"custom:<name>"`` selects one named custom stream); ``namespace`` keeps the
    events at or below that namespace path (prefix match), as the protocol defines
    them (``langchain_protocol.EventStreamRequest``).

    Raises:
        ValueError: a ``version`` other than ``"v3"``.
        NotAGraphRunError: the run holds no recorded LangGraph stream.
    """
    if version != "v3":
        raise ValueError("only version='v3' protocol events are recorded; use "
                         "runlog_langchain.astream_events for LangChain's v1/v2 events")
    chans = frozenset(channels) if channels is not None else None
    ns = list(namespace) if namespace is not None else None
    timed = _timed_parts(store, run_id)
    first = next(timed, (0, None, None))[1]
    if not (isinstance(first, tuple) and first[0] == "call"
            and isinstance(first[1], dict)):
        raise NotAGraphRunError(f"run {run_id} holds no recorded LangGraph stream")
    if not first[1].get("v3"):
        from runlog_langgraph.v3derive import derive
        names = first[1].get("transformers")
        for derived in derive(_derive_records(timed),
                              names if isinstance(names, list) else None):
            if since is not None and derived["seq"] <= since:
                continue
            if v3_matches(derived, chans, ns):
                yield derived
        return
    fold: dict[tuple[Any, ...], Any] = {}
    for _t, r, _token_run in timed:
        if not isinstance(r, tuple):
            return
        if r[0] != "v3" or not isinstance(r[1], dict):
            continue  # (parts of other modes, which a v3 call does not record)
        stored = r[1]
        ev = v3_event(stored, fold)
        if ev is None:
            continue
        if since is not None and not (isinstance(ev.get("seq"), int) and ev["seq"] > since):
            continue
        if v3_matches(ev, chans, ns):
            yield ev
