#!/usr/bin/env bash
# Train one row of the paper's tables with its recipe (spec section 9).
#
# Usage: scripts/train.sh DATASET D_M [--gpus N] [extra fairseq-train args]
#   DATASET: iwslt14_de_en | wmt16_en_ro | wmt14_en_de | wmt14_en_fr
#   The peak LR, schedule, warmup, updates and dropouts come from the row; the paper's
#   tokens per update are kept on any number of GPUs through --update-freq. Without a
#   GPU it trains on the CPU. Extra arguments come last and win (e.g. --max-update 100).
# Env: DELIGHT_DATA_BIN (default data-bin), PYTHON (default: the project's .venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DATA_BIN="${DELIGHT_DATA_BIN:-data-bin}"

[[ $# -ge 2 ]] || { sed -n '2,10p' "$0" >&2; exit 2; }
DATASET="$1" D_M="$2"; shift 2
GPUS=1
if [[ "${1:-}" == "--gpus" ]]; then GPUS="$2"; shift 2; fi

mapfile -t RECIPE < <("$PYTHON" -m delight_fairseq.recipes args "$DATASET" "$D_M" --gpus "$GPUS")
DATA="$DATA_BIN/$DATASET"
if ! ls "$DATA"/dict.*.txt >/dev/null 2>&1; then
    echo "error: no binarized data in $DATA: run the scripts/prepare_*.sh script for $DATASET first, or set DELIGHT_DATA_BIN" >&2
    exit 1
fi
export PATH="$(dirname "$PYTHON"):$PATH"

if [[ "$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')" == 0 ]]; then
    echo "[train] no GPU: training on the CPU with --update-freq for the paper's batch" >&2
    exec fairseq-train "$DATA" --user-dir "$ROOT/delight_fairseq" "${RECIPE[@]}" --cpu "$@"
elif [[ "$GPUS" -gt 1 ]]; then
    exec bash "$ROOT/scripts/train_distributed.sh" gpus "$GPUS" "$DATA" "${RECIPE[@]}" "$@"
else
    exec fairseq-train "$DATA" --user-dir "$ROOT/delight_fairseq" "${RECIPE[@]}" "$@"
fi
