"""What every recipe does around its own steps: options, locating the inputs,
the up-to-date check, the staged text folder, per-side processing with the
alignment checks, subword application and the final binarization."""

import contextlib
import functools
import json
import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import binarize as bz
from . import corpus, subword
from .parallel import default_workers
from .sources import Part, Source, checksum, locate, read

logger = logging.getLogger(__name__)

FORMAT = 1  # bump when a change in this package changes what a recipe produces
SPLITS = ("train", "valid", "test")


@dataclass
class Options:
    """What a user chooses for any recipe (the command line's options).

    Args:
        dest: the ``data-bin`` folder to create (default ``data-bin/<name>``).
        raw: a folder with local copies of the corpora; None downloads them.
        workdir: downloads and the prepared text (default ``<dest>.work``).
        subwords: BPE merges (subword-nmt) or pieces (sentencepiece); None:
            the paper's number.
        workers: processes for tokenization, subwords and binarization.
        force: rebuild even when the output is up to date.
        train, valid, test: plain-text file prefixes (``PREFIX.<lang>``,
            relative to ``raw``) used instead of the release's corpora.
    """

    dest: Optional[Path] = None
    raw: Optional[Path] = None
    workdir: Optional[Path] = None
    subwords: Optional[int] = None
    workers: int = field(default_factory=default_workers)
    force: bool = False
    train: Sequence[str] = ()
    valid: Optional[str] = None
    test: Optional[str] = None


@dataclass
class Result:
    dest: Path
    skipped: bool
    report: dict


def _tool_versions() -> Dict[str, str]:
    versions = {}
    for dist in ("sacremoses", "subword-nmt", "sentencepiece", "fairseq-fixed"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


class Run:
    """One recipe's run: ``name`` from ``src`` to ``tgt`` over ``parts`` per split."""

    def __init__(
        self,
        name: str,
        opts: Options,
        src: str,
        tgt: str,
        parts: Dict[str, List[Part]],
        settings: dict,
    ):
        self.name, self.opts, self.src, self.tgt = name, opts, src, tgt
        self.dest = Path(opts.dest or Path("data-bin") / name)
        self.workdir = Path(opts.workdir or self.dest.parent / f"{self.dest.name}.work")
        self.text = self.workdir / "text"
        self.report: dict = {"pairs": {}, "cleaning": {}}
        cache = self.workdir / "orig"
        raw = Path(opts.raw) if opts.raw else None
        self.sources: Dict[str, List[Tuple[Source, Source]]] = {
            split: [
                (locate(p, src, raw, cache), locate(p, tgt, raw, cache)) for p in ps
            ]
            for split, ps in parts.items()
        }
        inputs = [
            [split, s.name, checksum(s)]
            for split, pairs in self.sources.items()
            for pair in pairs
            for s in pair
        ]
        # through JSON, so that it compares equal to the stamp read back
        self.fingerprint = _as_json(
            {
                "recipe": name,
                "format": FORMAT,
                "direction": f"{src}-{tgt}",
                "settings": settings,
                "tools": _tool_versions(),
                "inputs": inputs,
            }
        )

    def up_to_date(self) -> bool:
        if self.opts.force:
            return False
        return bz.is_complete(self.dest, self.fingerprint, self.src, self.tgt)

    def skipped(self) -> Result:
        logger.info("%s is up to date (%s matches): nothing to do", self.dest, bz.STAMP)
        return Result(self.dest, True, bz.read_stamp(self.dest).get("report", {}))

    @contextlib.contextmanager
    def staged_text(self) -> Iterator[Path]:
        """The text folder, built aside and swapped in when complete."""
        with bz.staged_dir(self.text) as text:
            yield text

    def process(
        self, split: str, out: Path, steps: Dict[str, Callable[[str], str]], pre=None
    ) -> int:
        """Each side of ``split``'s corpora, concatenated, through ``steps[lang]``
        into ``out.<lang>``; checks that each corpus is non-empty and aligned."""
        pairs = self.sources[split]
        counts = {}
        for i, lang in enumerate((self.src, self.tgt)):
            streams = [read(pair[i]) for pair in pairs]
            if pre is not None:
                streams = [pre(lines) for lines in streams]
            path = Path(f"{out}.{lang}")
            counts[lang] = corpus.transform(
                streams, path, steps[lang], self.opts.workers
            )
        for (s, t), ns, nt in zip(pairs, counts[self.src], counts[self.tgt]):
            corpus.check_aligned(s, t, ns, nt)
        total = sum(counts[self.src])
        logger.info(
            "%s %s: %d pairs -> %s.{%s,%s}",
            self.name,
            split,
            total,
            out,
            self.src,
            self.tgt,
        )
        return total

    def clean(self, prefix: Path, out: Path, split: str, **limits) -> None:
        """Moses clean-corpus-n on ``prefix.{src,tgt}`` into ``out.{src,tgt}``."""
        report = corpus.clean_files(
            *self.pair(prefix), *self.pair(out), name=f"{self.name} {split}", **limits
        )
        self.report["cleaning"][split] = report.as_dict()

    def split_every(self, prefix: Path, n: int, every_nth: Path, rest: Path) -> None:
        """Both sides: every ``n``-th pair to ``every_nth``, the others to ``rest``."""
        for lang in (self.src, self.tgt):
            corpus.split_every(
                Path(f"{prefix}.{lang}"),
                n,
                Path(f"{every_nth}.{lang}"),
                Path(f"{rest}.{lang}"),
            )

    def pair(self, prefix: Path) -> Tuple[Path, Path]:
        return Path(f"{prefix}.{self.src}"), Path(f"{prefix}.{self.tgt}")

    def encode(self, func: Callable[[str], str], pre: Path, out: Path) -> None:
        """``func`` (a subword model) on ``pre/<split>.<lang>`` into ``out/<split>.<lang>``."""
        for split in SPLITS:
            for lang in (self.src, self.tgt):
                stream = corpus.iter_lines(pre / f"{split}.{lang}")
                corpus.transform(
                    [stream], out / f"{split}.{lang}", func, self.opts.workers
                )

    def bpe(self, pre: Path, text: Path, merges: int) -> Path:
        codes = text / "code"
        subword.learn_bpe(
            list(self.pair(pre / "train")), codes, merges, self.opts.workers
        )
        self.encode(functools.partial(subword.bpe_line, str(codes)), pre, text)
        return codes

    def sentencepiece(self, pre: Path, text: Path, size: int, model_type: str) -> Path:
        model = subword.train_sentencepiece(
            list(self.pair(pre / "train")),
            text / "spm",
            size,
            model_type,
            self.opts.workers,
        )
        self.encode(functools.partial(subword.spm_line, str(model)), pre, text)
        return model

    def binarize(self, joined: bool, extra: Sequence[Path]) -> Result:
        """``fairseq-preprocess`` on the text folder; ``extra`` files go along."""
        for split in SPLITS:
            path = self.text / f"{split}.{self.src}"
            self.report["pairs"][split] = sum(1 for _ in corpus.iter_lines(path))
        bz.binarize(
            self.text,
            self.src,
            self.tgt,
            self.dest,
            self.fingerprint,
            joined=joined,
            workers=self.opts.workers,
            extra_files=[self.text / Path(p).name for p in extra],
            report=self.report,
        )
        return Result(self.dest, False, self.report)


def _as_json(value):
    return json.loads(json.dumps(value))


def plain_parts(prefixes: Sequence[str]) -> List[Part]:
    """``--train/--valid/--test`` overrides: plain ``PREFIX.<lang>`` files."""
    return [Part(str(p)) for p in prefixes]
