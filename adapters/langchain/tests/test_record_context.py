"""``record(store)``: every Runnable invoked in the block is recorded, nothing else changes.

Each test runs the same work twice, without and with recording, and checks that the
application saw exactly the same thing (outputs, streamed chunks in order, exceptions),
then that the store holds the runs LangChain reported, with the right tree.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel
from lc_diff_helpers import frozen_clock
from runlog_langchain import (
    Recorder,
    arecord,
    astream_events,
    astream_log,
    current_recorder,
    record,
)

import runlog
from runlog import Event, Store
from runlog.store.memory import MemoryBackend

ANSWER = "cats purr when they are content"


def chain() -> Runnable[Any, str]:
    """prompt | chat model (streams word by word) | parser, fresh for every call."""
    model = GenericFakeChatModel(messages=iter([AIMessage(ANSWER)] * 20))
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    return prompt | model | StrOutputParser()


def boom(x: Any) -> Any:
    raise ValueError(f"no answer for {x!r}")


def tree(store: Store, root: str) -> list[Event]:
    return list(store.events(root, descendants=True))


def assert_well_formed(store: Store, root: str) -> None:
    """Every run started and ended once, children point at recorded parents."""
    events = tree(store, root)
    started = {e.run_id for e in events if e.kind == "start"}
    ended = [e.run_id for e in events if e.kind == "end"]
    assert sorted(ended) == sorted(started)
    for e in events:
        if e.kind == "start" and e.run_id != root:
            assert e.parent_id in started
    assert store.verify().ok


@pytest.fixture
def store() -> Any:
    s = runlog.open(":memory:")
    yield s
    s.close()


def test_nothing_recorded_outside_the_block(store: Store) -> None:
    with record(store) as rec:
        assert current_recorder() is rec
        chain().invoke({"question": "q"})
    assert current_recorder() is None
    chain().invoke({"question": "q"})
    store.flush()
    assert len(rec.root_ids) == 1
    assert len(store.runs(roots_only=True)) == 1


def test_invoke_stream_same_output_and_recorded(store: Store) -> None:
    plain_invoke = chain().invoke({"question": "q"})
    plain_stream = list(chain().stream({"question": "q"}))
    with record(store) as rec:
        got_invoke = chain().invoke({"question": "q"})
        got_stream = list(chain().stream({"question": "q"}))
    assert got_invoke == plain_invoke == ANSWER
    assert got_stream == plain_stream
    assert len(got_stream) > 5  # it did stream
    assert rec.failures == 0
    assert len(rec.root_ids) == 2
    for root in rec.root_ids:
        assert_well_formed(store, root)
        events = tree(store, root)
        tokens = "".join(e.data["token"] for e in events if e.channel == "token")
        assert tokens == ANSWER
        assert {e.run_type for e in events} == {"chain", "prompt", "chat_model", "parser"}
    # stream taps the chain's output: the root's recorded chunks are what the app saw
    root_chunks = [e.data for e in tree(store, rec.root_ids[1])
                   if e.run_id == rec.root_ids[1] and e.channel == "output"]
    assert root_chunks == got_stream


def test_exceptions_unchanged_and_recorded(store: Store) -> None:
    failing = RunnableLambda(lambda x: x) | RunnableLambda(boom)
    with pytest.raises(ValueError) as plain:
        failing.invoke(3)
    with record(store) as rec, pytest.raises(ValueError) as recorded:
        failing.invoke(3)
    assert type(recorded.value) is type(plain.value)
    assert str(recorded.value) == str(plain.value)
    root = store.run_info(rec.root_ids[0])
    assert root.status == "error"
    ends = [e for e in tree(store, root.run_id) if e.kind == "end" and e.error is not None]
    assert {e.name for e in ends} == {"boom", "RunnableSequence"}


def test_batch_threads_parallel_and_nested(store: Store) -> None:
    inner = chain()

    def outer_step(x: dict[str, str]) -> str:
        # a nested call with no config passed: LangChain hands the lambda's config on
        return inner.invoke(x) + "!"

    par: Runnable[Any, Any] = RunnableParallel(
        upper=RunnableLambda(lambda x: x["question"].upper()),
        answer=RunnableLambda(outer_step),
    )
    inputs = [{"question": f"q{i}"} for i in range(4)]
    plain = par.batch(inputs, config={"max_concurrency": 3})
    with record(store) as rec:
        got = par.batch(inputs, config={"max_concurrency": 3})
    assert got == plain
    assert rec.failures == 0
    assert len(rec.root_ids) == 4  # one trace per batch item
    for root in rec.root_ids:
        assert_well_formed(store, root)
        events = tree(store, root)
        starts = {e.run_id: e for e in events if e.kind == "start"}
        model = next(e for e in starts.values() if e.run_type == "chat_model")
        # chat model -> RunnableSequence (inner) -> outer_step -> RunnableParallel
        chain_of_names = []
        cur: str | None = model.run_id
        while cur is not None:
            chain_of_names.append(starts[cur].name)
            cur = starts[cur].parent_id
        assert chain_of_names == ["GenericFakeChatModel", "RunnableSequence", "outer_step",
                                  "RunnableParallel<upper,answer>"]


def test_same_recorder_in_config_and_context_records_once(store: Store) -> None:
    with record(store) as rec:
        chain().invoke({"question": "q"}, config={"callbacks": [rec]})
    assert len(rec.root_ids) == 1
    starts = [e for e in tree(store, rec.root_ids[0]) if e.kind == "start"]
    assert len(starts) == len({e.run_id for e in starts}) == 4


def test_a_call_with_its_own_recorder_is_not_recorded_twice(store: Store) -> None:
    own = Recorder(store)
    with record(store) as rec:
        chain().invoke({"question": "q"}, config={"callbacks": [own]})
        chain().invoke({"question": "q"})
    assert len(own.root_ids) == 1
    assert len(rec.root_ids) == 1
    assert own.root_ids != rec.root_ids
    for root in (*own.root_ids, *rec.root_ids):
        starts = [e for e in tree(store, root) if e.kind == "start"]
        assert len(starts) == len({e.run_id for e in starts}) == 4


def test_nested_blocks_innermost_gets_new_roots(store: Store) -> None:
    with record(store) as outer:
        chain().invoke({"question": "a"})
        with record(store) as inner:
            chain().invoke({"question": "b"})
        chain().invoke({"question": "c"})
    assert len(outer.root_ids) == 2
    assert len(inner.root_ids) == 1
    assert outer.failures == inner.failures == 0


@pytest.mark.anyio
async def test_async_invoke_astream_abatch_and_tasks(store: Store) -> None:
    plain = await chain().ainvoke({"question": "q"})
    plain_stream = [c async for c in chain().astream({"question": "q"})]
    async with arecord(store) as rec:
        got = await chain().ainvoke({"question": "q"})
        got_stream = [c async for c in chain().astream({"question": "q"})]
        batched = await chain().abatch([{"question": "x"}, {"question": "y"}],
                                       config={"max_concurrency": 2})
        gathered = await asyncio.gather(*(chain().ainvoke({"question": str(i)})
                                          for i in range(3)))
    assert got == plain
    assert got_stream == plain_stream
    assert batched == [ANSWER, ANSWER]
    assert gathered == [ANSWER] * 3
    assert rec.failures == 0
    assert len(rec.root_ids) == 7
    for root in rec.root_ids:
        assert_well_formed(store, root)
        tokens = "".join(e.data["token"] for e in tree(store, root) if e.channel == "token")
        assert tokens == ANSWER


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["log", "events"])
async def test_app_streaming_log_or_events_inside_the_block(store: Store, api: str) -> None:
    """The app's own astream_log/astream_events inside record(): what it gets is
    unchanged, and the recorded run replays as exactly that (same ids, same times)."""
    warnings.simplefilter("ignore")  # astream_log's deprecation warning
    with frozen_clock() as clock, record(store, clock=clock) as rec:
        if api == "log":
            live = [copy.deepcopy(p) async for p in chain().astream_log({"question": "q"})]
        else:
            live = [e async for e in chain().astream_events({"question": "q"},
                                                           version="v2")]
    root = rec.root_ids[0]
    assert rec.failures == 0
    assert any(e.channel == "output" and e.run_id == root for e in tree(store, root))
    if api == "log":
        replayed = [p async for p in astream_log(store, root)]
    else:
        replayed = [e async for e in astream_events(store, root)]
    assert replayed == live


@pytest.mark.anyio
async def test_sync_record_block_in_async_code(store: Store) -> None:
    with record(store) as rec:
        await chain().ainvoke({"question": "q"})
    assert len(rec.root_ids) == 1
    assert_well_formed(store, rec.root_ids[0])


@settings(max_examples=20, deadline=None)
@given(xs=st.lists(st.integers(-1000, 1000), max_size=8),
       concurrency=st.integers(1, 4), fail_on=st.integers(-1000, 1000))
def test_property_batch_outputs_and_runs(xs: list[int], concurrency: int,
                                         fail_on: int) -> None:
    """Invariant: batch(return_exceptions=True) sees the same results with recording,
    and every input becomes one recorded root whose end holds that result or error."""
    def step(x: int) -> int:
        if x == fail_on:
            raise ArithmeticError(f"refusing {x}")
        return x * 2

    r: Runnable[int, int] = RunnableLambda(step) | RunnableLambda(lambda y: y + 1)
    cfg: Any = {"max_concurrency": concurrency}

    def norm(results: list[Any]) -> list[Any]:
        return [(type(v).__name__, str(v)) if isinstance(v, Exception) else v
                for v in results]

    plain = r.batch(xs, config=cfg, return_exceptions=True)
    with runlog.open(":memory:") as s:
        with record(s) as rec:
            got = r.batch(xs, config=cfg, return_exceptions=True)
        assert norm(got) == norm(plain)
        assert len(rec.root_ids) == len(xs)
        recorded = []
        for root in rec.root_ids:
            events = tree(s, root)
            start, end = events[0], events[-1]
            assert start.run_id == end.run_id == root
            recorded.append((start.data, (("ArithmeticError", f"refusing {start.data}")
                                          if end.error is not None else end.data)))
        assert sorted(recorded) == sorted(zip(xs, norm(plain), strict=True))


# ---------------------------------------------------------------- failing stores


class FlakyBackend(MemoryBackend):
    """A memory backend whose first ``fail`` appends raise (a store outage)."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail

    def append(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail > 0:
            self.fail -= 1
            raise OSError("disk I/O error (simulated)")
        return super().append(*args, **kwargs)


def run_app(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as e:
        return None, e


@pytest.mark.parametrize("app", ["ok", "error"])
def test_failing_store_never_reaches_the_app(app: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    def work() -> Any:
        c = chain()
        if app == "error":
            c = c | RunnableLambda(boom)
        return list(c.stream({"question": "q"}))

    plain = run_app(work)
    store = Store(FlakyBackend(fail=3), end_timeout=5.0)
    try:
        with caplog.at_level(logging.WARNING), record(store) as rec:
            got = run_app(work)
        assert got[0] == plain[0]
        assert repr(got[1]) == repr(plain[1])
        # the outage was seen: counted by the store's writer (which retries) and logged
        assert store.writer.failures == 3
        assert any("disk I/O error" in r.getMessage() for r in caplog.records)
        # ... and once the store works again nothing was lost
        store.flush()
        assert len(rec.root_ids) == 1
        assert_well_formed(store, rec.root_ids[0])
        tokens = "".join(e.data["token"] for e in tree(store, rec.root_ids[0])
                         if e.channel == "token")
        assert tokens == ANSWER
    finally:
        store.close()


def test_closed_store_records_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    store = runlog.open(":memory:")
    with store.run("before") as r:
        r.end("used once, so the writer thread has run")
    store.close()
    plain = chain().invoke({"question": "q"})
    with caplog.at_level(logging.WARNING), record(store) as rec:
        got = chain().invoke({"question": "q"})
    assert got == plain
    assert rec.failures == 1
    assert "is closed" in str(rec.last_error)
    assert any("is closed" in r.getMessage() for r in caplog.records)


def test_recorder_on_never_used_closed_store_counts_failures() -> None:
    store = runlog.open(":memory:")
    store.close()
    rec = Recorder(store)
    plain = chain().invoke({"question": "q"})
    got = chain().invoke({"question": "q"}, config={"callbacks": [rec]})
    assert got == plain
    assert rec.failures >= 1
