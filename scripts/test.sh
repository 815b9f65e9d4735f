#!/usr/bin/env bash
# The test command (README, .ci/run): lint, types, layering, then the test suite.
# Run it inside the virtual environment that has `pip install -e ".[dev]"` etc.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff";        ruff check runlog tests benchmarks adapters
echo "== mypy";        mypy && mypy adapters/langchain/runlog_langchain
echo "== layers";      lint-imports
echo "== pytest"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
# LangChain's own astream_events v2 / astream_log tests, unedited, against the replay
# (the sdist of the installed langchain-core, downloaded once into .cache/).
echo "== langchain's own tests"
python scripts/langchain_own_tests.py || status=$?
exit "$status"
