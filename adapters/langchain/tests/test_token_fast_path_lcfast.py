"""The recorder's per-token fast path: ``encode_chunk`` (a chunk's bytes from its
encoding template, without the codec's dispatch) gives the codec's own bytes or
nothing, and a recorded stream is the same bytes with and without it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from runlog_langchain import Recorder
from runlog_langchain import codec as lc_codec
from runlog_langchain import recorder as lc_recorder
from test_fast_dumpd import stream_items

import runlog
from runlog import codec


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stream_items, min_size=1, max_size=12))
def test_encode_chunk_is_the_codecs_bytes_or_nothing(stream: list[Any]) -> None:
    """Over streams of objects that fit their template or differ from it in the ways
    only the walk writes right, ``encode_chunk`` is ``codec.encode`` or None."""
    lc_codec._templates.clear()
    fast = 0
    for item in stream:
        got = lc_codec.encode_chunk(item)
        want = codec.encode(item, lossy=True)  # also makes the class's template
        if got is not None:
            fast += 1
            assert got == want
    assert fast <= len(stream)


def test_a_fitting_chunk_takes_the_fast_path() -> None:
    lc_codec._templates.clear()
    codec.encode(AIMessageChunk(content="Hel", id="lc_run--7"))
    later = AIMessageChunk(content='lo "x"', id="lc_run--7")
    assert lc_codec.encode_chunk(later) == codec.encode(later)
    assert lc_codec.encode_chunk(AIMessageChunk(content="lo", id="lc_run--8")) is None


def test_another_registration_turns_the_fast_path_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A class the codec resolves to another encoder is never pre-encoded."""
    lc_codec._templates.clear()
    codec.encode(AIMessageChunk(content="Hel", id="lc_run--7"))
    monkeypatch.setitem(codec._resolved, AIMessageChunk, ("other", lambda v: {"x": 1}))
    assert lc_codec.encode_chunk(AIMessageChunk(content="lo", id="lc_run--7")) is None
    monkeypatch.delitem(codec._resolved, AIMessageChunk)  # not resolved yet
    assert lc_codec.encode_chunk(AIMessageChunk(content="lo", id="lc_run--7")) is None


def _record(path: Path, text: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    taken: list[bytes] = []

    def counted(obj: Any) -> bytes | None:
        got = lc_codec.encode_chunk(obj)
        if got is not None:
            taken.append(got)
        return got
    monkeypatch.setattr(lc_recorder, "encode_chunk", counted if fast else lambda obj: None)
    store = runlog.open(path)
    try:
        model = GenericFakeChatModel(messages=iter([AIMessage(text)]))
        rec = Recorder(store)
        rid = uuid.UUID(int=1)
        list(model.stream("hi", config={"callbacks": [rec], "run_id": rid}))
        store.flush()
        assert rec.failures == 0
        if fast and " " in text:  # from the second chunk on (the first makes the template)
            assert taken
        if not fast:
            assert not taken
        return [e.raw for e in store.events()]
    finally:
        store.close()
        monkeypatch.undo()


@pytest.mark.parametrize("text", ["one two three", 'a "quoted" \\ word é', "x"])
def test_a_recorded_stream_is_the_same_bytes_with_the_fast_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    from freezegun import freeze_time

    with freeze_time("2026-01-02 03:04:05.678901"):
        fast = _record(tmp_path / "fast.db", text, True, monkeypatch)
        slow = _record(tmp_path / "slow.db", text, False, monkeypatch)
    assert fast == slow
    assert len(fast) == 2 + len(text.split(" ")) * 2 - 1  # start, tokens, end


def test_the_token_cache_follows_the_run(tmp_path: Path) -> None:
    """Tokens of two interleaved model runs go to their own runs; a token after its
    run ended is not recorded (and is no failure)."""
    store = runlog.open(tmp_path / "s.db")
    rec = Recorder(store)
    a, b = uuid.uuid4(), uuid.uuid4()
    for rid in (a, b):
        rec.on_chat_model_start({"name": "m"}, [[]], run_id=rid)
    for i in range(3):
        for rid in (a, b):
            msg = AIMessageChunk(content=f"{rid.hex[:4]}{i}", id=f"lc_run--{rid}")
            rec.on_llm_new_token(str(msg.content), chunk=ChatGenerationChunk(message=msg),
                                 run_id=rid)
    rec.on_llm_end(lc_recorder.LLMResult(generations=[[]]), run_id=a)
    rec.on_llm_new_token("late", run_id=a)
    rec.on_llm_end(lc_recorder.LLMResult(generations=[[]]), run_id=b)
    store.flush()
    assert rec.failures == 0
    for rid in (a, b):
        tokens = [e.data["token"] for e in store.events(str(rid)) if e.channel == "token"]
        assert tokens == [f"{rid.hex[:4]}{i}" for i in range(3)]
    store.close()


def test_a_token_after_its_run_ended_elsewhere_is_no_failure(tmp_path: Path) -> None:
    """The remembered run is not re-checked per token: a run ended through an equal but
    distinct run-id object (the remembered one is kept) refuses the next token in
    ``Run._put``, which is dropped quietly, as the per-token check dropped it."""
    store = runlog.open(tmp_path / "s.db")
    rec = Recorder(store)
    rid = uuid.uuid4()
    rec.on_chat_model_start({"name": "m"}, [[]], run_id=rid)
    msg = AIMessageChunk(content="a", id=f"lc_run--{rid}")
    rec.on_llm_new_token("a", chunk=ChatGenerationChunk(message=msg), run_id=rid)
    rec.on_llm_end(lc_recorder.LLMResult(generations=[[]]), run_id=uuid.UUID(str(rid)))
    assert rec._last_token_run[0] is rid  # still remembered: only identity resets it
    rec.on_llm_new_token("late", chunk=ChatGenerationChunk(message=msg), run_id=rid)
    rec.on_llm_new_token("later", run_id=rid)
    store.flush()
    assert rec.failures == 0, rec.last_error
    assert [e.data["token"] for e in store.events(str(rid)) if e.channel == "token"] == ["a"]
    store.close()
