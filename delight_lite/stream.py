"""The streaming half of a translator, shared by ``delight-translate``
(:class:`delight_fairseq.inference.translate.Translator`, torch) and
``delight-lite`` (:class:`delight_lite.translate.LiteTranslator`, NumPy).

:class:`Streamer` reads lines in chunks (``chunk_lines``), sorts each chunk by
length, cuts it into batches of at most ``batch_tokens`` padded source tokens,
has them decoded (:meth:`Streamer._search`, the subclass's) and gives the
translations back in input order, so memory does not grow with the input's
length. Each line gives one translation, detokenized; an empty line gives an
empty line. Bad input never stops the run: invalid UTF-8 is replaced by U+FFFD
(one warning names the lines), a line longer than the model's source
positions is truncated (a warning names it), and a line that fails to decode
gives an empty line and an error naming it (``stats.failed``).
"""

import logging
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional

from .progress import MAX_NAMED, Progress, Stats, warn_about_input
from .text import Line, TextCodec, as_text

logger = logging.getLogger("delight_fairseq.translate")

DEFAULT_BATCH_TOKENS = 6000
DEFAULT_CHUNK_LINES = 2000


class TranslateError(RuntimeError):
    """A setup problem (a missing file, a mismatch, an unavailable option);
    the message says what to do."""


def check_options(
    *,
    beam: int,
    batch_tokens: int,
    chunk_lines: int,
    workers: int,
    threads: Optional[int],
    max_len_a: float,
    max_len_b: int,
    min_len: int,
    int8: bool = False,
    fp32_reference: bool = False,
) -> None:
    """Refuse a translator's options that cannot work, before anything loads
    (``int8`` and ``fp32_reference``: delight-translate's alone)."""
    for name, value, low in (
        ("beam", beam, 1),
        ("batch_tokens", batch_tokens, 1),
        ("chunk_lines", chunk_lines, 1),
        ("workers", workers, 1),
    ):
        if value < low:
            raise ValueError(f"{name} is {value}; it must be >= {low}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads is {threads}; it must be >= 1")
    if int8 and fp32_reference:
        raise TranslateError("--int8 and --fp32-reference exclude each other")
    if workers > 1 and fp32_reference:
        raise TranslateError(
            f"--workers {workers} runs several engines at once, and "
            "--fp32-reference decodes with fairseq's SequenceGenerator, one batch "
            "at a time: drop one of the two flags"
        )
    if max_len_a == 0 and min_len > max_len_b:
        # checked here: the search would refuse every batch
        raise ValueError(f"min_len ({min_len}) is larger than max_len_b ({max_len_b})")


class Streamer:
    """Chunks, batches, order, warnings and progress around a subclass's
    search. A subclass sets :attr:`codec`, :attr:`max_source_positions`,
    :attr:`source_unk` and :attr:`source_dict_path` and provides
    :meth:`source_ids`, :meth:`target_string` and :meth:`_search`; it calls
    :meth:`_setup_stream` first."""

    codec: TextCodec
    max_source_positions: int  # the longest source the model takes, eos included
    source_unk: int
    source_dict_path: Optional[Path]  # named by the unknown-tokens warning

    def _setup_stream(self, batch_tokens: int, chunk_lines: int, progress) -> None:
        self.batch_tokens, self.chunk_lines = batch_tokens, chunk_lines
        self.progress = progress
        self._log_lock = threading.Lock()
        self.stats = Stats()
        self._live: Optional[Progress] = None  # the progress line being drawn

    # -- what a subclass provides --------------------------------------------------

    def source_ids(self, symbols: str) -> List[int]:
        """The source dictionary's ids of space-separated subwords (no eos)."""
        raise NotImplementedError

    def target_string(self, hyp: List[int]) -> str:
        """Target ids -> text with the subwords joined (before detokenizing)."""
        raise NotImplementedError

    def _search(self, sources: List[List[int]]) -> List[List[int]]:
        """The best hypothesis (target ids, no eos) of each source (no eos)."""
        raise NotImplementedError

    def _map(self, decode: Callable, batches: List[List[int]]) -> Iterable:
        """``decode`` over the batches, results in order (a pool may run
        them at once)."""
        return map(decode, batches)

    def close(self) -> None:
        """Release what the translator holds besides memory (processes)."""

    # -- the public calls ----------------------------------------------------------

    def translate(self, lines: Iterable[Line]) -> List[str]:
        """Translate ``lines`` (str, or bytes in UTF-8); returns one string per
        line, in order. :attr:`stats` describes the call."""
        return list(self.translate_stream(lines))

    def translate_stream(
        self, lines: Iterable[Line], total: Optional[int] = None
    ) -> Iterator[str]:
        """Translate an iterable of lines chunk by chunk, yielding one
        translation per line in order; reads ``chunk_lines`` lines ahead at
        most. :attr:`stats` describes the stream once it is exhausted (or
        closed). ``total`` (the number of lines, if known) is for the
        progress display."""
        self.stats = stats = Stats()
        start = time.perf_counter()
        progress = Progress(self.progress, total) if self.progress else None
        self._live = progress
        lines = iter(lines)
        first = 1
        try:
            while True:
                chunk = list(islice(lines, self.chunk_lines))
                if not chunk:
                    break
                outputs = self._chunk(chunk, first, stats, progress)
                first += len(chunk)
                stats.seconds = time.perf_counter() - start
                yield from outputs
        finally:
            stats.seconds = time.perf_counter() - start
            if progress is not None:
                progress.update(stats.sentences, force=True)
                progress.close()
            self._live = None
            warn_about_input(stats, self.source_dict_path, self.codec)

    # -- one chunk -------------------------------------------------------------------

    def _encode(self, text: str, number: int, stats: Stats) -> Optional[List[int]]:
        """Source token ids without eos, truncated to the model's limit; None
        for a line that gives an empty translation."""
        ids = self.source_ids(self.codec.encode(text))
        if not ids:
            return None
        limit = self.max_source_positions - 1  # room for the eos
        if len(ids) > limit:
            stats.truncated.append(number)
            if len(stats.truncated) <= MAX_NAMED:
                self._log(
                    logging.WARNING,
                    "line %d: %d source tokens, more than the model's %d (max source "
                    "positions %d less the eos): translating its first %d tokens only",
                    number, len(ids), limit, self.max_source_positions, limit,
                )  # fmt: skip
            elif len(stats.truncated) == MAX_NAMED + 1:
                self._log(
                    logging.WARNING,
                    "more lines are too long: they are truncated as well, and the "
                    "summary counts them",
                )
            ids = ids[:limit]
        return ids

    def _chunk(self, chunk, first: int, stats: Stats, progress) -> List[str]:
        outputs: List[str] = [""] * len(chunk)
        sources = {}  # position in the chunk -> ids (eos not included)
        for i, item in enumerate(chunk):
            number = first + i
            text, invalid = as_text(item)  # invalid UTF-8 -> U+FFFD
            if invalid:
                stats.invalid_utf8.append(number)
            if not text.strip():
                stats.empty += 1
                continue
            try:
                ids = self._encode(text, number, stats)
            except Exception as e:  # one bad line never stops the run
                self._failed(number, "cannot be encoded", e, stats)
                continue
            if ids is None:
                stats.empty += 1
            else:
                sources[i] = ids
        # longest first, input order among equals
        order = sorted(sources, key=lambda i: -len(sources[i]))
        done = stats.sentences + len(chunk) - len(order)
        batches = list(self._batches(order, sources))

        def decode(batch):
            return self._decode_batch([sources[i] for i in batch], batch, first, stats)

        # with workers, the batches run at once; their results come back in order
        results = self._map(decode, batches)
        for batch, hyps in zip(batches, results):
            for i, hyp in zip(batch, hyps):
                if hyp is None:
                    continue
                stats.translated += 1
                stats.source_tokens += len(sources[i])
                stats.unknown_tokens += sources[i].count(self.source_unk)
                stats.target_tokens += len(hyp)
                outputs[i] = self._detokenize(hyp, first + i)
            done += len(batch)
            if progress is not None:
                with self._log_lock:
                    progress.update(done)
        stats.sentences += len(chunk)
        return outputs

    def _batches(self, order: List[int], sources) -> Iterator[List[int]]:
        """Consecutive runs of ``order`` (longest first) whose padded size,
        eos included, is at most ``batch_tokens``."""
        batch: List[int] = []
        width = 0
        for i in order:
            if batch and (len(batch) + 1) * width > self.batch_tokens:
                yield batch
                batch = []
            if not batch:
                width = len(sources[i]) + 1
            batch.append(i)
        if batch:
            yield batch

    def _decode_batch(
        self, sources, positions, first, stats
    ) -> List[Optional[List[int]]]:
        """The best hypothesis of each source; None where decoding failed.
        A failing batch is retried sentence by sentence."""
        try:
            return self._search(sources)
        except Exception as e:
            if len(sources) == 1:
                self._failed(first + positions[0], "could not be translated", e, stats)
                return [None]
            self._log(
                logging.WARNING,
                "a batch of %d sentences failed (%s: %s); translating them one by one",
                len(sources), type(e).__name__, e,
            )  # fmt: skip
        return [
            self._decode_batch([src], [pos], first, stats)[0]
            for src, pos in zip(sources, positions)
        ]

    def _log(self, level: int, msg: str, *args) -> None:
        """Log, on a line of its own when a progress line is being drawn (from
        any worker)."""
        with self._log_lock:
            if self._live is not None:
                self._live.interrupt()
            logger.log(level, msg, *args)

    def _failed(self, number: int, what: str, error: Exception, stats: Stats) -> None:
        stats.failed.append(number)
        self._log(
            logging.ERROR,
            "line %d %s (%s: %s): an empty line is written in its place",
            number, what, type(error).__name__, error,
        )  # fmt: skip

    def _detokenize(self, hyp: List[int], number: int) -> str:
        joined = self.target_string(hyp)
        try:
            text = self.codec.decode(joined)
        except Exception as e:
            self._log(
                logging.WARNING,
                "line %d: detokenizing failed (%s: %s); written as the model's tokens",
                number, type(e).__name__, e,
            )  # fmt: skip
            text = joined
        # one line out per line in
        return text.replace("\r", " ").replace("\n", " ")
