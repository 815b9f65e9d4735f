"""The run page of a LangGraph run shows its graph steps (headless Chromium driving a
real ``runlog serve``; skipped locally without chromium/playwright, failing in CI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runlog_langgraph as rlg
from lg_scenarios import LOG_IN, interrupt_resume
from test_web_browser import (  # the project's browser fixtures
    EVIL,
    browser,  # noqa: F401
    page,  # noqa: F401
    start_server,
    stop_server,
)

import runlog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graph_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    path = tmp_path_factory.mktemp("lgweb") / "runs.db"
    with runlog.open(path) as store, rlg.record(store) as rec:
        interrupt_resume().invoke({"log": [EVIL]}, {"configurable": {"thread_id": "w"}})
        from lg_scenarios import two_node
        two_node().invoke(LOG_IN)
    return path, rec.graph_ids[0], rec.graph_ids[1]


@pytest.fixture(scope="module")
def lg_server(graph_db: tuple[Path, str, str]) -> Iterator[str]:
    proc, url = start_server(graph_db[0])
    try:
        yield url.rstrip("/")
    finally:
        stop_server(proc)


def test_run_page_shows_graph_steps(page: Any, lg_server: str,  # noqa: F811
                                    graph_db: tuple[Path, str, str]) -> None:
    _, interrupted, plain = graph_db
    page.goto(f"{lg_server}/runs/{interrupted}")
    page.wait_for_selector("#graph-steps:not([hidden]) details.graph-step")
    summaries = page.locator("#graph-steps details.graph-step > summary").all_text_contents()
    assert summaries == ["step 0: (input)", "step 1: a", "step 2: (input)"]
    page.evaluate("document.querySelectorAll('#graph-steps details').forEach("
                  "d => d.open = true)")
    text = page.locator("#graph-steps").inner_text()
    assert "interrupt" in text
    assert "proceed?" in text
    assert "add /log/-" in text
    assert json.dumps(EVIL) in text  # recorded HTML shows as text (inside the JSON)
    assert page.evaluate("window.__pwned") is None
    page.goto(f"{lg_server}/runs/{plain}")
    page.wait_for_selector("details.run")
    page.wait_for_selector("#graph-steps:not([hidden]) details.graph-step")
    assert page.locator("#graph-steps details.graph-step").count() == 3
