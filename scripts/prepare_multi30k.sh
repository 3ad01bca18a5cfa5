#!/usr/bin/env bash
# Multi30k task 1 (train 29k, val 1,014, test_2016_flickr 1,000) into
# data-bin/multi30k_<src>_<tgt>, with a joint 6k sentencepiece model on the raw text.
#
# Usage: bash scripts/prepare_multi30k.sh [--pair de-en|en-de|en-fr|fr-en] [--raw DIR]
#                                         [--dest DIR] [more options]
#   --raw DIR: a folder with {train,val,test_2016_flickr}.{en,de,fr} (plain or .gz); by
#   default $MULTI30K_RAW, $MULTI30K, or ../shared/data/multi30k when present; otherwise
#   the files are downloaded from the Multi30k repository.
#   More options: python -m delight_fairseq.prep multi30k --help
# Env: MULTI30K_RAW (same as --raw), DELIGHT_VENV (default ./.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DELIGHT_VENV:-$ROOT/.venv}"
RAW="${MULTI30K_RAW:-${MULTI30K:-}}"
SHARED="$ROOT/../shared/data/multi30k"

[[ -z "$RAW" && -f "$SHARED/train.en" ]] && RAW="$SHARED"
PYTHON=python
[[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python"
ARGS=()
[[ -n "$RAW" ]] && ARGS+=(--raw "$RAW")
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m delight_fairseq.prep multi30k "${ARGS[@]}" "$@"
