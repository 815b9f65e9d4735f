"""Stored LangChain-shaped values for the content tests, written without LangChain.

:func:`write_store` runs in a subprocess (``python tests/content_fixtures.py DB``): it
registers stand-in classes under the codec tags ``lc`` and ``exception`` so that the
store holds exactly what the LangChain adapter writes (``{"$rl:lc": dumpd(obj)}``) and
what a forger would write (``{"$rl:exception": ["io:FileIO", [path, "w"], ""]}``),
without touching the codec registry of the test process.
"""

from __future__ import annotations

import sys
from typing import Any


def lc(cls: str, module: tuple[str, ...] = ("langchain", "schema", "messages"),
       **kwargs: Any) -> dict[str, Any]:
    return {"lc": 1, "type": "constructor", "id": [*module, cls], "kwargs": kwargs}


SYSTEM = lc("SystemMessage", content="You answer in one line.", type="system")
HUMAN = lc("HumanMessage", content="Weather in Paris?", type="human")
AI_CALL = lc("AIMessage", content=[{"type": "text", "text": "Let me look."}], type="ai",
             id="msg-1", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"},
                                      "id": "call_42", "type": "tool_call"}],
             invalid_tool_calls=[],
             usage_metadata={"input_tokens": 31, "output_tokens": 12, "total_tokens": 43})
TOOL = lc("ToolMessage", content="18 C, light rain", type="tool", tool_call_id="call_42",
          status="success")
DOC = lc("Document", ("langchain", "schema", "document"), page_content="Paris is in France.",
         metadata={"src": "geo.md", "page": 3}, id="doc-7", type="Document")
PROMPT = lc("ChatPromptValue", ("langchain", "prompts", "chat"), messages=[SYSTEM, HUMAN])
FORGED_PATH = "runlog-content-forged.txt"


class _Lc:
    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree = tree


class _Forged:
    def __init__(self, path: str) -> None:
        self.path = path


def write_store(db: str) -> str:
    """Record one agent-like trace into ``db``; print and return the root id."""
    import runlog
    from runlog import codec

    codec.register(_Lc, "lc", lambda o: o.tree, _Lc)
    codec.register(_Forged, "exception", lambda o: ["io:FileIO", [o.path, "w"], ""],
                   lambda p: p)
    store = runlog.open(db)
    with store.run("agent", "chain", inputs={"question": "Weather in Paris?"}) as root:
        with root.child("Docs", "retriever", inputs={"query": "Paris"}) as r:
            r.end(outputs=[_Lc(DOC)])
        with root.child("prompt", "prompt", inputs={"question": "Weather in Paris?"}) as p:
            p.end(outputs=_Lc(PROMPT))
        with root.child("ChatOpenAI", "chat_model",
                        inputs={"messages": [[_Lc(SYSTEM), _Lc(HUMAN)]]}) as m:
            m.token("Let me look.")
            m.end(outputs={"generations": [[{
                "text": "Let me look.", "generation_info": None, "type": "ChatGeneration",
                "message": _Lc(AI_CALL)}]], "llm_output": None, "run": None,
                "type": "LLMResult"})
        with root.child("get_weather", "tool", inputs={"city": "Paris"}) as t:
            t.end(outputs=_Lc(TOOL))
        with root.child("forged", "tool", inputs={"x": _Forged(FORGED_PATH)}) as f:
            f.end(outputs={"y": _Forged(FORGED_PATH)})
        try:
            with root.child("check", "tool", inputs={"claim": "rain"}):
                raise LookupError("no source")
        except LookupError:
            pass
        root.end(outputs={"answer": "18 C, light rain"})
    store.close()
    print(root.id)
    return root.id


EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def write_evil(db: str) -> str:
    """A chat turn whose every field holds HTML: role, content, blocks, tool call,
    document text and metadata (the page must show it as text)."""
    import runlog
    from runlog import codec

    codec.register(_Lc, "lc", lambda o: o.tree, _Lc)
    msg = lc("ChatMessage", content=[{"type": "text", "text": EVIL}, {"type": EVIL}],
             role=EVIL, type="chat", name=EVIL)
    ai = lc("AIMessage", content=EVIL, type="ai", id=EVIL,
            tool_calls=[{"name": EVIL, "args": {EVIL: EVIL}, "id": EVIL}],
            usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})
    doc = lc("Document", ("langchain", "schema", "document"), page_content=EVIL,
             metadata={EVIL: EVIL}, id=EVIL)
    store = runlog.open(db)
    with store.run(EVIL, "chat_model", inputs={"messages": [[_Lc(msg)]]}) as run:
        run.end(outputs={"generations": [[{"text": EVIL, "type": "ChatGeneration",
                                            "message": _Lc(ai)}]], "type": "LLMResult",
                         "llm_output": {EVIL: EVIL}, "docs": [_Lc(doc)]})
    store.close()
    print(run.id)
    return run.id


if __name__ == "__main__":
    (write_evil if sys.argv[2:] == ["--evil"] else write_store)(sys.argv[1])
