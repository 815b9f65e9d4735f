"""Every ``python`` block of docs/langgraph.md runs, in order, in one module (in a
temporary directory, where its ``runs.db`` is made)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "langgraph.md"


def test_docs_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    # a real module: LangGraph resolves a state's annotations in its module's globals
    module = types.ModuleType("langgraph_docs")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), module.__dict__)
    finally:
        store = module.__dict__.get("store")
        if store is not None:
            store.close()
