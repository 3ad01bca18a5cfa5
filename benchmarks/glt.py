"""Forward+backward throughput of the GLT and of DExTra, against a dense Linear
of the same FLOPs (the practical limit), against the naive reference, and
with the fused GLT kernel switched off (DELIGHT_FUSED_GLT=0: eager PyTorch ops).

    python benchmarks/glt.py [--tokens 4096] [--dims 256 512 640] [--compile]
                             [--json out.json]

For each d_m the GLT is the widest layer of the last encoder block's DExTra
(N = 8, w = 3, g_max of d_m), and DExTra is that whole unit. "dense" is one
nn.Linear doing the same multiply-adds: Linear(in, out / g) for a GLT, and
Linear(d_m, MACs / d_m) for DExTra. GFLOP/s count 2 x MACs x 3 (forward and
the two backward matmuls). ``--compile`` adds the GLT under torch.compile
(Inductor compiles the eager ops; the fused kernel steps aside while tracing).
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from delight_fairseq import fused
from delight_fairseq.dextra import DExTra
from delight_fairseq.group_linear import GroupLinear
from delight_fairseq.scaling import dextra_plan, group_cap
from delight_fairseq.tools.naive import naive_glt


def time_fwd_bwd(fn, x, repeats: int) -> float:
    """Median seconds of one forward+backward."""
    times = []
    for i in range(repeats + 2):
        x.grad = None
        start = time.perf_counter()
        fn(x).sum().backward()
        if i >= 2:  # two warm-up runs
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


class Eager:
    """Calls ``module`` with the fused GLT kernel switched off."""

    def __init__(self, module):
        self.module = module

    def __call__(self, x):
        os.environ["DELIGHT_FUSED_GLT"] = "0"
        try:
            return self.module(x)
        finally:
            os.environ.pop("DELIGHT_FUSED_GLT")


def dextra_macs(unit: DExTra) -> int:
    macs = unit.in_features * unit.proj_features
    macs += sum(s.in_features * s.out_features // s.groups for s in unit.plan)
    return macs + (unit.proj_features + unit.out_features) * unit.out_features


def bench(d_m: int, tokens: int, repeats: int, compile_: bool = False) -> list:
    torch.manual_seed(0)
    cap = group_cap(d_m)
    plan = dextra_plan(d_m, d_m // 2, d_m // 2, 8, 3.0, cap)
    widest = max(plan, key=lambda s: s.in_features * s.out_features // s.groups)
    rows = []

    glt = GroupLinear(widest.in_features, widest.out_features, widest.groups)
    dense = nn.Linear(widest.in_features, widest.out_features // widest.groups)
    x = torch.randn(tokens, widest.in_features, requires_grad=True)
    macs = tokens * widest.in_features * widest.out_features // widest.groups

    def naive(inp):
        return naive_glt(inp, glt.weight, glt.bias, glt.norm_weight, glt.norm_bias)

    runs = [
        ("GLT", glt),
        ("dense", dense),
        ("GLT eager", Eager(glt)),
        ("GLT naive", naive),
    ]
    if compile_:
        runs.append(("GLT compiled", torch.compile(glt)))
    for name, fn in runs:
        t = time_fwd_bwd(fn, x, repeats)
        rows.append(
            {
                "d_m": d_m,
                "unit": "GLT",
                "what": name,
                "shape": widest.as_tuple(),
                "ms": t * 1e3,
                "gflops": 6 * macs / t / 1e9,
            }
        )

    unit = DExTra(d_m, d_m // 2, d_m // 2, 8, 3.0, cap)
    unit_macs = dextra_macs(unit)
    dense_unit = nn.Linear(d_m, unit_macs // d_m)
    x = torch.randn(tokens, d_m, requires_grad=True)
    for name, fn in (
        ("DExTra", unit),
        ("dense", dense_unit),
        ("DExTra eager", Eager(unit)),
    ):
        t = time_fwd_bwd(fn, x, repeats)
        rows.append(
            {
                "d_m": d_m,
                "unit": "DExTra",
                "what": name,
                "shape": (d_m, 8, 3.0, cap),
                "ms": t * 1e3,
                "gflops": 6 * tokens * unit_macs / t / 1e9,
            }
        )
    for r in rows:
        ref = next(x for x in rows if x["unit"] == r["unit"] and x["what"] == "dense")
        r["ratio_to_dense"] = r["gflops"] / ref["gflops"]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 512, 640])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--compile", action="store_true", help="add torch.compile")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [
        r for d in args.dims for r in bench(d, args.tokens, args.repeats, args.compile)
    ]
    print(
        f"forward+backward, {args.tokens} tokens, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}; fused GLT kernel: "
        f"{'on' if fused.load() is not None else 'NOT AVAILABLE'}"
    )
    print(
        f"{'d_m':>5} {'what':<13} {'shape':<24} {'ms':>8} {'GFLOP/s':>8} {'vs dense':>8}"
    )
    for r in rows:
        print(
            f"{r['d_m']:>5} {r['what']:<13} {str(r['shape']):<24} {r['ms']:>8.2f} "
            f"{r['gflops']:>8.1f} {r['ratio_to_dense']:>8.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
