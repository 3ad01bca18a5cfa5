"""Translate raw text with a trained DeLighT checkpoint from Python:
:class:`Translator` and :func:`translate_lines`. The ``delight-translate``
command around them is :mod:`delight_fairseq.inference.cli`; the checkpoint,
its dictionaries and the search are set up by
:mod:`delight_fairseq.inference.loading`, the subword model and Moses steps
(what ``delight-prep`` left in the data-bin) by
:mod:`delight_fairseq.inference.text`.

The lines (str, or UTF-8 bytes) are read in chunks (``chunk_lines``); each
chunk is sorted by length, cut into batches of at most ``batch_tokens`` padded
source tokens, decoded by the lean :class:`~delight_fairseq.inference.Engine`
(or by fairseq's SequenceGenerator with ``fp32_reference``) and given back in
input order, so memory does not grow with the input's length. With ``workers``
N > 1, N engines decode N batches of a chunk at once, each in a thread of its
own with ``threads // N`` of torch's threads: on a CPU, independent batches use
the cores better than torch's threads inside one small matmul. Each line gives
one translation, detokenized; an empty line gives an empty line. Bad input
never stops the run: invalid UTF-8 is replaced by U+FFFD (one warning names the
lines), a line longer than the model's source positions is truncated (a warning
names it), and a line that fails to decode gives an empty line and an error
naming it (``stats.failed``)::

    from delight_fairseq.inference.translate import Translator
    translator = Translator("checkpoints/", data="data-bin/multi30k_de_en", beam=5)
    translator.translate(["Ein Mann fährt Fahrrad.", ""])  # -> [str, ""]
"""

import logging
import threading
import time
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Iterator, List, Optional, Union

import torch

from .loading import TranslateError, build_decoder, check_options, load_model
from .pool import EnginePool
from .progress import MAX_NAMED, Progress, Stats, warn_about_input
from .text import Line, TextCodec, TextSetupError, as_text, build_codec

logger = logging.getLogger("delight_fairseq.translate")

DEFAULT_BATCH_TOKENS = 6000
DEFAULT_CHUNK_LINES = 2000


class Translator:
    """A checkpoint ready to translate raw text.

    Args:
        checkpoint: a ``.pt`` file or a checkpoint folder.
        data: the data-bin (dictionaries, subword model, ``prep.json``);
            default: the one recorded in the checkpoint.
        source_lang, target_lang: default: the checkpoint's, else the data-bin's.
        src_dict, tgt_dict: dictionary files instead of the data-bin's.
        bpe: ``auto``, ``sentencepiece``, ``subword_nmt`` or ``none``.
        spm_model, bpe_codes: the subword model, instead of the data-bin's.
        tokenizer: ``auto`` (as ``prep.json`` records), ``moses`` or ``none``.
        beam, lenpen, max_len_a, max_len_b, min_len: the search (fairseq's
            meanings; the hypothesis is at most ``max_len_a * S + max_len_b``
            tokens, S the batch's padded source width).
        batch_tokens: at most this many padded source tokens (eos included)
            per batch; a longer sentence goes alone.
        chunk_lines: lines read, sorted and decoded together.
        int8: decode with the engine quantized by
            ``delight_fairseq.inference.quantize.quantize_engine``.
        fp32_reference: decode with fairseq's SequenceGenerator instead of the
            engine, in float32 (for comparison).
        matmul: the float32 engine's products (``delight_fairseq.inference.
            matmul``): ``auto``, ``torch`` (as the model's modules) or
            ``onednn``.
        device: ``cpu``, ``cuda``, ...; default: CUDA when available.
        threads: the CPU threads to use, if given (``torch.set_num_threads``,
            process-wide); with ``workers``, shared among them.
        workers: engines decoding batches at once, each in its own thread
            (CPU; not with ``fp32_reference``). Each gets ``threads // workers``
            of torch's threads (``threads``: torch's count if not given).
        progress: a stream for a progress line (a terminal), or None.
    """

    def __init__(
        self,
        checkpoint: Union[str, Path],
        data: Optional[Union[str, Path]] = None,
        *,
        source_lang: Optional[str] = None,
        target_lang: Optional[str] = None,
        src_dict: Optional[Union[str, Path]] = None,
        tgt_dict: Optional[Union[str, Path]] = None,
        bpe: str = "auto",
        spm_model: Optional[Union[str, Path]] = None,
        bpe_codes: Optional[Union[str, Path]] = None,
        tokenizer: str = "auto",
        beam: int = 5,
        lenpen: float = 1.0,
        max_len_a: float = 0.0,
        max_len_b: int = 200,
        min_len: int = 1,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        chunk_lines: int = DEFAULT_CHUNK_LINES,
        int8: bool = False,
        fp32_reference: bool = False,
        matmul: str = "auto",
        device: Optional[str] = None,
        threads: Optional[int] = None,
        workers: int = 1,
        progress: Optional[IO[str]] = None,
    ):
        check_options(
            beam=beam,
            batch_tokens=batch_tokens,
            chunk_lines=chunk_lines,
            workers=workers,
            threads=threads,
            int8=int8,
            fp32_reference=fp32_reference,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            min_len=min_len,
        )
        if workers > 1 or threads is not None:
            total = torch.get_num_threads() if threads is None else threads
            torch.set_num_threads(max(1, total // workers))
        model, task, info = load_model(
            checkpoint, data, source_lang, target_lang, src_dict, tgt_dict
        )
        self.info = info
        self.src_dict, self.tgt_dict = task.source_dictionary, task.target_dictionary
        search_dirs = [
            info["data"],
            info["src_dict"].parent,
            info["checkpoint"].parent,
        ]
        try:
            self.codec: TextCodec = build_codec(
                info["source_lang"],
                info["target_lang"],
                search_dirs,
                bpe=bpe,
                spm_model=Path(spm_model) if spm_model else None,
                bpe_codes=Path(bpe_codes) if bpe_codes else None,
                tokenizer=tokenizer,
                prep_settings=info["prep"],
            )
        except TextSetupError as e:
            raise TranslateError(str(e)) from None
        logger.info(
            "%s -> %s; %s",
            info["source_lang"],
            info["target_lang"],
            self.codec.describe(),
        )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.float().to(self.device).eval()
        # the longest source the model takes, its eos included
        self.max_source_positions = min(
            int(task.cfg.max_source_positions), int(model.encoder.max_positions())
        )
        self.beam, self.lenpen = beam, lenpen
        self.max_len_a, self.max_len_b, self.min_len = max_len_a, max_len_b, min_len
        self.batch_tokens, self.chunk_lines = batch_tokens, chunk_lines
        self.fp32_reference = fp32_reference
        self.progress = progress
        search = dict(
            beam=beam,
            lenpen=lenpen,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            min_len=min_len,
            int8=int8,
            matmul=matmul,
        )
        self.engine, self.generator, decoder = build_decoder(
            self.model, self.tgt_dict, fp32_reference=fp32_reference, **search
        )
        self.pool: Optional[EnginePool] = None
        if self.engine is not None:
            more = [
                build_decoder(self.model, self.tgt_dict, **search)[0]
                for _ in range(workers - 1)
            ]
            self.pool = EnginePool([self.engine, *more])
        self._log_lock = threading.Lock()
        logger.info(
            "decoding with %s on %s: beam %d, lenpen %s, max_len %s * S + %s, "
            "batches of <= %d tokens, chunks of %d lines, %d worker(s) of %d "
            "thread(s)",
            decoder, self.device, beam, lenpen, max_len_a, max_len_b,
            batch_tokens, chunk_lines, workers, torch.get_num_threads(),
        )  # fmt: skip
        self.stats = Stats()
        self._live: Optional[Progress] = None  # the progress line being drawn

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
            warn_about_input(stats, self.info["src_dict"], self.codec)

    # -- one chunk -------------------------------------------------------------------

    def _encode(self, text: str, number: int, stats: Stats) -> Optional[List[int]]:
        """Source token ids without eos, truncated to the model's limit; None
        for a line that gives an empty translation."""
        symbols = self.codec.encode(text)
        ids = self.src_dict.encode_line(
            symbols, add_if_not_exist=False, append_eos=False
        ).tolist()
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
        results = self.pool.map(decode, batches) if self.pool else map(decode, batches)
        for batch, hyps in zip(batches, results):
            for i, hyp in zip(batch, hyps):
                if hyp is None:
                    continue
                stats.translated += 1
                stats.source_tokens += len(sources[i])
                stats.unknown_tokens += sources[i].count(self.src_dict.unk())
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

    @torch.no_grad()
    def _search(self, sources: List[List[int]]) -> List[List[int]]:
        from fairseq.data import data_utils

        eos, pad = self.src_dict.eos(), self.src_dict.pad()
        tensors = [torch.tensor(ids + [eos], dtype=torch.long) for ids in sources]
        src_tokens = data_utils.collate_tokens(tensors, pad, eos, left_pad=True)
        src_lengths = torch.tensor([t.numel() for t in tensors])
        if self.pool is not None:
            return self.pool.translate(src_tokens, src_lengths)
        sample = {
            "net_input": {
                "src_tokens": src_tokens.to(self.device),
                "src_lengths": src_lengths.to(self.device),
            }
        }
        hypos = self.generator.generate([self.model], sample)
        out = []
        tgt_eos = self.tgt_dict.eos()
        for h in hypos:
            tokens = h[0]["tokens"].tolist()
            if tokens and tokens[-1] == tgt_eos:
                tokens = tokens[:-1]
            out.append(tokens)
        return out

    def _detokenize(self, hyp: List[int], number: int) -> str:
        joined = self.tgt_dict.string(hyp, self.codec.post_process)
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


def translate_lines(
    lines: Iterable[Line], checkpoint: Union[str, Path], data=None, **options
) -> List[str]:
    """Translate ``lines`` with ``checkpoint`` in one call (options: those of
    :class:`Translator`)."""
    return Translator(checkpoint, data, **options).translate(lines)


if __name__ == "__main__":  # python -m delight_fairseq.inference.translate
    from .cli import main

    raise SystemExit(main())
