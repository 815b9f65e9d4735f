"""The v3 protocol events of a run recorded through a plain call, derived at replay.

A graph run recorded by ``stream``/``invoke``/``astream``/``batch`` stores LangGraph's
v1 parts of every mode (see :mod:`runlog_langgraph.recorder`), not v3 events.
``stream_events(version="v3")`` on LangGraph itself asks the graph for
``stream(stream_mode=[values, messages, tasks], subgraphs=True, version="v2")`` with a
v2 messages handler, turns each part into a protocol event
(``langgraph.stream._convert.convert_to_protocol_event``) and pushes it through a
``StreamMux`` of its built-in transformers (values, messages, lifecycle, subgraphs),
which number the events (``seq``) and add the ``lifecycle`` ones. The replay does the
same with LangGraph's own ``GraphRunStream`` and ``StreamMux``: the stored parts of
those modes are shaped as v2 parts and pushed through a fresh mux, so the events,
their order and their ``seq`` are LangGraph's.

What the stored parts do not hold is rebuilt as LangGraph/langchain-core build it:

* **messages**: under v3 a chat model does not emit v1 ``AIMessageChunk`` tokens but
  protocol message events (``message-start``, ``content-block-start``/``-delta``/
  ``-finish``, ``message-finish``) that langchain-core's bridge
  (``langchain_core.language_models._compat_bridge.chunks_to_events``) makes from the
  same ``_stream`` chunks. :class:`_ModelEvents` runs that conversion chunk by chunk on
  the recorded token chunks (with the bridge's own block helpers; the bridge itself is
  a generator over the whole model stream, which a replay following a live run cannot
  hand it), with the v2 handler's metadata (``run_id`` added). A whole message in a
  ``messages`` part is kept, except a ``ToolMessage`` (the v2 handler leaves those to
  the state).
* **the model's message in the state**: under v3 the message a streaming model returns
  is the one assembled from those events (``ChatModelStream.output_message``: content
  blocks, ``id`` = ``lc_run-<model run id>``), not the v1 merged chunks. The derived
  ``values``/``tasks`` parts carry that message in place of the recorded one.
* **timestamps**: ``params.timestamp`` is the time the part was recorded (ms), not the
  time of the replay.

Not derivable (documented in docs/langgraph.md): transformers compiled into the graph
or passed to ``stream_events`` (their code is the application's), and a node whose
behaviour depends on the shape of the model's message (it ran on the v1 message).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models import _compat_bridge as bridge
from langchain_core.language_models.chat_model_stream import ChatModelStream
from langchain_core.messages import AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.utils._gateway import GATEWAY_METADATA_RESPONSE_KEY
from langchain_core.utils._merge import merge_dicts
from langgraph.stream._mux import StreamMux
from langgraph.stream.run_stream import GraphRunStream
from langgraph.stream.transformers import (
    LifecycleTransformer,
    MessagesTransformer,
    SubgraphTransformer,
    ValuesTransformer,
)

from runlog_langgraph.replay import shape_v2

__all__ = ["V3_MODES", "derive"]

_FACTORIES: list[Any] = [ValuesTransformer, MessagesTransformer, LifecycleTransformer,
                         SubgraphTransformer]
"""``stream_events(version="v3")``'s built-in transformers, in its order."""

V3_MODES: frozenset[str] = frozenset(
    m for f in _FACTORIES for m in getattr(f, "required_stream_modes", ()))
"""The stream modes v3 asks a graph without transformers of its own for (the union
of the built-in transformers' needs)."""

_KNOWN: frozenset[str] = frozenset({
    "langgraph.prebuilt._tool_call_transformer:ToolCallTransformer",
    "langchain.agents._subagent_transformer:SubagentTransformer",
})
"""Transformers a graph may compile in (``create_agent`` compiles these two) that the
replay runs: library classes of LangGraph and LangChain, named in the recording and
imported from the installed packages, never from the log. Any other (the
application's own) makes the run's v3 events underivable."""


def _factories(names: list[str]) -> list[Any]:
    """The built-in transformers, then the graph's compiled ones, as LangGraph's v3 call
    orders them; ``NotAGraphRunError`` for one the replay does not know."""
    from runlog_langgraph.replay import NotAGraphRunError

    out = list(_FACTORIES)
    unknown = [n for n in names if n not in _KNOWN]
    if unknown:
        raise NotAGraphRunError(
            f"the graph compiles v3 stream transformers {unknown} (the application's "
            "code, which a replay does not run): its v3 events cannot be derived from "
            "a plain call's recording; record a stream_events(version='v3') call")
    for name in names:
        module, _, qual = name.partition(":")
        out.append(getattr(importlib.import_module(module), qual))
    return out

_LC_PREFIX = "lc_run-"  # langchain_core.outputs.LC_ID_PREFIX


class _ModelEvents:
    """langchain-core's chunk-to-protocol-event bridge for one model call, fed one
    recorded chunk at a time (the loop body of ``chunks_to_events``, on its helpers),
    and the message the v3 path assembles from those events."""

    __slots__ = ("acc", "akw", "blocks", "message_id", "rm", "started", "usage")

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.started = False
        self.blocks: dict[Any, tuple[int, Any]] = {}
        self.usage: Any = None
        self.rm: dict[str, Any] = {}
        self.akw: dict[str, Any] = {}
        self.acc = ChatModelStream(message_id=message_id)

    def feed(self, msg: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not isinstance(msg, AIMessageChunk):
            return out
        # the recorded chunk's response_metadata is already the v1 merge of the
        # chunk's generation_info and its own (the bridge makes the same merge)
        merged = dict(msg.response_metadata or {})
        merged.pop(GATEWAY_METADATA_RESPONSE_KEY, None)
        if merged:
            self.rm.update(merged)
        if msg.additional_kwargs:
            self.akw = merge_dicts(self.akw, msg.additional_kwargs)
        if not self.started:
            self.started = True
            out.append(dict(bridge._build_message_start(msg, self.message_id)))
        for key, block in bridge._iter_protocol_blocks(msg):
            if key not in self.blocks:
                wire = len(self.blocks)
                self.blocks[key] = (wire, dict(block))
                out.append({"event": "content-block-start", "index": wire,
                            "content": bridge._start_skeleton(block)})
            else:
                wire, existing = self.blocks[key]
                self.blocks[key] = (wire, bridge._accumulate(existing, block))
            delta = bridge._to_content_delta(block)
            if delta is not None:
                out.append({"event": "content-block-delta", "index": wire, "delta": delta})
        if msg.usage_metadata:
            self.usage = bridge._accumulate_usage(self.usage, msg.usage_metadata)
        return self._dispatch(out)

    def finish(self) -> list[dict[str, Any]]:
        if not self.started:
            return []
        out: list[dict[str, Any]] = [dict(bridge._finalize_and_build_finish(w, b))
                                     for w, b in self.blocks.values()]
        out.append(dict(bridge._build_message_finish(
            usage=self.usage, response_metadata=self.rm, additional_kwargs=self.akw)))
        return self._dispatch(out)

    def _dispatch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for ev in events:
            self.acc.dispatch(ev)
        return events

    def message(self) -> Any:
        """The model's result as the v3 path puts it in the state
        (``_generate_with_cache``: the assembled message, its response metadata)."""
        msg = self.acc.output_message
        if msg is None:
            return None
        gen_info = self.acc._generation_info or {}
        msg.response_metadata = {**gen_info, **(msg.response_metadata or {})}
        return msg


def _swap(value: Any, table: dict[str, Any]) -> Any:
    """``value`` with each recorded model message replaced by its v3 form."""
    if isinstance(value, BaseMessage):
        mid = value.id
        return table.get(mid, value) if isinstance(mid, str) else value
    if type(value) is dict:
        return {k: _swap(v, table) for k, v in value.items()}
    if type(value) is list:
        return [_swap(v, table) for v in value]
    if type(value) is tuple:
        return tuple(_swap(v, table) for v in value)
    return value


class _Parts:
    """The v2 parts LangGraph's v3 call would have streamed, from the recorded parts;
    the time of the part being converted is kept for the events it produces."""

    def __init__(self, records: Iterator[Any], modes: frozenset[str]) -> None:
        self.records = records
        self.modes = modes
        self.time_ms = 0
        self.models: dict[str, _ModelEvents] = {}
        self.swap: dict[str, Any] = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for time_us, p, token_run in self.records:
            self.time_ms = time_us // 1000
            if isinstance(p, BaseException):
                raise p
            ns, mode, payload = p
            if mode not in self.modes:
                continue
            if mode == "messages":
                yield from self._messages(ns, payload, token_run)
                continue
            if self.swap:
                payload = _swap(payload, self.swap)
            yield shape_v2((ns, mode, payload))

    def _messages(self, ns: tuple[str, ...], payload: Any, token_run: str | None
                  ) -> Iterator[dict[str, Any]]:
        if not (type(payload) is tuple and len(payload) == 2):
            return
        msg, meta = payload
        if isinstance(msg, AIMessageChunk):
            mid = msg.id if isinstance(msg.id, str) else ""
            run = token_run or (mid[len(_LC_PREFIX) + 1:] if mid.startswith(
                _LC_PREFIX + "-") else mid)
            model = self.models.get(run)
            if model is None:
                model = self.models[run] = _ModelEvents(f"{_LC_PREFIX}-{run}")
            events = model.feed(msg)
            if msg.chunk_position == "last":
                events += model.finish()
                del self.models[run]
                v3 = model.message()
                if v3 is not None and mid:
                    # the recorded message's id: the chunks' one, or it with "-0"
                    # (langchain-core's id for a generation that had none)
                    self.swap[mid] = v3
                    self.swap[f"{mid}-0"] = v3
            v2_meta = {**meta, "run_id": run} if isinstance(meta, dict) else meta
            for ev in events:
                yield {"type": "messages", "ns": ns, "data": (ev, v2_meta)}
        elif isinstance(msg, BaseMessage) and not isinstance(msg, ToolMessage):
            yield {"type": "messages", "ns": ns, "data": (msg, meta)}


def derive(records: Iterator[Any], transformers: list[str] | None = None
           ) -> Iterator[dict[str, Any]]:
    """The protocol events, from ``(time_us, part or error, token's model run id)``
    records in recorded order (the graph's error, rebuilt, as the last record), with
    the built-in transformers and the graph's own ``transformers`` (recorded names).

    Raises:
        NotAGraphRunError: a compiled transformer the replay does not run."""
    factories = _factories(list(transformers or ()))
    modes = frozenset(m for f in factories for m in getattr(f, "required_stream_modes", ()))
    parts = _Parts(records, modes)
    mux = StreamMux(factories=factories, scope=(), is_async=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LangChainBetaWarning: v3 is beta
        run = GraphRunStream(iter(parts), mux)
    events = iter(run)
    while True:
        try:
            ev = next(events)
        except StopIteration:
            return
        except Exception:
            return  # the graph's error: the events before it are all there is
        params: Any = ev.get("params")
        if type(params) is dict and "timestamp" in params:
            params["timestamp"] = parts.time_ms
        yield dict(ev)
