"""Testing toolkit (issue 9): strategy generation, play(), and runlog.diff cost.

* ``programs()``: hypothesis time to generate one default example (no test body);
* ``play``: recording a fixed program through ``play`` vs the same calls made directly
  on the recorder (ratio = play's overhead: compiling the program, dispatching ops);
* ``diff``: ``runlog.diff`` of two recordings of a chain whose model streams N tokens
  (one differing) vs ``runlog.fold`` of one of them (ratio: diff does two reads, two
  run-tree folds, two ``runlog.fold``s and two JSON Patch computations).

``--quick`` uses smaller sizes. Figures are wall-clock on this machine; compare the
ratios, which are same-run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings

import runlog
from runlog.testing.strategies import Program, RunSpec, Token, play, programs


def _time(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_generation(n: int) -> float:
    @settings(max_examples=n, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(programs())
    def consume(program: Program) -> None:
        pass

    return _time(consume, repeat=1) / n


def bench_play(tokens: int) -> tuple[float, float]:
    program = Program((RunSpec("rag", actions=tuple(Token("t") for _ in range(tokens))),))

    def with_play() -> None:
        with runlog.open(":memory:") as store:
            play(program, store)

    def direct() -> None:
        with runlog.open(":memory:") as store:
            store.flush()
            run = store.start_run("rag", "chain", parent=None, inputs=None, tags=[],
                                  metadata={})
            for _ in range(tokens):
                run.token("t", None)
            run.end(None)
            store.flush()

    return _time(with_play), _time(direct)


def _chain(store: runlog.Store, tokens: int, odd: int | None) -> str:
    with store.run("rag", inputs={"q": "q"}) as root:
        with root.child("retriever", "retriever") as r:
            r.end(outputs={"documents": ["d"]})
        with root.child("model", "chat_model") as m:
            for i in range(tokens):
                m.token("X" if i == odd else "t")
            m.end(outputs={"content": "..."})
        root.end(outputs={"answer": "..."})
    return root.id


def bench_diff(tokens: int) -> tuple[float, float]:
    store = runlog.open(":memory:")
    a = _chain(store, tokens, None)
    b = _chain(store, tokens, tokens // 2)
    d = runlog.diff(store, a, b)
    assert d.first_divergence is not None
    assert "token 't' in A, 'X' in B" in d.first_divergence.describe()
    t_diff = _time(lambda: runlog.diff(store, a, b))
    t_fold = _time(lambda: runlog.fold(store.events(a, descendants=True)))
    store.close()
    return t_diff, t_fold


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)
    n_gen, n_tok, n_diff = (30, 2_000, 2_000) if args.quick else (100, 20_000, 20_000)

    per = bench_generation(n_gen)
    print(f"programs(): {per * 1000:.1f} ms per generated example ({n_gen} examples)")
    t_play, t_direct = bench_play(n_tok)
    print(f"play {n_tok} tokens: {t_play * 1000:.1f} ms; direct recorder calls: "
          f"{t_direct * 1000:.1f} ms; ratio {t_play / t_direct:.2f}x")
    t_diff, t_fold = bench_diff(n_diff)
    print(f"diff of two runs with {n_diff} tokens: {t_diff * 1000:.1f} ms; runlog.fold of "
          f"one: {t_fold * 1000:.1f} ms; ratio {t_diff / t_fold:.1f}x")


if __name__ == "__main__":
    main()
