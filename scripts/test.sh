#!/usr/bin/env bash
# Set up the environment (once) and run lint and the whole test suite.
# Usage: bash scripts/test.sh [extra pytest args]
#   bash scripts/test.sh -m "not slow"   the fast tier only (a few minutes), for iteration
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DELIGHT_VENV:-$ROOT/.venv}"

bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
"$VENV/bin/ruff" check delight_fairseq tests scripts benchmarks
"$VENV/bin/ruff" format --check delight_fairseq tests scripts benchmarks
"$VENV/bin/python" -m pytest tests "$@"
