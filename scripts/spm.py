"""Train a joint sentencepiece model, or encode files with one.

    python scripts/spm.py train --model-prefix OUT/spm --vocab-size 8000 FILE [FILE ...]
    python scripts/spm.py encode --model OUT/spm.model IN OUT

Encoding keeps line counts: an empty input line stays an empty output line.
"""

import argparse
import sys

import sentencepiece as spm


def train(args):
    spm.SentencePieceTrainer.train(
        input=",".join(args.files),
        model_prefix=args.model_prefix,
        vocab_size=args.vocab_size,
        character_coverage=1.0,
        model_type=args.model_type,
        # fairseq's dictionary adds its own specials; keep sentencepiece's out of the text
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        num_threads=2,
        minloglevel=2,
    )


def encode(args):
    sp = spm.SentencePieceProcessor(model_file=args.model)
    with (
        open(args.input, encoding="utf-8") as fin,
        open(args.output, "w", encoding="utf-8") as fout,
    ):
        for line in fin:
            fout.write(" ".join(sp.encode(line.rstrip("\n"), out_type=str)) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model-prefix", required=True)
    t.add_argument("--vocab-size", type=int, default=8000)
    t.add_argument("--model-type", default="unigram", choices=["unigram", "bpe"])
    t.add_argument("files", nargs="+")
    e = sub.add_parser("encode")
    e.add_argument("--model", required=True)
    e.add_argument("input")
    e.add_argument("output")
    args = parser.parse_args(argv)
    {"train": train, "encode": encode}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
