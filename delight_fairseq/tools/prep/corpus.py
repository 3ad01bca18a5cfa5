"""Parallel text: reading with validation, Moses-style cleaning, splitting.

Every problem a user can cause (a missing or empty file, bytes that are not
UTF-8, two sides that do not align) raises :class:`DataError`, whose message
names the file, the line where it applies, and the fix. Cleaning never drops a
pair silently: it returns a :class:`CleanReport` with the count per reason.
"""

import functools
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from .parallel import map_lines

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data the preparation cannot use; the message names the file and the fix."""


def iter_lines(source) -> Iterator[str]:
    """The lines of ``source`` (a path, or an archive member from ``sources``),
    without their ``\\n``. Lines end at ``\\n`` only, as in Perl and awk: a
    stray ``\\r`` inside a line stays in it."""
    name = str(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        opener = functools.partial(open, path, "rb")
    else:
        opener = source.open_binary
    with opener() as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{name}, line {number}: not valid UTF-8 (byte 0x{raw[e.start]:02x} "
                    f"at byte {e.start + 1} of the line); convert the file to UTF-8 "
                    "(for example: iconv -f latin1 -t utf-8 FILE > FILE.utf8) and rerun"
                ) from None
            yield line[:-1] if line.endswith("\n") else line


def transform(
    streams: Iterable[Iterable[str]],
    dest: Path,
    func: Optional[Callable[[str], str]] = None,
    workers: int = 1,
) -> List[int]:
    """Concatenate ``streams`` (of lines) into ``dest``, each line through
    ``func`` (in ``workers`` processes, order kept). Returns the line count
    of each stream."""
    counts = []
    with open(dest, "w", encoding="utf-8", newline="\n") as out:
        for lines in streams:
            if func is not None:
                lines = map_lines(func, lines, workers)
            n = 0
            for line in lines:
                out.write(line + "\n")
                n += 1
            counts.append(n)
    return counts


def check_aligned(src, tgt, n_src: int, n_tgt: int) -> None:
    """The two sides of a parallel corpus must be non-empty and align line by line."""
    for name, n in ((src, n_src), (tgt, n_tgt)):
        if n == 0:
            raise DataError(
                f"{name}: empty corpus (no lines); point the preparation at the full "
                "file, or re-download it"
            )
    if n_src != n_tgt:
        raise DataError(
            f"{src} has {n_src:,} lines but {tgt} has {n_tgt:,}: the two sides of a "
            "parallel corpus must align line by line; use the matching pair of files "
            "(a truncated download or an edited file does this)"
        )


@dataclass
class CleanReport:
    """What Moses' clean-corpus-n removed, by reason, in the order it checks."""

    corpus: str
    total: int = 0
    kept: int = 0
    empty: int = 0
    too_short: int = 0
    too_long: int = 0
    ratio: int = 0
    long_word: int = 0

    @property
    def removed(self) -> int:
        return self.total - self.kept

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.corpus}: kept {self.kept:,} of {self.total:,} pairs, removed "
            f"{self.removed:,} (empty {self.empty:,}, shorter than min {self.too_short:,}, "
            f"longer than max {self.too_long:,}, length ratio {self.ratio:,}, "
            f"word over max length {self.long_word:,})"
        )


_SPACES = re.compile(r"\s+")


def _normalize(line: str, keep_pipes: bool) -> str:
    if not keep_pipes:
        line = line.replace("|", "")
    return _SPACES.sub(" ", line).strip(" ")


def clean_pairs(
    pairs: Iterable[Tuple[str, str]],
    report: CleanReport,
    min_len: int = 1,
    max_len: int = 175,
    ratio: float = 9.0,
    max_word_length: int = 1000,
) -> Iterator[Tuple[str, str]]:
    """Moses' ``clean-corpus-n.perl -ratio R ... MIN MAX``, pair by pair.

    Like the Perl script: pipes are dropped unless the first pair has one
    (factored input), whitespace is collapsed (and that is what is written),
    then a pair goes if a side is empty, has fewer than ``min_len`` or more
    than ``max_len`` words, the word-count ratio exceeds ``ratio`` either way,
    or a word is longer than ``max_word_length`` characters. ``report`` counts
    each reason."""
    long_word = re.compile(r"[^\s|]{%d}" % (max_word_length + 1))
    factored = None
    for f, e in pairs:
        report.total += 1
        if factored is None:
            factored = "|" in f or "|" in e
        f, e = _normalize(f, factored), _normalize(e, factored)
        if not f or not e:
            report.empty += 1
            continue
        fc, ec = len(f.split(" ")), len(e.split(" "))
        if fc > max_len or ec > max_len:
            report.too_long += 1
        elif fc < min_len or ec < min_len:
            report.too_short += 1
        elif ec / fc > ratio or fc / ec > ratio:
            report.ratio += 1
        elif long_word.search(e) or long_word.search(f):
            report.long_word += 1
        else:
            report.kept += 1
            yield f, e


def clean_files(
    src: Path, tgt: Path, src_out: Path, tgt_out: Path, name: str, **limits
) -> CleanReport:
    """:func:`clean_pairs` from two aligned files into two new ones; logs the report."""
    report = CleanReport(name)
    with (
        open(src_out, "w", encoding="utf-8", newline="\n") as fo,
        open(tgt_out, "w", encoding="utf-8", newline="\n") as eo,
    ):
        for f, e in clean_pairs(
            zip(iter_lines(src), iter_lines(tgt)), report, **limits
        ):
            fo.write(f + "\n")
            eo.write(e + "\n")
    logger.info("cleaning %s", report.summary())
    if report.kept == 0:
        raise DataError(
            f"cleaning removed every pair of {src} / {tgt} ({report.summary()}); "
            "check that the files are the right corpus and tokenized as expected"
        )
    return report


def split_every(path: Path, n: int, every_nth: Path, rest: Path) -> Tuple[int, int]:
    """Line i (1-based) goes to ``every_nth`` when i % n == 0, else to ``rest``
    (fairseq's ``awk 'NR%n == 0'`` split of valid from train)."""
    counts = [0, 0]
    with (
        open(every_nth, "w", encoding="utf-8", newline="\n") as a,
        open(rest, "w", encoding="utf-8", newline="\n") as b,
    ):
        for i, line in enumerate(iter_lines(path), 1):
            picked = i % n == 0
            (a if picked else b).write(line + "\n")
            counts[0 if picked else 1] += 1
    return counts[0], counts[1]
