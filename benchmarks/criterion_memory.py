"""Peak memory (and, with ``--time R``, time) of the label-smoothed loss at a
large vocabulary.

Compares fairseq's ``label_smoothed_cross_entropy`` (log-softmax, then the
smoothed nll) with ``delight_label_smoothed_cross_entropy`` (fused, from the
logits) on the same N x V logits, forward and backward. Each runs in a fresh
process; the figure is the growth of the peak resident set over the logits
themselves, so it counts every N x V tensor the loss creates.

``chunked`` is the criterion's ``--loss-chunk-tokens`` (N / ``--chunks`` tokens at a
time): it starts from the decoder's features (N x ``DIM``, 64) and the output weight
(V x ``DIM``), so its figure is the growth over those, the logits included.

The children run with glibc's mmap threshold fixed at 64 KiB
(``procstat.FIXED_MMAP_THRESHOLD``): with glibc's default, the chunked loss's eight
chunk-sized blocks showed as 0.89 x N x V instead of 0.33 x. Fixed, the figure
counts the tensors alive at once.

``overwritten`` is what the criterion's forward does with its own logits: it makes
them from the features and the output weight (N x ``DIM`` by ``DIM`` x V) and
its backward pass writes their gradient over them. Its figure is the growth over
the features and the weight, the logits included.

``--time R`` also times forward + backward on the same logits, in one process and
interleaved over R rounds (medians): fairseq's loss, ours with its CPU kernel
(csrc/cross_entropy.cpp), and ours on eager ops (``DELIGHT_FUSED_GLT=0``); then,
from the features (the output layer's product and its backward included, fresh
logits each round, as in training), ours with the kernel writing the gradient to
a tensor of its own and over the logits.

    python benchmarks/criterion_memory.py --vocab 44000 --tokens 4096 [--chunks 8] [--time R] [--json out.json]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from procstat import FIXED_MMAP_THRESHOLD  # benchmarks/procstat.py

WHICH = ("fairseq", "delight", "chunked", "overwritten")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


DIM = 64  # the features' width in the chunked case


def features_weight_target(vocab: int, tokens: int):
    import torch

    torch.manual_seed(0)
    features = torch.randn(tokens, DIM, requires_grad=True)
    weight = (0.1 * torch.randn(vocab, DIM)).requires_grad_()
    target = torch.randint(4, vocab, (tokens,))
    target[: tokens // 10] = 1  # some padding
    return features, weight, target


def from_features(features, weight, target, overwrite: bool):
    """The loss as the criterion's forward computes it (logits of its own)."""
    from delight_fairseq.criterion import _SmoothedCrossEntropy

    logits = features @ weight.t()
    return _SmoothedCrossEntropy.apply(logits, target, 0.1, 1, False, overwrite)[0]


def measure_overwritten(vocab: int, tokens: int) -> float:
    import torch

    features, weight, target = features_weight_target(vocab, tokens)
    small = torch.randn(4, DIM, requires_grad=True)
    from_features(small, weight[:8], torch.tensor([1, 2, 3, 1]), True).backward()
    before = peak_mib()
    from_features(features, weight, target, True).backward()
    return peak_mib() - before


def measure_chunked(vocab: int, tokens: int, chunks: int) -> float:
    import torch

    from delight_fairseq.criterion import chunked_cross_entropy

    features, weight, target = features_weight_target(vocab, tokens)
    small = torch.randn(4, DIM, requires_grad=True)
    chunked_cross_entropy(small, weight[:8], torch.tensor([1, 2, 3, 1]), 0.1, 1, 2)[
        0
    ].backward()
    before = peak_mib()
    loss, _, _ = chunked_cross_entropy(
        features, weight, target, 0.1, 1, -(-tokens // chunks)
    )
    loss.backward()
    return peak_mib() - before


def measure(which: str, vocab: int, tokens: int, chunks: int) -> float:
    import torch
    from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

    from delight_fairseq.criterion import smoothed_cross_entropy

    if which == "chunked":
        return measure_chunked(vocab, tokens, chunks)
    if which == "overwritten":
        return measure_overwritten(vocab, tokens)
    torch.manual_seed(0)
    logits = torch.randn(tokens, vocab, requires_grad=True)
    target = torch.randint(4, vocab, (tokens,))
    target[: tokens // 10] = 1  # some padding
    # warm both paths on a tiny input so one-off allocations are not counted
    small = torch.randn(4, 8, requires_grad=True)
    smoothed_cross_entropy(small, torch.tensor([1, 2, 3, 1]), 0.1, 1)[0].backward()
    label_smoothed_nll_loss(
        torch.log_softmax(small, -1), torch.tensor([1, 2, 3, 1]), 0.1, 1
    )[0].backward()
    before = peak_mib()
    if which == "fairseq":
        lprobs = torch.log_softmax(logits.float(), dim=-1)
        loss, _ = label_smoothed_nll_loss(lprobs, target, 0.1, ignore_index=1)
    else:
        loss, _ = smoothed_cross_entropy(logits, target, 0.1, 1)
    loss.backward()
    return peak_mib() - before


def milliseconds(vocab: int, tokens: int, repeats: int) -> dict:
    """Median ms of forward + backward for fairseq's loss and ours, with and
    without the kernel, interleaved round by round."""
    import torch
    from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

    from delight_fairseq.criterion import smoothed_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(tokens, vocab, requires_grad=True)
    target = torch.randint(4, vocab, (tokens,))
    target[: tokens // 10] = 1  # some padding

    def fairseq_loss():
        lprobs = torch.log_softmax(logits, dim=-1)
        return label_smoothed_nll_loss(lprobs, target, 0.1, ignore_index=1)[0]

    def ours():
        return smoothed_cross_entropy(logits, target, 0.1, 1)[0]

    features, weight, _ = features_weight_target(vocab, tokens)

    def own_tensor():
        return from_features(features, weight, target, False)

    def overwritten():
        return from_features(features, weight, target, True)

    runs = {"fairseq": (fairseq_loss, "1"), "delight": (ours, "1"),
            "delight_eager": (ours, "0"), "from_features": (own_tensor, "1"),
            "from_features_overwritten": (overwritten, "1")}  # fmt: skip
    times = {name: [] for name in runs}
    saved = os.environ.get("DELIGHT_FUSED_GLT")
    try:
        for _ in range(repeats + 1):  # the first round warms up
            for name, (loss_fn, kernel) in runs.items():
                os.environ["DELIGHT_FUSED_GLT"] = kernel
                start = time.perf_counter()
                loss_fn().backward()
                times[name].append(1e3 * (time.perf_counter() - start))
                logits.grad = features.grad = weight.grad = None
    finally:
        if saved is None:
            os.environ.pop("DELIGHT_FUSED_GLT", None)
        else:
            os.environ["DELIGHT_FUSED_GLT"] = saved
    return {
        name + "_ms": round(statistics.median(t[1:]), 1) for name, t in times.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=44_000)
    parser.add_argument("--tokens", type=int, default=4_096)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--time", type=int, default=0, metavar="R",
                        help="also time forward + backward, median of R rounds")  # fmt: skip
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", choices=WHICH, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(args.child, args.vocab, args.tokens, args.chunks))
        return
    one = args.tokens * args.vocab * 4 / 2**20
    results = {
        "vocab": args.vocab,
        "tokens": args.tokens,
        "chunks": args.chunks,
        "logits_mib": round(one, 1),
    }
    for which in WHICH:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                which,
                "--vocab",
                str(args.vocab),
                "--tokens",
                str(args.tokens),
                "--chunks",
                str(args.chunks),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ, **FIXED_MMAP_THRESHOLD),
        )
        results[which + "_peak_mib"] = round(
            float(out.stdout.strip().splitlines()[-1]), 1
        )
    print(
        f"label-smoothed loss, forward + backward, N={args.tokens} tokens, V={args.vocab}"
    )
    print(
        f"  one N x V float tensor:                  {results['logits_mib']:8.1f} MiB"
    )
    above = {
        "fairseq": "the logits",
        "delight": "the logits",
        "chunked": "features, weight",
        "overwritten": "features, weight",
    }
    for which in WHICH:
        peak = results[which + "_peak_mib"]
        print(
            f"  {which + ' peak above ' + above[which] + ':':40s} {peak:8.1f} MiB "
            f"({peak / one:.2f} x N x V)"
        )
    if args.time:
        results.update(milliseconds(args.vocab, args.tokens, args.time))
        print(f"  forward + backward, median of {args.time} rounds:")
        for which, what in (("fairseq", "fairseq"), ("delight", "delight, CPU kernel"),
                            ("delight_eager", "delight, eager ops"),
                            ("from_features", "from features, own gradient"),
                            ("from_features_overwritten",
                             "from features, over the logits")):  # fmt: skip
            print(f"    {what + ':':38s} {results[which + '_ms']:8.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
