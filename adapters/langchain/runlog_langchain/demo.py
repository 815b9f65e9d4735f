"""``runlog demo --langchain``: the seed's RAG pipeline as a real LangChain chain.

The chain is built from LangChain's own pieces and fake models (no network): a keyword
retriever named ``Docs``, a chat prompt, ``GenericFakeChatModel`` (tagged ``model``)
streaming the answer word by word, and ``StrOutputParser``. It is recorded with
:func:`runlog_langchain.record` while the application streams it, then read back three
ways: the stored run tree, the ``astream_log`` patches LangChain would have yielded with
``include_names=["Docs"], include_types=["llm"]`` and the ``astream_events`` (v2) it
would have yielded with ``include_tags=["model"]``, both rebuilt from the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnablePassthrough
from rich.console import Console
from rich.markup import escape

from runlog import Store, content
from runlog.cli.render import run_tree
from runlog_langchain.context import record
from runlog_langchain.replay import stream_events, stream_log

__all__ = ["QUESTION", "build_rag", "run_demo"]

QUESTION = "What does runlog store?"
DOCS = [
    Document(page_content="runlog stores every start, stream and end event of a run.",
             metadata={"src": "events.md"}, id="doc-1"),
    Document(page_content="Events are append-only and replay as the exact bytes streamed.",
             metadata={"src": "storage.md"}, id="doc-2"),
    Document(page_content="A tail in another process follows runs token by token.",
             metadata={"src": "tail.md"}, id="doc-3"),
]
ANSWER = ("runlog stores each run's start, stream and end events in an append-only log, "
          "so a run can be followed live and replayed byte for byte.")


class KeywordRetriever(BaseRetriever):
    """Documents sharing a word (longer than 3 letters) with the query."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = {w.strip("?.,").lower() for w in query.split() if len(w) > 3}
        return [d for d in self.docs
                if words & {w.strip("?.,").lower() for w in d.page_content.split()}]


def _format_docs(docs: list[Document]) -> str:
    return "\n".join(f"- {d.page_content}" for d in docs)


def build_rag() -> Runnable[str, str]:
    """retriever (``Docs``) -> prompt -> chat model (tag ``model``) -> parser."""
    retriever = KeywordRetriever(docs=DOCS).with_config(run_name="Docs")
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer from the context.\n{context}"),
        ("human", "{question}"),
    ])
    model = GenericFakeChatModel(messages=iter([AIMessage(ANSWER)])).with_config(
        tags=["model"], metadata={"ls_model_name": "fake-chat"})
    chain = ({"context": retriever | _format_docs, "question": RunnablePassthrough()}
             | prompt | model | StrOutputParser())
    return chain.with_config(run_name="rag-demo", tags=["demo"],
                             metadata={"user": "demo", "app": "runlog-demo"})


def _short(value: Any, limit: int = 60) -> str:
    """A one-line preview: messages and documents by their text, dicts by their keys."""
    if isinstance(value, BaseMessage):
        text = f"{type(value).__name__}({value.content!r})"
    elif isinstance(value, Document):
        text = f"Document({value.page_content!r})"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_short(v, 20)}" for k, v in value.items()) + "}"
    elif isinstance(value, list) and value and isinstance(value[0], Document | BaseMessage):
        text = "[" + ", ".join(_short(v, 30) for v in value) + "]"
    else:
        text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _elide(items: list[Any], head: int, tail: int) -> list[tuple[int, Any] | None]:
    """``(index, item)`` for the first ``head`` and last ``tail`` items, ``None`` between."""
    if len(items) <= head + tail + 1:
        return list(enumerate(items))
    return [*enumerate(items[:head]), None,
            *((len(items) - tail + i, x) for i, x in enumerate(items[-tail:]))]


def run_demo(store: Store, *, delay: float = 0.0, out: Console | None = None,
             echo: Callable[[str], None] | None = None, head: int = 8,
             tail: int = 3) -> str:
    """Record the demo chain into ``store``, print the four views, return the root id.

    ``head``/``tail``: how many replayed patches/events to print at each end (the
    middle is one per streamed token and is summarised).
    """
    out = out or Console(highlight=False)
    write = echo or (lambda s: out.print(s, end=""))
    out.print(f"[bold]Recording a LangChain RAG chain into[/] {store.location}\n")
    out.print("[dim]live token stream (chain.stream, recorded by runlog_langchain.record):[/]")
    chain = build_rag()
    with record(store) as rec:
        for piece in chain.stream(QUESTION):
            write(piece)
            if delay:
                time.sleep(delay)
    out.print("\n")
    if rec.failures:
        out.print(f"[red]{rec.failures} recording failure(s): {rec.last_error}[/]")
    root = rec.root_ids[0]

    out.print("[bold]Stored run tree[/]")
    info = store.run_info(root)
    _, subtree = store.subtree_ids(root)
    runs = [r for r in store.trace_runs(info.trace_id) if r.run_id in subtree]
    # Read back as any reader would: from the stored JSON, shown by runlog.content as
    # messages, prompts and documents (no LangChain object is rebuilt to print it).
    outputs: dict[str, Any] = {}
    streamed: dict[str, str] = {}
    for e in store.events(root, descendants=True):
        if e.kind == "end":
            outputs[e.run_id] = content.preview(content.readable(e.envelope["data"]), None)
        elif e.kind == "stream" and e.channel == "token":
            streamed[e.run_id] = streamed.get(e.run_id, "") + str(e.data.get("token", ""))
    out.print(run_tree(runs, root, outputs, streamed))

    out.print('\n[bold]Replay as astream_log[/] [dim](include_names=["Docs"], '
              'include_types=["llm"])[/]')
    patches = list(stream_log(store, root, include_names=["Docs"], include_types=["llm"]))
    for entry in _elide(patches, head, tail):
        if entry is None:
            out.print(f"  [dim]... {len(patches) - head - tail} more patches, one per "
                      "streamed token ...[/]")
            continue
        i, patch = entry
        for op in patch.ops:
            out.print(f"  [dim]{i:>3}[/] {op['op']:<7} {escape(op['path']):<44} "
                      f"{escape(_short(op.get('value', '')))}", no_wrap=True,
                      overflow="ellipsis")

    out.print('\n[bold]Replay as astream_events v2[/] [dim](include_tags=["model"])[/]')
    events = list(stream_events(store, root, include_tags=["model"]))
    for entry in _elide(events, head, tail):
        if entry is None:
            out.print(f"  [dim]... {len(events) - head - tail} more events ...[/]")
            continue
        i, ev = entry
        data = ev.get("data", {})
        shown = data.get("chunk", data.get("output", data.get("input", "")))
        out.print(f"  [dim]{i:>3}[/] {ev['event']:<21} {escape(ev['name']):<21} "
                  f"{escape(_short(shown, 30)):<30} [dim]tags={','.join(ev['tags'])}[/]",
                  no_wrap=True, overflow="ellipsis")
    out.print(
        "\n[bold]Try next:[/]\n"
        f"  runlog show {root} --db {store.location}\n"
        f"  runlog replay {root} --view events --db {store.location}\n"
        "  (in Python) runlog_langchain.replay_fixtures(store, run_id) for offline tests")
    return root
