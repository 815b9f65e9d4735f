"""``diff=False`` items own their state, as LangChain's do (issue 16, item 5).

LangChain users collect ``astream_log(diff=False)`` into a list: every element must be
the ``RunLog`` as of that item (``==`` LangChain's), with ``ops`` a real list, and no
element may change when another is read or mutated. The core view's aliased fast path
stays available as ``aliased=True``.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import runlog_langchain
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tracers.log_stream import RunLog as LCRunLog
from langchain_core.tracers.log_stream import RunLogPatch as LCRunLogPatch
from lc_diff_helpers import frozen_clock, run_live

import runlog
from runlog.reducers import OpsPrefix, RunLog, RunLogPatch, log_view

pytestmark = pytest.mark.anyio


async def gen(x: Any) -> AsyncIterator[str]:
    for c in str(x):
        await asyncio.sleep(0)
        yield c


def text_chain() -> Runnable[Any, Any]:
    return RunnableLambda(gen).with_config(run_name="gen") | StrOutputParser()


def chat_chain() -> Runnable[Any, Any]:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="hello there you")]))
    return ChatPromptTemplate.from_messages([("human", "{q}")]) | model


async def dict_chain_gen(x: Any) -> AsyncIterator[dict[str, Any]]:
    for i in range(3):
        yield {"k": [i], "s": str(i)}


BUILDERS: dict[str, tuple[Callable[[], Runnable[Any, Any]], Any]] = {
    "text": (text_chain, "abcd"),
    "chat": (chat_chain, {"q": "hi"}),
    "dicts": (lambda: RunnableLambda(dict_chain_gen), 0),
}


async def _recorded(name: str) -> tuple[list[Any], runlog.Store, str]:
    build, value = BUILDERS[name]
    store = runlog.open(":memory:")
    with frozen_clock() as clock:
        live, err, root = await run_live(build(), value, None, "log", {"diff": False},
                                         store, clock)
    assert err is None
    return live, store, root


@pytest.mark.parametrize("name", sorted(BUILDERS))
async def test_collected_items_equal_langchain_items(name: str) -> None:
    live, store, root = await _recorded(name)
    try:
        items = [x async for x in runlog_langchain.astream_log(store, root, diff=False)]
        assert len(items) == len(live) > 2
        for i, (got, want) in enumerate(zip(items, live, strict=True)):
            assert isinstance(got, LCRunLog)
            assert got == want, f"item {i}"
            assert type(got.ops) is list
            assert got.ops == want.ops
        # read in another order: still each item's own state
        for i in random.Random(0).sample(range(len(items)), len(items)):
            assert items[i].state == live[i].state
        sync_items = list(runlog_langchain.stream_log(store, root, diff=False))
        assert sync_items == live
    finally:
        store.close()


async def test_items_are_independent_and_behave_like_langchains() -> None:
    live, store, root = await _recorded("text")
    try:
        items = [x async for x in runlog_langchain.astream_log(store, root, diff=False)]
        first, second = items[1], items[2]
        first.ops.append({"op": "add", "path": "/streamed_output/-", "value": "X"})
        first.state["streamed_output"].append("X")
        first.state["final_output"] = "mutated"
        assert second == live[2]
        assert items[-1] == live[-1]
        assert first.ops[-1]["value"] == "X"  # the list is kept, not rebuilt per read
        assert first.state["final_output"] == "mutated"
        # RunLog + RunLogPatch works and equals LangChain's result
        patch = LCRunLogPatch({"op": "add", "path": "/streamed_output/-", "value": "z"})
        assert second + patch == live[2] + patch
        # copy, deepcopy and pickle give LangChain's plain RunLog of the same values
        for twin in (copy.copy(second), copy.deepcopy(second),
                     pickle.loads(pickle.dumps(second))):
            assert type(twin) is LCRunLog
            assert twin == live[2]
    finally:
        store.close()


def _record_chunks(chunks: list[Any]) -> tuple[runlog.Store, str]:
    store = runlog.open(":memory:")
    run = store.start_run("gen", inputs={})
    child = run.start_child("sub", run_type="tool", inputs={"a": 1})
    child.stream("c")
    for c in chunks:
        run.stream(c)
    child.end("sub done")
    run.end("done")
    store.flush()
    return store, run.id


def _running_sums(store: runlog.Store, rid: str, with_list: bool) -> list[RunLog]:
    """LangChain's own fold: RunLog + RunLogPatch, a deep copy per item."""
    out: list[RunLog] = []
    acc: RunLog | None = None
    for p in log_view(store.events(rid, descendants=True),
                      with_streamed_output_list=with_list):
        patch = RunLogPatch(*copy.deepcopy(p.ops))
        acc = RunLog(*patch.ops, state=copy.deepcopy(patch.ops[0]["value"])) \
            if acc is None else acc + patch
        out.append(acc)
    return out


CHUNK = st.one_of(st.text(max_size=3), st.text(max_size=3), st.integers(-3, 3),
                  st.lists(st.integers(0, 3), max_size=2),
                  st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=2))


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(CHUNK, max_size=12), order=st.randoms(use_true_random=False),
       keep_ops=st.booleans(), with_list=st.booleans())
def test_core_items_equal_the_running_sum_in_any_read_order(
        chunks: list[Any], order: random.Random, keep_ops: bool, with_list: bool) -> None:
    """Strings (grown lazily), empty strings, and non-string chunks that leave and
    re-enter string mode: every kept item equals LangChain-style ``+`` at its point."""
    store, rid = _record_chunks(chunks)
    try:
        want = _running_sums(store, rid, with_list)
        items = list(log_view(store.events(rid, descendants=True), diff=False,
                              keep_ops=keep_ops, with_streamed_output_list=with_list))
        assert len(items) == len(want)
        for i in order.sample(range(len(items)), len(items)):
            assert items[i].state == want[i].state, i
            assert type(items[i].ops) is list
            assert items[i].ops == (want[i].ops if keep_ops else want[i].ops_added)
            assert items[i].ops_added == want[i].ops_added
    finally:
        store.close()


def test_core_aliased_option_keeps_the_shared_fast_path() -> None:
    store, rid = _record_chunks(["a", "b", "c"])
    try:
        items = list(log_view(store.events(rid, descendants=True), diff=False,
                              aliased=True))
        assert isinstance(items[0].ops, OpsPrefix)
        assert items[0].state is items[-1].state  # one shared state, as documented
        own = list(store.replay(rid, view="log", diff=False))
        assert own[1].state is not own[-1].state
        assert own[1].state["final_output"] is None
        assert own[-1].state["final_output"] == "abc"
    finally:
        store.close()


async def test_a_message_in_one_items_state_is_that_items_own() -> None:
    """LangChain deep-copies every state: mutating a message chunk one item holds
    leaves every other item (read before or after) as LangChain streamed it."""
    live, store, root = await _recorded("chat")
    try:
        items = [x async for x in runlog_langchain.astream_log(store, root, diff=False)]
        with_chunks = [i for i, it in enumerate(live) if it.state["streamed_output"]]
        assert len(with_chunks) >= 3
        a, b, c = with_chunks[0], with_chunks[1], with_chunks[-1]
        _ = items[b].state  # read before the mutation
        items[a].state["streamed_output"][0].content = "MUTATED"
        items[a].state["final_output"].content = "MUTATED"
        for i in (b, c):  # read before, and read only now (the last: the running state)
            assert items[i].state == live[i].state, i
        later = [i for i in range(a + 1, len(items)) if i not in (b, c)]
        assert all(items[i].state == live[i].state for i in later)
    finally:
        store.close()


def _mutate(value: Any) -> None:
    """Change every container in ``value`` in place (what a careless consumer does)."""
    if isinstance(value, dict):
        for v in list(value.values()):
            _mutate(v)
        value["mutated"] = True
    elif isinstance(value, list):
        for v in value:
            _mutate(v)
        value.append("mutated")


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(CHUNK, max_size=10), order=st.randoms(use_true_random=False),
       keep_ops=st.booleans())
def test_mutating_any_item_never_changes_another(
        chunks: list[Any], order: random.Random, keep_ops: bool) -> None:
    """Read the items in any order, mutating each one's state and ops as it is read:
    every item read later still equals the running sum at its point."""
    store, rid = _record_chunks(chunks)
    try:
        want = _running_sums(store, rid, True)
        items = list(log_view(store.events(rid, descendants=True), diff=False,
                              keep_ops=keep_ops))
        for i in order.sample(range(len(items)), len(items)):
            assert items[i].state == want[i].state, i
            assert items[i].ops == (want[i].ops if keep_ops else want[i].ops_added), i
            _mutate(items[i].state)
            items[i].ops.append({"op": "add", "path": "/mutated", "value": i})
    finally:
        store.close()


def test_every_list_in_a_read_state_is_allocated_exactly() -> None:
    """A kept state's lists carry no spare slots (the memory a consumer keeping every
    item holds is at most LangChain's, whose lists grew by appends)."""
    import sys

    store, rid = _record_chunks([chr(97 + i % 26) for i in range(300)])
    try:
        items = list(runlog_langchain.stream_log(store, rid, diff=False))
        for item in (items[150], items[-1]):  # a refolded state, and the newest
            out = item.state["streamed_output"]
            assert len(out) > 100
            assert sys.getsizeof(out) <= sys.getsizeof([*out]) + 3 * 8
    finally:
        store.close()
