"""The invariant helpers of runlog.testing hold on generated logs, and catch breakage."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runlog
from runlog.events import RUN_TYPES
from runlog.reducers import log_view
from runlog.testing.invariants import (
    assert_export_roundtrip,
    assert_filters_commute,
    assert_fold_matches_live,
    assert_recorded,
    assert_replay_exact,
)
from runlog.testing.strategies import (
    RUN_NAMES,
    Child,
    Ok,
    Program,
    RunSpec,
    Stream,
    chunks,
    filters,
    play,
    programs,
)

PLAIN = chunks(awkward=False)
NAMES = st.sampled_from(RUN_NAMES)  # see test_fold_of_a_name_with_a_slash
# runlog.Filter compares a run's own type ("chat_model"); the astream_log view compares
# LangChain's ("llm" for chat models): filters on those two types are checked apart below.
UNAMBIGUOUS_TYPES = [t for t in RUN_TYPES if t not in ("llm", "chat_model")]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(programs(values=PLAIN, names=NAMES))
def test_fold_matches_the_live_view(program: Program) -> None:
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        assert_fold_matches_live(recording.events(store))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_roots=1, values=PLAIN, names=NAMES), filters(run_types=UNAMBIGUOUS_TYPES))
def test_filters_commute_with_folding(program: Program, f: runlog.Filter) -> None:
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        assert_filters_commute(recording.events(store), f)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_export_then_import_gives_the_same_log(program: Program) -> None:
    with runlog.open(":memory:") as store:
        play(program, store)
        assert_export_roundtrip(store)


def test_assert_recorded_names_the_event_that_differs() -> None:
    program = Program((RunSpec("rag", actions=(Stream("a"),)),))
    other = Program((RunSpec("rag", actions=(Stream("b"),)),))
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        assert_recorded(store, recording)
        assert_replay_exact(store, recording)
        recording.program = other
        recording.ops = [op.__class__(op.path, other.roots[0], a) for op, a in zip(
            recording.ops, [None, Stream("b"), Ok()], strict=True)]
        with pytest.raises(AssertionError, match=r"seq 2 \(stream of run 'rag'.*'b'"):
            assert_recorded(store, recording)


def test_llm_type_filters_follow_each_views_typing() -> None:
    """A chat model is `chat_model` in stored events and the events view, but `llm` in
    the astream_log view (LangChain's typing); one Filter object follows each place's
    typing, so exclude_types=['llm'] drops it from the log view only (docs/views.md)."""
    program = Program((RunSpec("rag", actions=(Child(RunSpec("m", "chat_model")),)),))
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        llm = runlog.Filter(exclude_types=["llm"])
        assert {e.name for e in store.events(filter=llm)} == {"rag", "m"}
        state = runlog.fold(recording.events(store), filter=llm)
        assert state is not None
        assert state["logs"] == {}
        chat = runlog.fold(recording.events(store),
                           filter=runlog.Filter(exclude_types=["chat_model"]))
        assert chat is not None
        assert list(chat["logs"]) == ["m"]


def test_fold_of_bytes_chunks() -> None:
    program = Program((RunSpec("rag", actions=(Stream(bytearray(b"")), Stream(b"\x00"))),))
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        assert_fold_matches_live(recording.events(store))


def test_a_name_with_a_slash_folds_and_the_view_keeps_langchains_pointer() -> None:
    """LangChain writes /logs/a/b unescaped (so its own diff=False fails); the view keeps
    those bytes, while runlog.fold escapes the pointer and keys the entry by its name."""
    program = Program((RunSpec("rag", actions=(Child(RunSpec("a/b")),)),))
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        events = list(recording.events(store))
        state = runlog.fold(events)
        assert state is not None
        assert list(state["logs"]) == ["a/b"]
        assert state["logs"]["a/b"]["end_time"] is not None
        paths = [op["path"] for p in log_view(events) for op in p.ops]
        assert "/logs/a/b" in paths
