#!/usr/bin/env bash
# Data-parallel training on fairseq's own distributed engine, in fairseq's conventions.
#
#   scripts/train_distributed.sh gpus N    DATA [fairseq-train args]   one node, N GPUs (torchrun, NCCL)
#   scripts/train_distributed.sh slurm     DATA [fairseq-train args]   inside an sbatch allocation with
#                                                                      one task per GPU (srun, NCCL)
#   scripts/train_distributed.sh cpu N     DATA [fairseq-train args]   N CPU processes on this machine (gloo)
#
# The plugin (--user-dir) is added for you; pass everything else as for fairseq-train.
# Keep the paper's effective batch when you change the number of workers: tokens per
# update = workers x --max-tokens x --update-freq (scripts/train.sh computes it).
#
# Why three modes: on GPUs fairseq reads torchrun's and SLURM's environment itself. On
# CPU, torchrun and fairseq's own spawning both fail (they count CUDA devices), so each
# rank is started here with an explicit tcp:// rendezvous, gloo and legacy_ddp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USER_DIR="$ROOT/delight_fairseq"
PORT="${DELIGHT_DIST_PORT:-$(( 20000 + RANDOM % 20000 ))}"
usage() { sed -n '2,9p' "$0" >&2; exit 2; }

mode="${1:-}"; shift || usage
case "$mode" in
gpus)
    n="${1:?number of GPUs}"; shift
    exec torchrun --standalone --nproc_per_node "$n" "$(command -v fairseq-train)" \
        "$@" --user-dir "$USER_DIR" --distributed-world-size "$n"
    ;;
slurm)
    : "${SLURM_NTASKS:?run inside an sbatch allocation (one task per GPU)}"
    exec srun fairseq-train "$@" --user-dir "$USER_DIR" \
        --distributed-world-size "$SLURM_NTASKS" --distributed-port "$PORT"
    ;;
cpu)
    n="${1:?number of CPU workers}"; shift
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
    for (( rank = 0; rank < n; rank++ )); do
        OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" fairseq-train "$@" --user-dir "$USER_DIR" --cpu \
            --distributed-world-size "$n" --distributed-rank "$rank" \
            --distributed-init-method "tcp://127.0.0.1:$PORT" --distributed-no-spawn \
            --distributed-backend gloo --ddp-backend legacy_ddp &
        pids+=("$!")
    done
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    exit "$status"
    ;;
*)
    usage
    ;;
esac
