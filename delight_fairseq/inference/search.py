"""The engine's search: fairseq's SequenceGenerator with its BeamSearch (the
rules of ``fairseq/sequence_generator.py``, ``_generate`` and
``finalize_hypos``) over :class:`~delight_fairseq.inference.step.DecoderStep`.

Rules kept from SequenceGenerator, with fairseq-generate's defaults for
what the engine does not offer (no prefix, no constraints, no n-gram
blocking, temperature 1, one model); ``unk_penalty`` (--unkpen) and
``normalize_scores`` (False: --unnormalized) are the engine's keyword options:

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

The bookkeeping (cumulative scores, token histories, finished counts, the
best finished hypothesis of each sentence, back-pointers) lives in tensors
and moves with ``index_select``/``gather``; no Python loop visits beams or
hypotheses, and one host synchronisation per step decides whether to stop
and whether finished sentences leave the batch.

Where the step runs in C++ (csrc/decoder_blocks.h), so does the loop
(:func:`native_loop`, csrc/search.cpp): the same operations in the same
order as :func:`greedy` and :func:`beams` below, without the interpreter
between them and with its lock released for the whole batch.

At beam 1 these rules reduce to greedy search, which :func:`greedy` runs
with a few operations per step instead of :func:`beams`' few dozen: a
sentence's best candidate either ends in eos with a finite score (the
sentence is finalized, and finished) or is its next token (a second
candidate is never chosen); no beam moves, so nothing is reordered until a
sentence leaves the batch.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from .step import EncoderState

INF = float("-inf")


class Best(NamedTuple):
    """The best finished hypothesis of each sentence, in input order: its
    tokens (sentences x max_len + 1, pad after the end), its length without
    eos, and its score (-inf where none finished)."""

    tokens: Tensor
    length: Tensor
    score: Tensor


def search(engine, src_tokens: Tensor, src_lengths: Tensor) -> Best:
    """The best hypothesis of each sentence of a left-padded batch."""
    device = engine.device
    if device is None:
        device = next(engine.model.parameters()).device
    src_tokens = src_tokens.to(device)
    src_lengths = src_lengths.to(device)
    bsz, src_width = src_tokens.shape[:2]
    max_len = engine.max_len(src_width)
    if engine.min_len > max_len:
        raise ValueError(
            f"min_len ({engine.min_len}) is larger than max_len ({max_len}); "
            "adjust min_len, max_len_a or max_len_b"
        )
    long = dict(dtype=torch.long, device=device)
    best = Best(
        torch.full((bsz, max_len + 1), engine.pad, **long),
        torch.zeros(bsz, **long),
        # scores are float32 whatever the model's dtype, as fairseq's
        torch.full((bsz,), INF, device=device).float(),
    )
    if bsz == 0:
        return best

    like, padding_mask = engine.begin_batch(src_tokens, src_lengths)
    rows = bsz * engine.beam
    engine.step.prepare(engine.vocab_size, max_len + 1, rows, like, engine.onednn)
    engine.cache.reset(rows, max_len + 1, like)
    enc = engine.step.encoder_state(like, padding_mask)
    # token histories, ping-pong like the cache: column 0 is the bos (eos)
    tokens = torch.full((rows, max_len + 2), engine.pad, **long)
    tokens[:, 0] = engine.eos
    if not native_loop(engine, enc, tokens, best, max_len):
        loop = greedy if engine.beam == 1 else beams
        loop(engine, enc, tokens, best, max_len)
    return best


def native_loop(engine, enc: EncoderState, tokens: Tensor, best: Best, max_len: int):
    """The loop below (greedy or beams) in C++ (csrc/search.cpp: the same
    operations in the same order, without the interpreter and its lock),
    where the step runs in C++ (:meth:`DecoderStep.native_parts`) and
    ``engine.native_search`` is set; returns whether it ran."""
    parts = engine.step.native_parts() if engine.native_search else None
    if parts is None:
        return False
    kernel, blocks, table, positions, logits, lprobs = parts
    rules = kernel.SearchRules(
        beam=engine.beam,
        vocab=engine.vocab_size,
        eos=engine.eos,
        pad=engine.pad,
        unk=engine.unk,
        min_len=engine.min_len,
        unk_penalty=float(engine.unk_penalty),
        lenpen=float(engine.lenpen),
        normalize_scores=engine.normalize_scores,
    )
    kernel.search(
        blocks, rules, table, positions,
        engine.cache.kv, engine.cache.origin, engine.cache.spare,
        enc.keys, enc.values, enc.padding.squeeze(1), logits, lprobs, tokens,
        best.tokens, best.length, best.score, max_len,
    )  # fmt: skip
    return True


def constrain(engine, lprobs: Tensor, step: int, max_len: int) -> None:
    """SequenceGenerator's rules on a step's log-probabilities, in place: no
    pad, the unk penalty, only eos at ``max_len``, no eos before
    ``min_len``."""
    lprobs[:, engine.pad] = INF
    if engine.unk_penalty:
        lprobs[:, engine.unk] -= engine.unk_penalty
    eos = engine.eos
    if step >= max_len:
        lprobs[:, :eos] = INF
        lprobs[:, eos + 1 :] = INF
    if step < engine.min_len:
        lprobs[:, eos] = INF


def reorder(engine, order: Tensor, tokens: Tensor, spare: Tensor, step: int):
    """Row i of the token histories and of the cache becomes row ``order[i]``
    (the first ``step + 1`` steps); returns the (tokens, spare) pair."""
    rows = order.numel()
    torch.index_select(tokens[:, : step + 1], 0, order, out=spare[:rows, : step + 1])
    engine.cache.reorder(order, step + 1)
    return spare, tokens


def greedy(engine, enc: EncoderState, tokens: Tensor, best: Best, max_len: int):
    """Beam 1: each sentence's best candidate ends it or continues it."""
    eos, n = engine.eos, tokens.size(0)
    spare = torch.empty_like(tokens)
    cum = torch.zeros(n, dtype=torch.float32, device=tokens.device)
    sent = torch.arange(n, device=tokens.device)  # original index of each row
    # fairseq takes 2 candidates; the second never continues a sentence
    k = min(2, engine.vocab_size - 1)
    for step in range(max_len + 1):
        lprobs = engine.step(tokens[:n, step], step, engine.cache, enc)
        constrain(engine, lprobs, step, max_len)
        scores, flat = engine.candidates(lprobs, cum, step, n, k)
        # one row per sentence: a candidate's flat index is its token
        score, token = scores[:, 0], flat[:, 0]
        ends = token.eq(eos) & score.ne(INF)
        n_done = int(ends.sum())
        if n_done:
            at = ends.nonzero().squeeze(1)
            final = score.index_select(0, at)
            if engine.normalize_scores:
                final = final / ((step + 1) ** engine.lenpen)
            where = sent.index_select(0, at)
            best.score.index_copy_(0, where, final)
            best.length.index_fill_(0, where, step)
            hyp = tokens[:, 1 : step + 1].index_select(0, at)
            best.tokens[:, :step].index_copy_(0, where, hyp)
        if n_done == n or step == max_len:
            break
        if n_done:
            # finished sentences leave the batch
            keep = (~ends).nonzero().squeeze(1)
            tokens, spare = reorder(engine, keep, tokens, spare, step)
            enc = enc.select(keep)
            sent, score, token = (t.index_select(0, keep) for t in (sent, score, token))
            n -= n_done
        tokens[:n, step + 1] = token
        cum = score.contiguous()


def beams(engine, enc: EncoderState, tokens: Tensor, best: Best, max_len: int):
    """Beam search proper (beam > 1, also correct at beam 1)."""
    beam, vocab, eos = engine.beam, engine.vocab_size, engine.eos
    bsz = tokens.size(0) // beam
    device = tokens.device
    long = dict(dtype=torch.long, device=device)
    spare_tokens = torch.empty_like(tokens)
    cum = torch.zeros(bsz * beam, dtype=torch.float32, device=device)
    ignore = torch.zeros(bsz, beam, dtype=torch.bool, device=device)
    sent = torch.arange(bsz, **long)  # original index of each live sentence
    n_final = torch.zeros(bsz, **long)  # finalized hypotheses per sentence
    cand_size = 2 * beam
    cand_offsets = torch.arange(cand_size, **long)

    n = bsz
    for step in range(max_len + 1):
        # step 0: every beam of a sentence is the same, decode one row each
        rows = n if step == 0 else n * beam
        lprobs = engine.step(tokens[:rows, step], step, engine.cache, enc)
        constrain(engine, lprobs, step, max_len)

        # fairseq's BeamSearch.step: the best k of lprobs + cum per sentence
        k = min(cand_size, (rows // n) * vocab - 1)
        if step == 0:
            row_offsets = torch.arange(n, **long).unsqueeze(1)
        else:
            row_offsets = torch.arange(0, n * beam, beam, **long).unsqueeze(1)
        cand_scores, cand_flat = engine.candidates(lprobs, cum, step, n, k)
        cand_beams = torch.div(cand_flat, vocab, rounding_mode="trunc")
        cand_tokens = cand_flat.fmod(vocab)
        cand_rows = cand_beams + row_offsets  # rows of this step's output

        # finalize the eos candidates among the first beam
        eos_mask = cand_tokens.eq(eos) & cand_scores.ne(INF)
        head = eos_mask[:, :beam] & ~ignore
        eos_mask[:, :beam] = head
        room = beam - n_final.index_select(0, sent)
        accept = head & (head.cumsum(1) <= room.unsqueeze(1))
        final = cand_scores[:, :beam]
        if engine.normalize_scores:
            final = final / ((step + 1) ** engine.lenpen)
        final = torch.where(accept, final, INF)
        top_at = final.argmax(dim=1)  # the first of equal scores
        top_final = final.gather(1, top_at.unsqueeze(1)).squeeze(1)
        prev_best = best.score.index_select(0, sent)
        better = top_final > prev_best
        best.score.index_copy_(0, sent, torch.where(better, top_final, prev_best))
        src_row = cand_rows.gather(1, top_at.unsqueeze(1)).squeeze(1)
        hyp = tokens[:, 1 : step + 1].index_select(0, src_row)
        old = best.tokens.index_select(0, sent)[:, :step]
        best.tokens[:, :step].index_copy_(
            0, sent, torch.where(better.unsqueeze(1), hyp, old)
        )
        best.length.index_copy_(
            0,
            sent,
            torch.where(better, step, best.length.index_select(0, sent)),
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
            tokens, spare_tokens = reorder(engine, order, tokens, spare_tokens, step)
        tokens[: n * beam, step + 1] = next_tokens
