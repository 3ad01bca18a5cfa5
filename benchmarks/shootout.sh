#!/usr/bin/env bash
# The real-data shoot-out on this CPU: Multi30k German->English, DeLighT at two sizes
# against fairseq's transformer, each trained for the same wall-clock budget.
#
# Usage: bash benchmarks/shootout.sh [MINUTES_PER_MODEL]   (default 10)
# Needs the Multi30k data-bin of benchmarks/multi30k_cpu.sh (it is made if missing).
# Writes benchmarks/out/shootout/<model>/{train.log,eval/,time.txt} and
# benchmarks/out/shootout/results.json; benchmarks/shootout_report.py turns that into
# benchmarks/RESULTS.md and the plot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINUTES="${1:-10}"
OUT="$ROOT/benchmarks/out/shootout"
DATA="$ROOT/benchmarks/out/multi30k_cpu/data-bin/multi30k_de_en"
RAW_REF="${MULTI30K:-$ROOT/../shared/data/multi30k}/test_2016_flickr.en"

source "${DELIGHT_VENV:-$ROOT/.venv}/bin/activate"
[[ -f "$DATA/dict.de.txt" ]] || bash "$ROOT/scripts/prepare_multi30k.sh" --pair de-en --dest "$DATA"

COMMON=(--share-all-embeddings --criterion delight_label_smoothed_cross_entropy
        --label-smoothing 0.1 --optimizer adam --adam-betas '(0.9, 0.98)'
        --lr-scheduler inverse_sqrt --warmup-init-lr 1e-7 --max-tokens 4096 --cpu
        --keep-last-epochs 1 --no-epoch-checkpoints --num-workers 0 --seed 1
        --log-format simple --log-interval 50 --max-epoch 1000)
declare -A MODELS=(
    [delight_d128]="--arch delight --delight-emb-out-dim 128 --delight-enc-layers 4 --delight-enc-min-depth 3 --delight-enc-max-depth 6 --delight-dec-layers 4 --delight-dec-min-depth 3 --delight-dec-max-depth 6 --dropout 0.2 --ffn-dropout 0.2 --attention-dropout 0.05 --delight-dropout 0.05 --lr 0.003 --warmup-updates 400"
    [delight_d256]="--arch delight --delight-emb-out-dim 256 --delight-enc-layers 4 --delight-enc-min-depth 3 --delight-enc-max-depth 6 --delight-dec-layers 4 --delight-dec-min-depth 3 --delight-dec-max-depth 6 --dropout 0.25 --ffn-dropout 0.25 --attention-dropout 0.05 --delight-dropout 0.05 --lr 0.002 --warmup-updates 400"
    [transformer_256]="--arch transformer --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 --decoder-embed-dim 256 --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024 --encoder-attention-heads 4 --decoder-attention-heads 4 --dropout 0.3 --lr 0.001 --warmup-updates 400"
)

for name in delight_d128 delight_d256 transformer_256; do
    dir="$OUT/$name"
    rm -rf "$dir" && mkdir -p "$dir"
    echo "[shootout] $name: $MINUTES minutes" >&2
    read -r -a model <<<"${MODELS[$name]}"
    /usr/bin/time -v -o "$dir/time.txt" fairseq-train "$DATA" --user-dir "$ROOT/delight_fairseq" \
        "${model[@]}" "${COMMON[@]}" --stop-time-hours "$(python -c "print($MINUTES / 60)")" \
        --save-dir "$dir" >"$dir/train.log" 2>&1
    DELIGHT_DATA_BIN="$(dirname "$DATA")" bash "$ROOT/scripts/evaluate.sh" multi30k_de_en \
        "$dir/checkpoint_best.pt" --ref "$RAW_REF" --lenpen 1.0 >&2
done
python "$ROOT/benchmarks/shootout_report.py" "$OUT"
