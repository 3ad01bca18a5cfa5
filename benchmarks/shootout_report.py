"""Turn benchmarks/shootout.py's outputs into results.json, a table and a plot.

python benchmarks/shootout_report.py benchmarks/out/shootout
"""

import json
import logging
import re
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]


def macs(checkpoint: Path, data: str, src_len: int = 20, tgt_len: int = 20) -> int:
    """Multiply-adds of one forward pass (teacher forcing) on one sentence pair."""
    from fairseq import checkpoint_utils

    import delight_fairseq  # noqa: F401

    models, _ = checkpoint_utils.load_model_ensemble(
        [str(checkpoint)], arg_overrides={"data": data}
    )
    model = models[0].eval()
    src = torch.randint(4, 100, (1, src_len))
    prev = torch.randint(4, 100, (1, tgt_len))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(src, torch.tensor([src_len]), prev)
    return counter.get_total_flops() // 2


def collect(folder: Path, data: str) -> dict:
    log = (folder / "train.log").read_text()
    params = int(
        re.search(r"num\. shared model params: ([\d,]+)", log).group(1).replace(",", "")
    )
    wps = [float(x) for x in re.findall(r"\| train \| .*?\| wps ([\d.]+)", log)]
    updates = int(re.findall(r"num_updates (\d+)", log)[-1])
    rss_kb = int((folder / "rss_kb").read_text().split()[-1])
    bleu = json.loads((folder / "eval" / "bleu.json").read_text())
    gen = (folder / "eval" / "generate-test.txt").read_text()
    speed = re.search(r"Translated ([\d,]+) sentences .*?\(([\d.]+) sentences/s", gen)
    return {
        "model": folder.name,
        "params": params,
        "updates": updates,
        "train_tokens_per_s": round(sum(wps) / len(wps), 1),
        "peak_rss_mib": round(rss_kb / 1024),
        "bleu": round(bleu["sacrebleu"], 2),
        "signature": bleu["signature"],
        "decode_sentences_per_s": float(speed.group(2)),
        "macs_20x20": macs(folder / "checkpoint_best.pt", data),
    }


def summarise(runs: list) -> dict:
    """One model's seeds: BLEU mean and range, the other figures averaged."""

    def mean(key):
        return sum(r[key] for r in runs) / len(runs)

    bleus = [r["bleu"] for r in runs]
    return {
        "model": runs[0]["model"],
        "seeds": [r["seed"] for r in runs],
        "params": runs[0]["params"],
        "macs_20x20": runs[0]["macs_20x20"],
        "updates": round(mean("updates")),
        "train_tokens_per_s": round(mean("train_tokens_per_s"), 1),
        "decode_sentences_per_s": round(mean("decode_sentences_per_s"), 1),
        "peak_rss_mib": round(mean("peak_rss_mib")),
        "bleu_per_seed": bleus,
        "bleu_mean": round(sum(bleus) / len(bleus), 2),
        "signature": runs[0]["signature"],
    }


def main(argv=None):
    # fairseq's import leaves the root logger at DEBUG; keep the report readable
    for name in ("matplotlib", "filelock", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out = Path((argv or sys.argv[1:])[0])
    data = str(ROOT / "benchmarks/out/multi30k_cpu/data-bin/multi30k_de_en")
    models = []
    for model_dir in sorted(d for d in out.iterdir() if d.is_dir()):
        runs = []
        for seed_dir in sorted(model_dir.glob("seed*")):
            if (seed_dir / "eval" / "bleu.json").exists():
                run = collect(seed_dir, data)
                run["model"] = model_dir.name
                run["seed"] = int(seed_dir.name[len("seed") :])
                runs.append(run)
        if runs:
            models.append(summarise(runs))
    (out / "results.json").write_text(json.dumps(models, indent=2))
    lines = [
        "| model | parameters | MACs (20 x 20 tokens) | train target tokens/s | "
        "decode sentences/s (beam 5) | peak RSS | updates | sacreBLEU per seed | "
        "mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in models:
        per_seed = " / ".join(f"{b:.2f}" for b in r["bleu_per_seed"])
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | "
            f"{r['macs_20x20'] / 1e6:.0f} M | {r['train_tokens_per_s']:,.0f} | "
            f"{r['decode_sentences_per_s']:.1f} | {r['peak_rss_mib']:,} MiB | "
            f"{r['updates']:,} | {per_seed} | **{r['bleu_mean']:.2f}** |"
        )
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for r in models:
        color = "tab:blue" if r["model"].startswith("delight") else "tab:red"
        x = r["params"] / 1e6
        ax.scatter([x] * len(r["bleu_per_seed"]), r["bleu_per_seed"], color=color, s=12)
        ax.scatter([x], [r["bleu_mean"]], color=color, marker="_", s=300)
        ax.annotate(
            r["model"],
            (x, r["bleu_mean"]),
            fontsize=8,
            xytext=(6, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("sacreBLEU, Multi30k test_2016_flickr")
    ax.set_title("Equal CPU time per model (dots: seeds, bar: mean)")
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "bleu_vs_params.png", dpi=120)


if __name__ == "__main__":
    main()
