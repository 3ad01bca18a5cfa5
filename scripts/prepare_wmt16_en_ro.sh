#!/usr/bin/env bash
# WMT'16 English->Romanian (Europarl v8 + SETimes2, newsdev2016, newstest2016) into
# data-bin/wmt16_en_ro, with a joint 35k sentencepiece BPE model.
#
# Usage: bash scripts/prepare_wmt16_en_ro.sh [--raw DIR] [--dest DIR] [more options]
#   --raw DIR: a folder with the release files (training-parallel-ep-v8.tgz, en-ro.txt.zip
#   from OPUS, dev.tgz, test.tgz), their extracted contents, or plain PREFIX.en/PREFIX.ro
#   files (newsdev2016.en, ...); without it they are downloaded.
#   A sample: --raw ../shared/data/wmt16-en-ro --train train-sample-europarl10k
#   More options: python -m delight_fairseq.prep wmt16_en_ro --help
# Env: WMT16_EN_RO_RAW (same as --raw), DELIGHT_VENV (default ./.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DELIGHT_VENV:-$ROOT/.venv}"
RAW="${WMT16_EN_RO_RAW:-}"

PYTHON=python
[[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python"
ARGS=()
[[ -n "$RAW" ]] && ARGS+=(--raw "$RAW")
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m delight_fairseq.prep wmt16_en_ro "${ARGS[@]}" "$@"
