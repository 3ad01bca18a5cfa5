"""Translate raw text with a trained DeLighT checkpoint from Python:
:class:`Translator` and :func:`translate_lines`. The ``delight-translate``
command around them is :mod:`delight_fairseq.inference.cli`; the checkpoint,
its dictionaries and the search are set up by
:mod:`delight_fairseq.inference.loading`, the subword model and Moses steps
(what ``delight-prep`` left in the data-bin) by :mod:`delight_lite.text`.

The lines (str, or UTF-8 bytes) are streamed as :class:`delight_lite.stream.
Streamer` describes (chunks sorted by length, batches of at most
``batch_tokens`` padded source tokens, the input's order kept, bad lines
warned about and never dropped); each batch is decoded by the lean
:class:`~delight_fairseq.inference.Engine` (or by fairseq's SequenceGenerator
with ``fp32_reference``). With ``workers`` N > 1, N engines decode N batches
of a chunk at once, each in a thread of its own with ``threads // N`` of
torch's threads: on a CPU, independent batches use the cores better than
torch's threads inside one small matmul::

    from delight_fairseq.inference.translate import Translator
    translator = Translator("checkpoints/", data="data-bin/multi30k_de_en", beam=5)
    translator.translate(["Ein Mann fährt Fahrrad.", ""])  # -> [str, ""]
"""

import logging
from pathlib import Path
from typing import IO, Iterable, List, Optional, Union

import torch

from delight_lite.stream import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_CHUNK_LINES,
    Streamer,
    check_options,
)
from delight_lite.text import Line, TextCodec, TextSetupError, build_codec

from .loading import TranslateError, build_decoder, load_model
from .pool import EnginePool

logger = logging.getLogger("delight_fairseq.translate")


class Translator(Streamer):
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
        self._setup_stream(batch_tokens, chunk_lines, progress)
        self.source_unk = self.src_dict.unk()
        self.source_dict_path = info["src_dict"]
        self.fp32_reference = fp32_reference
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
        logger.info(
            "decoding with %s on %s: beam %d, lenpen %s, max_len %s * S + %s, "
            "batches of <= %d tokens, chunks of %d lines, %d worker(s) of %d "
            "thread(s)",
            decoder, self.device, beam, lenpen, max_len_a, max_len_b,
            batch_tokens, chunk_lines, workers, torch.get_num_threads(),
        )  # fmt: skip

    def source_ids(self, symbols: str) -> List[int]:
        return self.src_dict.encode_line(
            symbols, add_if_not_exist=False, append_eos=False
        ).tolist()

    def target_string(self, hyp: List[int]) -> str:
        return self.tgt_dict.string(hyp, self.codec.post_process)

    def _map(self, decode, batches):
        return self.pool.map(decode, batches) if self.pool else map(decode, batches)

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


def translate_lines(
    lines: Iterable[Line], checkpoint: Union[str, Path], data=None, **options
) -> List[str]:
    """Translate ``lines`` with ``checkpoint`` in one call (options: those of
    :class:`Translator`)."""
    return Translator(checkpoint, data, **options).translate(lines)


if __name__ == "__main__":  # python -m delight_fairseq.inference.translate
    from .cli import main

    raise SystemExit(main())
