"""A custom ``Runnable`` root whose ``astream`` is its own generator: its chunks are
recorded (issue 16, item 1).

Such a runnable reports its chunks to no callback; LangChain's ``astream_events`` and
``astream_log`` read them from ``astream`` themselves (LangChain's own
``test_astream_events_from_custom_runnable``). The replay must give the three
``on_chain_stream`` events / ``streamed_output`` patches LangChain gave, compared with
``==`` item by item, whether the recorder is in the config or comes from ``record()``,
and a chain built on LangChain's stream helpers must still store each chunk once.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import runlog_langchain
from langchain_core.callbacks.manager import AsyncCallbackManager
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnableLambda,
    ensure_config,
)
from lc_diff_helpers import assert_item_equal, assert_same_errors, frozen_clock, replay, run_live

import runlog

pytestmark = pytest.mark.anyio


class StreamingRunnable(Runnable[Any, Any]):
    """LangChain's test runnable: ``astream`` starts its own run and yields the items."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self.iterable = iterable

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        raise ValueError("Server side error")

    async def astream(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        config = ensure_config(config)
        manager = AsyncCallbackManager.configure(
            config.get("callbacks"), inheritable_tags=config.get("tags"),
            inheritable_metadata=config.get("metadata"))
        run_manager = await manager.on_chain_start(
            None, input, name=config.get("run_name", self.get_name()),
            run_id=config.get("run_id"))
        final: Any = None
        try:
            for element in self.iterable:
                if isinstance(element, BaseException):
                    raise element
                yield element
                final = element if final is None else final + element
        except BaseException as e:
            await run_manager.on_chain_error(e)
            raise
        else:
            await run_manager.on_chain_end(final)


def custom() -> StreamingRunnable:
    return StreamingRunnable(["1", "2", "3"])


def failing() -> StreamingRunnable:
    return StreamingRunnable(["1", "2", ValueError("midway")])


async def _gen(xs: AsyncIterator[Any]) -> AsyncIterator[str]:
    async for x in xs:
        for c in str(x):
            yield c


def helper_chain() -> Runnable[Any, Any]:
    """Streams through LangChain's helpers: the recorder's own tap sees each chunk."""
    return RunnableLambda(lambda x: x) | RunnableGenerator(_gen)


ROOTS = {"custom": custom, "failing": failing, "helper_chain": helper_chain}


KWARGS: dict[str, dict[str, Any]] = {
    "plain": {},
    # the root filtered out of what LangChain streams: still recorded, still filtered
    "excluded": {"exclude_names": ["StreamingRunnable", "RunnableSequence"]},
}


@pytest.mark.parametrize("kw", list(KWARGS))
@pytest.mark.parametrize("api", ["events", "log"])
@pytest.mark.parametrize("root", list(ROOTS))
async def test_custom_root_replays_as_live(root: str, api: str, kw: str) -> None:
    store = runlog.open(":memory:")
    try:
        with frozen_clock() as clock:
            live, live_err, rid = await run_live(ROOTS[root](), "123", None, api, KWARGS[kw],
                                                 store, clock)
        got, err = await replay(store, rid, api, KWARGS[kw], live=live)
        assert len(got) == len(live)
        assert_same_errors(err, live_err)
        chunks = [e.data for e in store.replay(rid) if e.kind == "stream" and e.run_id == rid]
        assert chunks == (["1", "2"] if root == "failing" else ["1", "2", "3"])
        if api == "events" and kw == "plain":
            assert [e["data"]["chunk"] for e in live if e["event"] == "on_chain_stream"
                    and e["run_id"] == rid] == chunks
    finally:
        store.close()


@pytest.mark.parametrize(("api", "diff"), [("events", True), ("log", True), ("log", False)])
async def test_custom_root_inside_record(api: str, diff: bool) -> None:
    """The recorder attached by ``record()`` comes after LangChain's own handler."""
    store = runlog.open(":memory:")
    try:
        live: list[Any] = []
        with frozen_clock(), warnings.catch_warnings(), runlog_langchain.record(store) as rec:
            warnings.simplefilter("ignore")
            if api == "events":
                live = [e async for e in custom().astream_events("hello", version="v2")]
            else:
                live = [copy.deepcopy(p) async for p in custom().astream_log(
                    "hello", diff=diff, with_streamed_output_list=diff)]
        assert rec.failures == 0, rec.last_error
        [rid] = rec.root_ids
        kwargs = {} if api == "events" else {"diff": diff, "with_streamed_output_list": diff}
        got, err = await replay(store, rid, api, kwargs, live=live)
        assert err is None
        assert len(got) == len(live)
        assert [e.data for e in store.replay(rid) if e.kind == "stream" and e.run_id == rid
                ] == ["1", "2", "3"]
        for i, (g, w) in enumerate(zip(got, live, strict=True)):
            assert_item_equal(g, w, i)
    finally:
        store.close()


def _gen_sync(xs: Any) -> Any:
    for x in xs:
        yield from str(x)


@pytest.mark.parametrize("call", ["stream", "astream"])
async def test_stream_inside_record_stores_each_chunk_once(call: str) -> None:
    """``stream``/``astream`` of a root built on LangChain's helpers: every chunk, once."""
    store = runlog.open(":memory:")
    try:
        chain = RunnableLambda(lambda x: x) | RunnableGenerator(_gen_sync, _gen)
        with runlog_langchain.record(store) as rec:
            if call == "stream":
                out = list(chain.stream("123"))
            else:
                out = [c async for c in chain.astream("123")]
        assert out == ["1", "2", "3"]
        assert rec.failures == 0, rec.last_error
        [rid] = rec.root_ids
        assert [e.data for e in store.replay(rid) if e.kind == "stream" and e.run_id == rid
                ] == out
    finally:
        store.close()
