"""Run LangChain's own ``astream_events`` v2 / ``astream_log`` tests against the replay.

Usage (from the project root, in the venv that has the adapter and the dev extra)::

    python scripts/langchain_own_tests.py [--report PATH] [pytest args...]

It takes the ``langchain-core`` installed in this interpreter, gets that version's
sdist from PyPI once (``pip download --no-deps --no-binary :all:``) into
``.cache/langchain-sdists/`` (gitignored), extracts its ``tests/`` (never LangChain's
package source: the installed one is the one under test) and runs, unedited, the test
files that call those two methods, with ``-p runlog_langchain.pytest_replay``: every
call is recorded through ``Recorder`` into a store and answered by the replay (see that
module). Only the tests whose source calls ``astream_events``/``astream_log`` are
selected. The tests that cannot hold for a replay by their nature are listed, with the
reason, in ``adapters/langchain/lc_own_tests_inherent.txt`` and run as strict xfail.

Exit status: pytest's (0 when every replayed test passes and every listed one fails).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "langchain-sdists"
INHERENT = ROOT / "adapters" / "langchain" / "lc_own_tests_inherent.txt"
# LangChain's test files that call astream_events (v2) or astream_log; the v1 and v3
# event files are not replayed (runlog replays v2), and the selection inside each file
# is by source (--runlog-replay-callers-only).
FILES = [
    "tests/unit_tests/runnables/test_runnable_events_v2.py",
    "tests/unit_tests/runnables/test_runnable.py",
    "tests/unit_tests/fake/test_fake_chat_model.py",
]


def sdist_tests(version: str) -> Path:
    """The extracted ``tests/`` tree of ``langchain-core==version`` (downloaded once)."""
    name = f"langchain_core-{version}"
    dest = CACHE / name
    if (dest / "pyproject.toml").exists():
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"{name}.tar.gz"
    if not tarball.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", f"langchain-core=={version}",
                        "-d", str(CACHE)], check=True)
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith(f"{name}/tests/") or m.name == f"{name}/pyproject.toml"]
        tar.extractall(CACHE, members=members, filter="data")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", help="write the JSON summary here")
    args, rest = parser.parse_known_args(argv)
    from langchain_core import __version__ as version

    src = sdist_tests(version)
    cmd = [sys.executable, "-m", "pytest", "-p", "runlog_langchain.pytest_replay",
           "-p", "no:cacheprovider", "-q", "--timeout=60",
           f"--runlog-replay-inherent={INHERENT}", "--runlog-replay-callers-only",
           *([f"--runlog-replay-report={Path(args.report).resolve()}"] if args.report else []),
           *[f for f in FILES if (src / f).exists()], *rest]
    print(f"== LangChain's own tests against the replay (langchain-core {version})",
          flush=True)
    return subprocess.run(cmd, cwd=src).returncode


if __name__ == "__main__":
    sys.exit(main())
