"""Live tail in one process, over every backend: cursor, filters, runs, views, liveness.

Cross-process guarantees (several writer and tailer processes, kill -9, Ctrl-C, WAL
growth) are in tests/test_tail_processes.py.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

import runlog
from runlog.api import Store
from runlog.ids import new_run_id
from runlog.store.waiters import InotifyWaiter, VersionWaiter
from runlog.tail import TailNotice
from tests.conftest import BACKENDS, make_store

NAMES = ("alpha", "beta", "gamma")
TAGS = ("t0", "t1", "t2")


def record_tree(store: Store, run_id: str | None = None, tokens: int = 3,
                barrier: tuple[threading.Event, threading.Event] | None = None) -> str:
    """A root with two children (one streaming tokens, one failing) and a grandchild."""
    with store.run("root", inputs={"q": 1}, tags=["t0"], run_id=run_id) as root:
        with root.child("alpha", "chat_model", tags=["t1"]) as m:
            for i in range(tokens):
                m.token(f"tok{i} ")
            if barrier is not None:  # (reached, resume): pause mid-run
                store.flush()
                barrier[0].set()
                barrier[1].wait(10)
            m.end({"content": "done"})
        try:
            with root.child("beta", "tool", metadata={"k": 1}) as t:
                with t.child("gamma", "parser", tags=["t2"]) as g:
                    g.stream({"part": 1})
                raise ValueError("boom")
        except ValueError:
            pass
        root.end({"answer": 42})
    return root.id


def raws(items: list[Any]) -> list[bytes]:
    return [i.raw for i in items]


def in_thread(fn: Any) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_tail_follows_a_run_that_starts_after_it_opened(store: Store) -> None:
    """A tail of a run that does not exist yet waits for it, then yields its subtree
    exactly as replay does, and stops at the root's end with until_end."""
    rid = new_run_id()
    with store.tail(run_id=rid, until_end=True) as t:
        writer = in_thread(lambda: record_tree(store, run_id=rid))
        got = list(t)
    writer.join()
    assert raws(got) == raws(list(store.replay(rid)))
    assert got[-1].kind == "end"
    assert got[-1].run_id == rid


def test_global_tail_yields_what_any_writer_commits_in_seq_order(store: Store) -> None:
    record_tree(store)
    n = store.last_seq()
    with store.tail(after=0) as t:
        first = [next(t) for _ in range(3)]
        writer = in_thread(lambda: record_tree(store))
        rest = [next(t) for _ in range(2 * n - 3)]
    writer.join()
    assert [e.seq for e in first + rest] == list(range(1, 2 * n + 1))
    assert raws(first + rest) == raws(list(store.events()))


def test_idle_timeout_zero_stops_once_caught_up(store: Store) -> None:
    record_tree(store)
    with store.tail(idle_timeout=0) as t:
        assert raws(list(t)) == raws(list(store.events()))
        assert t.cursor == store.last_seq()


def test_a_subtree_tail_follows_children_started_while_it_runs(store: Store) -> None:
    """Following a child run includes the grandchildren that start later, and only them."""
    gate = threading.Event()
    ready: list[str] = []

    def record() -> None:
        with store.run("root") as root, root.child("beta") as b:
            ready.append(b.id)
            store.flush()
            gate.wait(10)
            with b.child("gamma") as g:
                g.stream("x")
            with root.child("sibling") as s:  # not in beta's subtree
                s.stream("y")
            b.stream("z")

    writer = in_thread(record)
    while not ready:
        threading.Event().wait(0.001)
    with store.tail(run_id=ready[0], until_end=True) as t:
        first = next(t)
        gate.set()
        got = [first, *t]
    writer.join()
    assert [(e.name, e.kind) for e in got] == [
        ("beta", "start"), ("gamma", "start"), ("gamma", "stream"), ("gamma", "end"),
        ("beta", "stream"), ("beta", "end")]
    assert raws(got) == raws(list(store.replay(ready[0])))


def test_until_end_with_a_filter_that_drops_the_root_still_ends(store: Store) -> None:
    rid = record_tree(store)
    f = runlog.Filter(include_names=["alpha"])
    got = list(store.tail(run_id=rid, filter=f, until_end=True))
    assert got
    assert {e.name for e in got} == {"alpha"}
    assert raws(got) == raws(list(store.replay(rid, filter=f)))


def test_until_end_of_a_run_that_ended_before_the_cursor_returns_at_once(store: Store) -> None:
    rid = record_tree(store)
    assert list(store.tail(after=store.last_seq(), run_id=rid, until_end=True)) == []


def test_trace_tail_is_the_whole_trace(store: Store) -> None:
    rid = record_tree(store)
    record_tree(store)
    got = list(store.tail(trace_id=rid, until_end=True))
    assert raws(got) == raws(list(store.events(trace_id=rid)))


def test_mid_run_tail_with_filter_equals_early_tail_minus_its_prefix(store: Store) -> None:
    """A tailer started in the middle of a run (after seq c, with a filter) yields what a
    tailer started before the run yielded, minus what came before c."""
    rid = new_run_id()
    f = runlog.Filter(include_tags=["t1", "t2"])
    reached, resume = threading.Event(), threading.Event()
    early = store.tail(run_id=rid, filter=f, until_end=True)
    writer = in_thread(lambda: record_tree(store, run_id=rid, tokens=20,
                                           barrier=(reached, resume)))
    assert reached.wait(10)
    cursor = store.last_seq()
    late_tail = store.tail(after=cursor, run_id=rid, filter=f, until_end=True)
    resume.set()
    late = list(late_tail)
    full = list(early)
    writer.join()
    assert late == [e for e in full if e.seq > cursor]
    assert 0 < len(late) < len(full)


def test_resume_from_the_cursor_misses_nothing_and_repeats_nothing(store: Store) -> None:
    for _ in range(3):
        record_tree(store)
    expected = list(store.events())
    seen: list[Any] = []
    cursor = 0
    for take in (1, 5, 2, 13, 7):
        with store.tail(after=cursor) as t:
            seen.extend(next(t) for _ in range(take))
            cursor = t.cursor
    seen.extend(store.tail(after=cursor, idle_timeout=0))
    assert raws(seen) == raws(expected)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])  # postgres: the example tests
@given(
    shape=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(TAGS),
                             st.integers(0, 3), st.integers(-1, 5)), min_size=1, max_size=8),
    include=st.lists(st.sampled_from(NAMES + TAGS), max_size=2),
    exclude=st.lists(st.sampled_from(TAGS), max_size=1),
    cut=st.integers(0, 60),
    follow=st.integers(0, 8),
    page_size=st.sampled_from([1, 2, 1000]),
)
def test_any_cursor_and_filter_yield_exactly_the_stored_events_after_it(
        kind: str, shape: list[tuple[str, str, int, int]], include: list[str],
        exclude: list[str], cut: int, follow: int, page_size: int) -> None:
    """Property: for any tree, filter, cursor and page size, a run tail (until its end)
    and a global tail (until caught up) equal the filtered stored events after the
    cursor, in order, without gap or duplicate."""
    with tempfile.TemporaryDirectory() as d, make_store(kind, Path(d)) as store:
        with store.run("root", tags=["t0"]) as root:
            runs = [root]
            for name, tag, chunks, parent in shape:
                p = runs[parent] if 0 <= parent < len(runs) else root
                child = p.start_child(name, tags=[tag])
                for i in range(chunks):
                    child.stream(i)
                runs.append(child)
            for r in reversed(runs[1:]):
                r.end(None)
        f = runlog.Filter(include_names=[x for x in include if x in NAMES] or None,
                          include_tags=[x for x in include if x in TAGS] or None,
                          exclude_tags=exclude or None)
        target = runs[min(follow, len(runs) - 1)].id
        cut = min(cut, store.last_seq())
        want = [e for e in store.events(target, descendants=True, filter=f) if e.seq > cut]
        got = list(store.tail(after=cut, run_id=target, filter=f, until_end=True,
                              page_size=page_size))
        assert raws(got) == raws(want)
        want_all = [e for e in store.events(filter=f) if e.seq > cut]
        assert raws(list(store.tail(after=cut, filter=f, idle_timeout=0,
                                    page_size=page_size))) == raws(want_all)


@pytest.mark.parametrize("view", ["log", "events"])
def test_a_view_tail_equals_the_replayed_view(store: Store, view: str) -> None:
    from runlog.reducers import view_json_line

    rid = new_run_id()
    t = store.tail(run_id=rid, view=view)  # type: ignore[arg-type]
    writer = in_thread(lambda: record_tree(store, run_id=rid, tokens=10))
    live = [view_json_line(i) for i in t]
    writer.join()
    assert live == [view_json_line(i) for i in store.replay(rid, view=view)]  # type: ignore[arg-type]


def test_a_writer_that_goes_away_is_reported_abandoned(store: Store) -> None:
    """A run left open by a writer whose lease ended yields every committed event, then
    one TailNotice (never a made-up event), and until_end stops there."""
    writer_store = Store(store.backend, lease_seconds=0.2)
    run = writer_store.start_run("doomed")
    for i in range(5):
        run.stream(i)
    writer_store.writer.close()  # the writer ends its lease with the run still open
    got = list(store.tail(run_id=run.id, until_end=True))
    assert [e.kind for e in got[:-1]] == ["start"] + ["stream"] * 5
    notice = got[-1]
    assert notice == TailNotice("abandoned", run.id, store.last_seq(), "doomed")
    assert store.run_info(run.id).status == "abandoned"
    assert b'"notice":"abandoned"' in notice.json_line()


def test_bad_arguments_say_what_to_do(store: Store) -> None:
    with pytest.raises(ValueError, match="until_end needs"):
        store.tail(until_end=True)
    with pytest.raises(ValueError, match="not both"):
        store.tail(run_id="a", trace_id="b")
    with pytest.raises(ValueError, match="folds one run"):
        store.tail(view="log")
    with pytest.raises(TypeError, match="takes no options"):
        store.tail(diff=False)


# --------------------------------------------------------------------------- async


@pytest.mark.anyio
@pytest.mark.parametrize("kind", BACKENDS)
async def test_atail_follows_a_run_without_blocking_the_loop(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path)
    rid = new_run_id()
    ticks = 0
    got: list[Any] = []

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.001)

    async def record() -> None:
        async with store.arun("root", run_id=rid) as root:
            async with root.child("model", "chat_model") as m:
                for i in range(20):
                    await m.atoken(f"t{i}")
                    await anyio.lowlevel.checkpoint()
            await root.aend({"ok": True})

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        async with store.atail(run_id=rid, until_end=True) as t:
            tg.start_soon(record)
            async for e in t:
                got.append(e)
        tg.cancel_scope.cancel()
    assert raws(got) == raws(list(store.replay(rid)))
    assert ticks > 0
    await store.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", BACKENDS)
async def test_atail_resumes_and_views_work_async(kind: str, tmp_path: Path) -> None:
    from runlog.reducers import view_json_line

    store = make_store(kind, tmp_path)
    rid = await anyio.to_thread.run_sync(lambda: record_tree(store, tokens=5))
    seen: list[Any] = []
    async with store.atail() as t:
        async for e in t:
            seen.append(e)
            if len(seen) == 4:
                break
        cursor = t.cursor
    async with store.atail(after=cursor, idle_timeout=0) as t:
        seen.extend([e async for e in t])
    assert raws(seen) == raws(list(store.events()))
    async with store.atail(run_id=rid, view="log") as t:
        live = [view_json_line(i) async for i in t]
    assert live == [view_json_line(i) for i in store.replay(rid, view="log")]
    await store.aclose()


@pytest.mark.anyio
async def test_cancelling_an_async_view_tail_is_clean(tmp_path: Path) -> None:
    store = make_store("sqlite", tmp_path)
    with anyio.move_on_after(0.2):
        async with store.atail(run_id=new_run_id(), view="events") as t:
            async for _ in t:  # the run never starts: the tail waits until cancelled
                pass
    await store.aclose()


# --------------------------------------------------------------------------- waiters


def test_version_waiter_never_sleeps_through_a_notification() -> None:
    """A commit between a tailer's read and its wait must not be slept through."""
    w = VersionWaiter()
    w.notify()
    done = threading.Event()
    t = in_thread(lambda: (w.wait(60), done.set()))
    t.join(30)
    assert done.is_set()
    w.close()


def test_inotify_waiter_wakes_on_a_commit_from_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    runlog.open(path).close()
    with runlog.open(path) as reader:
        w = reader.backend.change_waiter()
        assert isinstance(w, InotifyWaiter)

        def write() -> None:
            with runlog.open(path) as s, s.run("x") as r:
                r.stream(1)

        t = in_thread(write)
        while w.wakes == 0:  # would hang (and time out) if no notification came
            w.wait(60)
        t.join()
        w.close()


@given(run_id=st.text(min_size=1, max_size=12))
def test_peeking_kind_and_run_id_from_the_bytes_agrees_with_decoding(run_id: str) -> None:
    """The tail reads kind and run id from the stored bytes without decoding; any id
    (quotes, backslashes, non-ASCII) gives what the full decode gives."""
    from runlog.tail import _peek

    with runlog.open(":memory:") as store:
        with store.run("x", run_id=run_id) as r:
            r.stream(1)
        events = list(store.events())
    assert [_peek(e) for e in events] == [(e.kind, e.run_id) for e in events]
    assert [k for k, _ in map(_peek, events)] == ["start", "stream", "end"]


@pytest.mark.parametrize("view", ["log", "events"])
def test_a_view_of_an_abandoned_run_ends_with_the_notice_after_its_items(
        store: Store, view: str) -> None:
    from runlog.reducers import view_json_line

    writer_store = Store(store.backend, lease_seconds=0.2)
    run = writer_store.start_run("doomed")
    model = run.start_child("model", "chat_model")
    model.token("a")
    writer_store.writer.close()
    items = list(store.tail(run_id=run.id, view=view))  # type: ignore[arg-type]
    assert items[-1] == TailNotice("abandoned", run.id, store.last_seq(), "doomed")
    folded = list(store.replay(run.id, view=view))  # type: ignore[arg-type]
    assert [view_json_line(i) for i in items[:-1]] == [view_json_line(i) for i in folded]


def test_peeking_does_not_decode_the_envelope() -> None:
    """The fast path reads only the first keys: bytes that would not even parse as JSON
    beyond them still give kind and run id (so a busy tail decodes nothing)."""
    from runlog.events import Event
    from runlog.tail import _peek

    for kind in ("start", "stream", "end"):
        raw = b'{"kind":"' + kind.encode() + b'","run_id":"01a2-b3","parent_id":nul'
        assert _peek(Event(7, raw)) == (kind, "01a2-b3")
