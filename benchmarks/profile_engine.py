"""Where the lean engine's decoding time goes: torch.profiler over the Multi30k test
sentences, one thread, batches of 64 sorted by length (as benchmarks/translate.py).

    python benchmarks/profile_engine.py --delight CKPT [--int8] [--beam 5] [--sentences 300]
    python benchmarks/profile_engine.py --delight CKPT --compare [--rounds 3] [--sentences 1000]
        [--variants NAME ...] [--workers 2]
    python benchmarks/profile_engine.py --delight CKPT --matmul
    python benchmarks/profile_engine.py --delight CKPT --compiled [--cpp-wrapper] [--beam 1]

By default it prints the top operators by self CPU time, the number of operator
calls per sentence, and the share of the wall time that the operators' own work
explains (the rest is Python and dispatch between them).

``--compare`` decodes the sentences with the engine and with variants of it, each
built once and then run in turn ``--rounds`` times in this one process (so that the
machine's drift falls on all alike), and prints each one's median sentences/s and
how many of its hypotheses equal the engine's (with ``--workers N``, each variant
as N engines of one thread taking the batches side by side):

* ``torch matmul`` and ``oneDNN matmul``: the float32 products through
  ``F.linear`` (the model's own arithmetic) or through oneDNN (the engine's
  ``matmul`` option; ``engine`` is its default, ``"auto"``);
* ``Python blocks``, ``torch matmul, Python blocks`` and ``int8, Python blocks``:
  the decoder's blocks through the Python loop of ``DecoderStep.__call__``
  instead of the C++ one (csrc/decoder_blocks.h; the same operations), on the
  default products, on torch's, and in int8;
* ``ATen attention, Python blocks``: the Python loop with each attention as
  ATen's operations (split heads, bmm, softmax, bmm, merge heads) instead of
  the fused kernel (csrc/attend_one.cpp), which both loops use; it gathers the
  cache through its table of rows at every block (the Python loop's fallback
  without the extension), which the kernel reads in place;
* ``Python search``: the search loop of search.py (greedy or beams) in Python
  instead of in C++ (csrc/search.cpp; the same operations); the variants that
  change the loop or what it calls (``torch candidates``, ``general loop``)
  run it too;
* ``torch candidates``: the beam candidates from nan_to_num, add and torch.topk
  instead of the fused kernel (csrc/beam_topk.cpp);
* ``general loop`` and ``int8 general loop``: at beam 1, the general beam-search
  loop (``search.beams``) instead of greedy search (``search.greedy``), in float32
  and in int8; at other beams, the engine and ``int8``;
* ``fresh log-probs``: the Python blocks with the log-probabilities in a new
  tensor at every step instead of the reused buffer (compare ``Python blocks``;
  the C++ head always writes into the reused buffer);
* ``int8``, ``int8 oneDNN`` and ``int8 oneDNN output``: the int8 engine with its
  weights packed for fbgemm (the default), for oneDNN, or for oneDNN in the output
  layer only.
* ``bfloat16``: the engine on a bfloat16 copy of the model: the products on AMX where
  the CPU has it, the log-probabilities and the search in float32; the fused kernels
  take float32 and float64, so the GLT layers run their eager operations and the
  candidates come from torch.topk.

``--matmul`` times the output projection of one beam-5 step (320 rows) on its own:
float32, bfloat16 and the int8 kernels of fbgemm and oneDNN.

``--compiled`` measures ``torch.compile`` on the decoder step, the engine's
hottest code: the float32 engine on torch's products and without the fused kernels
(which Dynamo cannot trace), its step eager and compiled by Inductor with dynamic
shapes (``--cpp-wrapper``: Inductor's C++ wrapper instead of its Python one). It
prints the compile time (the first passes, until the step stops recompiling), then,
over ``--rounds`` in turn, the sentences/s of the engine as it ships, of the eager
step and of the compiled one, and how many hypotheses the compiled step shares with
the eager one.
"""

import argparse
import copy
import statistics
import time
from pathlib import Path

import multi30k
import torch
import torch.nn.functional as F

from delight_fairseq.inference.pool import EnginePool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delight", type=Path, required=True, help="checkpoint")
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--lenpen", type=float, default=1.0)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--top", type=int, default=15)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--compare", action="store_true", help="the engine's variants")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        metavar="NAME",
        help="--compare: these variants only (default: all; 'engine' always)",
    )
    mode.add_argument("--matmul", action="store_true", help="the output projection")
    mode.add_argument(
        "--compiled", action="store_true", help="the step through torch.compile"
    )
    parser.add_argument(
        "--cpp-wrapper", action="store_true", help="--compiled: Inductor's C++ wrapper"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="--compare: each variant as this many engines of one thread, on "
        "batches side by side (delight_fairseq.inference.pool)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from fairseq import checkpoint_utils

    import delight_fairseq  # noqa: F401

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(args.delight)], arg_overrides={"data": str(multi30k.DATA_BIN)}
    )
    model = models[0].eval()
    if args.matmul:
        return time_output_projection(model, rows=64 * 5)
    batches, n = sorted_batches(task, args.sentences)
    if args.compare:
        return compare(model, task.target_dictionary, args, batches, n)
    if args.compiled:
        return compiled(model, task.target_dictionary, args, batches, n)

    from torch.profiler import ProfilerActivity, profile

    variant = "int8" if args.int8 else "engine"
    engine = build_engine(model, task.target_dictionary, args, variant)
    engine.translate(*batches[0])  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        start = time.perf_counter()
        for tokens, lengths in batches:
            engine.translate(tokens, lengths)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    self_total = sum(e.self_cpu_time_total for e in events) / 1e6
    calls = sum(e.count for e in events)
    print(
        f"{n} sentences, beam {args.beam}, {'int8' if args.int8 else 'fp32'}: "
        f"{n / wall:.1f} sentences/s under the profiler; {calls / n:,.0f} operator "
        f"calls per sentence; operators' own time {self_total:.2f} s of {wall:.2f} s "
        f"wall ({self_total / wall:.0%})"
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))


def sorted_batches(task, sentences: int):
    """The first ``sentences`` test sentences in batches of 64, sorted by length."""
    from fairseq.data import data_utils

    task.load_dataset("test")
    dataset = task.dataset("test")
    n = min(sentences, len(dataset))
    ids = sorted(range(n), key=lambda i: len(dataset[i]["source"]))
    sd = task.source_dictionary
    batches = []
    for start in range(0, n, 64):
        src = [dataset[i]["source"] for i in ids[start : start + 64]]
        tokens = data_utils.collate_tokens(src, sd.pad(), sd.eos(), left_pad=True)
        batches.append((tokens, torch.tensor([len(s) for s in src])))
    return batches, n


VARIANTS = (
    "engine",
    "Python blocks",
    "torch matmul",
    "torch matmul, Python blocks",
    "ATen attention, Python blocks",
    "oneDNN matmul",
    "torch candidates",
    "general loop",
    "fresh log-probs",
    "int8",
    "int8, Python blocks",
    "int8 general loop",
    "int8 oneDNN",
    "int8 oneDNN output",
    "bfloat16",
    "Python search",
)
#: the variants that change the Python search loop, or what it calls, and so
#: run it instead of the C++ one (csrc/search.cpp)
PYTHON_SEARCH = (
    "Python search",
    "torch candidates",
    "general loop",
    "int8 general loop",
)


def build_engine(model, tgt_dict, args, variant: str = "engine"):
    from delight_fairseq.inference import qlayers
    from delight_fairseq.inference.engine import Engine
    from delight_fairseq.inference.quantize import quantize_engine

    if variant == "bfloat16":
        model = copy.deepcopy(model).bfloat16()
    matmul = "torch" if variant.startswith("torch matmul") else "auto"
    matmul = "onednn" if variant == "oneDNN matmul" else matmul
    engine = Engine(model, tgt_dict, args.beam, args.lenpen, matmul=matmul)
    if variant == "torch candidates":
        step = engine.step
        fused_candidates = engine.candidates

        def candidates(*a):
            kernel, step.kernel = step.kernel, None
            try:
                return fused_candidates(*a)
            finally:
                step.kernel = kernel

        engine.candidates = candidates
    elif variant == "fresh log-probs":
        step = engine.step
        step.use_native = False  # the C++ head does not call log_probs
        step.log_probs = lambda x: F.log_softmax(
            step.output_layer(x), dim=-1, dtype=torch.float32
        )
    elif variant.startswith("int8"):
        default = torch.backends.quantized.engine
        if variant == "int8 oneDNN":
            torch.backends.quantized.engine = "onednn"
        try:
            quantize_engine(engine)
            output = engine.step.weights.output
            if variant == "int8 oneDNN output":
                q, scale, bias = qlayers.unpack(output.packed)
                torch.backends.quantized.engine = "onednn"
                output.packed = qlayers.prepack(q, scale, bias)
        finally:
            torch.backends.quantized.engine = default
    if variant.endswith("Python blocks"):  # after quantize_engine's new step
        engine.step.use_native = False
    if variant in PYTHON_SEARCH:
        engine.native_search = False
    if variant.startswith("ATen attention"):
        engine.step.fused_attention = False
    if variant.endswith("general loop"):
        from delight_fairseq.inference import search

        translate = engine.translate

        def general_loop(*a):
            greedy, search.greedy = search.greedy, search.beams
            try:
                return translate(*a)
            finally:
                search.greedy = greedy

        engine.translate = general_loop
    return engine


def in_turn(engines: dict, batches, n: int, rounds: int, reference: str) -> None:
    """Each engine decodes the batches in turn, ``rounds`` times (so that the
    machine's drift falls on all alike); prints each one's median sentences/s
    and how many of its hypotheses equal the ``reference`` engine's."""
    times = {name: [] for name in engines}
    hyps = {}
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            hyps[name] = decode(engine, batches)
            times[name].append(time.perf_counter() - start)
    width = max(map(len, engines))
    for name in engines:
        same = sum(a == b for a, b in zip(hyps[name], hyps[reference]))
        rate = n / statistics.median(times[name])
        print(
            f"{name:>{width}}: {rate:7.1f} sentences/s  {same}/{n} as the {reference}'s"
        )


def decode(engine, batches) -> list:
    """The hypotheses of every batch, in order: one engine's, or a pool's
    (``--workers``: the pool's engines take the batches side by side)."""
    if isinstance(engine, EnginePool):
        results = engine.map(lambda b: engine.translate(*b), batches)
        return [h for hyps in results for h in hyps]
    return [h for b in batches for h in engine.translate(*b)]


def compare(model, tgt_dict, args, batches, n):
    names = ["engine"] + [v for v in args.variants if v != "engine"]
    engines = {}
    for name in names:
        built = [build_engine(model, tgt_dict, args, name) for _ in range(args.workers)]
        for e in built:
            e.translate(*batches[0])  # warm-up
        engines[name] = built[0] if args.workers == 1 else EnginePool(built)
    threads = (
        "one thread" if args.workers == 1 else f"{args.workers} engines of one thread"
    )
    print(f"{n} sentences, beam {args.beam}, {threads}, {args.rounds} rounds")
    in_turn(engines, batches, n, args.rounds, "engine")


class PlainStep:
    """A decoder step without the fused kernels, its call eager or compiled."""

    def __init__(self, step, compile_it: bool):
        self.inner = step
        step.use_native = False  # the Python loop (and so the Python search)
        call = type(step).__call__.__get__(step)
        self.call = torch.compile(call, dynamic=True) if compile_it else call

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prepare(self, *args):
        self.inner.prepare(*args)
        self.inner.kernel = None

    def __call__(self, tokens, step, cache, enc):
        # fill the encoder state's per-heads masks first: filled inside the
        # compiled step, they change its guards, and it compiles again
        for block in self.inner.weights.blocks:
            enc.mask(block.heads)
        return self.call(tokens, step, cache, enc)


def compiled(model, tgt_dict, args, batches, n):
    import torch._dynamo
    import torch._inductor.config

    from delight_fairseq.inference.engine import Engine

    torch._inductor.config.cpp_wrapper = args.cpp_wrapper
    # recompiles: the first step decodes one row per sentence, masks come and go
    torch._dynamo.config.recompile_limit = 64
    engines = {"engine": build_engine(model, tgt_dict, args)}
    for name, compile_it in (("eager step", False), ("compiled step", True)):
        engine = Engine(model, tgt_dict, args.beam, args.lenpen, matmul="torch")
        engine.step = PlainStep(engine.step, compile_it)
        engines[name] = engine
    with torch.no_grad():
        for name, engine in engines.items():
            start = time.perf_counter()
            for _ in range(2):  # compiles during the first passes
                for b in batches:
                    engine.translate(*b)
            print(f"{name:>14}: first two passes {time.perf_counter() - start:6.1f} s")
        wrapper = "C++" if args.cpp_wrapper else "Python"
        print(f"{n} sentences, beam {args.beam}, one thread, {args.rounds} rounds, "
              f"Inductor's {wrapper} wrapper")  # fmt: skip
        in_turn(engines, batches, n, args.rounds, "eager step")


def time_output_projection(model, rows: int, repeats: int = 50):
    from delight_fairseq.inference import qlayers
    from delight_fairseq.inference.functional import DecoderWeights

    weight, _ = DecoderWeights(model.decoder).output  # tied or not
    weight = weight.detach().float()
    x = torch.randn(rows, weight.size(1))
    q, scale = qlayers.quantize_tensor(weight, 1)
    default = torch.backends.quantized.engine
    packed = {}
    try:
        for name in ("fbgemm", "onednn"):
            torch.backends.quantized.engine = name
            packed[name] = qlayers.prepack(q, scale)
    finally:
        torch.backends.quantized.engine = default
    xb, wb = x.bfloat16(), weight.bfloat16()
    calls = {
        "float32 mm": lambda: torch.mm(x, weight.t()),
        "bfloat16 mm": lambda: torch.mm(xb, wb.t()),
        "int8 fbgemm": lambda: torch.ops.quantized.linear_dynamic(
            x, packed["fbgemm"], False
        ),
        "int8 oneDNN": lambda: torch.ops.quantized.linear_dynamic(
            x, packed["onednn"], False
        ),
    }
    flops = 2 * rows * weight.size(0) * weight.size(1)
    print(f"output projection: {rows} x {weight.size(1)} by {weight.size(1)} x "
          f"{weight.size(0)}, one thread")  # fmt: skip
    for name, call in calls.items():
        for _ in range(5):
            call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        seconds = (time.perf_counter() - start) / repeats
        print(
            f"{name:>12}: {seconds * 1e3:6.2f} ms  ({flops / seconds / 1e9:5.0f} GFLOP/s)"
        )


if __name__ == "__main__":
    main()
