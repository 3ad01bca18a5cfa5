#!/usr/bin/env bash
# Train one row of a benchmark's recipe (delight_fairseq/catalog.py) with fairseq-train:
# the project's environment's `delight-train`.
#
# Usage: scripts/train.sh BENCHMARK D_M [--gpus N] [--data-bin DIR] [fairseq-train args]
#   e.g. scripts/train.sh wmt14_en_de 256 --gpus 8;  scripts/train.sh multi30k_de_en 192
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${DELIGHT_VENV:-$ROOT/.venv}/bin/delight-train" "$@"
