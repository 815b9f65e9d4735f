"""runlog.content: LangChain values read from their stored JSON, never revived."""

from __future__ import annotations

from typing import Any

import orjson
from content_fixtures import AI_CALL, DOC, HUMAN, PROMPT, SYSTEM, TOOL, lc
from hypothesis import given, settings
from hypothesis import strategies as st

from runlog import content
from runlog.content import VIEW, preview, readable, search_text, to_text, usage


def tagged(tree: dict[str, Any]) -> dict[str, Any]:
    return {"$rl:lc": tree}


def test_a_chat_turn_with_a_tool_call_and_usage() -> None:
    node = readable(tagged(AI_CALL))
    assert node == {
        VIEW: "message", "role": "ai", "content": [{"type": "text", "text": "Let me look."}],
        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_42"}],
        "id": "msg-1",
        "usage": {"input_tokens": 31, "output_tokens": 12, "total_tokens": 43},
    }
    assert to_text(node).splitlines() == [
        "ai: Let me look.",
        '  tool call get_weather({"city":"Paris"}) id=call_42',
        "  usage: 31 input, 12 output, 43 total",
    ]
    assert preview(node) == ('ai: Let me look. [tool calls: get_weather({"city":"Paris"}) '
                             "id=call_42]")
    assert usage(tagged(AI_CALL)) == {"input_tokens": 31, "output_tokens": 12,
                                      "total_tokens": 43}


def test_a_tool_result_names_its_call() -> None:
    node = readable(tagged(TOOL))
    assert node[VIEW] == "message"
    assert node["role"] == "tool"
    assert node["tool_call_id"] == "call_42"
    assert to_text(node) == "tool [result of call_42]: 18 C, light rain"


def test_documents_keep_content_and_metadata() -> None:
    nodes = readable([tagged(DOC), tagged(DOC)])
    assert nodes[0] == {VIEW: "document", "content": "Paris is in France.",
                        "metadata": {"src": "geo.md", "page": 3}, "id": "doc-7"}
    assert preview(nodes) == "2 documents: Paris is in France. | Paris is in France."
    assert to_text(nodes[0]).splitlines() == ['document doc-7 {"src":"geo.md","page":3}:',
                                              "  Paris is in France."]


def test_prompt_values_are_their_messages() -> None:
    node = readable(tagged(PROMPT))
    assert node[VIEW] == "prompt"
    assert [m["role"] for m in node["messages"]] == ["system", "human"]
    assert preview(node) == "prompt: system: You answer in one line. | human: Weather in Paris?"
    text = readable(tagged(lc("StringPromptValue", ("langchain", "prompts", "base"),
                              text="Say hi")))
    assert text == {VIEW: "prompt", "text": "Say hi"}


def test_a_model_result_shows_its_generations() -> None:
    stored = {"generations": [[{"text": "Let me look.", "generation_info": {"finish": "stop"},
                                "type": "ChatGeneration", "message": tagged(AI_CALL)}]],
              "llm_output": None, "run": None, "type": "LLMResult"}
    node = readable(stored)
    assert node[VIEW] == "generations"
    gen = node["generations"][0][0]
    assert gen[VIEW] == "generation"
    assert gen["message"]["role"] == "ai"
    assert to_text(node).splitlines()[0] == "ai: Let me look."
    assert "info: " in to_text(node)
    assert usage(stored)["total_tokens"] == 43
    odd = readable({**stored, "docs": ["kept"]})
    assert odd["extra"] == {"docs": ["kept"]}
    assert preview(odd).endswith('{"docs":["kept"]}')
    assert '["kept"]' in to_text(odd)


def test_chat_messages_with_their_own_role_and_chunks() -> None:
    node = readable(tagged(lc("ChatMessage", content="hi", role="critic", type="chat")))
    assert node["role"] == "critic"
    chunk = readable(tagged(lc("AIMessageChunk", content="to", type="AIMessageChunk")))
    assert chunk["chunk"] is True
    assert preview(chunk) == "ai: to"


def test_secrets_unknown_classes_and_not_serialisable_objects() -> None:
    assert readable(tagged({"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"]})) == {
        VIEW: "secret", "id": "OPENAI_API_KEY"}
    odd = readable(tagged(lc("Popen", ("subprocess",), args=["rm", "-rf", "/"])))
    assert odd == {VIEW: "object", "class": "subprocess.Popen",
                   "kwargs": {"args": ["rm", "-rf", "/"]}}
    assert preview(odd) == 'subprocess.Popen({"args":["rm","-rf","/"]})'
    ni = readable(tagged({"lc": 1, "type": "not_implemented", "id": ["x", "Y"],
                          "repr": "Y()"}))
    assert ni["class"] == "x.Y"
    assert ni["kwargs"] == {"repr": "Y()"}


def test_other_tags_stay_as_stored() -> None:
    forged = {"$rl:exception": ["io:FileIO", ["/tmp/x", "w"], ""]}
    assert readable(forged) == {VIEW: "tag", "tag": "exception",
                                "payload": ["io:FileIO", ["/tmp/x", "w"], ""]}
    assert preview(readable(forged)) == orjson.dumps(forged).decode()
    assert readable({"$rl:tuple": [1, 2]}) == [1, 2]
    assert readable({"$rl:lc_addable": {"a": tagged(HUMAN)}})["a"]["role"] == "human"
    pairs = readable({"$rl:dict": [[1, "one"], ["$rl:x", 2]]})
    assert pairs == {VIEW: "dict", "pairs": [[1, "one"], ["$rl:x", 2]]}
    assert preview(pairs) == '{1: one, $rl:x: 2}'
    # a dict with a tag-like key among others is no codec output: shown as pairs
    mixed = readable({"$rl:view": "message", "role": "ai"})
    assert mixed[VIEW] == "dict"


def test_plain_values_pass_through() -> None:
    for v in ("text", 1, None, [1, "a"], {"answer": "x"}):
        assert readable(v) == v
    assert preview({"answer": "x" * 200}, 20) == '{"answer":"xxxxxxxx…'
    assert preview("a\nb") == "a⏎b"


def test_search_text_sees_strings_and_keys() -> None:
    text = search_text({"messages": [[tagged(SYSTEM), tagged(HUMAN)]]})
    assert "Weather in Paris?" in text
    assert "messages" in text
    assert "\\n" not in search_text({"a": "x\ny"})


def test_usage_ignores_odd_values() -> None:
    bad = lc("AIMessage", content="x", usage_metadata={"input_tokens": "9",
                                                       "output_tokens": -1,
                                                       "total_tokens": 2**70})
    assert usage(tagged(bad)) == {}
    assert usage("plain") == {}


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
keys = st.one_of(st.text(max_size=6), st.sampled_from([
    "$rl:lc", "$rl:dict", "$rl:view", "$rl:exception", "$rl:lc_addable", "$rl:tuple", "lc",
    "type", "id", "kwargs", "content", "messages", "tool_calls", "usage_metadata",
    "generations", "message", "text", "role", "page_content", "args"]))
ids = st.lists(st.one_of(st.sampled_from(
    ["AIMessage", "ToolMessage", "ChatMessage", "Document", "ChatPromptValue",
     "StringPromptValue", "ChatGeneration", "AIMessageChunk", "langchain"]), json_leaf),
    max_size=4)


def json_values() -> st.SearchStrategy[Any]:
    """Arbitrary stored JSON, rich in tags, LangChain trees and odd field types."""

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        lc_tree = st.fixed_dictionaries(
            {"lc": st.just(1), "type": st.sampled_from(["constructor", "secret",
                                                        "not_implemented", "x"]),
             "id": ids}, optional={"kwargs": st.one_of(
                 st.dictionaries(keys, children, max_size=4), children)})
        return st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys, children, max_size=4),
            st.builds(lambda t: {"$rl:lc": t}, lc_tree),
            st.builds(lambda k, v: {k: v}, keys, children),
            st.builds(lambda gens: {"type": "LLMResult", "generations": gens},
                      children),
        )
    return st.recursive(json_leaf, extend, max_leaves=40)


def _dicts(v: Any) -> list[dict[str, Any]]:
    out, todo = [], [v]
    while todo:
        x = todo.pop()
        if isinstance(x, dict):
            out.append(x)
            # a tag node's payload is the stored JSON verbatim (shown as JSON)
            todo.extend(v for k, v in x.items() if not (k == "payload" and x.get(VIEW) == "tag"))
        elif isinstance(x, list):
            todo.extend(x)
    return out


@settings(max_examples=400, deadline=None)
@given(json_values(), st.one_of(st.none(), st.integers(1, 200)))
def test_rendering_never_raises_and_nodes_cannot_be_forged(value: Any,
                                                           limit: int | None) -> None:
    node = readable(value)
    orjson.dumps(node)  # still JSON
    for d in _dicts(node):
        tagged_keys = [k for k in d if isinstance(k, str) and k.startswith("$rl:")]
        # the only $rl: key left is the view marker, and it names a known kind
        assert tagged_keys in ([], [VIEW])
        if tagged_keys:
            assert d[VIEW] in {"message", "document", "prompt", "generation", "generations",
                               "object", "secret", "tag", "dict"}
    one = preview(node, limit)
    assert "\n" not in one
    if limit is not None:
        assert len(one) <= limit
    assert isinstance(to_text(node), str)
    assert isinstance(search_text(value), str)
    u = usage(value)
    assert set(u) <= {"input_tokens", "output_tokens", "total_tokens"}
    assert all(isinstance(n, int) and n >= 0 for n in u.values())


def test_deep_values_do_not_overflow_the_stack() -> None:
    v: Any = "x"
    for _ in range(250):
        v = {"$rl:lc_addable": {"a": [v]}}
    node = readable(v)
    assert isinstance(preview(node), str)
    assert isinstance(to_text(node), str)
    assert isinstance(content.search_text(v), str)  # (cut at 200 levels, like the view)


def test_search_text_skips_the_codec_structure() -> None:
    text = search_text([tagged(AI_CALL), {"$rl:tuple": ["kept"]}]).splitlines()
    assert "Let me look." in text
    assert "get_weather" in text
    assert "kept" in text
    assert not {"$rl:lc", "kwargs", "constructor", "lc", VIEW, "message"} & set(text)
