#!/usr/bin/env bash
# Learning curves on Multi30k De->En (benchmarks/curves.py): the transformer 3+3 x 256
# and DeLighT at about 1/2 and 1/4 of its parameters, one run each, BLEU against
# wall clock and updates. Run it alone.
#
# Usage: bash benchmarks/curves.sh [MINUTES_PER_MODEL] [curves.py flags]   (default 60)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINUTES="${1:-60}"
shift || true
bash "$ROOT/scripts/setup.sh"
source "${DELIGHT_VENV:-$ROOT/.venv}/bin/activate"
python "$ROOT/benchmarks/curves.py" --minutes "$MINUTES" "$@"
