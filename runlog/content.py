"""LLM content as people read it: chat messages, prompts, documents, generations.

Stored values are JSON in the codec's tagged form (``docs/codec.md``); a LangChain
object is ``{"$rl:lc": dumpd(obj)}``, a constructor tree such as
``{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages",
"AIMessage"], "kwargs": {...}}``. Shown as it is, a chat turn is forty lines of that.
This module turns the **stored JSON** (never a decoded object) into a small tree of
*view nodes* that the CLI (``runlog show``) and the web viewer both render:

* ``message``: ``role`` (``system``, ``human``, ``ai``, ``tool``, a ``ChatMessage``'s
  own role...), ``content`` (text, or a list of content blocks), ``tool_calls``
  (``name``, ``args``, ``id``), ``tool_call_id`` and ``status`` of a tool result,
  ``usage`` (``usage_metadata``: ``input_tokens``, ``output_tokens``, ``total_tokens``),
  ``name``, ``id``, ``chunk`` (a streamed ``...Chunk``);
* ``document``: ``content`` (``page_content``), ``metadata``, ``id``;
* ``prompt``: ``messages`` (a ``ChatPromptValue``) or ``text`` (a ``StringPromptValue``);
* ``generation``: ``text``, ``message``, ``info``; an ``LLMResult`` (what a model run
  ends with) is ``generations`` holding them, with ``llm_output`` (and ``extra``: any
  other key the stored dict had);
* ``object``: any other LangChain class, ``class`` and its ``kwargs``; ``secret``;
* ``tag``: any other codec tag, ``tag`` and ``payload`` as stored (JSON to show as
  JSON, never to read nodes from); ``dict``: a dict stored as pairs (non-string keys,
  or keys that look like tags).

A node is a dict with the key ``"$rl:view"`` naming its kind. Every other dict in the
result is a plain stored dict, whose keys never start with ``$rl:`` (the codec stores a
dict with such a key as ``$rl:dict``, which becomes a ``dict`` node), so a renderer can
tell nodes from data, even in a forged store (a ``tag`` node's ``payload`` aside,
which is stored JSON verbatim). Nothing is imported or decoded: the
class names in a constructor tree are only compared with known ones (rule 1: reading
never runs foreign code), so this needs no LangChain and works on any store.

:func:`readable` builds the tree; :func:`to_text` and :func:`preview` write it for a
terminal; :func:`usage` sums token usage; :func:`search_text` is what a text search
looks at. None of them raises on any JSON value, however malformed or forged
(hypothesis-tested).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

__all__ = [
    "VIEW",
    "preview",
    "readable",
    "search_text",
    "to_text",
    "usage",
    "usage_text",
]

VIEW = "$rl:view"
"""The key that marks a view node (see the module docstring)."""

_TAG = "$rl:"
_MAX_DEPTH = 200

_ROLES = {
    "AIMessage": "ai", "AIMessageChunk": "ai",
    "HumanMessage": "human", "HumanMessageChunk": "human",
    "SystemMessage": "system", "SystemMessageChunk": "system",
    "ToolMessage": "tool", "ToolMessageChunk": "tool",
    "FunctionMessage": "function", "FunctionMessageChunk": "function",
    "ChatMessage": "chat", "ChatMessageChunk": "chat",
    "RemoveMessage": "remove",
}
_PLAIN_TYPES = {"ai": "AIMessage", "human": "HumanMessage", "system": "SystemMessage",
                "tool": "ToolMessage", "function": "FunctionMessage", "chat": "ChatMessage"}
_GENERATIONS = {"Generation", "GenerationChunk", "ChatGeneration", "ChatGenerationChunk"}
_LLM_RESULT = ("generations", "llm_output", "run", "type")
_USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens")


def _node(kind: str, **fields: Any) -> dict[str, Any]:
    return {VIEW: kind, **fields}


def _is_lc(v: Any) -> bool:
    return (type(v) is dict and v.get("lc") == 1 and type(v.get("type")) is str
            and type(v.get("id")) is list)


def _class_name(ident: list[Any]) -> str:
    return ".".join(str(p) if type(p) is str else _json(p) for p in ident)


def _json(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except (TypeError, orjson.JSONEncodeError):  # not JSON (only from Python callers)
        return repr(v)


def readable(stored: Any) -> Any:
    """The stored JSON value ``stored`` with LangChain values turned into view nodes.

    ``stored`` is what ``orjson.loads`` gives for a stored value (tags not decoded).
    Plain values come back as they are; the result is JSON again.
    """
    return _readable(stored, 0)


def _readable(v: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return _node("tag", tag="deep", payload=None)
    t = type(v)
    if t is list:
        return [_readable(x, depth + 1) for x in v]
    if t is not dict:
        return v
    if len(v) == 1:
        (key,) = v
        if type(key) is str and key.startswith(_TAG):
            return _tagged(key[len(_TAG):], v[key], depth + 1)
    if any(type(k) is str and k.startswith(_TAG) for k in v):
        # Not what the codec writes (it tags such a dict as a whole): a forged or
        # damaged value, shown as pairs so its keys cannot pass for a node.
        return _node("dict", pairs=[[k, _readable(x, depth + 1)] for k, x in v.items()])
    typ = v.get("type")
    if typ == "LLMResult" and type(v.get("generations")) is list:
        node = _node("generations",
                     generations=[_readable(g, depth + 1) for g in v["generations"]],
                     llm_output=_readable(v.get("llm_output"), depth + 1))
        extra = {k: _readable(x, depth + 1) for k, x in v.items() if k not in _LLM_RESULT}
        if extra:  # not LangChain's, but shown: a view never hides what was stored
            node["extra"] = extra
        return node
    if type(typ) is str and typ in _GENERATIONS and ("text" in v or "message" in v):
        return _generation(v, depth)
    return {k: _readable(x, depth + 1) for k, x in v.items()}


def _tagged(tag: str, payload: Any, depth: int) -> Any:
    if tag == "lc":
        return _lc(payload, depth) if _is_lc(payload) else _node(
            "tag", tag=tag, payload=payload)
    if tag == "lc_addable" and type(payload) is dict:
        return _readable(payload, depth)  # a dict LangChain merges with +; shown as one
    if tag in ("tuple", "set", "frozenset") and type(payload) is list:
        return _readable(payload, depth)
    if tag == "dict" and type(payload) is list and all(
            type(p) is list and len(p) == 2 for p in payload):
        return _node("dict", pairs=[[_readable(k, depth + 1), _readable(x, depth + 1)]
                                    for k, x in payload])
    return _node("tag", tag=tag, payload=payload)


def _kwargs(tree: dict[str, Any]) -> dict[str, Any]:
    kw = tree.get("kwargs")
    return kw if type(kw) is dict else {}


def _lc(tree: dict[str, Any], depth: int) -> Any:
    """A LangChain ``dumpd`` tree (nested constructors are plain dicts inside it)."""
    if depth > _MAX_DEPTH:
        return _node("tag", tag="deep", payload=None)
    kind, ident = tree["type"], tree["id"]
    cls = str(ident[-1]) if ident else ""
    if kind == "secret":
        return _node("secret", id=_class_name(ident))
    if kind != "constructor":
        return _node("object", **{"class": _class_name(ident)},
                     kwargs={"repr": tree.get("repr")} if "repr" in tree else {})
    kw = _kwargs(tree)

    def sub(x: Any) -> Any:
        return _lc(x, depth + 1) if _is_lc(x) else _readable(x, depth + 1)

    if cls in _ROLES:
        return _message(cls, kw, sub)
    if cls == "Document":
        return _node("document", content=sub(kw.get("page_content")),
                     metadata=sub(kw.get("metadata", {})), id=kw.get("id"))
    if cls == "ChatPromptValue" or cls == "ChatPromptValueConcrete":
        msgs = kw.get("messages")
        return _node("prompt", messages=[sub(m) for m in msgs] if type(msgs) is list
                     else sub(msgs))
    if cls == "StringPromptValue":
        return _node("prompt", text=sub(kw.get("text")))
    if cls in _GENERATIONS:
        return _generation(kw, depth, sub)
    if any(type(k) is str and k.startswith(_TAG) for k in kw):
        return _node("object", **{"class": _class_name(ident)}, kwargs=_readable(kw, depth))
    return _node("object", **{"class": _class_name(ident)},
                 kwargs={k: sub(x) for k, x in kw.items()})


def _message(cls: str, kw: dict[str, Any], sub: Any) -> dict[str, Any]:
    role = _ROLES[cls]
    if role == "chat" and type(kw.get("role")) is str:
        role = kw["role"]
    out = _node("message", role=role, content=sub(kw.get("content", "")))
    calls = kw.get("tool_calls")
    if type(calls) is list and calls:
        out["tool_calls"] = [_tool_call(c, sub) for c in calls]
    bad = kw.get("invalid_tool_calls")
    if type(bad) is list and bad:
        out["invalid_tool_calls"] = [_tool_call(c, sub) for c in bad]
    for key in ("tool_call_id", "status", "name", "id"):
        if kw.get(key) is not None:
            out[key] = sub(kw[key])
    if "artifact" in kw and kw["artifact"] is not None:
        out["artifact"] = sub(kw["artifact"])
    u = kw.get("usage_metadata")
    if type(u) is dict:
        out["usage"] = sub(u)
    if cls.endswith("Chunk"):
        out["chunk"] = True
    return out


def _tool_call(c: Any, sub: Any) -> Any:
    if type(c) is not dict:
        return sub(c)
    call = {"name": sub(c.get("name")), "args": sub(c.get("args")), "id": sub(c.get("id"))}
    if c.get("error") is not None:
        call["error"] = sub(c["error"])
    return call


def _generation(kw: dict[str, Any], depth: int, sub: Any = None) -> dict[str, Any]:
    if sub is None:
        def sub(x: Any) -> Any:
            return _readable(x, depth + 1)
    out = _node("generation", text=sub(kw.get("text")))
    msg = kw.get("message")
    if type(msg) is dict and type(msg.get("type")) is str and "content" in msg and (
            msg["type"] in _PLAIN_TYPES or msg["type"] in _ROLES):
        # a message dumped as a plain dict (``LLMResult.model_dump()``), not as dumpd
        cls: str = _PLAIN_TYPES.get(msg["type"]) or msg["type"]
        out["message"] = _message(cls, msg, sub)
    elif msg is not None:
        out["message"] = sub(msg)
    if kw.get("generation_info") is not None:
        out["info"] = sub(kw["generation_info"])
    return out


def _kind(v: Any) -> str | None:
    return v.get(VIEW) if type(v) is dict and type(v.get(VIEW)) is str else None


# ------------------------------------------------------------------------ usage


def usage(stored: Any) -> dict[str, int]:
    """Token usage (``usage_metadata``) summed over the messages in a stored value.

    ``{"input_tokens", "output_tokens", "total_tokens"}`` for the keys present (ints
    only; a forged or odd value is skipped); ``{}`` when there is none. Meant for a
    model run's outputs: its inputs' messages carry earlier turns' usage too.
    """
    total: dict[str, int] = {}
    for node in _walk(readable(stored)):
        if _kind(node) == "message" and type(node.get("usage")) is dict:
            for key in _USAGE_KEYS:
                n = node["usage"].get(key)
                if type(n) is int and 0 <= n < 2**53:
                    total[key] = total.get(key, 0) + n
    return total


def _walk(v: Any) -> Iterator[Any]:
    todo = [v]
    while todo:
        x = todo.pop()
        yield x
        if type(x) is dict:
            todo.extend(reversed(list(x.values())))
        elif type(x) is list:
            todo.extend(reversed(x))


def search_text(stored: Any) -> str:
    """The text a search looks at: every string of a stored value as people read it
    (:func:`readable`: a message's content, a document's text and metadata, plain
    dicts' keys and values), one per line, so ``"answer"`` is found in
    ``{"answer": "..."}`` and in a message alike, and neither a JSON escape nor the
    codec's structure (``$rl:lc``, ``kwargs``) gets in the way."""
    parts: list[str] = []
    todo = [readable(stored)]
    while todo:
        x = todo.pop()
        if type(x) is str:
            parts.append(x)
        elif type(x) is list:
            todo.extend(reversed(x))
        elif type(x) is dict:
            if VIEW in x:  # a node: its fields' values, not their names
                todo.extend(reversed([v for k, v in x.items() if k != VIEW]))
            else:
                for k, v in reversed(list(x.items())):
                    todo.append(v)
                    todo.append(k)
    return "\n".join(p for p in parts if type(p) is str)


# ------------------------------------------------------------------------ text


def _plain(v: Any) -> str:
    """A non-node value in one line: strings as they are, the rest as JSON."""
    if type(v) is str:
        return v
    if _kind(v) is not None or _has_nodes(v):
        return preview(v, None)
    return _json(v)


def _has_nodes(v: Any) -> bool:
    return any(_kind(x) is not None for x in _walk(v))


def _blocks_text(content: Any) -> str:
    """A message's content in one string: text blocks' text, other blocks as JSON."""
    if type(content) is str:
        return content
    if type(content) is list:
        out = []
        for b in content:
            if type(b) is str:
                out.append(b)
            elif type(b) is dict and b.get("type") == "text" and type(b.get("text")) is str:
                out.append(b["text"])
            else:
                out.append(f"[{_plain(b)}]")
        return "\n".join(out)
    return _plain(content)


def usage_text(u: Any) -> str:
    """Token usage in words: ``31 input, 12 output, 43 total``."""
    if type(u) is not dict:
        return _plain(u)
    parts = [f"{u[k]} {k.split('_')[0]}" for k in _USAGE_KEYS if k in u]
    return ", ".join(parts) if parts else _plain(u)


def _call_text(c: Any) -> str:
    if type(c) is not dict:
        return _plain(c)
    args = c.get("args")
    text = f"{_plain(c.get('name'))}({_plain(args) if args is not None else ''})"
    if c.get("id") is not None:
        text += f" id={_plain(c['id'])}"
    if c.get("error") is not None:
        text += f" error={_plain(c['error'])}"
    return text


def to_text(value: Any) -> str:
    """A readable value (:func:`readable`) as lines of text for a terminal, whole."""
    return "\n".join(_lines(value, 0))


def _lines(v: Any, depth: int) -> list[str]:
    if depth > _MAX_DEPTH:
        return ["…"]
    kind = _kind(v)
    if kind == "message":
        head = str(_plain(v.get("role")))
        if v.get("name") is not None:
            head += f" ({_plain(v['name'])})"
        if v.get("tool_call_id") is not None:
            head += f" [result of {_plain(v['tool_call_id'])}]"
        if v.get("status") not in (None, "success"):
            head += f" [{_plain(v['status'])}]"
        text = _blocks_text(v.get("content"))
        lines = [f"{head}: {text}" if "\n" not in text else f"{head}:"]
        if "\n" in text:
            lines += ["  " + t for t in text.split("\n")]
        lines += [f"  tool call {_call_text(c)}" for c in _list(v.get("tool_calls"))]
        lines += [f"  invalid tool call {_call_text(c)}"
                  for c in _list(v.get("invalid_tool_calls"))]
        if "usage" in v:
            lines.append(f"  usage: {usage_text(v['usage'])}")
        return lines
    if kind == "document":
        head = "document"
        if v.get("id") is not None:
            head += f" {_plain(v['id'])}"
        meta = v.get("metadata")
        if meta not in (None, {}):
            head += f" {_plain(meta)}"
        text = _plain(v.get("content"))
        return [f"{head}:", *("  " + t for t in text.split("\n"))]
    if kind == "prompt":
        if "text" in v:
            return ["prompt:", *("  " + t for t in _plain(v.get("text")).split("\n"))]
        return ["prompt:", *("  " + t for m in _list(v.get("messages"))
                             for t in _lines(m, depth + 1))]
    if kind == "generations":
        lines = []
        for batch in _list(v.get("generations")):
            for g in _list(batch) if type(batch) is list else [batch]:
                lines += _lines(g, depth + 1)
        if v.get("llm_output") is not None:
            lines.append(f"llm_output: {_plain(v['llm_output'])}")
        if type(v.get("extra")) is dict:
            lines += _lines(v["extra"], depth + 1)
        return lines or ["(no generations)"]
    if kind == "generation":
        if _kind(v.get("message")) == "message":
            lines = _lines(v["message"], depth + 1)
        else:
            lines = [f"generation: {_plain(v.get('text'))}"]
        if v.get("info") is not None:
            lines.append(f"  info: {_plain(v['info'])}")
        return lines
    if kind is not None:
        return [preview(v, None)]
    if type(v) is list and _has_nodes(v):
        return [t for x in v for t in _lines(x, depth + 1)]
    if type(v) is dict and _has_nodes(v):
        out = []
        for k, x in v.items():
            sub = _lines(x, depth + 1)
            if len(sub) == 1:
                out.append(f"{k}: {sub[0]}")
            else:
                out += [f"{k}:", *("  " + t for t in sub)]
        return out
    text = v if type(v) is str else _json(v)
    return text.split("\n")


def _list(v: Any) -> list[Any]:
    return v if type(v) is list else ([] if v is None else [v])


def preview(value: Any, limit: int | None = 120) -> str:
    """A readable value in one line (cut to ``limit`` characters with ``…``; ``None``:
    whole): ``ai: The answer…``, ``3 documents: …``, ``{"a": 1}``."""
    text = _one_line(value, 0)
    text = text.replace("\n", "⏎")
    if limit is not None and len(text) > limit:
        return text[: max(limit - 1, 0)] + "…"
    return text


def _one_line(v: Any, depth: int) -> str:
    if depth > _MAX_DEPTH:
        return "…"
    kind = _kind(v)
    if kind == "message":
        said = _blocks_text(v.get("content"))
        text = f"{_plain(v.get('role'))}:" + (f" {said}" if said else "")
        calls = _list(v.get("tool_calls"))
        if calls:
            text += " [tool calls: " + ", ".join(_call_text(c) for c in calls) + "]"
        if v.get("tool_call_id") is not None:
            text += f" [result of {_plain(v['tool_call_id'])}]"
        return text
    if kind == "document":
        return f"document: {_plain(v.get('content'))}"
    if kind == "prompt":
        if "text" in v:
            return f"prompt: {_plain(v.get('text'))}"
        return "prompt: " + " | ".join(_one_line(m, depth + 1)
                                       for m in _list(v.get("messages")))
    if kind == "generations":
        gens = [g for b in _list(v.get("generations"))
                for g in (b if type(b) is list else [b])]
        text = " | ".join(_one_line(g, depth + 1) for g in gens) or "(no generations)"
        if type(v.get("extra")) is dict:
            text += " " + _one_line(v["extra"], depth + 1)
        return text
    if kind == "generation":
        if _kind(v.get("message")) == "message":
            return _one_line(v["message"], depth + 1)
        return _plain(v.get("text"))
    if kind == "object":
        return f"{_plain(v.get('class'))}({_one_line(v.get('kwargs'), depth + 1)})"
    if kind == "secret":
        return f"secret {_plain(v.get('id'))}"
    if kind == "dict":
        return "{" + ", ".join(f"{_one_line(p[0], depth + 1)}: {_one_line(p[1], depth + 1)}"
                               if type(p) is list and len(p) == 2 else _one_line(p, depth + 1)
                               for p in _list(v.get("pairs"))) + "}"
    if kind is not None:  # a tag kept as stored
        return _json({_TAG + str(v.get("tag")): v.get("payload")})
    if type(v) is list:
        if v and all(_kind(x) == "document" for x in v):
            texts = " | ".join(_plain(x.get("content")) for x in v)
            return f"{len(v)} document{'s' if len(v) > 1 else ''}: {texts}"
        if v and all(_kind(x) is not None for x in v):
            return " | ".join(_one_line(x, depth + 1) for x in v)
        if _has_nodes(v):
            return "[" + ", ".join(_one_line(x, depth + 1) for x in v) + "]"
    if type(v) is dict and _has_nodes(v):
        return "{" + ", ".join(f"{k}: {_one_line(x, depth + 1)}" for k, x in v.items()) + "}"
    return v if type(v) is str else _json(v)
