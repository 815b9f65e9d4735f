"""The events view: stored events as LangChain ``astream_events(version="v2")`` dicts.

:class:`EventsReducer` maps each stored event to the v2 event dicts LangChain's
``_AstreamEventsCallbackHandler`` would have queued for the same callback
(spec section 4, summarised in ``docs/views.md``):

* ``on_<type>_start`` / ``_stream`` / ``_end`` with per-type ``data``; chat models keep
  the type ``chat_model`` here (they are ``llm`` only in the log view);
* ``parent_ids`` root first, computed from a parent map that outlives run completion;
* no stream event for a run that has already ended; errors produce nothing except
  ``on_tool_error``;
* custom events (``channel="custom"``) become ``on_custom_event`` with the dispatching
  run's inheritable tags, filtered with their *name* standing for both name and type;
* the root is filtered like any run, and the first event that survives the filter gets
  ``data["input"]`` = the root's input (the value ``astream_events`` was called with),
  while that run's end event loses its ``input``;
* a model at the root streams through the tap, not the token callback, so its tokens
  become ``on_<type>_stream`` with the message chunk (chat) or the text (LLM).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runlog import codec
from runlog.events import ErrorInfo, Event
from runlog.filters import Filter
from runlog.reducers.common import (
    LLM_TYPES,
    ChunkFactory,
    inheritable_tags,
    is_placeholder,
    token_chunk,
)

__all__ = ["EventsReducer", "ReplayedError", "error_object", "events_view"]

StreamEvent = dict[str, Any]


class ReplayedError(Exception):
    """Stands for a recorded exception whose class is not importable in this process
    (defined in a function, its module not imported) or cannot be revived safely.

    ``type`` is the recorded ``module.Qualname``; ``str()`` is the recorded message;
    ``recorded_args`` and ``recorded_attrs`` are the exception's ``args`` and ``__dict__``
    as stored (empty when the store does not have them).
    """

    def __init__(self, type_name: str, message: str, recorded_args: tuple[Any, ...] = (),
                 recorded_attrs: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.type = type_name
        self.recorded_args = recorded_args
        self.recorded_attrs = dict(recorded_attrs or {})

    def __repr__(self) -> str:
        return f"ReplayedError({self.type!r}, {str(self)!r})"


def error_object(err: ErrorInfo) -> BaseException:
    """Rebuild the exception a failed run raised, from its stored :class:`ErrorInfo`:
    the same class with the same ``args`` and ``__dict__`` attributes, so that
    ``except``/``pytest.raises`` match a replay as they matched the live run.

    The stored type may be forged, so no code of the class runs
    (:func:`runlog.codec.revive_exception`); a class not importable here gives a
    :class:`ReplayedError`. An error stored without ``args`` (older stores) is rebuilt
    from its message alone.
    """
    args = err.args if err.args is not None else (err.message,)
    attrs = err.attrs if err.attrs is not None else {}
    exc = codec.revive_exception(err.type, args, attrs)
    if exc is not None:
        return exc
    return ReplayedError(err.type, err.message, err.args or (), attrs)


@dataclass(slots=True)
class _Info:
    name: str
    run_type: str
    tags: list[str]
    metadata: dict[str, Any]
    inputs: Any
    has_inputs: bool


@dataclass(slots=True)
class EventsReducer:
    """Feed events in seq order; :meth:`feed` returns the v2 dicts each one produces."""

    filter: Filter | None = None
    chunk_factory: ChunkFactory = token_chunk
    root_id: str | None = None
    root_input: Any = None
    first_run_id: str | None = None
    first_sent: bool = False
    run_map: dict[str, _Info] = field(default_factory=dict)
    parent_map: dict[str, str | None] = field(default_factory=dict)
    last_seq: int = 0

    def parent_ids(self, run_id: str) -> list[str]:
        out: list[str] = []
        pm = self.parent_map
        cur: str | None = pm.get(run_id)
        while cur is not None and cur not in out:
            out.append(cur)
            cur = pm.get(cur)
        out.reverse()
        return out

    def feed(self, e: Event) -> list[StreamEvent]:
        self.last_seq = e.seq
        kind = e.kind
        if kind == "start":
            return self._start(e)
        info = self.run_map.get(e.run_id)
        if kind == "stream":
            if info is None:  # the run has ended: LangChain drops late chunks
                return []
            return self._stream(e, info)
        if info is None:
            return []
        del self.run_map[e.run_id]
        return self._end(e, info)

    def _event(self, name: str, e: Event, info: _Info, data: dict[str, Any],
               kind: str | None = None) -> StreamEvent:
        # in the key order LangChain builds each kind of event with (== ignores it;
        # printing, list(event) and json.dumps show it): starts; chunks of a tapped
        # stream; ends, errors and a model's tokens from on_llm_new_token
        kind = kind or name.rsplit("_", 1)[-1]
        if kind == "start":
            return {"event": name, "data": data, "name": info.name, "tags": list(info.tags),
                    "run_id": e.run_id, "metadata": dict(info.metadata),
                    "parent_ids": self.parent_ids(e.run_id)}
        if kind == "stream":
            return {"event": name, "run_id": e.run_id, "name": info.name,
                    "tags": list(info.tags), "metadata": dict(info.metadata), "data": data,
                    "parent_ids": self.parent_ids(e.run_id)}
        return {"event": name, "data": data, "run_id": e.run_id, "name": info.name,
                "tags": list(info.tags), "metadata": dict(info.metadata),
                "parent_ids": self.parent_ids(e.run_id)}

    def _send(self, ev: StreamEvent, name: str, type_: str, tags: list[str],
              metadata: dict[str, Any]) -> list[StreamEvent]:
        f = self.filter
        if f is not None and not f.matches_run(name, type_, tags, metadata):
            return []
        if not self.first_sent:
            self.first_sent = True
            self.first_run_id = ev["run_id"]
            data = ev["data"]
            if isinstance(data, dict):  # LangChain crashes on non-dict custom payloads
                data["input"] = self.root_input
        elif (ev["run_id"] == self.first_run_id and ev["event"].endswith("_end")
              and "input" in ev["data"]):
            del ev["data"]["input"]
        return [ev]

    def _start(self, e: Event) -> list[StreamEvent]:
        rid = e.run_id
        rtype = e.run_type
        inputs = e.data
        if self.root_id is None:
            self.root_id = rid
            self.root_input = inputs
        self.parent_map[rid] = e.parent_id if e.parent_id in self.parent_map else None
        if rtype in LLM_TYPES or rtype == "retriever":
            data: dict[str, Any] = {"input": inputs}
            info = _Info(e.name, rtype, list(e.tags), e.metadata, inputs, True)
        elif rtype == "tool":
            data = {"input": inputs or {}}
            info = _Info(e.name, rtype, list(e.tags), e.metadata, inputs, True)
        elif is_placeholder(inputs):
            data = {}
            info = _Info(e.name, rtype, list(e.tags), e.metadata, None, False)
        else:
            data = {"input": inputs}
            info = _Info(e.name, rtype, list(e.tags), e.metadata, inputs, True)
        self.run_map[rid] = info
        ev = self._event(f"on_{rtype}_start", e, info, data)
        return self._send(ev, info.name, rtype, info.tags, info.metadata)

    def _stream(self, e: Event, info: _Info) -> list[StreamEvent]:
        channel = e.channel
        rtype = info.run_type
        if channel == "custom":
            payload = e.data if isinstance(e.data, dict) else {}
            cname = payload.get("name", "")
            tags = inheritable_tags(tuple(info.tags))
            ev: StreamEvent = {
                "event": "on_custom_event",
                "run_id": e.run_id,
                "name": cname,
                "tags": tags,
                "metadata": dict(info.metadata),
                "data": payload.get("data"),
                "parent_ids": self.parent_ids(e.run_id),
            }
            return self._send(ev, cname, cname, tags, info.metadata)
        if channel == "token":
            if rtype not in LLM_TYPES:
                return []
            data = e.data if isinstance(e.data, dict) else {"token": e.data, "chunk": None}
            token, chunk = str(data.get("token") or ""), data.get("chunk")
            if e.run_id == self.root_id:
                # the root is tapped: its stream events carry what astream yields
                if rtype == "chat_model":
                    value = chunk if chunk is not None else self.chunk_factory(rtype, token)
                else:
                    value = token
            else:
                value = chunk if chunk is not None else self.chunk_factory(rtype, token)
            ev = self._event(f"on_{rtype}_stream", e, info, {"chunk": value},
                             None if e.run_id == self.root_id else "end")
            return self._send(ev, info.name, rtype, info.tags, info.metadata)
        ev = self._event(f"on_{rtype}_stream", e, info, {"chunk": e.data})
        return self._send(ev, info.name, rtype, info.tags, info.metadata)

    def _end(self, e: Event, info: _Info) -> list[StreamEvent]:
        rtype = info.run_type
        err = e.error
        out = e.data
        if err is not None:
            if rtype != "tool":
                return []
            call_id = out.get("tool_call_id") if isinstance(out, dict) else None
            ev = self._event("on_tool_error", e, info, {
                "error": error_object(err), "input": e.inputs if e.has_inputs else info.inputs,
                "tool_call_id": call_id})
            return self._send(ev, info.name, rtype, info.tags, info.metadata)
        if rtype == "chat_model":
            data: dict[str, Any] = {"output": _first_message(out), "input": info.inputs}
        elif rtype == "llm":
            data = {"output": _llm_output(out), "input": info.inputs}
        elif rtype in ("tool", "retriever"):
            data = {"output": out, "input": e.inputs if e.has_inputs else info.inputs}
        else:
            final = e.inputs if e.has_inputs else None
            start = info.inputs if info.has_inputs else None
            data = {"output": out, "input": final or start or {}}
        ev = self._event(f"on_{rtype}_end", e, info, data)
        return self._send(ev, info.name, rtype, info.tags, info.metadata)


def _first_message(out: Any) -> Any:
    """LangChain's chat-model end output: the first generation's message."""
    if not (isinstance(out, dict) and "generations" in out):
        return out
    output: Any = {}
    for gen in out["generations"]:
        if output != {}:
            break
        for chunk in gen:
            output = chunk.get("message", chunk) if isinstance(chunk, dict) else chunk
            break
    return output


def _llm_output(out: Any) -> Any:
    """LangChain's text-LLM end output: generations reduced to text/info/type."""
    if not (isinstance(out, dict) and "generations" in out):
        return out
    return {
        "generations": [
            [{"text": g.get("text"), "generation_info": g.get("generation_info"),
              "type": g.get("type")} for g in gen]
            for gen in out["generations"]
        ],
        "llm_output": out.get("llm_output"),
    }


def events_view(
    events: Iterable[Event],
    *,
    filter: Filter | None = None,
    chunk_factory: ChunkFactory | None = None,
) -> Iterator[StreamEvent]:
    """Yield what LangChain's ``astream_events(version="v2")`` yielded for the run.

    Consumes ``events`` lazily and stops after the root's end event.

    Args:
        events: the run's events (and its descendants') in seq order.
        filter: include/exclude rules; here the root is filtered like any run.
        chunk_factory: builds the chunk for a model token recorded without one
            (the adapter passes LangChain's ``AIMessageChunk``/``GenerationChunk``).
    """
    red = EventsReducer(filter=filter)
    if chunk_factory is not None:
        red.chunk_factory = chunk_factory
    for e in events:
        yield from red.feed(e)
        if e.kind == "end" and e.run_id == red.root_id:
            return
