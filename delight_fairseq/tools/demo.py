"""The offline demo: prepare, train a small DeLighT on the CPU, score, translate.

    delight-demo [--multi30k DIR] [--updates N] [--out DIR]

With Multi30k (``--multi30k``, ``$MULTI30K`` or ``../shared/data/multi30k``)
it runs the catalog's small-data recipe, ``multi30k_de_en`` at d_m 128, on the
data-bin ``delight-prep multi30k_de_en`` makes (the benchmarks' vocabulary),
for a fixed number of updates, so that its BLEU does not depend on the
machine's speed. Then sacreBLEU on the 1,000-sentence Flickr 2016 test set
(``delight-evaluate``'s scoring) and a few sentences through the hub.
Without Multi30k it does the same on a generated task (tools/synthetic.py).
"""

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..catalog import get
from . import evaluate, synthetic, training

logger = logging.getLogger("delight_fairseq.tools.demo")
REPO = training.PACKAGE.parent
DEFAULT_UPDATES = 450
D_M = 128
EXAMPLES = {
    "multi30k": [
        "Ein Mann fährt Fahrrad auf einer Straße.",
        "Zwei Kinder spielen im Park mit einem Hund.",
        "Eine Frau sitzt an einem Tisch und liest ein Buch.",
    ],
    "synthetic": ["ein mann mag der rot auto", "der alt hund sieht ein klein kind"],
}
# the synthetic task's small model (the CLI tests' TINY_MODEL, a little wider)
SYNTHETIC_MODEL = (
    "--arch delight --delight-emb-out-dim 64 --delight-emb-depth 2 --share-all-embeddings "
    "--delight-enc-layers 2 --delight-enc-min-depth 2 --delight-enc-max-depth 3 "
    "--delight-dec-layers 2 --delight-dec-min-depth 2 --delight-dec-max-depth 3 "
    "--dropout 0.05 --ffn-dropout 0.05 --attention-dropout 0 --delight-dropout 0 "
    "--criterion delight_label_smoothed_cross_entropy --label-smoothing 0.1 "
    "--optimizer adam --lr 0.003 --lr-scheduler inverse_sqrt --warmup-updates 100 "
    "--max-tokens 4096"
).split()


def train_with_progress(data: Path, flags, updates: int, save_dir: Path) -> Path:
    """fairseq-train for ``updates`` updates; progress with the time left on stderr."""
    log_path = save_dir.parent / "train.log"
    shutil.rmtree(save_dir, ignore_errors=True)  # a fresh run, not a resume
    cmd = [
        # this environment's fairseq-train, whether or not it is on PATH
        str(Path(sys.executable).parent / "fairseq-train"), str(data),
        "--user-dir", str(training.PACKAGE), *flags,
        "--max-update", str(updates), "--save-dir", str(save_dir), "--cpu",
        "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "25",
        "--num-workers", "0", "--seed", "1",
    ]  # fmt: skip
    start, first = time.time(), None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # progress as it happens
        )
        for line in proc.stdout:
            log.write(line)
            if "DeLighT:" in line:
                logger.info("%s", line.split("| ")[-1].strip())
            done = re.search(r"num_updates[=\s](\d+)", line)
            if done and "| train |" not in line:
                n, now = int(done.group(1)), time.time()
                first = first or (n, now)  # the rate from here on, past the start-up
                rate = (n - first[0]) / (now - first[1]) if now > first[1] else 0
                left = (
                    f", about {(updates - n) / rate / 60:.1f} min left" if rate else ""
                )
                logger.info("update %d / %d%s", n, updates, left)
        if proc.wait():
            raise RuntimeError(
                f"fairseq-train failed ({proc.returncode}): see {log_path}"
            )
    logger.info("trained %d updates in %.1f min", updates, (time.time() - start) / 60)
    return save_dir / "checkpoint_last.pt"


def multi30k(raw: Path, out: Path, updates: int) -> tuple:
    from .prep.cli import prepare
    from .prep.pipeline import Options

    bench = get("multi30k_de_en")
    data_bin = out / "data-bin"
    prepare(bench, Options(dest=data_bin / bench.name, raw=raw))
    flags = training.train_args(bench, D_M)
    ckpt = train_with_progress(
        data_bin / bench.name, flags, updates, out / "checkpoints"
    )
    result = evaluate.evaluate(
        bench.name, ckpt, data_bin, ref=raw / "test_2016_flickr.en"
    )
    return result, data_bin / bench.name, ckpt, "sentencepiece"


def synthetic_task(out: Path, updates: int) -> tuple:
    from fairseq_cli.preprocess import cli_main

    raw = synthetic.write_corpus(out / "raw", 3000, 200, 300)
    data = out / "data-bin" / "synthetic"
    shutil.rmtree(data, ignore_errors=True)  # fairseq-preprocess will not overwrite
    sys.argv = [
        "fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
        "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"),
        "--testpref", str(raw / "test"), "--destdir", str(data),
        "--joined-dictionary", "--workers", "1",
    ]  # fmt: skip
    cli_main()
    ckpt = train_with_progress(data, SYNTHETIC_MODEL, updates, out / "checkpoints")
    result = evaluate.evaluate("synthetic", ckpt, data.parent)
    return result, data, ckpt, None


def translate(ckpt: Path, data: Path, sentences, bpe) -> list:
    from .. import DeLighTTransformerModel

    kwargs = {}
    if bpe == "sentencepiece":
        kwargs = {
            "bpe": "sentencepiece",
            "sentencepiece_model": str(data / "spm.model"),
        }
    hub = DeLighTTransformerModel.from_pretrained(
        str(ckpt.parent), checkpoint_file=ckpt.name, data_name_or_path=str(data),
        **kwargs,
    )  # fmt: skip
    return hub.translate(sentences, beam=5)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="delight-demo", description=__doc__.split("\n\n")[0]
    )
    default_raw = os.environ.get(
        "MULTI30K", REPO.parent / "shared" / "data" / "multi30k"
    )
    parser.add_argument("--multi30k", type=Path, default=Path(default_raw))
    parser.add_argument("--updates", type=int, default=DEFAULT_UPDATES,
                        help="training updates of 4,096 tokens (default %(default)s; "
                        "the synthetic task uses at most 600)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[demo] %(message)s", stream=sys.stderr, force=True
    )
    for name in ("fairseq", "delight_fairseq.tools.evaluate", "delight_fairseq.model"):
        logging.getLogger(name).setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if (args.multi30k / "train.de").exists():
        logger.info("Multi30k found in %s: German -> English", args.multi30k)
        result, data, ckpt, bpe = multi30k(args.multi30k, args.out, args.updates)
        examples = EXAMPLES["multi30k"]
    else:
        logger.info("no Multi30k at %s: a generated task", args.multi30k)
        result, data, ckpt, bpe = synthetic_task(args.out, min(args.updates, 600))
        examples = EXAMPLES["synthetic"]
    logger.info(
        "sacreBLEU on the test set: %.2f (%s)", result["sacrebleu"], result["signature"]
    )
    for src, hyp in zip(examples, translate(ckpt, data, examples, bpe)):
        logger.info("  %s\n       -> %s", src, hyp)
    logger.info("done in %.1f min; outputs in %s", (time.time() - start) / 60, args.out)
    print(f"BLEU {result['sacrebleu']:.2f}")


if __name__ == "__main__":
    main()
