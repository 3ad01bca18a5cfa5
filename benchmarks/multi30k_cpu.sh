#!/usr/bin/env bash
# A small real run on the CPU: Multi30k German->English with the catalog's small-data
# recipe (multi30k_de_en, d_m 128): prepare -> train -> evaluate (average of the last 5
# epoch checkpoints, beam 5, sacreBLEU against the raw reference).
#
# Usage: bash benchmarks/multi30k_cpu.sh [UPDATES]   (default: the recipe's)
# Writes benchmarks/out/multi30k_cpu/{data-bin,checkpoints,checkpoints/eval/bleu.json}.
# The budget is a number of updates, so the BLEU does not depend on the machine's load.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/benchmarks/out/multi30k_cpu"
RAW="${MULTI30K:-$ROOT/../shared/data/multi30k}"
UPDATES=()
[[ -n "${1:-}" ]] && UPDATES=(--max-update "$1")

bash "$ROOT/scripts/setup.sh"
BIN="${DELIGHT_VENV:-$ROOT/.venv}/bin"
"$BIN/delight-prep" multi30k_de_en --raw "$RAW" --dest "$OUT/data-bin/multi30k_de_en"
rm -rf "$OUT/checkpoints"
"$BIN/delight-train" multi30k_de_en 128 --data-bin "$OUT/data-bin" "${UPDATES[@]}" \
    --save-dir "$OUT/checkpoints" --keep-last-epochs 5 --num-workers 0 --seed 1 \
    --log-format simple --log-interval 100 >"$OUT/train.log" 2>&1
"$BIN/delight-evaluate" multi30k_de_en "$OUT/checkpoints/checkpoint_last.pt" \
    --data-bin "$OUT/data-bin" --average 5 --ref "$RAW/test_2016_flickr.en"
