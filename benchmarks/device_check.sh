#!/usr/bin/env bash
# One prepared check for a single-GPU machine (about 8 minutes): install what is
# missing from wheels carried beside the repo, run tests/gpu, then measure fp16
# training (benchmarks/device_train.py: DeLighT d_m 256 and 512, compiled and
# checkpointed variants, fairseq's transformer_wmt_en_de). Results go to
# $OUT (default benchmarks/out/device_check): tests.log, results.json, results.md.
#
#   bash benchmarks/device_check.sh fetch   here, with network: download the wheels
#                                           the GPU machine lacks into .device-wheels/
#   bash benchmarks/device_check.sh         on the GPU machine (no network needed)
#
# The whole check keeps within DEVICE_CHECK_BUDGET_S (default 480 s, inside a
# 10-minute call): tests/gpu get at most DEVICE_TESTS_TIMEOUT_S (240 s), and no
# training measurement starts past the budget (results are written after each).
#
# Without a CUDA device it says so and exits 0. The GPU machine this project
# borrows has Python 3.12 and a CUDA torch but no fairseq: fairseq-fixed comes
# from its carried 3.12 wheel, or is built there from the carried sdist against
# that torch, without build isolation.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$ROOT/.device-wheels"
PY="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/benchmarks/out/device_check}"
SITE="${DELIGHT_DEVICE_SITE:-/tmp/delight-device-site}"
# fairseq-fixed's needs that the GPU image lacks (KINDS.md of the device tool lists
# what it has: torch, numpy, cython, regex, sacrebleu, sentencepiece, tqdm, ...)
NEEDS=(fairseq-fixed==0.12.3.1 hydra-core==1.3.2 omegaconf==2.3.0 bitarray==3.12.3
       sacremoses==0.2.0 subword-nmt==0.3.8 mock==5.2.0 portalocker==4.4.2)

log() { echo "| device_check | $*" >&2; }

if [[ "${1:-}" == fetch ]]; then
    mkdir -p "$WHEELS"
    for need in "${NEEDS[@]}"; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "$WHEELS" "$need" || log "no 3.12 wheel for $need"
    done
    # sdists: fairseq-fixed (to build there if its wheel does not import) and
    # antlr4 (hydra's parser; published as an sdist only)
    # (fetched as files: pip download would build their metadata, pulling a torch)
    python3 - "$WHEELS" fairseq-fixed==0.12.3.1 antlr4-python3-runtime==4.9.3 <<'PY'
import json, sys, urllib.request
from pathlib import Path

dest = Path(sys.argv[1])
for need in sys.argv[2:]:
    name, version = need.split("==")
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json") as r:
        files = json.load(r)["releases"][version]
    (sdist,) = [f for f in files if f["packagetype"] == "sdist"]
    urllib.request.urlretrieve(sdist["url"], dest / sdist["filename"])
PY
    log "wheels for the GPU machine in $WHEELS ($(du -sh "$WHEELS" | cut -f1)); carry .device-wheels"
    exit 0
fi

if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    log "no CUDA device here (torch.cuda.is_available() is False or no torch): nothing to check."
    log "Run this on a GPU machine; 'bash benchmarks/device_check.sh fetch' prepares its wheels."
    exit 0
fi

mkdir -p "$OUT" "$SITE"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"  # fairseq-train and friends, for tests/gpu
start=$(date +%s)
"$PY" - <<'PY' >&2
import torch
print("| device_check |", torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
PY

if ! "$PY" -c "import fairseq" 2>/dev/null; then
    [[ -d "$WHEELS" ]] || { log "error: no fairseq here and no $WHEELS: run 'bash benchmarks/device_check.sh fetch' where pip has network, and carry .device-wheels"; exit 1; }
    log "installing the carried wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
        --target "$SITE" "$WHEELS"/antlr4-python3-runtime-*.tar.gz
    if ! "$PY" -c "import fairseq, fairseq.data" 2>"$OUT/fairseq_import.log"; then
        log "fairseq's 3.12 wheel does not import against this torch; building the sdist (a few minutes)"
        rm -rf "$SITE"/fairseq "$SITE"/fairseq_fixed-*
        "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
            --target "$SITE" "$WHEELS"/fairseq_fixed-*.tar.gz
    fi
fi
log "environment ready after $(( $(date +%s) - start )) s"

budget=${DEVICE_CHECK_BUDGET_S:-480}
set +e
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >&2
timeout "${DEVICE_TESTS_TIMEOUT_S:-240}" "$PY" -m pytest -q -p no:cacheprovider -rs \
    "$ROOT/tests/gpu" 2>&1 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}
[[ $tests_rc == 124 ]] && log "tests/gpu stopped at DEVICE_TESTS_TIMEOUT_S"
left=$(( budget - ($(date +%s) - start) ))
"$PY" "$ROOT/benchmarks/device_train.py" --out "$OUT" --deadline-s "$(( left > 0 ? left : 0 ))" \
    2>&1 | tee "$OUT/train.log"
train_rc=${PIPESTATUS[0]}
set -e
log "done in $(( $(date +%s) - start )) s: tests rc $tests_rc, training rc $train_rc; $OUT/results.md"
exit $(( tests_rc || train_rc ))
