"""Run every benchmark: ``python -m benchmarks.run_all [--quick]``.

Each ``benchmarks/bench_*.py`` module has a ``main(argv)`` that prints its figures and
same-run ratios; this runs them one after another (never in parallel: they would
measure each other).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    only = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    failed = []
    for name in names:
        if only and name not in only:
            continue
        print(f"\n=== {name} {' '.join(flags)}", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").main(flags)
        except Exception as e:  # report and go on with the others
            failed.append(name)
            print(f"!!! {name} failed: {type(e).__name__}: {e}", flush=True)
        print(f"--- {name} took {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
