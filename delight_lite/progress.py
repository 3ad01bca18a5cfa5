"""What a translation run did and how far it is: :class:`Stats` (the counts and
the summary line), :func:`name_lines` (line numbers in a warning),
:func:`warn_about_input` (a run's closing warnings), :class:`Progress` (the
progress line on a terminal) and :func:`peak_rss_mib` (a process's peak
memory, which delight-lite's workers report). Used by the two translators'
streaming (:mod:`delight_lite.stream`) and commands.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, List, Optional, Sequence

logger = logging.getLogger("delight_fairseq.translate")

#: how many line numbers one warning names
MAX_NAMED = 10
#: warn when more than this share of the source tokens is unknown
UNKNOWN_WARNING = 0.1


@dataclass
class Stats:
    """What one run (one ``Translator.translate`` call or one stream) did."""

    sentences: int = 0  # lines read, empty ones included
    translated: int = 0  # lines that went through the model
    empty: int = 0  # empty or blank lines (an empty line out)
    source_tokens: int = 0  # subword tokens into the model (no eos)
    unknown_tokens: int = 0  # of them, unknown to the source dictionary
    target_tokens: int = 0  # subword tokens out (no eos)
    seconds: float = 0.0
    invalid_utf8: List[int] = field(default_factory=list)  # line numbers, 1-based
    truncated: List[int] = field(default_factory=list)
    failed: List[int] = field(default_factory=list)

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (
            f"{self.sentences:,} sentences ({self.translated:,} translated, "
            f"{self.empty:,} empty), {self.source_tokens:,} source tokens -> "
            f"{self.target_tokens:,} target tokens, {self.seconds:.2f} s, "
            f"{self.sentences_per_second:,.1f} sentences/s"
        )
        extra = [
            f"{len(lines):,} {what}"
            for lines, what in (
                (self.invalid_utf8, "with invalid UTF-8"),
                (self.truncated, "truncated"),
                (self.failed, "FAILED (empty line written)"),
            )
            if lines
        ]
        return text + (f"; {', '.join(extra)}" if extra else "")


def name_lines(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_NAMED])
    word = "line" if len(numbers) == 1 else "lines"
    more = (
        f" (the first {MAX_NAMED} of {len(numbers):,})"
        if len(numbers) > MAX_NAMED
        else ""
    )
    return f"{word} {shown}{more}"


def warn_about_input(stats: Stats, src_dict: Path, codec) -> None:
    """A run's closing warnings: the lines with invalid UTF-8, and too many
    source tokens unknown to the dictionary ``src_dict`` (the warning names
    the :class:`~delight_lite.text.TextCodec` ``codec``)."""
    if stats.invalid_utf8:
        logger.warning(
            "invalid UTF-8 on %s of the input: the bad bytes were replaced "
            "by U+FFFD and translated",
            name_lines(stats.invalid_utf8),
        )
    if stats.source_tokens >= 20 and (
        stats.unknown_tokens > UNKNOWN_WARNING * stats.source_tokens
    ):
        logger.warning(
            "%.0f%% of the source tokens are unknown to the dictionary (%s): "
            "is this the model's source language, and the right subword model "
            "(%s)?",
            100 * stats.unknown_tokens / stats.source_tokens,
            src_dict,
            codec.describe(),
        )


class Progress:
    """A one-line progress display on a terminal: sentences and sentences/s."""

    def __init__(self, stream: IO[str], total: Optional[int] = None):
        self.stream, self.total = stream, total
        self.start = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        rate = done / (now - self.start) if now > self.start else 0.0
        of = ""
        if self.total:
            of = f" / {self.total:,} ({100 * done / self.total:.0f}%)"
        self.stream.write(f"\r{done:,}{of} sentences | {rate:,.1f} sentences/s ")
        self.stream.flush()
        self.shown = True

    def interrupt(self) -> None:
        """End the progress line, so that a log message starts on its own."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB: VmHWM, not ru_maxrss, which
    Linux carries over exec from the parent (a parent that imported torch
    starts every child at its own ~330 MiB); ru_maxrss where there is no
    /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
