"""Take the web viewer screenshots in docs/img/ (runs list, and a run page while live).

    python scripts/web_screenshots.py [--out docs/img]

Records a few runs into a temporary store, starts ``runlog serve`` and a writer process
streaming tokens slowly, and photographs both pages with headless Debian chromium
through Playwright (the same setup as tests/test_web_browser.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import runlog
from runlog.cli.core import record_demo

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

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
                    browser.close()
            finally:
                server.terminate()
                server.wait(timeout=10)
    print(f"wrote {out / 'web-runs.png'} and {out / 'web-run-live.png'}")


if __name__ == "__main__":
    main()
