"""Translate raw text with a model exported by ``delight-export``, in NumPy:
:class:`LiteTranslator` (the ``delight-lite`` command is
:mod:`delight_lite.cli`)::

    from delight_lite.translate import LiteTranslator
    translator = LiteTranslator("model_dir", beam=5, threads=1)
    translator.translate(["Ein Mann fährt Fahrrad.", ""])  # -> [str, ""]

The text goes through the subword model and Moses steps the data-bin had
(copied into the folder by the export; :mod:`delight_lite.text`), and the
lines stream as :class:`delight_lite.stream.Streamer` describes. Nothing here
imports torch or fairseq.
"""

import logging
import re
from pathlib import Path
from typing import IO, List, Optional, Union

from .stream import (
    DEFAULT_CHUNK_LINES,
    Streamer,
    TranslateError,
    check_options,
)
from .text import TextSetupError, build_codec

logger = logging.getLogger("delight_lite")

_SPACES = re.compile(r"\s+")

#: delight-lite's --batch-tokens: on the 1,000 Multi30k test sentences it
#: decoded as fast as 6,000 (delight-translate's) at half the peak memory or
#: less (docs/translating.md)
LITE_BATCH_TOKENS = 1500


class Vocabulary:
    """A fairseq Dictionary's symbols, as the export wrote them: ids of
    whitespace-split symbols (unknown ones -> unk), and ids back to text as
    ``Dictionary.string`` gives it (eos and bos left out, then the subword
    joining of ``fairseq.data.data_utils.post_process``)."""

    def __init__(self, spec: dict):
        self.symbols: List[str] = spec["symbols"]
        self.pad, self.eos, self.unk, self.bos = (
            spec["pad"],
            spec["eos"],
            spec["unk"],
            spec["bos"],
        )
        # a later duplicate wins, as #fairseq:overwrite does
        self.indices = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, line: str) -> List[int]:
        unk = self.unk
        return [self.indices.get(w, unk) for w in _SPACES.sub(" ", line).split()]

    def string(self, ids: List[int], post_process: Optional[str]) -> str:
        skip = (self.eos, self.bos)
        text = " ".join(self.symbols[i] for i in ids if i not in skip)
        if post_process == "sentencepiece":
            return text.replace(" ", "").replace("\u2581", " ").strip()
        if post_process in ("subword_nmt", "@@ "):
            return (text + " ").replace("@@ ", "").rstrip()
        if post_process not in (None, "none"):
            raise ValueError(f"unknown subword post-processing {post_process!r}")
        return text


class LiteTranslator(Streamer):
    """An exported model ready to translate raw text.

    Args:
        folder: what ``delight-export`` wrote.
        beam, lenpen, max_len_a, max_len_b, min_len: the search (fairseq's
            meanings, as :class:`delight_fairseq.inference.translate.Translator`).
        batch_tokens, chunk_lines: as there (``batch_tokens`` defaults to
            LITE_BATCH_TOKENS).
        threads: the BLAS threads of the products (threadpoolctl; default:
            the BLAS library's own); with ``workers``, shared among them.
        workers: processes decoding batches at once, each with its own model
            and ``threads // workers`` BLAS threads (at least one;
            :mod:`delight_lite.workers`). Call :meth:`close` when done.
        bpe, tokenizer: override what the export recorded (``auto``).
        progress: a stream for a progress line (a terminal), or None.
    """

    def __init__(
        self,
        folder: Union[str, Path],
        *,
        beam: int = 5,
        lenpen: float = 1.0,
        max_len_a: float = 0.0,
        max_len_b: int = 200,
        min_len: int = 1,
        batch_tokens: int = LITE_BATCH_TOKENS,
        chunk_lines: int = DEFAULT_CHUNK_LINES,
        threads: Optional[int] = None,
        workers: int = 1,
        bpe: str = "auto",
        tokenizer: str = "auto",
        progress: Optional[IO[str]] = None,
    ):
        check_options(
            beam=beam,
            batch_tokens=batch_tokens,
            chunk_lines=chunk_lines,
            workers=workers,
            threads=threads,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            min_len=min_len,
        )
        from .model import Model, ModelError, read_config
        from .search import Options, Search
        from .workers import WorkerError, Workers

        folder = Path(folder)
        try:
            config = read_config(folder)
        except ModelError as e:
            raise TranslateError(str(e)) from None
        text = config.get("text") or {}
        self.source = Vocabulary(config["source"])
        self.target = Vocabulary(config["target"])
        try:
            self.codec = build_codec(
                text.get("source_lang", "src"),
                text.get("target_lang", "tgt"),
                [folder],
                bpe=bpe,
                tokenizer=tokenizer,
                prep_settings=text.get("prep"),
            )
        except TextSetupError as e:
            raise TranslateError(str(e)) from None
        options = Options(beam, lenpen, max_len_a, max_len_b, min_len)
        self._limits = self.workers = self.search = None
        try:
            if workers > 1:  # the weights stay in the workers
                each = max(1, (threads or 1) // workers)
                self.workers = Workers(workers, folder, options, each)
            else:
                if threads is not None:
                    from threadpoolctl import threadpool_limits

                    # held for the translator's life: the products' BLAS threads
                    self._limits = threadpool_limits(limits=threads, user_api="blas")
                self.search = Search(Model(folder, config), options)
        except (ModelError, WorkerError) as e:
            raise TranslateError(str(e)) from None
        self.max_source_positions = config["encoder"]["max_positions"]
        self.source_unk = self.source.unk
        self.source_dict_path = folder
        self._setup_stream(batch_tokens, chunk_lines, progress)
        logger.info(
            "%s -> %s; %s; decoding with NumPy from %s: beam %d, lenpen %s, max_len "
            "%s * S + %s, batches of <= %d tokens, chunks of %d lines, %s",
            text.get("source_lang"), text.get("target_lang"), self.codec.describe(),
            folder, beam, lenpen, max_len_a, max_len_b, batch_tokens, chunk_lines,
            f"{workers} worker processes" if self.workers else "in this process",
        )  # fmt: skip

    def source_ids(self, symbols: str) -> List[int]:
        return self.source.encode(symbols)

    def target_string(self, hyp: List[int]) -> str:
        return self.target.string(hyp, self.codec.post_process)

    def _search(self, sources: List[List[int]]) -> List[List[int]]:
        if self.workers is not None:
            return self.workers.search(sources)
        return [tokens for tokens, _ in self.search.translate(sources)]

    def _map(self, decode, batches):
        if self.workers is not None:
            return self.workers.map(decode, batches)
        return map(decode, batches)

    def close(self) -> None:
        """Stop the worker processes, if any (the translator is then done)."""
        if self.workers is not None:
            peaks = self.workers.close()
            logger.info(
                "worker processes' peak memory: %s MiB",
                ", ".join(f"{p:.0f}" for p in peaks),
            )
