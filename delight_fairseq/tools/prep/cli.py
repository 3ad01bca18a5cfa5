"""``delight-prep BENCHMARK [options]``: prepare one benchmark of the catalog.

Benchmarks: the records of ``delight_fairseq/catalog.py``.
Output: ``data-bin/<name>`` (``--dest``), ready for ``fairseq-train``.
"""

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from ...catalog import BENCHMARKS, Benchmark
from . import datasets
from .corpus import DataError
from .parallel import default_workers
from .pipeline import Options, Result

logger = logging.getLogger("delight_fairseq.tools.prep")


def prepare(bench: Benchmark, opts: Options) -> Result:
    """Build ``bench``'s data-bin with the prep function its record names."""
    return getattr(datasets, bench.prep)(opts, bench)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw",
        type=Path,
        help="folder with local copies of the corpora (the release archives, their "
        "extracted files, or plain PREFIX.<lang> text); without it they are downloaded",
    )
    p.add_argument(
        "--dest", type=Path, help="output data-bin folder (default: data-bin/<name>)"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="downloads and the prepared text (default: <dest>.work)",
    )
    p.add_argument(
        "--subwords",
        type=int,
        help="BPE merges (subword-nmt) or sentencepiece pieces (default: the paper's)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="processes for tokenization, subwords and binarization (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument(
        "--train",
        nargs="+",
        default=(),
        metavar="PREFIX",
        help="plain-text training corpora PREFIX.<lang> (relative to --raw) instead of "
        "the release's",
    )
    p.add_argument(
        "--valid",
        metavar="PREFIX",
        help="plain-text valid set instead of the release's",
    )
    p.add_argument(
        "--test", metavar="PREFIX", help="plain-text test set instead of the release's"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delight-prep",
        description=__doc__.splitlines()[0],
    )
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, bench in BENCHMARKS.items():
        p = sub.add_parser(name, help=bench.title, description=bench.title)
        _add_common(p)
    return parser


def setup_logging() -> None:
    """fairseq's log format, INFO and up, on stderr (for the command line)."""
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        level=logging.INFO,
        force=True,  # a dependency may have configured logging at import
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one recipe; returns the exit status (1: a data problem, logged)."""
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        logger.error("--workers must be at least 1, got %d", args.workers)
        return 2
    opts = Options(
        dest=args.dest,
        raw=args.raw,
        workdir=args.workdir,
        subwords=args.subwords,
        workers=args.workers,
        force=args.force,
        train=tuple(args.train),
        valid=args.valid,
        test=args.test,
    )
    try:
        result = prepare(BENCHMARKS[args.benchmark], opts)
    except (DataError, RuntimeError) as e:
        logger.error("%s", e)
        return 1
    pairs = result.report.get("pairs", {})
    counts = ", ".join(f"{split} {n:,}" for split, n in pairs.items())
    state = "already up to date" if result.skipped else "ready"
    logger.info(
        "%s %s: %s (pairs: %s)", args.benchmark, state, result.dest, counts or "?"
    )
    return 0


def console() -> None:
    """The ``delight-prep`` command."""
    setup_logging()
    raise SystemExit(main())
