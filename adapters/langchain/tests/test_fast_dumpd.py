"""``runlog_langchain.fast_dumpd.dumpd`` equals LangChain's ``dumpd``, and the codec's
pre-encoded path for flat chunks writes the bytes of the ordinary walk.

Both are speed-ups of the per-token path (``docs/langchain.md``, "Performance"); what
they must never change is the stored bytes, so each is compared with the path it
replaces on generated LangChain objects, awkward values included.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, ClassVar

import orjson
import pytest
import runlog_langchain  # noqa: F401 - registers the codec types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.load import dumpd as lc_dumpd
from langchain_core.load.serializable import Serializable
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, GenerationChunk
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from runlog_langchain import codec as lc_codec
from runlog_langchain import fast_dumpd

from runlog import codec


class Colour(StrEnum):
    RED = "red"


# leaves LangChain and the codec treat differently from plain JSON: str/int
# subclasses, NaN, big ints, lone surrogates, non-str keys, keys posing as tags
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["\ud800", Colour.RED, "$rl:x", "lc", ""]),
)
keys = st.one_of(st.text(max_size=5), st.sampled_from(["lc", "$rl:int", "__lc_escaped__"]),
                 st.integers(-3, 3), st.none(), st.booleans())
json_like = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(keys, inner, max_size=3),
                            st.tuples(inner, inner)),
    max_leaves=8,
)
str_dicts = st.dictionaries(st.text(max_size=5) | st.just("lc"), json_like, max_size=3)
content = st.one_of(
    st.text(max_size=10),
    st.lists(st.one_of(st.text(max_size=5),
                       st.fixed_dictionaries({"type": st.just("text"),
                                              "text": st.text(max_size=5)})),
             max_size=2),
)
ids = st.none() | st.text(max_size=12)
tool_calls = st.lists(st.fixed_dictionaries({
    "name": st.text(min_size=1, max_size=5),
    "args": st.dictionaries(st.text(max_size=4), json_like, max_size=2),
    "id": ids,
}), max_size=2)
usage = st.none() | st.fixed_dictionaries({
    "input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**6),
    "total_tokens": st.integers(0, 2 * 10**6),
})


class Scored(Serializable):
    """A serialisable class of our own with scalar fields (LangChain's have none)."""

    text: str
    score: float = 0.0
    rank: int = 0
    flag: bool = False

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True


def _chunk(c: Any, i: Any, kw: Any, meta: Any, pos: Any, u: Any, calls: Any) -> Any:
    chunks = [{"name": t["name"], "args": None, "id": t["id"], "index": n}
              for n, t in enumerate(calls)]
    return AIMessageChunk(content=c, id=i, additional_kwargs=kw, response_metadata=meta,
                          chunk_position=pos, usage_metadata=u, tool_call_chunks=chunks)


messages = st.one_of(
    st.builds(_chunk, content, ids, str_dicts, str_dicts, st.sampled_from([None, "last"]),
              usage, tool_calls),
    st.builds(lambda c, i, t, u, n: AIMessage(content=c, id=i, tool_calls=t,
                                              usage_metadata=u, name=n),
              content, ids, tool_calls, usage, st.none() | st.text(max_size=4)),
    st.builds(lambda c, kw: HumanMessage(content=c, additional_kwargs=kw), content,
              str_dicts),
    st.builds(lambda c: SystemMessage(content=c), content),
    st.builds(lambda c, i: ToolMessage(content=c, tool_call_id=i), content,
              st.text(max_size=6)),
)
objects = st.one_of(
    messages,
    st.builds(Scored, text=st.text(max_size=4), score=st.floats(),
              rank=st.integers(-(2**70), 2**70), flag=st.booleans()),
    st.builds(lambda t, m: Document(page_content=t, metadata=m), st.text(max_size=8),
              str_dicts),
    st.builds(lambda m: ChatGenerationChunk(message=m), messages.filter(
        lambda m: isinstance(m, AIMessageChunk))),
    st.builds(lambda m, g: ChatGeneration(message=m, generation_info=g),
              messages, st.none() | str_dicts),
    st.builds(lambda ms: ChatPromptValue(messages=ms), st.lists(messages, max_size=2)),
    st.builds(lambda t: StringPromptValue(text=t), st.text(max_size=8)),
    st.builds(lambda t, g: GenerationChunk(text=t, generation_info=g), st.text(max_size=8),
              st.none() | str_dicts),
)
values = st.one_of(objects, st.lists(objects, max_size=2),
                   st.dictionaries(st.text(max_size=3) | st.just("lc"), objects, max_size=2))


def _same(a: Any, b: Any) -> bool:
    """Structural equality that also holds for NaN leaves and keeps types apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_fast_path_is_on_for_the_installed_langchain() -> None:
    # if this fails, LangChain changed a function fast_dumpd mirrors: re-read the diff
    # of those functions, update the mirror, then the fingerprints
    assert fast_dumpd.ENABLED


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_equals_langchain_dumpd(value: Any) -> None:
    assert _same(fast_dumpd.dumpd(value), lc_dumpd(value))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_pre_encoded_chunks_store_the_bytes_of_the_walk(value: Any) -> None:
    fast = codec.encode({"token": "t", "chunk": value}, lossy=True)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(lc_codec, "_is_flat", lambda d: False)
        walked = codec.encode({"token": "t", "chunk": value}, lossy=True)
    assert fast == walked


def test_a_streamed_chunk_takes_the_pre_encoded_path() -> None:
    chunk = AIMessageChunk(content="tok", id="lc_run--1")
    assert isinstance(lc_codec._encode_lc(chunk), orjson.Fragment)
    assert codec.decode(codec.encode(chunk)) == chunk
    # a value the codec must tag is walked instead
    odd = AIMessageChunk(content="tok", response_metadata={"score": math.inf})
    assert not isinstance(lc_codec._encode_lc(odd), orjson.Fragment)
    assert b'{"$rl:float":"inf"}' in codec.encode(odd)
    for score in (math.nan, math.inf):
        scored = Scored(text="x", score=score)
        assert not isinstance(lc_codec._encode_lc(scored), orjson.Fragment)
    big = Scored(text="x", rank=2**64)
    assert not isinstance(lc_codec._encode_lc(big), orjson.Fragment)
    assert b'{"$rl:int":"18446744073709551616"}' in codec.encode(big)
    surrogate = AIMessageChunk(content="\ud800")
    assert not isinstance(lc_codec._encode_lc(surrogate), orjson.Fragment)
    assert codec.decode(codec.encode(surrogate)) == surrogate


class _WithSecret(Serializable):
    api_key: str = "k"
    label: str = ""

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "MY_API_KEY"}


def test_classes_it_does_not_mirror_go_to_langchain() -> None:
    obj = _WithSecret(api_key="sk-1", label="x")
    out = fast_dumpd.dumpd(obj)
    assert out == lc_dumpd(obj)
    assert out["kwargs"]["api_key"] == {"lc": 1, "type": "secret", "id": ["MY_API_KEY"]}


def test_turned_off_it_is_langchain_dumpd(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(fast_dumpd, "ENABLED", False)
    monkeypatch.setattr(fast_dumpd._dump, "dumpd", lambda o: calls.append(o) or {"x": 1})
    msg = HumanMessage("hi")
    assert fast_dumpd.dumpd(msg) == {"x": 1}
    assert calls == [msg]


def test_a_changed_langchain_function_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    name, (fn, _) = next(iter(fast_dumpd._MIRRORED.items()))
    monkeypatch.setitem(fast_dumpd._MIRRORED, name, (fn, "00000000"))
    assert fast_dumpd._sources_match() is False


# -- encoding templates (runlog_langchain.codec._Template) ------------------------------
# A stream is mostly chunks of one shape, with now and then one that differs in a way
# a template must notice: a value of another type that compares equal (False/0/0.0,
# a str enum), a container that is no longer empty, a field added, keys reordered.
def _streamed(c: Any, i: Any, meta: Any, pos: Any, calls: Any, name: Any) -> Any:
    chunks = [{"name": t["name"], "args": None, "id": t["id"], "index": n}
              for n, t in enumerate(calls)]
    return AIMessageChunk(content=c, id=i, response_metadata=meta, chunk_position=pos,
                          tool_call_chunks=chunks, name=name)


class Loose(Serializable):
    """A field that keeps whatever it is given: ``1``, ``True`` and ``1.0`` stay apart."""

    text: str
    extra: Any = None

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True


awkward_text = st.one_of(st.text(max_size=6), st.sampled_from(["", "\ud800", Colour.RED]))
stream_items = st.one_of(
    st.builds(_streamed, awkward_text, st.sampled_from([None, "lc_run--1", "", Colour.RED]),
              st.sampled_from([{}, {"n": 0}, {"n": False}, {"n": 0.0}, {"n": -0.0}]),
              st.sampled_from([None, "last"]), st.sampled_from([[], [{"name": "f",
                                                                     "id": "1"}]]),
              st.sampled_from([None, "", "bot"])),
    st.builds(lambda t, m: Document(page_content=t, metadata=m), awkward_text,
              st.sampled_from([{}, {"k": 1}, {"k": True}])),
    st.builds(lambda t: GenerationChunk(text=t), awkward_text),
    st.builds(Loose, text=awkward_text,
              extra=st.sampled_from([None, 0, False, 0.0, 1, True, 1.0, "", "1"])),
    objects,
)


def _walked(value: Any) -> bytes:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(lc_codec, "_templates", {})
        m.setattr(lc_codec, "_remember", lambda *a: None)
        return codec.encode(value, lossy=True)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stream_items, min_size=1, max_size=12))
def test_templates_store_the_bytes_of_the_walk(stream: list[Any]) -> None:
    lc_codec._templates.clear()
    for item in stream:
        assert codec.encode(item, lossy=True) == _walked(item)


def test_a_stream_of_chunks_is_encoded_from_a_template() -> None:
    lc_codec._templates.clear()
    first = AIMessageChunk(content="Hel", id="lc_run--7")
    codec.encode(first)
    template = lc_codec._templates[AIMessageChunk]
    assert template.slots == ("content",)
    assert template.checks == ()  # its getters return fields compared anyway
    later = AIMessageChunk(content="lo", id="lc_run--7")
    assert lc_codec._fill(template, later) == _walked(later)[len(b'{"$rl:lc":'):-1]
    # each of these differs in a way only the walk writes right
    for other in (AIMessageChunk(content="lo", id="lc_run--8"),
                  AIMessageChunk(content="lo", id="lc_run--7", chunk_position="last"),
                  AIMessageChunk(content="lo", id="lc_run--7", name=""),
                  AIMessageChunk(content=["lo"], id="lc_run--7")):
        assert lc_codec._fill(template, other) is None
        assert codec.encode(other) == _walked(other)
    reordered = AIMessageChunk(content="lo", id="lc_run--7")
    reordered.__dict__["content"] = reordered.__dict__.pop("content")
    assert lc_codec._fill(template, reordered) is None


def test_a_getter_that_is_not_a_known_projection_is_called_for_each_object() -> None:
    class Tagged(Serializable):
        text: str
        mood: ClassVar[str] = "calm"

        @classmethod
        def is_lc_serializable(cls) -> bool:
            return True

        @property
        def lc_attributes(self) -> dict[str, Any]:
            return {"mood": self.mood}  # not a field: only calling it tells

    lc_codec._templates.clear()
    codec.encode(Tagged(text="a"))
    template = lc_codec._templates[Tagged]
    assert [items for _, items, _ in template.checks] == [(("mood", "calm"),)]
    assert lc_codec._fill(template, Tagged(text="b")) is not None
    Tagged.mood = "loud"
    other = Tagged(text="b")
    assert lc_codec._fill(template, other) is None
    assert b'"mood":"loud"' in codec.encode(other) == _walked(other)


def test_a_value_whose_comparison_raises_is_walked() -> None:
    class Touchy:
        def __eq__(self, other: object) -> bool:
            raise ValueError("ambiguous")

        __hash__ = object.__hash__

    lc_codec._templates.clear()
    codec.encode(Loose(text="a", extra=1))
    odd = Loose(text="b", extra=Touchy())
    assert lc_codec._fill(lc_codec._templates[Loose], odd) is None
    assert codec.encode(odd, lossy=True) == _walked(odd)
