"""BLEU as the paper reports it, beside sacreBLEU.

* :func:`extract` reads ``fairseq-generate`` output into hypotheses and
  references in the original sentence order.
* :func:`compound_split` is the WMT'14 En-De convention of the transformer
  papers (fairseq's compound_split_bleu.sh): ``x-y`` becomes
  ``x ##AT##-##AT## y`` in hypothesis and reference before tokenized BLEU.

    python -m delight_fairseq.tools.scoring GENERATE_LOG OUT_PREFIX [--compound-split]

writes OUT_PREFIX.{hyp,ref} (detokenized with Moses for sacreBLEU) and, with
``--compound-split``, OUT_PREFIX.tok.{hyp,ref} and the tokenized BLEU.
"""

import argparse
import re
from typing import List, Tuple

import sacrebleu

_COMPOUND = re.compile(r"(\S)-(\S)")


def compound_split(line: str) -> str:
    """``s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g``, as the Moses-era script does it."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def extract(log_lines, detokenized: bool = True) -> Tuple[List[str], List[str]]:
    """(hypotheses, references) from fairseq-generate output, by sentence id.

    ``detokenized`` takes the D- lines (after --post-process); else the H- lines.
    """
    hyp, ref = {}, {}
    hyp_tag = "D" if detokenized else "H"
    for line in log_lines:
        tag, _, rest = line.rstrip("\n").partition("\t")
        if tag.startswith(f"{hyp_tag}-"):
            hyp[int(tag[2:])] = rest.split("\t", 1)[1] if "\t" in rest else ""
        elif tag.startswith("T-"):
            ref[int(tag[2:])] = rest
    if not hyp:
        raise ValueError("no hypotheses found: is this fairseq-generate output?")
    ids = sorted(hyp)
    return [hyp[i] for i in ids], [ref.get(i, "") for i in ids]


def tokenized_bleu(
    hyps: List[str], refs: List[str]
) -> sacrebleu.metrics.bleu.BLEUScore:
    """BLEU on text that is already tokenized (multi-bleu.perl's convention)."""
    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description="score fairseq-generate output")
    parser.add_argument("log", help="fairseq-generate output")
    parser.add_argument("out_prefix")
    parser.add_argument("--compound-split", action="store_true")
    parser.add_argument(
        "--detok-lang", help="Moses-detokenize hypotheses and references"
    )
    args = parser.parse_args(argv)
    with open(args.log, encoding="utf-8") as f:
        lines = f.readlines()
    hyps, refs = extract(lines, detokenized=True)
    if args.detok_lang:
        from sacremoses import MosesDetokenizer

        md = MosesDetokenizer(lang=args.detok_lang)
        hyps = [md.detokenize(h.split()) for h in hyps]
        refs = [md.detokenize(r.split()) for r in refs]
    for name, text in (("hyp", hyps), ("ref", refs)):
        with open(f"{args.out_prefix}.{name}", "w", encoding="utf-8") as f:
            f.write("\n".join(text) + "\n")
    if args.compound_split:
        tok_hyps, tok_refs = extract(lines, detokenized=True)
        tok_hyps = [compound_split(h) for h in tok_hyps]
        tok_refs = [compound_split(r) for r in tok_refs]
        for name, text in (("tok.hyp", tok_hyps), ("tok.ref", tok_refs)):
            with open(f"{args.out_prefix}.{name}", "w", encoding="utf-8") as f:
                f.write("\n".join(text) + "\n")
        print(
            f"tokenized BLEU after compound splitting: {tokenized_bleu(tok_hyps, tok_refs)}"
        )


if __name__ == "__main__":
    main()
