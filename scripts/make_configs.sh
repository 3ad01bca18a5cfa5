#!/usr/bin/env bash
# Write configs/<dataset>/d<d_m>.yaml for every table row, from delight_fairseq/recipes.py
# (the same source as scripts/train.sh). Run it after changing a recipe.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

for dataset in iwslt14_de_en wmt16_en_ro wmt14_en_de wmt14_en_fr; do
    mkdir -p "$ROOT/configs/$dataset"
    for d_m in $("$PYTHON" -m delight_fairseq.recipes rows "$dataset"); do
        "$PYTHON" -m delight_fairseq.recipes yaml "$dataset" "$d_m" 2>/dev/null \
            >"$ROOT/configs/$dataset/d$d_m.yaml"
    done
done
echo "wrote $(ls "$ROOT"/configs/*/d*.yaml | wc -l) configs under configs/"
