"""Take the web viewer screenshots in docs/img/.

    python scripts/web_screenshots.py [--out docs/img]

Records a few runs into a temporary store (among them a LangChain tool-calling agent,
twice, recorded by runlog_langchain), starts ``runlog serve`` and a writer process
streaming tokens slowly, and photographs the pages with headless Debian chromium
through Playwright (the same setup as tests/test_web_browser.py): the runs list, a run
page while live, an agent's run page (messages, tool calls, usage), its time travel
scrubber, and the compare view of the two agent runs. tests/test_web_content_browser.py
runs this script and checks the files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import runlog
from runlog.cli.core import record_demo

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

SHOTS = ("web-runs.png", "web-run-live.png", "web-run-content.png", "web-time-travel.png",
         "web-compare.png")

WRITER = textwrap.dedent("""
    import sys, time, runlog
    store = runlog.open(sys.argv[1])
    answer = ("The viewer follows the store's tail: each token is committed as its own "
              "event, pushed to the page through Server-Sent Events, and appended to the "
              "text you are reading while the model is still answering.")
    q = "How does the live view work?"
    with store.run("support-agent", "chain", inputs={"question": q},
                   tags=["prod", "agent"], metadata={"user": "ann", "ticket": 4711}) as root:
        with root.child("search_docs", "retriever", inputs={"query": q}) as r:
            time.sleep(0.4)
            r.end(outputs={"documents": ["docs/web.md", "docs/tail.md"]})
        with root.child("ChatModel", "chat_model", inputs={"messages": [q]},
                        metadata={"ls_model_name": "fake-chat"}) as m:
            time.sleep(0.6)
            print("streaming", root.id, flush=True)
            for word in answer.split(" "):
                m.token(word + " ")
                store.flush()
                time.sleep(0.12)
            m.end(outputs={"content": answer})
        root.end(outputs={"answer": answer})
""")


AGENT = textwrap.dedent("""
    import sys, runlog
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool
    from runlog_langchain import record

    @tool
    def get_weather(city: str) -> str:
        \"\"\"Current weather for a city.\"\"\"
        return {"Paris": "18 °C, light rain", "Rome": "27 °C, sunny"}[city]

    def agent_for(city, answer):
        prompt = ChatPromptTemplate.from_messages([
            ("system", "You are a weather assistant. Call a tool, then answer in one line."),
            ("human", "{question}")])
        call = AIMessage(content="", tool_calls=[
            {"name": "get_weather", "args": {"city": city}, "id": "call_7Qx2"}],
            usage_metadata={"input_tokens": 52, "output_tokens": 17, "total_tokens": 69})
        final = AIMessage(content=answer, usage_metadata={
            "input_tokens": 88, "output_tokens": 14, "total_tokens": 102})
        model = GenericFakeChatModel(messages=iter([call, final]), disable_streaming=True
                                     ).with_config(run_name="ChatModel")
        def agent(question):
            msgs = prompt.invoke({"question": question}).to_messages()
            ai = model.invoke(msgs)
            msgs.append(ai)
            for tc in ai.tool_calls:
                msgs.append(get_weather.invoke(tc))
            return model.invoke(msgs).content
        return RunnableLambda(agent).with_config(run_name="weather-agent", tags=["agent"])

    store = runlog.open(sys.argv[1])
    with record(store) as rec:
        agent_for("Paris", "It is 18 °C with light rain in Paris: take an umbrella."
                  ).invoke("Weather in Paris?")
        agent_for("Rome", "Rome is sunny at 27 °C.").invoke("Weather in Rome?")
    print(*rec.root_ids)
    store.close()
""")


def shoot_agent(page: Any, url: str, out: Path, paris: str, rome: str) -> None:
    """The agent's run page, its time travel, and the compare view of both agents."""
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.goto(f"{url}runs/{paris}")
    page.wait_for_selector("#tree .msg", state="attached")
    page.wait_for_selector("#live[data-state=closed]")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(out / "web-run-content.png"), full_page=True)
    # Time travel: the position just after the tool answered, before the final answer.
    index = page.evaluate(
        "() => { const s = document.getElementById('scrub'); return Number(s.max) - 3; }")
    page.fill("#scrub", str(index))
    page.dispatch_event("#scrub", "input")
    page.wait_for_function("() => document.getElementById('state').dataset.seq")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(out / "web-time-travel.png"))
    page.goto(f"{url}compare?a={paris}&b={rome}")
    page.wait_for_selector(".cmp-block")
    page.screenshot(path=str(out / "web-compare.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img", help="directory for the PNG files")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        with runlog.open(db) as store:
            record_demo(store)
            try:
                with store.run("summarize", "chain", inputs={"url": "https://example.com"},
                               tags=["batch"]) as run, run.child("fetch", "tool"):
                    raise TimeoutError("fetch took longer than 10 s")
            except TimeoutError:
                pass
            with store.run("classify", "chain", inputs={"text": "refund please"},
                           tags=["batch"]) as run:
                with run.child("ChatModel", "chat_model") as m:
                    for tok in ["billing", "/", "refund"]:
                        m.token(tok)
                    m.end(outputs={"content": "billing/refund"})
                run.end(outputs={"label": "billing/refund"})
        agents = subprocess.run([sys.executable, "-c", AGENT, str(db)], check=True,
                                capture_output=True, text=True, timeout=120)
        paris, rome = agents.stdout.split()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with subprocess.Popen([sys.executable, "-c", "from runlog.cli import main; main()",
                               "serve", "--db", str(db), "--port", "0", "--no-open"],
                              stdout=subprocess.PIPE, text=True, env=env) as server:
            assert server.stdout is not None
            url = server.stdout.readline().split()[-1]
            try:
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
                    page = browser.new_page(viewport={"width": 1280, "height": 560},
                                            device_scale_factor=1)
                    page.goto(url)
                    page.wait_for_selector("#live[data-state=live]")
                    with subprocess.Popen([sys.executable, "-c", WRITER, str(db)],
                                          stdout=subprocess.PIPE, text=True) as writer:
                        assert writer.stdout is not None
                        root_id = writer.stdout.readline().split()[-1]
                        page.wait_for_selector(f'tr[data-run-id="{root_id}"]')
                        page.wait_for_timeout(1200)  # let a few tokens arrive
                        page.screenshot(path=str(out / "web-runs.png"))
                        page.set_viewport_size({"width": 1280, "height": 900})
                        page.click(f'tr[data-run-id="{root_id}"] a.run-link')
                        page.wait_for_function(
                            "() => [...document.querySelectorAll('pre.stream')]"
                            ".some(p => p.textContent.length > 90)")
                        page.screenshot(path=str(out / "web-run-live.png"))
                        writer.wait(timeout=60)
                    shoot_agent(page, url, out, paris, rome)
                    browser.close()
            finally:
                server.terminate()
                server.wait(timeout=10)
    print(f"wrote {', '.join(str(out / n) for n in SHOTS)}")


if __name__ == "__main__":
    main()
