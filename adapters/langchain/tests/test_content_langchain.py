"""runlog.content on what the LangChain adapter really stores (its ``dumpd`` trees)."""

from __future__ import annotations

import io

import orjson
import runlog_langchain  # noqa: F401  (registers the codec tags)
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from rich.console import Console
from runlog_langchain.demo import run_demo

import runlog
from runlog import codec, content
from runlog.content import VIEW


def stored(value: object) -> object:
    """What a reader of the store gets: the stored JSON, tags not decoded."""
    return orjson.loads(codec.encode(value))


def test_real_messages_read_as_messages() -> None:
    ai = AIMessage(content=[{"type": "text", "text": "Checking."}], id="m1",
                   tool_calls=[{"name": "search", "args": {"q": "paris"}, "id": "call_1"}],
                   usage_metadata={"input_tokens": 5, "output_tokens": 7, "total_tokens": 12})
    node = content.readable(stored(ai))
    assert node[VIEW] == "message"
    assert node["role"] == "ai"
    assert node["id"] == "m1"
    assert node["tool_calls"] == [{"name": "search", "args": {"q": "paris"}, "id": "call_1"}]
    assert node["usage"]["total_tokens"] == 12
    assert content.usage(stored(ai)) == {"input_tokens": 5, "output_tokens": 7,
                                         "total_tokens": 12}
    tool = content.readable(stored(ToolMessage(content="sunny", tool_call_id="call_1")))
    assert (tool["role"], tool["tool_call_id"], tool["content"]) == ("tool", "call_1", "sunny")
    chunk = content.readable(stored(AIMessageChunk(content="to")))
    assert chunk["chunk"] is True
    assert chunk["role"] == "ai"


def test_real_prompts_documents_and_generations() -> None:
    prompt = ChatPromptValue(messages=[SystemMessage("Be brief."), HumanMessage("Hi?")])
    assert content.preview(content.readable(stored(prompt))) == (
        "prompt: system: Be brief. | human: Hi?")
    assert content.readable(stored(StringPromptValue(text="Say hi"))) == {
        VIEW: "prompt", "text": "Say hi"}
    doc = Document(page_content="Paris is in France.", metadata={"src": "geo"}, id="d1")
    assert content.readable(stored([doc])) == [{VIEW: "document", "content":
                                                "Paris is in France.",
                                                "metadata": {"src": "geo"}, "id": "d1"}]
    result = LLMResult(generations=[[ChatGeneration(message=AIMessage("Hello"))]])
    node = content.readable(stored(result.model_dump()))
    assert content.preview(node) == "ai: Hello"


def test_demo_tree_shows_readable_values(tmp_path: object) -> None:
    buf = io.StringIO()
    with runlog.open(f"{tmp_path}/d.db") as store:
        run_demo(store, out=Console(file=buf, width=300, highlight=False))
    tree = buf.getvalue().split("Stored run tree")[1].split("Replay as astream_log")[0]
    assert "ChatPromptValue(" not in tree
    assert "$rl:" not in tree
    assert "prompt: system: Answer from the context." in tree
    assert "1 document: runlog stores every start" in tree
    assert "ai: runlog stores each run's start" in tree
