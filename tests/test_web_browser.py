"""The web viewer end to end: a real ``runlog serve`` process and headless Chromium.

Debian's ``chromium`` is driven through Playwright's Python package with
``executable_path`` (no browser download). Locally the tests skip when either is
missing; in CI (``CI`` set) they fail instead, because ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runlog

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
WAIT_MS = 20_000  # generous upper bound for a slow CI machine; never a timing assertion


def _unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI must run the browser tests (.ci/run installs Debian's "
                    "chromium and the dev extra)", pytrace=False)
    pytest.skip(what)


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium"
                                        if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        _unavailable("chromium is not installed (apt-get install -y chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web") / "runs.db"
    with runlog.open(path) as store:
        from runlog.cli.core import record_demo

        record_demo(store)
    return path


def start_server(db: Path, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """``runlog serve`` in its own process; returns it and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from runlog.cli import main; main()", "serve",
         "--db", str(db), "--port", str(port), "--no-open"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("runlog web viewer: "):
        proc.kill()
        out = line + proc.stdout.read()
        proc.wait()
        proc.stdout.close()
        pytest.fail(f"runlog serve did not start: {out}")
    return proc, line.split()[-1]


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=15)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[str]:
    proc, url = start_server(db)
    try:
        yield url
    finally:
        stop_server(proc)


PROBLEMS: dict[int, list[str]] = {}
"""Errors each open page reported (page errors, dialogs, console errors)."""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
          if m.type == "error" else None)
    pg.set_default_timeout(WAIT_MS)
    PROBLEMS[id(pg)] = problems
    try:
        yield pg
        assert problems == []
    finally:
        del PROBLEMS[id(pg)]
        context.close()


def text_of(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.text_content())


def run_node(page: Any, name: str) -> str:
    """The selector of the tree node (``details.run``) of the run with this name."""
    run_id = page.evaluate(
        "n => [...document.querySelectorAll('details.run')]"
        ".find(d => d.querySelector(':scope > summary .run-name').textContent === n)"
        "?.dataset.runId", name)
    assert run_id, f"no run named {name!r} in the tree"
    return f'details.run[data-run-id="{run_id}"]'


def test_runs_list_filter_and_open_a_run(page: Any, server: str) -> None:
    from playwright.sync_api import expect

    page.goto(server)
    row = page.locator("#runs tbody tr", has_text="rag-demo")
    row.wait_for()
    assert row.locator(".status").text_content() == "ok"
    # Counted by a second request the first time a trace is listed.
    expect(row.locator(".tokens")).to_have_text("25", timeout=WAIT_MS)
    assert "demo" in str(row.locator(".tags").text_content())
    page.wait_for_selector("#live[data-state=live]")

    # Text search over names, server-side; the URL keeps the filter.
    page.fill("input[name=q]", "fact")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#runs tbody .run-link')]"
        ".map(a => a.textContent).join() === 'fact_check'")
    assert "q=fact" in page.url
    assert "LookupError" in text_of(page, "#runs tbody .error-line")
    page.click("#clear")
    row.wait_for()

    row.locator("a.run-link").click()
    page.wait_for_selector("details.run")
    assert text_of(page, "#title") == "rag-demo"
    assert page.locator("details.run").count() == 6
    model = run_node(page, "FakeChatModel")
    assert text_of(page, f"{model} > .run-body pre.stream").startswith(
        "runlog stores each run's start")
    assert "TTFT" in text_of(page, f"{model} > summary .run-meta")
    assert page.locator(".tl-row").count() == 6
    assert page.locator(".tl-ttft:not([hidden])").count() == 1  # the model's first token
    page.click("#expand")
    assert page.locator("details.run[data-status=error]").count() == 1
    error_text = text_of(page, f"{run_node(page, 'fact_check')} > .run-body pre.error-box")
    assert "LookupError: no source for 'byte for byte'" in error_text
    assert "Traceback" in error_text
    assert text_of(page, "#live") == "finished"

    # A unique suffix of the id opens the same page, under the full id.
    full = page.url.rsplit("/", 1)[1]
    page.goto(f"{server}runs/{full[-12:]}")
    page.wait_for_selector("details.run")
    assert text_of(page, "#title") == "rag-demo"
    assert page.url.endswith(f"/runs/{full}")


WRITER = textwrap.dedent("""
    import sys, runlog
    store = runlog.open(sys.argv[1])
    root = store.start_run("live-e2e", "chain", inputs={"q": "live?"}, tags=["e2e"])
    model = root.start_child("LiveModel", "chat_model", inputs={"messages": ["live?"]})
    model.token("alpha ")
    model.token("beta ")
    store.flush()
    print(root.id, model.id, flush=True)
    sys.stdin.readline()
    model.token("gamma")
    store.flush()
    print("more", flush=True)
    sys.stdin.readline()
    model.end(outputs={"content": "alpha beta gamma"})
    root.end(outputs={"answer": "alpha beta gamma"})
    store.close()
    print("done", flush=True)
""")


def test_tokens_from_another_process_appear_live(page: Any, server: str, db: Path) -> None:
    page.goto(server)
    page.wait_for_selector("#live[data-state=live]")
    with subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdin is not None
        assert writer.stdout is not None
        try:
            root_id, model_id = writer.stdout.readline().split()
            # The new run appears in the open list, pushed by the server.
            row = page.locator(f'#runs tbody tr[data-run-id="{root_id}"]')
            row.wait_for()
            assert row.locator(".status").text_content() == "running"

            row.locator("a.run-link").click()
            node = f'details[data-run-id="{model_id}"]'
            stream = page.locator(f"{node} > .run-body pre.stream")
            page.wait_for_function(
                "s => document.querySelector(s)?.textContent === 'alpha beta '",
                arg=f"{node} > .run-body pre.stream")
            assert text_of(page, "#summary .status") == "running"
            page.wait_for_selector("#live[data-state=live]")
            page.evaluate("window.__samePage = true")

            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "more"
            page.wait_for_function(
                "s => document.querySelector(s)?.textContent === 'alpha beta gamma'",
                arg=f"{node} > .run-body pre.stream")
            assert stream.text_content() == "alpha beta gamma"

            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "done"
            page.wait_for_function(
                "() => document.querySelector('#summary .status')?.textContent === 'ok'")
            page.wait_for_selector("#live[data-state=closed]")
            assert page.evaluate("window.__samePage") is True  # live, not reloaded
            assert "3 tokens" in text_of(page, f"{node} > summary .run-meta")
        finally:
            writer.stdin.close()
            writer.wait(timeout=20)


def test_html_in_recorded_values_renders_as_text(page: Any, server: str, db: Path) -> None:
    with runlog.open(db) as store:
        with store.run(EVIL, "chain", inputs={"html": EVIL}, tags=[EVIL]) as root:
            with root.child(EVIL, "chat_model") as model:
                model.token(EVIL)
                model.token("<b>bold</b>")
                model.end(outputs=EVIL)
            try:
                with root.child("boom", "tool"):
                    raise RuntimeError(EVIL)
            except RuntimeError:
                pass
            root.end(outputs={"answer": EVIL})
        root_id = root.id

    page.goto(server)
    row = page.locator(f'#runs tbody tr[data-run-id="{root_id}"]')
    row.wait_for()
    assert row.locator("a.run-link").text_content() == EVIL
    assert row.locator(".tag").text_content() == EVIL
    assert page.locator("main img, main script, main b").count() == 0

    page.goto(f"{server}runs/{root_id}")
    page.wait_for_selector("details.run")
    page.click("#expand")
    assert text_of(page, "#title") == EVIL
    assert page.title() == f"runlog · {EVIL}"
    model = run_node(page, EVIL)  # the root has the same name: the first match is the root
    assert text_of(page, f"{model} > .run-body .section-inputs pre") == '{\n  "html": ' + \
        json.dumps(EVIL) + "\n}"
    child = page.evaluate(
        "() => document.querySelector('details.run[data-run-id] .children > details.run')"
        ".dataset.runId")
    assert text_of(page, f'details[data-run-id="{child}"] > .run-body pre.stream') == \
        EVIL + "<b>bold</b>"
    assert EVIL in text_of(page, f"{run_node(page, 'boom')} > .run-body pre.error-box")
    assert text_of(page, ".tl-row .tl-label") == EVIL
    assert page.locator("main img, main script, main b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_integers_beyond_2_53_show_every_digit(page: Any, server: str, db: Path) -> None:
    """JSON.parse would round 2^53 + 1 to ...992: the pages keep such integers exact."""
    big, low, meta = 2**53 + 1, -(2**63), 2**62 + 1
    with runlog.open(db) as store:
        with store.run("big-ints", "chain", inputs={"big": big, "low": low, "small": 3},
                       metadata={"id": meta}) as root:
            root.stream([big, 1.5])
            root.end(outputs={"sum": big + 2})
        root_id = root.id

    page.goto(f"{server}runs/{root_id}")
    page.wait_for_selector("details.run")
    node = f'details.run[data-run-id="{root_id}"]'
    inputs = text_of(page, f"{node} > .run-body .section-inputs pre")
    assert f'"big": {big},' in inputs
    assert f'"low": {low},' in inputs
    assert '"small": 3' in inputs
    assert f'"sum": {big + 2}' in text_of(page, f"{node} > .run-body .section-outputs pre")
    assert str(big) in text_of(page, f"{node} > .run-body .section-chunks pre")
    assert f'"id": {meta}' in text_of(page, f"{node} > .run-body details.metadata pre")
    assert "≈" not in text_of(page, f"{node} > .run-body")


RESUMING_WRITER = textwrap.dedent("""
    import sys, runlog
    store = runlog.open(sys.argv[1])
    root = store.start_run("resume-e2e", "chat_model")
    store.flush()
    print(root.id, flush=True)
    sys.stdin.readline()  # the page is open: these arrive through its stream
    for i in range(5):
        root.token(f"a{i} ")
    store.flush()
    print("written", flush=True)
    sys.stdin.readline()  # the server is down now
    for i in range(5):
        root.token(f"b{i} ")
    store.flush()
    print("written", flush=True)
    sys.stdin.readline()
    root.end(outputs=None)
    store.close()
    print("done", flush=True)
""")


def test_page_reconnects_to_a_restarted_server_without_gap_or_duplicate(
        page: Any, db: Path) -> None:
    """The server goes away mid-run and comes back on the same port: the page's
    EventSource reconnects with Last-Event-ID and gets exactly the missed tokens."""
    first, url = start_server(db)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    second = None
    with subprocess.Popen([sys.executable, "-c", RESUMING_WRITER, str(db)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdin is not None
        assert writer.stdout is not None
        try:
            run_id = writer.stdout.readline().strip()
            page.goto(f"{url}runs/{run_id}")
            page.wait_for_selector("#live[data-state=live]")
            page.evaluate("window.__samePage = true")
            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "written"
            stream = f'details[data-run-id="{run_id}"] > .run-body pre.stream'
            page.wait_for_function("s => document.querySelector(s)?.textContent === "
                                   "'a0 a1 a2 a3 a4 '", arg=stream)

            stop_server(first)
            page.wait_for_selector("#live[data-state=connecting]")
            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "written"

            second, _ = start_server(db, port)
            page.wait_for_function(
                "s => document.querySelector(s)?.textContent.includes('b4')", arg=stream)
            assert text_of(page, stream) == "a0 a1 a2 a3 a4 b0 b1 b2 b3 b4 "
            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "done"
            page.wait_for_function(
                "() => document.querySelector('#summary .status')?.textContent === 'ok'")
            assert text_of(page, stream) == "a0 a1 a2 a3 a4 b0 b1 b2 b3 b4 "
            assert page.evaluate("window.__samePage") is True
            # Every event arrived once: the server resumed after Last-Event-ID (the
            # page would drop a repeat, but counts it).
            assert page.evaluate("window.runlogStats") == {"applied": 12, "duplicates": 0}
            # The browser logs the refused reconnects while the server was down: expected.
            problems = PROBLEMS[id(page)]
            problems[:] = [p for p in problems if "net::ERR_" not in p]
        finally:
            writer.stdin.close()
            writer.wait(timeout=20)
            if first.poll() is None:
                stop_server(first)
            if second is not None:
                stop_server(second)


DYING_WRITER = textwrap.dedent("""
    import sys, time, runlog
    store = runlog.open(sys.argv[1], lease_seconds=1.0)
    root = store.start_run("dying-e2e", "chain")
    model = root.start_child("DyingModel", "chat_model")
    model.token("last ")
    store.flush()
    print(root.id, model.id, flush=True)
    time.sleep(120)  # killed long before
""")


def test_a_writer_killed_mid_run_shows_as_abandoned(page: Any, server: str, db: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", DYING_WRITER, str(db)],
                          stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        try:
            root_id, model_id = writer.stdout.readline().split()
            page.goto(f"{server}runs/{root_id}")
            page.wait_for_selector("#live[data-state=live]")
            assert text_of(page, "#summary .status") == "running"
        finally:
            writer.kill()  # SIGKILL: no end events, no lease release
            writer.wait(timeout=20)
        # The tail reports the expired lease; the page marks the run and its open child.
        page.wait_for_function(
            "() => document.querySelector('#summary .status')?.textContent === 'abandoned'")
        node = f'details[data-run-id="{model_id}"]'
        page.wait_for_selector(f"{node}[data-status=abandoned]")
        assert text_of(page, f"{node} > .run-body pre.stream") == "last "
