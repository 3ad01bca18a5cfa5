"""A lean beam-search engine for a trained DeLighT model.

    from delight_fairseq.inference import Engine
    engine = Engine(model, task.target_dictionary, beam=5, lenpen=1.0)
    hypotheses = engine.translate(src_tokens, src_lengths)  # [[ids], ...]

The search is fairseq's SequenceGenerator with its BeamSearch (the rules of
``fairseq/sequence_generator.py``, ``_generate`` and ``finalize_hypos``), so
the hypotheses are the same; the work per step is a handful of tensor
operations:

* the encoder runs once; the decoder runs one token per hypothesis through
  :class:`~delight_fairseq.inference.step.DecoderStep`, which keeps the
  self-attention keys and values in a preallocated cache and projects the
  encoder-side keys and values once per sentence;
* each sentence's candidates (NaN as -inf, the beams' scores added, the
  best 2 x beam) come from one pass over its log-probabilities in the fused
  kernel (csrc/beam_topk.cpp), instead of three passes through memory;
  torch.topk decides where the kernel reports a tie, whose order torch
  leaves unspecified, and where the kernel is not in use;
* the bookkeeping lives in tensors, and beam 1 runs as greedy search with
  a few operations per step (:mod:`delight_fairseq.inference.search`, which
  lists the rules kept from SequenceGenerator).
"""

from typing import List, Tuple

import torch
from torch import Tensor

from . import functional as fn
from .matmul import check as check_matmul
from .matmul import resolve, use_onednn
from .search import search
from .step import DecoderStep, KeyValueCache


class Engine:
    """Beam search over a DeLighT model (``DeLighTTransformerModel``).

    The model is put in eval mode, as SequenceGenerator does. An engine keeps
    its caches between calls, and on its first call it embeds the whole
    target vocabulary once (the decoder's embedding acts per token): build a
    new engine after changing the model's weights, and use one engine per
    thread.

    ``int8=True`` quantizes the engine (on CPU) with
    :func:`delight_fairseq.inference.quantize.quantize_engine`'s defaults.

    ``matmul`` picks the library of a float32 engine's products on the CPU
    (:mod:`delight_fairseq.inference.matmul`): ``"torch"`` computes them as
    the model's modules do; ``"onednn"`` runs them on oneDNN;
    ``"auto"`` takes oneDNN where a one-time measurement finds it faster.
    """

    #: run the search loop in C++ (csrc/search.cpp) where the step runs there
    #: (False: search.py's Python loop, which the C++ one follows operation by
    #: operation)
    native_search = True

    def __init__(
        self,
        model,
        tgt_dict,
        beam: int = 5,
        lenpen: float = 1.0,
        max_len_a: float = 0.0,
        max_len_b: int = 200,
        min_len: int = 1,
        *,
        unk_penalty: float = 0.0,
        normalize_scores: bool = True,
        int8: bool = False,
        matmul: str = "auto",
    ):
        if not hasattr(model, "decoder") or not hasattr(model.decoder, "layers"):
            raise TypeError(
                "Engine decodes a DeLighT model (DeLighTTransformerModel); got "
                f"{type(model).__name__}"
            )
        check_matmul(matmul)
        model.eval()
        self.model = model
        self.matmul = matmul
        self.onednn = False  # whether the current batch's products use oneDNN
        self._configure(
            tgt_dict, beam, lenpen, max_len_a, max_len_b, min_len, unk_penalty
        )
        self.normalize_scores = normalize_scores
        self.max_positions = model.max_decoder_positions()
        # where the search runs; None: wherever the model's parameters are
        self.device = None
        self.step = DecoderStep(model)
        self.cache = KeyValueCache(self.step.n_blocks, self.step.head_dim)
        if int8:
            from .quantize import quantize_engine

            quantize_engine(self)

    @classmethod
    def from_parts(
        cls,
        encode,
        step: DecoderStep,
        max_positions: int,
        tgt_dict,
        beam: int = 5,
        lenpen: float = 1.0,
        max_len_a: float = 0.0,
        max_len_b: int = 200,
        min_len: int = 1,
        *,
        unk_penalty: float = 0.0,
        normalize_scores: bool = True,
        device=None,
    ) -> "Engine":
        """An engine without a model (``model`` is None): ``encode(src_tokens,
        src_lengths)`` gives the S x B x d_m encoder output and the B x S
        padding mask, ``step`` runs the decoder; the search options are the
        constructor's. :func:`~delight_fairseq.inference.quantize.load_quantized`
        builds its engines so."""
        engine = cls.__new__(cls)
        engine.model = None
        engine.matmul, engine.onednn = "torch", False
        engine._configure(
            tgt_dict, beam, lenpen, max_len_a, max_len_b, min_len, unk_penalty
        )
        engine.normalize_scores = normalize_scores
        engine.max_positions = max_positions
        engine.device = torch.device("cpu") if device is None else device
        engine.encode = encode
        engine.step = step
        engine.cache = KeyValueCache(step.n_blocks, step.head_dim)
        return engine

    def _configure(
        self, tgt_dict, beam, lenpen, max_len_a, max_len_b, min_len, unk_penalty
    ) -> None:
        if beam < 1:
            raise ValueError(f"beam is {beam}; it must be >= 1")
        # quantize_engine's options once quantized, else None
        self.int8 = None
        self.pad = tgt_dict.pad()
        self.unk = tgt_dict.unk()
        self.eos = tgt_dict.eos()
        self.vocab_size = len(tgt_dict)
        # as SequenceGenerator: pad is never chosen, so at most V - 1 beams
        self.beam = min(beam, self.vocab_size - 1)
        self.lenpen = lenpen
        self.max_len_a = max_len_a
        self.max_len_b = max_len_b
        self.min_len = min_len
        self.unk_penalty = unk_penalty

    def encode(self, src_tokens: Tensor, src_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """The model's encoder: the S x B x d_m output and the B x S padding
        mask (a quantized engine replaces this). Its functional counterpart
        over the same weights, read again for each batch, where the fused
        kernels apply (it runs in C++: fn.Encoder.native) or on oneDNN; else
        the model's module."""
        table = self.model.encoder.embed_tokens.table.weight
        if self.onednn or fn.glt_kernel(table) is not None:
            encoder = fn.Encoder(self.model.encoder)
            if self.onednn:
                use_onednn(encoder)
            return encoder(src_tokens)
        out = self.model.encoder(src_tokens, src_lengths=src_lengths)
        return out["encoder_out"][0], out["encoder_padding_mask"][0]

    def begin_batch(
        self, src_tokens: Tensor, src_lengths: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Choose the library of this batch's float32 products (``matmul``),
        then :meth:`encode`."""
        if self.model is not None and self.int8 is None:  # float32 over the model
            param = next(self.model.parameters())
            self.onednn = resolve(self.matmul, param) == "onednn"
        return self.encode(src_tokens, src_lengths)

    def max_len(self, src_width: int) -> int:
        """The longest hypothesis (without eos) for a batch ``src_width``
        tokens wide: fairseq's rule."""
        return min(
            int(self.max_len_a * src_width + self.max_len_b), self.max_positions - 1
        )

    @torch.no_grad()
    def translate(self, src_tokens: Tensor, src_lengths: Tensor) -> List[List[int]]:
        """src_tokens: B x S, left-padded as fairseq's translation task gives
        them (pad = dict.pad()). Returns, per sentence in input order, the
        best hypothesis' target token ids without the final eos."""
        return [
            tokens for tokens, _ in self.translate_with_scores(src_tokens, src_lengths)
        ]

    @torch.no_grad()
    def translate_with_scores(
        self, src_tokens: Tensor, src_lengths: Tensor
    ) -> List[Tuple[List[int], float]]:
        """As :meth:`translate`, with each hypothesis' score (fairseq's
        ``score``: the length-normalized log-probability, eos included)."""
        best = search(self, src_tokens, src_lengths)
        rows = best.tokens.tolist()
        lengths = best.length.tolist()
        scores = best.score.tolist()
        return [(row[:n], s) for row, n, s in zip(rows, lengths, scores)]

    # -- a step of the search -----------------------------------------------------

    def candidates(self, lprobs: Tensor, cum: Tensor, step: int, n: int, k: int):
        """fairseq's candidates: NaN -> -inf, the beams' scores added (after
        step 0), and the best k of each sentence's rows x V scores with
        their flat indices. The fused kernel (csrc/beam_topk.cpp) reads
        lprobs once; torch.topk decides where it reports a tie, and where
        the kernel is not in use."""
        kernel = self.step.kernel
        if kernel is not None:
            # named, so that torch.profiler counts it (benchmarks/profile_engine.py)
            with torch.profiler.record_function("delight::beam_candidates"):
                scores, flat, tied = kernel.beam_candidates(
                    lprobs, cum if step else cum[:0], n, k
                )
            if not tied:
                return scores, flat
        inf = float("-inf")
        # in place, as fairseq: lprobs[lprobs != lprobs] = -inf
        torch.nan_to_num_(lprobs, nan=inf, posinf=float("inf"), neginf=inf)
        if step:
            lprobs = lprobs.view(n, -1, lprobs.size(1)).add_(cum.view(n, -1, 1))
        return torch.topk(lprobs.view(n, -1), k)
