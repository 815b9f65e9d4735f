"""The viewer's readable content, time travel, compare view, runs-list columns and
timeline labels in headless Chromium (a real ``runlog serve``), plus the screenshot
script that makes docs/web.md's pictures.

The LangChain-shaped store is written by ``content_fixtures.py`` in a subprocess, as
in tests/test_web_content.py. Browser setup (Debian chromium through Playwright, skip
locally / fail in CI when missing) is that of tests/test_web_browser.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from content_fixtures import EVIL, FORGED_PATH
from hypothesis import HealthCheck, given, settings
from test_content_render import json_values
from test_web_browser import (  # the same browser, server and page fixtures
    CHROMIUM_ARGS,
    WAIT_MS,
    _chromium,
    browser,
    page,
    start_server,
    stop_server,
    text_of,
)

import runlog
from runlog.content import readable, search_text

pytestmark = pytest.mark.slow
__all__ = ["browser", "page"]  # fixtures, imported for pytest
HERE = Path(__file__).parent
ROOT = HERE.parent


@pytest.fixture(scope="module")
def agent_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """Two agent recordings, a run full of HTML, and a slow pipeline; their ids."""
    where = tmp_path_factory.mktemp("agent-web")
    db = where / "agent.db"
    roots = []
    for args in ([], [], ["--evil"]):
        done = subprocess.run([sys.executable, str(HERE / "content_fixtures.py"), str(db),
                               *args], capture_output=True, text=True, cwd=where, timeout=120)
        assert done.returncode == 0, done.stderr
        roots.append(done.stdout.strip())
    return db, roots[:2], roots[2]


@pytest.fixture(scope="module")
def server(agent_db: tuple[Path, list[str], str]) -> Iterator[str]:
    proc, url = start_server(agent_db[0])
    try:
        yield url
    finally:
        stop_server(proc)
        assert not (agent_db[0].parent / FORGED_PATH).exists()


def run_node(page: Any, name: str, nth: int = 0) -> str:
    run_id = page.evaluate(
        "([n, i]) => [...document.querySelectorAll('details.run')]"
        ".filter(d => d.querySelector(':scope > summary .run-name').textContent === n)[i]"
        "?.dataset.runId", [name, nth])
    assert run_id, f"no run named {name!r} in the tree"
    return f'details.run[data-run-id="{run_id}"]'


def open_run(page: Any, server: str, run_id: str) -> None:
    page.goto(f"{server}runs/{run_id}")
    page.wait_for_selector("#tree .msg", state="attached")
    page.click("#expand")


def test_run_page_shows_messages_documents_and_the_stored_form(
        page: Any, server: str, agent_db: tuple[Path, list[str], str]) -> None:
    open_run(page, server, agent_db[1][0])
    model = run_node(page, "ChatOpenAI")
    out = f"{model} > .run-body .section-outputs"
    assert text_of(page, f"{out} .msg[data-role=ai] .msg-text") == "Let me look."
    assert text_of(page, f"{out} .tool-call .call-name") == "get_weather"
    assert text_of(page, f"{out} .tool-call .call-id") == "call_42"
    assert '"city": "Paris"' in text_of(page, f"{out} .tool-call pre")
    assert text_of(page, f"{out} .usage") == "31 in · 12 out · 43 total"
    inputs = f"{model} > .run-body .section-inputs"
    assert [r.text_content() for r in page.locator(f"{inputs} .msg .role").all()] == [
        "system", "human"]
    assert "usage 31 in · 12 out · 43 total" in text_of(page, f"{model} > summary .run-meta")
    docs = run_node(page, "Docs")
    assert text_of(page, f"{docs} .doc .msg-text") == "Paris is in France."
    assert '"src": "geo.md"' in text_of(page, f"{docs} .doc .doc-meta")
    tool = run_node(page, "get_weather")
    assert text_of(page, f"{tool} .msg[data-role=tool] .call-ref") == "result of call_42"
    prompt = run_node(page, "prompt")
    assert page.locator(f"{prompt} .prompt .msg").count() == 2
    forged = run_node(page, "forged")
    assert '"$rl:exception"' in text_of(page, f"{forged} .section-inputs")
    tree = str(page.locator("#tree").text_content())
    assert '"$rl:lc"' not in tree
    assert '"kwargs"' not in tree
    # one click away: the stored JSON, and back
    page.check("#raw")
    page.wait_for_function("() => document.getElementById('tree').textContent"
                           ".includes('\"$rl:lc\"')")
    assert page.locator(f"{out} .msg").count() == 0
    page.uncheck("#raw")
    page.wait_for_selector(f"{out} .msg")


def test_html_in_content_stays_text(page: Any, server: str,
                                    agent_db: tuple[Path, list[str], str]) -> None:
    page.goto(f"{server}runs/{agent_db[2]}")
    page.wait_for_selector("#tree .msg", state="attached")
    page.click("#expand")
    assert text_of(page, "#tree .section-inputs .msg .role") == EVIL
    assert text_of(page, "#tree .section-outputs .tool-call .call-name") == EVIL
    assert text_of(page, "#tree .section-outputs .doc .msg-text") == EVIL
    assert page.locator("#tree img").count() == 0
    assert page.locator("#tree script").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    page.goto(f"{server}?q=onerror")
    page.wait_for_selector("#runs tbody tr")
    assert EVIL in text_of(page, "#runs tbody .io-preview")
    assert page.locator("#runs img").count() == 0
    assert page.evaluate("() => window.__pwned") is None


def test_time_travel_shows_the_state_at_an_event(
        page: Any, server: str, agent_db: tuple[Path, list[str], str]) -> None:
    db, roots, _ = agent_db
    with runlog.open(db) as store:
        info = store.run_info(roots[0])
        events = list(store.events(roots[0], descendants=True))
        model = next(r for r in store.trace_runs(info.trace_id) if r.name == "ChatOpenAI")
    open_run(page, server, roots[0])
    assert page.locator("#timeline .tl-cursor").is_hidden()
    index = [e.seq for e in events].index(model.start_seq)
    page.fill("#scrub", str(index))
    page.dispatch_event("#scrub", "input")
    page.wait_for_function(f"() => document.getElementById('state').dataset.seq === "
                           f"'{model.start_seq}'")
    label = text_of(page, "#scrub-label")
    assert f"event {index + 1} of {len(events)}" in label
    assert "start of ChatOpenAI" in label
    names = [n.text_content() for n in page.locator("#state .state-run .run-name").all()]
    assert names == ["Docs", "prompt", "ChatOpenAI"]
    running = page.locator('#state .state-run[data-name="ChatOpenAI"] .status')
    assert running.text_content() == "running"
    assert text_of(page, '#state .state-run[data-name="Docs"] .doc .msg-text') == (
        "Paris is in France.")
    assert page.locator("#timeline .tl-cursor").is_visible()
    page.click("#scrub-next")
    page.wait_for_function(f"() => document.getElementById('state').dataset.seq === "
                           f"'{events[index + 1].seq}'")
    page.click("#scrub-end")
    page.wait_for_function(f"() => document.getElementById('state').dataset.seq === "
                           f"'{events[-1].seq}'")
    assert "18 C, light rain" in text_of(page, "#state")
    assert page.locator("#timeline .tl-cursor").is_hidden()


def test_timeline_labels_are_readable(page: Any, server: str,
                                      agent_db: tuple[Path, list[str], str]) -> None:
    open_run(page, server, agent_db[1][0])
    boxes = page.evaluate("""() => [...document.querySelectorAll('.tl-row')].map(row => {
        const r = (sel) => row.querySelector(sel).getBoundingClientRect();
        const text = row.querySelector('.tl-text');
        const rgb = getComputedStyle(text).color.match(/[0-9]+/g).map(Number);
        return {cls: text.className, text: text.textContent, bar: r('.tl-bar').toJSON(),
                box: r('.tl-text').toJSON(), track: r('.tl-track').toJSON(),
                light: rgb[0] + rgb[1] + rgb[2] > 600};
    })""")
    assert len(boxes) == 7
    for b in boxes:
        box, bar, track = b["box"], b["bar"], b["track"]
        assert track["left"] - 1 <= box["left"], b  # not clipped on either side
        assert box["right"] <= track["right"] + 1, b
        if b["light"]:  # light text only on its own bar
            assert b["cls"].endswith("inside"), b
            assert bar["left"] <= box["left"], b
            assert box["right"] <= bar["right"], b
        else:  # dark text never on top of its bar
            assert box["right"] <= bar["left"] or box["left"] >= bar["right"], b
    ttft = [b for b in boxes if "TTFT" in b["text"]]
    assert len(ttft) == 1  # the model's, in its label: no separate "TTFT" text to overlap
    assert page.evaluate("() => getComputedStyle(document.querySelector('.tl-ttft'), "
                         "'::after').content") in ("none", "normal")


def test_runs_list_columns_search_sort_and_compare(
        page: Any, server: str, agent_db: tuple[Path, list[str], str]) -> None:
    _, roots, _ = agent_db
    page.goto(server)
    row = page.locator(f'#runs tbody tr[data-run-id="{roots[0]}"]')
    row.wait_for()
    assert text_of(page, f'tr[data-run-id="{roots[0]}"] .io-preview') == (
        '{"question":"Weather in Paris?"} → {"answer":"18 C, light rain"}')
    assert text_of(page, f'tr[data-run-id="{roots[0]}"] .failed-children') == (
        "1 child run failed")
    page.wait_for_function(f"""() => document.querySelector(
        'tr[data-run-id="{roots[0]}"] td.tokens').textContent === '43'""")
    page.fill("input[name=q]", "light rain")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#runs tbody .run-link')].map(a => a.textContent)"
        ".sort().join() === 'agent,agent,get_weather,get_weather'")
    assert "q=light+rain" in page.url
    page.click("#clear")
    page.select_option("select[name=sort]", "tokens")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 3")
    assert "sort=tokens" in page.url
    for rid in roots:
        page.check(f'tr[data-run-id="{rid}"] input.pick')
    page.click("#compare")
    page.wait_for_selector(".cmp-block")
    assert text_of(page, "#verdict") == "same"
    assert page.locator(".cmp-block").count() == 7
    assert text_of(page, '.cmp-block[data-key="agent/get_weather"] [data-side=B] .call-ref') == (
        "result of call_42")


def test_run_page_header_counts_tokens_as_the_runs_list_does(
        page: Any, server: str, agent_db: tuple[Path, list[str], str]) -> None:
    """The models reported usage and streamed nothing: the header sums the usage (43),
    as the runs list's tokens column does, instead of "0 tokens" of streamed events."""
    _, roots, _ = agent_db
    open_run(page, server, roots[0])
    page.wait_for_function(
        "() => [...document.querySelectorAll('#summary span')]"
        ".some(s => s.textContent === '43 tokens')", timeout=WAIT_MS)


def test_runs_list_pages_through_many_runs(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "many.db"
    with runlog.open(db) as store:
        for i in range(105):
            with store.run(f"job-{i:03d}", inputs={"i": i}) as run:
                run.end(outputs={"i": i})
    proc, url = start_server(db)
    try:
        pg = browser.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.goto(url)
        pg.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 100")
        assert "more runs exist" in text_of(pg, "#page-info")
        assert pg.locator("#newer").is_hidden()
        pg.click("#more")
        pg.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 5")
        assert text_of(pg, "#page-info") == "runs 101–105"
        assert text_of(pg, "#runs tbody tr:last-child .run-link") == "job-000"
        pg.click("#newer")
        pg.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 100")
        assert text_of(pg, "#runs tbody tr:first-child .run-link") == "job-104"
        pg.close()
    finally:
        stop_server(proc)


def test_screenshot_script_writes_the_pictures_of_docs_web(tmp_path: Path) -> None:
    _chromium()
    assert CHROMIUM_ARGS
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "web_screenshots.py"),
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for name in ("web-runs.png", "web-run-live.png", "web-run-content.png",
                 "web-time-travel.png", "web-compare.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width = int.from_bytes(data[16:20], "big")
        assert width == 1280, (name, width)
        assert (ROOT / "docs" / "img" / name).exists(), name  # and docs/web.md shows it
        assert f"img/{name}" in (ROOT / "docs" / "web.md").read_text()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values())
def test_the_page_draws_any_view_without_error(page: Any, server: str, value: Any) -> None:
    """RL.content on what readable() makes of arbitrary stored JSON (forged tags,
    LangChain-shaped trees, odd types in every field): never throws, creates only its
    own elements, and shows every string of the value's text somewhere."""
    if not page.url.startswith(server):
        page.goto(server)
        page.wait_for_selector("#runs")
    node = readable(value)
    got = page.evaluate("""(text) => {
        const node = RL.content(RL.parse(text));
        const tags = new Set([...node.querySelectorAll('*')].map(n => n.tagName));
        return {text: node.textContent, tags: [...tags]};
    }""", orjson.dumps(node).decode())
    assert set(got["tags"]) <= {"DIV", "SPAN", "PRE", "CODE", "DETAILS", "SUMMARY"}
    for piece in search_text(value).splitlines():
        # (JSON shown as JSON escapes quotes, backslashes and control characters)
        if piece.strip() and piece.isprintable() and "\\" not in piece and '"' not in piece:
            assert piece in got["text"], (piece, got["text"][:300])


LIVE_WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
import runlog
from runlog import codec
from content_fixtures import AI_CALL, HUMAN, _Lc
codec.register(_Lc, "lc", lambda o: o.tree, _Lc)
store = runlog.open(sys.argv[1])
run = store.start_run("live-agent", "chat_model", inputs={"messages": [[_Lc(HUMAN)]]})
run.token("Let me")
store.flush()
print(run.id, flush=True)
sys.stdin.readline()
run.end(outputs=_Lc(AI_CALL))
store.flush()
store.close()
"""


def test_a_live_run_turns_readable_as_it_ends(
        page: Any, server: str, agent_db: tuple[Path, list[str], str]) -> None:
    with subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(agent_db[0]), str(HERE)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as w:
        assert w.stdin is not None
        assert w.stdout is not None
        run_id = w.stdout.readline().strip()
        page.goto(f"{server}runs/{run_id}")
        page.wait_for_selector("#live[data-state=live]")
        page.wait_for_selector("#tree .section-inputs .msg[data-role=human]")
        assert page.locator("#tree .section-outputs").is_hidden()
        w.stdin.write("end\n")
        w.stdin.flush()
        page.wait_for_selector("#tree .section-outputs .msg[data-role=ai] .tool-call")
        assert text_of(page, "#tree .section-outputs .call-name") == "get_weather"
        assert "usage 31 in · 12 out · 43 total" in text_of(page, "#tree summary .run-meta")
        assert w.wait(timeout=60) == 0
