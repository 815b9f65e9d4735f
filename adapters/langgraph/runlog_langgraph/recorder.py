"""``GraphRecorder``: the LangChain recorder that also stores a graph's own stream.

It is a :class:`runlog_langchain.Recorder` (every node, model token and tool call is
recorded as the nested run it is today) that :mod:`runlog_langgraph.hooks` hands the
parts of each outermost graph's stream to. What is stored, on the graph's own run, as
custom-channel stream events (``run.event(name, data)``):

* ``langgraph:call``: once, before the first part: the ``stream_mode``,
  ``subgraphs`` and ``version`` the application asked for, the modes recorded and the
  graph's compiled v3 transformers (by name);
* ``langgraph:<mode>`` for every part of every mode LangGraph has (``values``,
  ``updates``, ``messages``, ``custom``, ``checkpoints``, ``tasks``, ``debug``,
  ``tools``), from
  every namespace: ``{"ns": [...], "data": chunk}``; for ``values`` the first state of
  a namespace is stored whole and every later one as ``{"ns": [...], "patch": ops}``,
  the JSON Patch from the previous state of that namespace (:mod:`.diff`); a model
  token's ``messages`` part is its token event on the model's run, placed by the next
  stored event's ``"pre"``; a ``debug`` part rides in its task's/checkpoint's event
  (see :meth:`GraphStream.part`);
* ``langgraph:v3`` for each protocol event of ``stream_events(version="v3")``, as the
  event dict LangGraph emitted, ``seq`` included.

Recording never raises into the application: a failure is logged and counted in
:attr:`failures`, as in the LangChain recorder.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

from langchain_core.outputs import ChatGenerationChunk
from runlog_langchain import Recorder
from runlog_langchain.codec import encode_chunk

from runlog import EncodingError, codec
from runlog.reducers.graph import PREFIX
from runlog.reducers.patch import structural_copy
from runlog_langgraph.diff import diff
from runlog_langgraph.fields import get_field, set_field, state_field

__all__ = ["GraphRecorder", "GraphStream"]



class GraphRecorder(Recorder):
    """Record LangChain runs, and the stream of every LangGraph graph, into ``store``.

    ``graph.invoke(x, config={"callbacks": [GraphRecorder(store)]})`` records one call;
    :func:`runlog_langgraph.record` records every call inside a ``with`` block.
    :attr:`graph_ids` lists the run ids of the recorded graphs (outermost graphs only:
    a subgraph's parts are stored on its parent graph's run, with their namespace).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graph_ids: list[str] = []
        self._held: dict[UUID, tuple[tuple[Any, ...], dict[str, Any]] | None] = {}
        self._hold_lock = threading.Lock()
        # token events stored per model run, and the message objects of the latest
        # ones: id(message) -> (message, model run id, index, message.id then). A
        # ``messages`` part carrying that very object is stored as a reference to it.
        self._ntok: dict[UUID, int] = {}
        self._tokens: dict[int, tuple[Any, UUID, int, Any]] = {}

    # -- a model's tokens, remembered so the ``messages`` parts can point at them -------
    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], *,
                         chunk: Any = None, run_id: UUID, parent_run_id: UUID | None = None,
                         tags: list[str] | None = None, **kwargs: Any) -> None:
        """Record the token as :class:`runlog_langchain.Recorder` does (the same checks
        and ``run.token`` call: keep them in step), and remember which stored token
        event holds which message object (it is the one LangGraph's ``messages`` part
        carries)."""
        t = self._now()
        run = self._runs.get(run_id)
        if run is None or run.ended or run_id in self._refused:
            return
        msg = chunk.message if isinstance(chunk, ChatGenerationChunk) else chunk
        try:
            run.token(token, msg, time=t,
                      chunk_json=encode_chunk(msg) if msg is not None else None)
        except Exception as e:
            self._failed("a token", e)
            return
        # a model run streams one token at a time (this callback runs inline), so the
        # count is the index of its token event among the run's token events
        n = self._ntok.get(run_id, 0)
        self._ntok[run_id] = n + 1
        if msg is not None:
            toks = self._tokens
            toks[id(msg)] = (msg, run_id, n, getattr(msg, "id", None))
            if len(toks) > _MAX_TOKENS:  # tokens no graph stream took (a model outside
                try:                     # any graph, or hidden from ``messages``)
                    del toks[next(iter(toks))]
                except (RuntimeError, KeyError, StopIteration):  # another thread's
                    pass

    # -- the end of a v3 run waits for the protocol's closing events -----------------
    def hold_end(self, run_id: UUID) -> None:
        """Keep the run open past LangGraph's ``on_chain_end`` until :meth:`release`:
        a v3 stream pushes its last protocol events after the graph's run ended."""
        with self._hold_lock:
            self._held[run_id] = None

    def release(self, run_id: UUID) -> None:
        """End a held run with the end LangGraph reported (if it has reported one)."""
        with self._hold_lock:
            if run_id not in self._held:
                return
            end = self._held.pop(run_id)
        if end is not None:
            super()._end(run_id, *end[0], **end[1])

    def _end(self, run_id: UUID, *args: Any, **kwargs: Any) -> None:
        self._ntok.pop(run_id, None)
        with self._hold_lock:
            if run_id in self._held:
                self._held[run_id] = (args, kwargs)
                return
        super()._end(run_id, *args, **kwargs)

    # -- parts ----------------------------------------------------------------------
    def emit(self, run_id: UUID, name: str, data: Any) -> bool:
        """Store one custom event on a recorded run; ``False`` if the run is not open."""
        run = self._runs.get(run_id)
        if run is None or run.ended:
            return False
        try:
            run.event(name, data, time=self.clock())
        except EncodingError as e:
            # keep what can be kept: the unencodable parts become documented markers
            self._failed(f"a {name} part (stored lossy)", e)
            try:
                run.event(name, codec.decode(codec.encode(data, lossy=True)),
                          time=self.clock())
            except Exception as e2:
                self._failed(f"a {name} part", e2)
        except Exception as e:
            self._failed(f"a {name} part", e)
        return True


class GraphStream:
    """The recording of one outermost graph call's stream (one per call)."""

    __slots__ = ("_held", "_last", "_pending", "_pending_n", "_pending_t", "_prev",
                 "_started", "call", "rec", "run_id")

    def __init__(self, rec: GraphRecorder, run_id: UUID, call: dict[str, Any]) -> None:
        self.rec = rec
        self.run_id = run_id
        self.call = call
        self._prev: dict[tuple[Any, ...], Any] = {}
        self._last: dict[tuple[Any, ...], Any] = {}  # the last tasks/checkpoints chunks
        # a tasks/checkpoints part waiting for its debug twin: (ns, mode, chunk, data)
        self._held: tuple[tuple[str, ...], str, Any, dict[str, Any]] | None = None
        # token parts stored as nothing but their token event, not yet placed by a
        # stored event: [ns, model run id, first index, count] runs
        self._pending: list[list[Any]] = []
        self._pending_n = 0
        self._pending_t = 0.0
        self._started = False

    def _start(self) -> bool:
        if not self._started:
            if not self.rec.emit(self.run_id, PREFIX + "call", self.call):
                return False
            self._started = True
            self.rec.graph_ids.append(str(self.run_id))
        return True

    def part(self, ns: tuple[str, ...], mode: str, chunk: Any) -> None:
        """Store one ``(namespace, mode, chunk)`` part.

        The state a part carries (the whole chunk for ``values``, ``values`` of a
        checkpoint, ``input`` of a task, the same inside ``debug`` payloads) is stored
        whole the first time for its namespace and field, then as a JSON Patch from the
        previous one, so a growing state costs what changed, not its size, per step.
        A ``messages`` part whose metadata equals the previous one of its namespace (the
        tokens of one model call) is stored as ``{"ns", "message"}`` alone; a ``debug``
        part whose payload is the ``tasks``/``checkpoints`` chunk just streamed (it is
        the same object in LangGraph) goes into that part's event as ``"debug"`` (its
        other keys), or, when another part came in between, is stored as
        ``{"ns", "data", "payload_of": mode}``. A token's ``messages`` part whose message
        is the one the model run's token event holds is stored as nothing: the next
        stored event lists it in ``"pre"`` (``[ns, model run id, first index, count]``
        runs), and the replay yields it, from that token event, before that event's own
        part; a ``{"ns", "pre"}`` event places them every 64 tokens or 50 ms at most
        (a live reader sees them that soon), and when the stream stops.
        """
        try:
            if not self._start():
                return
            held = self._held
            if held is not None:
                self._held = None
                if mode == "debug" and type(chunk) is dict and held[0] == ns \
                        and chunk.get("payload") is held[2] \
                        and (chunk.get("type") == "checkpoint") == (held[1] == "checkpoints"):
                    # LangGraph's debug part is the tasks/checkpoints chunk it has just
                    # streamed, wrapped: one event holds both
                    data_h = held[3]
                    data_h["debug"] = {k: v for k, v in chunk.items() if k != "payload"}
                    self._emit(PREFIX + held[1], data_h)
                    return
                self._emit(PREFIX + held[1], held[3])
            if mode == "messages" and type(chunk) is tuple and len(chunk) == 2:
                # one part per token, each with the same metadata dict: stored once
                key_m = ("messages", ns)
                meta = chunk[1]
                prev_meta = self._prev.get(key_m, _NONE)
                msg = chunk[0]
                tok = self.rec._tokens.pop(id(msg), None)
                if prev_meta is not _NONE and (prev_meta is meta or _same_dict(prev_meta,
                                                                               meta)):
                    if tok is not None and tok[0] is msg and _same_id(tok[3], msg):
                        # the very message the model run's token event holds: that
                        # event is the part; the next stored event places it
                        self._implicit(ns, str(tok[1]), tok[2])
                    else:
                        self._emit(PREFIX + mode, {"ns": list(ns), "message": msg})
                    return
                self._prev[key_m] = dict(meta) if type(meta) is dict else meta
            if mode in ("tasks", "checkpoints"):
                self._last[(ns, mode)] = chunk
            elif mode == "debug" and type(chunk) is dict:
                # LangGraph's debug payload is the very tasks/checkpoints chunk it just
                # streamed: stored once, referenced here
                src = "checkpoints" if chunk.get("type") == "checkpoint" else "tasks"
                if chunk.get("payload") is self._last.get((ns, src), _NONE):
                    self._emit(PREFIX + mode, {
                        "ns": list(ns), "data": {**chunk, "payload": None},
                        "payload_of": src})
                    return
            field = state_field(mode, chunk)
            if field is None:
                data: dict[str, Any] = {"ns": list(ns), "data": chunk}
            else:
                value = get_field(chunk, field)
                key = (mode, ns, field)
                prev = self._prev.get(key, _NONE)
                self._prev[key] = structural_copy(value)
                if prev is _NONE:
                    data = {"ns": list(ns), "data": chunk}
                else:
                    data = {"ns": list(ns), "data": set_field(chunk, field, None),
                            "field": list(field), "patch": diff(prev, value)}
            if mode == "tasks":
                _untuple_triggers(data)
            if mode in ("tasks", "checkpoints") and self._debug:
                self._held = (ns, mode, chunk, data)  # its debug part comes next
                return
            self._emit(PREFIX + mode, data)
        except Exception as e:  # never into the application
            self.rec._failed(f"a {mode} part", e)

    def _emit(self, name: str, data: dict[str, Any]) -> bool:
        """Store one event; the token parts consumed before it ride along as ``"pre"``
        (the replay yields them first), so they cost no event of their own."""
        if self._pending:
            data["pre"] = self._pending
            self._pending = []
            self._pending_n = 0
        return self.rec.emit(self.run_id, name, data)

    def _implicit(self, ns: tuple[str, ...], run_id: str, index: int) -> None:
        pend = self._pending
        if pend:
            last = pend[-1]
            if last[1] == run_id and last[2] + last[3] == index and last[0] == list(ns):
                last[3] += 1
            else:
                pend.append([list(ns), run_id, index, 1])
        else:
            pend.append([list(ns), run_id, index, 1])
            self._pending_t = time.monotonic()
        self._pending_n += 1
        if self._pending_n >= _PENDING_TOKENS or \
                time.monotonic() - self._pending_t > _PENDING_SECONDS:
            # a reader following the run live sees the tokens within these bounds
            self._emit(PREFIX + "messages", {"ns": list(ns)})

    @property
    def _debug(self) -> bool:
        modes = self.call.get("modes")
        return isinstance(modes, list) and "debug" in modes

    def flush(self) -> None:
        """Store what waits when the stream stops: the part held for its debug twin,
        the token parts no stored event has placed yet."""
        held, self._held = self._held, None
        try:
            if held is not None and not self._emit(PREFIX + held[1], held[3]):
                raise RuntimeError("the graph's run ended before it")
            if self._pending and not self._emit(PREFIX + "messages", {"ns": []}):
                raise RuntimeError("the graph's run ended before them")
        except Exception as e:
            self.rec._failed("the last parts", e)

    def v3(self, event: Any) -> None:
        """Store one v3 protocol event (with the ``seq`` LangGraph gave it).

        Stored as ``{"event": event}``; a ``values`` event after the first of its
        namespace as ``{"event": event without params.data, "patch": ops}``."""
        try:
            if not self._start():
                return
            params = event.get("params") if isinstance(event, dict) else None
            stored: dict[str, Any] = {"event": event}
            if event.get("method") == "values" and type(params) is dict and "data" in params:
                key = ("v3", tuple(params.get("namespace") or ()))
                value = params["data"]
                prev = self._prev.get(key, _NONE)
                self._prev[key] = structural_copy(value)
                if prev is not _NONE:
                    stored = {"event": {**event, "params": {**params, "data": None}},
                              "patch": diff(prev, value)}
            self.rec.emit(self.run_id, PREFIX + "v3", stored)
        except Exception as e:
            self.rec._failed("a v3 event", e)


_NONE: Any = object()
_MAX_TOKENS = 4096
_PENDING_TOKENS = 64  # token parts placed by one event at most, and after at most
_PENDING_SECONDS = 0.05  # this long (checked at the next token)


def _untuple_triggers(data: dict[str, Any]) -> None:
    """A task's ``triggers`` (a tuple of channel names) stored as a list, named in
    ``"tuples"``: the codec's tagged path for a tuple costs more than the rest of the
    part, a list of strings goes through its plain fast path."""
    chunk = data["data"]
    if type(chunk) is dict:
        trig = chunk.get("triggers")
        if type(trig) is tuple and all(type(t) is str for t in trig):
            data["data"] = {**chunk, "triggers": list(trig)}
            data["tuples"] = ["triggers"]


def _same_id(then: Any, msg: Any) -> bool:
    """The message's id is the one it had when its token event was encoded
    (LangGraph gives an id-less message one when it streams it)."""
    now = getattr(msg, "id", None)
    return then is now or (type(then) is str and type(now) is str and then == now)


def _same_dict(a: Any, b: Any) -> bool:
    try:
        return type(a) is dict and type(b) is dict and bool(a == b)
    except Exception:
        return False
