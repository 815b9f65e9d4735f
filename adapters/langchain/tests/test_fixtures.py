"""Recorded runs as offline fixtures: stand-ins answer with exactly what was recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel, BaseLLM, GenericFakeChatModel
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.language_models.llms import LLM
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from runlog_langchain import (
    NotRecordedError,
    ReplayChatModel,
    ReplayLLM,
    record,
    replay_fixtures,
    replay_model,
)
from runlog_langchain import fixtures as fixtures_module

import runlog
from runlog import Store


class ScriptedChat(BaseChatModel):
    """Streams exactly the given chunks, optionally failing before chunk ``fail_at``."""

    chunks: list[str]
    fail_at: int | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(content="".join(self.chunks)))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for i, c in enumerate(self.chunks):
            if i == self.fail_at:
                raise ConnectionError("the model hung up")
            yield ChatGenerationChunk(message=AIMessageChunk(content=c))


class ScriptedLLM(LLM):
    """A completion LLM streaming the given chunks through its callbacks."""

    chunks: list[str]

    @property
    def _llm_type(self) -> str:
        return "scripted-llm"

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return "".join(self.chunks)

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[GenerationChunk]:
        for c in self.chunks:
            chunk = GenerationChunk(text=c)
            if run_manager is not None:
                run_manager.on_llm_new_token(c, chunk=chunk)
            yield chunk


class Shelf(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        word = query.split()[-1].strip("?").lower()
        return [d for d in self.docs if word in d.page_content.lower()]


DOCS = [Document(page_content="Cats purr.", metadata={"src": "a"}, id="a"),
        Document(page_content="Dogs bark.", metadata={"src": "b"}, id="b")]
PROMPT = ChatPromptTemplate.from_messages([("system", "Context: {context}"),
                                           ("human", "{question}")])


def rag(retriever: Runnable[Any, Any], model: Runnable[Any, Any]) -> Runnable[Any, str]:
    def fmt(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    return ({"context": retriever | fmt, "question": lambda q: q}  # type: ignore[return-value]
            | PROMPT | model | StrOutputParser())


@pytest.fixture
def store() -> Iterator[Store]:
    s = runlog.open(":memory:")
    yield s
    s.close()


def live_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage("Cats purr when content."),
                                               AIMessage("Dogs bark at strangers.")]))


def test_rag_replays_offline_with_original_chunking(store: Store) -> None:
    live = rag(Shelf(docs=DOCS), live_model())
    with record(store) as rec:
        first = list(live.stream("What do cats"))
        second = live.invoke("What do dogs")
    fx = replay_fixtures(store, rec.root_ids)
    model, retriever = fx.chat_model(), fx.retriever()
    assert isinstance(model, BaseChatModel)
    assert isinstance(retriever, BaseRetriever)
    assert model.name == "GenericFakeChatModel"
    offline = rag(retriever, model)
    assert list(offline.stream("What do cats")) == first  # same chunks, same order
    assert offline.invoke("What do dogs") == second
    assert asyncio.run(offline.ainvoke("What do cats")) == "".join(first)
    assert retriever.invoke("What do dogs") == [DOCS[1]]


def test_miss_names_the_first_unrecorded_input(store: Store) -> None:
    with record(store) as rec:
        rag(Shelf(docs=DOCS), live_model()).invoke("What do cats")
    fx = replay_fixtures(store, rec.root_ids[0])
    # the retriever is called first, so its query is the first unrecorded input
    with pytest.raises(NotRecordedError, match=r"(?s)retriever.*'What do hamsters'.*"
                                               r"recorded inputs \(1\).*'What do cats'"):
        rag(fx.retriever(), fx.chat_model()).invoke("What do hamsters")
    # a model reached with a changed prompt names the messages it got
    with pytest.raises(NotRecordedError, match=r"(?s)chat model stand-in 'GenericFakeChat"
                                               r"Model'.*human: 'What do cats\?'"):
        fx.chat_model().invoke([("system", "Context: Cats purr."), ("human", "What do cats?")])


def test_input_forms_are_normalised(store: Store) -> None:
    with record(store) as rec:
        live_model().invoke("hello")
    model = replay_model(store, rec.root_ids[0])
    assert isinstance(model, ReplayChatModel)
    answer = "Cats purr when content."
    assert model.invoke("hello").content == answer
    assert model.invoke([("human", "hello")]).content == answer
    assert model.invoke(ChatPromptTemplate.from_messages([("human", "{x}")])
                        .invoke({"x": "hello"})).content == answer


def test_repeated_input_answers_in_recorded_order_then_repeats_last(store: Store) -> None:
    m = GenericFakeChatModel(messages=iter([AIMessage("one"), AIMessage("two")]))
    with record(store) as rec:
        m.invoke("same")
        m.invoke("same")
    model = replay_fixtures(store, rec.root_ids).chat_model()
    assert [model.invoke("same").content for _ in range(3)] == ["one", "two", "two"]
    fresh = replay_fixtures(store, rec.root_ids).chat_model()
    assert fresh.invoke("same").content == "one"  # every stand-in starts over


def test_error_mid_stream_replays_chunks_then_raises(store: Store) -> None:
    def consume(model: Runnable[Any, Any], into: list[str]) -> None:
        for c in model.stream("hi"):
            into.append(str(c.content))

    got: list[str] = []
    with record(store) as rec, pytest.raises(ConnectionError):
        consume(ScriptedChat(chunks=["Hel", "lo", " wor", "ld"], fail_at=2), got)
    replayed: list[str] = []
    with pytest.raises(ConnectionError, match="the model hung up"):
        consume(replay_model(store, rec.root_ids[0]), replayed)
    assert replayed == got == ["Hel", "lo"]


def test_message_ids_belong_to_the_replaying_run(store: Store) -> None:
    with record(store) as rec:
        recorded = list(ScriptedChat(chunks=["a", "b"]).stream("hi"))
    replayed = list(replay_model(store, rec.root_ids[0]).stream("hi"))
    assert [c.content for c in replayed] == [c.content for c in recorded]
    assert replayed[0].id is not None
    assert replayed[0].id != recorded[0].id
    assert len({c.id for c in replayed}) == 1


def test_llm_stand_in_keeps_chunking(store: Store) -> None:
    llm = ScriptedLLM(chunks=["Once", " upon", " a", " time"])
    chain = PromptTemplate.from_template("Tell a story about {x}") | llm
    with record(store) as rec:
        live = list(chain.stream({"x": "cats"}))
    model = replay_model(store, rec.root_ids[0])
    assert isinstance(model, ReplayLLM)
    assert isinstance(model, BaseLLM)
    offline = PromptTemplate.from_template("Tell a story about {x}") | model
    assert list(offline.stream({"x": "cats"})) == live
    assert offline.invoke({"x": "cats"}) == "Once upon a time"
    with pytest.raises(NotRecordedError, match="Tell a story about dogs"):
        offline.invoke({"x": "dogs"})


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Upper-case the text; refuses "bad"."""
    if text == "bad":
        raise ValueError("refusing bad text")
    return text.upper()


def test_tool_stand_ins(store: Store) -> None:
    call = {"name": "add", "args": {"a": 3, "b": 4}, "id": "call_1", "type": "tool_call"}
    with record(store) as rec:
        add.invoke({"a": 1, "b": 2})
        add.invoke(call)
        shout.invoke("hi")
        with pytest.raises(ValueError):
            shout.invoke("bad")
    fx = replay_fixtures(store, rec.root_ids)
    assert fx.names("tool") == ["add", "shout"]
    r_add, r_shout = fx.tools()
    assert isinstance(r_add, BaseTool)
    assert r_add.name == "add"
    assert r_add.invoke({"a": 1, "b": 2}) == 3
    msg = r_add.invoke({**call, "id": "call_9"})
    assert isinstance(msg, ToolMessage)
    assert (msg.content, msg.tool_call_id) == ("7", "call_9")
    assert r_shout.invoke("hi") == "HI"
    assert r_shout.invoke({"text": "hi"}) == "HI"  # one-argument tools: either form
    with pytest.raises(ValueError, match="refusing bad text"):
        r_shout.invoke("bad")
    with pytest.raises(NotRecordedError, match=r"\{'a': 2, 'b': 2\}"):
        r_add.invoke({"a": 2, "b": 2})
    with pytest.raises(NotRecordedError, match="recorded tool names: 'add', 'shout'"):
        fx.tool("multiply")


def test_async_stand_ins(store: Store) -> None:
    async def go() -> None:
        live = rag(Shelf(docs=DOCS), live_model())
        async with runlog_arecord(store) as rec:
            first = [c async for c in live.astream("What do cats")]
        fx = replay_fixtures(store, rec.root_ids)
        offline = rag(fx.retriever(), fx.chat_model())
        assert [c async for c in offline.astream("What do cats")] == first
    from runlog_langchain import arecord as runlog_arecord
    asyncio.run(go())


class FakeClock:
    """Stands in for ``time`` and ``asyncio.sleep`` in the fixtures module: sleeping
    advances a virtual clock, so realtime replay is checked without timing anything."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds


def test_realtime_replays_recorded_gaps(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with record(store) as rec:
        list(ScriptedChat(chunks=["a", "b", "c"]).stream("hi"))
    events = list(store.events(rec.root_ids[0]))
    start = events[0].time_us
    offsets = [e.time_us - start for e in events if e.channel == "token"]
    assert offsets == sorted(offsets)
    assert offsets[-1] > 0
    clock = FakeClock()
    monkeypatch.setattr(fixtures_module, "time", clock)
    monkeypatch.setattr(fixtures_module.asyncio, "sleep", clock.asleep)
    for realtime, expect in ((True, offsets), (False, [0] * len(offsets))):
        model = replay_model(store, rec.root_ids[0], realtime=realtime)
        t0 = clock.now
        seen = [round((clock.now - t0) * 1_000_000) for _ in model.stream("hi")]
        assert seen == expect

        async def astream(m: Any = model) -> list[int]:
            t0 = clock.now
            return [round((clock.now - t0) * 1_000_000) async for _ in m.astream("hi")]
        model = replay_model(store, rec.root_ids[0], realtime=realtime)
        assert asyncio.run(astream(model)) == expect


@settings(max_examples=25, deadline=None)
@given(chunks=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12),
       question=st.text(max_size=20))
def test_property_replay_reproduces_any_chunking(chunks: list[str], question: str) -> None:
    """Invariant: whatever chunks a model streamed for an input, its stand-in streams the
    same chunk contents (same boundaries, same order) for that input."""
    with runlog.open(":memory:") as s:
        with record(s) as rec:
            live = [c.content for c in ScriptedChat(chunks=chunks).stream(question)]
        model = replay_model(s, rec.root_ids[0])
        assert [c.content for c in model.stream(question)] == live
        assert model.invoke(question).content == "".join(chunks)


def test_docs_example_is_the_tested_file() -> None:
    """docs/langchain.md quotes tests/test_docs_example.py verbatim."""
    root = Path(__file__).resolve().parents[3]
    doc = (root / "docs" / "langchain.md").read_text()
    marker = "<!-- example: adapters/langchain/tests/test_docs_example.py -->\n```python\n"
    assert marker in doc
    quoted = doc.split(marker, 1)[1].split("\n```\n", 1)[0] + "\n"
    assert quoted == (Path(__file__).parent / "test_docs_example.py").read_text()


def test_tool_calling_loop_replays_offline(store: Store) -> None:
    """A model -> tool -> model loop: the second model call's input holds the tool result,
    so the whole loop replays only if every stand-in answers exactly as recorded."""
    def run_agent(model: Runnable[Any, Any], tools: list[BaseTool]) -> str:
        by_name = {t.name: t for t in tools}
        messages: list[Any] = [("human", "what is 3 + 4?")]
        while True:
            ai = model.invoke(messages)
            messages.append(ai)
            if not ai.tool_calls:
                return str(ai.content)
            messages.extend(by_name[c["name"]].invoke(c) for c in ai.tool_calls)

    live_model = FakeMessagesListChatModel(responses=[
        AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 3, "b": 4},
                                           "id": "call_1"}]),
        AIMessage(content="3 + 4 = 7")])
    with record(store) as rec:
        answer = run_agent(live_model, [add])
    assert answer == "3 + 4 = 7"
    fx = replay_fixtures(store, rec.root_ids)
    assert len(fx.calls) == 3  # model, tool, model
    tools = fx.tools()
    assert run_agent(fx.chat_model().bind_tools(tools), tools) == answer


_text = st.text(max_size=12)
_message = st.one_of(
    st.builds(lambda c: ("human", c), _text),
    st.builds(lambda c: ("system", c), _text),
    st.builds(lambda c: ("ai", c), _text),
)


@settings(max_examples=50, deadline=None)
@given(messages=st.lists(_message, min_size=1, max_size=5))
def test_property_input_key_ignores_the_input_form(messages: list[tuple[str, str]]) -> None:
    """Invariant: the forms LangChain converts to the same messages share one key, and
    the recorded child-run shape ``{"messages": [[...]]}`` has that key too."""
    as_messages = convert_to_messages(messages)
    forms: list[Any] = [messages, as_messages, ChatPromptValue(messages=as_messages),
                        {"messages": [as_messages]},
                        # ids and provider metadata do not take part
                        [m.model_copy(update={"id": f"id-{i}", "response_metadata": {"x": 1}})
                         for i, m in enumerate(as_messages)]]
    keys = {fixtures_module.input_key("chat_model", f) for f in forms}
    assert len(keys) == 1
    if len(messages) == 1 and messages[0][0] == "human":
        assert fixtures_module.input_key("chat_model", messages[0][1]) in keys
    changed = [*messages[:-1], (messages[-1][0], messages[-1][1] + "!")]
    assert fixtures_module.input_key("chat_model", changed) not in keys
