#!/usr/bin/env bash
# The offline demo: set up, train a small DeLighT on CPU, translate, score BLEU.
#
# Usage: bash scripts/demo.sh [MULTI30K_DIR]
#   With Multi30k (train.de/en, val.de/en, test_2016_flickr.de/en: the given folder,
#   $MULTI30K, or ../shared/data/multi30k) it trains German->English for a fixed
#   time budget and scores the 1,000-sentence Flickr 2016 test set with sacreBLEU.
#   Without it, it generates a small synthetic task and does the same on that.
# Env: DELIGHT_DEMO_DIR (default ./demo-output), DELIGHT_DEMO_MINUTES (training budget, default 6)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${DELIGHT_DEMO_DIR:-$ROOT/demo-output}"
MINUTES="${DELIGHT_DEMO_MINUTES:-6}"
DATA="${1:-${MULTI30K:-$ROOT/../shared/data/multi30k}}"
USER_DIR="$ROOT/delight_fairseq"

bash "$ROOT/scripts/setup.sh"
source "${DELIGHT_VENV:-$ROOT/.venv}/bin/activate"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
mkdir -p "$OUT"
log() { echo "[demo] $*" >&2; }

if [[ -f "$DATA/train.de" && -f "$DATA/train.en" ]]; then
    log "Multi30k found in $DATA: German -> English"
    SRC=de TGT=en
    RAW="$OUT/raw"
    mkdir -p "$RAW"
    for split in train val test_2016_flickr; do
        for l in de en; do cp "$DATA/$split.$l" "$RAW/$split.$l"; done
    done
    python "$ROOT/scripts/spm.py" train --model-prefix "$OUT/spm" --vocab-size 6000 \
        "$RAW/train.de" "$RAW/train.en"
    for split in train val test_2016_flickr; do
        for l in de en; do
            python "$ROOT/scripts/spm.py" encode --model "$OUT/spm.model" "$RAW/$split.$l" "$RAW/$split.spm.$l"
        done
    done
    TRAINPREF="$RAW/train.spm" VALIDPREF="$RAW/val.spm" TESTPREF="$RAW/test_2016_flickr.spm"
    REF="$RAW/test_2016_flickr.en"
    BPE=(--bpe sentencepiece --sentencepiece-model "$OUT/spm.model")
    POST=(--post-process sentencepiece)
    MODEL=(--arch delight --delight-emb-out-dim 128 --share-all-embeddings --delight-emb-depth 3
           --delight-enc-layers 4 --delight-enc-min-depth 3 --delight-enc-max-depth 6
           --delight-dec-layers 4 --delight-dec-min-depth 3 --delight-dec-max-depth 6
           --dropout 0.2 --ffn-dropout 0.2 --attention-dropout 0.05 --delight-dropout 0.05)
    EXAMPLES=$'Ein Mann fährt Fahrrad auf einer Straße.\nZwei Kinder spielen im Park mit einem Hund.\nEine Frau sitzt an einem Tisch und liest ein Buch.'
else
    log "no Multi30k at $DATA: generating a synthetic task"
    SRC=src TGT=tgt
    RAW="$OUT/raw"
    python -m delight_fairseq.synthetic "$RAW" --train 3000 --valid 200 --test 300
    TRAINPREF="$RAW/train" VALIDPREF="$RAW/valid" TESTPREF="$RAW/test"
    REF="$RAW/test.tgt"
    BPE=() POST=()
    MODEL=(--arch delight --delight-emb-out-dim 64 --share-all-embeddings --delight-emb-depth 2
           --delight-enc-layers 2 --delight-enc-min-depth 2 --delight-enc-max-depth 3
           --delight-dec-layers 2 --delight-dec-min-depth 2 --delight-dec-max-depth 3
           --dropout 0.05 --ffn-dropout 0.05 --attention-dropout 0 --delight-dropout 0)
    MINUTES=$(( MINUTES < 2 ? MINUTES : 2 ))
    EXAMPLES=$'ein mann mag der rot auto\nder alt hund sieht ein klein kind und der baum'
fi

BIN="$OUT/data-bin"
rm -rf "$BIN"
log "binarizing into $BIN"
fairseq-preprocess --source-lang "$SRC" --target-lang "$TGT" \
    --trainpref "$TRAINPREF" --validpref "$VALIDPREF" --testpref "$TESTPREF" \
    --destdir "$BIN" --joined-dictionary --workers 2 >"$OUT/preprocess.log" 2>&1

log "training for $MINUTES minutes on CPU (log: $OUT/train.log)"
rm -rf "$OUT/checkpoints"
fairseq-train "$BIN" --user-dir "$USER_DIR" "${MODEL[@]}" \
    --criterion delight_label_smoothed_cross_entropy --label-smoothing 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr 0.003 --lr-scheduler inverse_sqrt \
    --warmup-updates 400 --warmup-init-lr 1e-7 --max-tokens 4096 --cpu \
    --stop-time-hours "$(python -c "print($MINUTES / 60)")" --max-epoch 100 \
    --save-dir "$OUT/checkpoints" --no-epoch-checkpoints --keep-last-epochs 1 \
    --log-format simple --log-interval 50 --num-workers 0 --seed 1 2>&1 | tee "$OUT/train.log" \
    | grep --line-buffered -E "DeLighT:|\| train \||\| valid \|" >&2

log "translating the test set (beam 5)"
fairseq-generate "$BIN" --user-dir "$USER_DIR" --path "$OUT/checkpoints/checkpoint_best.pt" \
    --gen-subset test --beam 5 --batch-size 64 --cpu "${POST[@]}" >"$OUT/generate.log" 2>&1
grep -P '^H-\d+\t' "$OUT/generate.log" | sed 's/^H-//' | sort -n -k1,1 | cut -f3 >"$OUT/test.hyp"
sacrebleu "$REF" -i "$OUT/test.hyp" -m bleu -b -w 2 >"$OUT/bleu.txt"
log "sacreBLEU on $(wc -l <"$OUT/test.hyp") test sentences: $(cat "$OUT/bleu.txt")"

log "fairseq-interactive on a few sentences:"
mapfile -t inputs <<<"$EXAMPLES"
mapfile -t outputs < <(printf '%s\n' "$EXAMPLES" | fairseq-interactive "$BIN" \
    --user-dir "$USER_DIR" --path "$OUT/checkpoints/checkpoint_best.pt" \
    --source-lang "$SRC" --target-lang "$TGT" --beam 5 --cpu "${BPE[@]}" 2>/dev/null \
    | awk -F'\t' '/^D-/ {print $3}')
for i in "${!inputs[@]}"; do
    printf '  %s\n    -> %s\n' "${inputs[$i]}" "${outputs[$i]:-}" >&2
done
echo "BLEU $(cat "$OUT/bleu.txt")"
