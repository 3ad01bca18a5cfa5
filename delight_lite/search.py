"""fairseq's beam search in NumPy over :class:`~delight_lite.model.Model`.

The rules are those of fairseq's SequenceGenerator with its BeamSearch, as
``delight_fairseq/inference/search.py`` (which lists them) keeps them:
beam capped at V - 1, pad never generated, ``max_len = min(int(max_len_a *
S + max_len_b), max_positions - 1)``, only eos at ``max_len`` and no eos
before ``min_len``, the best 2 x beam candidates per sentence, eos
candidates among the first ``beam`` finalized (the first ``beam`` of them
per sentence), scores normalized by length ** lenpen, the best score winning
and the earlier finalized on a tie. Beam 1 is greedy search under the same
rules. Candidates tied in score are ordered by their index (fairseq leaves
that order to torch.topk, which does not specify it).
"""

from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from .model import Cache, EncoderState, Model

INF = -np.inf


class Options(NamedTuple):
    beam: int = 5
    lenpen: float = 1.0
    max_len_a: float = 0.0
    max_len_b: int = 200
    min_len: int = 1
    unk_penalty: float = 0.0
    normalize_scores: bool = True


def top_k(scores: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The k best of each row, best first, the lower index first among equal
    scores: (values, indices). Found through each row's k-th best value (a
    float32 partition, not an index array as large as ``scores``)."""
    n, m = scores.shape
    if k < m:
        kth = np.partition(scores, m - k, axis=1)[:, m - k]
        # flatnonzero: np.nonzero on a 2-D mask took 18x as long
        rows, cols = np.divmod(np.flatnonzero(scores >= kth[:, None]), m)
    else:
        rows, cols = np.divmod(np.arange(n * m), m)
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))
    first = np.searchsorted(rows[order], np.arange(n))  # each row's first
    take = order[first[:, None] + np.arange(k)]
    return values[take], cols[take]


class Search:
    """Beam search with fixed options over one model."""

    def __init__(self, model: Model, options: Optional[Options] = None):
        options = Options() if options is None else options
        self.model = model
        tgt = model.target
        self.vocab = len(tgt["symbols"])
        self.pad, self.eos, self.unk = tgt["pad"], tgt["eos"], tgt["unk"]
        if options.beam < 1:
            raise ValueError(f"beam is {options.beam}; it must be >= 1")
        self.options = options._replace(beam=min(options.beam, self.vocab - 1))

    def max_len(self, src_width: int) -> int:
        o = self.options
        return min(
            int(o.max_len_a * src_width + o.max_len_b),
            self.model.decoder.max_positions - 1,
        )

    def translate(self, sources: List[List[int]]) -> List[Tuple[List[int], float]]:
        """Source ids without eos -> per sentence, the best hypothesis (target
        ids without eos) and its score."""
        if not sources:
            return []
        src_eos, src_pad = self.model.source["eos"], self.model.source["pad"]
        width = max(len(s) for s in sources) + 1
        src = np.full((len(sources), width), src_pad, dtype=np.int64)
        for i, s in enumerate(sources):
            src[i, width - len(s) - 1 :] = s + [src_eos]  # left-padded
        tokens, lengths, scores = self.search(src)
        return [
            (row[:n], s)
            for row, n, s in zip(tokens.tolist(), lengths.tolist(), scores.tolist())
        ]

    def search(self, src: np.ndarray):
        """src: B x S, left-padded -> (tokens B x max_len + 1, lengths, scores)."""
        o = self.options
        bsz, width = src.shape
        max_len = self.max_len(width)
        if o.min_len > max_len:
            raise ValueError(
                f"min_len ({o.min_len}) is larger than max_len ({max_len}); "
                "adjust min_len, max_len_a or max_len_b"
            )
        best_tokens = np.full((bsz, max_len + 1), self.pad, dtype=np.int64)
        best_length = np.zeros(bsz, dtype=np.int64)
        best_score = np.full(bsz, INF, dtype=np.float32)
        enc_out, padding = self.model.encoder(src)
        decoder = self.model.decoder
        enc = decoder.encoder_state(enc_out, padding)
        rows = bsz * o.beam
        cache = Cache(
            rows, len(decoder.blocks), decoder.heads, decoder.head_dim, enc_out.dtype
        )
        del enc_out  # the search needs only its keys and values
        tokens = np.full((rows, max_len + 2), self.pad, dtype=np.int64)
        tokens[:, 0] = self.eos
        best = (best_tokens, best_length, best_score)
        loop = self._greedy if o.beam == 1 else self._beams
        with np.errstate(divide="ignore", invalid="ignore"):
            loop(enc, cache, tokens, best, max_len)
        return best

    def _lprobs(self, tokens, step, cache, enc, max_len):
        o = self.options
        lprobs = self.model.decoder(tokens, step, cache, enc)
        lprobs[:, self.pad] = INF
        if o.unk_penalty:
            lprobs[:, self.unk] -= o.unk_penalty
        if step >= max_len:
            eos_col = lprobs[:, self.eos].copy()
            lprobs[:] = INF
            lprobs[:, self.eos] = eos_col
        if step < o.min_len:
            lprobs[:, self.eos] = INF
        np.fmax(lprobs, INF, out=lprobs)  # NaN -> -inf, as fairseq
        return lprobs

    def _normalize(self, score, step):
        o = self.options
        return (
            score / np.float32((step + 1) ** o.lenpen) if o.normalize_scores else score
        )

    def _greedy(self, enc: EncoderState, cache: Cache, tokens, best, max_len):
        best_tokens, best_length, best_score = best
        n = tokens.shape[0]
        sent = np.arange(n)
        cum = np.zeros(n, np.float32)
        for step in range(max_len + 1):
            lprobs = self._lprobs(tokens[:n, step], step, cache, enc, max_len)
            if step:
                lprobs += cum[:, None]
            token = lprobs.argmax(axis=1)  # the first of equal scores
            score = lprobs[np.arange(n), token]
            ends = (token == self.eos) & (score != INF)
            if ends.any():
                at = np.flatnonzero(ends)
                where = sent[at]
                best_score[where] = self._normalize(score[at], step)
                best_length[where] = step
                best_tokens[where, :step] = tokens[at, 1 : step + 1]
                if at.size == n:
                    break
            if step == max_len:
                break
            if ends.any():
                keep = np.flatnonzero(~ends)
                tokens[: keep.size, : step + 1] = tokens[keep, : step + 1]
                cache.reorder(keep, step + 1)
                enc.keep(keep)
                sent, score, token = sent[keep], score[keep], token[keep]
                n = cache.rows = keep.size
            tokens[:n, step + 1] = token
            cum = score

    def _beams(self, enc: EncoderState, cache: Cache, tokens, best, max_len):
        best_tokens, best_length, best_score = best
        beam, vocab, eos = self.options.beam, self.vocab, self.eos
        bsz = tokens.shape[0] // beam
        cum = np.zeros(bsz * beam, np.float32)
        ignore = np.zeros((bsz, beam), bool)
        sent = np.arange(bsz)
        n_final = np.zeros(bsz, np.int64)
        cand_size = 2 * beam
        n = bsz
        for step in range(max_len + 1):
            rows = n if step == 0 else n * beam
            lprobs = self._lprobs(tokens[:rows, step], step, cache, enc, max_len)
            if step:
                lprobs += cum[:, None]
            k = min(cand_size, (rows // n) * vocab - 1)
            cand_scores, flat = top_k(lprobs.reshape(n, -1), k)
            per = rows // n
            cand_rows = flat // vocab + (np.arange(n) * per)[:, None]
            cand_tokens = flat % vocab

            eos_mask = (cand_tokens == eos) & (cand_scores != INF)
            head = eos_mask[:, :beam] & ~ignore
            eos_mask[:, :beam] = head
            room = beam - n_final[sent]
            accept = head & (np.cumsum(head, 1) <= room[:, None])
            final = np.where(accept, self._normalize(cand_scores[:, :beam], step), INF)
            top_at = final.argmax(axis=1)
            top_final = final[np.arange(n), top_at]
            better = top_final > best_score[sent]
            if better.any():
                who = np.flatnonzero(better)
                where = sent[who]
                best_score[where] = top_final[who]
                best_length[where] = step
                src_rows = cand_rows[who, top_at[who]]
                best_tokens[where, :step] = tokens[src_rows, 1 : step + 1]
            n_final[sent] += accept.sum(1)
            done = head.any(1)
            if step < max_len:
                done &= n_final[sent] == beam
            n_done = int(done.sum())
            if n_done == n or step == max_len:
                break
            if n_done:
                keep = np.flatnonzero(~done)
                eos_mask, cand_rows = eos_mask[keep], cand_rows[keep]
                cand_scores, cand_tokens = cand_scores[keep], cand_tokens[keep]
                ignore, sent = ignore[keep], sent[keep]
                enc.keep(keep)
                n -= n_done
                cache.rows = n * beam
            # the next beams: the best candidates that do not end in eos
            eos_mask[:, :beam] |= ignore
            active = eos_mask * cand_size + np.arange(eos_mask.shape[1])
            chosen = np.argsort(active, axis=1, kind="stable")[:, :beam]
            ignore = np.take_along_axis(active, chosen, 1) >= cand_size
            order = np.take_along_axis(cand_rows, chosen, 1).reshape(-1)
            cum = np.take_along_axis(cand_scores, chosen, 1).reshape(-1)
            next_tokens = np.take_along_axis(cand_tokens, chosen, 1).reshape(-1)
            tokens[: order.size, : step + 1] = tokens[order, : step + 1]
            cache.reorder(order, step + 1)
            tokens[: n * beam, step + 1] = next_tokens
