"""The ``delight-lite`` command (also ``python -m delight_lite.cli``): raw text
in, translations out, with a model exported by ``delight-export``, in NumPy
(no torch, no fairseq). The work is done by
:class:`~delight_lite.translate.LiteTranslator`.

    delight-lite MODEL_DIR [--input FILE] [--output FILE] [--beam 5] [--threads 1] ...

It reads and writes as ``delight-translate`` does, whose command shares the
pieces here (:func:`add_stream_options`, :func:`add_search_options`,
:func:`parse`, :func:`run`): one translation per input line, in input
order, an empty line for an empty line, the output of each chunk written when
it is done, a summary line on stderr in every case; exit status 1 if a line
could not be translated (an empty line is written for it), 2 on a setup
problem.
"""

import argparse
import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import Optional, Sequence

from .progress import name_lines
from .stream import DEFAULT_BATCH_TOKENS, DEFAULT_CHUNK_LINES, TranslateError
from .text import KINDS, TOKENIZERS
from .translate import LITE_BATCH_TOKENS, LiteTranslator

logger = logging.getLogger("delight_lite")

EPILOG = (
    "Bad input never stops a run: invalid UTF-8 is replaced by U+FFFD, over-long "
    "lines are truncated, each with a warning naming the lines; exit status 1 if "
    "a line could not be translated (an empty line is written for it). See "
    "docs/translating.md."
)


def count_lines(path: Path) -> Optional[int]:
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


def add_text_options(g, auto_help: str) -> None:
    g.add_argument(
        "--bpe",
        choices=KINDS,
        default="auto",
        help=f"subword model kind (default auto: {auto_help})",
    )


def add_tokenizer_option(g) -> None:
    g.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="auto",
        help="Moses steps (default auto: those prep.json records; without it, "
        "Moses tokenization with subword-nmt, none with sentencepiece)",
    )


def add_stream_options(p) -> None:
    """--input, --output, --chunk-lines and --quiet."""
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
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="warnings, errors and the summary only",
    )


def add_search_options(p, batch_tokens: int = DEFAULT_BATCH_TOKENS):
    """The search's flags (``batch_tokens``: --batch-tokens' default);
    returns their group."""
    g = p.add_argument_group("search and speed")
    g.add_argument("--beam", type=int, default=5)
    g.add_argument("--lenpen", type=float, default=1.0)
    g.add_argument("--max-len-a", type=float, default=0.0)
    g.add_argument("--max-len-b", type=int, default=200)
    g.add_argument("--min-len", type=int, default=1)
    g.add_argument(
        "--batch-tokens",
        type=int,
        default=batch_tokens,
        help="padded source tokens per batch (default %(default)s)",
    )
    return g


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
        for name in ("delight_fairseq", "delight_lite"):
            logging.getLogger(name).setLevel(logging.WARNING)


def run(translator, args, prog: str) -> int:
    """Stream ``args.input`` (or stdin) through ``translator`` into
    ``args.output`` (or stdout); returns the exit status."""
    total = count_lines(args.input) if args.input and translator.progress else None
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
        translator.close()
        if args.input:
            source.close()
        if args.output:
            sink.close()
        if stats is None:
            stats = translator.stats
        # in every case, --quiet included
        sys.stderr.write(f"{prog}: {stats.summary()}\n")
        sys.stderr.flush()
    if stats.failed:
        logger.error("%s could not be translated", name_lines(stats.failed))
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="delight-lite",
        description="Translate raw text, one sentence a line, with a DeLighT "
        "model exported by delight-export, in NumPy (no torch, no fairseq).",
        epilog=EPILOG,
    )
    p.add_argument("model", type=Path, help="the folder delight-export wrote")
    g = p.add_argument_group("text")
    add_text_options(g, "the subword model the export copied, if any")
    add_tokenizer_option(g)
    add_stream_options(p)
    g = add_search_options(p, LITE_BATCH_TOKENS)
    g.add_argument(
        "--threads",
        type=int,
        help="BLAS threads of the products, in all (default: the BLAS library's; "
        "with --workers, 1 each)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes decoding batches at once, each with its own model and "
        "THREADS / WORKERS BLAS threads (default %(default)s)",
    )
    return p


def parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """A command's arguments, logging set up; exit status 2 (the usage error
    of argparse) for an --input that is not a file."""
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    if args.input is not None and not args.input.is_file():
        parser.exit(2, f"{parser.prog}: error: --input: no file at {args.input}\n")
    return args


#: the translators' keyword options that the shared flags set
SHARED = (
    "bpe", "tokenizer", "beam", "lenpen", "max_len_a", "max_len_b", "min_len",
    "batch_tokens", "chunk_lines", "threads", "workers",
)  # fmt: skip


def translate(parser, args, make) -> int:
    """Build a translator by ``make(**options)`` from the shared flags (a
    progress line when stderr is a terminal), then :func:`run` it; a setup
    problem exits with status 2 and the message."""
    options = {name: getattr(args, name) for name in SHARED}
    options["progress"] = sys.stderr if sys.stderr.isatty() else None
    try:
        translator = make(**options)
    except (TranslateError, ValueError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return run(translator, args, parser.prog)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``delight-lite`` command; returns the exit status."""
    parser = build_parser()
    args = parse(parser, argv)
    return translate(parser, args, partial(LiteTranslator, args.model))


if __name__ == "__main__":
    raise SystemExit(main())
