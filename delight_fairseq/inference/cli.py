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
see :mod:`delight_fairseq.inference.text`). Raw text is read from FILE or stdin,
one sentence a line, and the detokenized translations go to stdout (or
``--output``), one line per input line, in input order; an empty line gives an
empty line. The output of each chunk (``--chunk-lines``) is written when it is
done. A line that fails to decode gives an empty line, an error naming it and
exit status 1 at the end; a setup problem gives exit status 2.
"""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from .loading import TranslateError
from .matmul import BACKENDS
from .progress import name_lines
from .text import KINDS, TOKENIZERS
from .translate import DEFAULT_BATCH_TOKENS, DEFAULT_CHUNK_LINES, Translator

logger = logging.getLogger("delight_fairseq.translate")


def _count_lines(path: Path) -> Optional[int]:
    """The number of lines of a regular file (for the progress display)."""
    try:
        n, last = 0, b"\n"
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                n += block.count(b"\n")
                last = block[-1:]
        return n + (last != b"\n")
    except OSError:
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="delight-translate",
        description="Translate raw text, one sentence a line, with a DeLighT "
        "checkpoint.",
        epilog="Bad input never stops a run: invalid UTF-8 is replaced by U+FFFD, "
        "over-long lines are truncated, each with a warning naming the lines; "
        "exit status 1 if a line could not be translated (an empty line is "
        "written for it). See docs/translating.md.",
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
    g.add_argument(
        "--bpe",
        choices=KINDS,
        default="auto",
        help="subword model kind (default auto: spm.model or code found in the "
        "data-bin, the dictionaries' folder or the checkpoint's folder)",
    )
    g.add_argument("--spm-model", type=Path, help="a sentencepiece model file")
    g.add_argument("--bpe-codes", type=Path, help="subword-nmt BPE codes")
    g.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="auto",
        help="Moses steps (default auto: those prep.json records; without it, "
        "Moses tokenization with subword-nmt, none with sentencepiece)",
    )
    g = p.add_argument_group("input and output")
    g.add_argument("--input", "-i", type=Path, help="a text file (default: stdin)")
    g.add_argument("--output", "-o", type=Path, help="a text file (default: stdout)")
    g.add_argument(
        "--chunk-lines",
        type=int,
        default=DEFAULT_CHUNK_LINES,
        help="lines read, sorted and decoded together (default %(default)s); the "
        "output of a chunk is written when it is done",
    )
    g = p.add_argument_group("search and speed")
    g.add_argument("--beam", type=int, default=5)
    g.add_argument("--lenpen", type=float, default=1.0)
    g.add_argument("--max-len-a", type=float, default=0.0)
    g.add_argument("--max-len-b", type=int, default=200)
    g.add_argument("--min-len", type=int, default=1)
    g.add_argument(
        "--batch-tokens",
        type=int,
        default=DEFAULT_BATCH_TOKENS,
        help="padded source tokens per batch (default %(default)s)",
    )
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
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="warnings, errors and the summary only",
    )
    return p


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        level=logging.INFO,
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    if quiet:
        logging.getLogger("delight_fairseq").setLevel(logging.WARNING)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``delight-translate`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    if args.input is not None and not args.input.is_file():
        parser.exit(2, f"delight-translate: error: --input: no file at {args.input}\n")
    try:
        translator = Translator(
            args.checkpoint,
            args.data,
            source_lang=args.source_lang,
            target_lang=args.target_lang,
            src_dict=args.src_dict,
            tgt_dict=args.tgt_dict,
            bpe=args.bpe,
            spm_model=args.spm_model,
            bpe_codes=args.bpe_codes,
            tokenizer=args.tokenizer,
            beam=args.beam,
            lenpen=args.lenpen,
            max_len_a=args.max_len_a,
            max_len_b=args.max_len_b,
            min_len=args.min_len,
            batch_tokens=args.batch_tokens,
            chunk_lines=args.chunk_lines,
            int8=args.int8,
            fp32_reference=args.fp32_reference,
            matmul=args.matmul,
            device=args.device,
            threads=args.threads,
            workers=args.workers,
            progress=sys.stderr if sys.stderr.isatty() else None,
        )
    except (TranslateError, ValueError) as e:
        parser.exit(2, f"delight-translate: error: {e}\n")

    total = _count_lines(args.input) if args.input and translator.progress else None
    source = open(args.input, "rb") if args.input else sys.stdin.buffer
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    sink = open(args.output, "wb") if args.output else sys.stdout.buffer
    stats = None
    try:
        stream = translator.translate_stream(source, total)  # lines end at \n only
        written = 0
        for line in stream:
            sink.write(line.encode("utf-8") + b"\n")
            written += 1
            if written % translator.chunk_lines == 0:
                sink.flush()
        sink.flush()
        stats = translator.stats
    except BrokenPipeError:
        # the reader went away (| head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        stats = translator.stats
    finally:
        if args.input:
            source.close()
        if args.output:
            sink.close()
        if stats is None:
            stats = translator.stats
        # in every case, --quiet included
        sys.stderr.write(f"delight-translate: {stats.summary()}\n")
        sys.stderr.flush()
    if stats.failed:
        logger.error("%s could not be translated", name_lines(stats.failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
