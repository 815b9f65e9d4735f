"""LangChain objects round-trip through runlog's codec once runlog_langchain is imported."""

from __future__ import annotations

from typing import Any

import pytest
import runlog_langchain  # noqa: F401 - registers the codec types
from langchain_core.documents import Document
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.outputs import GenerationChunk
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.runnables.utils import AddableDict

from runlog import Opaque, codec

VALUES: list[Any] = [
    AIMessageChunk(content="he", id="lc_run--x", tool_call_chunks=[]),
    HumanMessage("hi", additional_kwargs={"k": 1}),
    ToolMessage("42", tool_call_id="call-1"),
    Document(page_content="doc", metadata={"source": "s", "n": 1.5}),
    ChatPromptValue(messages=[HumanMessage("q")]),
    StringPromptValue(text="say hi"),
    GenerationChunk(text="g", generation_info={"i": 0}),
    {"nested": [AIMessageChunk(content="a"), Document(page_content="d")]},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip(value: Any) -> None:
    raw = codec.encode(value)
    back = codec.decode(raw)
    assert back == value
    assert type(back) is type(value)
    assert codec.encode(back) == raw  # deterministic bytes


def test_addable_dict_keeps_adding() -> None:
    a = codec.decode(codec.encode(AddableDict(text="ab", items=["ab"])))
    b = codec.decode(codec.encode(AddableDict(text="cd", items=["cd"])))
    assert type(a) is AddableDict
    assert a + b == {"text": "abcd", "items": ["ab", "cd"]}


def test_unloadable_payload_stays_opaque_and_reencodes_identically() -> None:
    raw = b'{"$rl:lc":{"lc":1,"type":"constructor","id":["nowhere","Thing"],"kwargs":{}}}'
    back = codec.decode(raw)
    assert isinstance(back, Opaque)
    assert codec.encode(back) == raw
