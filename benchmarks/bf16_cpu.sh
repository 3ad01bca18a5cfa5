#!/usr/bin/env bash
# bfloat16 training on the CPU for a few hundred updates on Multi30k, checking for NaN.
#
# Usage: [MAX_TOKENS=4096] bash benchmarks/bf16_cpu.sh [UPDATES]   (default 300)
# fairseq-train ties --bf16 to TPUs (it turns on --tpu), so this goes through
# fairseq-hydra-train with common.bf16=true and common.cpu=true. Writes
# benchmarks/out/bf16_cpu/{train.log,result.json}.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UPDATES="${1:-300}"
OUT="$ROOT/benchmarks/out/bf16_cpu"
DATA="$ROOT/benchmarks/out/multi30k_cpu/data-bin/multi30k_de_en"

source "${DELIGHT_VENV:-$ROOT/.venv}/bin/activate"
[[ -f "$DATA/dict.de.txt" ]] || bash "$ROOT/scripts/prepare_multi30k.sh" --pair de-en --dest "$DATA"
rm -rf "$OUT" && mkdir -p "$OUT"
start=$(date +%s)
fairseq-hydra-train --config-dir "$ROOT/configs/wmt16_en_ro" --config-name d128 \
    common.user_dir="$ROOT/delight_fairseq" common.cpu=true common.bf16=true \
    common.log_format=simple common.log_interval=25 \
    task.data="$DATA" task.source_lang=de task.target_lang=en \
    model.delight_enc_layers=4 model.delight_enc_min_depth=3 model.delight_enc_max_depth=6 \
    model.delight_dec_layers=4 model.delight_dec_min_depth=3 model.delight_dec_max_depth=6 \
    model.delight_emb_depth=3 model.dropout=0.2 model.ffn_dropout=0.2 \
    optimization.max_update="$UPDATES" optimization.update_freq=[1] optimization.lr=[0.003] \
    lr_scheduler.warmup_updates=200 dataset.num_workers=0 dataset.max_tokens="${MAX_TOKENS:-4096}" \
    checkpoint.save_dir="$OUT/checkpoints" checkpoint.no_epoch_checkpoints=true \
    hydra.run.dir="$OUT/hydra" >"$OUT/train.log" 2>&1
python - "$OUT" "$(( $(date +%s) - start ))" <<'PY'
import json, math, re, sys
out, seconds = sys.argv[1], int(sys.argv[2])
log = open(f"{out}/train.log").read()
losses = [float(x) for x in re.findall(r"train_inner.*?\bloss=([\d.a-z]+),", log)]
valid = [float(x) for x in re.findall(r"\| valid on 'valid' subset \| loss ([\d.a-z]+)", log)]
result = {"updates": int(re.findall(r"num_updates[= ](\d+)", log)[-1]), "seconds": seconds,
          "bf16": "'bf16': True" in log, "train_losses": losses, "valid_losses": valid,
          "all_finite": all(math.isfinite(v) for v in losses + valid)}
json.dump(result, open(f"{out}/result.json", "w"), indent=2)
print(json.dumps(result))
PY
