#!/usr/bin/env bash
# The real-data shoot-out on this CPU: Multi30k German->English, DeLighT at two sizes
# against fairseq's transformer, each trained for the same wall-clock budget.
#
# Usage: [SEEDS="1 2"] [MODELS="..."] bash benchmarks/shootout.sh [MINUTES_PER_MODEL]
#        (default 10 minutes, seeds 1 and 2, all three models)
# Needs the Multi30k data-bin of benchmarks/multi30k_cpu.sh (it is made if missing).
# Run it alone: every model gets the same wall clock, so anything else using the
# cores skews the comparison.
# Writes benchmarks/out/shootout/<model>/seed<S>/{train.log,eval/,time.txt} and
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
        --keep-last-epochs 1 --no-epoch-checkpoints --num-workers 0
        --log-format simple --log-interval 50 --max-epoch 1000)
declare -A MODELS_ARGS=(
    [delight_d128]="--arch delight --delight-emb-out-dim 128 --delight-enc-layers 4 --delight-enc-min-depth 3 --delight-enc-max-depth 6 --delight-dec-layers 4 --delight-dec-min-depth 3 --delight-dec-max-depth 6 --dropout 0.2 --ffn-dropout 0.2 --attention-dropout 0.05 --delight-dropout 0.05 --lr 0.003 --warmup-updates 400"
    [delight_d192]="--arch delight --delight-emb-out-dim 192 --delight-enc-layers 4 --delight-enc-min-depth 3 --delight-enc-max-depth 6 --delight-dec-layers 4 --delight-dec-min-depth 3 --delight-dec-max-depth 6 --dropout 0.2 --ffn-dropout 0.2 --attention-dropout 0.05 --delight-dropout 0.05 --lr 0.003 --warmup-updates 400"
    [transformer_256]="--arch transformer --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 --decoder-embed-dim 256 --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024 --encoder-attention-heads 4 --decoder-attention-heads 4 --dropout 0.3 --lr 0.001 --warmup-updates 400"
)

MODEL_LIST=(${MODELS:-delight_d128 delight_d192 transformer_256})
for name in "${MODEL_LIST[@]}"; do
    [[ -n "${MODELS_ARGS[$name]:-}" ]] || { echo "[shootout] unknown model $name (known: ${!MODELS_ARGS[*]})" >&2; exit 2; }
done
# seeds outer, models inner: a slow drift of the machine touches every model alike
for seed in ${SEEDS:-1 2}; do
    for name in "${MODEL_LIST[@]}"; do
        dir="$OUT/$name/seed$seed"
        rm -rf "$dir" && mkdir -p "$dir"
        echo "[shootout] $name, seed $seed: $MINUTES minutes" >&2
        read -r -a model <<<"${MODELS_ARGS[$name]}"
        /usr/bin/time -v -o "$dir/time.txt" fairseq-train "$DATA" --user-dir "$ROOT/delight_fairseq" \
            "${model[@]}" "${COMMON[@]}" --seed "$seed" \
            --stop-time-hours "$(python -c "print($MINUTES / 60)")" \
            --save-dir "$dir" >"$dir/train.log" 2>&1
        DELIGHT_DATA_BIN="$(dirname "$DATA")" bash "$ROOT/scripts/evaluate.sh" multi30k_de_en \
            "$dir/checkpoint_best.pt" --ref "$RAW_REF" --lenpen 1.0 >&2
    done
done
python "$ROOT/benchmarks/shootout_report.py" "$OUT"
