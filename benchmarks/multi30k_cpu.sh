#!/usr/bin/env bash
# A small real run on the CPU: Multi30k German->English, prepare -> train -> evaluate.
#
# Usage: bash benchmarks/multi30k_cpu.sh [UPDATES]   (default 1500 updates of ~3.3k tokens)
# Writes benchmarks/out/multi30k_cpu/{train.log, eval/, result.json}. The budget is a
# number of updates, not minutes, so that the BLEU does not depend on how busy the
# machine is; the wall-clock time is recorded beside it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UPDATES="${1:-1500}"
OUT="$ROOT/benchmarks/out/multi30k_cpu"
DATA_BIN="$OUT/data-bin"
MODEL=(--arch delight --delight-emb-out-dim 128 --share-all-embeddings
       --delight-enc-layers 4 --delight-enc-min-depth 3 --delight-enc-max-depth 6
       --delight-dec-layers 4 --delight-dec-min-depth 3 --delight-dec-max-depth 6
       --dropout 0.2 --ffn-dropout 0.2 --attention-dropout 0.05 --delight-dropout 0.05)

bash "$ROOT/scripts/setup.sh"
source "${DELIGHT_VENV:-$ROOT/.venv}/bin/activate"
mkdir -p "$OUT"
start=$(date +%s)

bash "$ROOT/scripts/prepare_multi30k.sh" --pair de-en --dest "$DATA_BIN/multi30k_de_en"
prepared=$(date +%s)

rm -rf "$OUT/checkpoints"
fairseq-train "$DATA_BIN/multi30k_de_en" --user-dir "$ROOT/delight_fairseq" "${MODEL[@]}" \
    --criterion delight_label_smoothed_cross_entropy --label-smoothing 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr 0.003 --lr-scheduler inverse_sqrt \
    --warmup-updates 400 --warmup-init-lr 1e-7 --max-tokens 4096 --max-update "$UPDATES" \
    --cpu --save-dir "$OUT/checkpoints" --keep-last-epochs 5 --num-workers 0 --seed 1 \
    --log-format simple --log-interval 100 >"$OUT/train.log" 2>&1
trained=$(date +%s)

# score against the raw reference when it is at hand (else the binarized test side)
REF=()
RAW_REF="${MULTI30K:-$ROOT/../shared/data/multi30k}/test_2016_flickr.en"
[[ -f "$RAW_REF" ]] && REF=(--ref "$RAW_REF")
DELIGHT_DATA_BIN="$DATA_BIN" bash "$ROOT/scripts/evaluate.sh" multi30k_de_en \
    "$OUT/checkpoints/checkpoint_last.pt" --average 5 "${REF[@]}"
done_at=$(date +%s)

python - "$OUT" "$UPDATES" "$((prepared - start))" "$((trained - prepared))" "$((done_at - trained))" <<'PY'
import json, re, sys
out, updates, prep, train, evaluate = sys.argv[1:]
bleu = json.load(open(f"{out}/checkpoints/eval/bleu.json"))
log = open(f"{out}/train.log").read()
params = re.search(r"parameters ([\d,]+)", log).group(1)
wps = [float(x) for x in re.findall(r"\| train \| .*?\| wps ([\d.]+)", log)]
result = {"updates": int(updates), "parameters": params, "prepare_s": int(prep),
          "train_s": int(train), "evaluate_s": int(evaluate),
          "train_wps_mean": round(sum(wps) / len(wps), 1) if wps else None, **bleu}
json.dump(result, open(f"{out}/result.json", "w"), indent=2)
print(json.dumps(result, indent=2))
PY
