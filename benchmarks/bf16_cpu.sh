#!/usr/bin/env bash
# bfloat16 training on the CPU for a few hundred updates on Multi30k, checking for NaN.
#
# Usage: [MAX_TOKENS=4096] bash benchmarks/bf16_cpu.sh [UPDATES]   (default 300)
# fairseq-train ties --bf16 to TPUs (it turns on --tpu), so this goes through
# fairseq-hydra-train (configs/multi30k_de_en/d128.yaml) with common.bf16=true and
# common.cpu=true. Writes benchmarks/out/bf16_cpu/train.log; look for finite losses
# in its train_inner and valid lines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UPDATES="${1:-300}"
OUT="$ROOT/benchmarks/out/bf16_cpu"
DATA="$ROOT/benchmarks/out/multi30k_cpu/data-bin/multi30k_de_en"
BIN="${DELIGHT_VENV:-$ROOT/.venv}/bin"

[[ -f "$DATA/dict.de.txt" ]] || "$BIN/delight-prep" multi30k_de_en \
    --raw "${MULTI30K:-$ROOT/../shared/data/multi30k}" --dest "$DATA"
rm -rf "$OUT" && mkdir -p "$OUT"
"$BIN/fairseq-hydra-train" --config-dir "$ROOT/configs/multi30k_de_en" --config-name d128 \
    common.user_dir="$ROOT/delight_fairseq" common.cpu=true common.bf16=true \
    common.log_format=simple common.log_interval=25 task.data="$DATA" \
    optimization.max_update="$UPDATES" dataset.num_workers=0 \
    dataset.max_tokens="${MAX_TOKENS:-4096}" checkpoint.save_dir="$OUT/checkpoints" \
    checkpoint.no_epoch_checkpoints=true hydra.run.dir="$OUT/hydra" >"$OUT/train.log" 2>&1
grep -E "train_inner|valid on" "$OUT/train.log" | tail -n 5
if grep -qiE "loss=(nan|inf)|loss (nan|inf)" "$OUT/train.log"; then
    echo "[bf16] non-finite loss: see $OUT/train.log" >&2; exit 1
fi
echo "[bf16] $UPDATES updates, all logged losses finite"
