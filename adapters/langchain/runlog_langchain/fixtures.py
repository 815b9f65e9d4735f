"""Recorded runs as offline test fixtures: stand-ins that answer with what was recorded.

Record a real run once (``record(store)`` or ``Recorder(store)``), then in tests::

    fx = runlog_langchain.replay_fixtures(store, run_id)
    chain = prompt | fx.chat_model() | StrOutputParser()   # no network
    assert chain.invoke({"question": "..."}) == recorded_answer

:func:`replay_fixtures` reads every chat model, LLM, tool and retriever call in the
recorded trace(s) and returns a :class:`Recordings`; its methods build stand-ins that
are real LangChain ``BaseChatModel`` / ``BaseLLM`` / ``BaseTool`` / ``BaseRetriever``
subclasses, so they drop into chains and agents and report to callbacks like the
originals. Each call is answered by the recording whose *input* matches:

* chat models: the messages (type, content, name, tool calls, tool call id; not message
  ids or metadata), whether the call passed a string, messages or a prompt value;
* LLMs: the prompt string; tools: the tool input (``ToolCall`` args, a dict or a string);
  retrievers: the query.

A chat model or LLM answers with the recorded chunks (the original chunking: the same
``AIMessageChunk``/``GenerationChunk`` objects, tool-call chunks and usage included),
with the original inter-token timing when built with ``realtime=True``; a recorded
error is raised again after the recorded chunks, as it happened. An input that was
never recorded raises :class:`NotRecordedError` naming that input and the recorded
ones. The same input called again gets the next recording of that input, in recorded
order; once those are used up, the last one is repeated.

:func:`replay_model` is the shortcut for the common case of one model in the trace.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.llms import LLM
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    GenerationChunk,
)
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from runlog import Event, Store
from runlog.events import ErrorInfo
from runlog.reducers import error_object

__all__ = [
    "NotRecordedError",
    "RecordedCall",
    "Recordings",
    "ReplayChatModel",
    "ReplayLLM",
    "ReplayRetriever",
    "ReplayTool",
    "replay_fixtures",
    "replay_model",
]

Kind = Literal["chat_model", "llm", "tool", "retriever"]
_KINDS: tuple[Kind, ...] = ("chat_model", "llm", "tool", "retriever")
_LC_ID_PREFIX = "lc_run-"  # ids LangChain gives a model's message from its run id


class NotRecordedError(LookupError):
    """A stand-in was called with an input that no recorded call had."""


# ------------------------------------------------------------------ normalisation

_CHUNK_TYPES = {"AIMessageChunk": "ai", "HumanMessageChunk": "human",
                "SystemMessageChunk": "system", "ToolMessageChunk": "tool",
                "ChatMessageChunk": "chat", "FunctionMessageChunk": "function"}


def _message_key(m: BaseMessage) -> dict[str, Any]:
    """What identifies a message as a model input: not its id or provider metadata."""
    key: dict[str, Any] = {"type": _CHUNK_TYPES.get(m.type, m.type), "content": m.content}
    if m.name:
        key["name"] = m.name
    if isinstance(m, AIMessage) and m.tool_calls:
        key["tool_calls"] = [{"name": c["name"], "args": c["args"], "id": c.get("id")}
                             for c in m.tool_calls]
    if isinstance(m, ToolMessage):
        key["tool_call_id"] = m.tool_call_id
    role = getattr(m, "role", None)
    if role is not None:
        key["role"] = role
    return key


def _to_messages(value: Any) -> list[BaseMessage]:
    """A chat model's input as LangChain converts it (``BaseChatModel._convert_input``)."""
    if isinstance(value, dict) and "messages" in value:  # the recorded child-run shape
        batch = value["messages"]
        value = batch[0] if batch and isinstance(batch[0], list) else batch
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, Sequence):
        return ChatPromptValue(messages=convert_to_messages(value)).to_messages()
    raise TypeError(f"not a chat model input: {type(value).__name__}")


def _to_prompt(value: Any) -> str:
    """An LLM's input as the prompt string LangChain sends (``to_string()``)."""
    if isinstance(value, dict) and "prompts" in value:  # the recorded child-run shape
        value = value["prompts"][0]
    if isinstance(value, PromptValue):
        return value.to_string()
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ChatPromptValue(messages=convert_to_messages(value)).to_string()
    raise TypeError(f"not an LLM input: {type(value).__name__}")


def _tool_input(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "tool_call" and "args" in value:
        return value["args"]  # a ToolCall: the tool sees its args
    return value


def _query(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"query"}:  # the recorded child shape
        return value["query"]
    return value


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, BaseMessage):
        return _message_key(obj)
    if isinstance(obj, Document):
        return {"page_content": obj.page_content, "metadata": obj.metadata}
    return repr(obj)


def input_key(kind: Kind, value: Any) -> str:
    """The normalised form of a call's input that recordings are looked up by."""
    if kind == "chat_model":
        return _canon([_message_key(m) for m in _to_messages(value)])
    if kind == "llm":
        return _canon(_to_prompt(value))
    if kind == "tool":
        return _canon(_tool_input(value))
    return _canon(_query(value))


def _preview(kind: Kind, key: str, limit: int = 300) -> str:
    """A readable one-line form of a normalised input, for error messages."""
    value = json.loads(key)
    if kind == "chat_model":
        text = " | ".join(f"{m['type']}: {m['content']!r}"
                          + (f" tool_calls={m['tool_calls']}" if "tool_calls" in m else "")
                          for m in value)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ recordings


@dataclass
class RecordedCall:
    """One recorded model/tool/retriever call: its input, streamed chunks and result."""

    run_id: str
    name: str
    kind: Kind
    key: str
    inputs: Any
    start_us: int
    chunks: list[tuple[int, Any]] = field(default_factory=list)  # (offset µs, chunk)
    outputs: Any = None
    error: ErrorInfo | None = None
    end_offset_us: int = 0
    ended: bool = False


class _Book:
    """The recordings one stand-in answers from, and how many times each input was used."""

    def __init__(self, kind: Kind, name: str, calls: list[RecordedCall],
                 sources: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.sources = list(sources)
        self.by_key: dict[str, list[RecordedCall]] = {}
        for c in calls:
            self.by_key.setdefault(c.key, []).append(c)
        # a one-argument tool is called with "x" or {"arg": "x"} interchangeably
        self.alias: dict[str, str] = {}
        if kind == "tool":
            for key in self.by_key:
                value = json.loads(key)
                if isinstance(value, dict) and len(value) == 1:
                    self.alias.setdefault(_canon(next(iter(value.values()))), key)
        self.used: dict[str, int] = {}
        self.lock = threading.Lock()

    def answer(self, value: Any) -> RecordedCall:
        try:
            key = input_key(self.kind, value)
        except TypeError as e:
            raise NotRecordedError(f"{self.name}: {e}") from e
        found = self.by_key.get(key) or self.by_key.get(self._alias(key))
        if not found:
            raise NotRecordedError(self._miss_message(key))
        key = found[0].key
        with self.lock:
            n = self.used.get(key, 0)
            self.used[key] = n + 1
        return found[min(n, len(found) - 1)]

    def _alias(self, key: str) -> str:
        if self.kind != "tool":
            return key
        value = json.loads(key)
        if isinstance(value, dict) and len(value) == 1:
            return _canon(next(iter(value.values())))  # {"arg": "x"} for a recorded "x"
        return self.alias.get(key, key)  # "x" for a recorded {"arg": "x"}

    def _miss_message(self, key: str) -> str:
        known = list(self.by_key)
        lines = [f"{self.kind.replace('_', ' ')} stand-in {self.name!r} was called with an "
                 f"input that was never recorded in {', '.join(self.sources)}:",
                 f"    {_preview(self.kind, key)}",
                 f"recorded inputs ({len(known)}):"]
        lines += [f"    {_preview(self.kind, k)}" for k in known[:5]]
        if len(known) > 5:
            lines.append(f"    ... and {len(known) - 5} more")
        lines.append("Record the run again with this input, or find what changed in the "
                     "prompt, messages or tool arguments since it was recorded.")
        return "\n".join(lines)


def _realtime_wait(t0: float, offset_us: int) -> float:
    return t0 + offset_us / 1_000_000 - time.monotonic()


def _strip_lc_id(msg: Any) -> Any:
    """Drop the id LangChain derived from the *recorded* run's id; the replaying run
    assigns its own. Ids a provider set (e.g. ``chatcmpl-...``) are kept."""
    mid = getattr(msg, "id", None)
    if isinstance(mid, str) and mid.startswith(_LC_ID_PREFIX):
        return msg.model_copy(update={"id": None})
    return msg.model_copy()


def _final_message(call: RecordedCall) -> AIMessage:
    gens = (call.outputs or {}).get("generations") if isinstance(call.outputs, dict) else None
    if gens and gens[0]:
        msg = gens[0][0].get("message")
        if isinstance(msg, BaseMessage):
            if isinstance(msg, AIMessageChunk):
                msg = message_chunk_to_message(msg)
            return _strip_lc_id(msg)  # type: ignore[no-any-return]
        text = gens[0][0].get("text")
        if isinstance(text, str):
            return AIMessage(content=text)
    if call.chunks:
        total: Any = None
        for _, c in call.chunks:
            total = c if total is None else total + c
        return _strip_lc_id(message_chunk_to_message(total))  # type: ignore[no-any-return]
    raise NotRecordedError(f"the recorded call {call.run_id} of {call.name!r} has no output")


def _chat_chunks(call: RecordedCall) -> list[tuple[int, AIMessageChunk]]:
    out = [(off, _strip_lc_id(c)) for off, c in call.chunks if isinstance(c, AIMessageChunk)]
    if out or call.error is not None:
        return out
    m = _final_message(call)  # recorded without streaming: one chunk with the message
    chunk = AIMessageChunk(content=m.content, additional_kwargs=m.additional_kwargs,
                           response_metadata=m.response_metadata, id=m.id,
                           usage_metadata=m.usage_metadata, tool_call_chunks=[
                               {"name": tc["name"], "args": json.dumps(tc["args"]),
                                "id": tc.get("id"), "index": i, "type": "tool_call_chunk"}
                               for i, tc in enumerate(m.tool_calls)],
                           chunk_position="last")
    return [(call.end_offset_us, chunk)]


def _llm_text(call: RecordedCall) -> str:
    gens = call.outputs.get("generations") if isinstance(call.outputs, dict) else None
    if gens and gens[0]:
        return str(gens[0][0].get("text", ""))
    return "".join(c.text for _, c in call.chunks if isinstance(c, GenerationChunk))


def _llm_chunks(call: RecordedCall) -> list[tuple[int, GenerationChunk]]:
    out = [(off, c.model_copy()) for off, c in call.chunks if isinstance(c, GenerationChunk)]
    if out or call.error is not None:
        return out
    return [(call.end_offset_us, GenerationChunk(text=_llm_text(call)))]


def _raise_recorded(call: RecordedCall) -> None:
    if call.error is not None:
        raise error_object(call.error)
    if not call.ended:
        raise NotRecordedError(
            f"the recorded call {call.run_id} of {call.name!r} never ended (the recording "
            "was interrupted); record it again")


# ------------------------------------------------------------------ stand-ins


class ReplayChatModel(BaseChatModel):
    """A chat model that answers each call with the recorded answer for its messages."""

    realtime: bool = False
    """Sleep the recorded time before each chunk (from the start of the call)."""

    _book: _Book = PrivateAttr()

    @property
    def _llm_type(self) -> str:
        return "runlog-replay-chat"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Accept tools like the recorded model did; the recorded tool calls are replayed.

        The tools are bound as call options (visible in the invocation params) and do
        not take part in matching: the answer is looked up by the messages alone.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        call = self._book.answer(messages)
        if self.realtime:
            time.sleep(max(0.0, call.end_offset_us / 1_000_000))
        _raise_recorded(call)
        return ChatResult(generations=[ChatGeneration(message=_final_message(call))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        call = self._book.answer(messages)
        if self.realtime:
            await asyncio.sleep(max(0.0, call.end_offset_us / 1_000_000))
        _raise_recorded(call)
        return ChatResult(generations=[ChatGeneration(message=_final_message(call))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        # LangChain's BaseChatModel reports each chunk to on_llm_new_token itself
        call = self._book.answer(messages)
        t0 = time.monotonic()
        for off, chunk in _chat_chunks(call):
            if self.realtime and (wait := _realtime_wait(t0, off)) > 0:
                time.sleep(wait)
            yield ChatGenerationChunk(message=chunk)
        _raise_recorded(call)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        call = self._book.answer(messages)
        t0 = time.monotonic()
        for off, chunk in _chat_chunks(call):
            if self.realtime and (wait := _realtime_wait(t0, off)) > 0:
                await asyncio.sleep(wait)
            yield ChatGenerationChunk(message=chunk)
        _raise_recorded(call)


class ReplayLLM(LLM):
    """A text-completion LLM that answers each prompt with the recorded completion."""

    realtime: bool = False
    """Sleep the recorded time before each chunk (from the start of the call)."""

    _book: _Book = PrivateAttr()

    @property
    def _llm_type(self) -> str:
        return "runlog-replay-llm"

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        call = self._book.answer(prompt)
        if self.realtime:
            time.sleep(max(0.0, call.end_offset_us / 1_000_000))
        _raise_recorded(call)
        return _llm_text(call)

    async def _acall(self, prompt: str, stop: list[str] | None = None,
                     run_manager: AsyncCallbackManagerForLLMRun | None = None,
                     **kwargs: Any) -> str:
        call = self._book.answer(prompt)
        if self.realtime:
            await asyncio.sleep(max(0.0, call.end_offset_us / 1_000_000))
        _raise_recorded(call)
        return _llm_text(call)

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[GenerationChunk]:
        # BaseLLM leaves on_llm_new_token to the implementation
        call = self._book.answer(prompt)
        t0 = time.monotonic()
        for off, chunk in _llm_chunks(call):
            if self.realtime and (wait := _realtime_wait(t0, off)) > 0:
                time.sleep(wait)
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        _raise_recorded(call)

    async def _astream(self, prompt: str, stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[GenerationChunk]:
        call = self._book.answer(prompt)
        t0 = time.monotonic()
        for off, chunk in _llm_chunks(call):
            if self.realtime and (wait := _realtime_wait(t0, off)) > 0:
                await asyncio.sleep(wait)
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        _raise_recorded(call)


class ReplayTool(BaseTool):
    """A tool that returns the recorded output for each recorded tool input."""

    _book: _Book = PrivateAttr()

    def _answer(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        value = args[0] if len(args) == 1 and not kwargs else dict(kwargs)
        call = self._book.answer(value)
        _raise_recorded(call)
        out = call.outputs
        if isinstance(out, ToolMessage):  # recorded from a ToolCall: the tool returned this
            if self.response_format == "content_and_artifact":
                return (out.content, out.artifact)
            return out.content
        if self.response_format == "content_and_artifact" and isinstance(out, list | tuple):
            return tuple(out)
        return out

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer(args, kwargs)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer(args, kwargs)


class ReplayRetriever(BaseRetriever):
    """A retriever that returns the recorded documents for each recorded query."""

    _book: _Book = PrivateAttr()

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        call = self._book.answer(query)
        _raise_recorded(call)
        return [d.model_copy(deep=True) if isinstance(d, Document) else Document(**d)
                for d in (call.outputs or [])]

    async def _aget_relevant_documents(
            self, query: str, *,
            run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return self._get_relevant_documents(query, run_manager=run_manager)  # type: ignore[arg-type]


class Recordings:
    """The model, LLM, tool and retriever calls of recorded runs; builds stand-ins.

    Each builder takes the recorded ``name`` of the component to replay (the run name
    LangChain reported, e.g. ``"GenericFakeChatModel"``, a tool's name, a retriever's
    ``run_name``); without one it answers from every recorded call of that kind. Every
    stand-in is fresh: it starts at the first recording of each input.
    """

    def __init__(self, calls: list[RecordedCall], sources: Sequence[str]) -> None:
        self.calls = calls
        self.sources = list(sources)

    def names(self, kind: Kind) -> list[str]:
        """The distinct recorded names of one kind, in first-call order."""
        return list(dict.fromkeys(c.name for c in self.calls if c.kind == kind))

    def _book(self, kind: Kind, name: str | None) -> _Book:
        calls = [c for c in self.calls if c.kind == kind and (name is None or c.name == name)]
        if not calls:
            have = self.names(kind)
            label = kind.replace("_", " ")
            raise NotRecordedError(
                f"no {label} {'named ' + repr(name) + ' ' if name else ''}was recorded in "
                f"{', '.join(self.sources)}"
                + (f"; recorded {label} names: {', '.join(map(repr, have))}" if have else ""))
        names = list(dict.fromkeys(c.name for c in calls))
        return _Book(kind, names[0] if len(names) == 1 else f"{kind} recordings",
                     calls, self.sources)

    def chat_model(self, name: str | None = None, *, realtime: bool = False) -> ReplayChatModel:
        """A chat model answering from the recorded chat model calls."""
        book = self._book("chat_model", name)
        m = ReplayChatModel(realtime=realtime, name=self._single_name(book))
        m._book = book
        return m

    def llm(self, name: str | None = None, *, realtime: bool = False) -> ReplayLLM:
        """An LLM answering from the recorded (text completion) LLM calls."""
        book = self._book("llm", name)
        m = ReplayLLM(realtime=realtime, name=self._single_name(book))
        m._book = book
        return m

    def tool(self, name: str | None = None, *, description: str | None = None) -> ReplayTool:
        """A tool with the recorded name answering from that tool's recorded calls."""
        book = self._book("tool", name)
        artifact = any(isinstance(c.outputs, ToolMessage) and c.outputs.artifact is not None
                       for calls in book.by_key.values() for c in calls)
        t = ReplayTool(name=self._single_name(book) or "replay_tool",
                       description=description or f"Replays the recorded calls of {book.name}",
                       response_format="content_and_artifact" if artifact else "content")
        t._book = book
        return t

    def tools(self) -> list[ReplayTool]:
        """One stand-in per recorded tool name (for ``bind_tools``/agents)."""
        return [self.tool(n) for n in self.names("tool")]

    def retriever(self, name: str | None = None) -> ReplayRetriever:
        """A retriever answering from the recorded retriever calls."""
        book = self._book("retriever", name)
        r = ReplayRetriever(name=self._single_name(book))
        r._book = book
        return r

    @staticmethod
    def _single_name(book: _Book) -> str | None:
        names = {c.name for calls in book.by_key.values() for c in calls}
        return names.pop() if len(names) == 1 else None


def _collect(events: Iterable[Event], calls: list[RecordedCall],
             open_calls: dict[str, RecordedCall]) -> None:
    for e in events:
        if e.kind == "start":
            if e.run_type in _KINDS:
                kind: Kind = e.run_type
                try:
                    key = input_key(kind, e.data)
                except TypeError:
                    continue  # an input shape this module does not know: not replayable
                call = RecordedCall(run_id=e.run_id, name=e.name, kind=kind, key=key,
                                    inputs=e.data, start_us=e.time_us)
                calls.append(call)
                open_calls[e.run_id] = call
            continue
        cur = open_calls.get(e.run_id)
        if cur is None:
            continue
        if e.kind == "stream":
            if e.channel == "token" and isinstance(e.data, dict):
                chunk = e.data.get("chunk")
                if chunk is None:
                    token = e.data.get("token", "")
                    chunk = (AIMessageChunk(content=token) if cur.kind == "chat_model"
                             else GenerationChunk(text=token))
                cur.chunks.append((e.time_us - cur.start_us, chunk))
        elif e.kind == "end":
            cur.outputs = e.data
            cur.error = e.error
            cur.end_offset_us = e.time_us - cur.start_us
            cur.ended = True
            del open_calls[e.run_id]


def replay_fixtures(store: Store, run_id: str | Sequence[str]) -> Recordings:
    """Read the model, LLM, tool and retriever calls recorded under ``run_id``.

    ``run_id`` is a recorded run (usually a root: its whole subtree is read; unique
    prefixes and suffixes work as elsewhere) or a list of them, whose recordings are
    pooled. See the module docstring for how calls are matched and answered.
    """
    ids = [run_id] if isinstance(run_id, str) else list(run_id)
    calls: list[RecordedCall] = []
    for rid in ids:
        full = store.resolve_run_id(rid)
        _collect(store.events(full, descendants=True), calls, {})
    return Recordings(calls, [store.resolve_run_id(r) for r in ids])


def replay_model(store: Store, run_id: str | Sequence[str], name: str | None = None, *,
                 realtime: bool = False) -> ReplayChatModel | ReplayLLM:
    """The stand-in for the model recorded under ``run_id``: a chat model if chat model
    calls were recorded, else an LLM. ``name`` picks one model when several were."""
    rec = replay_fixtures(store, run_id)
    if any(c.kind == "chat_model" and (name is None or c.name == name) for c in rec.calls):
        return rec.chat_model(name, realtime=realtime)
    return rec.llm(name, realtime=realtime)
