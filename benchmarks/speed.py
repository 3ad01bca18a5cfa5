"""Training and decoding speed on real Multi30k batches: DeLighT against
fairseq's transformers.

    python benchmarks/speed.py train    [--data DIR] [--batches 6] [--criterion-vocab 44000] [--models ...]
                                        [--checkpointing none block dextra loss block+loss ...]
                                        [--max-tokens 4096] [--cuda] [--fixed-mmap-threshold]
                                        [--repeats 1] [--json out.json]
    python benchmarks/speed.py generate [--data DIR] [--sentences 200] [--json out.json]

Models: DeLighT's WMT'14 preset at d_m 128 and 256, fairseq's two transformers, and
the Multi30k shoot-out's models with their recipes (``shoot-out ...``: the 7 M
transformer, DeLighT d_m 192 and 128; benchmarks/multi30k.py).

``train``: target tokens/s of fwd+bwd+Adam step over the first batches of the
training set (``--max-tokens``, 4,096 by default; every model trains on the
same batches) and the peak memory (each model in a fresh process): on CPU the
peak resident set of the process and how far training raised it over the
set-up, on a GPU (``--cuda``) ``torch.cuda.max_memory_allocated`` over the
steps. ``--checkpointing`` runs each DeLighT model once per mode: ``none``,
``block`` (``--checkpoint-activations``), ``dextra``
(``--delight-checkpoint-dextra``), ``loss`` (the criterion's
``--loss-chunk-tokens 512``: no batch-sized logits), ``block+loss`` (both),
``fast-dropout`` (``--delight-fast-dropout``), ``trim`` (``--delight-trim-heap``)
and their combinations (``CHECKPOINTING``); the transformers run the modes
without ``dextra``, ``fast-dropout`` or ``trim`` (fairseq's own
``--checkpoint-activations``).
``--fixed-mmap-threshold`` runs every child with glibc's mmap threshold fixed
(``procstat.FIXED_MMAP_THRESHOLD``): freed tensors then leave the resident set,
so the peak follows the tensors alive at once rather than what glibc's heap
keeps; ``--thp`` adds torch's transparent huge pages for its large blocks
(``procstat.TORCH_THP``: one page fault per 2 MiB instead of per 4 KiB).
``--repeats N`` runs the whole list N times, one configuration after the other
(so that the machine's drift over minutes reaches every row alike), and reports
each row's median over the N processes.
``generate``: sentences/s of fairseq's
beam search with beam 5 and beam 1 on the test set; untrained models are
forced to the source length (``--match-source-len``) so that every model
decodes the same number of tokens. The data is a Multi30k data-bin with a joined
dictionary (``delight-prep multi30k_de_en``).

``train`` also measures the loss at a large vocabulary: the DeLighT d_m 128
model with its joined dictionary padded to ``--criterion-vocab`` entries
(44,000 by default, WMT'14 En-De's size; the padding symbols never occur, the
output layer and softmax are full size), trained on the same batches once with
fairseq's ``label_smoothed_cross_entropy`` and once with
``delight_label_smoothed_cross_entropy``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# benchmarks/procstat.py
from procstat import FIXED_MMAP_THRESHOLD, TORCH_THP, peak_rss_mib

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "benchmarks/out/multi30k_cpu/data-bin/multi30k_de_en"
MODELS = {
    "delight d_m 128": [
        "--arch",
        "delight_transformer_wmt14_en_de",
        "--delight-emb-out-dim",
        "128",
    ],
    "delight d_m 256": [
        "--arch",
        "delight_transformer_wmt14_en_de",
        "--delight-emb-out-dim",
        "256",
    ],
    "transformer_iwslt_de_en": [
        "--arch",
        "transformer_iwslt_de_en",
        "--share-all-embeddings",
    ],
    "transformer_wmt_en_de": [
        "--arch",
        "transformer_wmt_en_de",
        "--share-all-embeddings",
    ],
}


def shootout_models() -> dict:
    """The Multi30k shoot-out's models with their recipes (benchmarks/multi30k.py):
    the 7 M transformer and DeLighT at about 1/2 and 1/4 of its parameters."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from trials import ALL_MODELS

    return {
        "shoot-out transformer 3+3 x 256": ALL_MODELS["transformer_256"]
        + ["--share-all-embeddings"],
        "shoot-out delight d_m 192": ALL_MODELS["delight_d192"],
        "shoot-out delight d_m 128": ALL_MODELS["delight_d128"],
        # the 60-minute dropout trial: the first shoot-out's dropouts at d_m 192
        "shoot-out delight d_m 192, more dropout": ALL_MODELS["delight_d192_reg"],
    }


MODELS.update(shootout_models())

LOSS_CHUNK = ["--loss-chunk-tokens", "512"]
FAST_DROPOUT = ["--delight-fast-dropout"]
TRIM = ["--delight-trim-heap"]
# training options that change memory and time, not the model
CHECKPOINTING = {
    "none": [],
    "block": ["--checkpoint-activations"],
    "dextra": ["--delight-checkpoint-dextra"],
    "loss": LOSS_CHUNK,
    "block+loss": ["--checkpoint-activations", *LOSS_CHUNK],
    "fast-dropout": FAST_DROPOUT,
    "trim": TRIM,
    "block+loss+fast-dropout": ["--checkpoint-activations", *LOSS_CHUNK, *FAST_DROPOUT],
    "block+loss+fast-dropout+trim": [
        "--checkpoint-activations", *LOSS_CHUNK, *FAST_DROPOUT, *TRIM,
    ],
}  # fmt: skip
# flags that only DeLighT has: the transformers skip the modes that use them
DELIGHT_ONLY = {"--delight-checkpoint-dextra", *FAST_DROPOUT, *TRIM}


def median_row(rows: list) -> dict:
    """One row: the median of each measured (float) figure over ``rows`` (the same
    configuration in separate processes); counts and names as the first has them,
    and ``runs``, how many there were."""
    import statistics

    merged = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in rows)
    merged["runs"] = len(rows)
    return merged


def label(name: str, mode: str) -> str:
    return name if mode == "none" else f"{name}, {mode}"


CRITERIA = {
    "fairseq": "label_smoothed_cross_entropy",
    "delight": "delight_label_smoothed_cross_entropy",
}


def setup(
    data: Path,
    model_args,
    criterion="delight",
    pad_vocab=0,
    max_tokens=4096,
    cuda=False,
):
    from fairseq import options, tasks

    import delight_fairseq  # noqa: F401

    argv = [
        str(data),
        "--user-dir",
        str(ROOT / "delight_fairseq"),
        *model_args,
        *([] if cuda else ["--cpu"]),
        "--criterion",
        CRITERIA[criterion],
        "--label-smoothing",
        "0.1",
        "--optimizer",
        "adam",
        "--lr",
        "0.0005",
        "--max-tokens",
        str(max_tokens),
        "--source-lang",
        "de",
        "--target-lang",
        "en",
    ]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = tasks.setup_task(args)
    for d in {id(x): x for x in (task.src_dict, task.tgt_dict)}.values():
        while len(d) < pad_vocab:
            d.add_symbol(f"<pad-vocab-{len(d)}>")
    model = task.build_model(args)
    return args, task, model


def child_train(
    data: Path,
    name: str,
    batches: int,
    criterion="delight",
    pad_vocab=0,
    checkpointing="none",
    max_tokens=4096,
    cuda=False,
) -> dict:
    import torch
    from fairseq.utils import move_to_cuda

    model_args = MODELS[name] + CHECKPOINTING[checkpointing]
    args, task, model = setup(data, model_args, criterion, pad_vocab, max_tokens, cuda)
    loss_fn = task.build_criterion(args)
    task.load_dataset("train")
    itr = task.get_batch_iterator(
        task.dataset("train"),
        max_tokens=max_tokens,
        seed=1,
        max_positions=(1024, 1024),
    ).next_epoch_itr(shuffle=False)
    samples = [s for _, s in zip(range(batches + 1), itr)]
    if cuda:
        model, samples = model.cuda(), [move_to_cuda(s) for s in samples]
        torch.cuda.reset_peak_memory_stats()
    optim = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.98))
    model.train()

    def step(sample):
        optim.zero_grad()
        loss, _, _ = loss_fn(model, sample)
        loss.backward()
        optim.step()

    set_up = peak_rss_mib()
    step(samples[0])  # warm-up, not timed (its memory counts)
    before = peak_rss_mib()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for sample in samples[1:]:
        step(sample)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(int(s["ntokens"]) for s in samples[1:])
    peak = peak_rss_mib()
    if pad_vocab:
        name = f"{name}, V {len(task.tgt_dict):,}, {CRITERIA[criterion]}"
    row = {
        "model": label(name, checkpointing),
        "params": sum(p.numel() for p in model.parameters()),
        "target_tokens_per_s": tokens / seconds,
    }
    if cuda:
        row["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        row["peak_rss_mib"] = peak
        row["rss_over_setup_mib"] = peak - set_up
        row["rss_growth_in_steps_mib"] = peak - before
    return row


def child_generate(data: Path, name: str, sentences: int) -> dict:
    import torch

    args, task, model = setup(data, MODELS[name])
    model.eval()
    task.load_dataset("test")
    dataset = task.dataset("test")
    result = {"model": name, "params": sum(p.numel() for p in model.parameters())}
    for beam in (5, 1):
        gen_args = argparse.Namespace(beam=beam, match_source_len=True, max_len_b=200)
        generator = task.build_generator([model], gen_args)
        itr = task.get_batch_iterator(
            dataset, max_sentences=50, max_positions=(1024, 1024), seed=1
        ).next_epoch_itr(shuffle=False)
        done, start = 0, time.perf_counter()
        with torch.no_grad():
            for sample in itr:
                task.inference_step(generator, [model], sample)
                done += len(sample["id"])
                if done >= sentences:
                    break
        result[f"beam{beam}_sentences_per_s"] = done / (time.perf_counter() - start)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["train", "generate"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument(
        "--checkpointing",
        nargs="+",
        choices=list(CHECKPOINTING),
        default=["none"],
        help="train: activation checkpointing (and other memory or speed) modes "
        "to run each model in (those with 'dextra', 'fast-dropout' or 'trim': "
        "DeLighT only)",
    )
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--cuda", action="store_true", help="train on the GPU")
    parser.add_argument(
        "--criterion-vocab",
        type=int,
        default=44_000,
        help="train: also compare the two losses at this vocabulary (0: skip)",
    )
    parser.add_argument(
        "--fixed-mmap-threshold",
        action="store_true",
        help="run every child with glibc's mmap threshold fixed at 64 KiB "
        "(procstat.FIXED_MMAP_THRESHOLD), so that freed tensors leave the "
        "resident set: the peak then follows the tensors alive at once",
    )
    parser.add_argument(
        "--thp",
        action="store_true",
        help="run every child with torch's transparent huge pages for blocks of "
        "2 MiB and more (procstat.TORCH_THP; needs THP 'madvise' or 'always')",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the list this many times, round-robin; each row is the median",
    )
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-criterion", default="delight", help=argparse.SUPPRESS)
    parser.add_argument(
        "--child-pad-vocab", type=int, default=0, help=argparse.SUPPRESS
    )
    parser.add_argument("--child-checkpointing", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats is {args.repeats}; it must be 1 or more")
    if args.child:
        import logging

        logging.disable(logging.INFO)
        if args.what == "train":
            row = child_train(
                args.data,
                args.child,
                args.batches,
                args.child_criterion,
                args.child_pad_vocab,
                args.child_checkpointing,
                args.max_tokens,
                args.cuda,
            )
        else:
            row = child_generate(args.data, args.child, args.sentences)
        print(json.dumps(row))
        return
    if not (args.data / "dict.de.txt").exists():
        sys.exit(
            f"no Multi30k data-bin at {args.data}: run delight-prep multi30k_de_en "
            "--dest that folder first (or pass --data)"
        )
    modes = args.checkpointing if args.what == "train" else ["none"]
    runs = [
        (name, "delight", 0, mode)
        for name in args.models
        for mode in modes
        if "delight" in name or not DELIGHT_ONLY & set(CHECKPOINTING[mode])
    ]
    if args.what == "train" and args.criterion_vocab:
        for loss in ("fairseq", "delight"):
            runs.append(("delight d_m 128", loss, args.criterion_vocab, "none"))
    env = dict(os.environ)
    env.update(FIXED_MMAP_THRESHOLD if args.fixed_mmap_threshold else {})
    env.update(TORCH_THP if args.thp else {})
    samples = {}
    for name, loss, pad_vocab, mode in runs * args.repeats:
        command = [sys.executable, __file__, args.what, "--data", str(args.data)]
        command += ["--child", name, "--batches", str(args.batches)]
        command += ["--sentences", str(args.sentences), "--child-criterion", loss]
        command += ["--child-pad-vocab", str(pad_vocab)]
        command += ["--child-checkpointing", mode, "--max-tokens", str(args.max_tokens)]
        command += ["--cuda"] if args.cuda else []
        out = subprocess.run(
            command, capture_output=True, text=True, check=True, env=env
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        samples.setdefault(row["model"], []).append(row)
    rows = [median_row(found) for found in samples.values()]
    if args.fixed_mmap_threshold:
        print("every process with glibc's mmap threshold fixed at 64 KiB")
    if args.thp:
        print("every process with torch's transparent huge pages")
    keys = [k for k in rows[0] if k not in ("model",)]
    width = max(len(r["model"]) for r in rows) + 2
    print(f"{'model':<{width}}" + "".join(f"{k:>26}" for k in keys))
    for r in rows:
        print(
            f"{r['model']:<{width}}"
            + "".join(
                f"{r[k]:>26,.1f}" if isinstance(r[k], float) else f"{r[k]:>26,}"
                for k in keys
            )
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
