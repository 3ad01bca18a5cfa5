#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the pinned stack
# (constraints.txt): torch (the CPU wheel), fairseq-fixed built against it without build
# isolation (so pip never downloads a CUDA torch just to build it), and the
# plugin in editable mode with its test tools.
#
# Usage: bash scripts/setup.sh            (idempotent: seconds once done)
# Env:   DELIGHT_VENV        where the environment lives      (default .venv)
#        DELIGHT_WHEEL_CACHE where the fairseq wheel is kept (default ~/.cache/delight-fairseq)
#        PYTHON              the interpreter to build it from (default python3.11, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DELIGHT_VENV:-$ROOT/.venv}"
pinned() { sed -n "s/^$1==//p" "$ROOT/constraints.txt"; }
TORCH_VERSION=$(pinned torch)
FAIRSEQ_VERSION=$(pinned fairseq-fixed)
CACHE="${DELIGHT_WHEEL_CACHE:-$HOME/.cache/delight-fairseq}/torch-$TORCH_VERSION"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

log() { echo "[setup] $*" >&2; }

stamp_of() { cat "$ROOT/setup.py" "$ROOT/constraints.txt" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16; }
STAMP="$VENV/.delight-setup-$(stamp_of)"
if [[ -f "$STAMP" ]]; then
    exit 0
fi

version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$version" != "3.11" ]]; then
    log "error: Python 3.11 is required (found $version at $PYTHON); set PYTHON=/path/to/python3.11"
    exit 1
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
export PIP_CONSTRAINT="$ROOT/constraints.txt"

log "torch $TORCH_VERSION (CPU) and fairseq's build tools"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" setuptools wheel cython numpy

wheel=$(ls "$CACHE"/fairseq_fixed-"$FAIRSEQ_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [[ -z "$wheel" ]]; then
    log "building fairseq-fixed $FAIRSEQ_VERSION against torch $TORCH_VERSION (about 2-3 minutes, once)"
    mkdir -p "$CACHE"
    "${PIP[@]}" wheel -q --no-build-isolation --no-deps -w "$CACHE" "fairseq-fixed==$FAIRSEQ_VERSION"
    wheel=$(ls "$CACHE"/fairseq_fixed-"$FAIRSEQ_VERSION"-*.whl | head -n1)
fi
log "installing $(basename "$wheel")"
"${PIP[@]}" install -q "$wheel"

log "installing delight-fairseq (editable) with its test and benchmark tools"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[test,bench]"

log "building the fused CPU kernels (delight_fairseq/csrc, about 85 s once, cached by torch)"
if ! "$VENV/bin/python" -c \
    "import sys; from delight_fairseq import fused; sys.exit(fused.load() is None)"; then
    log "warning: the fused CPU kernels did not build; DeLighT will use eager PyTorch ops (slower)"
fi

rm -f "$VENV"/.delight-setup-*
touch "$STAMP"
log "done in $(( $(date +%s) - start ))s: activate with 'source $VENV/bin/activate'"
