"""``Recorder``: a LangChain callback handler that records every run into a runlog store.

What is stored for each callback is specified in ``docs/langchain-mapping.md``; in
short, every LangChain run becomes a runlog run with LangChain's own id, parent id,
name, run type (chat models as ``chat_model``), tags and metadata (``inherit=False``:
LangChain already merged them), and the inputs/outputs in the shape the runlog views
need to reproduce ``astream_log`` and ``astream_events`` exactly.

The recorder is a ``_StreamingCallbackHandler`` (it has ``tap_output_aiter`` /
``tap_output_iter``) because LangChain reports the output chunks of chains, lambdas and
generators only to such a handler. LangChain taps only the *first* streaming handler of
a run, so the recorder passes the stream on to the other streaming handlers of the same
run (LangChain's own ``astream_log``/``astream_events`` handlers): attaching it changes
nothing for them. Like those handlers, its presence makes chat models stream their
tokens internally even when called with ``invoke`` (the final message is the same).

Recording never raises into the application: a failure (unencodable value, store
error) is logged and counted in :attr:`Recorder.failures`, and recording continues.

The callbacks are plain methods and the handler is inline (see
:attr:`Recorder.run_inline`): a token costs one call, not an ``asyncio`` task.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time as _time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, LLMResult
from langchain_core.runnables import Runnable
from langchain_core.tracers import core as _tracer_core
from langchain_core.tracers._streaming import _StreamingCallbackHandler

from runlog import DuplicateRunError, Store
from runlog.events import datetime_to_micros, now_micros
from runlog.recorder import Run
from runlog_langchain.codec import encode_chunk

__all__ = ["Recorder", "llm_result_outputs", "tracer_clock"]

log = logging.getLogger("runlog_langchain")
T = TypeVar("T")
_ENTRY_METHODS = frozenset({"invoke", "ainvoke", "stream", "astream"})
_MISSING: Any = object()
_ROOT_CANDIDATES: contextvars.ContextVar[list[tuple[str, Any]]] = contextvars.ContextVar(
    "runlog_langchain_root_candidates", default=[])  # noqa: B039 - never mutated
# The real clock functions, in a tuple: freezegun replaces every *module attribute* that
# is the real ``datetime`` or ``time_ns``, which would make the fast path's test pass.
_REAL_CLOCK = (datetime, _time.time_ns)
_HANDLER_FRAMES = frozenset({"handle_event", "ahandle_event", "on_llm_start",
                             "on_chat_model_start"})


_ASYNC_LLM_START = AsyncCallbackManager.on_llm_start.__code__
# that method and the list comprehensions in it that read ``run_inline``
_LLM_START_CODES = (_ASYNC_LLM_START, *(
    c for c in _ASYNC_LLM_START.co_consts if isinstance(c, type(_ASYNC_LLM_START))))
# looked up by id: hashing a code object hashes its constants (0.7 µs), and LangChain
# reads run_inline three times per callback (the code objects live as long as the class)
_LLM_START_IDS = frozenset(map(id, _LLM_START_CODES))


def tracer_clock() -> int:
    """Epoch microseconds, read the way LangChain's tracer reads its clock:
    ``datetime.now(timezone.utc)`` looked up in ``langchain_core.tracers.core`` (the
    tracer's ``start_time``/``end_time``), converted exactly (integer arithmetic).

    So whatever replaces that clock (freezegun, time-machine, a ``mock.patch`` of the
    module's ``datetime``) gives the recorder the same instant, to the microsecond: a
    float ``time_ns`` under freezegun would turn ``.123000`` into ``.122999``. While
    neither ``datetime`` there nor ``time.time_ns`` is replaced, it is
    ``time.time_ns() // 1000``, the same reading (both floor the system clock to the
    microsecond), a fifth of the cost per token.
    """
    now = _tracer_core.datetime  # type: ignore[attr-defined]
    real_datetime, real_time_ns = _REAL_CLOCK
    if now is real_datetime and _time.time_ns is real_time_ns:
        return real_time_ns() // 1000
    return datetime_to_micros(now.now(UTC))


def llm_result_outputs(response: LLMResult) -> dict[str, Any]:
    """``LLMResult.model_dump()`` with each generation's message kept as the object.

    This is the value LangChain's tracer stores as a model run's outputs (it dumps the
    messages with ``dumpd`` and ``load``s them back before ``astream_log`` sees them).
    """
    out = response.model_dump()
    for i, gens in enumerate(response.generations):
        for j, gen in enumerate(gens):
            item = out["generations"][i][j]
            if "message" in item:
                item["message"] = gen.message  # type: ignore[attr-defined]
    return out


def _assign_name(name: str | None, serialized: dict[str, Any] | None) -> str:
    """LangChain's run-name rule (``event_stream._assign_name``)."""
    if name is not None:
        return name
    if serialized is not None:
        if "name" in serialized:
            return str(serialized["name"])
        if "id" in serialized:
            return str(serialized["id"][-1])
    return "Unnamed"


def _entry_inputs(frame: FrameType | None) -> list[tuple[str, Any]]:
    """``(runnable name, call input)`` for each runnable entry frame on a stack, innermost
    first: ``invoke``/``ainvoke``/``stream``/``astream`` of a ``Runnable`` (its name is
    ``run_name`` from the call's config, else ``get_name()``), and the ``consume_astream``
    task of LangChain's own ``astream_log``/``astream_events`` (whose ``value`` is the
    call input even for runnables whose ``astream`` is a plain function)."""
    out: list[tuple[str, Any]] = []
    f = frame
    while f is not None:
        code = f.f_code.co_name
        if code in _ENTRY_METHODS or code == "consume_astream":
            loc = f.f_locals
            if code == "consume_astream":
                obj, key = loc.get("runnable"), "value"
            else:
                obj, key = loc.get("self"), "input"
            if isinstance(obj, Runnable) and key in loc:
                config = loc.get("config")
                run_name = config.get("run_name") if isinstance(config, dict) else None
                try:
                    own = run_name or obj.get_name()
                except Exception:
                    own = None
                if isinstance(own, str):
                    out.append((own, loc[key]))
        f = f.f_back
    return out


def _root_consumer(frame: FrameType | None) -> tuple[str, Any] | None:
    """LangChain's own consumer of a root run's stream, found on the stack at its start:
    ``("events", handler)`` for ``astream_events`` v2, ``("log", handler)`` for
    ``astream_log`` (the ``consume_astream`` task of each), else ``None``."""
    f = frame
    while f is not None:
        if f.f_code.co_name == "consume_astream":
            loc = f.f_locals
            if "event_streamer" in loc:
                return "events", loc["event_streamer"]
            if "stream" in loc:
                return "log", loc["stream"]
            return None
        f = f.f_back
    return None


_STREAMING: dict[type, bool] = {}


def _is_streaming(handler: Any) -> bool:
    """``isinstance(handler, _StreamingCallbackHandler)``, remembered per class: that is
    a runtime-checkable Protocol, which isinstance checks member by member (~15k
    instructions; two handlers on every LangGraph node start). A handler's taps come
    from its class (LangChain's own handlers define them there)."""
    cls = type(handler)
    found = _STREAMING.get(cls)
    if found is None:
        if len(_STREAMING) > 1000:
            _STREAMING.clear()
        found = _STREAMING[cls] = isinstance(handler, _StreamingCallbackHandler)
    return found


def _handlers_on_stack(frame: FrameType | None) -> Any:
    """The handler list LangChain is dispatching a start to, found on the stack: the
    ``handlers`` of ``handle_event``/``ahandle_event``, or of the manager whose
    ``on_llm_start``/``on_chat_model_start`` is running (those dispatch to one handler
    at a time). ``None`` if there is none (a callback called by hand)."""
    f, depth = frame, 0
    while f is not None and depth < 12:
        if f.f_code.co_name in _HANDLER_FRAMES:
            loc = f.f_locals
            handlers = loc.get("handlers")
            if handlers and len(handlers) > 1:
                return handlers
            manager_handlers = getattr(loc.get("self"), "handlers", None)
            if manager_handlers:
                return manager_handlers
        f, depth = f.f_back, depth + 1
    return None


def _call_input(name: str) -> Any:
    """The value the root runnable named ``name`` was called with.

    LangChain hands a root chain the placeholder ``{"input": ""}`` when its input is
    streamed in, and a chat model its converted messages, while ``astream_events``
    reports the value passed to ``astream``/``invoke``. Both callback managers call the
    recorder on the runnable's own stack, which holds that value, except for a text
    LLM's start under the async manager, which runs in a gather task of its own: for
    that one :attr:`Recorder.run_inline` (which LangChain reads on the runnable's stack
    just before) leaves the candidates in a context variable. When neither has it, the
    callback's own input is kept.
    """
    for own, value in _entry_inputs(sys._getframe(2)):
        if own == name:
            return value
    for own, value in _ROOT_CANDIDATES.get():
        if own == name:
            return value
    return _MISSING


class Recorder(BaseCallbackHandler, _StreamingCallbackHandler[Any]):
    """Record every run LangChain reports into ``store``.

    ``chain.invoke(x, config={"callbacks": [Recorder(store)]})`` records the call and
    everything under it; ``astream_log``/``astream_events`` with the recorder in the
    config record the same run they stream.

    Args:
        store: the runlog store to write to.
        clock: epoch microseconds for event times; by default
            :func:`tracer_clock`, the clock LangChain's tracer reads.
    """

    raise_error = False
    # BaseCallbackHandler's properties, as plain class attributes: LangChain reads one
    # of them for every callback (``ignore_llm`` per token), a property is a Python call
    ignore_llm = ignore_retry = ignore_chain = ignore_agent = False
    ignore_retriever = ignore_chat_model = ignore_custom_event = False

    @property
    def run_inline(self) -> bool:  # type: ignore[override]
        """``True``: LangChain's async manager calls the recorder in place, in the
        runnable's own task, instead of wrapping each callback in an ``asyncio.gather``
        task (about 40 µs per streamed token, more than the recording itself).

        One exception: langchain-core 1.7.2's ``AsyncCallbackManager.on_llm_start``
        skips the non-inline handlers' starts when any handler is inline, which would
        break LangChain's own ``astream_log``/``astream_events`` tracers; there the
        recorder answers ``False``. That start then runs in a gather task whose stack
        does not hold the call's input, so this is also the moment to find it
        (:func:`_call_input`): LangChain reads the attribute on the runnable's stack.
        """
        f: FrameType | None = sys._getframe(1)
        if f is None or id(f.f_code) not in _LLM_START_IDS:  # read on every callback
            return True
        if f.f_code is not _ASYNC_LLM_START:
            f = f.f_back  # its list comprehension's frame (Python < 3.12)
        try:
            if f is not None and getattr(f.f_locals.get("self"), "parent_run_id",
                                         1) is None:
                found = _entry_inputs(f)
                if found:  # the dispatch task sees none: keep the caller's
                    _ROOT_CANDIDATES.set(found)
        except Exception:  # never let bookkeeping break dispatch
            pass
        return False

    def __init__(self, store: Store, *, clock: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.store = store
        self.clock: Callable[[], int] = clock if clock is not None else tracer_clock
        self.failures = 0
        self.last_error: BaseException | None = None
        self.root_ids: list[str] = []
        self._runs: dict[UUID, Run] = {}
        self._tool_call_ids: dict[UUID, Any] = {}
        self._tool_inputs: dict[UUID, Any] = {}  # root tools started with the call value
        self._tapped: set[UUID] = set()  # runs whose output stream passes through our tap
        # runs whose start was refused (a reused run id) and the runs started under them
        self._refused: set[UUID] = set()
        # (run id, run) of the last token recorded (see on_llm_new_token); reset when
        # that run ends or is refused
        self._last_token_run: tuple[UUID | None, Run | None] = (None, None)
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------
    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = exc
        log.warning("runlog_langchain: could not record %s: %s", what, exc)

    def _start(self, run_id: UUID, parent_run_id: UUID | None, name: str, run_type: str,
               inputs: Any, tags: list[str] | None, metadata: dict[str, Any] | None,
               time: int) -> None:
        handlers = _handlers_on_stack(sys._getframe(1))
        if handlers:
            self._adopt(handlers)
        if parent_run_id is not None and parent_run_id in self._refused:
            self._refused.add(run_id)
            raise DuplicateRunError(f"run {run_id} starts under run {parent_run_id}, whose "
                                    "run id was reused: not recorded")
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is None:
            found = _call_input(name)
            if found is not _MISSING:
                if run_type == "tool" and found is not inputs:
                    # a ToolCall (or a string) at the root: the tool's own args are
                    # what LangChain's on_tool_error reports, so they go on the end
                    self._tool_inputs[run_id] = inputs
                inputs = found
        try:
            run = self.store.start_run(
                name, run_type, inputs=inputs, tags=list(tags or ()),
                metadata=dict(metadata or {}), run_id=str(run_id), parent=parent,
                time=time, inherit=False, lossy=True,
                # a child's id is LangChain's own, new: no store read per run start
                # (~20-250 µs, issue 17); the store's unique start index is the net
                fresh_id=parent is not None)
        except DuplicateRunError:
            self._refuse(run_id)
            raise
        self._runs[run_id] = run
        if parent is None:
            self.root_ids.append(run.id)
            if run_type not in ("llm", "chat_model"):  # their tokens come as callbacks
                consumer = _root_consumer(sys._getframe(1))
                if consumer is not None:
                    self._watch_root(run_id, *consumer)

    def _refuse(self, run_id: UUID) -> None:
        """Stop recording a run id the application reused (``config["run_id"]`` of a run
        that exists: LangChain's ``test_bad_parent_ids``).

        The store refuses the second start, and from then on every callback for that id
        is ambiguous (is an end the first run's or the second's?), so none is recorded,
        nor anything started under it. LangChain's own ``astream_events``/
        ``astream_log`` handlers fail the same way (their run maps are keyed by the id)
        and stream nothing more of that run: the replay shows what they showed, the
        first run's start and what came before the reuse, plus, for a root, the chunks
        ``astream_events``/``astream_log`` read from its own stream (those are
        unambiguous); that run stays open in the store (shown as abandoned once this
        process's lease lapses).
        """
        self._refused.add(run_id)
        self._tapped.discard(run_id)
        self._last_token_run = (None, None)

    def _end(self, run_id: UUID, time: int, outputs: Any, *,
             error: BaseException | None = None, inputs: Any = _MISSING) -> None:
        if run_id in self._refused:
            return
        run = self._runs.pop(run_id, None)
        self._tapped.discard(run_id)
        if self._last_token_run[0] is run_id:
            self._last_token_run = (None, None)
        if run is None or run.ended:
            return
        if inputs is _MISSING:
            run.end(outputs, error=error, time=time, lossy=True)
        else:
            run.end(outputs, error=error, inputs=inputs, time=time, lossy=True)

    def _now(self) -> int:
        """The event time, read first thing in each callback; a clock that fails is
        counted and replaced by the system's (recording never raises)."""
        try:
            return self.clock()
        except Exception as e:
            self._failed("the clock", e)
            return now_micros()

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:
            self._failed(what, e)

    # -- starts ----------------------------------------------------------------------
    def on_chain_start(self, serialized: dict[str, Any], inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        name = _assign_name(kwargs.get("name"), serialized)
        run_type = kwargs.get("run_type") or "chain"
        self._guard("a chain start", lambda: self._start(
            run_id, parent_run_id, name, run_type, inputs, tags, metadata, t))

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                            run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("a chat model start", lambda: self._start(
            run_id, parent_run_id, name, "chat_model", {"messages": messages}, tags, metadata, t))

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("an LLM start", lambda: self._start(
            run_id, parent_run_id, name, "llm", {"prompts": prompts}, tags, metadata, t))

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None,
                      inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        name = _assign_name(kwargs.get("name"), serialized)
        if "tool_call_id" in kwargs:
            self._tool_call_ids[run_id] = kwargs["tool_call_id"]
        self._guard("a tool start", lambda: self._start(
            run_id, parent_run_id, name, "tool", inputs, tags, metadata, t))

    def on_retriever_start(self, serialized: dict[str, Any], query: str, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("a retriever start", lambda: self._start(
            run_id, parent_run_id, name, "retriever", {"query": query}, tags, metadata, t))

    # -- streaming -------------------------------------------------------------------
    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], *,
                         chunk: Any = None, run_id: UUID, parent_run_id: UUID | None = None,
                         tags: list[str] | None = None, **kwargs: Any) -> None:
        # the hottest callback (once per token): no closure, no guard call, no helper
        try:  # first, as LangChain's tracer reads its clock (what _now does, inline)
            t = self.clock()
        except Exception as e:
            self._failed("the clock", e)
            t = now_micros()
        # the run of the previous token, by identity: LangChain passes its run manager's
        # own UUID object with every token, and hashing a UUID is a Python-level call
        # The run checked when it is looked up, not per token: a refused id resets the
        # remembered run (_refuse), and a run that ended since refuses the token in
        # Run._put, which is then not counted as a failure (as the check did before).
        last_id, last = self._last_token_run
        if run_id is last_id and last is not None:
            run = last
        else:
            found = self._runs.get(run_id)
            if found is None or found.ended or (self._refused and run_id in self._refused):
                return
            run = found
            self._last_token_run = (run_id, run)
        try:
            if isinstance(chunk, ChatGenerationChunk):
                message = chunk.message
                # the chunk's bytes straight from its encoding template when it fits
                # (the codec's own bytes for it, without the codec's dispatch)
                run.token(token, message, time=t, chunk_json=encode_chunk(message))
            else:
                run.token(token, chunk, time=t)
        except Exception as e:
            if not run.ended:  # a token after its run's end is not recorded, quietly
                self._failed("a token", e)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID,
                        tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                        **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock

        def go() -> None:
            run = self._runs.get(run_id)
            if run is None or run.ended or run_id in self._refused:
                return
            run.event(name, data, time=t)
        self._guard("a custom event", go)

    def _record_chunk(self, run_id: UUID, chunk: Any, *, root: bool = False) -> None:
        run = self._runs.get(run_id)
        if run is None or run.ended or (run_id in self._refused and not root):
            return
        try:
            run.stream(chunk, time=self._now(), lossy=True)
        except Exception as e:
            self._failed("an output chunk", e)

    def _root_chunk(self, run_id: UUID, chunk: Any) -> None:
        if run_id not in self._tapped:  # else our tap has recorded it already
            # a root's chunk, as LangChain's consumer read it: its own even if a child
            # reused the root's run id (see _refuse)
            self._record_chunk(run_id, chunk, root=True)

    def _watch_root(self, run_id: UUID, kind: str, handler: Any) -> None:
        """Record the chunks LangChain's ``astream_events``/``astream_log`` read from a
        root run's ``astream`` themselves.

        A runnable whose ``astream`` is its own generator (a custom ``Runnable``
        subclass) reports its chunks to no callback: only the ``consume_astream`` task
        of those two APIs sees them, through ``astream_events``' handler's own tap
        (``_send`` of an ``on_*_stream`` event) or ``astream_log``'s
        ``send_stream.send`` (whose caller holds the ``chunk``). Both are wrapped here,
        on that call's own handler; a chunk that also passed through our tap (any
        runnable built on LangChain's stream helpers) is not recorded twice.
        """
        rid = str(run_id)
        try:
            if kind == "events":
                orig = handler._send

                def send(event: Any, event_type: str, _o: Any = orig) -> None:
                    if (event.get("run_id") == rid and event["event"].endswith("_stream")
                            and sys._getframe(1).f_code.co_name in (
                                "tap_output_aiter", "tap_output_iter")):
                        self._root_chunk(run_id, event["data"]["chunk"])
                    _o(event, event_type)

                setattr(handler, "_send", send)  # noqa: B010 - an instance override
            else:
                target = handler.send_stream
                orig = target.send

                def asend(item: Any, _o: Any = orig) -> Any:
                    f = sys._getframe(1)
                    if f.f_code.co_name == "consume_astream" and "chunk" in f.f_locals:
                        self._root_chunk(run_id, f.f_locals["chunk"])
                    return _o(item)

                setattr(target, "send", asend)  # noqa: B010 - an instance override
        except Exception as e:  # an unknown LangChain: the root's chunks may be lost
            self._failed("the stream of a root run", e)

    def _adopt(self, handlers: Any) -> None:
        """Make the other streaming handlers of a run pass their taps through ours.

        LangChain taps only the first streaming handler of a run, and the order of a
        child run's handlers is not stable (callback managers are merged with sets), so
        when another streaming handler comes first, its ``tap_output_aiter`` /
        ``tap_output_iter`` (instance attributes set here, once per handler) record the
        chunk through the recorder before doing their own work.
        """
        for h in list(handlers):
            if h is self or not _is_streaming(h):
                continue
            if self in (getattr(h, "_runlog_recorders", None) or ()):
                continue
            try:
                orig_a, orig_s = h.tap_output_aiter, h.tap_output_iter

                def tap_a(run_id: UUID, output: AsyncIterator[T], _o: Any = orig_a,
                          _r: Recorder = self) -> AsyncIterator[T]:
                    return _o(run_id, _r._atap(run_id, output))  # type: ignore[no-any-return]

                def tap_s(run_id: UUID, output: Iterator[T], _o: Any = orig_s,
                          _r: Recorder = self) -> Iterator[T]:
                    return _o(run_id, _r._tap(run_id, output))  # type: ignore[no-any-return]

                setattr(h, "tap_output_aiter", tap_a)  # noqa: B010 - an instance override
                setattr(h, "tap_output_iter", tap_s)  # noqa: B010
                setattr(h, "_runlog_recorders",  # noqa: B010
                        [*getattr(h, "_runlog_recorders", []), self])
            except Exception as e:  # a handler that refuses attributes: chunks may be lost
                self._failed("the stream of another streaming handler", e)

    def _others(self, frame: FrameType | None) -> list[Any]:
        """The other streaming handlers of the run being tapped (see module docstring)."""
        manager = frame.f_locals.get("run_manager") if frame is not None else None
        handlers = getattr(manager, "handlers", None) or ()
        return [h for h in handlers
                if h is not self and _is_streaming(h)]

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        """Record each chunk of a run's async output stream, then pass it on."""
        it: AsyncIterator[T] = self._atap(run_id, output)
        for h in self._others(sys._getframe(1)):  # their own taps, not our wrappers
            it = type(h).tap_output_aiter(h, run_id, it)
        return it

    async def _atap(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        if run_id in self._runs and run_id not in self._refused:
            self._tapped.add(run_id)
        async for chunk in output:
            self._record_chunk(run_id, chunk)
            yield chunk

    def tap_output_iter(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        """Record each chunk of a run's output stream, then pass it on."""
        it: Iterator[T] = self._tap(run_id, output)
        for h in self._others(sys._getframe(1)):
            it = type(h).tap_output_iter(h, run_id, it)
        return it

    def _tap(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        if run_id in self._runs and run_id not in self._refused:
            self._tapped.add(run_id)
        for chunk in output:
            self._record_chunk(run_id, chunk)
            yield chunk

    # -- ends ------------------------------------------------------------------------
    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        inputs = kwargs.get("inputs")
        self._guard("a chain end", lambda: self._end(
            run_id, t, outputs, inputs=inputs if inputs is not None else _MISSING))

    def on_chain_error(self, error: BaseException, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        self._guard("a chain error", lambda: self._end(run_id, t, None, error=error))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID,
                   parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        self._guard("an LLM end", lambda: self._end(run_id, t, llm_result_outputs(response)))

    def on_llm_error(self, error: BaseException, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        response = kwargs.get("response")
        self._guard("an LLM error", lambda: self._end(
            run_id, t,
            llm_result_outputs(response) if isinstance(response, LLMResult) else None,
            error=error))

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                    **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        self._tool_call_ids.pop(run_id, None)
        inputs = self._tool_inputs.pop(run_id, _MISSING)
        self._guard("a tool end", lambda: self._end(run_id, t, output, inputs=inputs))

    def on_tool_error(self, error: BaseException, *, run_id: UUID,
                      parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        call_id = kwargs.get("tool_call_id")
        stored = self._tool_call_ids.pop(run_id, None)
        if call_id is None:
            call_id = stored
        inputs = self._tool_inputs.pop(run_id, _MISSING)
        self._guard("a tool error", lambda: self._end(
            run_id, t, {"tool_call_id": call_id}, error=error, inputs=inputs))

    def on_retriever_end(self, documents: Any, *, run_id: UUID,
                         parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        self._guard("a retriever end", lambda: self._end(run_id, t, list(documents)))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID,
                           parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        t = self._now()  # first, as LangChain's tracer reads its clock
        self._guard("a retriever error", lambda: self._end(run_id, t, None, error=error))

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Recorder:
        return self  # LangChain copies configs; the recorder is shared, like its tracers

    def __copy__(self) -> Recorder:
        return self
