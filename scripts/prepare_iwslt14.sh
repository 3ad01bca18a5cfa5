#!/usr/bin/env bash
# IWSLT'14 German->English, as fairseq's prepare-iwslt14.sh, into data-bin/iwslt14_de_en.
#
# Usage: bash scripts/prepare_iwslt14.sh [--raw DIR] [--dest DIR] [more options]
#   --raw DIR: a folder with de-en.tgz (the IWSLT'14 release) or its extracted de-en/
#   folder; without it, de-en.tgz is downloaded from fairseq's mirror.
#   More options: python -m delight_fairseq.prep iwslt14 --help
# Env: IWSLT14_RAW (same as --raw), DELIGHT_VENV (default ./.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DELIGHT_VENV:-$ROOT/.venv}"
RAW="${IWSLT14_RAW:-}"

PYTHON=python
[[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python"
ARGS=()
[[ -n "$RAW" ]] && ARGS+=(--raw "$RAW")
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m delight_fairseq.prep iwslt14 "${ARGS[@]}" "$@"
