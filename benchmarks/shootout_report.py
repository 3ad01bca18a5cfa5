"""Turn benchmarks/shootout.sh's outputs into benchmarks/RESULTS.md and a plot.

python benchmarks/shootout_report.py benchmarks/out/shootout
"""

import json
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
    rss_kb = int(
        re.search(
            r"Maximum resident set size \(kbytes\): (\d+)",
            (folder / "time.txt").read_text(),
        ).group(1)
    )
    bleu = json.loads((folder / "eval" / "bleu.json").read_text())
    gen = (folder / "eval" / "generate.log").read_text()
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


def main():
    out = Path(sys.argv[1])
    data = str(ROOT / "benchmarks/out/multi30k_cpu/data-bin/multi30k_de_en")
    rows = [
        collect(d, data) for d in sorted(out.iterdir()) if (d / "train.log").exists()
    ]
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| model | parameters | MACs (20 x 20 tokens) | train target tokens/s | "
        "decode sentences/s (beam 5) | peak RSS | updates | sacreBLEU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['macs_20x20'] / 1e6:.0f} M | "
            f"{r['train_tokens_per_s']:,.0f} | {r['decode_sentences_per_s']:.1f} | "
            f"{r['peak_rss_mib']:,} MiB | {r['updates']:,} | {r['bleu']:.2f} |"
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
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        color = "tab:blue" if r["model"].startswith("delight") else "tab:red"
        ax.scatter(r["params"] / 1e6, r["bleu"], color=color)
        ax.annotate(
            r["model"],
            (r["params"] / 1e6, r["bleu"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("sacreBLEU, Multi30k test_2016_flickr")
    ax.set_title("Equal CPU time per model")
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "bleu_vs_params.png", dpi=120)


if __name__ == "__main__":
    main()
