"""LangChain adapter benchmark (issue 6): recording overhead per streamed token.

Three ways of consuming the same ``GenericFakeChatModel`` stream of N tokens, measured
in the same run, alternating, median of several repeats:

* plain:     ``async for c in model.astream(x)``, the baseline;
* langchain: ``async for e in model.astream_events(x, version="v2")``, LangChain's own
             streaming of the run's events, kept in memory only;
* runlog:    ``model.astream(x)`` with ``runlog_langchain.Recorder(store)`` attached,
             persisting every token to a SQLite store (the timing includes the final
             ``flush``, so every event is committed when the clock stops).

Overhead per token = (variant - plain) / N. Goal: runlog's overhead <= 0.5x LangChain's
(``../shared/perf-baselines.md``: astream_events v2 adds about 117 us/token here).
The same three are also measured for ``prompt | model | StrOutputParser()``, where the
recorder also stores each streamed chunk of the parser and the sequence.

Bytes on disk (issue 18): the same chain streaming 4,000 tokens (``--quick``: 1,000) into
a fresh SQLite store; the store's size after a checkpoint, less that of a store holding
only a one-token run of the same chain, per streamed token (all of a token's events
together: the model's, the parser's and the sequence's). Goal <= 200 B.

Run: ``python -m benchmarks.bench_langchain`` (``--quick``: fewer tokens and repeats).

``--instructions`` counts instead of timing: each variant runs once in its own process
under ``valgrind --tool=callgrind``, and the overhead is the difference in instructions
executed (all threads, user space: the kernel's work in syscalls is not counted). The
count does not move with the machine's load, which on this shared 2-vCPU box moves
the timed ratios by +-30 % from run to run. Under callgrind a program runs about 50x
slower, and the writer's commit pacing is in wall time, so the child runs with
``commit_interval`` scaled by the same factor (0.1 s), keeping its commits as full as
at full speed. Takes about 4 minutes for 1,000 tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from runlog_langchain import Recorder

import runlog


def make_model(n_tokens: int) -> GenericFakeChatModel:
    # GenericFakeChatModel streams words and the spaces between them as separate chunks
    words = (n_tokens + 1) // 2
    return GenericFakeChatModel(messages=iter([AIMessage(" ".join(["tok"] * words))]))


def make_chain(n_tokens: int) -> Runnable[Any, str]:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    return prompt | make_model(n_tokens) | StrOutputParser()


async def _plain(r: Runnable[Any, Any], x: Any) -> int:
    return sum([1 async for _ in r.astream(x)])


async def _lc_events(r: Runnable[Any, Any], x: Any) -> int:
    return sum([1 async for _ in r.astream_events(x, version="v2")])


async def _recorded(r: Runnable[Any, Any], x: Any, store: runlog.Store) -> int:
    rec = Recorder(store)
    n = sum([1 async for _ in r.astream(x, config={"callbacks": [rec]})])
    await store.aflush()
    if rec.failures:
        raise RuntimeError(f"recording failed: {rec.last_error}")
    return n


def _time(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, writer thread included)."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    asyncio.run(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def measure(factory: Callable[[int], Runnable[Any, Any]], x: Any, n: int, repeat: int,
            store: runlog.Store) -> dict[str, Any]:
    """Median wall and CPU time of each variant, alternating so drift hits all alike.

    CPU time is reported too because this machine is shared: on a loaded box wall time
    also measures the other processes, CPU time measures only the work done here.
    """
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "langchain": [],
                                                   "runlog": []}
    for _ in range(repeat):
        r = factory(n)
        times["plain"].append(_time(lambda r=r: _plain(r, x)))
        r = factory(n)
        times["langchain"].append(_time(lambda r=r: _lc_events(r, x)))
        r = factory(n)
        times["runlog"].append(_time(lambda r=r: _recorded(r, x, store)))
    out: dict[str, Any] = {"tokens": n}
    for i, clock in enumerate(("wall", "cpu")):
        med = {k: statistics.median(t[i] for t in v) for k, v in times.items()}
        lc_us = (med["langchain"] - med["plain"]) / n * 1e6
        ours_us = (med["runlog"] - med["plain"]) / n * 1e6
        out[clock] = {"plain_us": med["plain"] / n * 1e6, "langchain_overhead_us": lc_us,
                      "runlog_overhead_us": ours_us,
                      "ratio": ours_us / lc_us if lc_us > 0 else float("nan")}
    return out


def bytes_per_token(n: int) -> dict[str, Any]:
    """Bytes on disk per streamed token of ``prompt | model | parser`` (module doc)."""
    from benchmarks.bench_core import disk_bytes

    sizes = []
    with tempfile.TemporaryDirectory() as d:
        for tokens in (1, n):
            path = Path(d) / f"bytes-{tokens}.db"
            store = runlog.open(path)
            try:
                asyncio.run(_recorded(make_chain(tokens), {"q": "hi"}, store))
                events = store.backend.last_seq()
            finally:
                store.close()
            sizes.append((disk_bytes(path), events))
    (b1, e1), (bn, en) = sizes
    per = (bn - b1) / (n - 1)
    print(f"bytes chain {n:,} tokens: {en:,} events, {per:,.0f} B on disk per streamed "
          f"token, {(bn - b1) / (en - e1):,.0f} B per event (goal <= 200 B per token)",
          flush=True)
    return {"tokens": n, "events": en, "bytes_per_token": per,
            "bytes_per_event": (bn - b1) / (en - e1)}


VARIANTS = {"plain": _plain, "langchain": _lc_events}
SLOWDOWN = 50  # callgrind's, roughly: the factor the commit interval is scaled by


def _child(variant: str, n: int) -> None:
    """One run of ``variant`` on the model, for counting under callgrind. Every variant
    imports and warms up the same way, so the differences are the variants' own."""
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as d:
        store = runlog.open(Path(d) / "bench.db", commit_interval=0.002 * SLOWDOWN)
        try:
            asyncio.run(_recorded(make_model(20), "warm up", store))
            if variant == "runlog":
                asyncio.run(_recorded(make_model(n), "hi", store))
            else:
                asyncio.run(VARIANTS[variant](make_model(n), "hi"))
        finally:
            store.close()


def count_instructions(n: int) -> dict[str, Any]:
    """Instructions per token added by astream_events and by the recorder (module doc)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")

    def start(variant: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-m", "benchmarks.bench_langchain", "--child", variant,
             "--tokens", str(n)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent, env=os.environ.copy())

    counts: dict[str, int] = {}
    variants = ["plain", "langchain", "runlog"]
    while variants:  # two at a time: the machine has two CPUs
        running = {v: start(v) for v in variants[:2]}
        variants = variants[2:]
        for v, proc in running.items():
            _, err = proc.communicate()
            found = re.search(r"Collected : (\d+)", err)
            if proc.returncode != 0 or found is None:
                raise SystemExit(f"the {v} run failed under callgrind:\n{err[-2000:]}")
            counts[v] = int(found.group(1))
    lc = (counts["langchain"] - counts["plain"]) / n
    ours = (counts["runlog"] - counts["plain"]) / n
    print(f"model {n:,} tokens, instructions (callgrind): plain astream run "
          f"{counts['plain'] / 1e9:.2f} G in all; overhead per token: astream_events v2 "
          f"(memory) {lc:,.0f}, runlog Recorder (SQLite, flushed) {ours:,.0f}; ratio "
          f"{ours / lc:.2f}x (goal <= 0.5x)", flush=True)
    return {"tokens": n, "counts": counts, "langchain_overhead": lc,
            "runlog_overhead": ours, "ratio": ours / lc}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer tokens and repeats")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions under callgrind instead of timing")
    ap.add_argument("--tokens", type=int, default=1_000, help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=["plain", "langchain", "runlog"],
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.tokens)
        return {}
    if args.instructions:
        return {"instructions": count_instructions(args.tokens)}
    n = 1_000 if args.quick else 5_000
    repeat = 3 if args.quick else 7
    warnings.simplefilter("ignore")  # astream_events' beta warnings
    results: dict[str, Any] = {"bytes": bytes_per_token(1_000 if args.quick else 4_000)}
    with tempfile.TemporaryDirectory() as d:
        store = runlog.open(Path(d) / "bench.db")
        try:
            asyncio.run(_recorded(make_model(20), "warm up", store))
            for label, factory, x in (("model", make_model, "hi"),
                                      ("chain", make_chain, {"q": "hi"})):
                m = measure(factory, x, n, repeat, store)
                results[label] = m
                for clock in ("wall", "cpu"):
                    f = m[clock]
                    print(f"{label:<5} {clock:<4} {n:,} tokens: plain astream "
                          f"{f['plain_us']:7.1f} us/token; overhead per token: "
                          f"astream_events v2 (memory) {f['langchain_overhead_us']:7.1f} us, "
                          f"runlog Recorder (SQLite, flushed) "
                          f"{f['runlog_overhead_us']:7.1f} us; ratio {f['ratio']:.2f}x "
                          "(goal <= 0.5x)", flush=True)
        finally:
            store.close()
    return results


if __name__ == "__main__":
    main()
