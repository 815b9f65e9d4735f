"""Where a recorded LangChain token's instructions go (issues 17, 18): one variant per
process, for counting under ``valgrind --tool=callgrind --separate-threads=yes``.

Each variant streams the same ``GenericFakeChatModel`` of N tokens with ``astream``; the
difference between two variants' counts at N=1200 and N=200, over 1000 tokens, is what
the extra part costs per token:

* plain:    no handler (the baseline);
* noop:     a ``Recorder`` whose ``on_llm_new_token`` returns at once: LangChain's own
            dispatch of the callback to an inline handler, the floor of any handler;
* lookup:   the callback's clock read and run lookup, nothing recorded;
* encode:   and the chunk's encoding (``encode_chunk``), not handed to the run;
* nowrite:  the whole callback and ``Run.token`` (envelope, chain digest, ``Pending``),
            the writer's ``put`` a list append (nothing queued, nothing written);
* runlog:   the recorder as shipped, SQLite store, flushed.

``benchmarks.lc_token_parts N VARIANT`` runs one; the writer thread's share is the
runlog variant's second thread in callgrind's per-thread output. The stream variants'
counts move by +-5 k per token from run to run (how the event loop and the chat
model's executor threads interleave), so the callback's parts are also counted in hot
loops, deterministic to a few hundred instructions (``h_*``; run them at N=1000 and
N=11000 with ``PYTHONHASHSEED=0``, the difference over 10,000):

* h_loop:          an empty loop (the floor of the method);
* h_dispatch_none: ``AsyncCallbackManagerForLLMRun.on_llm_new_token`` with no handler;
* h_dispatch_noop: with the do-nothing ``Recorder`` subclass (LangChain's dispatch,
                   ``Recorder.run_inline`` read three times);
* h_dispatch_attr: the same with ``run_inline`` a plain class attribute;
* h_dispatch_rec:  with the real recorder (dispatch and the whole callback);
* h_callback:      ``Recorder.on_llm_new_token`` called directly;
* h_encode:        ``encode_chunk`` alone;
* h_token:         ``Run.token`` alone (the chunk's bytes given).

In every ``h_*`` variant but the dispatch ones without the recorder, the writer's
``put`` is a list append: the writer thread is the stream variant's.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from langchain_core.outputs import ChatGenerationChunk
from runlog_langchain import Recorder
from runlog_langchain.codec import encode_chunk

import runlog
from benchmarks.bench_langchain import SLOWDOWN, make_model


class _Noop(Recorder):
    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: Any,
                         parent_run_id: Any = None, tags: Any = None,
                         **kwargs: Any) -> None:
        return


class _Lookup(Recorder):
    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: Any,
                         parent_run_id: Any = None, tags: Any = None,
                         **kwargs: Any) -> None:
        self.clock()
        last_id, last = self._last_token_run
        if not (run_id is last_id and last is not None):
            self._last_token_run = (run_id, self._runs.get(run_id))


class _Encode(Recorder):
    # _Lookup's body repeated, not called: a super() call would add its own frame to
    # the part this variant measures by difference
    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: Any,
                         parent_run_id: Any = None, tags: Any = None,
                         **kwargs: Any) -> None:
        self.clock()
        last_id, last = self._last_token_run
        if not (run_id is last_id and last is not None):
            self._last_token_run = (run_id, self._runs.get(run_id))
        if isinstance(chunk, ChatGenerationChunk):
            encode_chunk(chunk.message)


class _NoopAttr(_Noop):
    run_inline = True  # type: ignore[assignment]  # a plain attribute: no property call


CLASSES = {"noop": _Noop, "lookup": _Lookup, "encode": _Encode, "nowrite": Recorder,
           "runlog": Recorder}


async def _go(variant: str, n: int, store: runlog.Store) -> None:
    model = make_model(n)
    if variant == "plain":
        async for _ in model.astream("hi"):
            pass
        return
    rec = CLASSES[variant](store)
    async for _ in model.astream("hi", config={"callbacks": [rec]}):
        pass
    await store.aflush()
    if rec.failures:
        raise RuntimeError(f"recording failed: {rec.last_error}")


def _hot(variant: str, n: int, store: runlog.Store) -> None:
    """``n`` calls of one part of the token path, in a loop: no stream, no thread pool,
    so the count is the part's own (a stream's count also moves by +-5 k per token with
    how the event loop and LangChain's executor threads interleave)."""
    import uuid

    from langchain_core.callbacks.manager import AsyncCallbackManagerForLLMRun
    from langchain_core.messages import AIMessageChunk

    from runlog import codec

    rec = Recorder(store)
    run = store.recorder.start("model", "llm")
    rid = uuid.uuid4()
    rec._runs[rid] = run
    msg = AIMessageChunk(content="tok", id=f"lc_run--{rid}")
    chunk = ChatGenerationChunk(message=msg)
    codec.encode(msg)  # makes the class's template
    raw = encode_chunk(msg)
    assert raw is not None
    store.writer.put = [].append  # type: ignore[method-assign]  # events go nowhere
    try:
        if variant.startswith("h_dispatch"):
            handlers: list[Any] = {"h_dispatch_none": [], "h_dispatch_noop": [_Noop(store)],
                                   "h_dispatch_attr": [_NoopAttr(store)],
                                   "h_dispatch_rec": [rec]}[variant]
            mgr = AsyncCallbackManagerForLLMRun(
                run_id=rid, handlers=handlers, inheritable_handlers=handlers,
                parent_run_id=None, tags=[], inheritable_tags=[], metadata={},
                inheritable_metadata={})
            if not handlers:
                mgr.handlers = [object()]  # type: ignore[list-item]  # past "if not"
                mgr.handlers = []

            async def loop() -> None:
                for _ in range(n):
                    await mgr.on_llm_new_token("tok", chunk=chunk)
            asyncio.run(loop())
        elif variant == "h_callback":
            for _ in range(n):
                rec.on_llm_new_token("tok", chunk=chunk, run_id=rid, parent_run_id=None,
                                     tags=[])
        elif variant == "h_encode":
            for _ in range(n):
                encode_chunk(msg)
        elif variant == "h_token":
            for _ in range(n):
                run.token("tok", msg, time=1, chunk_json=raw)
        elif variant == "h_loop":
            for _ in range(n):
                pass
        else:
            raise SystemExit(f"unknown variant {variant}")
    finally:
        del store.writer.put
    if rec.failures:
        raise RuntimeError(f"recording failed: {rec.last_error}")


def main() -> None:
    n, variant = int(sys.argv[1]), sys.argv[2]
    warnings.simplefilter("ignore")
    if variant.startswith("h_"):
        with tempfile.TemporaryDirectory() as d:
            store = runlog.open(Path(d) / "parts.db")
            try:
                asyncio.run(_go("runlog", 20, store))
                _hot(variant, n, store)
            finally:
                store.close()
        return
    with tempfile.TemporaryDirectory() as d:
        store = runlog.open(Path(d) / "parts.db", commit_interval=0.002 * SLOWDOWN)
        try:
            asyncio.run(_go("runlog", 20, store))  # warm up: every variant alike
            if variant == "nowrite":
                # the run's events go nowhere: Run.token's work without the queue
                store.writer.put = [].append  # type: ignore[method-assign]
            asyncio.run(_go(variant, n, store))
        finally:
            if variant == "nowrite":
                del store.writer.put
            store.close()


if __name__ == "__main__":
    main()
