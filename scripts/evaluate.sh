#!/usr/bin/env bash
# Score a checkpoint the paper's way (beam 5, the benchmark's length penalty, sacreBLEU,
# compound-split BLEU for WMT'14 En-De): the project's environment's `delight-evaluate`.
#
# Usage: scripts/evaluate.sh BENCHMARK CHECKPOINT [--average N] [--subset test]
#                            [--ref RAW] [--lenpen X] [--data-bin DIR] [fairseq-generate args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${DELIGHT_VENV:-$ROOT/.venv}/bin/delight-evaluate" "$@"
