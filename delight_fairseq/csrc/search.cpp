// The engine's whole search in C++ (CPU): inference/search.py's loops, greedy
// and beams, over the C++ decoder step (decoder_blocks.h).
//
// search.py runs fairseq's SequenceGenerator rules as a few dozen small tensor
// operations per step; from Python each costs 5-20 us of interpreter and
// dispatch, about 1 ms a step at beam 5 (7 % of decoding Multi30k), all of it
// under the interpreter lock, which engines in threads (pool.py) then wait
// for. Here the same ATen operations run in the same order on the same
// tensors, so the hypotheses, lengths and scores are search.py's bit for bit
// (tests/test_native_search.py); only the interpreter leaves, and the lock is
// released for the whole search. Each step embeds its tokens from the step's
// table of target embeddings (DecoderStep.embed), runs the blocks and the
// head, applies search.constrain's rules, and takes the candidates from
// beam_topk.cpp (torch.topk where that reports a tie, as Engine.candidates).

#include <ATen/record_function.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include "decoder_blocks.h"

std::tuple<torch::Tensor, torch::Tensor, bool> beam_candidates(torch::Tensor lprobs,
                                                               torch::Tensor cum,
                                                               int64_t n, int64_t k);

namespace {

using at::Tensor;
using namespace delight_native;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// the engine's options that the search reads (Engine._configure)
struct Rules {
  int64_t beam, vocab, eos, pad, unk, min_len;
  double unk_penalty, lenpen;
  bool normalize_scores;
};

// what a step reads and what moves with the hypotheses: the token histories
// (rows x max_len + 2, column 0 the bos), the cache's table of rows
// (step.KeyValueCache.origin), each with a spare of its shape for reorders,
// and the encoder's keys, values and padding of the sentences still decoded
// (step.EncoderState)
struct State {
  const DecoderBlocks& blocks;
  const Rules& rules;
  Tensor table, positions, kv, logits, lprobs;
  Tensor tokens, spare_tokens, origin, spare_origin;
  std::vector<Tensor> keys, values;
  Tensor padding;  // sentences x S, True at padding
  bool any_padding;

  // DecoderStep.__call__ over the first ``rows`` hypotheses
  Tensor step(int64_t rows, int64_t t) const {
    const Tensor x = at::index_select(table, 0, tokens.slice(0, 0, rows).select(1, t)) +
                     positions.select(0, t);
    return blocks.step(x, t, kv, origin, keys, values,
                       any_padding ? std::optional<Tensor>(padding) : std::nullopt,
                       logits, lprobs);
  }

  // search.reorder: hypothesis i continues hypothesis order[i], for the first
  // t + 1 steps (the token histories and the cache's table)
  void reorder(const Tensor& order, int64_t t) {
    const int64_t rows = order.numel();
    for (auto [from, to] : {std::pair<Tensor*, Tensor*>{&tokens, &spare_tokens},
                            {&origin, &spare_origin}}) {
      Tensor out = to->slice(0, 0, rows).slice(1, 0, t + 1);
      at::index_select_out(out, from->slice(1, 0, t + 1), 0, order);
      std::swap(*from, *to);
    }
  }

  // EncoderState.select: keep only these sentences
  void select(const Tensor& sentences) {
    for (auto& k : keys) k = k.index_select(0, sentences);
    for (auto& v : values) v = v.index_select(0, sentences);
    padding = padding.index_select(0, sentences);
    any_padding = padding.any().item<bool>();
  }

  // search.constrain, in place
  void constrain(const Tensor& lp, int64_t t, int64_t max_len) const {
    lp.select(1, rules.pad).fill_(kNegInf);
    if (rules.unk_penalty != 0) lp.select(1, rules.unk).sub_(rules.unk_penalty);
    if (t >= max_len) {
      lp.slice(1, 0, rules.eos).fill_(kNegInf);
      lp.slice(1, rules.eos + 1).fill_(kNegInf);
    }
    if (t < rules.min_len) lp.select(1, rules.eos).fill_(kNegInf);
  }

  // Engine.candidates
  std::pair<Tensor, Tensor> candidates(Tensor lp, const Tensor& cum, int64_t t,
                                       int64_t n, int64_t k) const {
    {
      RECORD_FUNCTION("delight::beam_candidates", std::vector<c10::IValue>());
      auto [scores, flat, tied] = beam_candidates(lp, t ? cum : cum.slice(0, 0, 0), n, k);
      if (!tied) return {scores, flat};
    }
    at::nan_to_num_(lp, kNegInf, std::numeric_limits<double>::infinity(), kNegInf);
    if (t) lp = lp.view({n, -1, lp.size(1)}).add_(cum.view({n, -1, 1}));
    auto [scores, flat] = at::topk(lp.view({n, -1}), k);
    return {scores, flat};
  }

  // a finished hypothesis' score: normalized by its length (eos counted)
  Tensor normalized(const Tensor& score, int64_t t) const {
    if (!rules.normalize_scores) return score;
    return score / std::pow(static_cast<double>(t + 1), rules.lenpen);
  }
};

// search.Best, filled in place
struct Best {
  Tensor tokens, length, score;
};

// search.greedy
void greedy(State& s, Best& best, int64_t max_len) {
  const Rules& r = s.rules;
  int64_t n = s.tokens.size(0);
  Tensor cum = at::zeros({n}, s.lprobs.options().dtype(at::kFloat));
  Tensor sent = at::arange(n, s.tokens.options());
  const int64_t k = std::min<int64_t>(2, r.vocab - 1);
  for (int64_t t = 0; t <= max_len; ++t) {
    const Tensor lp = s.step(n, t);
    s.constrain(lp, t, max_len);
    auto [scores, flat] = s.candidates(lp, cum, t, n, k);
    Tensor score = scores.select(1, 0), token = flat.select(1, 0);
    const Tensor ends = token.eq(r.eos) & score.ne(kNegInf);
    const int64_t n_done = ends.sum().item<int64_t>();
    if (n_done) {
      const Tensor at_ = ends.nonzero().squeeze(1);
      const Tensor final_ = s.normalized(score.index_select(0, at_), t);
      const Tensor where = sent.index_select(0, at_);
      best.score.index_copy_(0, where, final_);
      best.length.index_fill_(0, where, t);
      const Tensor hyp = s.tokens.slice(1, 1, t + 1).index_select(0, at_);
      best.tokens.slice(1, 0, t).index_copy_(0, where, hyp);
    }
    if (n_done == n || t == max_len) break;
    if (n_done) {  // finished sentences leave the batch
      const Tensor keep = (~ends).nonzero().squeeze(1);
      s.reorder(keep, t);
      s.select(keep);
      sent = sent.index_select(0, keep);
      score = score.index_select(0, keep);
      token = token.index_select(0, keep);
      n -= n_done;
    }
    s.tokens.slice(0, 0, n).select(1, t + 1).copy_(token);
    cum = score.contiguous();
  }
}

// search.beams
void beams(State& s, Best& best, int64_t max_len) {
  const Rules& r = s.rules;
  const int64_t beam = r.beam, vocab = r.vocab;
  const int64_t bsz = s.tokens.size(0) / beam;
  const auto long_ = s.tokens.options();
  Tensor cum = at::zeros({bsz * beam}, s.lprobs.options().dtype(at::kFloat));
  Tensor ignore = at::zeros({bsz, beam}, long_.dtype(at::kBool));
  Tensor sent = at::arange(bsz, long_);
  Tensor n_final = at::zeros({bsz}, long_);
  const int64_t cand_size = 2 * beam;
  const Tensor cand_offsets = at::arange(cand_size, long_);

  int64_t n = bsz;
  for (int64_t t = 0; t <= max_len; ++t) {
    // step 0: every beam of a sentence is the same, decode one row each
    const int64_t rows = t == 0 ? n : n * beam;
    const Tensor lp = s.step(rows, t);
    s.constrain(lp, t, max_len);

    const int64_t k = std::min(cand_size, (rows / n) * vocab - 1);
    const Tensor row_offsets = (t == 0 ? at::arange(n, long_)
                                       : at::arange(0, n * beam, beam, long_))
                                   .unsqueeze(1);
    auto [cand_scores, cand_flat] = s.candidates(lp, cum, t, n, k);
    Tensor cand_tokens = cand_flat.fmod(vocab);
    Tensor cand_rows = at::div(cand_flat, vocab, "trunc") + row_offsets;

    // finalize the eos candidates among the first beam
    Tensor eos_mask = cand_tokens.eq(r.eos) & cand_scores.ne(kNegInf);
    const Tensor head = eos_mask.slice(1, 0, beam) & ~ignore;
    eos_mask.slice(1, 0, beam).copy_(head);
    const Tensor room = beam - n_final.index_select(0, sent);
    const Tensor accept = head & (head.cumsum(1) <= room.unsqueeze(1));
    const Tensor final_ =
        at::where(accept, s.normalized(cand_scores.slice(1, 0, beam), t), kNegInf);
    const Tensor top_at = final_.argmax(1).unsqueeze(1);  // the first of equal scores
    const Tensor top_final = final_.gather(1, top_at).squeeze(1);
    const Tensor prev_best = best.score.index_select(0, sent);
    const Tensor better = top_final > prev_best;
    best.score.index_copy_(0, sent, at::where(better, top_final, prev_best));
    const Tensor src_row = cand_rows.gather(1, top_at).squeeze(1);
    const Tensor hyp = s.tokens.slice(1, 1, t + 1).index_select(0, src_row);
    const Tensor old = best.tokens.index_select(0, sent).slice(1, 0, t);
    best.tokens.slice(1, 0, t).index_copy_(0, sent,
                                           at::where(better.unsqueeze(1), hyp, old));
    best.length.index_copy_(
        0, sent, at::where(better, t, best.length.index_select(0, sent)));
    n_final.index_add_(0, sent, accept.sum(1));
    Tensor done = head.any(1);
    if (t < max_len) done &= n_final.index_select(0, sent).eq(beam);
    const int64_t n_done = done.sum().item<int64_t>();
    if (n_done == n || t == max_len) break;

    if (n_done) {  // finished sentences leave the batch
      const Tensor keep = (~done).nonzero().squeeze(1);
      eos_mask = eos_mask.index_select(0, keep);
      cand_rows = cand_rows.index_select(0, keep);
      cand_scores = cand_scores.index_select(0, keep);
      cand_tokens = cand_tokens.index_select(0, keep);
      ignore = ignore.index_select(0, keep);
      sent = sent.index_select(0, keep);
      s.select(keep);
      n -= n_done;
    }

    // the next beams: the best candidates that do not end in eos
    eos_mask.slice(1, 0, beam) |= ignore;
    const Tensor active = eos_mask.to(at::kLong) * cand_size +
                          cand_offsets.slice(0, 0, eos_mask.size(1));
    auto [ranks, chosen] = at::topk(active, beam, 1, /*largest=*/false);
    ignore = ranks.ge(cand_size);
    const Tensor order = cand_rows.gather(1, chosen).view(-1);
    cum = cand_scores.gather(1, chosen).view(-1);
    const Tensor next_tokens = cand_tokens.gather(1, chosen).view(-1);

    // greedy search keeps its rows in place unless sentences left
    if (beam > 1 || n_done) s.reorder(order, t);
    s.tokens.slice(0, 0, n * beam).select(1, t + 1).copy_(next_tokens);
  }
}

// search.search after its set-up: the loop of ``rules.beam``, writing the
// best hypotheses into best_tokens, best_length and best_score. ``origin`` and
// ``spare`` are the cache's table and its spare as KeyValueCache.reset left
// them (each row naming itself).
void search(const DecoderBlocks& blocks, const Rules& rules, Tensor table,
            Tensor positions, Tensor kv, Tensor origin, Tensor spare,
            std::vector<Tensor> keys, std::vector<Tensor> values, Tensor padding,
            Tensor logits, Tensor lprobs,
            Tensor tokens, Tensor best_tokens, Tensor best_length, Tensor best_score,
            int64_t max_len) {
  TORCH_CHECK(tokens.size(0) % rules.beam == 0 && origin.size(0) >= tokens.size(0) &&
                  spare.sizes() == origin.sizes(),
              "search: the token histories, the cache's table and its spare do not match");
  TORCH_CHECK(padding.dim() == 2, "search: padding must be sentences x S");
  const bool any_padding = padding.any().item<bool>();
  State s{blocks, rules, table, positions, kv, logits, lprobs,
          tokens, at::empty_like(tokens), origin, spare,
          std::move(keys), std::move(values), padding, any_padding};
  Best best{best_tokens, best_length, best_score};
  if (rules.beam == 1)
    greedy(s, best, max_len);
  else
    beams(s, best, max_len);
}

}  // namespace

void register_search(pybind11::module& m) {
  namespace py = pybind11;
  py::class_<Rules>(m, "SearchRules")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double,
                    bool>(),
           py::arg("beam"), py::arg("vocab"), py::arg("eos"), py::arg("pad"),
           py::arg("unk"), py::arg("min_len"), py::arg("unk_penalty"),
           py::arg("lenpen"), py::arg("normalize_scores"));
  m.def("search", &search, py::call_guard<py::gil_scoped_release>(),
        "search.py's loop (greedy at beam 1, else beams) over the C++ decoder "
        "step, into the best hypotheses' tensors",
        py::arg("blocks"), py::arg("rules"), py::arg("table"), py::arg("positions"),
        py::arg("kv"), py::arg("origin"), py::arg("spare"), py::arg("keys"),
        py::arg("values"), py::arg("padding"), py::arg("logits"), py::arg("lprobs"), py::arg("tokens"),
        py::arg("best_tokens"), py::arg("best_length"), py::arg("best_score"),
        py::arg("max_len"));
}
