#!/usr/bin/env bash
# Evaluate a checkpoint the paper's way: beam 5 and the row's length penalty,
# optional checkpoint averaging, subwords removed, detokenized, sacreBLEU with its
# signature; for WMT'14 En-De also tokenized BLEU after compound splitting (the
# number the paper reports).
#
# Usage: scripts/evaluate.sh DATASET CHECKPOINT [--average N] [--subset test]
#                            [--ref RAW_REFERENCE] [--lenpen X] [extra fairseq-generate args]
#   DATASET     a folder of $DELIGHT_DATA_BIN (default data-bin), e.g. wmt14_en_de
#   --average N average the last N epoch checkpoints beside CHECKPOINT first
#   --ref FILE  score against this raw reference (default: the binarized test side,
#               subwords removed and detokenized)
# Writes <checkpoint dir>/eval/: generate.log, <subset>.hyp/.ref, bleu.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DATA_BIN="${DELIGHT_DATA_BIN:-data-bin}"
export PATH="$(dirname "$PYTHON"):$PATH"

[[ $# -ge 2 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }
DATASET="$1" CKPT="$2"; shift 2
AVERAGE=0 SUBSET=test REF="" LENPEN=""
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --average) AVERAGE="$2"; shift 2 ;;
        --subset) SUBSET="$2"; shift 2 ;;
        --ref) REF="$2"; shift 2 ;;
        --lenpen) LENPEN="$2"; shift 2 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done
DATA="$DATA_BIN/$DATASET"
[[ -d "$DATA" ]] || { echo "error: no data-bin at $DATA (set DELIGHT_DATA_BIN)" >&2; exit 1; }
[[ -f "$CKPT" ]] || { echo "error: no checkpoint at $CKPT" >&2; exit 1; }
OUT="$(dirname "$CKPT")/eval"
mkdir -p "$OUT"

# the row's length penalty; 1.0 for data sets without a paper recipe
if [[ -z "$LENPEN" ]]; then
    LENPEN=$("$PYTHON" -m delight_fairseq.recipes lenpen "$DATASET" 2>/dev/null || echo 1.0)
fi
if [[ "$AVERAGE" -gt 0 ]]; then
    averaged="$(dirname "$CKPT")/checkpoint_avg$AVERAGE.pt"
    "$PYTHON" -m delight_fairseq.averaging --inputs "$(dirname "$CKPT")" \
        --num-epoch-checkpoints "$AVERAGE" --output "$averaged"
    CKPT="$averaged"
fi

# how the data was split into subwords decides how to undo it
# the target language, from the binarized files' names: <subset>.<src>-<tgt>.<lang>.idx
TGT_LANG=$(ls "$DATA/$SUBSET".*-*.idx 2>/dev/null | head -n1 | sed -E 's/.*\.[^.-]+-([^.]+)\.[^.]+\.idx$/\1/')
[[ -n "$TGT_LANG" ]] || { echo "error: no binarized '$SUBSET' split in $DATA" >&2; exit 1; }
SCORE_ARGS=()
if [[ -f "$DATA/code" ]]; then
    POST=subword_nmt                      # Moses-tokenized text: detokenize for sacreBLEU
    SCORE_ARGS+=(--detok-lang "${TGT_LANG}")
elif [[ -f "$DATA/spm.model" ]]; then
    POST=sentencepiece
else
    POST=none
fi
[[ "$DATASET" == wmt14_en_de ]] && SCORE_ARGS+=(--compound-split)
DEVICE=()
[[ "$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')" == 0 ]] && DEVICE=(--cpu)

echo "[evaluate] $CKPT on $DATA/$SUBSET: beam 5, lenpen $LENPEN, post-process $POST" >&2
fairseq-generate "$DATA" --user-dir "$ROOT/delight_fairseq" --path "$CKPT" \
    --gen-subset "$SUBSET" --beam 5 --lenpen "$LENPEN" --batch-size 128 \
    --post-process "$POST" "${DEVICE[@]}" "${EXTRA[@]}" >"$OUT/generate.log" 2>&1 \
    || { tail -n 20 "$OUT/generate.log" >&2; exit 1; }
"$PYTHON" -m delight_fairseq.scoring "$OUT/generate.log" "$OUT/$SUBSET" "${SCORE_ARGS[@]}" \
    | tee "$OUT/compound_split.txt" >&2
sacrebleu "${REF:-$OUT/$SUBSET.ref}" -i "$OUT/$SUBSET.hyp" -m bleu -w 2 -f json >"$OUT/sacrebleu.json"

"$PYTHON" - "$OUT" "$CKPT" "$LENPEN" <<'PY'
import json, re, sys
out, ckpt, lenpen = sys.argv[1:]
sb = json.load(open(f"{out}/sacrebleu.json"))
result = {"checkpoint": ckpt, "lenpen": float(lenpen), "sacrebleu": sb["score"],
          "signature": sb["signature"]}
match = re.search(r"BLEU = ([\d.]+)", open(f"{out}/compound_split.txt").read())
if match:
    result["compound_split_bleu"] = float(match.group(1))
json.dump(result, open(f"{out}/bleu.json", "w"), indent=2)
print(f"sacreBLEU {result['sacrebleu']:.2f} ({result['signature']})")
if match:
    print(f"tokenized BLEU after compound splitting {result['compound_split_bleu']:.2f}")
PY
