"""Reproduce a table of the paper: parameters and BLEU, measured beside the paper's.

    delight-reproduce wmt14_en_de --dry-run
    delight-reproduce wmt16_en_ro --run 128 --gpus 8

``--dry-run`` builds every row's model on the CPU (seconds) and fills the
parameter side. Parameters are counted on the model built with the real
dictionaries in ``data-bin/<dataset>`` when they exist, else with the
dictionary sizes that the authors' logs imply (marked as such). BLEU is read
from ``checkpoints/<dataset>_d<d_m>/eval/bleu.json``, which ``delight-evaluate``
writes. ``--run D_M`` runs the whole chain for one row first, in this process:
prepare (if the data-bin is missing), train, evaluate.
"""

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import List, Optional

from fairseq.data import Dictionary

from ..builder import build_model, sized_dictionary
from ..catalog import BENCHMARKS, get
from .training import add_data_bin

logger = logging.getLogger(__name__)


def dictionaries(dataset: str, data_bin: Path):
    """(source, target, description) from the data-bin, else the sizes the
    authors' totals imply (the record's ``implied_vocab``)."""
    bench = get(dataset)
    folder = data_bin / bench.name
    src_file = folder / f"dict.{bench.source}.txt"
    tgt_file = folder / f"dict.{bench.target}.txt"
    if src_file.exists() and tgt_file.exists():
        src = Dictionary.load(str(src_file))
        # a joined dictionary is one object for both sides, as fairseq loads it
        joined = src_file.read_bytes() == tgt_file.read_bytes()
        tgt = src if joined else Dictionary.load(str(tgt_file))
        return src, tgt, f"{folder} ({len(src):,} / {len(tgt):,} types)"
    n_src, n_tgt = bench.implied_vocab
    src = sized_dictionary(n_src)
    tgt = src if bench.share_all else sized_dictionary(n_tgt)
    return (
        src,
        tgt,
        f"{folder} not found, so the sizes the authors' totals imply ({n_src:,} / {n_tgt:,} types)",
    )


def count_parameters(dataset: str, d_m: int, model: dict, src, tgt) -> int:
    built = build_model(get(dataset).arch, src, tgt, delight_emb_out_dim=d_m, **model)
    return sum(p.numel() for p in built.parameters())


def measured_bleu(dataset: str, d_m: int, checkpoints: Path) -> Optional[dict]:
    path = checkpoints / f"{dataset}_d{d_m}" / "eval" / "bleu.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(dataset: str, data_bin: Path, checkpoints: Path) -> List[str]:
    src, tgt, source = dictionaries(dataset, data_bin)
    lines = [
        f"### {dataset}: DeLighT, measured beside the paper",
        "",
        f"Dictionaries: {source}.",
        "",
        "| d_m | parameters (measured) | parameters (paper) | BLEU (measured) | BLEU (paper) |",
        "|---|---|---|---|---|",
    ]
    for row in get(dataset).rows:
        n = count_parameters(dataset, row.d_m, dict(row.model), src, tgt)
        scores = measured_bleu(dataset, row.d_m, checkpoints)
        if scores is None:
            bleu = "-"
        else:
            bleu = f"{scores['sacrebleu']:.2f} (sacreBLEU)"
            if "compound_split_bleu" in scores:
                bleu = (
                    f"{scores['compound_split_bleu']:.2f} (tok., compound split); "
                    + bleu
                )
        paper_p = "-" if math.isnan(row.paper_params_m) else f"{row.paper_params_m} M"
        paper_b = "-" if row.paper_bleu is None else f"{row.paper_bleu}"
        lines.append(
            f"| {row.d_m} | {n / 1e6:.2f} M | {paper_p} | {bleu} | {paper_b} |"
        )
    return lines


def run_row(
    dataset: str, d_m: int, gpus: int, data_bin: Path, extra: List[str]
) -> None:
    """Prepare (when the data-bin is missing), train and evaluate one row."""
    from . import evaluate, training
    from .prep.cli import prepare
    from .prep.pipeline import Options

    bench = get(dataset)
    if not (data_bin / bench.name).exists():
        result = prepare(bench, Options(dest=data_bin / bench.name))
        logger.info("prepared %s", result.dest)
    training.train(bench, d_m, data_bin, gpus, extra)
    ckpt = Path(training.save_dir(bench, d_m)) / "checkpoint_best.pt"
    evaluate.evaluate(bench.name, ckpt, data_bin)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="delight-reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "dataset", choices=sorted(n for n, b in BENCHMARKS.items() if b.implied_vocab)
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="only build the models and show the parameter side",
    )
    parser.add_argument(
        "--run",
        type=int,
        metavar="D_M",
        help="prepare, train and evaluate this row before the table",
    )
    parser.add_argument("--gpus", type=int, default=1)
    add_data_bin(parser)
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument(
        "--markdown",
        type=Path,
        help="also write the table here (default: results/<dataset>.md)",
    )
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s | %(levelname)s | %(message)s"
    )
    logging.getLogger("delight_fairseq.model").setLevel(logging.WARNING)

    if args.run and not args.dry_run:
        run_row(args.dataset, args.run, args.gpus, args.data_bin, extra)
    lines = table(args.dataset, args.data_bin, args.checkpoints)
    print("\n".join(lines))
    out = args.markdown or Path("results") / f"{args.dataset}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    logger.info("wrote %s", out)


if __name__ == "__main__":
    sys.exit(main())
