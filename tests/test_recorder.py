"""Recording: scopes, the current run across threads and tasks, errors, the decorator."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest

import runlog


def tree(store: runlog.Store) -> dict[str, str | None]:
    """name -> parent name, for every run in the store."""
    runs = store.runs()
    names = {r.run_id: r.name for r in runs}
    return {r.name: names.get(r.parent_id) if r.parent_id else None for r in runs}


def test_exception_ends_the_run_with_error_and_propagates_unchanged(
        store: runlog.Store) -> None:
    err = KeyError("missing")

    def failing_pipeline() -> None:
        with store.run("root") as root, root.child("step") as step:
            step.stream("partial")
            raise err

    with pytest.raises(KeyError) as caught:
        failing_pipeline()
    assert caught.value is err
    ends = {e.name: e for e in store.events() if e.kind == "end"}
    step_error = ends["step"].error
    assert step_error is not None
    assert step_error.type == "KeyError"
    assert step_error.message == "'missing'"
    assert "raise err" in step_error.traceback
    assert ends["root"].error is not None  # the same exception escaped the root too
    assert {r.name: r.status for r in store.runs()} == {"root": "error", "step": "error"}


def test_block_without_end_ends_ok_with_no_outputs(store: runlog.Store) -> None:
    with store.run("root"):
        pass
    (end,) = [e for e in store.events() if e.kind == "end"]
    assert end.data is None
    assert end.error is None


def test_partial_outputs_with_an_error(store: runlog.Store) -> None:
    run = store.start_run("llm", "llm")
    run.token("ab")
    run.end({"generations": [[{"text": "ab"}]]}, error=RuntimeError("cut off"))
    end = list(store.events())[-1]
    assert end.data == {"generations": [[{"text": "ab"}]]}
    assert end.error == runlog.ErrorInfo("RuntimeError", "cut off", "RuntimeError: cut off\n")


def test_nested_store_run_becomes_a_child_of_the_current_run(store: runlog.Store) -> None:
    def inner() -> None:
        with store.run("inner"):
            pass

    with store.run("outer"):
        inner()
    assert tree(store) == {"outer": None, "inner": "outer"}


def test_thread_with_copied_context_gets_the_parent(store: runlog.Store) -> None:
    def work() -> None:
        with store.run("in-thread"):
            pass

    with store.run("root"):
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(work,))
        t.start()
        t.join()
        plain = threading.Thread(target=work)  # no context copied: a new root
        plain.start()
        plain.join()
    names = [(r.name, r.parent_id is None) for r in store.runs(newest_first=False)]
    assert names == [("root", True), ("in-thread", False), ("in-thread", True)]


@pytest.mark.anyio
async def test_async_tasks_get_their_parent(store: runlog.Store, anyio_backend: str) -> None:
    async def child(name: str) -> None:
        async with store.arun(name, "tool") as run:
            await anyio.lowlevel.checkpoint()
            await run.astream(name)

    async with store.arun("root") as root, anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(child, f"task-{i}")
    parents = tree(store)
    assert parents == {"root": None, "task-0": "root", "task-1": "root", "task-2": "root"}
    assert root.ended
    # the root's exit awaited the commit: everything is readable now
    assert len(list(store.events())) == 2 + 3 * 3


@pytest.mark.anyio
async def test_sync_end_inside_event_loop_does_not_block(store: runlog.Store,
                                                         anyio_backend: str) -> None:
    async with store.arun("root") as root:
        root.end("done")  # sync call in a loop thread: the async exit waits instead
    assert [e.kind for e in store.events()] == ["start", "end"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # asyncio.to_thread is asyncio's own
async def test_asyncio_to_thread_carries_the_context(store: runlog.Store,
                                                     anyio_backend: str) -> None:
    def blocking() -> None:
        with store.run("blocking-step"):
            pass

    async with store.arun("root"):
        await asyncio.to_thread(blocking)
    assert tree(store) == {"root": None, "blocking-step": "root"}


def test_trace_decorator_records_inputs_outputs_and_nesting(store: runlog.Store) -> None:
    @runlog.trace(run_type="tool")
    def add(a: int, b: int = 2) -> int:
        return a + b

    @store.trace("pipeline")
    def pipeline(x: int) -> int:
        return add(x) * 10

    assert pipeline(1) == 30
    assert add(5) == 7  # outside any run and no store given: plain call, not recorded
    assert tree(store) == {"pipeline": None, "add": "pipeline"}
    add_start, add_end = [e for e in store.events() if e.name == "add"]
    assert add_start.data == {"a": 1}
    assert add_end.data == 3


def test_trace_decorator_streams_generators(store: runlog.Store) -> None:
    @store.trace("gen")
    def gen() -> Iterator[str]:
        yield "a"
        yield "b"

    assert list(gen()) == ["a", "b"]
    assert [e.data for e in store.events() if e.kind == "stream"] == ["a", "b"]


@pytest.mark.anyio
async def test_trace_decorator_async_and_async_generators(store: runlog.Store,
                                                          anyio_backend: str) -> None:
    @store.trace("agen")
    async def agen() -> AsyncIterator[int]:
        yield 1
        yield 2

    @store.trace("coro", "chain")
    async def coro() -> list[int]:
        return [x async for x in agen()]

    assert await coro() == [1, 2]
    assert tree(store) == {"coro": None, "agen": "coro"}
    coro_end = next(e for e in store.events() if e.name == "coro" and e.kind == "end")
    assert coro_end.data == [1, 2]


def test_decorator_never_fails_the_call_on_unencodable_values(store: runlog.Store) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    @store.trace()
    def f(x: object) -> object:
        return x

    thing = Opaque()
    assert f(thing) is thing
    start = next(store.events())
    marker = start.data["x"]
    assert isinstance(marker, runlog.Opaque)
    assert marker.payload[1] == "<Opaque thing>"


def test_explicit_api_refuses_unencodable_values(store: runlog.Store) -> None:
    with store.run("root") as run, pytest.raises(runlog.EncodingError):
        run.stream(object())
    with pytest.raises(runlog.EncodingError, match="run name"):
        store.start_run("")
    with pytest.raises(runlog.EncodingError, match="tags"):
        store.start_run("x", tags=[1])  # type: ignore[list-item]


def test_tokens_and_custom_events_have_channels(store: runlog.Store) -> None:
    with store.run("m", "chat_model") as run:
        run.token("hi", chunk={"content": "hi"})
        run.event("progress", {"pct": 50})
        run.stream("plain")
    streams = [e for e in store.events() if e.kind == "stream"]
    assert [(e.channel, e.data) for e in streams] == [
        ("token", {"token": "hi", "chunk": {"content": "hi"}}),
        ("custom", {"name": "progress", "data": {"pct": 50}}),
        ("output", "plain"),
    ]


def test_explicit_ids_times_and_final_inputs(store: runlog.Store) -> None:
    import datetime as dt

    when = dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    run = store.start_run("r", run_id="01890000-0000-7000-8000-000000000001", time=when,
                          inputs={"input": ""})
    run.end("out", inputs={"input": "streamed in"}, time=when)
    start, end = list(store.events())
    assert start.run_id == "01890000-0000-7000-8000-000000000001"
    assert start.time == when
    assert end.inputs == {"input": "streamed in"}
    assert end.has_inputs
    assert not start.has_inputs


def test_recording_from_many_threads_keeps_every_event(store: runlog.Store) -> None:
    with store.run("root") as root:
        def work(i: int) -> None:
            with root.child(f"w{i}") as c:
                for j in range(200):
                    c.stream(j)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    per_run: dict[str, list[int]] = {}
    for e in store.events():
        if e.kind == "stream":
            per_run.setdefault(e.name, []).append(e.data)
    assert per_run == {f"w{i}": list(range(200)) for i in range(4)}
    assert store.verify().ok


def test_a_store_closed_inside_a_block_never_masks_the_apps_exception(
        store: runlog.Store) -> None:
    def app() -> None:
        with store.run("root"):
            store.close()
            raise ValueError("the app's own error")

    with pytest.raises(ValueError, match="the app's own error"):
        app()


def test_the_chain_digest_is_blake2b_128_of_the_previous_digest_and_the_bytes() -> None:
    """What ``runlog verify`` and other tools recompute (docs/event-model.md): pinned so a
    faster way of computing it cannot change it."""
    import hashlib

    from runlog.events import _GENESIS, chain_digest

    raw = b'{"kind":"stream","data":1}'
    first = hashlib.blake2b(_GENESIS, digest_size=16)
    first.update(raw)
    assert chain_digest(None, raw) == first.digest()
    second = hashlib.blake2b(first.digest(), digest_size=16)
    second.update(raw)
    assert chain_digest(first.digest(), raw) == second.digest()
