#!/usr/bin/env bash
# A virtual environment with another langchain-core, for the version matrix in .ci/run:
#   scripts/langchain_version_venv.sh NAME REQUIREMENT
# makes (or refreshes) .venv-lc-NAME/ with runlog-engine[dev] and runlog-langchain
# installed editable, then REQUIREMENT (e.g. "langchain-core==1.6.0", or
# "langchain-core<2" for the newest a user gets) in place of the dev extra's pin, and
# prints the venv's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"
requirement="$2"
venv=".venv-lc-$name"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
{
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e ".[dev]" -e adapters/langchain
  # after the dev extra, so its exact pin is replaced: pip then reports that pin as a
  # dependency conflict, which is expected here and filtered out
  "$venv/bin/python" -m pip install -q --upgrade "$requirement" 2>&1 \
    | grep -v "dependency conflicts\|requires langchain-core==\|^WARNING: Location\|dependency resolver" \
    || true
} >&2
"$venv/bin/python" - "$requirement" >&2 <<'PY'
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
req, got = Requirement(sys.argv[1]), version("langchain-core")
if not req.specifier.contains(got):
    sys.exit(f"installed langchain-core {got} does not satisfy {req}")
print(f"langchain-core {got} in", sys.prefix)
PY
echo "$venv"
