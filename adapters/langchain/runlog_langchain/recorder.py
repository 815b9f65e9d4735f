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
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import FrameType
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, LLMResult
from langchain_core.runnables import Runnable
from langchain_core.tracers._streaming import _StreamingCallbackHandler

from runlog import Store
from runlog.events import now_micros
from runlog.recorder import Run

__all__ = ["Recorder", "llm_result_outputs"]

log = logging.getLogger("runlog_langchain")
T = TypeVar("T")
_ENTRY_METHODS = frozenset({"invoke", "ainvoke", "stream", "astream"})
_MISSING: Any = object()
_ROOT_CANDIDATES: contextvars.ContextVar[list[tuple[str, Any]]] = contextvars.ContextVar(
    "runlog_langchain_root_candidates", default=[])  # noqa: B039 - never mutated
_START_DISPATCH = frozenset({"ahandle_event", "on_llm_start", "on_chat_model_start"})


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


def _call_input(name: str) -> Any:
    """The value the root runnable named ``name`` was called with.

    LangChain hands a root chain the placeholder ``{"input": ""}`` when its input is
    streamed in, and a chat model its converted messages, while ``astream_events``
    reports the value passed to ``astream``/``invoke``. The sync callback manager calls
    the recorder on the runnable's own stack, which holds that value; the async one
    runs it in a separate task, so :attr:`Recorder.run_inline` (which LangChain reads on
    the runnable's stack just before) leaves the candidates in a context variable.
    When neither has it, the callback's own input is kept.
    """
    for own, value in _entry_inputs(sys._getframe(2)):
        if own == name:
            return value
    for own, value in _ROOT_CANDIDATES.get():
        if own == name:
            return value
    return _MISSING


def _dual(name: str) -> Any:
    """A callback that is a coroutine function for LangChain's async callback manager
    and a plain function for the sync one.

    LangChain awaits async handlers together with its own ``astream_events`` handler
    (one ``asyncio.gather``), so recording as a coroutine there keeps the recorded
    order of starts/ends relative to streamed chunks identical to what that handler
    emits; a sync handler would instead run in a worker thread, racing the stream. The
    sync manager calls handlers in place, in order. Which manager is calling is read
    from the caller's frame (``_ahandle_event_for_handler`` is the async dispatcher).
    """
    sync_name = f"_sync_{name}"

    def get(self: Any) -> Any:
        fn = getattr(self, sync_name)
        frame = sys._getframe(1)
        caller = frame.f_code.co_name
        if caller != "_ahandle_event_for_handler":
            if caller == "handle_event" and name.endswith("_start"):
                handlers = frame.f_locals.get("handlers")
                if handlers:
                    self._adopt(handlers)
            return fn

        async def call(*args: Any, **kwargs: Any) -> None:
            fn(*args, **kwargs)

        return call

    return property(get)


class Recorder(BaseCallbackHandler, _StreamingCallbackHandler[Any]):
    """Record every run LangChain reports into ``store``.

    ``chain.invoke(x, config={"callbacks": [Recorder(store)]})`` records the call and
    everything under it; ``astream_log``/``astream_events`` with the recorder in the
    config record the same run they stream.

    Args:
        store: the runlog store to write to.
        clock: epoch microseconds for event times (tests freeze it).
    """

    raise_error = False

    @property
    def run_inline(self) -> bool:  # type: ignore[override]
        """Always ``False``, and the moment to look at the runnable's stack.

        Not inline: LangChain's async manager skips the non-inline handlers'
        ``on_llm_start`` when any inline handler exists (langchain-core 1.7.2), which
        would break its own astream_log tracer; see :func:`_dual` for how callbacks run.
        LangChain reads this attribute on the runnable's stack right before dispatching
        a callback; for a root run's start the call inputs found there are kept for
        :func:`_call_input` (the dispatch itself runs in another task).
        """
        try:
            f = sys._getframe(1)
            if f.f_code.co_name in ("<listcomp>", "<genexpr>"):
                f = f.f_back  # type: ignore[assignment]
            code = f.f_code.co_name if f is not None else ""
            if code in _START_DISPATCH:
                loc = f.f_locals
                handlers = loc.get("handlers")
                if handlers is None:
                    handlers = getattr(loc.get("self"), "handlers", None)
                if handlers:
                    self._adopt(handlers)
                if code == "ahandle_event":
                    is_root_start = (str(loc.get("event_name", "")).endswith("_start") and
                                     (loc.get("kwargs") or {}).get("parent_run_id") is None)
                else:
                    is_root_start = getattr(loc.get("self"), "parent_run_id", 1) is None
                if is_root_start:
                    found = _entry_inputs(f)
                    if found:  # a dispatch task of its own sees none: keep the caller's
                        _ROOT_CANDIDATES.set(found)
        except Exception:  # never let bookkeeping break dispatch
            pass
        return False

    def __init__(self, store: Store, *, clock: Callable[[], int] = now_micros) -> None:
        super().__init__()
        self.store = store
        self.clock = clock
        self.failures = 0
        self.last_error: BaseException | None = None
        self.root_ids: list[str] = []
        self._runs: dict[UUID, Run] = {}
        self._tool_call_ids: dict[UUID, Any] = {}
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------
    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = exc
        log.warning("runlog_langchain: could not record %s: %s", what, exc)

    def _start(self, run_id: UUID, parent_run_id: UUID | None, name: str, run_type: str,
               inputs: Any, tags: list[str] | None, metadata: dict[str, Any] | None) -> None:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is None:
            found = _call_input(name)
            if found is not _MISSING:
                inputs = found
        run = self.store.start_run(
            name, run_type, inputs=inputs, tags=list(tags or ()), metadata=dict(metadata or {}),
            run_id=str(run_id), parent=parent, time=self.clock(), inherit=False, lossy=True)
        self._runs[run_id] = run
        if parent is None:
            self.root_ids.append(run.id)

    def _end(self, run_id: UUID, outputs: Any, *, error: BaseException | None = None,
             inputs: Any = _MISSING) -> None:
        run = self._runs.pop(run_id, None)
        if run is None or run.ended:
            return
        if inputs is _MISSING:
            run.end(outputs, error=error, time=self.clock(), lossy=True)
        else:
            run.end(outputs, error=error, inputs=inputs, time=self.clock(), lossy=True)

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:
            self._failed(what, e)

    # -- starts ----------------------------------------------------------------------
    def _sync_on_chain_start(self, serialized: dict[str, Any], inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        run_type = kwargs.get("run_type") or "chain"
        self._guard("a chain start", lambda: self._start(
            run_id, parent_run_id, name, run_type, inputs, tags, metadata))

    def _sync_on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                            run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("a chat model start", lambda: self._start(
            run_id, parent_run_id, name, "chat_model", {"messages": messages}, tags, metadata))

    def _sync_on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("an LLM start", lambda: self._start(
            run_id, parent_run_id, name, "llm", {"prompts": prompts}, tags, metadata))

    def _sync_on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None,
                      inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        if "tool_call_id" in kwargs:
            self._tool_call_ids[run_id] = kwargs["tool_call_id"]
        self._guard("a tool start", lambda: self._start(
            run_id, parent_run_id, name, "tool", inputs, tags, metadata))

    def _sync_on_retriever_start(self, serialized: dict[str, Any], query: str, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("a retriever start", lambda: self._start(
            run_id, parent_run_id, name, "retriever", {"query": query}, tags, metadata))

    # -- streaming -------------------------------------------------------------------
    def _sync_on_llm_new_token(self, token: str, *, chunk: Any = None, run_id: UUID,
                         parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        def go() -> None:
            run = self._runs.get(run_id)
            if run is None or run.ended:
                return
            value = chunk.message if isinstance(chunk, ChatGenerationChunk) else chunk
            run.token(token, value, time=self.clock())
        self._guard("a token", go)

    def _sync_on_custom_event(self, name: str, data: Any, *, run_id: UUID,
                        tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                        **kwargs: Any) -> None:
        def go() -> None:
            run = self._runs.get(run_id)
            if run is None or run.ended:
                return
            run.event(name, data, time=self.clock())
        self._guard("a custom event", go)

    def _record_chunk(self, run_id: UUID, chunk: Any) -> None:
        run = self._runs.get(run_id)
        if run is None or run.ended:
            return
        try:
            run.stream(chunk, time=self.clock(), lossy=True)
        except Exception as e:
            self._failed("an output chunk", e)

    def _adopt(self, handlers: Any) -> None:
        """Make the other streaming handlers of a run pass their taps through ours.

        LangChain taps only the first streaming handler of a run, and the order of a
        child run's handlers is not stable (callback managers are merged with sets), so
        when another streaming handler comes first, its ``tap_output_aiter`` /
        ``tap_output_iter`` (instance attributes set here, once per handler) record the
        chunk through the recorder before doing their own work.
        """
        for h in list(handlers):
            if h is self or not isinstance(h, _StreamingCallbackHandler):
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
                if h is not self and isinstance(h, _StreamingCallbackHandler)]

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        """Record each chunk of a run's async output stream, then pass it on."""
        it: AsyncIterator[T] = self._atap(run_id, output)
        for h in self._others(sys._getframe(1)):  # their own taps, not our wrappers
            it = type(h).tap_output_aiter(h, run_id, it)
        return it

    async def _atap(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
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
        for chunk in output:
            self._record_chunk(run_id, chunk)
            yield chunk

    # -- ends ------------------------------------------------------------------------
    def _sync_on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        inputs = kwargs.get("inputs")
        self._guard("a chain end", lambda: self._end(
            run_id, outputs, inputs=inputs if inputs is not None else _MISSING))

    def _sync_on_chain_error(self, error: BaseException, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("a chain error", lambda: self._end(run_id, None, error=error))

    def _sync_on_llm_end(self, response: LLMResult, *, run_id: UUID,
                   parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("an LLM end", lambda: self._end(run_id, llm_result_outputs(response)))

    def _sync_on_llm_error(self, error: BaseException, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        response = kwargs.get("response")
        self._guard("an LLM error", lambda: self._end(
            run_id, llm_result_outputs(response) if isinstance(response, LLMResult) else None,
            error=error))

    def _sync_on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                    **kwargs: Any) -> None:
        self._tool_call_ids.pop(run_id, None)
        self._guard("a tool end", lambda: self._end(run_id, output))

    def _sync_on_tool_error(self, error: BaseException, *, run_id: UUID,
                      parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        call_id = kwargs.get("tool_call_id")
        stored = self._tool_call_ids.pop(run_id, None)
        if call_id is None:
            call_id = stored
        self._guard("a tool error", lambda: self._end(
            run_id, {"tool_call_id": call_id}, error=error))

    def _sync_on_retriever_end(self, documents: Any, *, run_id: UUID,
                         parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("a retriever end", lambda: self._end(run_id, list(documents)))

    def _sync_on_retriever_error(self, error: BaseException, *, run_id: UUID,
                           parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("a retriever error", lambda: self._end(run_id, None, error=error))

    on_chain_start = _dual("on_chain_start")
    on_chat_model_start = _dual("on_chat_model_start")
    on_llm_start = _dual("on_llm_start")
    on_tool_start = _dual("on_tool_start")
    on_retriever_start = _dual("on_retriever_start")
    on_llm_new_token = _dual("on_llm_new_token")
    on_custom_event = _dual("on_custom_event")
    on_chain_end = _dual("on_chain_end")
    on_chain_error = _dual("on_chain_error")
    on_llm_end = _dual("on_llm_end")
    on_llm_error = _dual("on_llm_error")
    on_tool_end = _dual("on_tool_end")
    on_tool_error = _dual("on_tool_error")
    on_retriever_end = _dual("on_retriever_end")
    on_retriever_error = _dual("on_retriever_error")

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Recorder:
        return self  # LangChain copies configs; the recorder is shared, like its tracers

    def __copy__(self) -> Recorder:
        return self
