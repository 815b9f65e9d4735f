"""The invariant helpers of runlog.testing hold on generated logs, and catch breakage."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runlog
from runlog.events import RUN_TYPES
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


@pytest.mark.xfail(strict=True, reason=(
    "known: runlog.Filter matches a chat model run by its own type 'chat_model' while "
    "the astream_log view's filter sees LangChain's 'llm' for it, so exclude_types=['llm'] "
    "drops it from the view but not from store.events(filter=...)"))
def test_filters_commute_for_llm_types() -> None:
    program = Program((RunSpec("rag", actions=(Child(RunSpec("m", "chat_model")),)),))
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        assert_filters_commute(recording.events(store), runlog.Filter(exclude_types=["llm"]))


@pytest.mark.xfail(strict=True, reason=(
    "known: the astream_log fold adds streamed chunks with '+', and a bytearray chunk "
    "followed by bytes makes /final_output a bytearray the patch cannot add into"))
def test_fold_of_bytes_chunks() -> None:
    program = Program((RunSpec("rag", actions=(Stream(bytearray(b"")), Stream(b"\x00"))),))
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        assert_fold_matches_live(recording.events(store))


@pytest.mark.xfail(strict=True, reason=(
    "known: the astream_log view puts run names into /logs/<name> JSON pointers without "
    "escaping '/' (as LangChain does), so a run named 'a/b' cannot be folded"))
def test_fold_of_a_name_with_a_slash() -> None:
    program = Program((RunSpec("rag", actions=(Child(RunSpec("a/b")),)),))
    with runlog.open(":memory:") as store:
        recording = play(program, store)
        assert_fold_matches_live(recording.events(store))
