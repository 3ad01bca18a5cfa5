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
* the bookkeeping (cumulative scores, token histories, finished counts, the
  best finished hypothesis of each sentence, back-pointers) lives in tensors
  and moves with ``index_select``/``gather``; no Python loop visits beams or
  hypotheses, and one host synchronisation per step decides whether to stop
  and whether finished sentences leave the batch.

Rules kept from SequenceGenerator, with fairseq-generate's defaults for
what the engine does not offer (no prefix, no constraints, no n-gram
blocking, temperature 1, one model); ``unk_penalty`` (--unkpen) and
``normalize_scores`` (False: --unnormalized) are keyword options:

* ``beam`` is capped at V - 1; pad is never generated (unk may be);
* ``max_len = min(int(max_len_a * S + max_len_b), max_decoder_positions - 1)``
  with S the width of the (padded) batch, as fairseq computes it; at step
  ``max_len`` only eos may follow; before step ``min_len`` eos may not;
* at each step the best 2 x beam (token, beam) candidates are taken; those
  among the first ``beam`` that end in eos (with a finite score) are
  finalized, each sentence keeping the first ``beam`` of them; the next beams
  are the best candidates that do not end in eos;
* a sentence is finished once ``beam`` hypotheses are finalized (or at
  ``max_len``); its score is the cumulative log-probability divided by
  length ** lenpen (length counting the eos); the best score wins, the
  earlier finalized on a tie.
"""

from typing import List, Tuple

import torch
from torch import Tensor

from . import functional as fn
from .matmul import check as check_matmul
from .matmul import resolve, use_onednn
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
        mask (a quantized engine replaces this). With oneDNN, the encoder's
        functional counterpart over the same weights."""
        if self.onednn:
            encoder = fn.Encoder(self.model.encoder)
            use_onednn(encoder)
            return encoder(src_tokens)
        out = self.model.encoder(src_tokens, src_lengths=src_lengths)
        return out["encoder_out"][0], out["encoder_padding_mask"][0]

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
        best_tokens, best_len, best_score = self._search(src_tokens, src_lengths)
        rows = best_tokens.tolist()
        lengths = best_len.tolist()
        scores = best_score.tolist()
        return [(row[:n], s) for row, n, s in zip(rows, lengths, scores)]

    # -- the search -------------------------------------------------------------

    def _candidates(self, lprobs: Tensor, cum: Tensor, step: int, n: int, k: int):
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

    def _search(self, src_tokens: Tensor, src_lengths: Tensor):
        device = self.device
        if device is None:
            device = next(self.model.parameters()).device
        src_tokens = src_tokens.to(device)
        src_lengths = src_lengths.to(device)
        bsz, src_width = src_tokens.shape[:2]
        beam, vocab, eos = self.beam, self.vocab_size, self.eos
        max_len = self.max_len(src_width)
        if self.min_len > max_len:
            raise ValueError(
                f"min_len ({self.min_len}) is larger than max_len ({max_len}); "
                "adjust min_len, max_len_a or max_len_b"
            )
        long = dict(dtype=torch.long, device=device)
        best_tokens = torch.full((bsz, max_len + 1), self.pad, **long)
        best_len = torch.zeros(bsz, **long)
        # scores are float32 whatever the model's dtype, as fairseq's
        best_score = torch.full((bsz,), float("-inf"), device=device).float()
        if bsz == 0:
            return best_tokens, best_len, best_score

        if self.model is not None and self.int8 is None:  # float32 over the model
            param = next(self.model.parameters())
            self.onednn = resolve(self.matmul, param) == "onednn"
        like, padding_mask = self.encode(src_tokens, src_lengths)
        self.step.prepare(vocab, max_len + 1, bsz * beam, like, self.onednn)
        self.cache.reset(bsz * beam, max_len + 1, like)
        enc = self.step.encoder_state(like, padding_mask)

        # token histories, ping-pong like the cache: column 0 is the bos (eos)
        tokens = torch.full((bsz * beam, max_len + 2), self.pad, **long)
        spare_tokens = torch.empty_like(tokens)
        tokens[:, 0] = eos
        cum = torch.zeros(bsz * beam, dtype=torch.float32, device=device)
        ignore = torch.zeros(bsz, beam, dtype=torch.bool, device=device)
        sent = torch.arange(bsz, **long)  # original index of each live sentence
        n_final = torch.zeros(bsz, **long)  # finalized hypotheses per sentence
        cand_size = 2 * beam
        cand_offsets = torch.arange(cand_size, **long)
        inf = float("-inf")

        n = bsz
        for step in range(max_len + 1):
            # step 0: every beam of a sentence is the same, decode one row each
            rows = n if step == 0 else n * beam
            lprobs = self.step(tokens[:rows, step], step, self.cache, enc)
            lprobs[:, self.pad] = inf
            if self.unk_penalty:
                lprobs[:, self.unk] -= self.unk_penalty
            if step >= max_len:
                lprobs[:, :eos] = inf
                lprobs[:, eos + 1 :] = inf
            if step < self.min_len:
                lprobs[:, eos] = inf

            # fairseq's BeamSearch.step: the best k of lprobs + cum per sentence
            k = min(cand_size, (rows // n) * vocab - 1)
            if step == 0:
                row_offsets = torch.arange(n, **long).unsqueeze(1)
            else:
                row_offsets = torch.arange(0, n * beam, beam, **long).unsqueeze(1)
            cand_scores, cand_flat = self._candidates(lprobs, cum, step, n, k)
            cand_beams = torch.div(cand_flat, vocab, rounding_mode="trunc")
            cand_tokens = cand_flat.fmod(vocab)
            cand_rows = cand_beams + row_offsets  # rows of this step's output

            # finalize the eos candidates among the first beam
            eos_mask = cand_tokens.eq(eos) & cand_scores.ne(inf)
            head = eos_mask[:, :beam] & ~ignore
            eos_mask[:, :beam] = head
            room = beam - n_final.index_select(0, sent)
            accept = head & (head.cumsum(1) <= room.unsqueeze(1))
            final = cand_scores[:, :beam]
            if self.normalize_scores:
                final = final / ((step + 1) ** self.lenpen)
            final = torch.where(accept, final, inf)
            top_at = final.argmax(dim=1)  # the first of equal scores
            top_final = final.gather(1, top_at.unsqueeze(1)).squeeze(1)
            prev_best = best_score.index_select(0, sent)
            better = top_final > prev_best
            best_score.index_copy_(0, sent, torch.where(better, top_final, prev_best))
            src_row = cand_rows.gather(1, top_at.unsqueeze(1)).squeeze(1)
            hyp = tokens[:, 1 : step + 1].index_select(0, src_row)
            old = best_tokens.index_select(0, sent)[:, :step]
            best_tokens[:, :step].index_copy_(
                0, sent, torch.where(better.unsqueeze(1), hyp, old)
            )
            best_len.index_copy_(
                0,
                sent,
                torch.where(better, step, best_len.index_select(0, sent)),
            )
            n_final.index_add_(0, sent, accept.sum(1))
            done = head.any(1)
            if step < max_len:
                done &= n_final.index_select(0, sent).eq(beam)
            n_done = int(done.sum())
            if n_done == n or step == max_len:
                break

            if n_done:
                # finished sentences leave the batch
                keep = (~done).nonzero().squeeze(1)
                eos_mask = eos_mask.index_select(0, keep)
                cand_rows = cand_rows.index_select(0, keep)
                cand_scores = cand_scores.index_select(0, keep)
                cand_tokens = cand_tokens.index_select(0, keep)
                ignore = ignore.index_select(0, keep)
                sent = sent.index_select(0, keep)
                enc = enc.select(keep)
                n -= n_done

            # the next beams: the best candidates that do not end in eos
            eos_mask[:, :beam] |= ignore
            active = eos_mask.long() * cand_size + cand_offsets[: eos_mask.size(1)]
            ranks, chosen = torch.topk(active, beam, dim=1, largest=False)
            ignore = ranks.ge(cand_size)
            order = cand_rows.gather(1, chosen).view(-1)
            cum = cand_scores.gather(1, chosen).view(-1)
            next_tokens = cand_tokens.gather(1, chosen).view(-1)

            # greedy search keeps its rows in place unless sentences left
            if beam > 1 or n_done:
                torch.index_select(
                    tokens[:, : step + 1],
                    0,
                    order,
                    out=spare_tokens[: n * beam, : step + 1],
                )
                tokens, spare_tokens = spare_tokens, tokens
                self.cache.reorder(order, step + 1)
            tokens[: n * beam, step + 1] = next_tokens
        return best_tokens, best_len, best_score
