"""Every Python snippet in README.md and docs/*.md runs as written.

The snippets of one file run in order, in one namespace (as a reader goes down the
page: a later snippet may use the ``store`` an earlier one opened), in a fresh
temporary directory as the working directory. Top-level ``await``, ``async with`` and
``async for`` are allowed (such a statement runs in its own ``asyncio.run``).

A snippet that needs something the page does not create says so with an HTML comment
on the line just before its fence (invisible on the rendered page)::

    <!-- snippet: demo -->          the names of the DEMO fixture below
    <!-- snippet: langchain -->     the names of the LANGCHAIN fixture below
    <!-- snippet: demo follows -->  a live tail that waits by design: it runs for
                                    FOLLOW_SECONDS, then is cancelled
    <!-- snippet: not run: REASON -->  not executed; every such snippet is listed in
                                    NOT_RUN below with its reason (keep it short)

Fixtures (set up once per page, before the first snippet that asks for them):

* ``demo``: runlog's demo pipeline (``runlog demo``: a retriever, a prompt, a chat
  model streaming tokens, two tools, one failing) recorded into ``./runs.db``; gives
  ``store`` (open on it), ``run_id`` and ``trace_id`` (the demo's root run) and ``seq``
  (the last seq of that run).
* ``langchain``: a LangChain chain ``chain`` (``prompt | fake chat model | parser``,
  invoked with ``{"question": ...}``), its ``prompt``, ``StrOutputParser``, and one run
  of it recorded by runlog_langchain into ``./runs.db``: ``store`` and ``run_id``.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import runlog

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FOLLOW_SECONDS = 1.0

NOT_RUN = {
    ("docs/postgres.md", "needs a PostgreSQL server at the URL it shows"),
    ("docs/langchain.md", "app.handle(request) stands for the reader's own application"),
}
"""(page, reason) of every snippet that is not executed."""

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile(r"<!--\s*snippet:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    code: str
    mark: str  # "" when unmarked


def snippets(page: Path, root: Path = ROOT) -> list[Snippet]:
    """The ```python blocks of a page, with their line and the marker before them."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        found.append(Snippet(str(page.relative_to(root)), line, m.group(1),
                             mark.group(1) if mark else ""))
    return found


# ------------------------------------------------------------------ fixtures


def _demo(ns: dict[str, Any]) -> None:
    from runlog.cli.core import record_demo

    store = runlog.open("runs.db")
    run_id = record_demo(store)
    store.flush()
    ns.update(store=store, run_id=run_id, trace_id=run_id,
              seq=max(e.seq for e in store.events(run_id, descendants=True)))


def _langchain(ns: dict[str, Any]) -> None:
    runlog_langchain = pytest.importorskip("runlog_langchain")
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."),
                                               ("human", "{question}")])
    model = GenericFakeChatModel(messages=itertools.cycle([AIMessage("Hello there")]))
    chain = prompt | model | StrOutputParser()
    store = runlog.open("runs.db")
    with runlog_langchain.record(store) as rec:
        chain.invoke({"question": "q"})
    ns.update(chain=chain, prompt=prompt, StrOutputParser=StrOutputParser, store=store,
              run_id=rec.root_ids[-1])


FIXTURES = {"demo": _demo, "langchain": _langchain}


def _parse_mark(mark: str) -> tuple[str | None, bool, str | None]:
    """(fixture, follows, not-run reason) of a marker's text."""
    if mark.startswith("not run:"):
        return None, False, mark.removeprefix("not run:").strip()
    words = mark.split()
    follows = "follows" in words
    names = [w for w in words if w != "follows"]
    if len(names) > 1 or (names and names[0] not in FIXTURES):
        raise AssertionError(f"unknown snippet marker {mark!r}; see tests/test_docs_snippets.py")
    return (names[0] if names else None), follows, None


# ------------------------------------------------------------------ running


def _run(snippet: Snippet, ns: dict[str, Any], follows: bool) -> None:
    """Execute a snippet one top-level statement at a time, as a script would.

    Plain statements run as they are; a statement with a top-level ``await``,
    ``async with`` or ``async for`` runs in its own ``asyncio.run`` (so the code around
    it runs outside an event loop, where ending a root run waits for its commit).
    """
    where = f"{snippet.page}:{snippet.line}"
    tree = ast.parse(snippet.code, where)
    awaited = False
    for stmt in tree.body:
        module = ast.Module(body=[stmt], type_ignores=[])
        code = compile(module, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if not code.co_flags & inspect.CO_COROUTINE:
            exec(code, ns)
            continue
        awaited = True
        asyncio.run(_await(eval(code, ns), follows))
    assert awaited or not follows, f"{where}: 'follows' is for a snippet that awaits"


async def _await(coro: Any, follows: bool) -> None:
    if not follows:
        await coro
        return
    try:
        await asyncio.wait_for(coro, FOLLOW_SECONDS)
    except TimeoutError:
        pass  # still following live events, as it should


def _close_stores(ns: dict[str, Any]) -> None:
    for value in list(ns.values()):
        if isinstance(value, runlog.Store):
            value.close()


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_snippet_runs(page: Path, in_tmp: Path) -> None:
    ns: dict[str, Any] = {"__name__": "__snippet__"}
    ready: set[str] = set()
    try:
        for snippet in snippets(page):
            fixture, follows, reason = _parse_mark(snippet.mark)
            if reason is not None:
                continue  # checked against NOT_RUN below
            if fixture is not None and fixture not in ready:
                FIXTURES[fixture](ns)
                ready.add(fixture)
            try:
                _run(snippet, ns, follows)
            except Exception as e:
                raise AssertionError(
                    f"{snippet.page}:{snippet.line}: the snippet fails: "
                    f"{type(e).__name__}: {e}") from e
    finally:
        _close_stores(ns)


def test_not_run_snippets_are_the_listed_ones() -> None:
    marked = {(s.page, _parse_mark(s.mark)[2]) for p in PAGES for s in snippets(p)
              if s.mark.startswith("not run:")}
    assert marked == NOT_RUN


def test_every_marker_is_known() -> None:
    for page in PAGES:
        for s in snippets(page):
            _parse_mark(s.mark)  # raises on a marker this file does not define


def test_the_snippet_finder_sees_markers_and_fences(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n\n<!-- snippet: demo -->\n```python\nx = 1\n```\n\n"
                    "```python\ny = 2\n```\n```bash\nno\n```\n", encoding="utf-8")
    found = [(s.line, s.code, s.mark) for s in snippets(page, tmp_path)]
    assert found == [(4, "x = 1\n", "demo"), (8, "y = 2\n", "")]
