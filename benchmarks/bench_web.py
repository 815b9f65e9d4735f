"""Web viewer benchmarks (issue 10): commit -> browser-stream latency, and the runs list.

``live``: a writer process records a chat model run, one token per commit (``token()``
then ``flush()``, a commit every ~5 ms), noting ``time.monotonic_ns()`` (system-wide on
Linux) just before each ``token()`` call: the latency is "token recorded -> received",
commit included (a timestamp taken when ``flush()`` returns comes after the background
writer's hand-off, later than some readers see the commit). Two followers run in the
same invocation:

* ``sse``:  ``runlog serve`` in its own process; this process reads
            ``/api/stream?run=...`` over HTTP (httpx) and notes when each token's SSE
            message arrives: the path a browser's EventSource takes;
* ``tail``: the baseline: ``store.tail()`` in its own process (what ``runlog tail``
            uses), noting when each token event is yielded.

The ratio sse/tail is what HTTP, SSE framing and the server add on top of the tail.

``list``: ``GET /api/runs`` (through the ASGI app in-process) over a store of many
traces: first as the page asks (``tokens=cached``: nothing counted yet, counts come
later), cold (token counts read from every trace's events) and warm (the per-trace
cache reads only what was committed since), against ``store.runs()`` alone.

``idle``: CPU of the ``runlog serve`` process while 5 streams are open and nothing is
written (the pages never poll; the server waits on the store's change notification).

Run: ``python -m benchmarks.bench_web`` (``--quick`` for smaller sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import runlog

WRITER = textwrap.dedent("""
    import json, sys, time, runlog
    store = runlog.open(sys.argv[1])
    n, pause = int(sys.argv[2]), float(sys.argv[3])
    sys.stdin.readline()  # both followers are ready
    commits = {}
    with store.run("bench-web", "chain") as root:
        with root.child("Model", "chat_model") as m:
            for i in range(n):
                commits[i] = time.monotonic_ns()
                m.token(str(i))
                store.flush()
                time.sleep(pause)
            m.end(outputs=None)
        root.end(outputs=None)
    print(json.dumps(commits), flush=True)
""")

TAILER = textwrap.dedent("""
    import json, sys, time, runlog
    store = runlog.open(sys.argv[1], create=False)
    got = {}
    print("ready", flush=True)
    for e in store.tail(after=int(sys.argv[2]), trace_id=None, run_id=None):
        if getattr(e, "kind", None) == "stream" and e.channel == "token":
            got[int(e.data["token"])] = time.monotonic_ns()
        elif getattr(e, "kind", None) == "end" and e.parent_id is None:
            break
    print(json.dumps(got), flush=True)
""")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def serve(db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from runlog.cli import main; main()", "serve", "--db",
         str(db), "--port", "0", "--no-open"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()[-1]


def bench_live(tokens: int, pause: float) -> dict[str, float]:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "live.db"
        runlog.open(db).close()
        server, url = serve(db)
        try:
            tailer = subprocess.Popen([sys.executable, "-c", TAILER, str(db), "0"],
                                      stdout=subprocess.PIPE, text=True)
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(tokens),
                                       str(pause)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            assert tailer.stdout is not None
            assert writer.stdin is not None
            assert writer.stdout is not None
            assert tailer.stdout.readline().strip() == "ready"
            sse: dict[int, int] = {}
            opened = threading.Event()

            def read_sse() -> None:
                # Global stream from now: the run does not exist yet.
                with httpx.stream("GET", url + "api/stream?after=0&kinds=token,end",
                                  timeout=60) as r:
                    opened.set()
                    for line in r.iter_lines():
                        if not line.startswith("data: "):
                            continue
                        e = json.loads(line[6:])
                        if e["kind"] == "stream":
                            sse[int(e["data"]["token"])] = time.monotonic_ns()
                        elif e["kind"] == "end" and e["parent_id"] is None:
                            return

            t = threading.Thread(target=read_sse, daemon=True)
            t.start()
            opened.wait(30)
            time.sleep(0.2)
            writer.stdin.write("go\n")
            writer.stdin.flush()
            commits = {int(k): v for k, v in json.loads(writer.stdout.readline()).items()}
            tail = {int(k): v for k, v in json.loads(tailer.stdout.readline()).items()}
            t.join(60)
            writer.wait(30)
            tailer.wait(30)
        finally:
            server.terminate()
            server.wait(10)
    out: dict[str, float] = {}
    for name, got in (("sse", sse), ("tail", tail)):
        missing = set(commits) - set(got)
        assert not missing, f"{name} missed tokens {sorted(missing)[:5]}"
        lat = [(got[i] - commits[i]) / 1e6 for i in commits]
        out[f"{name}_p50_ms"] = statistics.median(lat)
        out[f"{name}_p99_ms"] = pct(lat, 0.99)
    return out


def bench_list(traces: int, tokens: int) -> dict[str, float]:
    from starlette.testclient import TestClient

    from runlog.web import create_app

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "list.db"
        with runlog.open(db) as store:
            for t in range(traces):
                with store.run(f"trace-{t}", "chain") as root, \
                        root.child("Model", "chat_model") as m:
                    for i in range(tokens):
                        m.token(str(i))
        with runlog.open(db, create=False) as store:
            t0 = time.perf_counter()
            for _ in range(5):
                store.runs(roots_only=True, limit=101)
            base = (time.perf_counter() - t0) / 5
            with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
                t0 = time.perf_counter()  # what the page asks first: counted traces only
                rows = c.get("/api/runs?limit=100&tokens=cached").json()["runs"]
                first = time.perf_counter() - t0
                assert all(r["token_count"] is None for r in rows)
            with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
                t0 = time.perf_counter()
                assert len(c.get("/api/runs?limit=100").json()["runs"]) == min(traces, 100)
                cold = time.perf_counter() - t0
                t0 = time.perf_counter()
                for _ in range(5):
                    c.get("/api/runs?limit=100")
                warm = (time.perf_counter() - t0) / 5
    return {"runs_ms": base * 1000, "first_ms": first * 1000, "cold_ms": cold * 1000,
            "warm_ms": warm * 1000}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle(streams: int, seconds: float) -> dict[str, float]:
    """CPU of ``runlog serve`` while ``streams`` EventSource-like clients wait, idle."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "idle.db"
        with runlog.open(db) as s, s.run("x") as r:
            r.end(outputs=None)
        server, url = serve(db)
        stop = threading.Event()

        def hold() -> None:
            try:
                with httpx.stream("GET", url + "api/stream", timeout=None) as r:
                    for _ in r.iter_raw():
                        if stop.is_set():
                            return
            except httpx.HTTPError:  # the server stopped at the end of the measure
                return

        threads = [threading.Thread(target=hold, daemon=True) for _ in range(streams)]
        try:
            for t in threads:
                t.start()
            time.sleep(1.0)
            c0, t0 = cpu_seconds(server.pid), time.monotonic()
            time.sleep(seconds)
            cpu = (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0)
        finally:
            stop.set()
            server.terminate()
            server.wait(10)
    return {"cpu_percent": cpu * 100}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)
    tokens = 200 if args.quick else 1000
    live = bench_live(tokens, 0.005)
    print(f"live ({tokens} tokens, one commit each, ~5 ms apart; token() -> received)")
    print(f"  sse  (runlog serve -> HTTP client): p50 {live['sse_p50_ms']:.2f} ms, "
          f"p99 {live['sse_p99_ms']:.2f} ms")
    print(f"  tail (store.tail in a process):     p50 {live['tail_p50_ms']:.2f} ms, "
          f"p99 {live['tail_p99_ms']:.2f} ms")
    print(f"  ratio sse/tail: p50 {live['sse_p50_ms'] / live['tail_p50_ms']:.2f}x, "
          f"p99 {live['sse_p99_ms'] / live['tail_p99_ms']:.2f}x")
    idle = bench_idle(5, 3.0 if args.quick else 10.0)
    print(f"idle server, 5 open streams, no writes: {idle['cpu_percent']:.2f} % of a core")
    traces, per = (50, 200) if args.quick else (200, 1000)
    lst = bench_list(traces, per)
    print(f"runs list ({traces} traces x {per} tokens, 100 shown)")
    print(f"  store.runs() alone: {lst['runs_ms']:.2f} ms")
    print(f"  /api/runs?tokens=cached, first: {lst['first_ms']:.2f} ms "
          f"({lst['first_ms'] / lst['runs_ms']:.1f}x store.runs)")
    print(f"  /api/runs cold:     {lst['cold_ms']:.1f} ms "
          f"({lst['cold_ms'] / lst['runs_ms']:.0f}x store.runs)")
    print(f"  /api/runs warm:     {lst['warm_ms']:.2f} ms "
          f"({lst['warm_ms'] / lst['runs_ms']:.1f}x store.runs)")


if __name__ == "__main__":
    main()
