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


def _call_input(name: str) -> Any:
    """The value the root runnable was called with, found on the caller's stack.

    LangChain hands a root chain the placeholder ``{"input": ""}`` when its input is
    streamed in, and a chat model its converted messages, while ``astream_events``
    reports the value passed to ``astream``/``invoke``. The innermost ``invoke``,
    ``ainvoke``, ``stream`` or ``astream`` frame of a ``Runnable`` with the root's name
    (``run_name`` from its config, else ``get_name()``) holds that value; failing that,
    the ``consume_astream`` task of LangChain's own ``astream_log``/``astream_events``
    (for runnables whose ``astream`` is a plain function, e.g. ``RunnableGenerator``).
    When neither is on the stack the callback's own input is kept.
    """
    f: FrameType | None = sys._getframe(2)
    while f is not None:
        code = f.f_code.co_name
        if code in _ENTRY_METHODS or code == "consume_astream":
            loc = f.f_locals
            if code == "consume_astream":  # astream_log/astream_events' producer task
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
                if own == name:
                    return loc[key]
        f = f.f_back
    return _MISSING


class Recorder(BaseCallbackHandler, _StreamingCallbackHandler[Any]):
    """Record every run LangChain reports into ``store``.

    ``chain.invoke(x, config={"callbacks": [Recorder(store)]})`` records the call and
    everything under it; ``astream_log``/``astream_events`` with the recorder in the
    config record the same run they stream.

    Args:
        store: the runlog store to write to.
        clock: epoch microseconds for event times (tests freeze it).
    """

    run_inline = True  # called in the callback's own thread/loop, before other handlers
    raise_error = False

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
    def on_chain_start(self, serialized: dict[str, Any], inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        run_type = kwargs.get("run_type") or "chain"
        self._guard("a chain start", lambda: self._start(
            run_id, parent_run_id, name, run_type, inputs, tags, metadata))

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                            run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("a chat model start", lambda: self._start(
            run_id, parent_run_id, name, "chat_model", {"messages": messages}, tags, metadata))

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("an LLM start", lambda: self._start(
            run_id, parent_run_id, name, "llm", {"prompts": prompts}, tags, metadata))

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None,
                      inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        if "tool_call_id" in kwargs:
            self._tool_call_ids[run_id] = kwargs["tool_call_id"]
        self._guard("a tool start", lambda: self._start(
            run_id, parent_run_id, name, "tool", inputs, tags, metadata))

    def on_retriever_start(self, serialized: dict[str, Any], query: str, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _assign_name(kwargs.get("name"), serialized)
        self._guard("a retriever start", lambda: self._start(
            run_id, parent_run_id, name, "retriever", {"query": query}, tags, metadata))

    # -- streaming -------------------------------------------------------------------
    def on_llm_new_token(self, token: str, *, chunk: Any = None, run_id: UUID,
                         parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        def go() -> None:
            run = self._runs.get(run_id)
            if run is None or run.ended:
                return
            value = chunk.message if isinstance(chunk, ChatGenerationChunk) else chunk
            run.token(token, value, time=self.clock())
        self._guard("a token", go)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID,
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

    def _others(self, frame: FrameType | None) -> list[Any]:
        """The other streaming handlers of the run being tapped (see module docstring)."""
        manager = frame.f_locals.get("run_manager") if frame is not None else None
        handlers = getattr(manager, "handlers", None) or ()
        return [h for h in handlers
                if h is not self and isinstance(h, _StreamingCallbackHandler)]

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        """Record each chunk of a run's async output stream, then pass it on."""
        it: AsyncIterator[T] = self._atap(run_id, output)
        for h in self._others(sys._getframe(1)):
            it = h.tap_output_aiter(run_id, it)
        return it

    async def _atap(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        async for chunk in output:
            self._record_chunk(run_id, chunk)
            yield chunk

    def tap_output_iter(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        """Record each chunk of a run's output stream, then pass it on."""
        it: Iterator[T] = self._tap(run_id, output)
        for h in self._others(sys._getframe(1)):
            it = h.tap_output_iter(run_id, it)
        return it

    def _tap(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        for chunk in output:
            self._record_chunk(run_id, chunk)
            yield chunk

    # -- ends ------------------------------------------------------------------------
    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        inputs = kwargs.get("inputs")
        self._guard("a chain end", lambda: self._end(
            run_id, outputs, inputs=inputs if inputs is not None else _MISSING))

    def on_chain_error(self, error: BaseException, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("a chain error", lambda: self._end(run_id, None, error=error))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID,
                   parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("an LLM end", lambda: self._end(run_id, llm_result_outputs(response)))

    def on_llm_error(self, error: BaseException, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        response = kwargs.get("response")
        self._guard("an LLM error", lambda: self._end(
            run_id, llm_result_outputs(response) if isinstance(response, LLMResult) else None,
            error=error))

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                    **kwargs: Any) -> None:
        self._tool_call_ids.pop(run_id, None)
        self._guard("a tool end", lambda: self._end(run_id, output))

    def on_tool_error(self, error: BaseException, *, run_id: UUID,
                      parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        call_id = kwargs.get("tool_call_id")
        stored = self._tool_call_ids.pop(run_id, None)
        if call_id is None:
            call_id = stored
        self._guard("a tool error", lambda: self._end(
            run_id, {"tool_call_id": call_id}, error=error))

    def on_retriever_end(self, documents: Any, *, run_id: UUID,
                         parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("a retriever end", lambda: self._end(run_id, list(documents)))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID,
                           parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._guard("a retriever error", lambda: self._end(run_id, None, error=error))

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Recorder:
        return self  # LangChain copies configs; the recorder is shared, like its tracers

    def __copy__(self) -> Recorder:
        return self
