#!/usr/bin/env bash
# WMT'14 English->French, as fairseq's prepare-wmt14en2fr.sh, into data-bin/wmt14_en_fr.
#
# Usage: bash scripts/prepare_wmt14_en_fr.sh [--raw DIR] [--dest DIR] [more options]
#   --raw DIR: a folder with the release files (training-parallel-europarl-v7.tgz,
#   training-parallel-commoncrawl.tgz, training-parallel-un.tgz, training-parallel-nc-v9.tgz,
#   training-giga-fren.tar, test-full.tgz), their extracted contents, or plain
#   PREFIX.en/PREFIX.fr files; without it they are downloaded from statmt.org (tens of GB).
#   More options: python -m delight_fairseq.prep wmt14_en_fr --help
# Env: WMT14_EN_FR_RAW (same as --raw), DELIGHT_VENV (default ./.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DELIGHT_VENV:-$ROOT/.venv}"
RAW="${WMT14_EN_FR_RAW:-}"

PYTHON=python
[[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python"
ARGS=()
[[ -n "$RAW" ]] && ARGS+=(--raw "$RAW")
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m delight_fairseq.prep wmt14_en_fr "${ARGS[@]}" "$@"
