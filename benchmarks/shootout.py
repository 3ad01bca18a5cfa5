"""The real-data shoot-out on this CPU: Multi30k German->English, each model of
``multi30k.MODELS`` trained for the same wall-clock budget, per seed.

    python benchmarks/shootout.py [MINUTES] [--seeds 1 2] [--models ...]

Writes benchmarks/out/shootout/<model>/seed<S>/{train.log, checkpoint_best.pt,
eval/} and, through shootout_report.py, results.json, RESULTS.md's table and
the plot. Run it alone: every model gets the same wall clock.
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multi30k  # noqa: E402
import shootout_report  # noqa: E402

from delight_fairseq.tools.evaluate import evaluate  # noqa: E402

OUT = multi30k.OUT / "shootout"


def main(argv=None):
    parser = argparse.ArgumentParser(description="equal wall clock per model and seed")
    parser.add_argument("minutes", type=float, nargs="?", default=10.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", default=list(multi30k.MODELS))
    args = multi30k.parse_args(parser, argv)
    data = multi30k.prepare()
    # seeds outer, models inner: a slow drift of the machine touches every model alike
    for seed in args.seeds:
        for model in args.models:
            folder = OUT / model / f"seed{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            multi30k.train(
                multi30k.MODELS[model], folder, args.minutes, seed,
                extra=["--keep-last-epochs", "1", "--no-epoch-checkpoints"],
            )  # fmt: skip
            evaluate(
                data.name, folder / "checkpoint_best.pt", data.parent,
                ref=multi30k.RAW / multi30k.REFERENCES["test"], lenpen=1.0,
            )  # fmt: skip
    shootout_report.main([str(OUT)])


if __name__ == "__main__":
    main()
