"""Tune both families the same way, on the validation set only.

    python benchmarks/tune.py [--minutes 7] [--seed 1] [--only TRIAL ...]

Each trial trains one model for the same wall clock with the same seed, then
decodes the validation set (beam 5) at every length penalty of
``multi30k.LENPENS`` and keeps the best. Both families get the same number of
trials. The test set is never decoded here. Writes
benchmarks/out/tune/<trial>/ and benchmarks/out/tune/trials.{json,md}.
Run it alone: every trial gets the same wall clock.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multi30k  # noqa: E402
import scoring  # noqa: E402
from multi30k import BASE, delight_shape, recipe  # noqa: E402

OUT = multi30k.OUT / "tune"

# One baseline and the same kinds of change for each family: less dropout, a
# higher peak LR with a shorter warmup.
TRIALS = {
    "delight_d192_base": ("delight", delight_shape(192), BASE["delight"]),
    "delight_d192_drop": (
        "delight",
        delight_shape(192),
        dict(BASE["delight"], dropout=0.1, attention=0.0, delight=0.0),
    ),
    "delight_d192_lr": (
        "delight",
        delight_shape(192),
        dict(BASE["delight"], lr=0.006, warmup=250),
    ),
    "transformer_256_base": (
        "transformer",
        multi30k.TRANSFORMER_3x256,
        BASE["transformer"],
    ),
    "transformer_256_drop": (
        "transformer",
        multi30k.TRANSFORMER_3x256,
        dict(BASE["transformer"], dropout=0.2),
    ),
    "transformer_256_lr": (
        "transformer",
        multi30k.TRANSFORMER_3x256,
        dict(BASE["transformer"], lr=0.002, warmup=250),
    ),
}


def run_trial(name: str, minutes: float, seed: int) -> dict:
    fam, shape, settings = TRIALS[name]
    folder = OUT / name
    run = multi30k.train(
        shape + recipe(**settings),
        folder,
        minutes,
        seed,
        extra=["--no-epoch-checkpoints", "--no-save-optimizer-state"],
    )
    scorer = scoring.Scorer(folder / "checkpoint_last.pt")
    tuned = scorer.tune_lenpen()
    return {
        "trial": name,
        "family": fam,
        "settings": settings,
        "seed": seed,
        "minutes": minutes,
        "updates": scorer.updates,
        **run,
        "lenpen": tuned["lenpen"],
        "valid_bleu": tuned["valid"]["bleu"],
        "valid_bp": tuned["valid"]["bp"],
        "valid_by_lenpen": {t["lenpen"]: t["bleu"] for t in tuned["trials"]},
    }


def table(trials) -> str:
    rows = [
        "| trial | family | settings | updates | best lenpen | valid BLEU | BP | "
        "valid BLEU at lenpen " + " / ".join(map(str, multi30k.LENPENS)) + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        settings = ", ".join(f"{k} {v}" for k, v in t["settings"].items())
        by = " / ".join(f"{b:.2f}" for b in t["valid_by_lenpen"].values())
        rows.append(
            f"| {t['trial']} | {t['family']} | {settings} | {t['updates']} | "
            f"{t['lenpen']} | {t['valid_bleu']:.2f} | {t['valid_bp']} | {by} |"
        )
    return "\n".join(rows) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="equal-budget tuning on validation")
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=sorted(TRIALS))
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(name)s | %(message)s", level="INFO")
    OUT.mkdir(parents=True, exist_ok=True)
    results_file = OUT / "trials.json"
    done = json.loads(results_file.read_text()) if results_file.exists() else {}
    for name in args.only or TRIALS:
        done[name] = run_trial(name, args.minutes, args.seed)
        multi30k.logger.info(
            "%s: valid BLEU %.2f at lenpen %s after %d updates",
            name,
            done[name]["valid_bleu"],
            done[name]["lenpen"],
            done[name]["updates"],
        )
        results_file.write_text(json.dumps(done, indent=2))
        (OUT / "trials.md").write_text(table(done.values()))
    print((OUT / "trials.md").read_text())


if __name__ == "__main__":
    main()
