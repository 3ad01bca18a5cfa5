"""Learning curves on Multi30k De->En: one run per model, BLEU against wall clock
and against updates, all models in one figure.

    python benchmarks/curves.py [--minutes 60] [--every N] [--seed 1] [--models ...]
    python benchmarks/curves.py --minutes 60 --report-only   # re-plot from curves.json
    python benchmarks/curves.py --minutes 60 --models M --score-only   # score M's run again
    python benchmarks/curves.py --probe 150 --models A B   # each one's updates/s alone

Each model trains once for the same wall-clock budget and saves a checkpoint every
``--every`` updates (default: EVERY, about every 4 minutes of this 2-core CPU for each
model, so that the faster models are not scored more often); its training minutes
are read back from the checkpoint. Then
each checkpoint is scored: validation and test_2016_flickr BLEU, beam 5, at the
length penalty that is best on validation for the last checkpoint; and the
average of the last three checkpoints. Each budget has its own folder and figure:
benchmarks/out/curves/<M>min/<model>/seed<S>/, .../<M>min/curves.json, and
benchmarks/curves_<M>min.png, with a table of the seeds, their candidates (the end or
the average, whichever scores higher on validation) and their means in
.../<M>min/summary.md. A model's run starts afresh (its old folder is
removed), and its result is merged into that budget's curves.json, so models can
run one at a time. Run it alone: every model gets the same wall clock.

``--probe SECONDS`` only trains each model for SECONDS, one after the other, without
validation or scoring (in a temporary folder), and prints its updates/s from its
second log line (the first holds the start-up) to its last: the ratio of two models'
speeds, measured side by side, turns one model's updates in an hour into the other's.
"""

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multi30k  # noqa: E402
import scoring  # noqa: E402
import trials  # noqa: E402

OUT = multi30k.OUT / "curves"
DEFAULT_MODELS = ("transformer_256", "delight_d192", "delight_d128")
# updates per checkpoint: about 4 minutes each (0.8, 1.2 and 1.7 updates/s here)
EVERY = {"transformer_256": 200, "delight_d192": 300, "delight_d128": 400}


def batch_tokens(model: str) -> int:
    """Tokens per batch of ``model``'s training command (COMMON, then its flags)."""
    flags = [*multi30k.COMMON, *trials.ALL_MODELS[model]]
    return int(multi30k.flag_value(flags, "--max-tokens"))


# a trial saves as often in minutes as the model it changes: with half its batch,
# every twice as many updates
EVERY.update(
    {name: EVERY[base] * batch_tokens(base) // batch_tokens(name)
     for name, (base, _) in trials.TRIALS.items()}
)  # fmt: skip
AVERAGE_LAST = 3
# tune.py found the best length penalty at the top of its grid: look further here
LENPENS = (*multi30k.LENPENS, 3.0)


def updates_of(path: Path) -> int:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    return int(state["optimizer_history"][-1]["num_updates"])


def checkpoints(folder: Path):
    """The interval checkpoints in update order, then checkpoint_last.pt when it
    is later: the state at the end of the budget, which an interval rarely hits."""
    found = []
    for path in folder.glob("checkpoint_*_*.pt"):
        match = re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    last = folder / "checkpoint_last.pt"
    if last.exists():
        updates = updates_of(last)  # a whole checkpoint to load: once
        if not found or updates > found[-1][0]:
            found.append((updates, last))
    return [path for _, path in found]


def train_log_facts(log: str) -> dict:
    params = re.search(r"num\. shared model params: ([\d,]+)", log)
    wps = [float(x) for x in re.findall(r"\| train \| .*?\| wps ([\d.]+)", log)]
    return {
        "params": int(params.group(1).replace(",", "")) if params else None,
        "train_tokens_per_s": round(sum(wps) / len(wps), 1) if wps else None,
    }


def budget_dir(minutes: float) -> Path:
    return OUT / f"{minutes:g}min"


RUN_FACTS = ("wall_s", "peak_rss_mib", "cpu_share")


def curve(model: str, minutes: float, every: int, seed: int, earlier=None) -> dict:
    """Train ``model`` and score its checkpoints; with ``earlier`` (its entry in
    curves.json), score the checkpoints of that run again without training."""
    import shutil

    from delight_fairseq.tools.averaging import average_checkpoints

    folder = budget_dir(minutes) / model / f"seed{seed}"
    data = trials.data_bin(model)
    if earlier is not None:
        run = {k: earlier[k] for k in RUN_FACTS}
        every = earlier.get("every", every)
    else:
        if folder.exists():  # fairseq would resume from its checkpoint_last.pt
            multi30k.logger.info("removing the earlier run in %s", folder)
            shutil.rmtree(folder)
        run = multi30k.train(
            trials.ALL_MODELS[model],
            folder,
            minutes,
            seed,
            data=data,
            extra=[
                "--save-interval-updates", str(every), "--keep-interval-updates", "-1",
                "--no-epoch-checkpoints", "--no-save-optimizer-state",
            ],
        )  # fmt: skip
    paths = checkpoints(folder)
    last = scoring.Scorer(paths[-1], data)
    tuned = last.tune_lenpen(LENPENS)
    lenpen = tuned["lenpen"]
    points = []
    for path in paths:
        scorer = last if path == paths[-1] else scoring.Scorer(path, data)
        test = scorer.bleu("test", lenpen)
        points.append(
            {
                "checkpoint": path.name,
                "updates": scorer.updates,
                "minutes": scorer.train_minutes,
                "valid_bleu": scorer.bleu("valid", lenpen)["bleu"],
                "test_bleu": test["bleu"],
                "test_bp": test["bp"],
            }
        )
        multi30k.logger.info("%s %s: %s", model, path.name, points[-1])
    import torch

    averaged = folder / f"checkpoint_avg{AVERAGE_LAST}.pt"
    torch.save(average_checkpoints(paths[-AVERAGE_LAST:]), averaged)
    avg = scoring.Scorer(averaged, data)
    return {
        "model": model,
        "seed": seed,
        "minutes": minutes,
        "flags": trials.ALL_MODELS[model],
        "every": every,
        **train_log_facts((folder / "train.log").read_text()),
        **run,
        "lenpen": lenpen,
        "lenpen_trials": tuned["trials"],
        "decode_sentences_per_s": test["sentences_per_s"],
        "points": points,
        "average": {
            "of": [p.name for p in paths[-AVERAGE_LAST:]],
            "valid_bleu": avg.bleu("valid", lenpen)["bleu"],
            "test_bleu": avg.bleu("test", lenpen)["bleu"],
        },
    }


def probe(model: str, seconds: float, seed: int) -> dict:
    """``model``'s training speed over ``seconds`` alone (see the module's doc)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = multi30k.train(
            trials.ALL_MODELS[model],
            Path(tmp),
            seconds / 60,
            seed,
            data=trials.data_bin(model),
            extra=["--disable-validation", "--log-interval", "25"],
        )
        log = (Path(tmp) / "train.log").read_text()
    rows = re.findall(r"num_updates=(\d+), .*?, wall=(\d+)", log)
    if len(rows) < 3:
        raise RuntimeError(
            f"{model} logged {len(rows)} times in {seconds:g} s; give --probe more time"
        )
    (u0, w0), (u1, w1) = rows[1], rows[-1]
    rate = (int(u1) - int(u0)) / (int(w1) - int(w0))
    return {**run, "updates_per_s": round(rate, 3), "from_to": (int(u0), int(u1))}


def plot(results: dict, minutes: float, path: Path):
    """Test BLEU (solid) and validation BLEU (dashed) of every run; one colour per
    model, one marker per seed."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font search
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in results.values()})
    # tab20 holds 20 colours; past that they repeat (the seeds' markers still differ)
    palette = plt.cm.tab20.colors
    colors = {model: palette[i % len(palette)] for i, model in enumerate(models)}
    markers = "osD^v"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for key, r in sorted(results.items()):
        color, marker = colors[r["model"]], markers[(r["seed"] - 1) % len(markers)]
        label = f"{key} ({r['params'] / 1e6:.2f} M)"
        for ax, x in zip(axes, ("minutes", "updates")):
            xs = [p[x] for p in r["points"]]
            ax.plot(xs, [p["test_bleu"] for p in r["points"]], "-", marker=marker,
                    color=color, label=f"{label}, test")  # fmt: skip
            ax.plot(xs, [p["valid_bleu"] for p in r["points"]], "--", color=color,
                    alpha=0.4)  # fmt: skip
            ax.plot([xs[-1]], [r["average"]["test_bleu"]], "*", color=color,
                    markersize=12)  # fmt: skip
    axes[0].set_xlabel("training wall clock (minutes, 2-core CPU)")
    axes[1].set_xlabel("updates (4,096-token batches)")
    axes[0].set_ylabel("sacreBLEU, beam 5")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Multi30k De->En learning curves, {minutes:g} min per model (dashed: "
        f"validation; star: average of the last {AVERAGE_LAST} checkpoints, test)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def candidate(run: dict) -> tuple:
    """(which, test BLEU) of a run's candidate: the end of the budget or the average
    of its last checkpoints, whichever scores higher on validation (the end on a
    tie). The test score is read only after this choice."""
    end, average = run["points"][-1], run["average"]
    if average["valid_bleu"] > end["valid_bleu"]:
        return "average", average["test_bleu"]
    return "end", end["test_bleu"]


def summary(results: dict) -> str:
    """A Markdown table: per model, each seed's end-of-budget and averaged test
    BLEU, and its candidate's (chosen on validation), with their means over the
    seeds."""
    by_model = {}
    for r in results.values():
        by_model.setdefault(r["model"], []).append(r)
    lines = [
        "| model | params | seeds | updates | end of budget: test | mean | "
        "average of last 3: test | mean | candidate: test | mean |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(scores, labels=None):
        """The seeds' scores (each with its label, if any), then their mean."""
        texts = [f"{b:.2f}" for b in scores]
        if labels:
            texts = [f"{text} ({label})" for text, label in zip(texts, labels)]
        return f"{' / '.join(texts)} | {sum(scores) / len(scores):.2f}"

    for model, runs in sorted(by_model.items()):
        runs.sort(key=lambda r: r["seed"])
        which, picked = zip(*(candidate(r) for r in runs))
        updates = [r["points"][-1]["updates"] for r in runs]
        lines.append(
            f"| {model} | {runs[0]['params']:,} "
            f"| {', '.join(str(r['seed']) for r in runs)} "
            f"| {', '.join(f'{u:,}' for u in updates)} "
            f"| {cells([r['points'][-1]['test_bleu'] for r in runs])} "
            f"| {cells([r['average']['test_bleu'] for r in runs])} "
            f"| {cells(picked, which)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="learning curves, one run per model")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument(
        "--every", type=int, help="updates per checkpoint (default: EVERY's)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--models",
        nargs="*",
        default=list(DEFAULT_MODELS),
        choices=sorted(trials.ALL_MODELS),
        help="default: %(default)s; the others are trials (trials.TRIALS)",
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="score the models' existing runs again (no training)",
    )
    parser.add_argument(
        "--probe",
        type=float,
        metavar="SECONDS",
        help="only time each model's training for SECONDS alone (no scoring)",
    )
    args = multi30k.parse_args(parser, argv, trials.ALL_MODELS)
    if args.probe:
        for model in args.models:
            facts = probe(model, args.probe, args.seed)
            print(
                f"{model}: {facts['updates_per_s']:.3f} updates/s (updates "
                f"{facts['from_to'][0]}-{facts['from_to'][1]}; CPU share "
                f"{facts['cpu_share']:.1%}, peak {facts['peak_rss_mib']:,} MiB)"
            )
        return
    budget_dir(args.minutes).mkdir(parents=True, exist_ok=True)
    results_file = budget_dir(args.minutes) / "curves.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if not args.report_only:
        for model in args.models:
            key = f"{model} seed{args.seed}"
            if args.score_only and key not in results:
                parser.error(f"--score-only: no run of {key} in {results_file}")
            results[key] = curve(
                model,
                args.minutes,
                args.every or EVERY[model],
                args.seed,
                earlier=results[key] if args.score_only else None,
            )
            results_file.write_text(json.dumps(results, indent=2))
    plot(
        results,
        args.minutes,
        multi30k.ROOT / "benchmarks" / f"curves_{args.minutes:g}min.png",
    )
    for key, r in sorted(results.items()):
        print(
            f"{key}: {r['params']:,} params, {r['points'][-1]['updates']} updates, "
            f"test {r['points'][-1]['test_bleu']:.2f} (average "
            f"{r['average']['test_bleu']:.2f}), lenpen {r['lenpen']}"
        )
    table = summary(results)
    (budget_dir(args.minutes) / "summary.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
