"""benchmarks/translate.py's report: its runs as a Markdown table and as a figure of
BLEU against sentences/s."""

from pathlib import Path


def table(results: dict, batch: int) -> str:
    """The runs of ``results`` as a Markdown table under a line that says what ran."""
    rows = [
        "| engine | threads | beam | sentences/s | target tokens/s | peak RSS "
        "| CPU share | sacreBLEU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        rows.append(
            f"| {r['engine']} | {r['threads']} | {r['beam']} | "
            f"{r['sentences_per_s']:.1f} | {r['target_tokens_per_s']:,.0f} | "
            f"{r['peak_rss_mib']:,.0f} MiB | {r['cpu_share']:.0%} | {r['bleu']:.2f} |"
        )
    notes = [f"- {e}: skipped, {why}" for e, why in results["skipped"].items()]
    head = (
        f"{results['sentences']} Multi30k test sentences, batches of {batch}, "
        f"lenpen DeLighT {results['lenpen']['delight']}, transformer "
        f"{results['lenpen']['transformer']}; {results['versions']}; "
        f"{results.get('cpu', 'CPU not recorded')}"
    )
    return "\n".join([head, "", *rows, *([""] + notes if notes else [])]) + "\n"


def plot(results: dict, path: Path, engines):
    """BLEU against sentences/s at each beam, a colour per engine of ``engines``."""
    import logging

    # before the import: fairseq set the root logger to DEBUG
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beams = sorted({r["beam"] for r in results["runs"]}, reverse=True)
    fig, axes = plt.subplots(
        1, len(beams), figsize=(6 * len(beams) + 2, 4.5), squeeze=False
    )
    colors = dict(zip(engines, plt.cm.tab20.colors))
    markers = {1: "o", 2: "s"}
    for ax, beam in zip(axes[0], beams):
        for r in results["runs"]:
            if r["beam"] == beam:
                ax.plot(r["sentences_per_s"], r["bleu"], markers.get(r["threads"], "x"),
                        color=colors[r["engine"]], markersize=8,
                        label=f"{r['engine']}, {r['threads']} thr")  # fmt: skip
        ax.set_title(f"beam {beam}")
        ax.set_xscale("log")
        ax.set_xlabel("sentences/s (CPU; circle 1 thread, square 2)")
        ax.set_ylabel("sacreBLEU")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(
        f"Multi30k De->En test, {results['sentences']} sentences: BLEU against speed"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
