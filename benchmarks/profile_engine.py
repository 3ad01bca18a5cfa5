"""Where the lean engine's decoding time goes: torch.profiler over the Multi30k test
sentences, one thread, batches of 64 sorted by length (as benchmarks/translate.py).

    python benchmarks/profile_engine.py --delight CKPT [--int8] [--beam 5] [--sentences 300]

Prints the top operators by self CPU time, the number of operator calls per
sentence, and the share of the wall time that the operators' own work explains
(the rest is Python and dispatch between them).
"""

import argparse
import time
from pathlib import Path

import multi30k
import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delight", type=Path, required=True, help="checkpoint")
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--lenpen", type=float, default=1.0)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from fairseq import checkpoint_utils
    from fairseq.data import data_utils
    from torch.profiler import ProfilerActivity, profile

    import delight_fairseq  # noqa: F401
    from delight_fairseq.inference.engine import Engine

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(args.delight)], arg_overrides={"data": str(multi30k.DATA_BIN)}
    )
    engine = Engine(models[0].eval(), task.target_dictionary, args.beam, args.lenpen)
    if args.int8:
        from delight_fairseq.inference.quantize import quantize_engine

        engine = quantize_engine(engine) or engine
    task.load_dataset("test")
    dataset = task.dataset("test")
    n = min(args.sentences, len(dataset))
    ids = sorted(range(n), key=lambda i: len(dataset[i]["source"]))
    sd = task.source_dictionary
    batches = []
    for start in range(0, n, 64):
        src = [dataset[i]["source"] for i in ids[start : start + 64]]
        tokens = data_utils.collate_tokens(src, sd.pad(), sd.eos(), left_pad=True)
        batches.append((tokens, torch.tensor([len(s) for s in src])))
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


if __name__ == "__main__":
    main()
