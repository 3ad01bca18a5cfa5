"""The ``delight-translate`` command (also ``python -m
delight_fairseq.inference.cli``): raw text in, translations out, with a trained
DeLighT checkpoint. The work is done by
:class:`~delight_fairseq.inference.translate.Translator`.

    delight-translate CHECKPOINT [--data DATA_BIN] [--input FILE] [--output FILE]
                      [--beam 5] [--lenpen 1.0] [--batch-tokens N] [--int8] ...

CHECKPOINT is a ``.pt`` file or a checkpoint folder (its ``checkpoint_best.pt``,
else ``checkpoint_last.pt``). The dictionaries come from the data-bin (default:
the one the checkpoint was trained on), and the subword model and Moses steps
from what ``delight-prep`` left in it (``spm.model`` or ``code``, ``prep.json``;
see :mod:`delight_lite.text`). Raw text is read from FILE or stdin,
one sentence a line, and the detokenized translations go to stdout (or
``--output``), one line per input line, in input order; an empty line gives an
empty line. The output of each chunk (``--chunk-lines``) is written when it is
done. A line that fails to decode gives an empty line, an error naming it and
exit status 1 at the end; a setup problem gives exit status 2.
"""

import argparse
from functools import partial
from pathlib import Path
from typing import Optional, Sequence

from delight_lite.cli import (
    EPILOG,
    add_search_options,
    add_stream_options,
    add_text_options,
    add_tokenizer_option,
    parse,
    translate,
)

from .matmul import BACKENDS
from .translate import Translator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="delight-translate",
        description="Translate raw text, one sentence a line, with a DeLighT "
        "checkpoint.",
        epilog=EPILOG,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="a checkpoint file, or a folder (its checkpoint_best.pt, else "
        "checkpoint_last.pt)",
    )
    g = p.add_argument_group("model and data")
    g.add_argument(
        "--data",
        "--data-bin",
        dest="data",
        type=Path,
        metavar="DATA_BIN",
        help="the data-bin folder the model was trained on: dictionaries, subword "
        "model, prep.json (default: the one recorded in the checkpoint)",
    )
    g.add_argument("--source-lang", "-s", help="default: the checkpoint's")
    g.add_argument("--target-lang", "-t", help="default: the checkpoint's")
    g.add_argument("--src-dict", type=Path, help="default: DATA_BIN/dict.SRC.txt")
    g.add_argument("--tgt-dict", type=Path, help="default: DATA_BIN/dict.TGT.txt")
    add_text_options(
        g,
        "spm.model or code found in the data-bin, the dictionaries' folder or "
        "the checkpoint's folder",
    )
    g.add_argument("--spm-model", type=Path, help="a sentencepiece model file")
    g.add_argument("--bpe-codes", type=Path, help="subword-nmt BPE codes")
    add_tokenizer_option(g)
    add_stream_options(p)
    g = add_search_options(p)
    g.add_argument(
        "--threads",
        type=int,
        help="CPU threads in all (torch.set_num_threads; default: torch's)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        help="engines decoding batches at once, each in its own thread with "
        "THREADS / WORKERS of torch's threads (CPU; default %(default)s)",
    )
    g.add_argument(
        "--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    g.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights (delight_fairseq.inference.quantize): about 3.5x smaller on disk; "
        "faster than float32 on some models and slower on others (benchmarks/RESULTS.md)",
    )
    g.add_argument(
        "--matmul",
        choices=BACKENDS,
        default="auto",
        help="the float32 engine's products: torch (F.linear, as the model's "
        "modules), onednn, or auto (oneDNN where a one-time measurement finds "
        "it faster; default)",
    )
    g.add_argument(
        "--fp32-reference",
        action="store_true",
        help="decode with fairseq's SequenceGenerator instead of the engine",
    )
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``delight-translate`` command; returns the exit status."""
    parser = build_parser()
    args = parse(parser, argv)
    make = partial(
        Translator,
        args.checkpoint,
        args.data,
        source_lang=args.source_lang,
        target_lang=args.target_lang,
        src_dict=args.src_dict,
        tgt_dict=args.tgt_dict,
        spm_model=args.spm_model,
        bpe_codes=args.bpe_codes,
        int8=args.int8,
        fp32_reference=args.fp32_reference,
        matmul=args.matmul,
        device=args.device,
    )
    return translate(parser, args, make)


if __name__ == "__main__":
    raise SystemExit(main())
