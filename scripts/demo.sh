#!/usr/bin/env bash
# The offline demo: set up the environment, then `delight-demo` (delight_fairseq/tools/demo.py):
# prepare Multi30k with `delight-prep`, train the small-data recipe for a fixed number of
# updates on the CPU, score the test set with sacreBLEU, translate a few sentences.
#
# Usage: bash scripts/demo.sh [MULTI30K_DIR]   (default: $MULTI30K or ../shared/data/multi30k;
#        without Multi30k, a generated task)
# Env:   DELIGHT_DEMO_DIR (default ./demo-output), DELIGHT_DEMO_UPDATES (default 450)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
ARGS=(--out "${DELIGHT_DEMO_DIR:-$ROOT/demo-output}")
[[ -n "${1:-}" ]] && ARGS+=(--multi30k "$1")
[[ -n "${DELIGHT_DEMO_UPDATES:-}" ]] && ARGS+=(--updates "$DELIGHT_DEMO_UPDATES")
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" exec "${DELIGHT_VENV:-$ROOT/.venv}/bin/delight-demo" "${ARGS[@]}"
