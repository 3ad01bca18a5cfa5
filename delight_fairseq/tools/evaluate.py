"""Evaluate a checkpoint the paper's way: beam 5 and the benchmark's length
penalty, optional checkpoint averaging, subwords removed, detokenized,
sacreBLEU with its signature; for benchmarks the catalog marks
``compound_split`` (WMT'14 En-De) also tokenized BLEU after compound splitting.

    delight-evaluate BENCHMARK CHECKPOINT [--average N] [--subset test]
                     [--ref RAW_REFERENCE] [--lenpen X] [--data-bin DIR]
                     [extra fairseq-generate args]

BENCHMARK is a folder of ``--data-bin`` (default data-bin): a catalog name, or
any other folder (then lenpen 1.0 and no compound splitting). Writes
``<checkpoint dir>/eval/``: generate-<subset>.txt, <subset>.hyp/.ref, bleu.json.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import sacrebleu

from ..catalog import BENCHMARKS
from . import scoring
from .averaging import last_checkpoints, save_average
from .training import add_data_bin

logger = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parents[1]


def post_process(data: Path) -> str:
    """How the data-bin's text was split into subwords decides how to undo it."""
    if (data / "code").exists():
        return "subword_nmt"  # Moses-tokenized text: detokenized for sacreBLEU below
    if (data / "spm.model").exists():
        return "sentencepiece"
    return "none"


def target_language(data: Path, subset: str) -> str:
    """From the binarized files' names: <subset>.<src>-<tgt>.<lang>.idx."""
    for idx in sorted(data.glob(f"{subset}.*-*.*.idx")):
        pair = idx.name.split(".")[1]
        return pair.split("-")[1]
    raise FileNotFoundError(f"no binarized {subset!r} split in {data}")


def generate(
    data: Path, checkpoint: Path, subset: str, lenpen: float, out: Path, extra=()
) -> Path:
    """fairseq-generate, in this process; returns its output file."""
    import torch
    from fairseq_cli.generate import cli_main

    argv = [
        str(data), "--user-dir", str(PACKAGE), "--path", str(checkpoint),
        "--gen-subset", subset, "--beam", "5", "--lenpen", str(lenpen),
        "--batch-size", "128", "--post-process", post_process(data),
        "--results-path", str(out),
    ]  # fmt: skip
    if torch.cuda.device_count() == 0:
        argv.append("--cpu")
    sys.argv = ["fairseq-generate", *argv, *extra]
    logger.info(
        "%s on %s/%s: beam 5, lenpen %s, post-process %s",
        checkpoint, data, subset, lenpen, argv[argv.index("--post-process") + 1],
    )  # fmt: skip
    # in this process fairseq's summary line ("Translated N sentences ... sentences/s")
    # goes to the console's logger, not to the results file: add it there
    summary = _Kept()
    generate_logger = logging.getLogger("fairseq_cli.generate")
    generate_logger.addHandler(summary)
    try:
        cli_main()
    finally:
        generate_logger.removeHandler(summary)
    results = out / f"generate-{subset}.txt"
    with open(results, "a", encoding="utf-8") as f:
        f.writelines(
            line + "\n" for line in summary.lines if line.startswith("Translated")
        )
    return results


class _Kept(logging.Handler):
    """Keeps the messages of one logger."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def evaluate(
    benchmark: str,
    checkpoint: Path,
    data_bin: Path = Path("data-bin"),
    average: int = 0,
    subset: str = "test",
    ref: Optional[Path] = None,
    lenpen: Optional[float] = None,
    extra: List[str] = (),
) -> dict:
    data = Path(data_bin) / benchmark
    checkpoint = Path(checkpoint)
    if not data.is_dir():
        raise FileNotFoundError(f"no data-bin at {data} (pass --data-bin)")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    bench = BENCHMARKS.get(benchmark)
    lenpen = lenpen if lenpen is not None else (bench.lenpen if bench else 1.0)
    out = checkpoint.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    if average > 0:
        checkpoint = save_average(
            last_checkpoints(checkpoint.parent, average),
            checkpoint.parent / f"checkpoint_avg{average}.pt",
        )
    log = generate(data, checkpoint, subset, lenpen, out, extra)
    lines = log.read_text(encoding="utf-8").splitlines()
    hyps, refs = scoring.extract(lines, detokenized=True)
    if post_process(data) == "subword_nmt":
        from sacremoses import MosesDetokenizer

        md = MosesDetokenizer(lang=target_language(data, subset))
        hyps = [md.detokenize(h.split()) for h in hyps]
        refs = [md.detokenize(r.split()) for r in refs]
    (out / f"{subset}.hyp").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (out / f"{subset}.ref").write_text("\n".join(refs) + "\n", encoding="utf-8")
    if ref is not None:
        refs = Path(ref).read_text(encoding="utf-8").splitlines()
        if len(refs) != len(hyps):
            raise ValueError(f"{ref} has {len(refs)} lines for {len(hyps)} hypotheses")
    metric = sacrebleu.metrics.BLEU()
    score = metric.corpus_score(hyps, [refs])
    result = {
        "checkpoint": str(checkpoint),
        "lenpen": lenpen,
        "sacrebleu": round(score.score, 2),
        "signature": str(metric.get_signature()),
    }
    if bench is not None and bench.compound_split:
        tok_hyps, tok_refs = scoring.extract(lines, detokenized=True)
        split = scoring.tokenized_bleu(
            [scoring.compound_split(h) for h in tok_hyps],
            [scoring.compound_split(r) for r in tok_refs],
        )
        result["compound_split_bleu"] = round(split.score, 2)
    (out / "bleu.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="delight-evaluate",
        description=__doc__.split("\n\n")[0],
        epilog="other arguments go to fairseq-generate",
    )
    parser.add_argument("benchmark", help="a data-bin folder (a catalog name)")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--average", type=int, default=0, metavar="N",
                        help="average the last N epoch checkpoints beside CHECKPOINT")  # fmt: skip
    parser.add_argument("--subset", default="test")
    parser.add_argument("--ref", type=Path,
                        help="raw reference (default: the binarized target side, "
                        "subwords removed and detokenized)")  # fmt: skip
    parser.add_argument("--lenpen", type=float, help="default: the benchmark's")
    add_data_bin(parser)
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
    )
    try:
        result = evaluate(
            args.benchmark, args.checkpoint, args.data_bin, args.average,
            args.subset, args.ref, args.lenpen, extra,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        parser.exit(1, f"delight-evaluate: error: {e}\n")
    print(f"sacreBLEU {result['sacrebleu']:.2f} ({result['signature']})")
    if "compound_split_bleu" in result:
        print(
            "tokenized BLEU after compound splitting "
            f"{result['compound_split_bleu']:.2f}"
        )


if __name__ == "__main__":
    main()
