#!/usr/bin/env bash
# The real-data shoot-out (benchmarks/shootout.py): Multi30k German->English, DeLighT
# against fairseq's transformer, each trained for the same wall-clock budget.
#
# Usage: [SEEDS="1 2"] [MODELS="..."] bash benchmarks/shootout.sh [MINUTES_PER_MODEL]
#        (default 10 minutes, seeds 1 and 2, every model of benchmarks/multi30k.py)
# Writes benchmarks/out/shootout/<model>/seed<S>/ and benchmarks/out/shootout/results.json.
# Run it alone: anything else using the cores skews the comparison.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
ARGS=("${1:-10}" --seeds ${SEEDS:-1 2})
[[ -n "${MODELS:-}" ]] && ARGS+=(--models $MODELS)
exec "${DELIGHT_VENV:-$ROOT/.venv}/bin/python" "$ROOT/benchmarks/shootout.py" "${ARGS[@]}"
