"""Log-view folding (issue 4): linear time, memory near the final state, vs LangChain.

The workload is LangChain's own benchmark shape (spec 2.5): a root run streaming N
one-character strings, i.e. 2 ops per patch (``/streamed_output/-`` and a whole-value
``replace /final_output``), read back from a store (memory backend, pages of 1000).

* ``fold``: ``runlog.fold(events)`` (the final RunState);
* ``diff=True``: iterating ``store.replay(view="log")``;
* ``diff=False``: iterating ``store.replay(view="log", diff=False)`` (a cumulative RunLog
  per patch, each its own, built when read; ``keep_ops=False``), the same reading the
  last item's state (``diff=False last``, the consumer of issue 16), the aliased fast
  path (``aliased=True``), with the cumulative op list (``keep_ops=True``, what
  ``RunLog.ops`` is in LangChain), and the drop-in ``runlog_langchain.stream_log``
  reading the last item (``drop-in last``, when langchain-core is installed);
* LangChain: ``RunLog +`` accumulation (``state = state + patch`` as its ``diff=False``
  does) over the same patches converted to ``langchain_core`` ``RunLogPatch``, at sizes
  it finishes, fitted with ``a*n^2 + b*n`` and extrapolated to the large size;
* memory: tracemalloc peak during ``fold`` vs the size of the state it returns, and
  the memory a consumer keeping every ``diff=False`` item holds (unread, and with every
  item's state read) vs LangChain's own list of ``RunLog +`` items.

Goals: 100k/10k time ratio <= 12x; >= 1000x faster than LangChain at the large size;
peak <= 2x the final state. ``--quick`` uses 2k/20k and LangChain at 250/500/1000.
"""

from __future__ import annotations

import argparse
import collections
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import runlog
from runlog.reducers import log_view


def _record(n: int) -> tuple[runlog.Store, str]:
    store = runlog.open(":memory:")
    run = store.start_run("gen", inputs={"n": n})
    for i in range(n):
        run.stream(chr(97 + i % 26))
    run.end("done")
    store.flush()
    # The recorded log is long-lived data the fold does not create: keep the cyclic GC
    # from rescanning it on every full collection (which made the large size look
    # superlinear in the first runs of this benchmark).
    gc.collect()
    gc.freeze()
    return store, run.id


def _time(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _drain(it: Any) -> int:
    n = 0
    for _ in it:
        n += 1
    return n


def _last_state(it: Any) -> Any:
    last = collections.deque(it, maxlen=1)
    return last[0].state if last else None


def ours(n: int) -> dict[str, float]:
    store, rid = _record(n)
    try:
        out = {
            "fold": _time(lambda: runlog.fold(store.events(rid, descendants=True))),
            "diff=True": _time(lambda: _drain(store.replay(rid, view="log"))),
            "diff=False": _time(lambda: _drain(store.replay(rid, view="log", diff=False,
                                                            keep_ops=False))),
            "diff=False last": _time(lambda: _last_state(store.replay(
                rid, view="log", diff=False, keep_ops=False))),
            "diff=False aliased": _time(lambda: _drain(store.replay(
                rid, view="log", diff=False, keep_ops=False, aliased=True))),
            "diff=False keep_ops": _time(lambda: _drain(store.replay(
                rid, view="log", diff=False, keep_ops=True)), repeat=1),
        }
        try:
            import runlog_langchain
        except ImportError:
            return out
        out["drop-in last"] = _time(lambda: _last_state(runlog_langchain.stream_log(
            store, rid, diff=False)))
        return out
    finally:
        store.close()
        gc.unfreeze()


def memory(n: int) -> tuple[int, int]:
    """(peak bytes while folding, bytes the returned state holds)."""
    store, rid = _record(n)
    try:
        gc.collect()
        tracemalloc.start()
        state = runlog.fold(store.events(rid, descendants=True, page_size=200))
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del state
        return peak, current
    finally:
        store.close()


def _held(build: Callable[[], Any]) -> int:
    """Bytes still allocated by what ``build`` returns while it is alive."""
    gc.collect()
    tracemalloc.start()
    kept = build()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return current


def memory_kept(n: int) -> dict[str, int] | None:
    """Bytes held by a list of every ``diff=False`` item, ours vs LangChain's."""
    try:
        import runlog_langchain
        from langchain_core.tracers.log_stream import RunLog, RunLogPatch
    except ImportError:
        return None
    store, rid = _record(n)
    try:
        def lc_list() -> list[Any]:
            # the patches are built inside the measurement: LangChain's items hold them
            patches = [RunLogPatch(*p.ops)
                       for p in log_view(store.events(rid, descendants=True))]
            out, state = [], RunLog(state=None)  # type: ignore[arg-type]
            for p in patches:
                state = state + p
                out.append(state)
            return out

        def ours_read() -> list[Any]:
            items = list(runlog_langchain.stream_log(store, rid, diff=False))
            for item in items:
                _ = item.state, item.ops
            return items

        return {
            "LangChain": _held(lc_list),
            "ours unread": _held(lambda: list(runlog_langchain.stream_log(
                store, rid, diff=False))),
            "ours all read": _held(ours_read),
        }
    finally:
        store.close()
        gc.unfreeze()


def langchain(n: int) -> float | None:
    try:
        from langchain_core.tracers.log_stream import RunLog, RunLogPatch
    except ImportError:
        return None
    store, rid = _record(n)
    try:
        patches = [RunLogPatch(*p.ops) for p in log_view(store.events(rid, descendants=True))]
    finally:
        store.close()

    def fold_lc() -> None:
        state = RunLog(state=None)  # type: ignore[arg-type]
        for p in patches:
            state = state + p

    return _time(fold_lc, repeat=1)


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares for t = a*n^2 + b*n."""
    s4 = sum(n**4 for n, _ in points)
    s3 = sum(n**3 for n, _ in points)
    s2 = sum(n**2 for n, _ in points)
    t2 = sum(t * n**2 for n, t in points)
    t1 = sum(t * n for n, t in points)
    det = s4 * s2 - s3 * s3
    a = (t2 * s2 - s3 * t1) / det
    b = (s4 * t1 - s3 * t2) / det
    return a, b


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--large", type=int, help="the large size (e.g. 50000)")
    args = parser.parse_args(argv)
    small, large = (2_000, 20_000) if args.quick else (10_000, 100_000)
    if args.large:
        large = args.large
    lc_sizes = [250, 500, 1_000] if args.quick else [1_000, 2_000, 4_000]

    res_small, res_large = ours(small), ours(large)
    print(f"fold of N one-char root chunks (2 ops/patch); best of 3; {small} vs {large}")
    for k in res_small:
        ratio = res_large[k] / res_small[k]
        print(f"  {k:22s} {small:>7}: {res_small[k] * 1e3:8.1f} ms   {large:>7}: "
              f"{res_large[k] * 1e3:8.1f} ms   ratio {ratio:5.1f}x (goal <= 12x)")

    peak, held = memory(large)
    print(f"memory, fold of {large}: peak {peak / 1e6:.2f} MB, final state {held / 1e6:.2f} MB,"
          f" peak/state {peak / held:.2f}x (goal <= 2x)")

    kept = memory_kept(lc_sizes[-1])
    if kept is not None:
        print(f"memory kept, every diff=False item of {lc_sizes[-1]} (drop-in stream_log): "
              + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in kept.items())
              + " (goal: ours <= LangChain)")

    points = []
    for n in lc_sizes:
        t = langchain(n)
        if t is None:
            print("langchain-core not installed: skipping the LangChain baseline")
            break
        points.append((n, t))
        mine = ours(n)["diff=False"]
        print(f"  LangChain RunLog +  {n:>7}: {t * 1e3:9.1f} ms   ours diff=False "
              f"{mine * 1e3:7.2f} ms   {t / mine:8.0f}x")
    out: dict[str, Any] = {"small": res_small, "large": res_large, "peak": peak,
                           "state": held}
    if len(points) >= 2:
        a, b = _fit(points)
        extrapolated = a * large**2 + b * large
        print(f"LangChain fitted t = {a:.3e}*n^2 + {b:.3e}*n -> {large}: {extrapolated:.0f} s "
              f"(extrapolated)")
        for k in ("diff=False", "diff=False last", "drop-in last"):
            if k in res_large:
                ratio = extrapolated / res_large[k]
                print(f"  ours {k:18s} {res_large[k]:.3f} s; ratio {ratio:,.0f}x "
                      "(goal >= 1000x)")
                out[f"ratio_vs_langchain {k}"] = ratio
        out["langchain_extrapolated_s"] = extrapolated
    return out


if __name__ == "__main__":
    main()
