"""Training speed and memory on one GPU, through fairseq's own Trainer (its
FP16Optimizer with dynamic loss scaling and flattened gradients, as
``fairseq-train --fp16`` runs). Called by benchmarks/device_check.sh.

    python benchmarks/device_train.py [--updates 100] [--warmup 10] [--max-tokens 8192]
                                      [--models ...] [--deadline-s S] [--out DIR]
    python benchmarks/device_train.py --smoke      # on the CPU, tiny: checks the script

Batches are generated, not read (the GPU machine has no data): sentence pairs of
random tokens, 6 to 40 target tokens long (one length per batch, as fairseq's length
bucketing gives nearly), packed into batches of ``--max-tokens`` target tokens, with a
joined dictionary of 32,768 entries (WMT'14 En-De's size range). Every model trains on
the same batches. For each model: target tokens/s and seconds per update over the timed
updates (after ``--warmup``), the warm-up's seconds (torch.compile's included), the
peak memory allocated by torch on the GPU, the loss scale at the end, and the top 10
CUDA kernels by total time in a torch.profiler trace of 5 further updates. Writes
``results.json`` and ``results.md`` into ``--out`` after every model; with
``--deadline-s`` no model starts after that many seconds (it is listed as skipped).
"""

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 32768
DELIGHT = ["--arch", "delight_transformer_wmt14_en_de", "--delight-emb-out-dim"]
MODELS = {
    "delight d_m 256": [*DELIGHT, "256"],
    "delight d_m 512": [*DELIGHT, "512"],
    "transformer_wmt_en_de": ["--arch", "transformer_wmt_en_de"],
    "delight d_m 512, checkpoint block": [*DELIGHT, "512", "--checkpoint-activations"],
    # last: its compile time is the one figure not known ahead of a loan
    "delight d_m 512, compiled": [*DELIGHT, "512", "--delight-compile"],
}
SMOKE = {"delight d_m 128": [*DELIGHT, "128"]}


def dictionary_dir(size: int) -> Path:
    from delight_fairseq.builder import sized_dictionary

    folder = Path(tempfile.mkdtemp(prefix="delight-device-"))
    d = sized_dictionary(size)
    for lang in ("src", "tgt"):
        d.save(str(folder / f"dict.{lang}.txt"))
    return folder


def batches(n: int, max_tokens: int, vocab: int, seed: int = 1):
    """``n`` batches of about ``max_tokens`` target tokens, as fairseq's
    translation task collates them (left-padded source, eos-first shifted
    target), lengths sorted within a batch as fairseq's length bucketing does."""
    import torch

    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    pad, eos, first = 1, 2, 4
    out = []
    for _ in range(n):
        length = rng.randint(6, 40)
        rows = max(1, max_tokens // (length + 1))
        tgt = torch.randint(first, vocab, (rows, length), generator=g)
        src_len = max(2, length + rng.randint(-3, 3))
        src = torch.randint(first, vocab, (rows, src_len), generator=g)
        src[:, -1] = eos
        target = torch.cat([tgt, torch.full((rows, 1), eos)], dim=1)
        prev = torch.cat([torch.full((rows, 1), eos), tgt], dim=1)
        out.append(
            {
                "id": torch.arange(rows),
                "nsentences": rows,
                "ntokens": int(target.numel()),
                "net_input": {
                    "src_tokens": src,
                    "src_lengths": torch.full((rows,), src_len),
                    "prev_output_tokens": prev,
                },
                "target": target,
            }
        )
    assert all(int(b["target"].ne(pad).sum()) == b["ntokens"] for b in out)
    return out


def trainer_for(data: Path, model_args, max_tokens: int, cpu: bool):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    argv = [
        str(data), "--user-dir", str(ROOT / "delight_fairseq"), *model_args,
        "--share-all-embeddings", "-s", "src", "-t", "tgt",
        "--criterion", "delight_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.0005",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4000",
        "--max-tokens", str(max_tokens), "--seed", "1",
        *(["--cpu"] if cpu else ["--fp16"]),
    ]  # fmt: skip
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return Trainer(cfg, task, model, criterion), model


def top_kernels(trainer, samples, n=10):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for sample in samples:
            trainer.train_step([sample])
        import torch

        torch.cuda.synchronize()
    events = [
        e
        for e in prof.key_averages()
        if e.device_type.name == "CUDA" or getattr(e, "device_time_total", 0) > 0
    ]
    events.sort(key=lambda e: getattr(e, "device_time_total", 0), reverse=True)
    return [
        {
            "kernel": e.key[:90],
            "calls": e.count,
            "ms": round(e.device_time_total / 1000, 2),
        }
        for e in events[:n]
    ]


@contextlib.contextmanager
def keeping_peaks(peaks: list, cuda: bool):
    """fairseq's Trainer resets CUDA's peak-memory statistics at the end of every
    update (for its gb_free metric), after the activations are freed: append each
    update's peak to ``peaks`` before it does."""
    import torch

    if not cuda:
        yield
        return
    reset = torch.cuda.reset_peak_memory_stats

    def keep_then_reset(*args, **kwargs):
        peaks.append(torch.cuda.max_memory_allocated())
        reset(*args, **kwargs)

    with mock.patch.object(torch.cuda, "reset_peak_memory_stats", keep_then_reset):
        yield


def measure(name, model_args, samples, warmup, updates, data, max_tokens, cpu) -> dict:
    import torch

    trainer, model = trainer_for(data, model_args, max_tokens, cpu)
    cuda = not cpu
    start = time.perf_counter()
    for sample in samples[:warmup]:
        trainer.train_step([sample])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - start
    timed = samples[warmup : warmup + updates]
    peaks = []
    start = time.perf_counter()
    with keeping_peaks(peaks, cuda):
        for sample in timed:
            log = trainer.train_step([sample])
        if cuda:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    row = {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "updates_timed": len(timed),
        "target_tokens_per_s": round(sum(s["ntokens"] for s in timed) / seconds, 1),
        "s_per_update": round(seconds / len(timed), 4),
        # the first updates: CUDA's and cuBLAS's start, and any torch.compile
        "warmup_s": round(warmup_s, 2),
        # None: the last update overflowed in fp16 and was skipped
        "last_loss": round(float(log["loss"]), 3) if log else None,
    }
    if cuda:
        peaks.append(torch.cuda.max_memory_allocated())
        row["peak_allocated_mib"] = round(max(peaks) / 2**20)
        # what stays between updates: weights, fp32 master copy, Adam's state, grads
        row["held_mib"] = round(torch.cuda.memory_allocated() / 2**20)
        scaler = getattr(trainer.optimizer, "scaler", None)
        row["loss_scale"] = getattr(scaler, "loss_scale", None)
        row["top_kernels"] = top_kernels(trainer, samples[warmup + updates :])
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return row


def platform() -> str:
    import torch

    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return f"torch {torch.__version__}, CUDA {torch.version.cuda}, {where}"


def write(out: Path, rows) -> None:
    """After every model, so that a run stopped at its time limit keeps the rows
    it finished."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text(markdown(rows))


def markdown(rows) -> str:
    lines = [
        f"{platform()}",
        "",
        "| model | params | target tok/s | s/update | warm-up | peak allocated "
        "| held between updates | loss scale | last loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r or "skipped" in r:
            why = f"failed: {r['error'][:80]}" if "error" in r else r["skipped"]
            lines.append(f"| {r['model']} | {why} | | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['target_tokens_per_s']:,.0f} "
            f"| {r['s_per_update']:.3f} | {r['warmup_s']:.1f} s "
            f"| {r.get('peak_allocated_mib', '-')} MiB | {r.get('held_mib', '-')} MiB "
            f"| {r.get('loss_scale', '-')} | {r['last_loss']} |"
        )
    for r in rows:
        if r.get("top_kernels"):
            lines += ["", f"Top CUDA kernels, {r['model']} (5 updates):", ""]
            lines += ["| kernel | calls | ms |", "|---|---|---|"]
            lines += [
                f"| `{k['kernel']}` | {k['calls']} | {k['ms']} |"
                for k in r["top_kernels"]
            ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--models", nargs="+")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/out/device_check"
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        help="start no model after this many seconds (a loaned machine's time limit)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="CPU, tiny: checks the script"
    )
    args = parser.parse_args(argv)
    import torch

    sys.path.insert(0, str(ROOT))
    if args.smoke:
        models, cpu, vocab = SMOKE, True, 1000
        args.updates, args.warmup, args.max_tokens = 2, 1, 256
    else:
        if not torch.cuda.is_available():
            raise SystemExit("device_train.py: no CUDA device; --smoke runs on the CPU")
        models, cpu, vocab = MODELS, False, VOCAB
    chosen = {k: models[k] for k in (args.models or models)}
    data = dictionary_dir(vocab)
    samples = batches(args.warmup + args.updates + 5, args.max_tokens, vocab)
    rows = []
    began = time.monotonic()
    for name, model_args in chosen.items():
        if args.deadline_s is not None and time.monotonic() - began > args.deadline_s:
            rows.append(
                {
                    "model": name,
                    "skipped": f"skipped: past --deadline-s {args.deadline_s:g}",
                }
            )
            write(args.out, rows)
            continue
        print(f"| device_train | {name}", flush=True)
        try:
            rows.append(
                measure(
                    name,
                    model_args,
                    samples,
                    args.warmup,
                    args.updates,
                    data,
                    args.max_tokens,
                    cpu,
                )
            )
        except Exception as err:  # one model's failure must not lose the others
            rows.append({"model": name, "error": f"{type(err).__name__}: {err}"})
        print(json.dumps(rows[-1]), flush=True)
        write(args.out, rows)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
